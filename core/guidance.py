"""Guidance wrappers around a denoiser (conditioning bound: ``D(x, σ̃) → x̂₀``).

Each wrapper returns a new callable with the same signature, so they compose and work
for every modality and every sampler. All act in x̂₀ space of the σ̃ view, where a score
change δ∇ln p becomes x̂₀ + σ̃²·δ (Tweedie: D = x + σ̃²∇ln p_σ̃).
"""

from __future__ import annotations

import torch

from .conditioning import cat_cond, null_cond


def bind(denoiser, cond):
    """``D(x, σ, cond)`` → ``D(x, σ)``."""
    return lambda x, sigma: denoiser(x, sigma, cond)


def _per_sample_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
    return s.expand(x.shape[0]) if s.numel() == 1 else s


def cfg(denoiser, cond: dict, scale: float, *, uncond: dict | None = None, rescale: float = 0.0):
    """Classifier-free guidance (Ho & Salimans 2022) in x̂₀ space.

    x̂ = x̂_u + w·(x̂_c − x̂_u); w = 1 is the conditional model, w = 0 the unconditional.
    ``uncond`` defaults to ``null_cond(cond)`` (``cond_mask`` = 0); pass a negative
    condition instead for negative prompting. ``rescale`` φ (Lin et al. 2023 §3.4) blends
    in the guided prediction rescaled to the conditional one's per-sample std:
    x̂ ← φ·x̂·std(x̂_c)/std(x̂) + (1 − φ)·x̂. Conditional and unconditional passes are
    batched together (one network call of 2B). ``denoiser(x, σ, cond)``.
    """
    uncond = null_cond(cond) if uncond is None else uncond
    both = cat_cond(cond, uncond)

    def guided(x, sigma):
        sig = _per_sample_sigma(sigma, x)
        out = denoiser(torch.cat([x, x]), sig.repeat(2), both)
        xc, xu = out.chunk(2)
        g = xu + (xc - xu) * scale
        if rescale > 0:
            dims = tuple(range(1, x.ndim))
            std_c = xc.std(dim=dims, keepdim=True)
            std_g = g.std(dim=dims, keepdim=True).clamp(min=1e-12)
            g = rescale * (g * (std_c / std_g)) + (1 - rescale) * g
        return g

    return guided


def classifier_guidance(denoiser, classifier, target, scale: float = 1.0):
    """Classifier guidance (Dhariwal & Nichol 2021; Song et al. 2021 eq. 14) in the σ̃ view.

    ``classifier(x̃, σ̃ [B] float64) → logits [B, C]`` is noise-aware; ``target`` ``[B]`` long
    labels. The guided score is ∇ln p(x̃) + w·∇ln p(y | x̃, σ̃), hence
    x̂₀ ← D(x̃, σ̃) + w·σ̃²·∇ₓ ln p(y | x̃, σ̃). With the exact classifier and w = 1 this is the
    exact class-conditional denoiser (tested on a Gaussian mixture).
    """

    def guided(x, sigma):
        sig = _per_sample_sigma(sigma, x)
        x0 = denoiser(x, sigma)
        with torch.enable_grad():
            xg = x.detach().to(torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype)
            xg.requires_grad_(True)
            logp = torch.log_softmax(classifier(xg, sig), dim=-1)
            sel = logp.gather(1, target.to(logp.device).reshape(-1, 1).long()).sum()
            (grad,) = torch.autograd.grad(sel, xg)
        s2 = (sig**2).to(device=x.device, dtype=grad.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
        return (x0 + (scale * s2 * grad).to(x0.dtype)).detach()

    return guided


def compose(denoiser, *wrappers):
    """Apply ``wrappers`` (each ``f(denoiser) -> denoiser``) in order."""
    for w in wrappers:
        denoiser = w(denoiser)
    return denoiser
