"""The ``protein`` modality: Cα traces in nm with zero centre of mass.

State ``x [B, N, 3]`` = Cα coordinates / 10 Å (nm), padded to N with ``cond["mask"]``;
noise lives in :class:`CalphaSpace`, a :class:`polydiff.spaces.ZeroCoMSpace` (mask, 3
coordinate channels) that draws each sample's noise at its own length.
``sigma_data = 1.0`` nm: the per-coordinate RMS of the centred 50 domains lies in
0.7–1.3 nm (asserted in ``tests/plugins/protein/test_data.py``).

Sampling requests (``model.sample(n, cond=...)``):

- ``{"length": 80}`` or ``{"length": [60, 80, …]}`` (one per sample), or
  ``{"length_range": [60, 120]}`` (uniform per sample); default: lengths drawn from the
  training lengths;
- ``{"ss": [h, e, c]}``: secondary-structure composition to condition on (CFG-able; train
  with ``cond_dropout``); default: the composition of a random training example.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from polydiff.errors import InputError
from polydiff.modality import Modality
from polydiff.spaces import ZeroCoMSpace

from .data import COORD_SCALE

DEFAULT_METRICS = tuple(
    f"protein_{m}"
    for m in (
        "ca_ca_validity",
        "ca_ca_deviation",
        "clash_share",
        "clash_structure_share",
        "backbone_clash_share",
        "rg_ratio",
        "helix_fraction",
        "strand_fraction",
        "diversity_rmsd",
    )
)


class CalphaSpace(ZeroCoMSpace):
    """Cα traces: :class:`ZeroCoMSpace` over the residue mask (the core draws each
    sample's noise at its own length, so a sample does not depend on its batch)."""


class ProteinModality(Modality):
    name = "protein"
    default_network = "protein_e3nn"
    default_dataset = "protein_domains50"
    sigma_data = 1.0
    default_metrics = DEFAULT_METRICS

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        # local-geometry auxiliary loss (see :meth:`auxiliary_loss`); weight 0 switches it off
        self.config.setdefault("aux_weight", 1.0)
        self.config.setdefault("aux_sigma_max", 0.5)
        self.config.setdefault("aux_contact_nm", 0.8)

    # -- data ----------------------------------------------------------------------------
    def fit(self, dataset) -> None:
        lengths = list(dataset.lengths)
        if getattr(dataset, "crop", None):
            lo, hi = dataset.crop
            lengths = [L for L in range(lo, hi + 1)]
        self.config["lengths"] = [int(L) for L in lengths]
        comps = []
        for i in range(len(dataset)):
            ss = dataset.ss_labels[i]
            comps.append([round(ss.count(k) / max(len(ss), 1), 4) for k in "HEC"])
        self.config["ss_compositions"] = comps
        self.config["coord_scale_A"] = COORD_SCALE

    def collate(self, items: list) -> dict:
        L = max(len(it["x"]) for it in items)
        B = len(items)
        x = torch.zeros(B, L, 3)
        mask = torch.zeros(B, L)
        idx = torch.zeros(B, L, dtype=torch.long)
        for b, it in enumerate(items):
            n = len(it["x"])
            x[b, :n] = it["x"]
            mask[b, :n] = 1
            idx[b, :n] = it["res_idx"]
        ss = torch.stack([it["ss"] for it in items])
        return {"x": x, "cond": {"mask": mask, "res_idx": idx, "ss": ss}}

    # -- training ----------------------------------------------------------------------------
    def auxiliary_loss(self, x0_hat, x0, sigmas, cond, weight):
        """Local-distance loss on the denoised trace (FrameDiff's pairwise-distance loss,
        Yim et al. 2023, restricted to low noise): λ(σ̃)·``aux_weight``·mean over residue
        pairs that are ≤ 3 apart in sequence or closer than ``aux_contact_nm`` in the true
        *or the predicted* structure of (d̂ᵢⱼ − dᵢⱼ)², for σ̃ < ``aux_sigma_max`` nm (0
        above). Contacts picked from the truth alone leave invented contacts unpenalised
        and pull samples together (measured, 75-s quick models at noise scale 0.7: Rg
        ratio 0.89 with true-side selection, 0.94 with either side; real crops 1.31; the
        16-min recipe with either side: validity 0.965 → 0.974, clash share 0.006 → 0,
        helix 0.149 → 0.179, Rg ratio 0.88 → 0.93). Bond lengths
        and the i→i+2/i+3 distances that set helices and strands are what the Cα–Cα and
        secondary-structure metrics read, and the plain coordinate loss spreads its
        attention over the whole chain. ``[B]``; invariant under rigid motions."""
        wgt = float(self.config.get("aux_weight", 0.0))
        if wgt <= 0:
            return None
        from polydiff.losses import low_noise_distance_loss

        ar = torch.arange(x0.shape[1], device=x0.device)
        near_in_sequence = (ar[:, None] - ar[None]).abs() <= 3
        contact = float(self.config.get("aux_contact_nm", 0.8))
        return wgt * low_noise_distance_loss(
            x0_hat,
            x0,
            cond["mask"],
            sigmas,
            weight,
            select=lambda d, d_hat: near_in_sequence | (d < contact) | (d_hat < contact),
            sigma_max=float(self.config.get("aux_sigma_max", 0.5)),
        )

    # -- sampling --------------------------------------------------------------------------
    def space(self, cond):
        if cond is None or "mask" not in cond:
            raise InputError("protein states need cond['mask'] (residue mask)", field="mask")
        return CalphaSpace(cond["mask"], n_pos=3)

    def _lengths(self, n: int, cond: dict, rng) -> tuple[list[int], int]:
        if "length" in cond:
            v = cond["length"]
            lengths = [int(v)] * n if np.isscalar(v) else [int(a) for a in v]
            if len(lengths) != n:
                raise InputError(f"{len(lengths)} lengths given for {n} samples", field="length")
            return lengths, max(lengths)
        u = rng.rand(()).tolist()
        if "length_range" in cond:
            lo, hi = (int(a) for a in cond["length_range"])
            return [lo + min(int(ui * (hi - lo + 1)), hi - lo) for ui in u], hi
        pool = self.config.get("lengths")
        if not pool:
            raise InputError("no training lengths recorded: pass cond={'length': L}", field="length")
        return [int(pool[min(int(ui * len(pool)), len(pool) - 1)]) for ui in u], max(pool)

    def sampling_request(self, n, cond, rng):
        cond = dict(cond or {})
        lengths, L = self._lengths(n, cond, rng)
        if min(lengths) < 4:
            raise InputError("protein lengths must be ≥ 4", field="length")
        mask = torch.zeros(n, L)
        for i, Li in enumerate(lengths):
            mask[i, :Li] = 1
        if cond.get("ss") is not None:
            ss = torch.as_tensor(cond["ss"], dtype=torch.float32)
            ss = ss.expand(n, 3) if ss.ndim == 1 else ss
        else:
            comps = self.config.get("ss_compositions") or [[0.3, 0.2, 0.5]]
            u = rng.rand(()).tolist()
            ss = torch.tensor([comps[min(int(ui * len(comps)), len(comps) - 1)] for ui in u], dtype=torch.float32)
        out = {"mask": mask, "res_idx": torch.arange(L).expand(n, L).clone(), "ss": ss, "cond_mask": torch.ones(n)}
        return (L, 3), out

    def decode(self, x: torch.Tensor, cond: dict | None) -> list:
        """``x [B, N, 3]`` nm → :class:`Backbone` records (Å, ideal N/C/O, chain A, GLY)."""
        from .geometry import place_backbone
        from .structures import Backbone

        out = []
        for i in range(x.shape[0]):
            L = int(cond["mask"][i].sum()) if cond is not None and "mask" in cond else x.shape[1]
            ca = x[i, :L].detach().cpu().double().numpy() * COORD_SCALE
            coords = (
                place_backbone(ca)
                if L >= 3
                else np.concatenate([np.full((L, 1, 3), np.nan), ca[:, None], np.full((L, 2, 3), np.nan)], 1)
            )
            out.append(
                Backbone(f"sample_{i:03d}", "A", coords, np.arange(1, L + 1), ["GLY"] * L, [""] * L, ideal_placed=True)
            )
        return out

    def write(self, samples: list, path) -> list[Path]:
        from .io import write_samples

        return write_samples(samples, path)

    def read(self, path) -> list:
        from .io import read_structures

        return read_structures(path)

    def network_kwargs(self) -> dict:
        return {"sigma_data": self.sigma_data}
