"""Both denoisers are E(3)-equivariant by construction: random rotations (with and without
reflection), translations and atom permutations; padding never leaks; CoM stays zero."""

import pytest
import torch

from polydiff.plugins.molecule.e3nn_net import E3nnDenoiser
from polydiff.plugins.molecule.egnn import EGNNDenoiser
from polydiff.spaces import ZeroCoMSpace

NETS = {
    "egnn": lambda: EGNNDenoiser(n_types=5, n_props=2, hidden=32, layers=3),
    "e3nn": lambda: E3nnDenoiser(n_types=5, n_props=2, scalars=16, vectors=4, layers=2),
}
TOL = {torch.float64: 1e-5, torch.float32: 1e-4}


def _net(kind, dtype):
    torch.manual_seed(0)
    net = NETS[kind]().to(dtype)
    # random (not zero-initialised) weights everywhere, so every path is exercised
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


@pytest.mark.parametrize("kind", list(NETS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rotation_reflection_translation_permutation(kind, dtype, orthogonal, batch_factory):
    g = torch.Generator().manual_seed(1)
    net = _net(kind, dtype)
    B, N, D = 3, 9, 8
    x, mask = batch_factory(B, N, D, dtype, g, counts=[9, 6, 4])
    x[..., :3] *= 1.5
    t = torch.randn(B, generator=g, dtype=torch.float64).to(dtype)
    cond = {
        "mask": mask,
        "props": torch.randn(B, 2, generator=g, dtype=torch.float64).to(dtype),
        "cond_mask": torch.tensor([1.0, 0.0, 1.0], dtype=dtype),
    }
    with torch.no_grad():
        out = net(x, t, cond)
        scale = out.abs().max()
        assert scale > 1e-3  # non-trivial output
        for reflect in (False, True):
            Q = orthogonal(g, dtype, reflect)
            shift = torch.randn(3, generator=g, dtype=torch.float64).to(dtype) * 3
            xr = x.clone()
            xr[..., :3] = (x[..., :3] @ Q.T + shift) * mask[..., None]
            outr = net(xr, t, cond)
            err_pos = (outr[..., :3] - out[..., :3] @ Q.T).abs().max()
            err_typ = (outr[..., 3:] - out[..., 3:]).abs().max()
            assert err_pos <= TOL[dtype] * max(1.0, float(scale)), (reflect, float(err_pos))
            assert err_typ <= TOL[dtype] * max(1.0, float(scale)), (reflect, float(err_typ))
        # permutation of the real atoms of sample 0
        perm = torch.randperm(9, generator=g)
        xp = x.clone()
        xp[0] = x[0, perm]
        outp = net(xp, t, cond)
        assert (outp[0] - out[0, perm]).abs().max() <= TOL[dtype] * max(1.0, float(scale))
        # zero centre of mass and zero padding in the position output
        com = ZeroCoMSpace(mask).center_of_mass(out)
        assert com.abs().max() <= 1e-6 * max(1.0, float(scale))
        assert out[1, 6:].abs().max() == 0 and out[2, 4:].abs().max() == 0


@pytest.mark.parametrize("kind", list(NETS))
def test_padding_does_not_change_real_atoms(kind, batch_factory):
    g = torch.Generator().manual_seed(2)
    net = _net(kind, torch.float64)
    x, mask = batch_factory(1, 5, 8, torch.float64, g, counts=[5])
    t = torch.zeros(1, dtype=torch.float64)
    with torch.no_grad():
        a = net(x, t, {"mask": mask})
        xpad = torch.cat([x, torch.randn(1, 4, 8, generator=g, dtype=torch.float64)], 1)  # garbage in padding
        b = net(xpad, t, {"mask": torch.cat([mask, torch.zeros(1, 4, dtype=torch.float64)], 1)})
    assert (b[:, :5] - a).abs().max() < 1e-12
    assert b[:, 5:].abs().max() == 0


def test_cond_mask_switches_property_embedding():
    net = _net("egnn", torch.float64)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, generator=g, dtype=torch.float64)
    mask = torch.ones(2, 4, dtype=torch.float64)
    t = torch.zeros(2, dtype=torch.float64)
    props = torch.randn(2, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        on = net(x, t, {"mask": mask, "props": props, "cond_mask": torch.ones(2, dtype=torch.float64)})
        off = net(x, t, {"mask": mask, "props": props, "cond_mask": torch.zeros(2, dtype=torch.float64)})
        off2 = net(x, t, {"mask": mask, "props": props * 7, "cond_mask": torch.zeros(2, dtype=torch.float64)})
    assert (on - off).abs().max() > 1e-6  # the properties matter when switched on …
    assert (off - off2).abs().max() == 0  # … and not at all when switched off


def test_edm_size_has_edm_parameter_count():
    net = EGNNDenoiser(hidden=256, layers=9, attention=True)
    n = sum(p.numel() for p in net.parameters())
    assert abs(n - 5.34e6) / 5.34e6 < 0.01, n


@pytest.mark.gpu
@pytest.mark.parametrize("kind", list(NETS))
def test_networks_run_on_cuda_and_stay_equivariant(kind, orthogonal, batch_factory):
    g = torch.Generator().manual_seed(4)
    net = _net(kind, torch.float32)
    x, mask = batch_factory(4, 12, 8, torch.float32, g, counts=[12, 9, 5, 3])
    t = torch.zeros(4)
    cond = {"mask": mask, "props": torch.zeros(4, 2), "cond_mask": torch.ones(4)}
    with torch.no_grad():
        cpu = net(x, t, cond)
        net = net.cuda()
        dev = {k: v.cuda() for k, v in cond.items()}
        out = net(x.cuda(), t.cuda(), dev)
        Q = orthogonal(g, torch.float32, True).cuda()
        xr = x.cuda().clone()
        xr[..., :3] = x[..., :3].cuda() @ Q.T
        outr = net(xr, t.cuda(), dev)
    assert (out.cpu() - cpu).abs().max() < 1e-3
    assert (outr[..., :3] - out[..., :3] @ Q.T).abs().max() < 1e-4 * max(1.0, float(out.abs().max()))


def test_split_first_layer_equals_edm_concatenation(batch_factory):
    g = torch.Generator().manual_seed(5)
    split = _net("egnn", torch.float64)
    concat = NETS["egnn"]()
    for blk in concat.blocks:
        blk.edge_mlp.split = blk.coord_mlp.split = False
    concat = concat.to(torch.float64).eval()
    concat.load_state_dict(split.state_dict())
    x, mask = batch_factory(2, 7, 8, torch.float64, g, counts=[7, 4])
    t = torch.ones(2, dtype=torch.float64)
    with torch.no_grad():
        assert (split(x, t, {"mask": mask}) - concat(x, t, {"mask": mask})).abs().max() < 1e-12
