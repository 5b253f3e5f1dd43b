"""Property-conditional generation with the joint molecule model (issue 18, part 5): properties
flow from records through collate, the network and sampling (``molecule_joint`` with
``properties``, ``egnn_joint`` with ``n_props``); the conditioned network keeps its symmetries;
the EDM-protocol judge :class:`PropertyPredictor` is E(3)- and permutation-invariant, learns a
simple property and round-trips through safetensors; bad requests are clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import polydiff
from polydiff.errors import InputError
from polydiff.plugins.molecule.joint import JointMoleculeModality
from polydiff.plugins.molecule.joint_network import JointEGNN
from polydiff.plugins.molecule.property_predictor import PropertyPredictor, fit_predictor

sys.path.insert(0, str(Path(__file__).parent))
from rotations import orthogonal as _orthogonal  # noqa: E402

PROPS = ["alpha", "gap"]
SMILES = ("C", "CC", "CO", "C=O", "CC#N", "OCC=O", "CN", "C=CC")
TOL = 1e-5


@pytest.fixture(scope="module")
def records():
    """Small molecules with bonds (perceived from their SMILES) and made-up alpha / gap."""
    from polydiff.plugins.molecule.bonds_qm9 import perceive_bonds
    from polydiff.plugins.molecule.data import embed_smiles

    out = []
    for k, smi in enumerate(SMILES):
        rec = embed_smiles(smi, seed=k, index=k)
        b = perceive_bonds(rec.elements, rec.positions, smi)
        assert b.method != "failed"
        rec.bonds, rec.charges = b.order_matrix(rec.n_atoms), b.charges
        rec.properties = {"alpha": 10.0 + 5.0 * rec.n_atoms, "gap": 5.0 + 0.3 * k, "mu": 1.0}
        out.append(rec)
    return out


def _model(records, **kw):
    torch.manual_seed(0)
    model = polydiff.create(
        "molecule_joint", modality_config={"properties": PROPS}, hidden=16, edge_dim=8, layers=1, **kw
    )
    model.modality.fit(records)
    return model


def test_fit_and_collate_give_normalised_properties(records):
    mod = JointMoleculeModality({"properties": PROPS})
    mod.fit(records)
    raw = np.array([[r.properties[p] for p in PROPS] for r in records])
    for j, p in enumerate(PROPS):
        assert mod.config["property_stats"][p] == pytest.approx([raw[:, j].mean(), raw[:, j].std()])
    batch = mod.collate(records)
    props = batch["cond"]["props"]
    assert props.shape == (len(records), 2) and torch.equal(batch["cond"]["cond_mask"], torch.ones(len(records)))
    assert props.mean(0).abs().max() < 1e-5 and (props.std(0, unbiased=False) - 1).abs().max() < 1e-4
    assert np.allclose(mod.denormalise_properties(props), raw, atol=1e-4)
    assert mod.network_kwargs()["n_props"] == 2
    assert "n_props" not in JointMoleculeModality().network_kwargs()  # unconditional kwargs unchanged
    # RDKit Mols carry their properties as Mol properties
    from polydiff.plugins.molecule.decode import bonded_mol

    mol = bonded_mol(records[1].elements, records[1].positions, records[1].bonds, records[1].charges)
    mol.SetDoubleProp("alpha", 20.0)
    mol.SetDoubleProp("gap", 6.0)
    assert np.allclose(mod.record_properties(mol), [20.0, 6.0])


def test_props_change_the_network_and_cond_mask_zero_is_the_null(records):
    model = _model(records)
    net, mod = model.network, model.modality
    assert net.n_props == 2
    batch = mod.collate(records[:4])
    x, cond = batch["x"], batch["cond"]
    t = torch.full((4,), 0.5)
    with torch.no_grad():
        base = net(x, t, cond)
        other = net(x, t, dict(cond, props=cond["props"] + 1.0))
        off_a = net(x, t, dict(cond, cond_mask=torch.zeros(4)))
        off_b = net(x, t, dict(cond, props=torch.randn(4, 2), cond_mask=torch.zeros(4)))
        off_c = net(x, t, {"mask": cond["mask"]})
    for k in ("pos", "atom", "charge", "bond"):
        assert (base[k] - other[k]).abs().max() > 1e-6, k
        assert torch.allclose(off_a[k], off_b[k], atol=1e-6) and torch.allclose(off_a[k], off_c[k], atol=1e-6), k


def test_train_with_cfg_dropout_sample_with_targets_and_reload(records, tmp_path):
    from polydiff.training import TrainConfig, train

    model = _model(records)
    res = train(model, records, TrainConfig(steps=2, batch_size=4, progress=False, seed=0, cond_dropout=0.5))
    assert res.steps == 2
    lo = {"alpha": [20.0, 25.0], "gap": 5.0, "n_atoms": [5, 6]}
    hi = {"alpha": [60.0, 70.0], "gap": 7.0, "n_atoms": [5, 6]}
    a = model.sample(2, steps=4, seed=0, cond=lo)
    b = model.sample(2, steps=4, seed=0, cond=hi)
    assert [m.GetNumAtoms() for m in a] == [5, 6]
    assert a[1].GetDoubleProp("target_alpha") == pytest.approx(25.0) and a[0].GetDoubleProp(
        "target_gap"
    ) == pytest.approx(5.0)
    pa = np.concatenate([m.GetConformer().GetPositions() for m in a])
    pb = np.concatenate([m.GetConformer().GetPositions() for m in b])
    assert np.abs(pa - pb).max() > 1e-6  # the targets change the samples (a near-zero init moves atoms little)
    # the same targets given as normalised props sample the same molecules
    props = torch.stack([model.modality.normalise_properties({"alpha": v, "gap": 5.0}) for v in (20.0, 25.0)])
    same = model.sample(2, steps=4, seed=0, cond={"props": props, "n_atoms": [5, 6]})
    assert np.array_equal(np.concatenate([m.GetConformer().GetPositions() for m in same]), pa)
    # classifier-free guidance and unconditional sampling
    assert len(model.sample(2, steps=3, seed=0, cond=hi, guidance=2.0)) == 2
    assert not model.sample(1, steps=3, seed=0)[0].HasProp("target_alpha")
    # a checkpoint keeps the properties and their statistics
    model.save(tmp_path / "ckpt")
    loaded = polydiff.load(tmp_path / "ckpt")
    assert loaded.modality.config["property_stats"] == model.modality.config["property_stats"]
    again = loaded.sample(2, steps=4, seed=0, cond=lo)
    assert np.array_equal(np.concatenate([m.GetConformer().GetPositions() for m in again]), pa)


def test_missing_and_unknown_properties_are_clear_errors(records):
    import copy

    mod = JointMoleculeModality({"properties": PROPS})
    bad = [copy.copy(r) for r in records[:3]]
    bad[2].properties = {"alpha": 1.0}
    with pytest.raises(InputError, match=r"record 2.*field 'gap'.*no property 'gap'"):
        mod.fit(bad)
    mod.fit(records)
    with pytest.raises(InputError, match="field 'gap'"):
        mod.collate(bad)
    rng = polydiff.rng.SampleRNG(0, 2)
    with pytest.raises(ValueError, match=r"missing \['gap'\]"):
        mod.sampling_request(2, {"alpha": 3.0}, rng)
    with pytest.raises(ValueError, match=r"unknown molecule_joint conditions \['homo'\]"):
        mod.sampling_request(2, {"alpha": 3.0, "gap": 1.0, "homo": 2.0}, rng)
    with pytest.raises(ValueError, match="3 values for 2 samples"):
        mod.sampling_request(2, {"alpha": [1.0, 2.0, 3.0], "gap": 1.0}, rng)
    with pytest.raises(ValueError, match=r"props must be \[n, P\]"):
        mod.sampling_request(2, {"props": torch.zeros(2, 3)}, rng)
    with pytest.raises(ValueError, match="unknown molecule_joint conditions"):
        JointMoleculeModality().sampling_request(2, {"alpha": 1.0, "n_atoms": 3}, rng)
    with pytest.raises(ValueError, match="fit the modality"):
        JointMoleculeModality({"properties": PROPS}).sampling_request(1, {"alpha": 1.0, "gap": 1.0, "n_atoms": 3}, rng)
    with pytest.raises(ValueError, match="list of property names"):
        JointMoleculeModality({"properties": "alpha"})
    _, c = mod.sampling_request(2, {"n_atoms": 3}, rng)  # no targets: unconditional
    assert torch.equal(c["cond_mask"], torch.zeros(2))


# -- the conditioned network's symmetries (float64) --------------------------------------------------
def _state(B, N, counts, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, N, dtype=torch.float64)
    for b, k in enumerate(counts):
        mask[b, :k] = 1
    pos = torch.randn(B, N, 3, generator=g, dtype=torch.float64) * mask[..., None]
    pos = (pos - pos.sum(1, keepdim=True) / mask.sum(1)[:, None, None]) * mask[..., None]
    bond = torch.triu(torch.randint(0, 4, (B, N, N), generator=g), 1)
    state = {
        "pos": pos,
        "atom": torch.randint(0, 5, (B, N), generator=g),
        "charge": torch.randint(0, 3, (B, N), generator=g),
        "bond": bond + bond.transpose(1, 2),
    }
    cond = {"mask": mask, "props": torch.randn(B, 2, generator=g, dtype=torch.float64), "cond_mask": torch.ones(B)}
    return state, cond, torch.rand(B, generator=g, dtype=torch.float64).float()


@pytest.mark.parametrize("reflect", [False, True])
def test_conditioned_network_is_equivariant(reflect):
    torch.manual_seed(0)
    net = JointEGNN(hidden=24, edge_dim=8, layers=2, n_props=2).double().eval()
    for blk in net.blocks:
        torch.nn.init.normal_(blk.coord[2].weight, std=0.3)
    state, cond, t = _state(2, 6, (6, 4))
    out = net(state, t, cond)
    q = _orthogonal(1, reflect)
    moved = dict(state, pos=(state["pos"] @ q.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)))
    moved["pos"] = moved["pos"] * cond["mask"][..., None]
    got = net(moved, t, cond)
    assert (got["pos"] - out["pos"] @ q.T).abs().max() < TOL
    for k in ("atom", "charge", "bond"):
        assert (got[k] - out[k]).abs().max() < TOL, k
    assert torch.equal(out["bond"], out["bond"].transpose(1, 2))
    # atoms permuted with the matching permutation of bond rows and columns
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(4))
    p_state = {k: (v[:, perm][:, :, perm] if k == "bond" else v[:, perm]) for k, v in state.items()}
    p_cond = dict(cond, mask=cond["mask"][:, perm])
    got = net(p_state, t, p_cond)
    assert (got["pos"][:1] - out["pos"][:1, perm]).abs().max() < TOL
    assert (got["atom"][:1] - out["atom"][:1, perm]).abs().max() < TOL
    assert (got["bond"][:1] - out["bond"][:1, perm][:, :, perm]).abs().max() < TOL


# -- the property predictor ----------------------------------------------------------------------------
def _predictor_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    B, N = 3, 7
    mask = torch.zeros(B, N, dtype=torch.float64)
    for b, k in enumerate((7, 5, 3)):
        mask[b, :k] = 1
    pos = torch.randn(B, N, 3, generator=g, dtype=torch.float64) * 1.5 * mask[..., None]
    bond = torch.triu(torch.randint(0, 4, (B, N, N), generator=g), 1)
    return torch.randint(0, 5, (B, N), generator=g), pos, mask, bond + bond.transpose(1, 2)


@pytest.mark.parametrize("reflect", [False, True])
def test_predictor_is_invariant(reflect):
    torch.manual_seed(0)
    net = PropertyPredictor(hidden=24, layers=2, use_bonds=True).double().eval()
    atom, pos, mask, bond = _predictor_batch()
    out = net(atom, pos, mask, bond)
    assert out.shape == (3, 2)
    q = _orthogonal(2, reflect)
    moved = (pos @ q.T + torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)) * mask[..., None]
    assert (net(atom, moved, mask, bond) - out).abs().max() < TOL
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(5))
    got = net(atom[:, perm], pos[:, perm], mask[:, perm], bond[:, perm][:, :, perm])
    assert (got - out).abs().max() < TOL
    # padding does not leak
    assert (net(atom[2:, :3], pos[2:, :3], mask[2:, :3], bond[2:, :3, :3]) - out[2:]).abs().max() < TOL


def _random_molecules(n, seed):
    from polydiff.plugins.molecule.data import MoleculeRecord

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        m = int(rng.integers(3, 9))
        pos = rng.normal(size=(m, 3)) * rng.uniform(0.6, 2.0)
        rg = float(np.sqrt(((pos - pos.mean(0)) ** 2).sum(1).mean()))
        els = list(rng.choice(["C", "H", "O"], size=m))
        out.append(MoleculeRecord(els, pos, properties={"rg": rg, "n": float(m)}, index=k))
    return out


def test_predictor_learns_a_synthetic_property_and_round_trips(tmp_path):
    train_set, test_set = _random_molecules(64, 0), _random_molecules(32, 1)
    net, rows = fit_predictor(
        train_set, ["rg", "n"], hidden=32, layers=2, steps=300, batch_size=16, lr=3e-3, valid=test_set, seed=0
    )
    assert rows[-1]["step"] == 300 and np.isfinite(rows[-1]["loss"])
    tgt = np.array([[r.properties["rg"], r.properties["n"]] for r in test_set])
    baseline = np.abs(tgt - tgt.mean(0)).mean(0)  # predicting the mean
    mae = net.mae(test_set)
    assert mae["rg"] < 0.35 * baseline[0] and mae["n"] < 0.25 * baseline[1], (mae, baseline)
    # invariant predictions on the rotated molecules
    q = _orthogonal(3, False).numpy()
    turned = [type(r)(r.elements, r.positions @ q.T, properties=r.properties) for r in test_set]
    assert np.allclose(net.predict(turned), net.predict(test_set), atol=1e-4)
    # safetensors round trip (no pickle)
    path = net.save(tmp_path / "predictor.safetensors")
    assert path.read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle
    back = PropertyPredictor.load(path)
    assert back.config == net.config
    assert np.allclose(back.predict(test_set), net.predict(test_set), atol=1e-6)
    from safetensors.torch import save_file

    from polydiff.errors import CheckpointError

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a property predictor"):
        PropertyPredictor.load(tmp_path / "other.safetensors")


def test_predictor_names_records_without_the_property():
    recs = _random_molecules(3, 2)
    recs[1].properties = {"n": 3.0}
    with pytest.raises(InputError, match=r"record 1.*field 'rg'"):
        fit_predictor(recs, ["rg"], steps=1)
    with pytest.raises(InputError, match="bonds"):
        PropertyPredictor(["n"], use_bonds=True).featurize(recs)


def test_conformance_kit_with_properties(tmp_path, monkeypatch):
    from polydiff.testing import check_modality

    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path / "cache"))
    rep = check_modality(
        JointMoleculeModality,
        tmp_dir=tmp_path,
        modality_config={"properties": PROPS},
        sample_cond={"alpha": 70.0, "gap": 6.5},
    )
    assert ("equivariance", "modality 'molecule_joint'") in rep.passed
