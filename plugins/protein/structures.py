"""Protein structures in: PDB / mmCIF (optionally gzipped) → backbone chains.

Parsing is done by Biopython (``Bio.PDB.PDBParser`` / ``MMCIFParser``); this module turns
its structure objects into :class:`Backbone` records and handles everything a training
set needs:

- chain selection (``chains=["A"]``), first model only;
- backbone atoms N, CA, C, O (``coords [L, 4, 3]`` in Å, NaN where an atom is missing);
- alternate locations: Biopython keeps the highest-occupancy altloc of each atom;
- hetero residues (ligands, waters, modified residues flagged HETATM) are skipped;
- residues without CA, or with a non-finite (NaN/inf) backbone coordinate: an
  :class:`~polydiff.errors.InputError` naming file, chain and residue, or with
  ``on_error="skip"`` the residue is dropped and counted;
- a PDB file that ends inside an atom record (truncated) is read with a warning;
- chain breaks (consecutive CA–CA > 4.2 Å): ``breaks="split"`` cuts the chain into
  segments, ``breaks="mask"`` keeps it whole and records the break positions;
- length filters (``min_len``/``max_len``), counted in the :class:`LoadReport`.

Sources: a file, a directory, a list of files, or 4-letter PDB IDs (downloaded from RCSB
into a cache folder when online; never used by the tests).
"""

from __future__ import annotations

import gzip
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from polydiff.checkpoint import atomic_write_bytes
from polydiff.errors import InputError

BACKBONE_ATOMS = ("N", "CA", "C", "O")
CHAIN_BREAK_A = 4.2  # Å, consecutive CA–CA distance above which the chain is broken
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz", ".mmcif.gz")
RCSB_URL = "https://files.rcsb.org/download/{id}.cif.gz"


@dataclass
class Backbone:
    """One chain (or chain segment) of a protein backbone.

    Attributes:
        name: ``"<file stem>_<chain>"`` (with ``_<k>`` for split segments).
        chain_id: the chain identifier in the source file.
        coords: ``[L, 4, 3]`` float64 Å, atoms N, CA, C, O; NaN where missing.
        res_ids: ``L`` residue numbers (author numbering) and ``icodes`` insertion codes.
        res_names: ``L`` three-letter residue names.
        breaks: indices ``i`` where the CA(i)–CA(i+1) distance exceeds 4.2 Å (``mask`` mode).
    """

    name: str
    chain_id: str
    coords: np.ndarray
    res_ids: np.ndarray
    res_names: list
    icodes: list = field(default_factory=list)
    breaks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    source: str = ""
    #: True when N, C, O were placed from the Cα trace with ideal geometry (generated models)
    ideal_placed: bool = False

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @property
    def ca(self) -> np.ndarray:
        """``[L, 3]`` Cα coordinates in Å."""
        return self.coords[:, 1]

    @property
    def has_full_backbone(self) -> bool:
        return bool(np.isfinite(self.coords).all())


@dataclass
class LoadReport:
    """What a load kept and what it skipped (never a silent drop)."""

    files: int = 0
    chains: int = 0
    skipped: list = field(default_factory=list)  # (file, record, reason)
    filtered_length: int = 0
    split_segments: int = 0

    def skip(self, err: InputError) -> None:
        self.skipped.append((err.file, err.record, str(err)))

    def summary(self) -> str:
        return (
            f"{self.files} files, {self.chains} chains kept, {len(self.skipped)} skipped for errors, "
            f"{self.filtered_length} removed by length filters, {self.split_segments} extra segments from breaks"
        )


def _open_text(path: Path) -> str:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", errors="replace") as f:
                return f.read()
        return path.read_text(errors="replace")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(f"cannot read structure file: {e}", file=path, record="-", field="file content") from None


def _is_cif(path: Path) -> bool:
    n = path.name.lower().removesuffix(".gz")
    return n.endswith(".cif") or n.endswith(".mmcif")


def warn_if_truncated(text: str, path: Path) -> bool:
    """Warn (and return True) when a PDB text ends inside an atom record: its last line is an
    ATOM/HETATM record shorter than every other one — what a cut-off download or a full
    disk leaves. A file cut exactly at a line end cannot be told from a complete one (an
    END record is optional, and many files lack it)."""
    lines = text.rstrip("\n").split("\n")
    atoms = [ln.rstrip("\r") for ln in lines if ln.startswith(("ATOM  ", "HETATM"))]
    last = lines[-1].rstrip("\r")
    if len(atoms) < 2 or not last.startswith(("ATOM  ", "HETATM")):
        return False
    shortest = min(len(a) for a in atoms[:-1])
    if len(last) >= shortest:
        return False
    warnings.warn(
        f"{path}: the last atom record has {len(last)} of {shortest} columns; the file looks truncated",
        stacklevel=3,
    )
    return True


def parse_structure(path: str | Path, text: str | None = None):
    """Biopython structure of a PDB/mmCIF file (gz allowed). Errors → InputError."""
    from Bio.PDB import MMCIFParser, PDBParser
    from Bio.PDB.PDBExceptions import PDBConstructionWarning

    path = Path(path)
    text = _open_text(path) if text is None else text
    if not text.strip():
        raise InputError("empty structure file", file=path, record="-", field="content")
    if not _is_cif(path):
        warn_if_truncated(text, path)
    parser = MMCIFParser(QUIET=True) if _is_cif(path) else PDBParser(QUIET=True, PERMISSIVE=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PDBConstructionWarning)
            return parser.get_structure(path.name.split(".")[0], io.StringIO(text))
    except Exception as e:  # Biopython raises many types on garbled input
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        line = None
        if "line" in msg:
            tail = msg.rsplit("line", 1)[1].strip(" :.")
            line = tail.split()[0] if tail else None
        raise InputError(
            f"unparseable structure ({type(e).__name__}: {msg})",
            file=path,
            record=f"line {line}" if line else "-",
            field="record syntax",
        ) from None


def _residue_backbone(res) -> np.ndarray:
    out = np.full((4, 3), np.nan)
    for k, name in enumerate(BACKBONE_ATOMS):
        if name in res:
            atom = res[name]  # a DisorderedAtom resolves to its highest-occupancy altloc
            out[k] = atom.get_coord()
    return out


def chain_backbones(
    structure,
    path: Path,
    *,
    chains: Sequence[str] | None = None,
    on_error: str = "raise",
    report: LoadReport | None = None,
) -> list[Backbone]:
    """Backbones of the chains of the first model (hetero residues skipped)."""
    report = report if report is not None else LoadReport()
    models = list(structure)
    if not models:
        raise InputError("no models in structure", file=path, record="-", field="MODEL")
    out = []
    stem = path.name.split(".")[0]
    for chain in models[0]:
        cid = chain.id
        if chains is not None and cid not in chains:
            continue
        coords, ids, names, icodes = [], [], [], []
        for res in chain:
            het, num, icode = res.id
            if het.strip():  # HETATM residue or water
                continue
            bb = _residue_backbone(res)
            where = f"chain {cid} residue {res.get_resname()} {num}{icode.strip()}"
            bad = [a for k, a in enumerate(BACKBONE_ATOMS) if a in res and not np.isfinite(bb[k]).all()]
            err = None
            if bad:
                err = InputError(
                    f"non-finite (NaN/inf) coordinates of atom(s) {', '.join(bad)}",
                    file=path,
                    record=where,
                    field="coordinates",
                )
            elif not np.isfinite(bb[1]).all():
                err = InputError("residue has no CA atom", file=path, record=where, field="CA")
            if err is not None:
                if on_error == "skip":
                    report.skip(err)
                    continue
                raise err
            coords.append(bb), ids.append(int(num)), names.append(res.get_resname()), icodes.append(icode.strip())
        if not coords:
            err = InputError("chain has no amino-acid residues with CA", file=path, record=f"chain {cid!r}", field="CA")
            if on_error == "skip":
                report.skip(err)
                continue
            raise err
        out.append(
            Backbone(
                f"{stem}_{cid}",
                cid,
                np.asarray(coords, dtype=np.float64),
                np.asarray(ids),
                names,
                icodes,
                source=str(path),
            )
        )
    if chains is not None:
        found = {b.chain_id for b in out}
        missing = [c for c in chains if c not in found]
        if missing and on_error != "skip":
            raise InputError(
                f"chain(s) {missing} not found (chains present: {[c.id for c in models[0]]})",
                file=path,
                record=f"chain {missing[0]!r}",
                field="chain",
            )
    return out


def find_breaks(ca: np.ndarray, threshold: float = CHAIN_BREAK_A) -> np.ndarray:
    """Indices i with ‖CA(i+1) − CA(i)‖ > threshold (Å). ``ca``: ``[L, 3]``."""
    d = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    return np.nonzero(d > threshold)[0]


def handle_breaks(bb: Backbone, mode: str = "split") -> list[Backbone]:
    """``split``: segments between breaks; ``mask``: one record with ``breaks`` filled."""
    brk = find_breaks(bb.ca)
    if mode == "mask" or len(brk) == 0:
        bb.breaks = brk
        return [bb]
    if mode != "split":
        raise ValueError(f"breaks must be 'split' or 'mask', not {mode!r}")
    cuts = [0, *(brk + 1).tolist(), len(bb)]
    segs = []
    for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        segs.append(
            Backbone(
                f"{bb.name}_{k}",
                bb.chain_id,
                bb.coords[a:b],
                bb.res_ids[a:b],
                bb.res_names[a:b],
                bb.icodes[a:b],
                source=bb.source,
            )
        )
    return segs


def load_backbones(
    path: str | Path,
    *,
    chains: Sequence[str] | None = None,
    breaks: str = "split",
    min_len: int = 1,
    max_len: int | None = None,
    on_error: str = "raise",
    report: LoadReport | None = None,
) -> list[Backbone]:
    """Backbone records of one structure file (see module docstring for the options)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    report = report if report is not None else LoadReport()
    path = Path(path)
    report.files += 1
    try:
        structure = parse_structure(path)
        chain_list = chain_backbones(structure, path, chains=chains, on_error=on_error, report=report)
    except InputError as err:
        if on_error == "skip":
            report.skip(err)
            return []
        raise
    out = []
    for bb in chain_list:
        segs = handle_breaks(bb, breaks)
        report.split_segments += len(segs) - 1
        for s in segs:
            if len(s) < min_len or (max_len is not None and len(s) > max_len):
                report.filtered_length += 1
                continue
            out.append(s)
    report.chains += len(out)
    return out


def structure_files(source) -> list[Path]:
    """A directory (its structure files, sorted), one file, or a list of files."""
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir():
            return sorted(f for f in p.iterdir() if f.name.lower().endswith(STRUCTURE_SUFFIXES))
        if not p.exists():
            raise InputError("no such file or directory", file=p, record="-", field="path")
        return [p]
    return [Path(s) for s in source]


def fetch_pdb(pdb_id: str, cache_dir: str | Path) -> Path:
    """Download ``<id>.cif.gz`` from RCSB into ``cache_dir`` (reused when present)."""
    import urllib.request

    pid = pdb_id.strip().lower()
    if len(pid) != 4 or not pid.isalnum():
        raise InputError(f"{pdb_id!r} is not a 4-character PDB ID", record=pdb_id, field="pdb_id")
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / f"{pid}.cif.gz"
    if dest.exists() and dest.stat().st_size > 0:
        return dest
    try:
        with urllib.request.urlopen(RCSB_URL.format(id=pid), timeout=60) as r:
            data = r.read()
    except OSError as e:
        raise InputError(
            f"download of {pid} from RCSB failed ({e}); are you online?", record=pdb_id, field="pdb_id"
        ) from None
    atomic_write_bytes(dest, data)
    return dest


def load_source(
    source=None,
    *,
    pdb_ids: Iterable[str] = (),
    cache_dir: str | Path = "~/.cache/polydiff/pdb",
    progress: bool = False,
    report: LoadReport | None = None,
    **options,
) -> list[Backbone]:
    """Backbones from a directory / file / file list and/or PDB IDs (options as
    :func:`load_backbones`)."""
    report = report if report is not None else LoadReport()
    files = structure_files(source) if source is not None else []
    files += [fetch_pdb(i, cache_dir) for i in pdb_ids]
    it = files
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(files, desc="structures", leave=False)
    out = []
    for f in it:
        out += load_backbones(f, report=report, **options)
    return out
