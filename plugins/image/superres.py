"""Cascaded super-resolution (Saharia et al. 2022 "SR3"; Ho et al. 2022 "Cascaded Diffusion
Models"): a second diffusion model at the high resolution, conditioned on the low-res
image upsampled bicubically (``cond["lowres"]``, concatenated to the network input).

Create the stage with ``polydiff.create("image", modality_config={"dataset": "mnist5k",
"superres": {"low_size": 14}})`` and train it on high-resolution data (the collate builds
each low-res condition by area downsampling); :func:`super_resolve` runs it and
:func:`psnr` / :func:`bicubic_psnr` compare against the bicubic baseline.
"""

from __future__ import annotations

import torch

from .modality import downsample, upsample_lowres


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``[B, C, H, W]`` images in [-1, 1] (peak = full range 2)."""
    mse = ((a.float().clamp(-1, 1) - b.float().clamp(-1, 1)) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-12))


def bicubic_psnr(high: torch.Tensor, low_size: int) -> torch.Tensor:
    """Per-image PSNR of the bicubic upsampling of the area-downsampled ``high``."""
    return psnr(upsample_lowres(downsample(high, low_size), high.shape[-1]), high)


@torch.no_grad()
def super_resolve(
    model, low: torch.Tensor, *, sampler: str = "dpmpp_2m", steps: int = 20, seed: int = 0, label=None
) -> torch.Tensor:
    """Low-res images ``[B, C, h, w]`` in [-1, 1] → high-res ``[B, C, H, W]`` in [-1, 1]."""
    cond = {"lowres": low}
    if label is not None:
        cond["label"] = label
    x, _ = model.sample_raw(low.shape[0], sampler=sampler, steps=steps, seed=seed, cond=cond)
    return model.modality.to_pixels(x)
