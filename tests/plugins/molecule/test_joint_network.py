"""The joint network ``egnn_joint`` (plugins/molecule/joint_network.py): E(3)- and
permutation-equivariance in float64, symmetric bond logits, padding that never leaks — with
and without the triangle edge updates."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from polydiff.plugins.molecule.joint_network import JointEGNN, TriangleUpdate

sys.path.insert(0, str(Path(__file__).parent))
from rotations import orthogonal as _orthogonal  # noqa: E402

TOL = 1e-5


@pytest.fixture(params=[False, True], ids=["pairwise", "triangle"])
def net(request):
    torch.manual_seed(0)
    net = JointEGNN(hidden=24, edge_dim=8, layers=3, triangle=request.param).double()
    # larger coordinate weights than the near-zero init, so the position output is not trivially small;
    # the triangle update's zero-initialised output too, else it would be the identity
    for blk in net.blocks:
        torch.nn.init.normal_(blk.coord[2].weight, std=0.3)
        if blk.triangle is not None:
            torch.nn.init.normal_(blk.triangle.out.weight, std=0.3)
    return net.eval()


def _state(B=3, N=7, counts=(7, 5, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, N, dtype=torch.float64)
    for b, k in enumerate(counts):
        mask[b, :k] = 1
    pos = torch.randn(B, N, 3, generator=g, dtype=torch.float64) * mask[..., None]
    pos = (pos - (pos.sum(1, keepdim=True) / mask.sum(1)[:, None, None])) * mask[..., None]
    bond = torch.randint(0, 4, (B, N, N), generator=g)
    bond = torch.triu(bond, 1)
    bond = bond + bond.transpose(1, 2)
    state = {
        "pos": pos,
        "atom": torch.randint(0, 5, (B, N), generator=g),
        "charge": torch.randint(0, 3, (B, N), generator=g),
        "bond": bond,
    }
    return state, {"mask": mask}, torch.rand(B, generator=g, dtype=torch.float64).float()


@pytest.mark.parametrize("reflect", [False, True])
def test_rotations_reflections_and_translations(net, reflect):
    state, cond, t = _state()
    out = net(state, t, cond)
    assert out["pos"].abs().max() > 1e-3  # a non-trivial displacement
    for seed in range(3):
        q = _orthogonal(seed, reflect)
        shift = torch.randn(1, 1, 3, generator=torch.Generator().manual_seed(9 + seed), dtype=torch.float64)
        moved = dict(state, pos=(state["pos"] @ q.T + shift) * cond["mask"][..., None])
        got = net(moved, t, cond)
        assert (got["pos"] - out["pos"] @ q.T).abs().max() < TOL
        for k in ("atom", "charge", "bond"):
            assert (got[k] - out[k]).abs().max() < TOL, k


def test_atom_permutation_with_the_matching_bond_permutation(net):
    state, cond, t = _state(B=1, N=7, counts=(7,))
    out = net(state, t, cond)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    p_state = {
        "pos": state["pos"][:, perm],
        "atom": state["atom"][:, perm],
        "charge": state["charge"][:, perm],
        "bond": state["bond"][:, perm][:, :, perm],
    }
    got = net(p_state, t, {"mask": cond["mask"][:, perm]})
    assert (got["pos"] - out["pos"][:, perm]).abs().max() < TOL
    assert (got["atom"] - out["atom"][:, perm]).abs().max() < TOL
    assert (got["charge"] - out["charge"][:, perm]).abs().max() < TOL
    assert (got["bond"] - out["bond"][:, perm][:, :, perm]).abs().max() < TOL


def test_bond_logits_are_symmetric_and_pinned_off_the_molecule(net):
    state, cond, t = _state()
    state["bond"][0, 1, 2], state["bond"][0, 2, 1] = 1, 3  # even for an asymmetric input
    out = net(state, t, cond)["bond"]
    assert torch.equal(out, out.transpose(1, 2))
    eye = torch.eye(7, dtype=torch.bool)
    assert (out[:, eye].argmax(-1) == 0).all()  # the diagonal is "no bond"
    assert (out[2, 3:, :].argmax(-1) == 0).all()  # padding pairs too


def test_padding_does_not_change_the_real_atoms(net):
    """The dense pass over a padded molecule gives its real atoms what the unpadded one does."""
    state, cond, t = _state(B=1, N=7, counts=(4,))
    out = net._dense(state, t, cond)
    small = {k: (v[:, :4] if k != "bond" else v[:, :4, :4]) for k, v in state.items()}
    got = net(small, t, {"mask": cond["mask"][:, :4]})
    assert (got["pos"] - out["pos"][:, :4]).abs().max() < TOL
    assert (got["atom"] - out["atom"][:, :4]).abs().max() < TOL
    assert (got["bond"] - out["bond"][:, :4, :4]).abs().max() < TOL


def test_size_grouped_pass_equals_the_dense_pass_everywhere(net):
    """A batch of several sizes runs in groups cropped to each size: every output, padding
    included, equals the dense pass over the padded batch (float64, 1e-10)."""
    state, cond, t = _state(B=6, N=9, counts=(9, 5, 3, 5, 8, 3), seed=3)
    got, dense = net(state, t, cond), net._dense(state, t, cond)
    for key in ("pos", "atom", "charge", "bond"):
        assert got[key].shape == dense[key].shape
        assert (got[key] - dense[key]).abs().max() < 1e-10, key


def test_triangle_update_sums_over_shared_neighbours_and_keeps_symmetry():
    """``TriangleUpdate`` on a symmetric edge state: symmetric, zero off the real pairs, and
    the update of i–j moves with the edges i–k and j–k of a third atom k but not with an edge
    that touches neither i nor j."""
    torch.manual_seed(1)
    tri = TriangleUpdate(8).double()
    torch.nn.init.normal_(tri.out.weight, std=0.3)
    n = 6
    e = torch.randn(1, n, n, 8, dtype=torch.float64)
    e = e + e.transpose(1, 2)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]], dtype=torch.float64)
    pair = (mask[:, :, None] * mask[:, None, :] * (1 - torch.eye(n, dtype=torch.float64)))[..., None]
    e = e * pair
    u = tri(e, pair)
    assert (u - u.transpose(1, 2)).abs().max() < 1e-12
    assert u[0, 5].abs().max() == 0 and u[0, :, 5].abs().max() == 0 and u[0, 2, 2].abs().max() == 0

    bump = torch.randn(8, dtype=torch.float64)  # not a constant: the input LayerNorm removes those

    def bumped(a, b):
        f = e.clone()
        f[0, a, b] += bump
        f[0, b, a] += bump
        return tri(f, pair)[0, 0, 1]

    assert (bumped(0, 2) - u[0, 0, 1]).abs().max() > 1e-3  # i–k with k = 2
    assert (bumped(1, 3) - u[0, 0, 1]).abs().max() > 1e-3  # j–k with k = 3
    assert (bumped(2, 3) - u[0, 0, 1]).abs().max() < 1e-12  # touches neither: no path of length 2
    with pytest.raises(ValueError, match="triangle_every"):
        JointEGNN(hidden=8, edge_dim=4, layers=2, triangle=True, triangle_every=0)


def test_a_grown_network_computes_the_smaller_ones_outputs_and_trains_its_new_blocks():
    """``grow_init_``: a 5-block network loaded with a 3-block one's weights and grown gives the
    same outputs (its two new blocks are the identity), yet its new blocks get gradients; it
    grows only in layers."""
    torch.manual_seed(0)
    small = JointEGNN(hidden=16, edge_dim=8, layers=3).double()
    for blk in small.blocks:
        torch.nn.init.normal_(blk.coord[2].weight, std=0.3)
    big = JointEGNN(hidden=16, edge_dim=8, layers=5).double()
    missing, unexpected = big.load_state_dict(small.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("blocks.3.", "blocks.4.")) for k in missing)
    state, cond, t = _state()
    before = big(state, t, cond)
    assert (before["pos"] - small(state, t, cond)["pos"]).abs().max() > 1e-3  # not yet grown: differs
    big.grow_init_({"hidden": 16, "edge_dim": 8, "layers": 3})
    out, ref = big(state, t, cond), small(state, t, cond)
    for k in ref:
        assert torch.equal(out[k], ref[k]), k
    sum(v.square().sum() for v in out.values()).backward()
    assert big.blocks[4].coord[2].weight.grad.abs().max() > 0 and big.blocks[3].edge[2].weight.grad.abs().max() > 0
    with pytest.raises(ValueError, match="grows only in layers.*coords_range"):
        big.grow_init_({"layers": 3, "coords_range": 10.0})
