"""The joint molecule model end to end (modality ``molecule_joint``, network ``egnn_joint``,
dataset ``qm9_bonds``): real QM9 with perceived bonds scores as chemistry, a tiny model
trains, samples, decodes from its predicted bonds, writes SDF with bonds and is scored; the
conformance kit passes."""

from __future__ import annotations

import pytest

import polydiff
from polydiff.plugins.molecule.joint import JointMoleculeModality


def test_real_qm9_with_perceived_bonds_scores_as_chemistry(bonded):
    import numpy as np

    from polydiff.plugins.molecule import chem_checks as cc
    from polydiff.plugins.molecule.qm9 import split_indices

    recs = bonded.records
    assert len(recs) == 60 and not bonded.skipped
    # the same seeded subset of the same split as load_qm9("train", limit=60, seed=0)
    want = np.sort(np.random.default_rng(0).choice(split_indices("train"), size=60, replace=False))
    assert [r.index for r in recs] == want.tolist()
    assert cc.bonded_validity(recs) == 1.0
    assert cc.bonded_connected_validity(recs) == 1.0
    assert cc.bonded_molecule_stability(recs) >= 0.99
    stats = cc.chemistry_stats(recs)
    assert stats["rings"] > 0 and stats["strain_n"] == 60 and stats["strain_median"] > 0


def test_records_with_perceived_bonds_write_those_bonds(bonded, tmp_path):
    from polydiff.plugins.molecule.decode import read_bonded_sdf
    from polydiff.plugins.molecule.io import write_sdf

    recs = bonded.records[:5]
    back = read_bonded_sdf(write_sdf(recs, tmp_path / "q.sdf"))
    for r, m in zip(recs, back):
        got = {
            (min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), max(b.GetBeginAtomIdx(), b.GetEndAtomIdx())): int(
                b.GetBondTypeAsDouble()
            )
            for b in m.GetBonds()
        }
        want = {(int(i), int(j)): int(r.bonds[i, j]) for i, j in zip(*r.bonds.nonzero()) if i < j}
        assert got == want


def test_train_sample_decode_write_and_score(bonded, tmp_path):
    import torch

    from polydiff.training import TrainConfig, train

    torch.manual_seed(0)
    model = polydiff.create("molecule_joint", hidden=32, edge_dim=16, layers=2)
    data = bonded.subset(range(50))
    model.modality.fit(data)
    marg = model.modality.config["marginals"]
    assert marg["bond"][0] > 0.8 and abs(sum(marg["atom"]) - 1) < 1e-9
    res = train(model, data, TrainConfig(steps=4, batch_size=10, progress=False, seed=0, group_by_size=2))
    assert res.steps == 4 and model.modality.item_size(data[0]) == data[0].n_atoms
    mols = model.sample(4, steps=6, seed=0)
    assert len(mols) == 4 and model.modality.last_decode["samples"] == 4
    assert all(m.GetNumConformers() == 1 and m.HasProp("sanitized") for m in mols)
    from polydiff.plugins.molecule.io import png_grid

    assert png_grid(mols, tmp_path / "grid.png").stat().st_size > 0  # drawn from the predicted bonds
    paths = model.modality.write(mols, tmp_path / "out")
    back = model.modality.read(paths[0])
    assert [m.GetNumBonds() for m in back] == [m.GetNumBonds() for m in mols]
    scores = model.modality.evaluate(mols)
    assert set(scores) == set(JointMoleculeModality.default_metrics)
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    again = model.modality.evaluate(back)
    assert again["molecule_joint_validity"] == scores["molecule_joint_validity"]
    # a saved model loads with the same parts and samples the same molecules
    model.save(tmp_path / "ckpt")
    loaded = polydiff.load(tmp_path / "ckpt")
    same = loaded.sample(2, steps=6, seed=0)
    assert [m.GetNumBonds() for m in same] == [m.GetNumBonds() for m in mols[:2]]
    # a checkpoint's sample defaults choose the last step's pick
    loaded.extra["sample_defaults"] = {"final": "argmax"}
    from rdkit import Chem

    picked = [Chem.MolToMolBlock(m) for m in loaded.sample(2, steps=6, seed=0)]
    assert picked == [Chem.MolToMolBlock(m) for m in loaded.sample(2, steps=6, seed=0, final="argmax")]


def test_collate_refuses_records_without_bonds():
    from polydiff.errors import InputError
    from polydiff.plugins.molecule.data import embed_smiles

    mod = JointMoleculeModality()
    with pytest.raises(InputError, match="qm9_bonds"):
        mod.collate([embed_smiles("CO")])


def test_conformance_kit(bonded, tmp_path, monkeypatch):
    from polydiff.testing import check_modality

    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path / "cache"))
    rep = check_modality(JointMoleculeModality, tmp_dir=tmp_path)
    assert ("equivariance", "modality 'molecule_joint'") in rep.passed


def test_options_masked_process_and_cross_entropy(bonded):
    from polydiff.training import TrainConfig, train

    model = polydiff.create(
        "molecule_joint",
        modality_config={"process": "masked", "categorical_loss": "ce"},
        hidden=16,
        edge_dim=8,
        layers=1,
    )
    assert model.network_kwargs["n_bond_states"] == 5  # four classes and the mask token
    data = bonded.subset(range(12))
    model.modality.fit(data)
    res = train(model, data, TrainConfig(steps=2, batch_size=6, progress=False, seed=0))
    assert res.steps == 2
    mols = model.sample(2, steps=3, seed=0)
    assert len(mols) == 2
    with pytest.raises(ValueError, match="categorical_loss"):
        JointMoleculeModality({"categorical_loss": "mse"})


def test_cli_samples_the_molecule_starter_and_refuses_other_modalities(tmp_path, capsys):
    """`polydiff sample molecule` uses starter:molecule-qm9, a molecule_joint model (a molecule
    modality): its SDF carries the predicted bonds; a model of an unrelated modality is refused."""
    from polydiff.cli import main

    assert main(["sample", "molecule", "-n", "2", "--out", str(tmp_path / "m.sdf"), "--device", "cpu"]) == 0
    text = (tmp_path / "m.sdf").read_text()
    assert text.count("$$$$") == 2 and "M  END" in text
    with pytest.raises(SystemExit, match="is a 'molecule_joint' model, not 'image'"):
        main(["sample", "image", "--checkpoint", "starter:molecule-qm9", "-n", "1", "--out", str(tmp_path / "x")])


def test_a_bigger_distillation_student_starts_as_its_teacher(tmp_path):
    """``new_student(..., student_kwargs={"layers": 4})`` (``polydiff distill --student-kwargs``)
    of a 2-block teacher: a 4-block network whose outputs equal the teacher's exactly, saved
    and loaded with its 4 blocks and warm-started again from that checkpoint; a student
    smaller than its weights' source is refused."""
    import torch

    from polydiff.distill import new_student, warm_start
    from polydiff.errors import PolydiffError

    torch.manual_seed(0)
    teacher = polydiff.create("molecule_joint", hidden=16, edge_dim=8, layers=2)
    for blk in teacher.network.blocks:  # coordinate updates that are not near zero
        torch.nn.init.normal_(blk.coord[2].weight, std=0.3)
    teacher.init_ema()
    student = new_student(teacher, "trajectory", {"layers": 4})
    assert len(student.network.blocks) == 4 and student.network_kwargs["layers"] == 4
    assert len(teacher.network.blocks) == 2  # untouched
    kw, g = teacher.network_kwargs, torch.Generator().manual_seed(1)
    B, N = 2, 6
    bond = torch.triu(torch.randint(0, kw["n_bond_states"], (B, N, N), generator=g), 1)
    state = {
        "pos": torch.randn(B, N, 3, generator=g),
        "atom": torch.randint(0, kw["n_atom_states"], (B, N), generator=g),
        "charge": torch.randint(0, kw["n_charge_states"], (B, N), generator=g),
        "bond": bond + bond.transpose(1, 2),
    }
    cond, t = {"mask": torch.ones(B, N)}, torch.tensor([0.3, 0.7])
    want = teacher.ema(state, t, cond)
    for net in (student.network, student.ema):
        got = net(state, t, cond)
        assert all(torch.equal(got[k], want[k]) for k in want)
    student.save(tmp_path / "student")
    back = polydiff.load(tmp_path / "student")
    assert len(back.network.blocks) == 4
    again = new_student(teacher, "trajectory", {"layers": 4})
    warm_start(again, tmp_path / "student")
    assert all(torch.equal(p, q) for p, q in zip(again.network.parameters(), back.ema.parameters()))
    with pytest.raises(PolydiffError, match="does not contain"):
        new_student(back, "trajectory", {"layers": 3})
    with pytest.raises(PolydiffError, match="the teacher: egnn_joint grows only in layers; \\['coords_range'\\]"):
        new_student(teacher, "trajectory", {"layers": 4, "coords_range": 5.0})
    with pytest.raises(PolydiffError, match="student_kwargs.*'egnn_joint'.*unexpected keyword"):
        new_student(teacher, "trajectory", {"depth": 4})
