"""An E(3)-invariant EGNN property regressor: the judge of property-conditional generation.

EDM (Hoogeboom et al. 2022, §5 "Conditional generation") measures how well a conditional
generator hits its targets with a property classifier φ_c, an EGNN (Satorras et al. 2021,
§5.3 "Molecular property prediction", the QM9 regressor: message passing on the fully
connected graph of the atoms, node features updated, coordinates kept fixed) trained on the
half of the training data the generator never sees. The generated molecules are scored by
φ_c's error against the targets they were conditioned on; the same molecules scored against
shuffled targets are the "naive" upper bound and φ_c's error on held-out real molecules the
data lower bound (EDM Table 3: α MAE 2.76 bohr³ vs naive 9.01 vs data 0.10).

:class:`PropertyPredictor` follows Satorras et al.'s invariant EGNN: per layer, over the
pairs of distinct real atoms,

    m_ij = φ_e(h_i, h_j, ‖x_i−x_j‖², rbf(‖x_i−x_j‖), b_ij) · σ(φ_inf(m_ij))
    h_i ← h_i + φ_h(h_i, Σ_j m_ij / Z)

then ŷ = φ_out(Σ_i φ_pre(h_i)) (sum pooling). ``h`` starts as an embedding of the atom type.
Two additions, both invariant: a Gaussian radial basis of the distance (as SchNet; it speeds
up learning on a small CPU budget) beside EGNN's squared distance, and optionally the bond
order b_ij (``use_bonds``; off by default, as EDM's regressor sees only positions and atom
types, so generated bonds cannot sway the judge). Positions enter only through distances and
atoms only as a set: the prediction is invariant under rotations, reflections, translations
and atom permutations (with the matching bond permutation).

Targets are normalised by the training mean and standard deviation (``stats``) and trained
with MSE (:func:`fit_predictor`); :meth:`PropertyPredictor.predict` returns raw units.
:meth:`PropertyPredictor.save` / :meth:`PropertyPredictor.load` use safetensors (the config
as JSON metadata; no pickle).

Items (records to fit on or molecules to score) are :class:`~.data.MoleculeRecord` (its
``properties`` for targets, ``bonds`` when ``use_bonds``) or RDKit Mols with a conformer
(what the joint modality decodes; their numeric properties for targets).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polydiff.errors import CheckpointError, InputError

from .data import QM9_ELEMENTS

FORMAT = "polydiff.molecule.property_predictor/1"
#: bond classes the predictor embeds (none, single, double, triple; aromatic is kekulised)
N_BOND_CLASSES = 4


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.SiLU(), nn.Linear(h, o))


class InvariantLayer(nn.Module):
    """One EGNN layer with fixed coordinates (see the module docstring); dense ``[B, N, N]``."""

    def __init__(self, hidden: int, edge_in: int, aggregation_norm: float):
        super().__init__()
        self.a = nn.Linear(hidden, hidden)
        self.b = nn.Linear(hidden, hidden, bias=False)
        self.e = nn.Linear(edge_in, hidden, bias=False)
        self.m2 = nn.Linear(hidden, hidden)
        self.inf = nn.Linear(hidden, 1)
        self.node = _mlp(2 * hidden, hidden, hidden)
        self.z = aggregation_norm

    def forward(self, h, edge, pair, node):
        z = self.a(h)[:, :, None] + self.b(h)[:, None, :] + self.e(edge)
        m = nn.functional.silu(self.m2(nn.functional.silu(z)))
        m = m * torch.sigmoid(self.inf(m)) * pair
        return (h + self.node(torch.cat([h, m.sum(2) / self.z], -1))) * node


class PropertyPredictor(nn.Module):
    """``forward(atom [B, N] long, pos [B, N, 3], mask [B, N], bond [B, N, N] long | None)
    → [B, P]`` normalised predictions.

    Args: ``properties`` (names, P), ``elements`` (vocabulary of the atom types), ``hidden``,
    ``layers``, ``n_rbf`` and ``rbf_max`` (Gaussian radial basis on [0, rbf_max] Å),
    ``aggregation_norm`` Z, ``use_bonds``, ``stats`` ({name: [mean, std]} of the targets).
    """

    def __init__(
        self,
        properties=("alpha", "gap"),
        elements=QM9_ELEMENTS,
        hidden: int = 64,
        layers: int = 4,
        n_rbf: int = 16,
        rbf_max: float = 8.0,
        aggregation_norm: float = 5.0,
        use_bonds: bool = False,
        stats: dict | None = None,
    ):
        super().__init__()
        self.config = {
            "properties": list(properties),
            "elements": list(elements),
            "hidden": int(hidden),
            "layers": int(layers),
            "n_rbf": int(n_rbf),
            "rbf_max": float(rbf_max),
            "aggregation_norm": float(aggregation_norm),
            "use_bonds": bool(use_bonds),
            "stats": {k: [float(v[0]), float(v[1])] for k, v in (stats or {}).items()},
        }
        if not self.config["properties"]:
            raise ValueError("a property predictor needs at least one property")
        self._index = {e: i for i, e in enumerate(self.config["elements"])}
        self.atom_emb = nn.Embedding(len(self.config["elements"]), hidden)
        self.register_buffer("centres", torch.linspace(0.0, rbf_max, n_rbf), persistent=False)
        self.gamma = (n_rbf / rbf_max) ** 2 / 2 if n_rbf else 0.0
        edge_in = 1 + n_rbf + (hidden if use_bonds else 0)
        self.bond_emb = nn.Embedding(N_BOND_CLASSES, hidden) if use_bonds else None
        self.layers = nn.ModuleList(InvariantLayer(hidden, edge_in, aggregation_norm) for _ in range(layers))
        self.pre = _mlp(hidden, hidden, hidden)
        self.out = _mlp(hidden, hidden, len(self.config["properties"]))

    @property
    def properties(self) -> list[str]:
        return self.config["properties"]

    def forward(self, atom, pos, mask, bond=None):
        dt = pos.dtype
        mask = mask.to(dt)
        node = mask[..., None]
        N = pos.shape[1]
        eye = torch.eye(N, dtype=dt, device=pos.device)
        pair = (mask[:, :, None] * mask[:, None, :] * (1 - eye))[..., None]
        diff = pos[:, :, None] - pos[:, None, :]
        d2 = (diff * diff).sum(-1, keepdim=True)
        d = torch.sqrt(d2 + 1e-12)
        feats = [d2 / 10.0, torch.exp(-self.gamma * (d - self.centres.to(dt)) ** 2)]
        if self.bond_emb is not None:
            if bond is None:
                raise ValueError("this predictor uses bonds (use_bonds=True): pass bond [B, N, N]")
            feats.append(self.bond_emb(bond).to(dt))
        edge = torch.cat(feats, -1)
        h = self.atom_emb(atom).to(dt) * node
        for layer in self.layers:
            h = layer(h, edge, pair, node)
        return self.out((self.pre(h) * node).sum(1))

    # -- data ---------------------------------------------------------------------------------
    def featurize(self, items) -> dict:
        """Items → padded tensors ``atom`` ``[M, N]``, ``pos`` ``[M, N, 3]`` (centred),
        ``mask`` ``[M, N]`` and ``bond`` ``[M, N, N]`` (zeros without ``use_bonds``)."""
        recs = [_atoms(it, k, self.config["use_bonds"]) for k, it in enumerate(items)]
        if not recs:
            raise InputError("no molecules to featurise")
        M, N = len(recs), max(len(r[0]) for r in recs)
        atom = torch.zeros(M, N, dtype=torch.long)
        pos = torch.zeros(M, N, 3)
        mask = torch.zeros(M, N)
        bond = torch.zeros(M, N, N, dtype=torch.long)
        for b, (el, p, bo, rec_id) in enumerate(recs):
            k = len(el)
            try:
                atom[b, :k] = torch.tensor([self._index[e] for e in el])
            except KeyError as e:
                raise InputError(
                    f"element {e.args[0]!r} not in the predictor's vocabulary {self.config['elements']}",
                    record=rec_id,
                    field="element",
                ) from None
            pt = torch.as_tensor(p, dtype=torch.float32)
            pos[b, :k] = pt - pt.mean(0, keepdim=True)
            mask[b, :k] = 1
            if bo is not None:
                bond[b, :k, :k] = torch.as_tensor(bo).clamp(0, N_BOND_CLASSES - 1)
        return {"atom": atom, "pos": pos, "mask": mask, "bond": bond}

    def targets(self, items) -> np.ndarray:
        """``[M, P]`` raw target values of the items (an InputError names a record without one)."""
        return np.stack([_props(it, k, self.properties) for k, it in enumerate(items)])

    def _run(self, f: dict, idx) -> torch.Tensor:
        n = int(f["mask"][idx].sum(1).max())
        return self(
            f["atom"][idx, :n],
            f["pos"][idx, :n],
            f["mask"][idx, :n],
            f["bond"][idx, :n, :n] if self.config["use_bonds"] else None,
        )

    @torch.no_grad()
    def predict(self, items, batch_size: int = 128) -> np.ndarray:
        """``[M, P]`` predictions in raw units (``properties`` order) for records or Mols."""
        if not self.config["stats"]:
            raise ValueError("the predictor has no target statistics: train it with fit_predictor or load one")
        was = self.training
        self.eval()
        f = self.featurize(items)
        out = torch.cat(
            [self._run(f, torch.arange(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)]
        )
        self.train(was)
        mean = np.array([self.config["stats"][p][0] for p in self.properties])
        std = np.array([self.config["stats"][p][1] for p in self.properties])
        return out.double().numpy() * std + mean

    def mae(self, items, targets=None) -> dict:
        """{property: mean absolute error} of the predictions against ``targets`` ``[M, P]``
        (default: the items' own properties)."""
        pred = self.predict(items)
        tgt = self.targets(items) if targets is None else np.asarray(targets, dtype=np.float64)
        return {p: float(np.abs(pred[:, j] - tgt[:, j]).mean()) for j, p in enumerate(self.properties)}

    # -- files --------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Weights and config to one ``.safetensors`` file (config as JSON metadata)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(path), metadata={"format": FORMAT, "config": json.dumps(self.config)})
        return path

    @classmethod
    def load(cls, path) -> "PropertyPredictor":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such property-predictor file")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise CheckpointError(
                    f"{path}: not a property predictor (format {meta.get('format')!r}, want {FORMAT})"
                )
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        net = cls(**json.loads(meta["config"]))
        missing, unexpected = net.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: tensors do not match the config (missing {missing}, unexpected {unexpected})"
            )
        return net.eval()


def _atoms(item, index: int, with_bonds: bool):
    """(elements, positions ``[n, 3]``, bonds ``[n, n]`` or None, record id) of a record or Mol."""
    if hasattr(item, "GetAtoms"):
        if item.GetNumConformers() == 0:
            raise InputError("molecule has no 3-D coordinates", record=index, field="coordinates")
        el = [a.GetSymbol() for a in item.GetAtoms()]
        pos = np.asarray(item.GetConformer().GetPositions(), dtype=np.float64)
        bo = None
        if with_bonds:
            bo = np.zeros((len(el), len(el)), dtype=np.int64)
            for b in item.GetBonds():
                o = {1.0: 1, 2.0: 2, 3.0: 3, 1.5: 1}.get(b.GetBondTypeAsDouble(), 1)
                bo[b.GetBeginAtomIdx(), b.GetEndAtomIdx()] = bo[b.GetEndAtomIdx(), b.GetBeginAtomIdx()] = o
        return el, pos, bo, index
    rec_id = index if getattr(item, "index", -1) < 0 else item.index
    bo = None
    if with_bonds:
        bo = getattr(item, "bonds", None)
        if bo is None:
            raise InputError("the predictor uses bonds but this record has none", record=rec_id, field="bonds")
    return list(item.elements), np.asarray(item.positions, dtype=np.float64), bo, rec_id


def _props(item, index: int, names) -> np.ndarray:
    is_mol = hasattr(item, "GetAtoms")
    rec_id = index if is_mol or getattr(item, "index", -1) < 0 else item.index
    out = []
    for p in names:
        if is_mol:
            v = item.GetProp(p) if item.HasProp(p) else None
        else:
            v = (getattr(item, "properties", None) or {}).get(p)
        try:
            v = float(v)
        except (TypeError, ValueError):
            v = None
        if v is None or not math.isfinite(v):
            raise InputError(f"record has no finite value of property {p!r}", record=rec_id, field=p)
        out.append(v)
    return np.asarray(out, dtype=np.float64)


def fit_predictor(
    records,
    properties=("alpha", "gap"),
    *,
    hidden: int = 64,
    layers: int = 4,
    use_bonds: bool = False,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-12,
    steps: int = 100_000,
    max_seconds: float | None = None,
    valid=None,
    eval_every: int = 0,
    seed: int = 0,
    log=None,
    **kwargs,
) -> tuple[PropertyPredictor, list[dict]]:
    """Train a :class:`PropertyPredictor` on ``records`` with MSE on normalised targets (Adam,
    half-cosine learning rate decay over ``steps`` or the ``max_seconds`` budget, whichever
    ends first; Satorras et al. 2021 also decay with a cosine). ``valid``: records whose MAE
    is logged every ``eval_every`` steps and at the end (monitoring only: the final weights
    are returned). Returns (predictor in eval mode, log rows ``{"step", "seconds", "loss"[,
    "valid_mae"]}``); ``log(row)`` sees each row."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = PropertyPredictor(properties, hidden=hidden, layers=layers, use_bonds=use_bonds, **kwargs)
    raw = net.targets(records)
    net.config["stats"] = {
        p: [float(raw[:, j].mean()), float(raw[:, j].std() or 1.0)] for j, p in enumerate(net.properties)
    }
    mean = torch.tensor([net.config["stats"][p][0] for p in net.properties])
    std = torch.tensor([net.config["stats"][p][1] for p in net.properties])
    y = (torch.as_tensor(raw, dtype=torch.float32) - mean) / std
    f = net.featurize(records)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    rows: list[dict] = []
    t0 = time.perf_counter()
    M = len(records)
    perm, pos = torch.randperm(M, generator=gen), 0
    running, seen, step = 0.0, 0, 0
    net.train()
    for step in range(steps):
        frac = step / steps
        if max_seconds:
            frac = max(frac, (time.perf_counter() - t0) / max_seconds)
        if frac >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * frac))
        if pos + batch_size > M:
            perm, pos = torch.randperm(M, generator=gen), 0
        idx = perm[pos : pos + batch_size]
        pos += batch_size
        loss = ((net._run(f, idx) - y[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        running, seen = running + loss.item(), seen + 1
        if eval_every and (step + 1) % eval_every == 0:
            rows.append(_log_row(net, step + 1, t0, running / seen, valid, log))
            running, seen = 0.0, 0
    else:
        step = steps
    rows.append(_log_row(net, step, t0, running / seen if seen else None, valid, log))
    return net.eval(), rows


def _log_row(net, step: int, t0: float, loss, valid, log) -> dict:
    row = {"step": step, "seconds": round(time.perf_counter() - t0, 1), "loss": loss}
    if valid is not None:
        row["valid_mae"] = net.mae(valid)
        net.train()
    if log is not None:
        log(row)
    return row
