"""RDKit molecules from *predicted* bonds and charges (no distance heuristics), and SDF
files read back with their bonds.

:func:`bonded_mol` builds an RDKit ``Mol`` (explicit hydrogens, a 3-D conformer) from
element symbols, positions (Å), formal charges and a bond-order matrix (kekulé orders 1–3;
0 = no bond). :func:`state_to_mols` does it for every sample of a joint-model state and
tries to sanitise each one: the Mol returned is the sanitised one (kekulé form kept, so an
SDF written from it carries single/double/triple bonds) or, where ``SanitizeMol`` refuses,
the raw graph. Either way one Mol per sample comes back, never fewer: each carries the
properties ``sanitized`` (1/0) and, on failure, ``sanitize_error``; the report counts the
failures and names their sample indices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from polydiff.errors import InputError


def bonded_mol(elements: Sequence[str], positions, bonds, charges=None):
    """Unsanitised RDKit ``Mol`` with one conformer. ``positions`` ``[n, 3]`` Å; ``bonds``
    ``[n, n]`` int (upper triangle read, orders 1–3); ``charges`` ``[n]`` int or None."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    bo = np.asarray(bonds, dtype=np.int64)
    n = len(elements)
    if pos.shape[0] != n or bo.shape != (n, n):
        raise ValueError(f"{n} elements, {pos.shape[0]} positions and a bond matrix of shape {bo.shape}")
    kinds = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    mol = Chem.RWMol()
    for k, e in enumerate(elements):
        atom = Chem.Atom(str(e))
        atom.SetNoImplicit(True)  # every hydrogen is an explicit atom
        if charges is not None:
            atom.SetFormalCharge(int(charges[k]))
        mol.AddAtom(atom)
    ii, jj = np.nonzero(np.triu(bo, 1))
    for i, j in zip(ii.tolist(), jj.tolist()):
        o = int(bo[i, j])
        if o not in kinds:
            raise ValueError(f"bond {i}-{j} has order {o}; orders are 0-3")
        mol.AddBond(i, j, kinds[o])
    conf = Chem.Conformer(n)
    for k, p in enumerate(pos):
        conf.SetAtomPosition(k, Point3D(*map(float, p)))
    mol.AddConformer(conf, assignId=True)
    out = mol.GetMol()
    out.UpdatePropertyCache(strict=False)
    return out


def sanitize_kekule(mol):
    """(sanitised copy keeping the kekulé bonds, None) or (None, RDKit's message)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    m = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(m)
        Chem.Kekulize(m, clearAromaticFlags=True)
    except Exception as e:  # AtomValenceException, KekulizeException, … (MolSanitizeException)
        return None, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    finally:
        RDLogger.EnableLog("rdApp.*")
    return m, None


def state_to_mols(state: dict, mask, elements: Sequence[str], charge_values: Sequence[int]) -> tuple[list, dict]:
    """Joint-model state → (one Mol per sample, report).

    ``state``: ``{"pos": [B, N, 3] Å, "atom": [B, N] long, "charge": [B, N] long, "bond":
    [B, N, N] long}`` (clean classes); ``mask`` ``[B, N]``; ``elements``/``charge_values``:
    the symbols and formal charges of the classes. Report: ``{"samples", "sanitize_failures",
    "failed": [(sample index, message)]}``."""
    pos = state["pos"].detach().double().cpu().numpy()
    atom = state["atom"].detach().cpu().numpy()
    charge = state["charge"].detach().cpu().numpy()
    bond = state["bond"].detach().cpu().numpy()
    valid = np.asarray(mask.detach().cpu() > 0.5)
    mols, failed = [], []
    for b in range(pos.shape[0]):
        keep = np.nonzero(valid[b])[0]
        if (atom[b, keep] >= len(elements)).any() or (charge[b, keep] >= len(charge_values)).any():
            raise ValueError(f"sample {b}: a class index outside the vocabulary (an unresolved mask token?)")
        el = [elements[int(a)] for a in atom[b, keep]]
        ch = [int(charge_values[int(c)]) for c in charge[b, keep]]
        raw = bonded_mol(el, pos[b, keep], bond[b][np.ix_(keep, keep)], ch)
        mol, err = sanitize_kekule(raw)
        if mol is None:
            mol = raw
            failed.append((b, err))
            mol.SetProp("sanitize_error", err or "")
        mol.SetIntProp("sanitized", int(err is None))
        mol.SetProp("_Name", f"polydiff_{b}")
        mols.append(mol)
    return mols, {"samples": len(mols), "sanitize_failures": len(failed), "failed": failed}


def record_mol(record):
    """RDKit Mol of a record carrying ``bonds`` and ``charges`` (e.g. QM9 with perceived
    bonds, :func:`~.bonds_qm9.attach_bonds`), unsanitised."""
    bonds = getattr(record, "bonds", None)
    if bonds is None:
        raise InputError("record has no bonds", record=getattr(record, "index", None), field="bonds")
    return bonded_mol(record.elements, record.positions, bonds, record.charges)


def read_bonded_sdf(path) -> list:
    """Every record of an SDF as an unsanitised RDKit Mol with the bonds and charges as
    written; a record RDKit cannot parse raises :class:`InputError` naming file and record."""
    from rdkit import Chem, RDLogger

    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", file=path)
    RDLogger.DisableLog("rdApp.*")
    try:
        out = []
        for i, m in enumerate(Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False)):
            if m is None:
                raise InputError("RDKit could not parse this record", file=path, record=i, field="molblock")
            m.UpdatePropertyCache(strict=False)
            out.append(m)
    finally:
        RDLogger.EnableLog("rdApp.*")
    return out
