"""The bond-aware joint molecule modality ``molecule_joint``: positions, atom types, formal
charges and bond orders diffused together (issue 18; MiDi, Vignac et al. 2023, in design).

The state has four parts (:meth:`polydiff.modality.Modality.parts`), padded to N atoms:

- ``pos`` ``[B, N, 3]`` float: positions in Å, zero centre of mass over the real atoms
  (Gaussian noise in :class:`polydiff.spaces.ZeroCoMSpace`, schedule ``config["schedule"]``,
  default ``cosine``);
- ``atom`` ``[B, N]`` long: element index into ``config["elements"]`` (QM9: H C N O F);
- ``charge`` ``[B, N]`` long: formal charge + 1 (classes −1, 0, +1 → 0, 1, 2);
- ``bond`` ``[B, N, N]`` long, symmetric: kekulé bond order, 0 none, 1 single, 2 double,
  3 triple (:data:`~.bonds_qm9.BOND_CLASSES`); the diagonal is 0.

The categorical parts use the data-marginal process by default (MiDi: the prior is the
training data's class frequencies, recorded by :meth:`fit`), or the masked process
(``config["process"] = "masked"``); their keep-probability schedule is
``config["keep_schedule"]`` (``cosine``, Shi et al. 2024). ``cond``: ``mask`` ``[B, N]``.
Padding atoms hold atom 0, charge class 1 (neutral) and no bonds; the loss ignores them.

Items are :class:`~.data.MoleculeRecord` with ``bonds`` ``[n, n]`` and ``charges`` ``[n]``
(dataset ``qm9_bonds``, :func:`~.bonds_qm9.attach_bonds`) or RDKit Mols with bonds (an SDF
read with its bonds). Decoding builds RDKit Mols from the *predicted* bonds and charges
(:mod:`.decode`).

**Property conditioning** (EDM's protocol, Hoogeboom et al. 2022 §5): ``config["properties"]``
names scalar properties (QM9: ``alpha`` bohr³, ``gap`` eV, …, :mod:`.qm9`) that every training
record must carry (a record without one is an :class:`~polydiff.errors.InputError` naming the
record and the property); :meth:`JointMoleculeModality.fit` records their mean and standard
deviation in ``config["property_stats"]``; :meth:`~JointMoleculeModality.collate` then adds
``cond["props"]`` ``[B, P]`` (normalised, in ``properties`` order) and ``cond["cond_mask"]``
``[B]`` (ones; CFG dropout zeroes it, and the network swaps in a learned null embedding).
Sampling takes ``cond={"alpha": value or [n values], "gap": ...}`` (all properties or none;
none samples unconditionally) or ``cond={"props": normalised [n, P]}``; decoded Mols carry
the targets as ``target_<name>`` properties. See ``examples/recipes/molecule_property.py``
and :mod:`.property_predictor` for the evaluation protocol.

**Formula conditioning** (``config["formula_conditioning"] = True``): the model generates the
structure of a molecule of a given formula — positions, charges and bonds; the atom types are
a condition (``cond["atom_types"]`` ``[B, N]``, read by :class:`~.joint_network.JointEGNN` with
``atoms_given``), not a part of the state. :meth:`JointMoleculeModality.fit` records the
training formulas and their frequencies (``config["formula_hist"]``, Hill formulas such as
``"C7H10O2"``); sampling draws a formula per molecule from them — as EDM draws the atom count
from the training histogram, one level finer: the count *and* its split into elements, so the
hydrogen count, and with it how many rings and multiple bonds the molecule needs, is the
data's — or takes ``cond={"formula": "C7H10O2"}`` (one, or one per sample: isomers of a
formula). Atoms are exchangeable, so the formula's elements fill the atoms in any fixed order.
Why not let the network read the formula and generate the types: per-atom categorical steps
are drawn independently, so a global count is hard to hit — a 16-minute model conditioned so
(an embedding of the element counts) gave the requested formula in 6 % of samples, and
pinning a trained model's atom types to a drawn formula (replacement inpainting) left 3 %
valid (2026-12-03, recipe ``examples/recipes/molecule_joint.py``).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from polydiff.categorical import MarginalProcess, MaskedProcess
from polydiff.errors import InputError
from polydiff.mixed import CategoricalPart, ContinuousPart
from polydiff.spaces import ZeroCoMSpace

from .bonds_qm9 import BOND_CLASSES
from .modality import MoleculeModality, weighted_draws

#: formal charges of the charge classes 0, 1, 2
CHARGES = (-1, 0, 1)
PROCESSES = ("marginal", "masked")
#: parts of the state, in order
PART_NAMES = ("pos", "atom", "charge", "bond")
_FORMULA_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


def hill_formula(elements) -> str:
    """Hill-order formula of a list of element symbols: C, then H, then the rest
    alphabetically (``["C", "H", "H", "O"]`` → ``"CH2O"``; no carbon: all alphabetical)."""
    counts = Counter(elements)
    if "C" in counts:
        order = ["C"] + (["H"] if "H" in counts else []) + sorted(k for k in counts if k not in ("C", "H"))
    else:
        order = sorted(counts)
    return "".join(k + (str(counts[k]) if counts[k] > 1 else "") for k in order)


def parse_formula(formula: str, elements) -> np.ndarray:
    """``"C7H10O2"`` → ``[len(elements)]`` int64 counts in ``elements`` order; a malformed
    formula, an element outside ``elements`` or one named twice is a ``ValueError``."""
    text = str(formula).strip()
    tokens = _FORMULA_TOKEN.findall(text)
    if not text or "".join(e + n for e, n in tokens) != text:
        raise ValueError(f"formula {formula!r} is not a molecular formula such as 'C7H10O2'")
    out = np.zeros(len(elements), dtype=np.int64)
    seen = set()
    for e, n in tokens:
        if e not in elements:
            raise ValueError(f"formula {formula!r}: element {e!r} is not in the model's vocabulary {list(elements)}")
        if e in seen:
            raise ValueError(f"formula {formula!r} names {e!r} twice")
        seen.add(e)
        out[list(elements).index(e)] = int(n) if n else 1
    if out.sum() < 1:
        raise ValueError(f"formula {formula!r} has no atoms")
    return out


def bonded_record(item, index: int = -1):
    """(elements, positions ``[n, 3]`` Å, charges ``[n]`` int, bonds ``[n, n]`` int) of a
    record with ``bonds`` or an RDKit Mol with a conformer (kekulised bond orders)."""
    if hasattr(item, "GetAtoms"):
        from rdkit import Chem

        if item.GetNumConformers() == 0:
            raise InputError("molecule has no 3-D coordinates", record=index, field="coordinates")
        m = Chem.Mol(item)
        try:
            Chem.Kekulize(m, clearAromaticFlags=True)
        except Exception:  # KekulizeException: aromatic flags that admit no kekulé form
            raise InputError("aromatic bonds that cannot be kekulised", record=index, field="bonds") from None
        n = m.GetNumAtoms()
        bonds = np.zeros((n, n), dtype=np.int64)
        for b in m.GetBonds():
            o = {1.0: 1, 2.0: 2, 3.0: 3}.get(b.GetBondTypeAsDouble())
            if o is None:
                raise InputError(
                    f"bond type {b.GetBondType()} is not single/double/triple", record=index, field="bonds"
                )
            bonds[b.GetBeginAtomIdx(), b.GetEndAtomIdx()] = bonds[b.GetEndAtomIdx(), b.GetBeginAtomIdx()] = o
        return (
            [a.GetSymbol() for a in m.GetAtoms()],
            np.asarray(m.GetConformer().GetPositions(), dtype=np.float64),
            np.array([a.GetFormalCharge() for a in m.GetAtoms()], dtype=np.int64),
            bonds,
        )
    bonds = getattr(item, "bonds", None)
    if bonds is None:
        raise InputError(
            "record has no bonds: load QM9 with the dataset 'qm9_bonds' (or attach_bonds), or give Mols with bonds",
            record=getattr(item, "index", index),
            field="bonds",
        )
    n = item.n_atoms
    charges = np.zeros(n, dtype=np.int64) if item.charges is None else np.asarray(item.charges, dtype=np.int64)
    return list(item.elements), np.asarray(item.positions, dtype=np.float64), charges, np.asarray(bonds, np.int64)


class JointMoleculeModality(MoleculeModality):
    """3-D molecules with bonds (see the module docstring). Config keys, beyond the molecule
    modality's ``elements``, ``n_atoms_hist``, ``max_atoms``: ``process`` (``marginal`` |
    ``masked``), ``schedule`` (positions), ``keep_schedule`` (categorical parts),
    ``marginals`` ({"atom", "charge", "bond": class frequencies}, set by :meth:`fit`),
    ``categorical_loss`` (``elbo``, the default, or ``ce``: plain cross-entropy on the clean
    classes as DiGress/MiDi train, :func:`polydiff.categorical.categorical_loss`),
    ``formula_conditioning`` (bool, default False) and ``formula_hist`` ({Hill formula:
    training count}, set by :meth:`fit` when conditioning)."""

    name = "molecule_joint"
    default_network = "egnn_joint"
    default_dataset = "qm9_bonds"
    default_schedule = "cosine"
    sigma_data = 1.0
    default_metrics = (
        "molecule_atom_stability",
        "molecule_stability",
        "molecule_joint_atom_stability",
        "molecule_joint_stability",
        "molecule_joint_validity",
        "molecule_joint_connected_validity",
        "molecule_joint_uniqueness",
    )
    #: E(3) on ``pos``, invariant categorical parts, permutation of atoms (and bond rows/columns)
    equivariance = ("permutation",)
    conformance = {
        "dataset_options": {"limit": 8},
        "network_kwargs": {"hidden": 16, "edge_dim": 8, "layers": 1},
        "skip_metrics": (
            "molecule_joint_novelty",
            "molecule_joint_ring_size_tv",
            "molecule_joint_ring3_share_diff",
            "molecule_joint_oo_single_share_diff",
            "molecule_joint_nn_single_share_diff",
        ),
    }

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        c = self.config
        c.setdefault("process", "marginal")
        c.setdefault("schedule", self.default_schedule)
        c.setdefault("keep_schedule", "cosine")
        c.setdefault("marginals", {})
        c.setdefault("categorical_loss", "elbo")
        c.setdefault("formula_conditioning", False)
        c.setdefault("formula_hist", {})
        c["bonds"] = "predicted"
        if c["categorical_loss"] not in ("elbo", "ce"):
            raise ValueError(f"categorical_loss must be 'elbo' or 'ce', got {c['categorical_loss']!r}")
        if c["process"] not in PROCESSES:
            raise ValueError(f"process must be one of {PROCESSES}, got {c['process']!r}")
        props = c.get("properties") or []
        if isinstance(props, str) or not all(isinstance(q, str) and q for q in props):
            raise ValueError(f"properties must be a list of property names, got {props!r}")
        if len(set(props)) != len(props):
            raise ValueError(f"properties name a property twice: {props!r}")
        c["properties"] = list(props)
        if c.get("include_charges"):
            raise ValueError("molecule_joint always carries formal charges as a part; leave include_charges unset")

    # -- the mixed state --------------------------------------------------------------------
    def _process(self, part: str, k: int):
        if self.config["process"] == "masked":
            return MaskedProcess(k, self.config["keep_schedule"])
        m = self.config["marginals"].get(part)
        if m is None or len(m) != k:
            m = [1.0 / k] * k  # before fit: uniform (a checkpoint always saves the fitted ones)
        return MarginalProcess(k, self.config["keep_schedule"], m)

    def parts(self):
        from polydiff.plugin_manager import registry

        sched_name = self.config["schedule"]
        schedule = registry("schedule").get(sched_name)()
        loss = self.config["categorical_loss"]
        parts = {
            "pos": ContinuousPart(schedule, space=self._space, sigma_data=self.sigma_data, schedule_name=sched_name),
            "atom": CategoricalPart(self._process("atom", self.n_types), loss=loss),
            "charge": CategoricalPart(self._process("charge", len(CHARGES)), loss=loss),
            "bond": CategoricalPart(self._process("bond", len(BOND_CLASSES)), symmetric=True, loss=loss),
        }
        if self.config["formula_conditioning"]:  # the atom types are given (cond["atom_types"]), not generated
            del parts["atom"]
        return parts

    @staticmethod
    def _space(cond):
        return ZeroCoMSpace(cond["mask"], n_pos=3)

    def network_kwargs(self) -> dict:
        p = self.parts()
        out = {}
        for name in ("atom", "charge", "bond"):
            if name not in p:  # given atom types: embedded, never predicted
                out[f"n_{name}_states"] = out[f"n_{name}_classes"] = self.n_types
                continue
            proc = p[name].process
            out[f"n_{name}_states"], out[f"n_{name}_classes"] = proc.num_states, proc.num_classes
        if self.config["properties"]:  # unconditional models keep their saved kwargs unchanged
            out["n_props"] = len(self.config["properties"])
        if self.config["formula_conditioning"]:
            out["atoms_given"] = True
        return out

    # -- data -------------------------------------------------------------------------------
    def fit(self, dataset) -> None:
        """Atom-count histogram (as the molecule modality), the class frequencies of atom
        types, charges and bond orders (pairs i < j) for the marginal process and, for a
        conditional model, each property's mean and standard deviation
        (``config["property_stats"]``; every record must carry every property)."""
        items = list(dataset.records) if hasattr(dataset, "records") else list(dataset)
        values = self._property_table(items)  # refuses a record without a property first
        if items and not hasattr(items[0], "GetAtoms"):
            super().fit(dataset)
        else:
            hist: dict[int, int] = {}
            for m in items:
                hist[m.GetNumAtoms()] = hist.get(m.GetNumAtoms(), 0) + 1
            self.config["n_atoms_hist"] = {str(k): v for k, v in sorted(hist.items())}
            self.config["max_atoms"] = max(hist) if hist else int(self.config["max_atoms"])
        atom = np.zeros(self.n_types)
        charge = np.zeros(len(CHARGES))
        bond = np.zeros(len(BOND_CLASSES))
        formulas: Counter[str] = Counter()
        for k, it in enumerate(items):
            el, _, ch, bo = bonded_record(it, k)
            a, c = self._indices(el, ch, getattr(it, "index", k))
            if self.config["formula_conditioning"]:
                formulas[hill_formula(el)] += 1
            atom += np.bincount(a, minlength=self.n_types)
            charge += np.bincount(c, minlength=len(CHARGES))
            iu = np.triu_indices(len(el), 1)
            bond += np.bincount(bo[iu], minlength=len(BOND_CLASSES))[: len(BOND_CLASSES)]
        # a class never seen keeps a tiny prior mass, so every state stays reachable
        self.config["marginals"] = {
            name: [float(v) for v in (cnt + 1e-3) / (cnt + 1e-3).sum()]
            for name, cnt in (("atom", atom), ("charge", charge), ("bond", bond))
        }
        self.config["property_stats"] = {
            p: [float(values[:, j].mean()), float(values[:, j].std() or 1.0)]
            for j, p in enumerate(self.config["properties"])
        }
        if self.config["formula_conditioning"]:
            self.config["formula_hist"] = dict(sorted(formulas.items()))

    # -- properties ---------------------------------------------------------------------------
    def record_properties(self, item, index: int = -1) -> np.ndarray:
        """``[P]`` float64 raw values of ``config["properties"]`` of one record (its
        ``properties`` dict) or RDKit Mol (its numeric Mol properties); a missing or
        non-finite value is an :class:`InputError` naming the record and the property."""
        is_mol = hasattr(item, "GetAtoms")
        rec_id = index if is_mol or getattr(item, "index", -1) < 0 else item.index
        out = []
        for p in self.config["properties"]:
            if is_mol:
                v = item.GetProp(p) if item.HasProp(p) else None
            else:
                v = (getattr(item, "properties", None) or {}).get(p)
            if v is None:
                have = sorted(item.GetPropNames()) if is_mol else sorted(getattr(item, "properties", None) or {})
                raise InputError(
                    f"the model conditions on {self.config['properties']} but this record has no property {p!r} "
                    f"(it has {have})",
                    record=rec_id,
                    field=p,
                )
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise InputError(f"property {p!r} is not a number: {v!r}", record=rec_id, field=p) from None
            if not np.isfinite(v):
                raise InputError(f"property {p!r} is not finite: {v!r}", record=rec_id, field=p)
            out.append(v)
        return np.asarray(out, dtype=np.float64)

    def _property_table(self, items) -> np.ndarray:
        P = len(self.config["properties"])
        if not P:
            return np.zeros((len(items), 0))
        if not items:
            raise InputError("no records to fit the property statistics on", field=self.config["properties"][0])
        return np.stack([self.record_properties(it, k) for k, it in enumerate(items)])

    def normalise_properties(self, values) -> torch.Tensor:
        """{name: value} or ``[P]`` raw values (``config["properties"]`` order) → ``[P]``
        normalised float32 vector; needs :meth:`fit`'s ``property_stats``."""
        names = self.config["properties"]
        stats = self.config["property_stats"]
        missing = [p for p in names if p not in stats]
        if missing:
            raise ValueError(f"no statistics for properties {missing}: fit the modality on the training data first")
        raw = [values[p] for p in names] if isinstance(values, dict) else list(values)
        return torch.tensor([(float(v) - stats[p][0]) / stats[p][1] for p, v in zip(names, raw)], dtype=torch.float32)

    def denormalise_properties(self, props) -> np.ndarray:
        """``[..., P]`` normalised → raw values (``config["properties"]`` order)."""
        props = np.asarray(torch.as_tensor(props).detach().cpu().double())
        stats = self.config["property_stats"]
        mean = np.array([stats[p][0] for p in self.config["properties"]])
        std = np.array([stats[p][1] for p in self.config["properties"]])
        return props * std + mean

    def _indices(self, elements, charges, record) -> tuple[np.ndarray, np.ndarray]:
        try:
            a = np.array([self._index[e] for e in elements], dtype=np.int64)
        except KeyError as e:
            raise InputError(
                f"element {e.args[0]!r} not in the vocabulary {self.elements}", record=record, field="element"
            ) from None
        bad = [int(q) for q in charges if int(q) not in CHARGES]
        if bad:
            raise InputError(f"formal charge {bad[0]} outside {CHARGES}", record=record, field="charge")
        return a, np.asarray(charges, dtype=np.int64) + 1

    def collate(self, items: list) -> dict:
        recs = [bonded_record(it, k) for k, it in enumerate(items)]
        n = max(len(r[0]) for r in recs)
        B = len(recs)
        pos = torch.zeros(B, n, 3)
        atom = torch.zeros(B, n, dtype=torch.long)
        charge = torch.ones(B, n, dtype=torch.long)
        bond = torch.zeros(B, n, n, dtype=torch.long)
        mask = torch.zeros(B, n)
        for b, (el, p, ch, bo) in enumerate(recs):
            k = len(el)
            rec_id = getattr(items[b], "index", b)
            if bo.shape != (k, k) or not (bo == bo.T).all() or (bo < 0).any() or (bo >= len(BOND_CLASSES)).any():
                raise InputError(
                    f"bonds must be a symmetric {k}x{k} matrix of orders 0-{len(BOND_CLASSES) - 1}",
                    record=rec_id,
                    field="bonds",
                )
            a, c = self._indices(el, ch, rec_id)
            pt = torch.as_tensor(p, dtype=torch.float32)
            pos[b, :k] = pt - pt.mean(0, keepdim=True)
            atom[b, :k] = torch.as_tensor(a)
            charge[b, :k] = torch.as_tensor(c)
            bo = torch.as_tensor(bo)
            bond[b, :k, :k] = bo * (1 - torch.eye(k, dtype=torch.long))
            mask[b, :k] = 1
        cond = {"mask": mask}
        x = {"pos": pos, "atom": atom, "charge": charge, "bond": bond}
        if self.config["formula_conditioning"]:
            cond["atom_types"] = x.pop("atom")
        if self.config["properties"]:
            raw = [self.record_properties(it, k) for k, it in enumerate(items)]
            cond["props"] = torch.stack([self.normalise_properties(v) for v in raw])
            cond["cond_mask"] = torch.ones(B)
        return {"x": x, "cond": cond}

    def auxiliary_loss(self, *args, **kwargs):
        return None

    # -- sampling -----------------------------------------------------------------------------
    def sampling_request(self, n: int, cond: dict | None, rng):
        """Shapes ``{"pos": (M, 3), "atom": (M,), "charge": (M,), "bond": (M, M)}`` with M the
        largest atom count, and ``mask`` from ``cond["n_atoms"]`` (an int or one per sample)
        or the training histogram; a formula-conditioned model takes ``cond["formula"]`` (a Hill
        formula, or one per sample) or draws one per sample from ``formula_hist`` (of the given
        ``n_atoms``, if any), drops the ``atom`` shape and returns the formula's types as
        ``cond["atom_types"]`` ``[n, M]``. A conditional model also takes its properties: every one
        of ``config["properties"]`` by name (raw value, or one per sample), or ``props``
        (normalised ``[n, P]``, optional ``cond_mask`` ``[n]``); none of them samples
        unconditionally (``cond_mask`` 0). Unknown keys and a partial set are errors."""
        cond = dict(cond or {})
        counts = cond.pop("n_atoms", None)
        formula = cond.pop("formula", None)
        props = self._requested_props(n, cond)
        if cond:
            names = ", ".join(
                ["n_atoms", *(["formula"] if self.config["formula_conditioning"] else []), *self.config["properties"]]
                + (["props"] if self.config["properties"] else [])
            )
            raise ValueError(f"unknown molecule_joint conditions {sorted(cond)}; known: {names}")
        if formula is not None and not self.config["formula_conditioning"]:
            raise ValueError(
                "this molecule_joint model was trained without formula conditioning (config "
                "'formula_conditioning'), so it takes no 'formula'; give n_atoms instead"
            )
        if counts is not None:
            counts = [int(counts)] * n if np.ndim(counts) == 0 else [int(c) for c in counts]
            if len(counts) != n:
                raise ValueError(f"n_atoms has {len(counts)} entries for {n} samples")
        extra = {}
        if self.config["formula_conditioning"]:
            comp = self._requested_formulas(n, formula, counts, rng)
            if counts is not None and [int(c) for c in comp.sum(1)] != counts:
                raise ValueError("n_atoms disagrees with the formula's atom count; give one of them")
            counts = [int(c) for c in comp.sum(1)]
        elif counts is None:
            counts = self.sample_atom_counts(n, rng)
        if min(counts) < 1:
            raise ValueError(f"n_atoms must be >= 1, got {min(counts)}")
        m = max(int(self.config["max_atoms"]), max(counts))
        mask = torch.zeros(n, m)
        for b, k in enumerate(counts):
            mask[b, :k] = 1
        shapes = {"pos": (m, 3), "atom": (m,), "charge": (m,), "bond": (m, m)}
        if self.config["formula_conditioning"]:
            del shapes["atom"]
            types = torch.zeros(n, m, dtype=torch.long)  # atoms are exchangeable: any order of the formula's elements
            for b, row in enumerate(comp):
                types[b, : counts[b]] = torch.as_tensor(np.repeat(np.arange(self.n_types), row))
            extra["atom_types"] = types
        return shapes, {"mask": mask, **extra, **props}

    def _requested_formulas(self, n: int, formula, counts: list[int] | None, rng) -> np.ndarray:
        """``[n, n_types]`` element counts: the requested formula(s) (one string, or one per
        sample), else drawn from the training formulas by frequency (among those with
        ``counts[b]`` atoms when atom counts are given; one uniform per sample)."""
        if formula is not None:
            fs = [formula] * n if isinstance(formula, str) else [str(f) for f in formula]
            if len(fs) != n:
                raise ValueError(f"formula has {len(fs)} entries for {n} samples")
            return np.stack([parse_formula(f, self.elements) for f in fs])
        hist = self.config["formula_hist"]
        if not hist:
            raise ValueError("the model has no formula histogram: fit it on data, or pass cond={'formula': 'C7H10O2'}")
        table = np.stack([parse_formula(f, self.elements) for f in hist])
        weights = np.asarray(list(hist.values()), dtype=np.float64)
        u = rng.rand((), dtype=torch.float64).cpu().numpy().reshape(-1)
        if counts is None:
            return table[weighted_draws(weights, u)]
        out = []
        for b in range(n):
            w = weights * (table.sum(1) == counts[b])
            if w.sum() <= 0:
                raise ValueError(f"no training formula has {counts[b]} atoms; give cond={{'formula': ...}}")
            out.append(table[weighted_draws(w, u[b : b + 1])[0]])
        return np.stack(out)

    def _requested_props(self, n: int, cond: dict) -> dict:
        """Pops the property requests off ``cond`` → ``{"props", "cond_mask"}`` (empty for an
        unconditional model)."""
        names = self.config["properties"]
        if not names:
            return {}
        given = [p for p in names if p in cond]
        if "props" in cond:
            if given:
                raise ValueError(f"give the properties either as 'props' (normalised) or by name, not both ({given})")
            props = torch.as_tensor(cond.pop("props"), dtype=torch.float32)
            if props.ndim == 1 and props.numel() == len(names):
                props = props.expand(n, -1)
            if tuple(props.shape) != (n, len(names)):
                raise ValueError(f"props must be [n, P] = [{n}, {len(names)}] (P: {names}), got {tuple(props.shape)}")
            cm = cond.pop("cond_mask", None)
            cm = torch.ones(n) if cm is None else torch.as_tensor(cm, dtype=torch.float32).reshape(-1).expand(n)
            return {"props": props.clone(), "cond_mask": cm.clone()}
        if not given:
            cond.pop("cond_mask", None)
            return {"props": torch.zeros(n, len(names)), "cond_mask": torch.zeros(n)}
        missing = [p for p in names if p not in cond]
        if missing:
            raise ValueError(
                f"the model conditions on {names}: give all of them or none; missing {missing} (got {given})"
            )
        vals = {}
        for p in names:
            v = np.asarray(cond.pop(p), dtype=np.float64).reshape(-1)
            if v.size not in (1, n):
                raise ValueError(f"property {p!r} has {v.size} values for {n} samples")
            if not np.isfinite(v).all():
                raise ValueError(f"property {p!r} has non-finite target values")
            vals[p] = np.broadcast_to(v, (n,))
        raw = np.stack([vals[p] for p in names], -1)
        cm = cond.pop("cond_mask", None)
        cm = torch.ones(n) if cm is None else torch.as_tensor(cm, dtype=torch.float32).reshape(-1).expand(n).clone()
        return {"props": torch.stack([self.normalise_properties(r) for r in raw]), "cond_mask": cm}

    def decode(self, x, cond):
        """Sampled state → RDKit Mols from the predicted atoms, charges and bonds (see
        :func:`~.decode.state_to_mols`): one Mol per sample, each with the property
        ``sanitized`` (1/0); the latest call's failures are counted, with their sample
        indices, in ``self.last_decode`` (a chunked sampler's earlier chunks: count the
        property, or use ``molecule_joint_validity``)."""
        from .decode import state_to_mols

        if cond and "atom_types" in cond:  # formula conditioning: the given atom types
            x = {**x, "atom": cond["atom_types"]}
        mask = cond["mask"] if cond and "mask" in cond else torch.ones(x["atom"].shape[:2])
        mols, report = state_to_mols(x, mask, self.elements, CHARGES)
        self.last_decode = report
        if cond and "props" in cond and self.config["properties"] and self.config["property_stats"]:
            use = cond.get("cond_mask", torch.ones(len(mols))).detach().cpu()
            raw = self.denormalise_properties(cond["props"])
            for k, mol in enumerate(mols):
                if float(use[k]) > 0:
                    for j, p in enumerate(self.config["properties"]):
                        mol.SetDoubleProp(f"target_{p}", float(raw[k, j]))
        return mols

    # -- files --------------------------------------------------------------------------------
    def read(self, path) -> list:
        """SDF (bonds as written) → RDKit Mols, unsanitised; other formats as the molecule
        modality (bonds then come from EDM's distance rules)."""
        from .decode import read_bonded_sdf

        p = Path(path)
        if p.is_file() and p.suffix.lower() in (".sdf", ".sd", ".mol"):
            return read_bonded_sdf(p)
        if p.is_dir() and (p / "samples.sdf").is_file():
            return read_bonded_sdf(p / "samples.sdf")
        return super().read(path)
