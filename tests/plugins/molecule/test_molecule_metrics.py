"""EDM bond rules and metrics: closed-form cases and the published QM9 data row."""

import numpy as np
import pytest

from polydiff.plugins.molecule import bonds
from polydiff.plugins.molecule import metrics as M
from polydiff.plugins.molecule.data import MoleculeRecord


def test_bond_order_thresholds_follow_edm_margins():
    # C–C: single 154 (+10), double 134 (+5), triple 120 (+3) pm
    assert bonds.bond_order("C", "C", 1.6399) == 1
    assert bonds.bond_order("C", "C", 1.6401) == 0
    assert bonds.bond_order("C", "C", 1.3899) == 2
    assert bonds.bond_order("C", "C", 1.3901) == 1
    assert bonds.bond_order("C", "C", 1.2299) == 3
    assert bonds.bond_order("C", "C", 1.2301) == 2
    # pairs without double/triple entries stay single however short
    assert bonds.bond_order("C", "H", 0.80) == 1
    assert bonds.bond_order("H", "C", 1.1899) == 1 and bonds.bond_order("C", "H", 1.1901) == 0
    assert bonds.bond_order("F", "F", 1.00) == 1
    assert bonds.bond_order("C", "S", 1.5) == 0  # not tabulated


def test_vectorised_orders_equal_scalar_rule():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 12))
        el = list(rng.choice(list(bonds.VALENCE), size=n))
        pos = rng.normal(scale=1.2, size=(n, 3))
        mat = bonds.bond_order_matrix(el, pos)
        for i in range(n):
            for j in range(n):
                expect = 0 if i == j else bonds.bond_order(el[i], el[j], np.linalg.norm(pos[i] - pos[j]))
                assert mat[i, j] == expect


def _ethyne(stretch=0.0):
    # H–C≡C–H on the z axis: C≡C 1.20 Å, C–H 1.06 Å
    z = [-1.66 - stretch, -0.60, 0.60, 1.66]
    return MoleculeRecord(["H", "C", "C", "H"], np.array([[0, 0, v] for v in z], dtype=float))


def test_metrics_on_hand_built_molecules():
    good, bad = _ethyne(), _ethyne(stretch=0.5)  # stretched H: no C–H bond, 2 atoms unstable
    assert M.atom_stability_metric([good]) == 1.0
    assert M.molecule_stability_metric([good, bad]) == 0.5
    assert M.atom_stability_metric([bad]) == 0.5
    assert M.validity_metric([good, bad]) == 1.0  # RDKit adds an implicit H to the C, H alone is a fragment
    assert M.connected_validity_metric([good, bad]) == 0.5
    assert M.uniqueness_metric([good, good]) == 0.5
    # EDM keeps hydrogens as explicit atoms, so they appear in the SMILES
    assert M.smiles_of([good]) == [("[H]C#C[H]", 1)]
    assert M.novelty_metric([good], reference={"[H]C#C[H]"}) == 0.0
    assert M.novelty_metric([good], reference={"C#C"}) == 1.0


def test_overvalent_carbon_is_invalid():
    # carbon with five hydrogens at 1.09 Å: sum of orders 5 ≠ 4, RDKit refuses it
    d = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1], [0, 0, 1.7320508]]) / np.sqrt(3) * 1.09
    rec = MoleculeRecord(["C"] + ["H"] * 5, np.vstack([[0, 0, 0], d]))
    assert M.validity_metric([rec]) == 0.0
    assert M.molecule_stability_metric([rec]) == 0.0


def test_w1_is_zero_for_identical_sets_and_grows_with_distortion():
    from polydiff.plugins.molecule.data import embed_smiles

    mols = [embed_smiles(s, seed=1) for s in ("CCO", "CC(=O)N", "c1ccccc1")]
    assert M.bond_length_w1(mols, reference=mols) == pytest.approx(0.0, abs=1e-12)
    assert M.bond_angle_w1(mols, reference=mols) == pytest.approx(0.0, abs=1e-12)
    squeezed = [MoleculeRecord(r.elements, r.positions * 0.97) for r in mols]
    w = M.bond_length_w1(squeezed, reference=mols)
    assert 0.02 < w < 0.06  # ~3 % of ~1.3 Å mean bond length (a few pairs change bonding status)


def test_metrics_reproduce_the_qm9_data_row():
    """EDM's data row is 99.0 / 95.2 / 97.7; the same rules on qm9pack molecules give
    ~99.3 / 95.0 / 97.2 (REFERENCES.md). 2,000 seeded molecules with H."""
    from polydiff.plugins.molecule.qm9 import load_qm9

    data = load_qm9("all", limit=2000, seed=0)
    assert len(data) == 2000 and max(r.n_atoms for r in data) <= 29
    res = M.evaluate_molecules(data.records, novelty_reference=None, geometry=False)
    assert 0.990 <= res["molecule_atom_stability"] <= 0.996
    assert 0.94 <= res["molecule_stability"] <= 0.965
    assert 0.965 <= res["molecule_validity"] <= 0.985
    assert res["molecule_uniqueness"] > 0.99
    # the registered single metrics agree with the combined evaluation
    sub = data.records[:300]
    combined = M.evaluate_molecules(sub, novelty_reference=None, geometry=False)
    assert M.atom_stability_metric(sub) == combined["molecule_atom_stability"]
    assert M.validity_metric(sub) == combined["molecule_validity"]
