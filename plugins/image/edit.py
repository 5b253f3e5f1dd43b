"""Image editing with a trained image model: inpainting/outpainting (known-region
replacement) and SDEdit (Meng et al. 2022).

Both go through :meth:`DiffusionModel.sample_raw` (``wrap=known_region`` pins known pixels
of x̂₀; ``x_init`` + a truncated σ̃ grid starts from a partially noised input). Pixel
models only for exactness: in latent mode the edit happens in the latent.
"""

from __future__ import annotations

import torch

from polydiff.editing import known_region


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
) -> torch.Tensor:
    """Fill the pixels where ``keep`` is False; pixels where it is True are returned exactly.

    images: ``[B, C, H, W]`` in [-1, 1]; keep: bool broadcastable to it (outpainting = keep
    the centre). Returns ``[B, C, H, W]`` (pixel models; the sampler's last step lands on
    the pinned x̂₀, so kept pixels are bit-identical to ``images``).
    """
    if model.modality.vae is not None:
        raise ValueError("exact inpainting needs a pixel-space model")
    keep = keep.to(torch.bool).expand_as(images)
    x, _ = model.sample_raw(
        images.shape[0],
        sampler=sampler,
        steps=steps,
        seed=seed,
        guidance=guidance,
        x_init=torch.zeros_like(images),
        sampling_cond=_cond_for(model, images, label),
        wrap=known_region(images, keep),
    )
    return x


def sdedit_sigmas(model, strength: float, steps: int = 50) -> torch.Tensor:
    """The tail of the model's σ̃ grid starting at ``strength`` ∈ [0, 1] of the way from σ=0
    to σ_max (0 → ``[0]``: no step at all; 1 → the full grid from pure noise)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    grid = model.sigma_grid(steps)
    start = int(round((1 - strength) * steps))
    return grid[start:]


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
    """SDEdit image-to-image: noise ``images`` ``[B, C, H, W]`` (in [-1, 1]) to σ̃(strength)
    and denoise. Strength 0 takes no step (σ̃ grid ``[0]``): the input comes back unchanged
    (pixel models; a latent model returns its VAE reconstruction)."""
    state = model.modality.encode(images)
    sig = sdedit_sigmas(model, strength, steps)
    if sig.numel() == 1:  # strength 0: no denoising step at all, the state is returned as is
        return model.modality.to_pixels(state)
    x, _ = model.sample_raw(
        images.shape[0],
        sampler=sampler,
        sigmas=sig,
        seed=seed,
        guidance=guidance,
        x_init=state,
        sampling_cond=_cond_for(model, images, label),
    )
    return model.modality.to_pixels(x)
