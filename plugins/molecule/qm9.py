"""QM9 (Ramakrishnan et al. 2014): 130,831 small organic molecules (≤ 9 heavy atoms C, N,
O, F; ≤ 29 atoms with H), DFT (B3LYP/6-31G(2df,p)) geometries and properties.

Two sources:

- the ``qm9pack`` package (bundled CSV files, no network): read through
  ``importlib.util.find_spec`` so qm9pack's ``__init__`` (which needs ``pkg_resources``)
  is never imported;
- the official archive ``dsgdb9nsd.xyz.tar.bz2`` (figshare), via :func:`download_qm9`
  for users with network, or a local copy (``source=PATH`` to the archive or to a folder
  of its ``.xyz`` files). Tests never download.

Splits follow EDM (Hoogeboom et al. 2022), which took them from Cormorant (Anderson et
al. 2019): a permutation of the 130,831 molecules by ``numpy.random.seed(0)`` ;
``numpy.random.permutation``, cut into 100,000 train, 17,748 valid and 13,083 test.

Property units: ``mu`` D, ``alpha`` bohr³, ``homo``/``lumo``/``gap`` eV, ``r2`` bohr²,
``zpve`` eV, ``cv`` cal/(mol K).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Sequence

import numpy as np

from polydiff.checkpoint import atomic_write_bytes
from polydiff.errors import InputError

from .data import QM9_ELEMENTS, MoleculeDataset, MoleculeRecord, _Collector, parse_xyz_text

N_MOLECULES = 130_831
SPLIT_SIZES = {"train": 100_000, "valid": 17_748, "test": 13_083}
HARTREE_EV = 27.211386246
#: property name → (qm9pack column, factor to our unit)
QM9PACK_PROPERTIES = {
    "mu": ("Dipole_debye", 1.0),
    "alpha": ("Polarizability_bohr3", 1.0),
    "homo": ("HOMO_au", HARTREE_EV),
    "lumo": ("LUMO_au", HARTREE_EV),
    "gap": ("HOMO_LUMO_gap_au", HARTREE_EV),
    "r2": ("R2_bohr2", 1.0),
    "zpve": ("ZPVE_au", HARTREE_EV),
    "cv": ("Heatcapacity_Cv_cal_mol_K", 1.0),
}
#: official archive (figshare, Ramakrishnan et al. 2014)
QM9_URL = "https://springernature.figshare.com/ndownloader/files/3195389"
QM9_EXCLUDED_URL = "https://springernature.figshare.com/ndownloader/files/3195404"
_QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_STRIP = str.maketrans("", "", "[]' \"")


def qm9pack_dir() -> Path:
    """The folder of qm9pack's CSV files (found without importing qm9pack)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the qm9pack package is not installed (pip install qm9pack), and no local QM9 source was given",
            file="qm9pack",
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def split_indices(split: str) -> np.ndarray:
    """Indices (0-based, in QM9 file order) of an EDM/Cormorant split or ``all``."""
    if split == "all":
        return np.arange(N_MOLECULES)
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown QM9 split {split!r}; one of train, valid, test, all")
    state = np.random.RandomState(0)
    perm = state.permutation(N_MOLECULES)
    a, b = SPLIT_SIZES["train"], SPLIT_SIZES["train"] + SPLIT_SIZES["valid"]
    return {"train": perm[:a], "valid": perm[a:b], "test": perm[b:]}[split]


def _floats(text: str, *, file, index, field) -> np.ndarray:
    try:
        return np.array([v for v in text.translate(_STRIP).split(",") if v], dtype=np.float64)
    except ValueError:
        raise InputError(f"not a list of numbers: {text[:60]!r}", file=file, record=index, field=field) from None


def parse_qm9pack_row(row: dict, *, file, index) -> MoleculeRecord:
    """One qm9pack CSV row (``csv.DictReader`` dict) → record; InputError on bad fields."""
    try:
        elements = [e for e in row["Elements"].translate(_STRIP).split(",") if e]
        xyz = row["XYZ_Ang"]
    except (KeyError, AttributeError):
        raise InputError("missing Elements/XYZ_Ang column", file=file, record=index, field="Elements") from None
    pos = _floats(xyz or "", file=file, index=index, field="XYZ_Ang")
    if pos.size != 3 * len(elements):
        raise InputError(
            f"{len(elements)} elements but {pos.size} coordinate values", file=file, record=index, field="XYZ_Ang"
        )
    props = {}
    for name, (col, factor) in QM9PACK_PROPERTIES.items():
        try:
            props[name] = float(row[col]) * factor
        except (KeyError, TypeError, ValueError):
            raise InputError(f"missing or non-numeric {col}", file=file, record=index, field=col) from None
    mull = _floats(row.get("Mulliken_pop") or "", file=file, index=index, field="Mulliken_pop")
    return MoleculeRecord(
        elements,
        pos.reshape(-1, 3),
        None,
        props,
        row.get("SMILES"),
        row.get("XYZ_file", ""),
        index,
        mull if mull.size == len(elements) else None,
    )


def _iter_qm9pack(wanted: set[int] | None, on_error: str, folder: Path | None = None):
    folder = folder or qm9pack_dir()
    col = _Collector(on_error)
    index = 0
    for name in _QM9PACK_FILES:
        path = folder / name
        if not path.is_file():
            raise InputError("QM9 CSV part not found", file=path)
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if wanted is None or index in wanted:
                    col.add(
                        lambda row=row, i=index, p=path: parse_qm9pack_row(row, file=p, index=i),
                        file=path,
                        index=index,
                        elements=QM9_ELEMENTS,
                    )
                index += 1
    return col, index


def load_qm9(
    split: str = "train",
    *,
    remove_h: bool = False,
    limit: int | None = None,
    seed: int = 0,
    source: str | os.PathLike | None = None,
    on_error: str = "raise",
    properties: Sequence[str] = tuple(QM9PACK_PROPERTIES),
) -> MoleculeDataset:
    """QM9 molecules of ``split`` (``train``/``valid``/``test``/``all``).

    ``limit``: keep a seeded random subset of that many molecules (``seed``), in split
    order otherwise. ``remove_h``: heavy-atom-only variant. ``source``: ``None`` for the
    qm9pack package, or a local official archive / folder of QM9 ``.xyz`` files.
    """
    idx = split_indices(split)
    if limit is not None and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=int(limit), replace=False))
    wanted = set(int(i) for i in idx)
    if source is None:
        col, total = _iter_qm9pack(wanted, on_error)
    else:
        col, total = _iter_official(Path(source), wanted, on_error)
    if total != N_MOLECULES:
        raise InputError(f"expected {N_MOLECULES} QM9 molecules, found {total}", file=source or qm9pack_dir())
    by_index = {r.index: r for r in col.records}
    records = [by_index[int(i)] for i in idx if int(i) in by_index]
    if remove_h:
        records = [r.without_hydrogens() for r in records]
    for r in records:
        r.properties = {k: r.properties[k] for k in properties if k in r.properties}
    elements = tuple(e for e in QM9_ELEMENTS if not (remove_h and e == "H"))
    name = f"qm9/{split}" + ("/noH" if remove_h else "")
    return MoleculeDataset(records, elements=elements, property_names=tuple(properties), skipped=col.skipped, name=name)


# -- official archive -----------------------------------------------------------------------
_OFFICIAL_PROPS = ("A", "B", "C", "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv")


def parse_qm9_xyz(text: str, *, file, index=0) -> MoleculeRecord:
    """One official QM9 ``.xyz`` file (extended XYZ: property line, ``el x y z q`` lines with
    Mathematica ``*^`` exponents, frequencies, SMILES, InChI) → record."""
    frames = list(parse_xyz_text(text, file=file))
    if not frames or isinstance(frames[0][1], InputError):
        raise frames[0][1] if frames else InputError("empty file", file=file, record=index, field="atom_count")
    rec = frames[0][1]
    head = rec.name.split()
    if len(head) < 2 + len(_OFFICIAL_PROPS) - 1 or head[0] != "gdb":
        raise InputError(
            "second line is not a QM9 'gdb <id> <15 properties>' line", file=file, record=index, field="properties"
        )
    try:
        vals = dict(zip(_OFFICIAL_PROPS, (float(v.replace("*^", "e")) for v in head[2:])))
    except ValueError:
        raise InputError("non-numeric property", file=file, record=index, field="properties") from None
    rec.properties = {
        "mu": vals["mu"],
        "alpha": vals["alpha"],
        "homo": vals["homo"] * HARTREE_EV,
        "lumo": vals["lumo"] * HARTREE_EV,
        "gap": vals["gap"] * HARTREE_EV,
        "r2": vals["r2"],
        "zpve": vals["zpve"] * HARTREE_EV,
        "cv": vals["cv"],
    }
    lines = text.splitlines()
    n = rec.n_atoms
    rec.smiles = lines[n + 3].split()[0] if len(lines) > n + 3 and lines[n + 3].split() else None
    rec.name = f"gdb_{head[1]}"
    rec.index = index
    return rec


def _iter_official(source: Path, wanted: set[int], on_error: str):
    """Records of the official QM9 archive/folder, skipping the 3,054 molecules that EDM
    excludes (those listed as failing the geometry consistency check); ``source`` must
    contain that list as ``uncharacterized.txt`` next to it or inside the folder."""
    excluded = _read_excluded(
        source.parent / "uncharacterized.txt" if source.is_file() else source / "uncharacterized.txt"
    )
    col = _Collector(on_error)
    index = 0
    for name, text in _official_texts(source):
        gdb_id = int(Path(name).stem.split("_")[-1])
        if gdb_id in excluded:
            continue
        if index in wanted:
            col.add(
                lambda t=text, n=name, i=index: parse_qm9_xyz(t, file=n, index=i),
                file=name,
                index=index,
                elements=QM9_ELEMENTS,
            )
        index += 1
    return col, index


def _official_texts(source: Path):
    if source.is_dir():
        for f in sorted(source.glob("dsgdb9nsd_*.xyz")):
            yield str(f), f.read_text(errors="replace")
        return
    if not source.is_file():
        raise InputError("no such QM9 archive or folder", file=source)
    with tarfile.open(source) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.endswith(".xyz"):
                yield f"{source}:{member.name}", tar.extractfile(member).read().decode(errors="replace")


def _read_excluded(path: Path) -> set[int]:
    if not path.is_file():
        raise InputError(
            "the list of excluded QM9 molecules (uncharacterized.txt) is missing; download_qm9() fetches it", file=path
        )
    out = set()
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            out.add(int(parts[0]))
    return out


def download_qm9(dest: str | os.PathLike, *, url: str = QM9_URL, excluded_url: str = QM9_EXCLUDED_URL) -> Path:
    """Download the official QM9 archive and the excluded-molecule list into ``dest``
    (needs network; never called by tests). Returns the archive path for
    ``load_qm9(source=...)``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "dsgdb9nsd.xyz.tar.bz2"
    for link, target in ((url, archive), (excluded_url, dest / "uncharacterized.txt")):
        if not target.exists():
            with urllib.request.urlopen(link, timeout=600) as r:
                atomic_write_bytes(target, r.read())
    return archive
