"""Molecule metrics exactly as EDM (Hoogeboom et al. 2022) defines them, plus distribution
distances.

- atom stability: stable atoms / all atoms; molecule stability: molecules whose every atom
  is stable / molecules (bond orders and valences: :mod:`.bonds`);
- validity: molecules that RDKit sanitises (EDM bonds) / molecules; uniqueness: distinct
  largest-fragment canonical SMILES / valid; novelty: unique SMILES absent from the
  training set's SMILES (computed the same way from the training geometries) / unique;
- connected validity: valid *and* one fragment / molecules;
- ``bond_length_w1`` (Å) and ``bond_angle_w1`` (degrees): 1-Wasserstein distance between the
  pooled bond lengths (EDM-rule bonds) / bond angles of the samples and of a reference set.

Every metric has the registered signature ``f(samples, reference=None, **options) ->
float`` and is held in :data:`METRICS` under its registered name (``molecule_validity``,
…); ``samples`` is a list of RDKit Mols with a conformer (what the model decodes to and
what an SDF reads back to), of :class:`MoleculeRecord` or of ``(elements, positions)``
pairs. Metrics use atoms and coordinates only: bonds stored in the input are ignored.
``reference`` may be ``"qm9"`` (EDM's training split for novelty, a seeded 2,000-molecule
test subset for W1), a data set / list of samples, or (novelty) a set of SMILES.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from polydiff.cache import cache_root
from polydiff.checkpoint import atomic_write_bytes

from .bonds import atom_stability, bond_order_matrix
from .chem import atoms_of, edm_smiles


def _atoms(samples):
    return [atoms_of(s) for s in samples]


def stability_counts(samples) -> dict:
    """{"atoms", "stable_atoms", "molecules", "stable_molecules"} under EDM's rules.

    A molecule with non-finite coordinates counts as unstable in every atom.
    """
    n_at = n_st = n_mol = n_mst = 0
    for elements, pos in _atoms(samples):
        n_mol += 1
        n_at += len(elements)
        if len(elements) == 0 or not np.isfinite(pos).all():
            continue
        stable, _ = atom_stability(elements, pos)
        n_st += int(stable.sum())
        n_mst += int(stable.all())
    return {"atoms": n_at, "stable_atoms": n_st, "molecules": n_mol, "stable_molecules": n_mst}


def atom_stability_metric(samples, reference=None, **_) -> float:
    """Fraction of atoms whose EDM bond-order sum equals their valence."""
    c = stability_counts(samples)
    return c["stable_atoms"] / max(1, c["atoms"])


def molecule_stability_metric(samples, reference=None, **_) -> float:
    """Fraction of molecules with every atom stable."""
    c = stability_counts(samples)
    return c["stable_molecules"] / max(1, c["molecules"])


def smiles_of(samples) -> list[tuple[str | None, int]]:
    """Per sample: (EDM largest-fragment SMILES or None if invalid, fragment count)."""
    out = []
    for elements, pos in _atoms(samples):
        if len(elements) == 0 or not np.isfinite(pos).all():
            out.append((None, 0))
        else:
            out.append(edm_smiles(elements, pos))
    return out


def validity_metric(samples, reference=None, **_) -> float:
    """Fraction of molecules that RDKit sanitises with EDM bonds."""
    sm = smiles_of(samples)
    return sum(s is not None for s, _ in sm) / max(1, len(sm))


def connected_validity_metric(samples, reference=None, **_) -> float:
    """Fraction of molecules that are valid and consist of one fragment."""
    sm = smiles_of(samples)
    return sum(s is not None and k == 1 for s, k in sm) / max(1, len(sm))


def uniqueness_metric(samples, reference=None, **_) -> float:
    """Distinct valid SMILES / valid molecules (0 when nothing is valid)."""
    valid = [s for s, _ in smiles_of(samples) if s is not None]
    return len(set(valid)) / len(valid) if valid else 0.0


def novelty_metric(samples, reference="qm9", **_) -> float:
    """Unique valid SMILES not in the reference (training) SMILES / unique valid SMILES."""
    unique = {s for s, _ in smiles_of(samples) if s is not None}
    if not unique:
        return 0.0
    known = reference_smiles(reference if reference is not None else "qm9")
    return len(unique - known) / len(unique)


def reference_smiles(reference) -> set[str]:
    """Training SMILES for novelty: ``"qm9"`` (EDM rules on the 100k training geometries,
    cached on disk under ``$POLYDIFF_CACHE`` or ``~/.cache/polydiff``), a set of SMILES, or
    samples (computed the same way)."""
    if isinstance(reference, (set, frozenset)):
        return set(reference)
    if isinstance(reference, str):
        if reference.lower() not in ("qm9", "qm9:train"):
            raise ValueError(f"unknown reference {reference!r}; use 'qm9' or pass molecules/SMILES")
        return _qm9_train_smiles()
    return {s for s, _ in smiles_of(reference) if s is not None}


@functools.lru_cache(maxsize=1)
def _qm9_train_smiles() -> set[str]:
    from .qm9 import load_qm9

    path = cache_root() / "qm9_train_edm_smiles_v1.json"
    if path.is_file():
        return set(json.loads(path.read_text()))
    data = load_qm9("train")
    out = {s for s, _ in smiles_of(data.records) if s is not None}
    atomic_write_bytes(path, json.dumps(sorted(out)).encode())
    return out


# -- geometry distributions -----------------------------------------------------------------
def bond_geometry(samples) -> tuple[np.ndarray, np.ndarray]:
    """Pooled (bond lengths Å, bond angles degrees) over EDM-rule bonds of all samples."""
    lengths, angles = [], []
    for elements, pos in _atoms(samples):
        if len(elements) < 2 or not np.isfinite(pos).all():
            continue
        bonded = bond_order_matrix(elements, pos) > 0
        ii, jj = np.nonzero(np.triu(bonded, 1))
        lengths.append(np.linalg.norm(pos[ii] - pos[jj], axis=-1))
        for c in range(len(elements)):
            nb = np.nonzero(bonded[c])[0]
            if len(nb) < 2:
                continue
            v = pos[nb] - pos[c]
            v = v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)
            a, b = np.triu_indices(len(nb), 1)
            cos = np.clip((v[a] * v[b]).sum(-1), -1.0, 1.0)
            angles.append(np.degrees(np.arccos(cos)))
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    return cat(lengths), cat(angles)


@functools.lru_cache(maxsize=2)
def _qm9_reference_geometry(n: int = 2000, seed: int = 0):
    from .qm9 import load_qm9

    return bond_geometry(load_qm9("test", limit=n, seed=seed).records)


def _reference_geometry(reference):
    if reference is None or isinstance(reference, str):
        if reference not in (None, "qm9", "qm9:test"):
            raise ValueError(f"unknown reference {reference!r}; use 'qm9' or pass molecules")
        return _qm9_reference_geometry()
    return bond_geometry(reference)


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    if len(a) == 0 or len(b) == 0:
        return float("inf")
    return float(wasserstein_distance(a, b))


def bond_length_w1(samples, reference=None, **_) -> float:
    """W1 (Å) between bond-length distributions of samples and reference."""
    return _w1(bond_geometry(samples)[0], _reference_geometry(reference)[0])


def bond_angle_w1(samples, reference=None, **_) -> float:
    """W1 (degrees) between bond-angle distributions of samples and reference."""
    return _w1(bond_geometry(samples)[1], _reference_geometry(reference)[1])


#: registered metric name → (function, higher_is_better)
METRICS = {
    "molecule_atom_stability": (atom_stability_metric, True),
    "molecule_stability": (molecule_stability_metric, True),
    "molecule_validity": (validity_metric, True),
    "molecule_connected_validity": (connected_validity_metric, True),
    "molecule_uniqueness": (uniqueness_metric, True),
    "molecule_novelty": (novelty_metric, True),
    "molecule_bond_length_w1": (bond_length_w1, False),
    "molecule_bond_angle_w1": (bond_angle_w1, False),
}


def evaluate_molecules(samples, reference=None, *, novelty_reference="qm9", geometry: bool = True) -> dict:
    """Every metric at once (one bond analysis, one RDKit pass): the EDM set plus
    connected validity and, with ``geometry``, the W1 distances."""
    c = stability_counts(samples)
    sm = smiles_of(samples)
    n = max(1, len(sm))
    valid = [s for s, _ in sm if s is not None]
    unique = set(valid)
    out = {
        "molecule_atom_stability": c["stable_atoms"] / max(1, c["atoms"]),
        "molecule_stability": c["stable_molecules"] / max(1, c["molecules"]),
        "molecule_validity": len(valid) / n,
        "molecule_connected_validity": sum(s is not None and k == 1 for s, k in sm) / n,
        "molecule_uniqueness": len(unique) / len(valid) if valid else 0.0,
    }
    if novelty_reference is not None:
        out["molecule_novelty"] = len(unique - reference_smiles(novelty_reference)) / len(unique) if unique else 0.0
    if geometry:
        lengths, angles = bond_geometry(samples)
        ref_l, ref_a = _reference_geometry(reference)
        out["molecule_bond_length_w1"] = _w1(lengths, ref_l)
        out["molecule_bond_angle_w1"] = _w1(angles, ref_a)
    return out
