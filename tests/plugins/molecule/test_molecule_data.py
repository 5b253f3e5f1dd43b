"""Loaders: QM9 (qm9pack) splits and variants, SDF / XYZ / SMILES, and bad input."""

import numpy as np
import pytest

from polydiff.errors import InputError
from polydiff.plugins.molecule import data as D
from polydiff.plugins.molecule import qm9
from polydiff.plugins.molecule.io import read_molecules, write_sdf, write_xyz


def test_qm9_splits_have_edm_sizes_and_are_disjoint():
    parts = {s: qm9.split_indices(s) for s in ("train", "valid", "test")}
    assert {s: len(v) for s, v in parts.items()} == {"train": 100_000, "valid": 17_748, "test": 13_083}
    allidx = np.concatenate(list(parts.values()))
    assert len(np.unique(allidx)) == qm9.N_MOLECULES == 130_831
    assert np.array_equal(qm9.split_indices("train"), parts["train"])  # seeded: reproducible


def test_qm9_records_properties_and_heavy_atom_variant(qm9_small):
    assert len(qm9_small) == 300
    assert qm9_small.elements == ("H", "C", "N", "O", "F")
    r = qm9_small[0]
    assert set(r.properties) == set(qm9.QM9PACK_PROPERTIES)
    assert r.positions.shape == (r.n_atoms, 3) and r.n_atoms <= 29
    assert all(rec.index in set(qm9.split_indices("train").tolist()) for rec in qm9_small.records[:20])
    # gap = LUMO − HOMO (eV; the columns are rounded to 1e-4 Ha), a check of units and columns
    for rec in qm9_small.records[:50]:
        p = rec.properties
        assert p["gap"] == pytest.approx(p["lumo"] - p["homo"], abs=1.5e-4 * qm9.HARTREE_EV)
        assert sum(e != "H" for e in rec.elements) <= 9
    heavy = [rec.without_hydrogens() for rec in qm9_small.records[:10]]
    assert all("H" not in h.elements for h in heavy)
    hist = qm9_small.atom_count_histogram()
    assert sum(hist.values()) == 300


def test_first_qm9pack_molecule_is_methane_and_matches_the_official_file():
    col, total = qm9._iter_qm9pack({0}, "raise")
    assert total == qm9.N_MOLECULES
    (rec,) = col.records
    assert rec.elements == ["C", "H", "H", "H", "H"] and rec.smiles == "C"
    assert rec.properties["alpha"] == pytest.approx(13.21)
    assert rec.positions[0] == pytest.approx([-0.0126981359, 1.0858041578, 0.0080009958])
    assert rec.partial_charges[0] == pytest.approx(-0.535689)


def _smiles_dataset():
    return D.load_smiles(["CCO", "C#N", "O=C=O"], seed=0)


def test_smiles_embedding_gives_physical_geometry():
    ds = _smiles_dataset()
    assert [r.n_atoms for r in ds] == [9, 3, 3]
    ethanol = ds[0]
    c = [i for i, e in enumerate(ethanol.elements) if e == "C"]
    d = np.linalg.norm(ethanol.positions[c[0]] - ethanol.positions[c[1]])
    assert 1.48 < d < 1.56  # MMFF C–C single bond ≈ 1.51 Å


def test_sdf_and_xyz_round_trip(tmp_path):
    ds = _smiles_dataset()
    sdf = write_sdf(ds.records, tmp_path / "m.sdf")
    xyz = write_xyz(ds.records, tmp_path / "m.xyz")
    for loader, path in ((D.load_sdf, sdf), (D.load_xyz, xyz)):
        back = loader(path)
        assert len(back) == 3
        for a, b in zip(ds.records, back.records):
            assert a.elements == b.elements
            assert np.abs(a.positions - b.positions).max() < 1e-4
    mols = read_molecules(tmp_path)  # a folder with both files
    assert len(mols) == 6


def test_broken_sdf_record_names_file_and_record(tmp_path):
    ds = _smiles_dataset()
    text = write_sdf(ds.records, tmp_path / "ok.sdf").read_text()
    blocks = text.split("$$$$\n")
    blocks[1] = blocks[1].replace("V2000", "V2OOO")  # corrupt record 1
    bad = tmp_path / "bad.sdf"
    bad.write_text("$$$$\n".join(blocks))
    with pytest.raises(InputError) as e:
        D.load_sdf(bad)
    assert "bad.sdf" in str(e.value) and "record 1" in str(e.value)
    with pytest.warns(UserWarning, match="skipped 1"):
        skipped = D.load_sdf(bad, on_error="skip")
    assert len(skipped) == 2 and len(skipped.skipped) == 1 and skipped.skipped[0][1] == 1
    assert "1 record(s) skipped" in skipped.skip_report()


def test_unknown_element_and_nan_coordinates(tmp_path):
    f = tmp_path / "x.xyz"
    f.write_text("2\nfirst\nC 0 0 0\nO 0 0 1.2\n2\nsecond\nC 0 0 0\nXq 0 0 1\n2\nthird\nC 0 0 0\nO nan 0 1\n")
    with pytest.raises(InputError, match=r"record 1.*element"):
        D.load_xyz(f)
    with pytest.warns(UserWarning):
        ds = D.load_xyz(f, on_error="skip")
    assert len(ds) == 1 and [s[1] for s in ds.skipped] == [1, 2]
    assert "non-finite" in ds.skipped[1][2] and "x.xyz" in ds.skipped[1][2]
    # an element outside a given vocabulary is refused by name
    g = tmp_path / "s.xyz"
    g.write_text("1\n\nS 0 0 0\n")
    with pytest.raises(InputError, match="vocabulary"):
        D.load_xyz(g, elements=("H", "C", "N", "O", "F"))


def test_bad_smiles_and_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"record 1.*smiles"):
        D.load_smiles(["CC", "C1CC", "CO"])
    with pytest.warns(UserWarning):
        ds = D.load_smiles(["CC", "C1CC", "CO"], on_error="skip")
    assert len(ds) == 2 and len(ds.skipped) == 1
    with pytest.raises(InputError, match="no such file"):
        D.load_sdf(tmp_path / "missing.sdf")


def test_read_molecules_reads_smi_files_with_names_and_names_a_bad_line(tmp_path):
    f = tmp_path / "in.smi"
    f.write_text("# two molecules and a comment\nCCO ethanol\n\nC#N hydrogen cyanide\n")
    mols = read_molecules(f)
    assert len(mols) == 2 and all(m.GetNumConformers() == 1 for m in mols)
    assert sorted(a.GetSymbol() for a in mols[0].GetAtoms()) == sorted("CCOHHHHHH")
    ds = D.load_smiles(f)
    assert [r.name for r in ds.records] == ["ethanol", "hydrogen cyanide"]
    bad = tmp_path / "bad.smi"
    bad.write_text("CC one\n# comment\nC1CC broken\nCO three\n")
    with pytest.raises(InputError) as e:
        read_molecules(bad)
    assert (e.value.file, e.value.record, e.value.field) == (str(bad), "line 3", "smiles")
    with pytest.warns(UserWarning, match="skipped 1"):
        assert len(read_molecules(bad, on_error="skip")) == 2
    with pytest.warns(UserWarning, match="skipped 1"):
        assert len(read_molecules(tmp_path, on_error="skip")) == 2 + 2  # a folder of .smi files


def test_empty_sdf_warns(tmp_path):
    f = tmp_path / "empty.sdf"
    f.write_text("")
    with pytest.warns(UserWarning, match="empty.sdf.*no molecules"):
        assert read_molecules(f) == []


def test_unknown_element_in_an_sdf_is_named(tmp_path):
    ds = _smiles_dataset()
    text = write_sdf(ds.records, tmp_path / "ok.sdf").read_text()
    blocks = text.split("$$$$\n")
    lines = blocks[1].splitlines()
    lines[4] = lines[4][:31] + "Xx " + lines[4][34:]  # the first atom of record 1
    blocks[1] = "\n".join(lines) + "\n"
    bad = tmp_path / "bad.sdf"
    bad.write_text("$$$$\n".join(blocks))
    with pytest.raises(InputError, match=r"record 1.*element.*'Xx' \(atom 1\)"):
        D.load_sdf(bad)
    with pytest.warns(UserWarning, match="skipped 1"):
        assert len(D.load_sdf(bad, on_error="skip")) == 2


def test_official_qm9_xyz_format_parser():
    # the first molecule of the official archive (methane), in its extended-XYZ format
    text = (
        "5\ngdb 1\t157.7118\t157.70997\t157.70699\t0.\t13.21\t-0.3877\t0.1171\t0.5048\t35.3641\t0.044749\t"
        "-40.47893\t-40.476062\t-40.475117\t-40.498597\t6.469\t\n"
        "C\t-0.0126981359\t 1.0858041578\t 0.0080009958\t-0.535689\n"
        "H\t 0.002150416\t-0.0060313176\t 0.0019761204\t 0.133921\n"
        "H\t 1.0117308433\t 1.4637511618\t 0.0002765748\t 0.133922\n"
        "H\t-0.540815069\t 1.4475266138\t-0.8766437152\t 0.133923\n"
        "H\t-0.5238136345\t 1.4379326443\t 0.9063972942\t 0.133923\n"
        "1341.307\t1341.3284\t1341.365\t1562.6731\t1562.7453\t3038.3205\t3151.6034\t3151.6788\t3151.7078\n"
        "C\tC\t\nInChI=1S/CH4/h1H4\tInChI=1S/CH4/h1H4\n"
    )
    rec = qm9.parse_qm9_xyz(text, file="dsgdb9nsd_000001.xyz")
    assert rec.elements == ["C", "H", "H", "H", "H"] and rec.smiles == "C"
    assert rec.properties["alpha"] == pytest.approx(13.21)
    assert rec.properties["gap"] == pytest.approx(0.5048 * qm9.HARTREE_EV)
    with pytest.raises(InputError, match="properties"):
        qm9.parse_qm9_xyz(text.replace("gdb 1", "xyz 1"), file="f.xyz")
