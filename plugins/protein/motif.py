"""Motif scaffolding: keep given residues' Cα coordinates fixed (as a rigid body) while the
rest of the backbone is generated.

This is replacement inpainting on the denoiser output (Lugmayr et al. 2022 without
resampling; the scaffolding use follows Trippe et al. 2023, "SMCDiff", §2): at every
step x̂₀ is overwritten on the motif residues by the motif coordinates. In the zero-CoM
space the frame of x̂₀ drifts with the samples, so the motif is first moved onto the
current prediction — by the optimal translation, or the optimal rigid motion when
``align="kabsch"`` — and then pinned. The motif therefore comes out exactly rigid
(RMSD after superposition at float precision) and the scaffold is generated around it in
the same frame.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from polydiff.errors import InputError

from .data import COORD_SCALE


def motif_wrap(known: torch.Tensor, known_mask: torch.Tensor, align: str = "translation"):
    """A ``wrap`` for :meth:`DiffusionModel.sample_raw`.

    ``known``: ``[B, N, 3]`` motif coordinates (model units), ``known_mask``: ``[B, N]`` bool.
    """
    if align not in ("translation", "kabsch"):
        raise ValueError("align must be 'translation' or 'kabsch'")

    def wrap(denoiser, cond):
        def pinned(x, sigma):
            out = denoiser(x, sigma)
            m = known_mask.to(out.device)[..., None].to(out.dtype)
            k = known.to(device=out.device, dtype=out.dtype)
            cnt = m.sum(1, keepdim=True).clamp(min=1)
            mu_p = (out * m).sum(1, keepdim=True) / cnt
            mu_k = (k * m).sum(1, keepdim=True) / cnt
            kc = (k - mu_k) * m
            if align == "kabsch":
                H = torch.einsum("bni,bnj->bij", kc.double(), ((out - mu_p) * m).double())
                U, _, Vt = torch.linalg.svd(H)
                d = torch.sign(torch.linalg.det(Vt.transpose(1, 2) @ U.transpose(1, 2)))
                D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
                R = (Vt.transpose(1, 2) @ D @ U.transpose(1, 2)).to(out.dtype)
                kc = kc @ R.transpose(1, 2)
            placed = kc + mu_p
            return torch.where(known_mask.to(out.device)[..., None], placed, out)

        return pinned

    return wrap


def scaffold(
    model,
    motif_ca: np.ndarray,
    positions: Sequence[int],
    length: int,
    n: int = 1,
    *,
    sampler: str = "euler_ancestral",
    nfe: int = 100,
    seed: int = 0,
    align: str = "translation",
    sigmas: torch.Tensor | None = None,
    ss=None,
    **sampler_options,
) -> list:
    """Generate ``n`` backbones of ``length`` residues whose residues ``positions`` carry
    the motif ``motif_ca [M, 3]`` (Å, in that order). Returns decoded Backbone records."""
    from .bench import SIGMA_MAX, SIGMA_MIN

    motif_ca = np.asarray(motif_ca, dtype=np.float64)
    positions = [int(p) for p in positions]
    if motif_ca.ndim != 2 or motif_ca.shape[1] != 3 or len(motif_ca) != len(positions):
        raise InputError(f"motif of shape {motif_ca.shape} does not match {len(positions)} positions", field="motif")
    if len(set(positions)) != len(positions) or min(positions) < 0 or max(positions) >= length:
        raise InputError(f"motif positions must be distinct and within 0..{length - 1}", field="positions")
    known = torch.zeros(n, length, 3)
    mask = torch.zeros(n, length, dtype=torch.bool)
    centred = torch.as_tensor((motif_ca - motif_ca.mean(0)) / COORD_SCALE, dtype=torch.float32)
    known[:, positions] = centred
    mask[:, positions] = True
    cond = {"length": length}
    if ss is not None:
        cond["ss"] = ss
    x, c = model.sample_raw(
        n,
        sampler=sampler,
        sigmas=sigmas,
        nfe=nfe,
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        seed=seed,
        cond=cond,
        wrap=motif_wrap(known, mask, align),
        **sampler_options,
    )
    return model.modality.decode(x, c)
