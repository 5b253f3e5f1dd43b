"""Editing with a trained model: known-region inpainting, SDEdit.

All tools work for every modality through :meth:`DiffusionModel.sample_raw`'s ``wrap``,
``x_init``, ``sigmas`` and ``sampling_cond`` arguments.
"""
from __future__ import annotations

import torch


def known_region(known: torch.Tensor, known_mask: torch.Tensor):
    """A ``wrap`` for ``sample_raw`` that pins the known entries of x̂₀.

    ``known``: ``[B, ...]`` values; ``known_mask``: bool, broadcastable to ``known``
    (True = keep). Forcing x̂₀ = known on the mask makes every sampler carry a correctly
    noised copy of the known entries, and the last step (σ → 0 returns x̂₀) lands on
    them exactly — replacement inpainting (Lugmayr et al. 2022 without resampling).
    """

    def wrap(denoiser, cond):
        def pinned(x, sigma):
            out = denoiser(x, sigma)
            return torch.where(known_mask.to(out.device), known.to(device=out.device, dtype=out.dtype), out)

        return pinned

    return wrap
