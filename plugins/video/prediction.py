"""Frame-conditioned prediction: given the first k frames, generate the rest.

Temporal inpainting (Ho et al. 2022 §3.1 use it for extension): the known frames are
pinned in the denoiser's x̂₀ with :func:`polydiff.editing.known_region`, so every sampler
carries a correctly noised copy of them and the last step returns them exactly; a
network built with ``context_frames=True`` additionally sees the clean known frames as
input channels (``cond["context"]``/``["context_mask"]``), which it was trained on.
"""

from __future__ import annotations

import torch

from polydiff.editing import known_region


def predict(
    model,
    context: torch.Tensor,
    context_frames: int,
    *,
    label=None,
    seed: int = 0,
    sampler: str = "dpmpp_2m",
    steps: int = 50,
    guidance: float = 1.0,
    **sample_options,
) -> list:
    """Continue clips: ``context`` ``[n, C, ≥k, H, W]`` in [-1, 1] (its first
    ``context_frames`` frames are kept); returns decoded :class:`Clip` objects whose first
    ``k`` frames equal the context (up to uint8 rounding)."""
    n = context.shape[0]
    C, T, H, W = model.modality.shape()
    k = int(context_frames)
    known = torch.zeros(n, C, T, H, W)
    known[:, :, :k] = context[:, :, :k].float()
    mask = torch.zeros(1, 1, T, 1, 1, dtype=torch.bool)
    mask[:, :, :k] = True
    cond = {"context": context[:, :, :k], "context_frames": k}
    if label is not None:
        cond["label"] = label
    x, c = model.sample_raw(
        n,
        sampler=sampler,
        steps=steps,
        seed=seed,
        cond=cond,
        guidance=guidance,
        wrap=known_region(known, mask),
        **sample_options,
    )
    return model.modality.decode(x, c)


def copy_last_frame(context: torch.Tensor, context_frames: int, frames: int) -> torch.Tensor:
    """The trivial baseline: repeat frame k−1 for the rest; ``[n, C, T, H, W]``."""
    k = int(context_frames)
    out = context[:, :, :k].float()
    return torch.cat([out, out[:, :, k - 1 : k].expand(-1, -1, frames - k, -1, -1)], dim=2)
