"""Bond-aware molecule metrics: stability, validity, uniqueness and novelty from the bonds a
molecule *carries* (the joint model's predicted bonds, not EDM's distance rules), and the
chemistry checks a chemist looks at.

Samples are RDKit Mols with explicit hydrogens and bonds (what
:meth:`~.joint.JointMoleculeModality.decode` returns and :func:`~.decode.read_bonded_sdf`
reads back) or records carrying ``bonds`` (QM9 with perceived bonds).

- **atom stability**: an atom is stable when the sum of its bond orders (single 1, double 2,
  triple 3, aromatic 1.5) is the valence its element and formal charge allow
  (:data:`VALENCES`, MiDi's table for these elements: C 4, or 3 when charged ±1; N 3, 4 as
  N⁺, 2 as N⁻; O 2, 3 as O⁺, 1 as O⁻; H 1; F 1); **molecule stability**: every atom stable.
- **validity**: ``Chem.SanitizeMol`` accepts the molecule; **connected validity**: valid and
  one fragment; **uniqueness**: distinct canonical SMILES of the largest fragment / valid;
  **novelty**: unique SMILES absent from the training set's (QM9 train with perceived bonds,
  computed the same way) / unique.
- **ring sizes**: the smallest-set-of-smallest-rings sizes of the valid molecules, binned
  3, 4, 5, 6, 7, 8+ and pooled over molecules; ``molecule_joint_ring_size_tv`` is the total
  variation ½Σ|p − q| to the reference's distribution (1 when the samples have no ring and
  the reference has; 0 when neither has).
- **3-rings, O–O and N–N single bonds**: the share of rings that are 3-membered, and the
  shares of all bonds that are O–O single / N–N single bonds (all molecules, valid or not);
  the registered metrics are the absolute differences to the reference's shares.
- **strain**: per valid molecule that MMFF94 parameterises (Halgren 1996, RDKit), the energy
  drop E(as given) − E(MMFF-relaxed) in kcal/mol; ``molecule_joint_mmff_strain`` is the median
  over molecules. The reference's value is in :func:`chemistry_report`.

``reference`` for the reference-based metrics: ``None`` or ``"qm9"`` (a seeded 1,000-molecule
QM9 test subset with perceived bonds; novelty: the QM9 training split), or a list of
molecules, or (novelty) a set of SMILES.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from polydiff.checkpoint import atomic_write_bytes

#: allowed bond-order sums by (element, formal charge)
VALENCES = {
    ("H", 0): (1,),
    ("C", 0): (4,),
    ("C", 1): (3,),
    ("C", -1): (3,),
    ("N", 0): (3,),
    ("N", 1): (4,),
    ("N", -1): (2,),
    ("O", 0): (2,),
    ("O", 1): (3,),
    ("O", -1): (1,),
    ("F", 0): (1,),
}
RING_BINS = (3, 4, 5, 6, 7, 8)  # 8 = 8 or more
_N_REF = 1000


def as_mol(sample):
    """An RDKit Mol with bonds from a Mol (returned as is) or a record carrying ``bonds``."""
    if hasattr(sample, "GetAtoms"):
        return sample
    from .decode import record_mol

    return record_mol(sample)


def _mols(samples) -> list:
    return [as_mol(s) for s in samples]


# -- stability and validity ---------------------------------------------------------------
def atom_stable(mol) -> np.ndarray:
    """``[n]`` bool: each atom's bond-order sum is allowed for its element and charge."""
    total = np.zeros(mol.GetNumAtoms())
    for b in mol.GetBonds():
        o = b.GetBondTypeAsDouble()
        total[b.GetBeginAtomIdx()] += o
        total[b.GetEndAtomIdx()] += o
    return np.array(
        [
            any(abs(total[a.GetIdx()] - v) < 1e-6 for v in VALENCES.get((a.GetSymbol(), a.GetFormalCharge()), ()))
            for a in mol.GetAtoms()
        ],
        dtype=bool,
    )


def _stability(samples) -> tuple[float, float]:
    atoms = stable = mols = stable_mols = 0
    for m in _mols(samples):
        s = atom_stable(m)
        atoms += len(s)
        stable += int(s.sum())
        mols += 1
        stable_mols += int(len(s) > 0 and s.all())
    return stable / max(1, atoms), stable_mols / max(1, mols)


def bonded_atom_stability(samples, reference=None, **_) -> float:
    """Stable atoms / atoms under the carried bonds and charges."""
    return _stability(samples)[0]


def bonded_molecule_stability(samples, reference=None, **_) -> float:
    """Molecules whose every atom is stable / molecules."""
    return _stability(samples)[1]


def sanitized(mol):
    """A sanitised copy of ``mol`` or None."""
    from .chem import sanitized_copy

    return sanitized_copy(mol)


def smiles_and_fragments(samples) -> list[tuple[str | None, int]]:
    """Per sample: (canonical SMILES of the largest fragment, hydrogens implicit, or None if
    invalid; fragment count)."""
    from rdkit import Chem

    out = []
    for m in _mols(samples):
        s = sanitized(m)
        if s is None:
            out.append((None, 0))
            continue
        frags = Chem.GetMolFrags(s, asMols=True, sanitizeFrags=False)
        largest = max(frags, key=lambda f: f.GetNumAtoms())
        out.append((Chem.MolToSmiles(Chem.RemoveHs(largest, sanitize=False)), len(frags)))
    return out


def canonical_smiles(smiles) -> set[str]:
    """Canonical forms (RDKit) of SMILES strings; one that does not parse raises ValueError."""
    from rdkit import Chem

    out = set()
    for s in smiles:
        m = Chem.MolFromSmiles(s)
        if m is None:
            raise ValueError(f"reference SMILES {s[:60]!r} does not parse")
        out.add(Chem.MolToSmiles(m))
    return out


def bonded_validity(samples, reference=None, **_) -> float:
    """Molecules that RDKit sanitises with their carried bonds / molecules."""
    sm = smiles_and_fragments(samples)
    return sum(s is not None for s, _ in sm) / max(1, len(sm))


def bonded_connected_validity(samples, reference=None, **_) -> float:
    """Valid single-fragment molecules / molecules."""
    sm = smiles_and_fragments(samples)
    return sum(s is not None and k == 1 for s, k in sm) / max(1, len(sm))


def bonded_uniqueness(samples, reference=None, **_) -> float:
    """Distinct valid SMILES / valid molecules (0 when none is valid)."""
    valid = [s for s, _ in smiles_and_fragments(samples) if s is not None]
    return len(set(valid)) / len(valid) if valid else 0.0


def bonded_novelty(samples, reference=None, **_) -> float:
    """Unique valid SMILES absent from the reference SMILES / unique valid SMILES."""
    unique = {s for s, _ in smiles_and_fragments(samples) if s is not None}
    if not unique:
        return 0.0
    if reference is None or isinstance(reference, str):
        if reference not in (None, "qm9", "qm9:train"):
            raise ValueError(f"unknown reference {reference!r}; use 'qm9', molecules or a set of SMILES")
        known = _qm9_train_bonded_smiles()
    elif isinstance(reference, (set, frozenset)):
        known = canonical_smiles(reference)
    else:
        known = {s for s, _ in smiles_and_fragments(reference) if s is not None}
    return len(unique - known) / len(unique)


@functools.lru_cache(maxsize=1)
def _qm9_train_bonded_smiles() -> set[str]:
    from polydiff.cache import cache_root

    from .bonds_qm9 import attach_bonds
    from .qm9 import load_qm9

    path = cache_root() / "qm9_train_bonded_smiles_v2.json"
    if path.is_file():
        return set(json.loads(path.read_text()))
    data = attach_bonds(load_qm9("train"))
    out = {s for s, _ in smiles_and_fragments(data.records) if s is not None}
    atomic_write_bytes(path, json.dumps(sorted(out)).encode())
    return out


# -- chemistry checks ---------------------------------------------------------------------
def chemistry_stats(samples, *, strain: bool = True) -> dict:
    """Raw chemistry numbers of ``samples``: ``ring_hist`` (shares of ring sizes
    :data:`RING_BINS`, or None without rings), ``rings``, ``ring3_share``, ``bonds``,
    ``oo_single_share``, ``nn_single_share``, ``strain_median`` (kcal/mol, None when no
    molecule could be relaxed), ``strain_n`` (molecules relaxed), ``valid`` (molecules).
    ``strain=False`` skips the MMFF94 relaxations (``strain_median`` None, ``strain_n`` 0):
    the ring and bond shares alone are cheap."""
    from rdkit import Chem

    ring_counts = np.zeros(len(RING_BINS))
    n_bonds = oo = nn = 0
    strains = []
    valid = 0
    for m in _mols(samples):
        for b in m.GetBonds():
            n_bonds += 1
            if b.GetBondType() == Chem.BondType.SINGLE:
                pair = {b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol()}
                oo += pair == {"O"}
                nn += pair == {"N"}
        s = sanitized(m)
        if s is None:
            continue
        valid += 1
        for ring in s.GetRingInfo().AtomRings():
            ring_counts[min(len(ring), RING_BINS[-1]) - RING_BINS[0]] += 1
        e = mmff_strain(s) if strain else None
        if e is not None:
            strains.append(e)
    rings = int(ring_counts.sum())
    return {
        "ring_hist": (ring_counts / rings).tolist() if rings else None,
        "rings": rings,
        "ring3_share": float(ring_counts[0] / rings) if rings else 0.0,
        "bonds": n_bonds,
        "oo_single_share": oo / n_bonds if n_bonds else 0.0,
        "nn_single_share": nn / n_bonds if n_bonds else 0.0,
        "strain_median": float(np.median(strains)) if strains else None,
        "strain_n": len(strains),
        "valid": valid,
    }


def mmff_strain(mol, max_iters: int = 2000) -> float | None:
    """E(as given) − E(MMFF94-relaxed) in kcal/mol of a sanitised Mol with explicit H and a
    conformer; None when MMFF94 has no parameters for it."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    m = Chem.Mol(mol)
    props = AllChem.MMFFGetMoleculeProperties(m)
    if props is None:
        return None
    ff = AllChem.MMFFGetMoleculeForceField(m, props)
    if ff is None:
        return None
    e0 = ff.CalcEnergy()
    ff.Minimize(maxIts=max_iters)
    return float(e0 - ff.CalcEnergy())


@functools.lru_cache(maxsize=1)
def _qm9_reference_stats() -> dict:
    from .bonds_qm9 import attach_bonds
    from .qm9 import load_qm9

    return chemistry_stats(attach_bonds(load_qm9("test", limit=_N_REF, seed=0)).records)


def _reference_stats(reference, *, strain: bool = True) -> dict:
    if reference is None or isinstance(reference, str):
        if reference not in (None, "qm9", "qm9:test"):
            raise ValueError(f"unknown reference {reference!r}; use 'qm9' or pass molecules")
        return _qm9_reference_stats()
    return chemistry_stats(reference, strain=strain)


def ring_size_tv(samples, reference=None, **_) -> float:
    """Total variation between the ring-size distributions of samples and reference."""
    return _ring_tv(
        chemistry_stats(samples, strain=False)["ring_hist"], _reference_stats(reference, strain=False)["ring_hist"]
    )


def _ring_tv(p, q) -> float:
    """½Σ|p − q| of two ring-size histograms; 0 when neither has rings, 1 when only one has."""
    if p is None or q is None:
        return 0.0 if p is None and q is None else 1.0
    return 0.5 * float(np.abs(np.array(p) - np.array(q)).sum())


def ring3_share_diff(samples, reference=None, **_) -> float:
    """|share of 3-membered rings (samples) − same (reference)|."""
    s, r = chemistry_stats(samples, strain=False), _reference_stats(reference, strain=False)
    return abs(s["ring3_share"] - r["ring3_share"])


def oo_single_share_diff(samples, reference=None, **_) -> float:
    """|share of bonds that are O–O single (samples) − same (reference)|."""
    s, r = chemistry_stats(samples, strain=False), _reference_stats(reference, strain=False)
    return abs(s["oo_single_share"] - r["oo_single_share"])


def nn_single_share_diff(samples, reference=None, **_) -> float:
    """|share of bonds that are N–N single (samples) − same (reference)|."""
    s, r = chemistry_stats(samples, strain=False), _reference_stats(reference, strain=False)
    return abs(s["nn_single_share"] - r["nn_single_share"])


def mmff_strain_median(samples, reference=None, **_) -> float:
    """Median MMFF94 energy drop on relaxation (kcal/mol) over the valid, parameterised
    samples; raises ValueError when there is none (nothing to measure)."""
    v = chemistry_stats(samples)["strain_median"]
    if v is None:
        raise ValueError("no valid molecule that MMFF94 parameterises: strain needs at least one")
    return v


def chemistry_report(samples, reference=None) -> dict:
    """Samples' and reference's raw chemistry numbers side by side (:func:`chemistry_stats`)
    plus the registered comparisons."""
    s, r = chemistry_stats(samples), _reference_stats(reference)
    return {
        "samples": s,
        "reference": r,
        "molecule_joint_ring_size_tv": _ring_tv(s["ring_hist"], r["ring_hist"]),
        "molecule_joint_ring3_share_diff": abs(s["ring3_share"] - r["ring3_share"]),
        "molecule_joint_oo_single_share_diff": abs(s["oo_single_share"] - r["oo_single_share"]),
        "molecule_joint_nn_single_share_diff": abs(s["nn_single_share"] - r["nn_single_share"]),
    }


def ring_size_plot(histograms: dict, path, *, title: str = "ring sizes"):
    """Grouped bars of ring-size shares over :data:`RING_BINS` (3, 4, 5, 6, 7, 8+), one group
    per entry of ``histograms`` (``{label: shares}``, e.g. a :func:`chemistry_stats`
    ``ring_hist``; None, a set without rings, is drawn as no bars and says so in the legend).
    Writes a PNG at ``path`` (atomically); returns its path."""
    from polydiff.plotting import figure, save_figure

    for label, shares in histograms.items():
        if shares is not None and len(shares) != len(RING_BINS):
            raise ValueError(f"ring_size_plot: {label!r} has {len(shares)} shares, not one per bin {RING_BINS}")
    fig, ax = figure(figsize=(5.0, 3.0))
    width = 0.8 / max(len(histograms), 1)
    xs = np.arange(len(RING_BINS))
    for k, (label, shares) in enumerate(histograms.items()):
        values = np.zeros(len(RING_BINS)) if shares is None else np.asarray(shares, dtype=float)
        ax.bar(
            xs + (k - (len(histograms) - 1) / 2) * width,
            values,
            width,
            label=label + (" (no rings)" if shares is None else ""),
        )
    ax.set_xticks(xs, [str(b) for b in RING_BINS[:-1]] + [f"{RING_BINS[-1]}+"])
    ax.set_xlabel("ring size (atoms)")
    ax.set_ylabel("share of rings")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


#: the chemistry checks scored beside the modality's default metrics by the joint recipe and the
#: benchmark tasks (cheap: no MMFF relaxation; ``molecule_joint_mmff_strain`` is added where time allows)
CHEMISTRY_CHECKS = (
    "molecule_joint_ring_size_tv",
    "molecule_joint_ring3_share_diff",
    "molecule_joint_oo_single_share_diff",
    "molecule_joint_nn_single_share_diff",
)


#: registered metric name → (function, higher_is_better); modality ``molecule_joint``
METRICS = {
    "molecule_joint_atom_stability": (bonded_atom_stability, True),
    "molecule_joint_stability": (bonded_molecule_stability, True),
    "molecule_joint_validity": (bonded_validity, True),
    "molecule_joint_connected_validity": (bonded_connected_validity, True),
    "molecule_joint_uniqueness": (bonded_uniqueness, True),
    "molecule_joint_novelty": (bonded_novelty, True),
    "molecule_joint_ring_size_tv": (ring_size_tv, False),
    "molecule_joint_ring3_share_diff": (ring3_share_diff, False),
    "molecule_joint_oo_single_share_diff": (oo_single_share_diff, False),
    "molecule_joint_nn_single_share_diff": (nn_single_share_diff, False),
    "molecule_joint_mmff_strain": (mmff_strain_median, False),
}
