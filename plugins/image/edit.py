"""Image editing with a trained image model: inpainting/outpainting and SDEdit (Meng et al.
2022), both done by :mod:`polydiff.editing`.

What these wrappers add is image-specific: a requested ``label`` becomes the sampling
cond (unconditional when None), pixels become the model's state (the VAE latent for a
latent model) and back, and exact inpainting is refused for latent models (the latent
of the kept pixels does not decode to exactly those pixels).
"""

from __future__ import annotations

import torch

from polydiff import editing


def _cond_for(model, images: torch.Tensor, label=None) -> dict:
    n = images.shape[0]
    if label is not None:
        return {"label": model.modality.labels_for(n, label), "cond_mask": torch.ones(n)}
    return {"label": torch.zeros(n, dtype=torch.long), "cond_mask": torch.zeros(n)}


@torch.no_grad()
def inpaint(
    model,
    images: torch.Tensor,
    keep: torch.Tensor,
    *,
    label=None,
    sampler: str = "dpmpp_2m",
    steps: int = 30,
    seed: int = 0,
    guidance: float = 1.0,
    resample: int = 1,
) -> torch.Tensor:
    """Fill the pixels where ``keep`` is False; pixels where it is True are returned exactly.

    images: ``[B, C, H, W]`` in [-1, 1]; keep: bool broadcastable to it (outpainting = keep
    the centre). Returns ``[B, C, H, W]`` in [-1, 1] (pixel models only). ``resample`` > 1
    runs RePaint over ``sampler`` (see :func:`polydiff.editing.inpaint`).
    """
    if model.modality.vae is not None:
        raise ValueError("exact inpainting needs a pixel-space model")
    cond = _cond_for(model, images, label)
    return editing.inpaint(
        model, images, keep, cond=cond, sampler=sampler, resample=resample, steps=steps, seed=seed, guidance=guidance
    )


@torch.no_grad()
def sdedit(
    model,
    images: torch.Tensor,
    strength: float,
    *,
    label=None,
    sampler: str = "euler",
    steps: int = 50,
    seed: int = 0,
    guidance: float = 1.0,
) -> torch.Tensor:
    """SDEdit image-to-image: noise ``images`` ``[B, C, H, W]`` (in [-1, 1]) to the σ̃ grid
    point at ``strength`` ∈ [0, 1] and denoise. Strength 0 takes no step: the input comes
    back unchanged (pixel models; a latent model returns its VAE reconstruction)."""
    state = model.modality.encode(images)
    cond = _cond_for(model, images, label)
    x = editing.sdedit(model, state, strength, cond=cond, sampler=sampler, steps=steps, seed=seed, guidance=guidance)
    return model.modality.to_pixels(x)
