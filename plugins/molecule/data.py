"""Molecule records, datasets and the generic file loaders (SDF, XYZ, SMILES).

A :class:`MoleculeRecord` is one molecule: element symbols, positions in Å ``[n, 3]``,
optional formal charges ``[n]`` and scalar properties. A :class:`MoleculeDataset` is a
list of records plus its element vocabulary, property names and the list of records it
skipped (``on_error="skip"``): bad input is either an :class:`polydiff.errors.InputError`
naming file, record index and field, or a counted and reported skip — never a silent drop.

QM9 lives in :mod:`polydiff.plugins.molecule.qm9`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from polydiff.errors import InputError

#: symbols of elements 1..118 index by atomic number (index 0 unused)
_PERIODIC = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu "
    "Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg "
    "Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
ATOMIC_NUMBER = {s: z for z, s in enumerate(_PERIODIC) if z > 0}
QM9_ELEMENTS = ("H", "C", "N", "O", "F")
#: atom symbols a mol file may hold that are not elements but that RDKit reads (query and
#: R-group atoms become ``*``/``R#``, D and T are hydrogen isotopes)
_MOLFILE_PSEUDO_ATOMS = {"A", "Q", "L", "LP", "*", "R", "R#", "D", "T", "AH", "QH", "X", "XH", "M", "MH"}
ON_ERROR = ("raise", "skip")


@dataclass
class MoleculeRecord:
    """One molecule. ``positions``: ``[n, 3]`` float64 Å; ``charges``: ``[n]`` int formal
    charges or None; ``properties``: name → float (units documented by the loader)."""

    elements: list[str]
    positions: np.ndarray
    charges: np.ndarray | None = None
    properties: dict = field(default_factory=dict)
    smiles: str | None = None
    name: str = ""
    index: int = -1  # position in the source data set (QM9 index), -1 if unknown
    partial_charges: np.ndarray | None = None  # e.g. QM9 Mulliken charges (e), not a model channel

    @property
    def n_atoms(self) -> int:
        return len(self.elements)

    def without_hydrogens(self) -> "MoleculeRecord":
        keep = [i for i, e in enumerate(self.elements) if e != "H"]
        pc = None if self.partial_charges is None else self.partial_charges[keep]
        return MoleculeRecord(
            [self.elements[i] for i in keep],
            self.positions[keep],
            None if self.charges is None else self.charges[keep],
            dict(self.properties),
            self.smiles,
            self.name,
            self.index,
            pc,
        )


def check_record(rec: MoleculeRecord, *, file, index, elements: Sequence[str] | None = None) -> MoleculeRecord:
    """Validate a parsed record; raises :class:`InputError` naming file, record and field."""
    if rec.n_atoms == 0:
        raise InputError("molecule has no atoms", file=file, record=index, field="atoms")
    for e in rec.elements:
        if e not in ATOMIC_NUMBER:
            raise InputError(f"unknown element symbol {e!r}", file=file, record=index, field="element")
        if elements is not None and e not in elements:
            raise InputError(
                f"element {e!r} is not in the vocabulary {list(elements)}", file=file, record=index, field="element"
            )
    pos = np.asarray(rec.positions, dtype=np.float64)
    if pos.shape != (rec.n_atoms, 3):
        raise InputError(
            f"expected {rec.n_atoms}×3 coordinates, got shape {tuple(pos.shape)}",
            file=file,
            record=index,
            field="coordinates",
        )
    if not np.isfinite(pos).all():
        raise InputError("non-finite (NaN/inf) coordinates", file=file, record=index, field="coordinates")
    for k, v in rec.properties.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"property {k!r} is not a finite number: {v!r}", file=file, record=index, field=k)
    rec.positions = pos
    return rec


class MoleculeDataset(Sequence):
    """A list of :class:`MoleculeRecord` with its element vocabulary.

    ``skipped``: ``[(file, record, message)]`` of records dropped under ``on_error="skip"``.
    """

    def __init__(
        self,
        records: list[MoleculeRecord],
        *,
        elements: Sequence[str] | None = None,
        property_names: Sequence[str] = (),
        skipped: list | None = None,
        name: str = "",
    ):
        self.records = list(records)
        if elements is None:
            present = {e for r in self.records for e in r.elements}
            elements = sorted(present, key=lambda s: ATOMIC_NUMBER[s])
        self.elements = tuple(elements)
        self.property_names = tuple(property_names)
        self.skipped = list(skipped or [])
        self.name = name

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return MoleculeDataset(
                self.records[i], elements=self.elements, property_names=self.property_names, name=self.name
            )
        return self.records[i]

    def subset(self, indices: Iterable[int]) -> "MoleculeDataset":
        return MoleculeDataset(
            [self.records[i] for i in indices],
            elements=self.elements,
            property_names=self.property_names,
            name=self.name,
        )

    def atom_count_histogram(self) -> dict[int, int]:
        hist: dict[int, int] = {}
        for r in self.records:
            hist[r.n_atoms] = hist.get(r.n_atoms, 0) + 1
        return dict(sorted(hist.items()))

    def skip_report(self) -> str:
        if not self.skipped:
            return "no records skipped"
        lines = [f"{len(self.skipped)} record(s) skipped:"]
        lines += [f"  {f} record {r}: {m}" for f, r, m in self.skipped[:20]]
        return "\n".join(lines)


class _Collector:
    """Applies ``on_error``: raise the InputError, or count it for the skip report."""

    def __init__(self, on_error: str):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.records: list[MoleculeRecord] = []
        self.skipped: list = []

    def add(self, make, *, file, index, elements=None):
        try:
            rec = make()
            self.records.append(check_record(rec, file=file, index=index, elements=elements))
        except InputError as e:
            if self.on_error == "raise":
                raise
            self.skipped.append((str(file), index, str(e)))

    def dataset(self, *, elements=None, property_names=(), name="") -> MoleculeDataset:
        if self.skipped:
            warnings.warn(
                f"{name or 'dataset'}: skipped {len(self.skipped)} bad record(s); first: {self.skipped[0][2]}",
                stacklevel=3,
            )
        elif not self.records:
            warnings.warn(f"{name or 'dataset'}: holds no molecules", stacklevel=3)
        return MoleculeDataset(
            self.records, elements=elements, property_names=property_names, skipped=self.skipped, name=name
        )


# -- RDKit molecules ---------------------------------------------------------------------
def record_from_mol(mol, *, file, index, conf_id: int = -1) -> MoleculeRecord:
    """RDKit ``Mol`` with a 3-D conformer → record (explicit atoms only, formal charges)."""
    if mol is None:
        raise InputError("RDKit could not parse this record", file=file, record=index, field="molblock")
    if mol.GetNumConformers() == 0:
        raise InputError("record has no 3-D coordinates", file=file, record=index, field="coordinates")
    pos = np.asarray(mol.GetConformer(conf_id).GetPositions(), dtype=np.float64)
    elements = [a.GetSymbol() for a in mol.GetAtoms()]
    charges = np.array([a.GetFormalCharge() for a in mol.GetAtoms()], dtype=np.int64)
    props = {}
    for k, v in mol.GetPropsAsDict(includePrivate=False, includeComputed=False).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            props[k] = float(v)
    name = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    return MoleculeRecord(elements, pos, charges, props, None, name)


def unknown_element(molblock: str, *, file, index) -> None:
    """Raise :class:`InputError` naming the atom symbol of a mol block (V2000 or V3000) that
    is not an element — the commonest reason RDKit refuses a record; return otherwise."""
    lines = molblock.splitlines()
    if len(lines) < 4:
        return
    if "V3000" in lines[3]:
        try:
            start = lines.index("M  V30 BEGIN ATOM") + 1
            atoms = lines[start : lines.index("M  V30 END ATOM", start)]
        except ValueError:
            return
        symbols = [a.split()[3] for a in atoms if len(a.split()) > 3]
    else:
        try:
            n = int(lines[3][:3])
        except ValueError:
            return
        symbols = [a[31:34].strip() for a in lines[4 : 4 + n]]
    for k, sym in enumerate(symbols):
        if sym and sym not in ATOMIC_NUMBER and sym not in _MOLFILE_PSEUDO_ATOMS:
            raise InputError(f"unknown element symbol {sym!r} (atom {k + 1})", file=file, record=index, field="element")


def load_sdf(
    path,
    *,
    elements: Sequence[str] | None = None,
    remove_h: bool = False,
    on_error: str = "raise",
    limit: int | None = None,
) -> MoleculeDataset:
    """Molecules of an SDF file (RDKit, unsanitised so coordinates and atoms are kept as
    written). Record indices count from 0 in file order."""
    from rdkit import Chem, RDLogger

    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", file=path)
    col = _Collector(on_error)
    indexed = []  # a random-access supplier, opened only to explain a record RDKit refused

    def record_text(i: int) -> str:
        if not indexed:
            indexed.append(Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False))
        try:
            return indexed[0].GetItemText(i)
        except Exception:  # the index could not be built: no explanation, the generic error stays
            return ""

    RDLogger.DisableLog("rdApp.*")
    try:
        with open(path, "rb") as fh:
            supplier = Chem.ForwardSDMolSupplier(fh, sanitize=False, removeHs=False)
            for i, mol in enumerate(supplier):
                if limit is not None and len(col.records) >= limit:
                    break

                def make(m=mol, i=i):
                    if m is None:
                        unknown_element(record_text(i), file=path, index=i)
                    rec = record_from_mol(m, file=path, index=i)
                    return rec.without_hydrogens() if remove_h else rec

                col.add(make, file=path, index=i, elements=elements)
    except OSError as e:
        raise InputError(f"cannot read: {e}", file=path) from None
    finally:
        RDLogger.EnableLog("rdApp.*")
    return col.dataset(elements=elements, name=str(path))


def parse_xyz_text(text: str, *, file="<string>") -> Iterable[tuple[int, MoleculeRecord | InputError]]:
    """Yield ``(index, record or InputError)`` for each frame of a (multi-frame) XYZ text.

    Frame: a count line ``n``, a comment line, then ``n`` lines ``symbol x y z`` (Å; extra
    columns ignored). A frame that cannot be delimited ends the file with an error.
    """
    lines = text.splitlines()
    pos, index = 0, 0
    while pos < len(lines):
        if not lines[pos].strip():
            pos += 1
            continue
        head = lines[pos].split()
        try:
            n = int(head[0]) if len(head) == 1 else None
        except ValueError:
            n = None
        if n is None or n <= 0 or pos + 2 + n > len(lines):
            yield (
                index,
                InputError(
                    f"line {pos + 1}: expected an atom count followed by that many atom lines, got {lines[pos][:40]!r}",
                    file=file,
                    record=index,
                    field="atom_count",
                ),
            )
            return
        comment = lines[pos + 1].strip()
        elements, xyz, err = [], [], None
        for k, line in enumerate(lines[pos + 2 : pos + 2 + n]):
            parts = line.split()
            try:
                if len(parts) < 4:
                    raise ValueError("fewer than 4 columns")
                elements.append(parts[0].capitalize() if parts[0].isalpha() else parts[0])
                xyz.append([float(v.replace("*^", "e")) for v in parts[1:4]])
            except ValueError as e:
                err = InputError(f"atom line {k + 1}: {e}: {line[:60]!r}", file=file, record=index, field="coordinates")
                break
        if err is not None:
            yield index, err
        else:
            yield index, MoleculeRecord(elements, np.asarray(xyz, dtype=np.float64), name=comment)
        pos += 2 + n
        index += 1


def load_xyz(
    path,
    *,
    elements: Sequence[str] | None = None,
    remove_h: bool = False,
    on_error: str = "raise",
    limit: int | None = None,
) -> MoleculeDataset:
    """Molecules of a (multi-frame) XYZ file, or of every ``*.xyz`` file in a folder."""
    path = Path(path)
    files = sorted(path.glob("*.xyz")) if path.is_dir() else [path]
    if not path.exists():
        raise InputError("no such file or folder", file=path)
    col = _Collector(on_error)
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError as e:
            raise InputError(f"cannot read: {e}", file=f) from None
        for i, item in parse_xyz_text(text, file=f):
            if limit is not None and len(col.records) >= limit:
                break

            def make(item=item):
                if isinstance(item, InputError):
                    raise item
                return item.without_hydrogens() if remove_h else item

            col.add(make, file=f, index=i, elements=elements)
    return col.dataset(elements=elements, name=str(path))


def embed_smiles(smiles: str, *, seed: int = 0, mmff: bool = True, file="<smiles>", index=0) -> MoleculeRecord:
    """SMILES → record with explicit H and a 3-D conformer: RDKit ETKDGv3 embedding
    (Riniker & Landrum 2015), then MMFF94 relaxation (Halgren 1996) when ``mmff``."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise InputError(f"invalid SMILES {smiles[:60]!r}", file=file, record=index, field="smiles")
        mol = Chem.AddHs(mol)
        params = AllChem.ETKDGv3()
        params.randomSeed = int(seed)
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise InputError(f"ETKDG could not embed {smiles[:60]!r}", file=file, record=index, field="smiles")
        if mmff and AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    finally:
        RDLogger.EnableLog("rdApp.*")
    rec = record_from_mol(mol, file=file, index=index)
    rec.smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
    return rec


def load_smiles(
    source,
    *,
    elements: Sequence[str] | None = None,
    remove_h: bool = False,
    seed: int = 0,
    mmff: bool = True,
    on_error: str = "raise",
    limit: int | None = None,
) -> MoleculeDataset:
    """A SMILES file (``.smi``: one SMILES per line, optionally followed by whitespace and a
    name; blank lines and ``#`` comments skipped) or a list of SMILES strings, embedded in
    3-D with :func:`embed_smiles` (molecule k seeded ``seed + k``). Errors name the file,
    the record (``line N`` of a file, the index in a list) and the field (``smiles``)."""
    if isinstance(source, (list, tuple)):
        file, lines = "<smiles list>", [str(s) for s in source]
    else:
        file = Path(source)
        try:
            lines = file.read_text(errors="replace").splitlines()
        except OSError as e:
            raise InputError(f"cannot read: {e}", file=file) from None
    col = _Collector(on_error)
    index = 0
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if limit is not None and len(col.records) >= limit:
            break
        parts = line.split(None, 1)
        record = f"line {lineno}" if isinstance(file, Path) else index

        def make(parts=parts, index=index, record=record):
            rec = embed_smiles(parts[0], seed=seed + index, mmff=mmff, file=file, index=record)
            rec.name = parts[1].strip() if len(parts) > 1 else ""
            return rec.without_hydrogens() if remove_h else rec

        col.add(make, file=file, index=record, elements=elements)
        index += 1
    return col.dataset(elements=elements, name=str(file))
