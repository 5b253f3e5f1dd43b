"""Guidance wrappers around a denoiser ``D(x, σ) → x̂₀`` (conditioning already bound).

Each wrapper returns a new callable with the same signature, so they compose and work
for every modality and every sampler.
"""
from __future__ import annotations

import torch

from .conditioning import cat_cond, null_cond


def bind(denoiser, cond):
    """``D(x, σ, cond)`` → ``D(x, σ)``."""
    return lambda x, sigma: denoiser(x, sigma, cond)


def cfg(denoiser, cond: dict, scale: float, *, uncond: dict | None = None, rescale: float = 0.0):
    """Classifier-free guidance (Ho & Salimans 2022) in x̂₀ space.

    x̂ = x̂_u + w·(x̂_c − x̂_u); ``uncond`` defaults to ``null_cond(cond)`` and may be a
    negative condition instead. ``rescale`` φ (Lin et al. 2023 §3.4) blends in the
    guided prediction rescaled to the conditional one's per-sample std. Conditional and
    unconditional passes are batched together (one network call of 2B).
    """
    uncond = null_cond(cond) if uncond is None else uncond
    both = cat_cond(cond, uncond)

    def guided(x, sigma):
        sig = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        sig2 = sig.repeat(2) if sig.numel() > 1 else sig
        out = denoiser(torch.cat([x, x]), sig2, both)
        xc, xu = out.chunk(2)
        g = xu + (xc - xu) * scale
        if rescale > 0:
            dims = tuple(range(1, x.ndim))
            std_c = xc.std(dim=dims, keepdim=True)
            std_g = g.std(dim=dims, keepdim=True).clamp(min=1e-12)
            g = rescale * (g * (std_c / std_g)) + (1 - rescale) * g
        return g

    return guided
