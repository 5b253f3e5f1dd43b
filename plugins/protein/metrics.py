"""Geometry metrics of protein backbones (offline substitutes for designability).

Every metric is ``f(samples, reference=None, **options) -> float``, held in :data:`METRICS`
under its registered name ``protein_<name>`` (listed below without the prefix). ``samples``
is a list of :class:`~polydiff.plugins.protein.structures.Backbone` records, ``[L, 3]`` Cα
arrays or ``[L, 4, 3]`` N/CA/C/O arrays, all in Å. ``reference`` (training structures, same kinds
or a ``CalphaDataset``) is used by the distribution, novelty metrics.

- ``ca_ca_validity``: share of consecutive Cα pairs with |d − 3.80 Å| ≤ 0.1 Å.
- ``ca_ca_deviation``: mean |d − 3.80 Å| (Å).
- ``clash_share``: share of residues with a Cα closer than 3.0 Å to a Cα ≥ 2 residues away.
- ``clash_structure_share``: share of structures with at least one such Cα clash.
- ``backbone_clash_share``: share of residues with a backbone-atom overlap d ≤ 0.63·(rᵢ+rⱼ)
  between atoms more than one residue apart (FoldingDiff rule, radii C 1.7, N 1.55, O 1.52 Å;
  N/C/O placed ideally when only Cα is known).
- ``rg_ratio``: mean Rg / (2.2·N^0.38).
- ``helix_fraction``, ``strand_fraction``: P-SEA shares on the Cα trace.
- ``pair_distance_js``: Jensen–Shannon divergence (bits) between the Cα pair-distance
  histograms (1 Å bins, 0–60 Å, pairs ≥ 3 apart) of samples and reference.
- ``diversity_rmsd``: mean pairwise Cα RMSD (Å) after Kabsch; a shorter chain is matched
  to the best contiguous window of the longer (gapless, sequence-order alignment).
- ``novelty_rmsd``: mean over samples of the RMSD (same alignment) to the nearest
  reference structure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .geometry import CA_CA_IDEAL, expected_rg, place_backbone, radius_of_gyration
from .secondary import fractions, psea

CA_CA = 3.80
VALID_TOL = 0.1
CA_CLASH = 3.0
VDW = {"N": 1.55, "C": 1.7, "O": 1.52}


def as_ca(item) -> np.ndarray:
    """Cα ``[L, 3]`` (Å) from a Backbone, ``[L, 3]`` or ``[L, 4, 3]`` array."""
    if hasattr(item, "ca"):
        return np.asarray(item.ca, dtype=np.float64)
    a = np.asarray(item, dtype=np.float64)
    return a[:, 1] if a.ndim == 3 else a


def as_full(item) -> np.ndarray:
    """N, CA, C, O ``[L, 4, 3]`` (Å); ideal N/C/O placed when only Cα is available."""
    if hasattr(item, "coords") and np.isfinite(item.coords).all():
        return np.asarray(item.coords, dtype=np.float64)
    a = np.asarray(getattr(item, "coords", item), dtype=np.float64)
    if a.ndim == 3 and np.isfinite(a).all():
        return a
    return place_backbone(as_ca(item))


def _reference_list(reference) -> list:
    if reference is None:
        raise ValueError("this metric needs reference structures")
    if hasattr(reference, "backbones"):
        return list(reference.backbones)
    if isinstance(reference, (str, Path)):  # a structure file or folder (``polydiff eval --reference``)
        from .io import read_structures

        return read_structures(reference)
    return list(reference)


def _bond_lengths(samples) -> np.ndarray:
    d = [np.linalg.norm(np.diff(as_ca(s), axis=0), axis=1) for s in samples]
    return np.concatenate(d) if d else np.zeros(0)


def ca_ca_validity(samples, reference=None, **_) -> float:
    d = _bond_lengths(samples)
    return float(np.mean(np.abs(d - CA_CA) <= VALID_TOL)) if len(d) else float("nan")


def ca_ca_deviation(samples, reference=None, **_) -> float:
    d = _bond_lengths(samples)
    return float(np.mean(np.abs(d - CA_CA))) if len(d) else float("nan")


def _ca_clash_residues(ca: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
    idx = np.arange(len(ca))
    far = np.abs(idx[:, None] - idx[None]) >= 2
    return ((d < CA_CLASH) & far).any(1)


def clash_share(samples, reference=None, **_) -> float:
    flags = [_ca_clash_residues(as_ca(s)) for s in samples]
    return float(np.concatenate(flags).mean()) if flags else float("nan")


def clash_structure_share(samples, reference=None, **_) -> float:
    return float(np.mean([_ca_clash_residues(as_ca(s)).any() for s in samples]))


def backbone_clash_residues(full: np.ndarray) -> np.ndarray:
    """``[L]`` bool: residue has a backbone atom overlapping one > 1 residue away."""
    L = len(full)
    names = ["N", "C", "C", "O"]  # N, CA (carbon), C, O
    r = np.array([VDW[n] for n in names])
    pos = full.reshape(-1, 3)
    res = np.repeat(np.arange(L), 4)
    rad = np.tile(r, L)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    far = np.abs(res[:, None] - res[None]) > 1
    hit = (d <= 0.63 * (rad[:, None] + rad[None])) & far
    out = np.zeros(L, dtype=bool)
    np.logical_or.at(out, res, hit.any(1))
    return out


def backbone_clash_share(samples, reference=None, **_) -> float:
    flags = [backbone_clash_residues(as_full(s)) for s in samples]
    return float(np.concatenate(flags).mean()) if flags else float("nan")


def rg_ratio(samples, reference=None, **_) -> float:
    return float(np.mean([radius_of_gyration(as_ca(s)) / expected_rg(len(as_ca(s))) for s in samples]))


def _ss_share(samples, letter: str) -> float:
    n = sum(len(as_ca(s)) for s in samples)
    return float(sum(psea(as_ca(s)).count(letter) for s in samples) / max(n, 1))


def helix_fraction(samples, reference=None, **_) -> float:
    return _ss_share(samples, "H")


def strand_fraction(samples, reference=None, **_) -> float:
    return _ss_share(samples, "E")


def pair_distance_histogram(samples, bins: np.ndarray | None = None) -> np.ndarray:
    """Normalised histogram of Cα–Cα distances (pairs ≥ 3 residues apart)."""
    bins = np.arange(0, 61, 1.0) if bins is None else bins
    h = np.zeros(len(bins) - 1)
    for s in samples:
        ca = as_ca(s)
        i, j = np.triu_indices(len(ca), k=3)
        d = np.linalg.norm(ca[i] - ca[j], axis=-1)
        h += np.histogram(np.clip(d, bins[0], bins[-1] - 1e-9), bins=bins)[0]
    return h / max(h.sum(), 1)


def pair_distance_js(samples, reference=None, **_) -> float:
    p = pair_distance_histogram(samples)
    q = pair_distance_histogram(_reference_list(reference))
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / b[nz])).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def _centered_windows(ca: np.ndarray, L: int) -> np.ndarray:
    W = np.lib.stride_tricks.sliding_window_view(ca, (L, 3))[:, 0]  # [n_win, L, 3]
    return W - W.mean(1, keepdims=True)


def windowed_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """Min Kabsch RMSD (Å) of the shorter trace over contiguous windows of the longer."""
    if len(a) > len(b):
        a, b = b, a
    L = len(a)
    P = a - a.mean(0)
    Q = _centered_windows(b, L)  # [W, L, 3]
    H = np.einsum("li,wlj->wij", P, Q)
    U, S, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.einsum("wij,wjk->wik", U, Vt)))
    S[:, -1] *= d
    msd = ((P**2).sum() + (Q**2).sum((1, 2)) - 2 * S.sum(1)) / L
    return float(np.sqrt(np.clip(msd, 0, None)).min())


def diversity_rmsd(samples, reference=None, **_) -> float:
    cas = [as_ca(s) for s in samples]
    vals = [windowed_rmsd(cas[i], cas[j]) for i in range(len(cas)) for j in range(i + 1, len(cas))]
    return float(np.mean(vals)) if vals else float("nan")


def novelty_rmsd(samples, reference=None, **_) -> float:
    refs = [as_ca(r) for r in _reference_list(reference)]
    return float(np.mean([min(windowed_rmsd(as_ca(s), r) for r in refs) for s in samples]))


#: registered metric name → (function, higher_is_better); None = a target metric (no direction:
#: nearer the data row is better)
METRICS = {
    "protein_ca_ca_validity": (ca_ca_validity, True),
    "protein_ca_ca_deviation": (ca_ca_deviation, False),
    "protein_clash_share": (clash_share, False),
    "protein_clash_structure_share": (clash_structure_share, False),
    "protein_backbone_clash_share": (backbone_clash_share, False),
    "protein_rg_ratio": (rg_ratio, None),
    "protein_helix_fraction": (helix_fraction, None),
    "protein_strand_fraction": (strand_fraction, None),
    "protein_pair_distance_js": (pair_distance_js, False),
    # random coils maximise both; nearer the data row is better
    "protein_diversity_rmsd": (diversity_rmsd, None),
    "protein_novelty_rmsd": (novelty_rmsd, None),
}

#: metrics that compare each sample with the training structures (``reference`` = the
#: training set); the other reference-taking metric (``protein_pair_distance_js``) compares
#: distributions and wants a reference sample of the samples' own length range
TRAINING_SET_METRICS = ("protein_novelty_rmsd",)

__all__ = ["METRICS", "TRAINING_SET_METRICS", "CA_CA_IDEAL", "fractions", *(fn.__name__ for fn, _ in METRICS.values())]
