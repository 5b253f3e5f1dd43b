"""Bond-aware metrics and chemistry checks (plugins/molecule/chem_checks.py) on hand-built
molecules with known answers, and decoding from predicted bonds (plugins/molecule/decode.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polydiff.plugins.molecule import chem_checks as cc
from polydiff.plugins.molecule.decode import bonded_mol, read_bonded_sdf, state_to_mols
from polydiff.plugins.molecule.io import write_sdf


def mol3d(smiles: str, seed: int = 0, relax: bool = True):
    """Kekulé Mol with explicit H and an ETKDG (+ MMFF) conformer."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    m = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(m, randomSeed=seed) == 0
    if relax:
        AllChem.MMFFOptimizeMolecule(m, maxIters=2000)
    Chem.Kekulize(m, clearAromaticFlags=True)
    return m


def broken(mol):
    """The same atoms with one C–H bond removed (a carbon with three bonds)."""
    from rdkit import Chem

    m = Chem.RWMol(mol)
    b = next(b for b in m.GetBonds() if {b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol()} == {"C", "H"})
    m.RemoveBond(b.GetBeginAtomIdx(), b.GetEndAtomIdx())
    return m.GetMol()


def test_stability_counts_atoms_and_molecules():
    ethanol, water = mol3d("CCO"), mol3d("O")
    assert cc.bonded_atom_stability([ethanol, water]) == 1.0
    assert cc.bonded_molecule_stability([ethanol, water]) == 1.0
    bad = broken(ethanol)  # the carbon and the hydrogen lose a bond: 2 of 9 atoms unstable
    assert cc.bonded_atom_stability([bad]) == pytest.approx(7 / 9)
    assert cc.bonded_molecule_stability([bad, water]) == 0.5


def test_charged_atoms_are_stable_at_their_own_valence():
    nitro = mol3d("C[N+](=O)[O-]")
    assert cc.bonded_molecule_stability([nitro]) == 1.0
    assert cc.bonded_validity([nitro]) == 1.0
    assert set(cc.VALENCES[("N", 1)]) == {4}


def test_validity_connectivity_uniqueness_novelty():
    ethanol, water = mol3d("CCO"), mol3d("O")
    from rdkit import Chem

    two = Chem.CombineMols(ethanol, water)  # valid, two fragments
    pent = Chem.RWMol(mol3d("C"))
    pent.AddBond(1, 2, Chem.BondType.SINGLE)  # H–H on top of C–H: H with valence 2
    samples = [ethanol, mol3d("CCO", seed=3), two, pent.GetMol()]
    assert cc.bonded_validity(samples) == 0.75
    assert cc.bonded_connected_validity(samples) == 0.5
    assert cc.bonded_uniqueness(samples) == pytest.approx(1 / 3)  # CCO, CCO, CCO (largest fragment)
    assert cc.bonded_novelty(samples, reference={"CCO"}) == 0.0
    assert cc.bonded_novelty([water, ethanol], reference=[water]) == 0.5
    assert cc.bonded_novelty([mol3d("c1ccccc1")], reference={"C1=CC=CC=C1"}) == 0.0  # kekulé or aromatic


def test_ring_sizes_three_rings_and_their_distance_to_a_reference():
    cyclopropane, cyclohexane, benzene = mol3d("C1CC1"), mol3d("C1CCCCC1"), mol3d("c1ccccc1")
    s = cc.chemistry_stats([cyclopropane])
    assert s["rings"] == 1 and s["ring3_share"] == 1.0 and s["ring_hist"][0] == 1.0
    cheap = cc.chemistry_stats([cyclopropane], strain=False)  # no MMFF: the same shares, no strain
    assert cheap["strain_n"] == 0 and cheap["strain_median"] is None and s["strain_n"] == 1
    assert {k: v for k, v in cheap.items() if "strain" not in k} == {k: v for k, v in s.items() if "strain" not in k}
    assert cc.ring_size_tv([cyclopropane], reference=[cyclohexane]) == 1.0
    assert cc.ring_size_tv([cyclohexane], reference=[benzene]) == 0.0
    assert cc.ring_size_tv([cyclopropane, cyclohexane], reference=[cyclohexane]) == pytest.approx(0.5)
    assert cc.ring3_share_diff([cyclopropane, cyclohexane], reference=[cyclohexane]) == pytest.approx(0.5)
    assert cc.ring_size_tv([mol3d("CC")], reference=[cyclohexane]) == 1.0  # no rings at all


def test_ring_size_plot_writes_a_png_and_refuses_wrong_bins(tmp_path):
    from PIL import Image

    hist = cc.chemistry_stats([mol3d("C1CC1"), mol3d("C1CCCCC1")])["ring_hist"]
    path = cc.ring_size_plot({"samples": hist, "acyclic": None}, tmp_path / "rings.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100
    with pytest.raises(ValueError, match="'short' has 2 shares"):
        cc.ring_size_plot({"short": [0.5, 0.5]}, tmp_path / "bad.png")


def test_oo_and_nn_single_bonds():
    h2o2, hydrazine, water = mol3d("OO"), mol3d("NN"), mol3d("O")
    assert cc.chemistry_stats([h2o2])["oo_single_share"] == pytest.approx(1 / 3)  # O–O, O–H, O–H
    assert cc.oo_single_share_diff([h2o2], reference=[water]) == pytest.approx(1 / 3)
    assert cc.nn_single_share_diff([hydrazine], reference=[water]) == pytest.approx(1 / 5)
    assert cc.oo_single_share_diff([water], reference=[water]) == 0.0
    assert cc.chemistry_stats([mol3d("N=N")])["nn_single_share"] == 0.0  # a double bond is no N–N single


def test_strain_is_zero_when_relaxed_and_positive_when_distorted():
    relaxed = mol3d("CCCO")
    assert abs(cc.mmff_strain(relaxed)) < 0.05
    distorted = mol3d("CCCO", relax=False)
    conf = distorted.GetConformer()
    rng = np.random.default_rng(0)
    for k in range(distorted.GetNumAtoms()):
        p = conf.GetAtomPosition(k)
        conf.SetAtomPosition(k, (p.x + rng.normal(0, 0.15), p.y, p.z))
    assert cc.mmff_strain(distorted) > 1.0
    assert cc.mmff_strain_median([relaxed, distorted, relaxed]) == pytest.approx(cc.mmff_strain(relaxed), abs=0.05)
    with pytest.raises(ValueError, match="MMFF94"):
        cc.mmff_strain_median([broken(relaxed)])


def test_decoding_uses_the_predicted_bonds_and_counts_failures(tmp_path):
    # two samples, 3 atoms each: water (O bonded to both H) and a "water" whose O has a double bond to H
    pos = torch.tensor([[[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]] * 2)
    atom = torch.tensor([[3, 0, 0], [3, 0, 0]])  # O H H in the H C N O F vocabulary
    charge = torch.ones(2, 3, dtype=torch.long)
    bond = torch.tensor([[[0, 1, 1], [1, 0, 0], [1, 0, 0]], [[0, 2, 1], [2, 0, 0], [1, 0, 0]]])
    mask = torch.ones(2, 3)
    mols, report = state_to_mols(
        {"pos": pos, "atom": atom, "charge": charge, "bond": bond}, mask, ("H", "C", "N", "O", "F"), (-1, 0, 1)
    )
    assert len(mols) == 2 and report["sanitize_failures"] == 1 and report["failed"][0][0] == 1
    assert mols[0].GetIntProp("sanitized") == 1 and mols[1].GetIntProp("sanitized") == 0
    assert mols[1].GetBondBetweenAtoms(0, 1).GetBondTypeAsDouble() == 2.0
    path = write_sdf(mols, tmp_path / "s.sdf")
    back = read_bonded_sdf(path)
    assert [m.GetNumBonds() for m in back] == [2, 2]
    assert back[1].GetBondBetweenAtoms(0, 1).GetBondTypeAsDouble() == 2.0
    assert cc.bonded_validity(back) == 0.5


def test_bonded_mol_refuses_unknown_orders():
    with pytest.raises(ValueError, match="order 5"):
        bonded_mol(["C", "C"], np.zeros((2, 3)), np.array([[0, 5], [5, 0]]))
