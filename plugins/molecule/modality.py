"""The molecule modality: how molecules become diffusion states and come back.

State ``x``: ``[B, N, 3 + K (+1)]`` per molecule padded to N atoms —

- channels 0–2: positions in Å, zero centre of mass over the real atoms (the noise lives in
  :class:`polydiff.spaces.ZeroCoMSpace`, Hoogeboom et al. 2022 §3);
- channels 3…3+K−1: one-hot element types × ``type_scale`` (EDM scales them by 0.25);
- optional last channel: formal charge × ``charge_scale`` (EDM: 0.1).

``cond``: ``mask`` ``[B, N]`` (1 = real atom), and when the model is property-conditional
``props`` ``[B, P]`` (properties normalised by the training mean/std) with ``cond_mask``
``[B]`` (1 = use them; CFG dropout and guidance switch it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from polydiff.errors import InputError
from polydiff.modality import Modality
from polydiff.spaces import ZeroCoMSpace

from .data import QM9_ELEMENTS, MoleculeDataset, MoleculeRecord


def weighted_draws(weights, u) -> np.ndarray:
    """Indices drawn with probability ∝ ``weights`` (≥ 0, positive sum), one per uniform in
    ``u`` ``[n]`` (inverse CDF: index of the first cumulative share above u)."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, np.asarray(u), side="right"), len(cdf) - 1)


class MoleculeModality(Modality):
    """3-D molecules (EDM-style). Config keys (JSON, saved in checkpoints):

    ``elements`` (vocabulary, default QM9's H C N O F), ``include_charges``,
    ``type_scale`` (0.25), ``charge_scale`` (0.1), ``properties`` (names to condition on),
    ``property_stats`` ({name: [mean, std]}), ``n_atoms_hist`` ({n: count}),
    ``max_atoms``, ``bonds`` (``edm`` | ``rdkit`` | ``none`` for decoded Mols).
    """

    name = "molecule"
    default_network = "egnn"
    default_dataset = "qm9"
    sigma_data = 1.0
    default_metrics = (
        "molecule_atom_stability",
        "molecule_stability",
        "molecule_validity",
        "molecule_connected_validity",
        "molecule_uniqueness",
    )

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        c = self.config
        c.setdefault("elements", list(QM9_ELEMENTS))
        c.setdefault("include_charges", False)
        c.setdefault("type_scale", 0.25)
        c.setdefault("charge_scale", 0.1)
        c.setdefault("properties", [])
        c.setdefault("property_stats", {})
        c.setdefault("n_atoms_hist", {})
        c.setdefault("max_atoms", 29)
        c.setdefault("bonds", "edm")
        # bonded-distance auxiliary loss (see auxiliary_loss); weight 0 switches it off
        c.setdefault("aux_weight", 1.0)
        c.setdefault("aux_sigma_max", 1.0)
        c.setdefault("aux_bond_cutoff", 2.0)
        self.elements = list(c["elements"])
        self._index = {e: i for i, e in enumerate(self.elements)}

    # -- sizes --------------------------------------------------------------------------
    @property
    def n_types(self) -> int:
        return len(self.elements)

    @property
    def n_features(self) -> int:
        return 3 + self.n_types + int(self.config["include_charges"])

    def network_kwargs(self) -> dict:
        return {
            "n_types": self.n_types,
            "n_charges": int(self.config["include_charges"]),
            "n_props": len(self.config["properties"]),
        }

    # -- data -----------------------------------------------------------------------------
    def fit(self, dataset) -> None:
        """Atom-count histogram, max atoms and property statistics of ``dataset``."""
        if not isinstance(dataset, MoleculeDataset):
            dataset = MoleculeDataset(list(dataset))
        unknown = sorted(set(dataset.elements) - set(self.elements))
        if unknown:
            raise InputError(
                f"data set has elements {unknown} outside the model's vocabulary {self.elements}; "
                f"create the model with modality_config={{'elements': [...]}}",
                file=dataset.name,
            )
        hist = dataset.atom_count_histogram()
        self.config["n_atoms_hist"] = {str(k): int(v) for k, v in hist.items()}
        self.config["max_atoms"] = max(hist) if hist else int(self.config["max_atoms"])
        stats = {}
        for p in self.config["properties"]:
            vals = np.array([r.properties[p] for r in dataset.records if p in r.properties], dtype=np.float64)
            if len(vals) == 0:
                raise InputError(f"no record carries property {p!r}", file=dataset.name, field=p)
            stats[p] = [float(vals.mean()), float(vals.std() or 1.0)]
        self.config["property_stats"] = stats

    def record_to_tensor(self, rec: MoleculeRecord) -> torch.Tensor:
        """``[n, D]`` features of one record, positions centred (Å)."""
        try:
            idx = [self._index[e] for e in rec.elements]
        except KeyError as e:
            raise InputError(
                f"element {e.args[0]!r} not in the vocabulary {self.elements}", record=rec.name or None, field="element"
            ) from None
        pos = torch.as_tensor(np.asarray(rec.positions), dtype=torch.float32)
        pos = pos - pos.mean(0, keepdim=True)
        onehot = torch.nn.functional.one_hot(torch.tensor(idx), self.n_types).float() * self.config["type_scale"]
        parts = [pos, onehot]
        if self.config["include_charges"]:
            ch = np.zeros(rec.n_atoms) if rec.charges is None else np.asarray(rec.charges, dtype=np.float64)
            parts.append(torch.as_tensor(ch, dtype=torch.float32)[:, None] * self.config["charge_scale"])
        return torch.cat(parts, -1)

    def normalise_properties(self, values: dict) -> torch.Tensor:
        """{name: value} → ``[P]`` normalised vector in ``config['properties']`` order."""
        out = []
        for p in self.config["properties"]:
            mean, std = self.config["property_stats"].get(p, (0.0, 1.0))
            out.append((float(values[p]) - mean) / std)
        return torch.tensor(out, dtype=torch.float32)

    def item_size(self, item) -> float:
        """Atoms of a record or RDKit Mol: batches pad to the largest (``group_by_size``)."""
        return float(item.GetNumAtoms() if hasattr(item, "GetAtoms") else item.n_atoms)

    def collate(self, items: list) -> dict:
        feats = [self.record_to_tensor(r) for r in items]
        n = max(f.shape[0] for f in feats)
        x = torch.zeros(len(feats), n, self.n_features)
        mask = torch.zeros(len(feats), n)
        for b, f in enumerate(feats):
            x[b, : f.shape[0]] = f
            mask[b, : f.shape[0]] = 1
        cond = {"mask": mask}
        if self.config["properties"]:
            cond["props"] = torch.stack([self.normalise_properties(r.properties) for r in items])
            cond["cond_mask"] = torch.ones(len(items))
        return {"x": x, "cond": cond}

    # -- training ---------------------------------------------------------------------------
    def auxiliary_loss(self, x0_hat, x0, sigmas, cond, weight):
        """Bond-length loss on the denoised positions: λ(σ̃)·``aux_weight``·mean over atom
        pairs closer than ``aux_bond_cutoff`` Å in the true molecule (the bonded pairs) of
        (d̂ᵢⱼ − dᵢⱼ)² (Å²), for σ̃ < ``aux_sigma_max`` Å. EDM's stability metric reads bond
        orders off bond lengths with 3–10 pm margins, which the coordinate loss alone
        learns slowly. ``[B]``; invariant under rigid motions and atom permutations."""
        wgt = float(self.config.get("aux_weight", 0.0))
        if wgt <= 0:
            return None
        from polydiff.losses import low_noise_distance_loss

        cutoff = float(self.config.get("aux_bond_cutoff", 2.0))
        return wgt * low_noise_distance_loss(
            x0_hat[..., :3],
            x0[..., :3],
            cond["mask"],
            sigmas,
            weight,
            select=lambda d, d_hat: d < cutoff,
            sigma_max=float(self.config.get("aux_sigma_max", 1.0)),
        )

    # -- noise space and sampling -----------------------------------------------------------
    def space(self, cond):
        return ZeroCoMSpace(cond["mask"], n_pos=3)

    def sample_atom_counts(self, n: int, rng) -> list[int]:
        """Per-sample atom counts drawn from the training histogram (one uniform per sample)."""
        hist = {int(k): v for k, v in self.config["n_atoms_hist"].items()}
        if not hist:
            raise ValueError("the model has no atom-count histogram: load a data set (fit) or pass cond={'n_atoms': k}")
        sizes = np.array(sorted(hist))
        u = rng.rand((), dtype=torch.float64).cpu().numpy().reshape(-1)
        return [int(sizes[i]) for i in weighted_draws([hist[s] for s in sizes], u)]

    def sampling_request(self, n: int, cond: dict | None, rng):
        """Shape ``(max_atoms, D)`` for every sample (so a sample never depends on its batch),
        ``mask`` from ``cond['n_atoms']`` (int or per-sample list) or the histogram, and the
        normalised properties for conditional models (``cond[name] = value``; samples whose
        properties are not given are unconditional)."""
        cond = dict(cond or {})
        counts = cond.pop("n_atoms", None)
        if counts is None:
            counts = self.sample_atom_counts(n, rng)
        else:
            counts = [int(counts)] * n if np.ndim(counts) == 0 else [int(c) for c in counts]
            if len(counts) != n:
                raise ValueError(f"n_atoms has {len(counts)} entries for {n} samples")
        max_atoms = max(int(self.config["max_atoms"]), max(counts))
        mask = torch.zeros(n, max_atoms)
        for b, k in enumerate(counts):
            if k < 1:
                raise ValueError(f"n_atoms must be ≥ 1, got {k}")
            mask[b, :k] = 1
        out = {"mask": mask}
        names = self.config["properties"]
        if names:
            given = [p for p in names if p in cond]
            if given and len(given) != len(names):
                raise ValueError(f"give all conditioning properties {names} or none (got {given})")
            if given:
                vals = {p: np.broadcast_to(np.asarray(cond.pop(p), dtype=np.float64), (n,)) for p in names}
                out["props"] = torch.stack(
                    [self.normalise_properties({p: vals[p][i] for p in names}) for i in range(n)]
                )
                out["cond_mask"] = torch.ones(n)
            else:
                out["props"] = torch.zeros(n, len(names))
                out["cond_mask"] = torch.zeros(n)
        unknown = set(cond) - {"props", "cond_mask"}
        if unknown:
            raise ValueError(f"unknown molecule conditions {sorted(unknown)}; known: n_atoms, {', '.join(names)}")
        if "props" in cond:
            out["props"] = torch.as_tensor(cond["props"], dtype=torch.float32).reshape(n, -1)
            out["cond_mask"] = torch.as_tensor(cond.get("cond_mask", torch.ones(n)), dtype=torch.float32)
        return (max_atoms, self.n_features), out

    # -- decoding and files -----------------------------------------------------------------
    def split_state(self, x: torch.Tensor, mask: torch.Tensor) -> list[tuple[list[str], np.ndarray, np.ndarray | None]]:
        """``x`` ``[B, N, D]`` → per sample (elements, positions ``[n, 3]`` Å, formal charges)."""
        out = []
        x = x.detach().float().cpu()
        mask = mask.detach().cpu() > 0.5
        for b in range(x.shape[0]):
            xb = x[b][mask[b]]
            types = xb[:, 3 : 3 + self.n_types].argmax(-1).tolist()
            charges = None
            if self.config["include_charges"]:
                charges = torch.round(xb[:, -1] / self.config["charge_scale"]).long().numpy()
            out.append(([self.elements[t] for t in types], xb[:, :3].double().numpy(), charges))
        return out

    def decode(self, x: torch.Tensor, cond: dict | None) -> list:
        """Sampled states → RDKit Mols with a 3-D conformer and bonds per ``config['bonds']``."""
        from .chem import to_mol

        mask = cond["mask"] if cond and "mask" in cond else torch.ones(x.shape[:2])
        mols = []
        use = None
        if cond and "props" in cond:
            use = cond.get("cond_mask", torch.ones(x.shape[0])).detach().cpu()
        for k, (elements, pos, charges) in enumerate(self.split_state(x, mask)):
            mol = to_mol(elements, pos, bonds=self.config["bonds"], charges=charges)
            mol.SetProp("_Name", f"polydiff_{k}")
            if use is not None and float(use[k]) > 0:
                for j, p in enumerate(self.config["properties"]):
                    mean, std = self.config["property_stats"].get(p, (0.0, 1.0))
                    mol.SetDoubleProp(f"target_{p}", float(cond["props"][k, j]) * std + mean)
            mols.append(mol)
        return mols

    def write(self, samples: list, path) -> list[Path]:
        """``.xyz`` → multi-frame XYZ; otherwise SDF (a folder gets ``samples.sdf``)."""
        from .io import write_sdf, write_xyz

        path = Path(path)
        if path.suffix.lower() == ".xyz":
            return [write_xyz(samples, path)]
        if path.suffix.lower() not in (".sdf", ".sd", ".mol"):
            path = path / "samples.sdf"
        return [write_sdf(samples, path)]

    def read(self, path) -> list:
        """SDF, XYZ or SMILES (file or folder) → list of RDKit Mols for the metrics."""
        from .io import read_molecules

        return read_molecules(path)
