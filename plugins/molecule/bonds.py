"""Bond orders from interatomic distances: the rules of EDM (Hoogeboom et al. 2022).

EDM assigns a bond order to every atom pair from typical bond lengths (pm) with margins
of 10 pm (single), 5 pm (double) and 3 pm (triple):

- order 0 if d ≥ single + 10 pm (or no single length is tabulated for the pair);
- else 1, raised to 2 if a double length exists and d < double + 5 pm,
  raised to 3 if a triple length exists and d < triple + 3 pm.

An atom is *stable* when the sum of its bond orders equals its valence
(H 1, C 4, N 3, O 2, F 1). The lengths below are the published table entries for the
QM9 elements (see ``/work/shared/REFERENCES.md``); other elements get no bonds.

All distances given to this module are in Å and converted to pm (× 100).
"""

from __future__ import annotations

import numpy as np

MARGIN_SINGLE_PM, MARGIN_DOUBLE_PM, MARGIN_TRIPLE_PM = 10.0, 5.0, 3.0

#: typical single-bond lengths (pm)
SINGLE_PM = {
    ("H", "H"): 74,
    ("H", "C"): 109,
    ("H", "N"): 101,
    ("H", "O"): 96,
    ("H", "F"): 92,
    ("C", "C"): 154,
    ("C", "N"): 147,
    ("C", "O"): 143,
    ("C", "F"): 135,
    ("N", "N"): 145,
    ("N", "O"): 140,
    ("N", "F"): 136,
    ("O", "O"): 148,
    ("O", "F"): 142,
    ("F", "F"): 142,
}
#: typical double-bond lengths (pm)
DOUBLE_PM = {("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120, ("N", "N"): 125, ("N", "O"): 121, ("O", "O"): 121}
#: typical triple-bond lengths (pm)
TRIPLE_PM = {("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113, ("N", "N"): 110}

#: valence used for atom stability (EDM, QM9 elements)
VALENCE = {"H": 1, "C": 4, "N": 3, "O": 2, "F": 1}


def _symmetric(table: dict) -> dict:
    out = {}
    for (a, b), v in table.items():
        out[(a, b)] = float(v)
        out[(b, a)] = float(v)
    return out


_S, _D, _T = _symmetric(SINGLE_PM), _symmetric(DOUBLE_PM), _symmetric(TRIPLE_PM)


def bond_order(a: str, b: str, distance_angstrom: float) -> int:
    """EDM bond order (0–3) of elements ``a``, ``b`` at ``distance_angstrom`` Å."""
    d = 100.0 * float(distance_angstrom)
    single = _S.get((a, b))
    if single is None or not d < single + MARGIN_SINGLE_PM:
        return 0
    order = 1
    double = _D.get((a, b))
    if double is not None and d < double + MARGIN_DOUBLE_PM:
        order = 2
        triple = _T.get((a, b))
        if triple is not None and d < triple + MARGIN_TRIPLE_PM:
            order = 3
    return order


def _threshold_matrices(elements: list[str]):
    """Per-pair thresholds (pm) ``[n, n]`` each; ``-inf`` where no length is tabulated."""
    n = len(elements)
    thr = np.full((3, n, n), -np.inf)
    for i, a in enumerate(elements):
        for j, b in enumerate(elements):
            s = _S.get((a, b))
            if s is not None:
                thr[0, i, j] = s + MARGIN_SINGLE_PM
            d = _D.get((a, b))
            if d is not None:
                thr[1, i, j] = d + MARGIN_DOUBLE_PM
            t = _T.get((a, b))
            if t is not None:
                thr[2, i, j] = t + MARGIN_TRIPLE_PM
    return thr


def bond_order_matrix(elements: list[str], positions) -> np.ndarray:
    """``[n, n]`` int EDM bond orders for symbols ``elements`` at ``positions`` ``[n, 3]`` Å.

    Vectorised form of :func:`bond_order` (same nesting: the triple test applies only to
    pairs that passed the double test); the diagonal is 0.
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    n = len(elements)
    if pos.shape[0] != n:
        raise ValueError(f"{n} elements but {pos.shape[0]} positions")
    d = 100.0 * np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    thr = _threshold_matrices(list(elements))
    single = d < thr[0]
    double = single & (d < thr[1])
    triple = double & (d < thr[2])
    order = single.astype(np.int64) + double + triple
    np.fill_diagonal(order, 0)
    return order


def atom_stability(elements: list[str], positions) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom (stable ``[n]`` bool, bond-order sum ``[n]`` int) under EDM's rules.

    Elements without a tabulated valence are never stable.
    """
    order = bond_order_matrix(elements, positions)
    total = order.sum(1)
    valence = np.array([VALENCE.get(e, -1) for e in elements])
    return total == valence, total
