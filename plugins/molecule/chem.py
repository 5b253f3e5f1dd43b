"""RDKit molecules from atoms and coordinates, and EDM's SMILES/validity convention.

:func:`to_mol` builds an RDKit ``Mol`` with a 3-D conformer from element symbols and
positions (Å); bonds come from EDM's bond-length rules (:mod:`.bonds`, default) or from
RDKit's ``rdDetermineBonds`` (Kim & Kim 2015 / xyz2mol), or are left out.

:func:`edm_smiles` follows EDM (Hoogeboom et al. 2022, ``qm9/rdkit_functions.py``): the
molecule is *valid* when ``Chem.SanitizeMol`` accepts it; its SMILES is the canonical
SMILES of the largest fragment.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .bonds import bond_order_matrix
from .data import MoleculeRecord

BOND_METHODS = ("edm", "rdkit", "none")


def atoms_of(sample) -> tuple[list[str], np.ndarray]:
    """(elements, positions ``[n, 3]`` Å) of an RDKit Mol (first conformer), a
    :class:`MoleculeRecord`, or an ``(elements, positions)`` pair."""
    if isinstance(sample, MoleculeRecord):
        return list(sample.elements), np.asarray(sample.positions, dtype=np.float64)
    if isinstance(sample, tuple) and len(sample) == 2:
        return list(sample[0]), np.asarray(sample[1], dtype=np.float64).reshape(-1, 3)
    if hasattr(sample, "GetAtoms"):
        elements = [a.GetSymbol() for a in sample.GetAtoms()]
        if sample.GetNumConformers() == 0:
            return elements, np.full((len(elements), 3), np.nan)
        return elements, np.asarray(sample.GetConformer().GetPositions(), dtype=np.float64)
    raise TypeError(f"cannot read atoms from a {type(sample).__name__}")


def _quiet():
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")


def to_mol(
    elements: Sequence[str],
    positions,
    *,
    bonds: str = "edm",
    charges: Sequence[int] | None = None,
    total_charge: int = 0,
):
    """RDKit ``Mol`` (not sanitised) with one conformer; see the module docstring.

    ``bonds="rdkit"`` runs ``rdDetermineBonds.DetermineBonds`` (bond orders, with
    ``total_charge``); where that fails, connectivity only (``DetermineConnectivity``) and
    the ``bond_method`` property says so.
    """
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    if bonds not in BOND_METHODS:
        raise ValueError(f"bonds must be one of {BOND_METHODS}, got {bonds!r}")
    _quiet()
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    mol = Chem.RWMol()
    for k, e in enumerate(elements):
        atom = Chem.Atom(str(e))
        if charges is not None:
            atom.SetFormalCharge(int(charges[k]))
        mol.AddAtom(atom)
    conf = Chem.Conformer(len(elements))
    for k, p in enumerate(pos):
        conf.SetAtomPosition(k, Point3D(*map(float, p)))
    mol.AddConformer(conf, assignId=True)
    method = bonds
    if bonds == "edm" and len(elements) > 1:
        order = bond_order_matrix(list(elements), pos)
        kinds = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
        ii, jj = np.nonzero(np.triu(order, 1))
        for i, j in zip(ii.tolist(), jj.tolist()):
            mol.AddBond(i, j, kinds[int(order[i, j])])
    elif bonds == "rdkit" and len(elements) > 1:
        from rdkit.Chem import rdDetermineBonds

        trial = Chem.Mol(mol)
        try:
            rdDetermineBonds.DetermineBonds(trial, charge=int(total_charge))
        except Exception:  # RDKit raises plain ValueError/RuntimeError subclasses here
            trial = Chem.Mol(mol)
            rdDetermineBonds.DetermineConnectivity(trial)
            method = "rdkit-connectivity"
        mol = Chem.RWMol(trial)
    out = mol.GetMol()
    out.SetProp("bond_method", method)
    return out


def sanitized_copy(mol):
    """A sanitised copy of ``mol`` or None when RDKit's ``SanitizeMol`` refuses it."""
    from rdkit import Chem

    _quiet()
    m = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(m)
    except Exception:  # AtomValenceException, KekulizeException, … (all MolSanitizeException)
        return None
    return m


def largest_fragment_smiles(mol) -> str | None:
    """Canonical SMILES of the largest fragment of a *sanitised* mol (EDM's convention)."""
    from rdkit import Chem

    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    largest = max(frags, default=mol, key=lambda m: m.GetNumAtoms())
    s = sanitized_copy(largest)
    return None if s is None else Chem.MolToSmiles(s)


def edm_smiles(elements: Sequence[str], positions) -> tuple[str | None, int]:
    """(largest-fragment SMILES or None if invalid, number of fragments) under EDM's bonds."""
    from rdkit import Chem

    mol = sanitized_copy(to_mol(elements, positions, bonds="edm"))
    if mol is None:
        return None, 0
    return largest_fragment_smiles(mol), len(Chem.GetMolFrags(mol))
