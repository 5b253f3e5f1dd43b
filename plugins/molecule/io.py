"""Molecule files: SDF and XYZ writers, SDF/XYZ/SMILES readers, PNG grids of 2-D depictions.

Writers take RDKit Mols (what :meth:`MoleculeModality.decode` returns; the joint model's
carry its predicted bonds and charges, which the SDF keeps), records (with their ``bonds``
when they carry them) or ``(elements, positions)`` pairs; coordinates are written in Å. Writes go to a temporary
file that is renamed into place (:func:`polydiff.checkpoint.atomic_write_bytes`: temporary
file, fsync, rename).
"""

from __future__ import annotations

import io
from pathlib import Path

from polydiff.checkpoint import atomic_write_bytes
from polydiff.errors import InputError

from .chem import atoms_of, sanitized_copy, to_mol


def _as_mol(sample):
    """A Mol as is; a record carrying ``bonds`` (QM9 with perceived bonds, see
    :mod:`.bonds_qm9`) with those bonds and its charges; anything else with EDM-rule bonds."""
    if hasattr(sample, "GetAtoms"):
        return sample
    if getattr(sample, "bonds", None) is not None:
        from .decode import record_mol

        return record_mol(sample)
    elements, pos = atoms_of(sample)
    return to_mol(elements, pos, bonds="edm")


def _atomic_write(path: Path, text: str) -> Path:
    path = Path(path)
    atomic_write_bytes(path, text.encode())
    return path


def mol_block(mol) -> str:
    """V2000/V3000 mol block of a possibly unsanitised Mol (no kekulisation needed:
    EDM-rule bonds are never aromatic)."""
    from rdkit import Chem

    m = Chem.Mol(mol)
    m.UpdatePropertyCache(strict=False)
    return Chem.MolToMolBlock(m, kekulize=False)


def write_sdf(samples, path) -> Path:
    """Write molecules to an SDF file (one record per sample, with its properties)."""
    chunks = []
    for mol in map(_as_mol, samples):
        props = "".join(f">  <{k}>\n{mol.GetProp(k)}\n\n" for k in mol.GetPropNames() if k != "bond_method")
        chunks.append(mol_block(mol) + props + "$$$$\n")
    return _atomic_write(Path(path), "".join(chunks))


def write_xyz(samples, path) -> Path:
    """Write molecules as a multi-frame XYZ file (Å)."""
    lines = []
    for k, s in enumerate(samples):
        elements, pos = atoms_of(s)
        name = s.GetProp("_Name") if hasattr(s, "HasProp") and s.HasProp("_Name") else f"molecule_{k}"
        lines.append(str(len(elements)))
        lines.append(name)
        lines += [f"{e:<2s} {p[0]:14.8f} {p[1]:14.8f} {p[2]:14.8f}" for e, p in zip(elements, pos)]
    return _atomic_write(Path(path), "\n".join(lines) + "\n")


#: file suffixes :func:`read_molecules` reads, by format
MOLECULE_SUFFIXES = {".sdf": "sdf", ".sd": "sdf", ".mol": "sdf", ".xyz": "xyz", ".smi": "smiles", ".smiles": "smiles"}


def read_molecules(path, *, on_error: str = "raise") -> list:
    """SDF, XYZ or SMILES file (or a folder of them) → RDKit Mols with a conformer (bonds
    as written for SDF, none for XYZ; SMILES embedded in 3-D with explicit hydrogens by
    ETKDG + MMFF, see :func:`~polydiff.plugins.molecule.data.load_smiles`). The metrics use
    atoms and coordinates only."""
    from .data import load_sdf, load_smiles, load_xyz

    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", file=path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in MOLECULE_SUFFIXES)
        if not files:
            raise InputError(f"folder holds no molecule files ({', '.join(MOLECULE_SUFFIXES)})", file=path)
        return [m for f in files for m in read_molecules(f, on_error=on_error)]
    kind = MOLECULE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"unknown molecule file type (expected {', '.join(MOLECULE_SUFFIXES)})", file=path)
    load = {"sdf": load_sdf, "xyz": load_xyz, "smiles": load_smiles}[kind]
    data = load(path, on_error=on_error)
    return [to_mol(r.elements, r.positions, bonds="edm", charges=r.charges) for r in data.records]


def to_smiles(mol) -> str | None:
    """Canonical SMILES of a Mol (None when RDKit cannot sanitise it)."""
    from rdkit import Chem

    m = sanitized_copy(_as_mol(mol))
    return None if m is None else Chem.MolToSmiles(Chem.RemoveHs(m, sanitize=False))


def _grid_image(mols, legends, per_row: int, size: int):
    """RDKit's grid, or — when RDKit cannot depict one of them (raw sampled graphs can make
    its layout raise "Cannot normalize a zero length vector") — the same grid pasted cell
    by cell with the failing cells left blank and labelled."""
    from PIL import Image, ImageDraw
    from rdkit.Chem import Draw

    try:
        return Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(size, size), legends=legends)
    except RuntimeError:
        pass
    rows = (len(mols) + per_row - 1) // per_row
    grid = Image.new("RGB", (per_row * size, rows * size), "white")
    for k, (m, legend) in enumerate(zip(mols, legends)):
        try:
            cell = Draw.MolToImage(m, size=(size, size), legend=legend)
        except RuntimeError:
            cell = Image.new("RGB", (size, size), "white")
            ImageDraw.Draw(cell).text((10, size // 2), f"not drawable: {legend}"[:40], fill="black")
        grid.paste(cell, ((k % per_row) * size, (k // per_row) * size))
    return grid


def png_grid(samples, path, *, per_row: int = 4, size: int = 250, max_mols: int = 16) -> Path:
    """A PNG grid of 2-D depictions (RDKit Draw), hydrogens hidden, SMILES as legend;
    unsanitisable molecules are drawn from their raw graph and labelled "invalid"."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mols, legends = [], []
    for s in list(samples)[:max_mols]:
        raw = _as_mol(s)
        m = sanitized_copy(raw)
        legend = "invalid"
        if m is not None:
            legend = Chem.MolToSmiles(Chem.RemoveHs(m, sanitize=False))
            m = Chem.RemoveHs(m, sanitize=False)
        else:
            m = Chem.Mol(raw)
            m.UpdatePropertyCache(strict=False)
        m = Chem.Mol(m)
        m.RemoveAllConformers()
        AllChem.Compute2DCoords(m)
        mols.append(m)
        legends.append(legend[:40])
    if not mols:
        raise ValueError("png_grid needs at least one molecule")
    buf = io.BytesIO()
    _grid_image(mols, legends, per_row, size).save(buf, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
