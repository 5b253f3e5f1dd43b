"""Protein training data: the 50 shipped domains and a Cα-trace dataset.

The offline real data are the 50 single-chain domains that ``mdanalysistests`` ships for
its DSSP tests (``MDAnalysisTests/data/dssp/????X.pdb.gz``, each with a ``.pdb.dssp``
file holding the reference 3-state string H/E/-, one letter per residue). The package is
located with ``importlib.util.find_spec`` (importing it would need MDAnalysis).

Representation: a Cα trace in nanometres (Å / :data:`COORD_SCALE`), centred on its
centre of mass. At that scale the per-coordinate RMS of the 50 centred domains lies in
0.7–1.3 (asserted in ``tests/plugins/protein/test_data.py``), so the modality uses
``sigma_data = 1.0``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from polydiff.errors import InputError

from .structures import Backbone, LoadReport, load_backbones, load_source

COORD_SCALE = 10.0  # Å per model unit (model coordinates are in nm)


def dssp_dir() -> Path:
    """The folder of shipped domains (``MDAnalysisTests/data/dssp``)."""
    spec = importlib.util.find_spec("MDAnalysisTests")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the package 'mdanalysistests' is not installed (pip install mdanalysistests)", field="mdanalysistests"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "dssp"


def domain_files() -> list[tuple[Path, Path]]:
    """``(pdb.gz, .dssp)`` pairs of the 50 domains, sorted by name."""
    d = dssp_dir()
    pairs = []
    for f in sorted(d.glob("?????.pdb.gz")):
        ref = d / (f.name[:-3] + ".dssp")
        if ref.exists():
            pairs.append((f, ref))
    return pairs


def read_dssp_string(path: Path) -> str:
    """The reference 3-state string of a ``.pdb.dssp`` file (first token)."""
    text = Path(path).read_text().split()
    if not text:
        raise InputError("empty DSSP reference", file=path, record=0, field="ss")
    return text[0]


def load_domains(progress: bool = False) -> list[tuple[Backbone, str]]:
    """The 50 domains as ``(Backbone, reference DSSP string)`` with chain breaks masked
    (not split), so residue order matches the reference string."""
    out = []
    pairs = domain_files()
    if progress:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc="domains", leave=False)
    for f, ref in pairs:
        bbs = load_backbones(f, breaks="mask")
        if len(bbs) != 1:
            raise InputError(f"expected one chain, found {len(bbs)}", file=f, record="-", field="chain")
        ss = read_dssp_string(ref)
        if len(ss) != len(bbs[0]):
            raise InputError(
                f"DSSP string has {len(ss)} letters for {len(bbs[0])} residues", file=ref, record=0, field="ss"
            )
        out.append((bbs[0], ss))
    return out


class CalphaDataset:
    """Cα traces for training.

    Each item is a dict ``{"x": [L, 3] float32 nm, centred; "res_idx": [L] long (residue
    numbers minus the first, so gaps survive); "ss": [3] float32 (fractions of H, E, C
    from P-SEA on the Cα trace, for composition conditioning)}``.

    ``crop=(lo, hi)``: each access returns a random contiguous window of lo..hi residues
    (seeded by ``seed`` and an access counter) — the way short backbones are learnt from
    longer domains.
    """

    def __init__(
        self,
        backbones: list[Backbone],
        *,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        report: LoadReport | None = None,
    ):
        if not backbones:
            raise InputError("no backbones to build a dataset from", field="backbones")
        from .secondary import psea

        self.backbones = backbones
        self.crop = crop
        self.report = report
        self.ca = [torch.as_tensor(b.ca / COORD_SCALE, dtype=torch.float32) for b in backbones]
        self.res_idx = [torch.as_tensor(b.res_ids - b.res_ids[0], dtype=torch.long) for b in backbones]
        self.ss_labels = [psea(b.ca) for b in backbones]
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.ca)

    @property
    def lengths(self) -> list[int]:
        return [len(c) for c in self.ca]

    def __getitem__(self, i: int) -> dict:
        ca, idx, ss = self.ca[i], self.res_idx[i], self.ss_labels[i]
        if self.crop is not None:
            lo, hi = self.crop
            n = len(ca)
            L = int(self._rng.integers(min(lo, n), min(hi, n) + 1))
            a = int(self._rng.integers(0, n - L + 1))
            ca, idx, ss = ca[a : a + L], idx[a : a + L] - idx[a], ss[a : a + L]
        ca = ca - ca.mean(0, keepdim=True)
        comp = torch.tensor([np.mean([c == k for c in ss]) for k in "HEC"], dtype=torch.float32)
        return {"x": ca, "res_idx": idx, "ss": comp}


def shipped_domains_dataset(crop: tuple[int, int] | None = None, seed: int = 0) -> CalphaDataset:
    """Dataset loader ``protein/domains50``: the 50 shipped domains."""
    from .structures import handle_breaks

    bbs = []
    for bb, _ss in load_domains():
        bbs += handle_breaks(bb, "split")
    bbs = [b for b in bbs if len(b) >= 20]
    return CalphaDataset(bbs, crop=crop, seed=seed)


def structure_folder_dataset(
    source=None,
    *,
    pdb_ids=(),
    crop=None,
    seed: int = 0,
    min_len: int = 40,
    max_len: int | None = None,
    chains=None,
    on_error: str = "raise",
    cache_dir: str = "~/.cache/polydiff/pdb",
) -> CalphaDataset:
    """Dataset loader ``protein/structures``: a folder, file list and/or PDB IDs."""
    report = LoadReport()
    bbs = load_source(
        source,
        pdb_ids=pdb_ids,
        cache_dir=cache_dir,
        chains=chains,
        breaks="split",
        min_len=min_len,
        max_len=max_len,
        on_error=on_error,
        report=report,
        progress=True,
    )
    if report.skipped:
        import sys

        print(f"protein: {report.summary()}", file=sys.stderr)
    return CalphaDataset(bbs, crop=crop, seed=seed, report=report)
