"""Secondary structure, 3-state (H helix, E strand, C coil).

- :func:`psea` works on a Cα trace only (what the generator produces), after P-SEA
  (Labesse et al. 1997, CABIOS 13:291): per residue i, the distances d2 = |CA(i−1)CA(i+1)|,
  d3 = |CA(i−1)CA(i+2)|, d4 = |CA(i−1)CA(i+3)|, the virtual bond angle τ(i−1, i, i+1) and
  the virtual dihedral α(i−1, i, i+1, i+2) are compared with helix and strand windows;
  ≥ 5 consecutive helix-like residues make a helix, ≥ 3 consecutive strand-like residues
  with a partner strand residue (Cα within 5.5 Å, ≥ 3 positions away) make a strand.
- :func:`dssp` works on full N, CA, C, O backbones after Kabsch & Sander 1983
  (Biopolymers 22:2577): amide H placed 1.0 Å from N opposite to the previous C=O,
  electrostatic H-bond energy E = 0.084·332·(1/r_ON + 1/r_CH − 1/r_OH − 1/r_CN) kcal/mol,
  H-bond when E < −0.5; H = consecutive 4-turns (α-helix), E = residues of bridge
  ladders and isolated bridges. Only the α-helix and β letters are made, as in the
  3-state reference strings shipped with mdanalysistests.
"""

from __future__ import annotations

import numpy as np

# P-SEA windows (centre ± half-width), Å and degrees (Labesse et al. 1997, Table 1)
HELIX_D = {"d2": (5.5, 0.5), "d3": (5.3, 0.5), "d4": (6.4, 0.6)}
HELIX_ANGLES = {"tau": (89.0, 12.0), "alpha": (50.0, 20.0)}
STRAND_D = {"d2": (6.7, 0.6), "d3": (9.9, 0.9), "d4": (12.4, 1.1)}
STRAND_ANGLES = {"tau": (124.0, 14.0), "alpha": (-170.0, 45.0)}
HBOND_CUTOFF = -0.5  # kcal/mol (Kabsch & Sander 1983)


def _within(v: np.ndarray, centre_hw: tuple[float, float], periodic: bool = False) -> np.ndarray:
    c, hw = centre_hw
    d = v - c
    if periodic:
        d = (d + 180.0) % 360.0 - 180.0
    return np.abs(d) <= hw


def _nan_pad(v: np.ndarray, n: int, start: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[start : start + len(v)] = v
    return out


def ca_descriptors(ca: np.ndarray) -> dict[str, np.ndarray]:
    """Per-residue P-SEA descriptors of a Cα trace ``[L, 3]`` (Å); NaN where undefined.

    Returns ``d2, d3, d4`` (Å) and ``tau``, ``alpha`` (degrees), each ``[L]``.
    """
    ca = np.asarray(ca, dtype=np.float64)
    L = len(ca)
    out = {}
    for k in (2, 3, 4):
        d = np.linalg.norm(ca[k:] - ca[:-k], axis=1) if L > k else np.zeros(0)
        out[f"d{k}"] = _nan_pad(d, L, 1)  # residue i uses CA(i−1)…CA(i−1+k)
    if L >= 3:
        b1, b2 = ca[:-2] - ca[1:-1], ca[2:] - ca[1:-1]
        cos = (b1 * b2).sum(1) / (np.linalg.norm(b1, axis=1) * np.linalg.norm(b2, axis=1) + 1e-12)
        out["tau"] = _nan_pad(np.degrees(np.arccos(np.clip(cos, -1, 1))), L, 1)
    else:
        out["tau"] = np.full(L, np.nan)
    out["alpha"] = _nan_pad(dihedrals(ca), L, 1)
    return out


def dihedrals(p: np.ndarray) -> np.ndarray:
    """Dihedral angles (degrees) of consecutive quadruples of points ``[L, 3]`` → ``[L−3]``."""
    if len(p) < 4:
        return np.zeros(0)
    b0, b1, b2 = p[1:-2] - p[:-3], p[2:-1] - p[1:-2], p[3:] - p[2:-1]
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    m1 = np.cross(n1, b1 / (np.linalg.norm(b1, axis=1, keepdims=True) + 1e-12))
    x, y = (n1 * n2).sum(1), (m1 * n2).sum(1)
    return -np.degrees(np.arctan2(y, x))


def _runs(flag: np.ndarray, min_len: int) -> np.ndarray:
    """Keep only runs of True of length ≥ ``min_len``."""
    out = np.zeros_like(flag)
    i, L = 0, len(flag)
    while i < L:
        if flag[i]:
            j = i
            while j < L and flag[j]:
                j += 1
            if j - i >= min_len:
                out[i:j] = True
            i = j
        else:
            i += 1
    return out


def psea(ca: np.ndarray) -> str:
    """P-SEA-like 3-state assignment (``"H"``, ``"E"``, ``"C"`` per residue) of ``ca [L, 3]`` Å."""
    ca = np.asarray(ca, dtype=np.float64)
    L = len(ca)
    if L == 0:
        return ""
    f = ca_descriptors(ca)
    with np.errstate(invalid="ignore"):
        hd = _within(f["d3"], HELIX_D["d3"]) & _within(f["d4"], HELIX_D["d4"])
        ha = _within(f["tau"], HELIX_ANGLES["tau"]) & _within(f["alpha"], HELIX_ANGLES["alpha"], True)
        sd = _within(f["d2"], STRAND_D["d2"]) & _within(f["d3"], STRAND_D["d3"]) & _within(f["d4"], STRAND_D["d4"])
        sa = _within(f["tau"], STRAND_ANGLES["tau"]) & _within(f["alpha"], STRAND_ANGLES["alpha"], True)
    helix = _runs(hd | ha, 5)
    # a helix-like run extends one residue on either side when its angle τ fits (P-SEA elongation)
    ext = helix.copy()
    for i in np.nonzero(np.diff(helix.astype(int)))[0]:
        for k in (i, i + 1):
            if not helix[k] and _within(np.array([f["tau"][k]]), HELIX_ANGLES["tau"])[0]:
                ext[k] = True
    helix = ext
    pot = (sd | sa) & ~helix
    strand = _runs(pot, 3)
    # strands need a partner: another strand-like residue with Cα within 5.5 Å, |i−j| ≥ 3
    if strand.any():
        d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
        idx = np.arange(L)
        far = np.abs(idx[:, None] - idx[None]) >= 3
        partner = ((d < 5.5) & far & pot[None, :]).any(1)
        paired = strand & partner
        # keep a whole strand run if any residue of it has a partner
        keep = np.zeros(L, dtype=bool)
        i = 0
        while i < L:
            if strand[i]:
                j = i
                while j < L and strand[j]:
                    j += 1
                if paired[i:j].any():
                    keep[i:j] = True
                i = j
            else:
                i += 1
        strand = keep
    return "".join("H" if h else ("E" if e else "C") for h, e in zip(helix, strand))


def amide_hydrogens(bb: np.ndarray) -> np.ndarray:
    """Amide H positions ``[L, 3]`` (Å) from N, CA, C, O ``bb [L, 4, 3]``: 1.0 Å from N along
    the previous residue's O→C direction (Kabsch & Sander 1983); NaN for the first residue
    and after a break (C(i−1)–N(i) > 2.0 Å)."""
    N, C, O = bb[:, 0], bb[:, 2], bb[:, 3]
    H = np.full_like(N, np.nan)
    co = C[:-1] - O[:-1]
    co = co / (np.linalg.norm(co, axis=1, keepdims=True) + 1e-12)
    H[1:] = N[1:] + co
    gap = np.linalg.norm(N[1:] - C[:-1], axis=1) > 2.0
    H[1:][gap] = np.nan
    return H


def hbond_energy(bb: np.ndarray) -> np.ndarray:
    """``E[i, j]`` kcal/mol of the C=O(i) ··· H–N(j) H-bond; ``bb [L, 4, 3]`` Å."""
    N, C, O = bb[:, 0], bb[:, 2], bb[:, 3]
    H = amide_hydrogens(bb)

    def dist(a, b):
        return np.linalg.norm(a[:, None] - b[None], axis=-1)

    with np.errstate(invalid="ignore", divide="ignore"):
        e = 0.084 * 332.0 * (1 / dist(O, N) + 1 / dist(C, H) - 1 / dist(O, H) - 1 / dist(C, N))
    return np.nan_to_num(e, nan=0.0, posinf=0.0, neginf=-9.9)


def dssp(bb: np.ndarray, res_names: list | None = None) -> str:
    """3-state DSSP (H/E/C) of a full backbone ``bb [L, 4, 3]`` (N, CA, C, O; Å).

    Proline (``res_names``) has no amide H and cannot donate.
    """
    bb = np.asarray(bb, dtype=np.float64)
    L = len(bb)
    E = hbond_energy(bb)
    hb = E < HBOND_CUTOFF
    idx = np.arange(L)
    hb[np.abs(idx[:, None] - idx[None]) < 2] = False  # i → j needs |i − j| ≥ 2 (and ≥ 3 for turns)
    if res_names is not None:
        pro = np.array([r == "PRO" for r in res_names])
        hb[:, pro] = False
    ss = np.array(["C"] * L)
    # 4-turns at i: hbond(i, i+4); helix when turns at i−1 and i: residues i..i+3
    turn4 = np.zeros(L, dtype=bool)
    turn4[: max(L - 4, 0)] = hb[idx[: max(L - 4, 0)], idx[: max(L - 4, 0)] + 4]
    helix = np.zeros(L, dtype=bool)
    for i in range(1, L - 4):
        if turn4[i - 1] and turn4[i]:
            helix[i : i + 4] = True

    def shifted(di: int, dj: int) -> np.ndarray:
        """S[i, j] = hb[i + di, j + dj] (False outside the chain)."""
        out = np.zeros_like(hb)
        i0, i1 = max(0, -di), min(L, L - di)
        j0, j1 = max(0, -dj), min(L, L - dj)
        out[i0:i1, j0:j1] = hb[i0 + di : i1 + di, j0 + dj : j1 + dj]
        return out

    # parallel bridge(i, j): [hb(i−1, j) and hb(j, i+1)] or [hb(j−1, i) and hb(i, j+1)]
    a, b = shifted(-1, 0), shifted(0, 1)
    par = (a & b.T) | (a.T & b)
    # antiparallel: [hb(i, j) and hb(j, i)] or [hb(i−1, j+1) and hb(j−1, i+1)]
    c = shifted(-1, 1)
    anti = (hb & hb.T) | (c & c.T)
    ok = np.abs(idx[:, None] - idx[None]) >= 3
    inner = (idx >= 1) & (idx <= L - 2)
    ok &= inner[:, None] & inner[None]
    bridge = ((par | anti) & ok).any(1)
    ss[bridge] = "E"
    ss[helix] = "H"
    return "".join(ss)


def to_three_state(s: str) -> str:
    """Map DSSP 8-state or '-'-coil strings to H/E/C (G, I → H; B → E; rest → C)."""
    table = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E"}
    return "".join(table.get(c, "C") for c in s)


def fractions(ss: str) -> dict[str, float]:
    """Shares of H, E and C in a 3-state string."""
    n = max(len(ss), 1)
    return {k: ss.count(k) / n for k in "HEC"}
