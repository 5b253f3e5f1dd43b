"""The molecule modality through the public API: train, sample, decode, save/load, CFG,
fragment inpainting, files."""

import numpy as np
import pytest
import torch

import polydiff
from polydiff.plugins.molecule.fragments import inpaint_fragment
from polydiff.plugins.molecule.io import png_grid
from polydiff.plugins.molecule.metrics import evaluate_molecules
from polydiff.training import TrainConfig, train

TINY = {"egnn": {"hidden": 16, "layers": 2}, "e3nn_molecule": {"scalars": 8, "vectors": 2, "layers": 2}}


def _model(qm9_small, network="egnn", steps=2, **cfg):
    torch.manual_seed(0)
    model = polydiff.create("molecule", network=network, modality_config=cfg or None, **TINY[network])
    model.modality.fit(qm9_small)
    train(model, qm9_small, TrainConfig(steps=steps, batch_size=8, progress=False, cond_dropout=0.2 if cfg else 0.0))
    return model


def test_plugin_registers_everything():
    names = {(r["kind"], r["name"]) for r in polydiff.plugins_table() if r["plugin"] == "molecule"}
    for item in [
        ("modality", "molecule"),
        ("network", "egnn"),
        ("network", "e3nn_molecule"),
        ("dataset", "qm9"),
        ("dataset", "sdf"),
        ("dataset", "xyz"),
        ("dataset", "smiles"),
        ("metric", "molecule_stability"),
        ("metric", "molecule_validity"),
        ("metric", "molecule_novelty"),
        ("metric", "molecule_bond_angle_w1"),
        ("benchmark", "molecule/qm9"),
        ("benchmark", "molecule_joint/qm9"),
    ]:
        assert item in names
    # the quick suite's molecule task is the bond-aware joint model; the EDM-class one runs in standard/gpu
    from polydiff.bench.runner import select_tasks

    quick = {
        e.name for e in select_tasks({"name": "quick", "budget": "quick", "tasks": ["*"]}, "molecule,molecule_joint")
    }
    standard = {e.name for e in select_tasks({"name": "standard", "tasks": ["*"]}, None)}
    assert "molecule_joint/qm9" in quick and "molecule/qm9" not in quick
    assert {"molecule_joint/qm9", "molecule/qm9"} <= standard
    reg = polydiff.registry("metric")
    assert reg.entry("molecule_atom_stability").info["higher_is_better"] is True
    assert reg.entry("molecule_bond_length_w1").info["higher_is_better"] is False


@pytest.mark.parametrize("network", ["egnn", "e3nn_molecule"])
def test_save_load_sample_identical(qm9_small, tmp_path, network):
    model = _model(qm9_small, network)
    assert model.modality.config["max_atoms"] == max(r.n_atoms for r in qm9_small.records)
    mols = model.sample(3, sampler="dpmpp_2m", steps=4, seed=5)
    assert len(mols) == 3 and all(m.GetNumConformers() == 1 for m in mols)
    hist = {int(k) for k in model.modality.config["n_atoms_hist"]}
    assert all(m.GetNumAtoms() in hist for m in mols)
    model.save(tmp_path / "ck")
    loaded = polydiff.load(tmp_path / "ck")
    a, ca = model.sample_raw(3, steps=4, seed=5)
    b, cb = loaded.sample_raw(3, steps=4, seed=5)
    assert torch.equal(a, b) and torch.equal(ca["mask"], cb["mask"])
    # positions of the decoded Mol equal the state (Å) and have zero centre of mass
    pos = mols[0].GetConformer().GetPositions()
    n = mols[0].GetNumAtoms()
    assert np.abs(pos - a[0, :n, :3].double().numpy()).max() < 1e-5
    assert np.abs(pos.mean(0)).max() < 1e-4


def test_samples_do_not_depend_on_batch(qm9_small):
    model = _model(qm9_small)
    one, c1 = model.sample_raw(1, steps=3, seed=11)
    three, c3 = model.sample_raw(3, steps=3, seed=11)
    assert torch.equal(c1["mask"][0], c3["mask"][0])
    assert (one[0] - three[0]).abs().max() < 1e-4
    fixed, c = model.sample_raw(2, steps=3, seed=1, cond={"n_atoms": [5, 12]})
    assert c["mask"].sum(1).tolist() == [5.0, 12.0]
    assert fixed[0, 5:].abs().max() == 0


def test_property_conditional_cfg(qm9_small):
    model = _model(qm9_small, steps=3, properties=["alpha"])
    mean, std = model.modality.config["property_stats"]["alpha"]
    assert mean == pytest.approx(np.mean([r.properties["alpha"] for r in qm9_small.records]))
    batch = model.modality.collate(qm9_small.records[:4])
    assert batch["cond"]["props"].shape == (4, 1)
    c_on, cc = model.sample_raw(2, steps=3, seed=2, cond={"alpha": 80.0, "n_atoms": 10})
    assert cc["cond_mask"].tolist() == [1.0, 1.0]
    assert cc["props"][0, 0].item() == pytest.approx((80.0 - mean) / std, rel=1e-5)
    guided, _ = model.sample_raw(2, steps=3, seed=2, cond={"alpha": 80.0, "n_atoms": 10}, guidance=3.0)
    uncond, cu = model.sample_raw(2, steps=3, seed=2, cond={"n_atoms": 10})
    assert cu["cond_mask"].tolist() == [0.0, 0.0]
    assert (guided - c_on).abs().max() > 1e-6 and (c_on - uncond).abs().max() > 1e-6
    mols = model.sample(1, steps=3, seed=2, cond={"alpha": 80.0})
    assert mols[0].GetDoubleProp("target_alpha") == pytest.approx(80.0, rel=1e-5)


def test_fragment_inpainting_keeps_fixed_atoms(qm9_small):
    model = _model(qm9_small)
    rec = next(r for r in qm9_small.records if r.n_atoms >= 12)
    k = 5
    frag_el, frag_pos = rec.elements[:k], rec.positions[:k] + np.array([3.0, -2.0, 1.0])  # off-centre on purpose
    mols = inpaint_fragment(model, frag_el, frag_pos, n_atoms=rec.n_atoms, n=3, steps=6, seed=0)
    for m in mols:
        assert [a.GetSymbol() for a in m.GetAtoms()][:k] == list(frag_el)
        pos = m.GetConformer().GetPositions()
        assert np.abs(pos[:k] - frag_pos).max() < 1e-4
        assert m.GetNumAtoms() == rec.n_atoms
    # the free atoms were generated (not copied): they differ between samples
    p = [m.GetConformer().GetPositions()[k:] for m in mols]
    assert np.abs(p[0] - p[1]).max() > 1e-3


def test_files_round_trip_and_metrics_agree(qm9_small, tmp_path):
    model = _model(qm9_small)
    mols = model.sample(4, steps=3, seed=0)
    paths = model.modality.write(mols, tmp_path / "out.sdf") + model.modality.write(mols, tmp_path / "out.xyz")
    direct = evaluate_molecules(mols, reference=qm9_small.records[:50], novelty_reference=None)
    for p in paths:
        back = model.modality.read(p)
        assert len(back) == 4
        again = evaluate_molecules(back, reference=qm9_small.records[:50], novelty_reference=None)
        for key in ("molecule_atom_stability", "molecule_stability", "molecule_validity", "molecule_uniqueness"):
            assert again[key] == direct[key]
        assert again["molecule_bond_length_w1"] == pytest.approx(direct["molecule_bond_length_w1"], abs=1e-4)
    png = png_grid(mols, tmp_path / "grid.png")
    from PIL import Image

    assert Image.open(png).size[0] >= 500


def test_rdkit_bond_option_and_cli_eval(qm9_small, tmp_path, capsys):
    from polydiff.cli import main
    from polydiff.plugins.molecule.chem import to_mol
    from polydiff.plugins.molecule.io import write_sdf

    rec = qm9_small.records[0]
    m = to_mol(rec.elements, rec.positions, bonds="rdkit")
    assert m.GetNumBonds() > 0 and m.GetProp("bond_method").startswith("rdkit")
    write_sdf(qm9_small.records[:20], tmp_path / "real.sdf")
    assert (
        main(["eval", "molecule", str(tmp_path / "real.sdf"), "--metrics", "molecule_atom_stability,molecule_validity"])
        == 0
    )
    out = capsys.readouterr().out
    assert '"molecule_atom_stability"' in out


def test_auxiliary_bond_length_loss(qm9_small, orthogonal):
    """Zero for the true molecule, positive when bonds are stretched, invariant under
    rotation/reflection + translation and atom permutation; ignores padding and types."""
    mod = polydiff.create("molecule", network="egnn", **TINY["egnn"]).modality
    mod.fit(qm9_small)
    batch = mod.collate(qm9_small.records[:4])
    x0, cond = batch["x"].double(), batch["cond"]
    w = torch.ones(4, dtype=torch.float64)
    low = torch.full((4,), 0.1, dtype=torch.float64)
    assert mod.auxiliary_loss(x0, x0, low, cond, w).abs().max() < 1e-12
    g = torch.Generator().manual_seed(0)
    hat = x0.clone()
    hat[..., :3] = hat[..., :3] * 1.03  # every bond 3 % too long
    a = mod.auxiliary_loss(hat, x0, low, cond, w)
    assert (a > 1e-4).all()
    hat2 = hat.clone()
    hat2[..., 3:] = torch.randn(hat2[..., 3:].shape, generator=g, dtype=torch.float64)  # types: no effect
    hat2[cond["mask"] == 0] = 77.0  # padding: no effect
    assert torch.allclose(mod.auxiliary_loss(hat2, x0, low, cond, w), a)
    q = orthogonal(g, torch.float64, reflect=True)
    moved = hat.clone()
    moved[..., :3] = hat[..., :3] @ q.T + 1.5
    assert torch.allclose(mod.auxiliary_loss(moved, x0, low, cond, w), a, atol=1e-12)
    n0 = int(cond["mask"][0].sum())
    perm = torch.randperm(n0, generator=g)
    xp, hp = x0[:1].clone(), hat[:1].clone()
    xp[0, :n0], hp[0, :n0] = x0[0, perm], hat[0, perm]
    assert torch.allclose(mod.auxiliary_loss(hp, xp, low[:1], {"mask": cond["mask"][:1]}, w[:1]), a[:1])
    assert mod.auxiliary_loss(hat, x0, torch.full((4,), 5.0, dtype=torch.float64), cond, w).abs().max() == 0


def test_png_grid_survives_graphs_rdkit_cannot_depict(tmp_path):
    """A raw sampled graph (random atoms bonded by the EDM rules; found by a seeded search)
    makes RDKit's depiction raise "Cannot normalize a zero length vector": the grid is still
    written, with that cell labelled."""
    from pathlib import Path

    from PIL import Image
    from rdkit import Chem
    from rdkit.Chem import AllChem, Draw

    bad = Chem.MolFromMolBlock(
        (Path(__file__).parent / "data" / "undrawable_raw_sample.mol").read_text(), sanitize=False, removeHs=False
    )
    probe = Chem.Mol(bad)
    probe.UpdatePropertyCache(strict=False)
    AllChem.Compute2DCoords(probe)
    with pytest.raises(RuntimeError, match="zero length"):
        Draw.MolsToGridImage([probe])
    good = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(good, randomSeed=0)
    path = png_grid([good, bad, good], tmp_path / "grid.png", per_row=2, size=120)
    assert Image.open(path).size == (240, 240)
