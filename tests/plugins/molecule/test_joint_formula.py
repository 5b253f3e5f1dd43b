"""Formula conditioning of the joint molecule model (``config["formula_conditioning"]``: the
atom types are given, not generated): Hill formulas round-trip, fit records the training
formulas, sampling draws formulas by their training frequency (or takes the requested one)
and gives their atoms, the network with given atoms keeps its symmetries and reads them, and
a tiny model samples molecules of the requested formula end to end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import polydiff
from polydiff.plugins.molecule.joint import JointMoleculeModality, hill_formula, parse_formula
from polydiff.plugins.molecule.joint_network import JointEGNN

sys.path.insert(0, str(Path(__file__).parent))
from rotations import orthogonal as _orthogonal  # noqa: E402

ELEMENTS = ["H", "C", "N", "O", "F"]
TOL = 1e-5


def test_hill_formulas_and_their_parsing():
    assert hill_formula(["O", "C", "H", "H", "C", "H", "H", "H", "H"]) == "C2H6O"  # ethanol
    assert hill_formula(["H", "N", "H", "H"]) == "H3N"  # no carbon: alphabetical
    assert hill_formula(["F", "C", "N", "H"]) == "CHFN"
    assert parse_formula("C7H10O2", ELEMENTS).tolist() == [10, 7, 0, 2, 0]
    assert parse_formula("CHFN", ELEMENTS).tolist() == [1, 1, 1, 0, 1]
    for f in ("C2H6O", "H3N", "C9H7F2N"):
        counts = parse_formula(f, ELEMENTS)
        assert hill_formula([e for e, c in zip(ELEMENTS, counts) for _ in range(c)]) == f
    for bad, msg in (("C7X2", "vocabulary"), ("CH4C", "twice"), ("c2h6", "not a molecular formula"), ("", "not a")):
        with pytest.raises(ValueError, match=msg):
            parse_formula(bad, ELEMENTS)


def test_fit_records_the_training_formulas_and_collate_gives_the_atom_types(bonded):
    mod = JointMoleculeModality({"formula_conditioning": True})
    mod.fit(bonded)
    hist = mod.config["formula_hist"]
    assert sum(hist.values()) == len(bonded.records)
    want: dict[str, int] = {}
    for r in bonded.records:
        f = hill_formula(r.elements)
        want[f] = want.get(f, 0) + 1
    assert hist == want
    assert "atom" not in mod.parts() and set(mod.parts()) == {"pos", "charge", "bond"}
    assert mod.network_kwargs()["atoms_given"] is True
    batch = mod.collate(bonded.records[:5])
    assert "atom" not in batch["x"]
    types = batch["cond"]["atom_types"]
    rec = bonded.records[0]
    assert [ELEMENTS[i] for i in types[0, : rec.n_atoms].tolist()] == list(rec.elements)
    # an unconditioned modality neither records formulas nor moves the atoms
    plain = JointMoleculeModality()
    plain.fit(bonded)
    assert plain.config["formula_hist"] == {} and "atoms_given" not in plain.network_kwargs()
    assert "atom_types" not in plain.collate(bonded.records[:2])["cond"]


def _formulas(types: torch.Tensor, mask: torch.Tensor) -> list[str]:
    return [hill_formula([ELEMENTS[i] for i in row[: int(m.sum())].tolist()]) for row, m in zip(types, mask)]


def test_sampling_draws_formulas_by_training_frequency_or_takes_the_requested_one():
    mod = JointMoleculeModality({"formula_conditioning": True, "formula_hist": {"C2H6O": 3, "CH4": 1, "C3H8": 0}})
    n = 2000
    shapes, cond = mod.sampling_request(n, None, polydiff.rng.SampleRNG(0, n))
    assert "atom" not in shapes
    names = _formulas(cond["atom_types"], cond["mask"])
    assert set(names) == {"C2H6O", "CH4"}  # never a formula of zero weight
    assert abs(names.count("C2H6O") / n - 0.75) < 0.03  # binomial sd 0.01
    # atom counts given: only formulas of that size
    _, cond = mod.sampling_request(20, {"n_atoms": 5}, polydiff.rng.SampleRNG(1, 20))
    assert set(_formulas(cond["atom_types"], cond["mask"])) == {"CH4"}
    # an explicit formula, one or one per sample
    _, cond = mod.sampling_request(2, {"formula": ["C7H10O2", "H2O"]}, polydiff.rng.SampleRNG(1, 2))
    assert _formulas(cond["atom_types"], cond["mask"]) == ["C7H10O2", "H2O"]
    assert cond["mask"].sum(1).tolist() == [19, 3]
    with pytest.raises(ValueError, match="disagrees"):
        mod.sampling_request(1, {"formula": "CH4", "n_atoms": 4}, polydiff.rng.SampleRNG(1, 1))
    with pytest.raises(ValueError, match="no training formula has 7 atoms"):
        mod.sampling_request(1, {"n_atoms": 7}, polydiff.rng.SampleRNG(1, 1))
    with pytest.raises(ValueError, match="2 entries for 3 samples"):
        mod.sampling_request(3, {"formula": ["CH4", "H2O"]}, polydiff.rng.SampleRNG(1, 3))
    with pytest.raises(ValueError, match="no formula histogram"):
        JointMoleculeModality({"formula_conditioning": True}).sampling_request(1, None, polydiff.rng.SampleRNG(1, 1))
    with pytest.raises(ValueError, match="without formula conditioning"):
        JointMoleculeModality().sampling_request(1, {"formula": "CH4"}, polydiff.rng.SampleRNG(1, 1))


@pytest.mark.parametrize("reflect", [False, True])
def test_network_with_given_atoms_is_equivariant_and_reads_them(reflect):
    torch.manual_seed(0)
    net = JointEGNN(hidden=24, edge_dim=8, layers=2, atoms_given=True).double().eval()
    for blk in net.blocks:
        torch.nn.init.normal_(blk.coord[2].weight, std=0.3)
    g = torch.Generator().manual_seed(0)
    B, N = 2, 6
    mask = torch.zeros(B, N, dtype=torch.float64)
    mask[0], mask[1, :4] = 1, 1
    pos = torch.randn(B, N, 3, generator=g, dtype=torch.float64) * mask[..., None]
    pos = (pos - pos.sum(1, keepdim=True) / mask.sum(1)[:, None, None]) * mask[..., None]
    bond = torch.triu(torch.randint(0, 4, (B, N, N), generator=g), 1)
    state = {"pos": pos, "charge": torch.randint(0, 3, (B, N), generator=g), "bond": bond + bond.transpose(1, 2)}
    cond = {"mask": mask, "atom_types": torch.randint(0, 5, (B, N), generator=g)}
    t = torch.rand(B, generator=g)
    out = net(state, t, cond)
    assert set(out) == {"pos", "charge", "bond"}
    q = _orthogonal(1, reflect)
    moved = dict(state, pos=(state["pos"] @ q.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)))
    moved["pos"] = moved["pos"] * mask[..., None]
    got = net(moved, t, cond)
    assert (got["pos"] - out["pos"] @ q.T).abs().max() < TOL
    for k in ("charge", "bond"):
        assert (got[k] - out[k]).abs().max() < TOL, k
    assert torch.equal(out["bond"], out["bond"].transpose(1, 2))
    # atoms permuted, with their given types and the matching bond rows and columns
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(4))
    p_state = {k: (v[:, perm][:, :, perm] if k == "bond" else v[:, perm]) for k, v in state.items()}
    got = net(p_state, t, {"mask": mask[:, perm], "atom_types": cond["atom_types"][:, perm]})
    assert (got["pos"][:1] - out["pos"][:1, perm]).abs().max() < TOL
    assert (got["bond"][:1] - out["bond"][:1, perm][:, :, perm]).abs().max() < TOL
    # other atom types, other outputs; none given is an error
    other = net(state, t, dict(cond, atom_types=(cond["atom_types"] + 1) % 5))
    assert (other["bond"] - out["bond"]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="atom_types"):
        net(state, t, {"mask": mask})


def test_tiny_model_samples_the_requested_formula_and_round_trips(bonded, tmp_path):
    from polydiff.training import TrainConfig, train

    model = polydiff.create(
        "molecule_joint",
        modality_config={"formula_conditioning": True},
        hidden=16,
        edge_dim=8,
        layers=2,
        triangle=True,
        triangle_every=2,
    )
    model.modality.fit(bonded)  # load_dataset fits; a dataset given directly is fitted here
    res = train(model, bonded, TrainConfig(steps=2, batch_size=6, progress=False, seed=0))
    assert res.steps == 2
    assert "atom" not in model.parts
    mols = model.sample(3, steps=3, seed=0, cond={"formula": "C3H6O"})
    assert [hill_formula([a.GetSymbol() for a in m.GetAtoms()]) for m in mols] == ["C3H6O"] * 3
    model.save(tmp_path / "m")
    back = polydiff.load(tmp_path / "m")
    assert back.modality.config["formula_hist"] == model.modality.config["formula_hist"]
    assert back.network_kwargs["atoms_given"] is True
    assert [b.triangle is not None for b in back.network.blocks] == [False, True]  # the last block's
    assert torch.equal(back.network.blocks[1].triangle.out.weight, model.network.blocks[1].triangle.out.weight)
    formula = lambda ms: [hill_formula([a.GetSymbol() for a in m.GetAtoms()]) for m in ms]  # noqa: E731
    drawn = back.sample(4, steps=2, seed=1)
    assert all(f in model.modality.config["formula_hist"] for f in formula(drawn))
    again = back.sample(4, steps=2, seed=1)  # the same seed, the same formulas
    assert formula(again) == formula(drawn)
