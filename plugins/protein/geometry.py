"""Backbone geometry from a Cα trace: residue frames, ideal N/C/O placement, Kabsch RMSD.

Ideal peptide geometry (Engh & Huber 1991): bonds CA–C 1.525 Å, C–N 1.329 Å, N–CA
1.458 Å, C=O 1.231 Å; angles CA–C–N 116.2°, C–N–CA 121.7°, CA–C–O 120.8°; trans
peptide (ω = 180°). The peptide unit between CA(i) and CA(i+1) is planar; what a Cα
trace does not fix is the rotation of that plane about the CA(i)→CA(i+1) axis. We orient
it by the normal of the next virtual-bond triple, n = (CA(i+1)−CA(i)) × (CA(i+2)−CA(i+1)):
on the 50 shipped domains the C=O direction lies at a mean of −9.4° from n about that
axis (circular concentration 0.81), the constant used below (measured with the script in
``tests/plugins/protein/test_geometry.py``, which checks the rebuilt atoms against the
real ones).
"""

from __future__ import annotations

import math

import numpy as np

CA_C, C_N, N_CA, C_O = 1.525, 1.329, 1.458, 1.231
ANG_CA_C_N, ANG_C_N_CA, ANG_CA_C_O = 116.2, 121.7, 120.8
PLANE_OFFSET_DEG = -9.4  # C=O direction about the CA–CA axis, relative to the next triple's normal


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)


def _peptide_template() -> tuple[float, dict[str, np.ndarray]]:
    """In-plane coordinates of C(i), O(i), N(i+1) in the frame (e1 along CA(i)→CA(i+1),
    e2 ⟂ e1 towards O), and the implied CA–CA distance (≈ 3.80 Å)."""

    def rot(v, deg):
        a = math.radians(deg)
        return np.array([v[0] * math.cos(a) - v[1] * math.sin(a), v[0] * math.sin(a) + v[1] * math.cos(a)])

    ca0 = np.zeros(2)
    c = np.array([CA_C, 0.0])
    n = c + C_N * rot(_unit(ca0 - c), -ANG_CA_C_N)
    o = c + C_O * rot(_unit(ca0 - c), ANG_CA_C_O)
    ca1 = n + N_CA * rot(_unit(c - n), ANG_C_N_CA)  # trans: CA(i+1) opposite CA(i) about C–N
    e1 = _unit(ca1 - ca0)
    e2 = np.array([-e1[1], e1[0]])
    if (o - ca0) @ e2 < 0:
        e2 = -e2
    local = {k: np.array([(p - ca0) @ e1, (p - ca0) @ e2]) for k, p in (("C", c), ("O", o), ("N", n))}
    return float(np.linalg.norm(ca1 - ca0)), local


CA_CA_IDEAL, PEPTIDE = _peptide_template()


def _extend(ca: np.ndarray) -> np.ndarray:
    """Pad a trace ``[L, 3]`` with one virtual Cα before and two after (translated bond
    vectors), so every peptide, including the terminal half-peptides, has neighbours."""
    first = ca[0] - (ca[2] - ca[1])
    last1 = ca[-1] + (ca[-2] - ca[-3])
    last2 = last1 + (ca[-1] - ca[-2])
    return np.concatenate([first[None], ca, last1[None], last2[None]])


def place_backbone(ca: np.ndarray) -> np.ndarray:
    """Ideal N, CA, C, O ``[L, 4, 3]`` (Å) from a Cα trace ``ca [L, 3]`` (Å), L ≥ 3."""
    ca = np.asarray(ca, dtype=np.float64)
    L = len(ca)
    if L < 3:
        raise ValueError("placing a backbone needs at least 3 Cα atoms")
    x = _extend(ca)  # index k ↔ residue k−1
    a, b, c = x[:-2], x[1:-1], x[2:]  # peptides between x[k] and x[k+1], k = 0..L
    e1 = _unit(b - a)
    n = _unit(np.cross(b - a, c - b))
    v = _unit(n - (n * e1).sum(-1, keepdims=True) * e1)
    w = np.cross(e1, v)
    phi = math.radians(PLANE_OFFSET_DEG)
    e2 = math.cos(phi) * v + math.sin(phi) * w
    out = np.zeros((L, 4, 3))
    out[:, 1] = ca
    # peptide k (k = 0..L) joins virtual x[k] (residue k−1) and x[k+1] (residue k)
    pos = {k: a + p[0] * e1 + p[1] * e2 for k, p in PEPTIDE.items()}
    out[:, 0] = pos["N"][:L]  # N of residue k from peptide k
    out[:, 2] = pos["C"][1 : L + 1]  # C, O of residue k from peptide k+1
    out[:, 3] = pos["O"][1 : L + 1]
    return out


def ca_frames(ca: np.ndarray) -> np.ndarray:
    """Residue frames ``[L, 3, 3]`` (rows: orthonormal axes, right-handed) from a Cα trace
    by Gram–Schmidt on (CA(i+1) − CA(i), CA(i−1) − CA(i)); ends reuse their neighbour's.
    Rotating the trace by R maps each frame F to F·Rᵀ."""
    ca = np.asarray(ca, dtype=np.float64)
    L = len(ca)
    fr = np.zeros((L, 3, 3))
    for i in range(L):
        j = min(max(i, 1), L - 2)
        u1 = _unit(ca[j + 1] - ca[j])
        v = ca[j - 1] - ca[j]
        u2 = _unit(v - (v @ u1) * u1)
        fr[i] = np.stack([u1, u2, np.cross(u1, u2)])
    return fr


def kabsch(p: np.ndarray, q: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R and translation t minimising Σ w‖R p + t − q‖² (Kabsch 1976); p, q ``[n, 3]``."""
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    pc, qc = (w[:, None] * p).sum(0), (w[:, None] * q).sum(0)
    H = ((p - pc) * w[:, None]).T @ (q - qc)
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    D = np.diag([1.0, 1.0, d])
    R = Vt.T @ D @ U.T
    return R, qc - R @ pc


def rmsd(p: np.ndarray, q: np.ndarray, superpose: bool = True) -> float:
    """Cα RMSD (Å) between ``[n, 3]`` sets, after optimal superposition by default."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if superpose:
        R, t = kabsch(p, q)
        p = p @ R.T + t
    return float(np.sqrt(((p - q) ** 2).sum(-1).mean()))


def radius_of_gyration(ca: np.ndarray) -> float:
    """Rg (Å) of a Cα trace ``[L, 3]``."""
    ca = np.asarray(ca, dtype=np.float64)
    return float(np.sqrt(((ca - ca.mean(0)) ** 2).sum(-1).mean()))


def expected_rg(n: int) -> float:
    """Rg of a compact globular domain, 2.2·N^0.38 Å (Skolnick et al. 1997)."""
    return 2.2 * n**0.38
