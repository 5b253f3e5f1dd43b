"""QM9 bonds and charges perceived with RDKit (plugins/molecule/bonds_qm9.py): the methods,
the counted failures, the on-disk cache, and real QM9 molecules scoring as chemistry."""

from __future__ import annotations

import numpy as np
import pytest

from polydiff.errors import InputError
from polydiff.plugins.molecule import bonds_qm9
from polydiff.plugins.molecule.bonds_qm9 import BondTable, attach_bonds, perceive_bonds, qm9_bond_table
from polydiff.plugins.molecule.data import MoleculeDataset, MoleculeRecord, embed_smiles


def test_smiles_graph_is_matched_onto_the_3d_atoms_with_kekule_orders():
    rec = embed_smiles("C#CC(=O)N", seed=1)
    order = np.random.default_rng(0).permutation(rec.n_atoms)  # scramble the atom order
    el = [rec.elements[i] for i in order]
    b = perceive_bonds(el, rec.positions[order], "NC(=O)C#C")
    assert b.method == "smiles"
    m = b.order_matrix(len(el))
    assert (m == m.T).all() and np.trace(m) == 0
    got = sorted(
        (tuple(sorted((el[i], el[j]))), int(m[i, j]))
        for i, j in zip(*np.nonzero(np.triu(m)))
        if "H" not in (el[i], el[j])
    )
    assert got == [(("C", "C"), 1), (("C", "C"), 3), (("C", "N"), 1), (("C", "O"), 2)]
    assert (m.sum(1)[[k for k, e in enumerate(el) if e == "C"]] == 4).all()


def test_charges_come_from_the_smiles():
    rec = embed_smiles("C[N+](=O)[O-]", seed=0)
    b = perceive_bonds(rec.elements, rec.positions, "C[N+](=O)[O-]")
    assert b.method == "smiles"
    assert sorted(b.charges.tolist()) == sorted([0] * (rec.n_atoms - 2) + [1, -1])


def test_a_molecule_that_cannot_be_perceived_is_reported_with_its_index(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path))
    # a carbon with four hydrogens 3 A away: no contacts for the SMILES bonds, and xyz2mol
    # cannot give isolated atoms with charge 0 a closed-shell assignment
    pos = np.array([[0, 0, 0], [3, 0, 0], [-3, 0, 0], [0, 3, 0], [0, 0, 3.0]])
    bad = MoleculeRecord(["C", "H", "H", "H", "H"], pos, smiles="C", index=123456)
    good = embed_smiles("CO", seed=0)
    good.index = 7
    table = qm9_bond_table([bad, good])
    assert table.counts()["failed"] == 1 and table.failures[0][0] == 123456
    assert "123456" in table.report()
    ds = MoleculeDataset([bad, good], name="t")
    with pytest.warns(UserWarning, match="123456"):
        attach_bonds(ds)
    assert [r.index for r in ds.records] == [7] and ds.skipped[0][1] == 123456
    with pytest.raises(InputError, match="record 123456"):
        attach_bonds(MoleculeDataset([bad]), on_error="raise")


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path))
    rec = embed_smiles("OCC#N", seed=0)
    rec.index = 3
    first = qm9_bond_table([rec]).by_index[3]
    assert bonds_qm9.cache_path().is_file()

    def boom(*a, **k):
        raise AssertionError("perceived again")

    monkeypatch.setattr(bonds_qm9, "perceive_bonds", boom)
    again = qm9_bond_table([rec]).by_index[3]
    assert again.method == first.method
    np.testing.assert_array_equal(again.order_matrix(rec.n_atoms), first.order_matrix(rec.n_atoms))
    np.testing.assert_array_equal(again.charges, first.charges)


def test_a_corrupt_cache_names_its_file(tmp_path):
    p = tmp_path / "bad.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        BondTable.from_file(p)
