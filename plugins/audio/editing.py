"""Audio editing with a trained audio model: inpainting of a time span and SDEdit
variation, both done by :mod:`polydiff.editing` in the model's latent.

What these wrappers add is audio-specific: waveforms (or :class:`AudioClips`) become
latents and come back as clips, labels come from the clips or ``label=``, and
:func:`span_mask` turns ``[start_s, end_s)`` seconds into latent columns — one column
per ``4·hop`` samples, so the span is widened to whole columns.

- :func:`inpaint` keeps the clip's latent outside the span exactly and regenerates the
  rest (replacement inpainting, Lugmayr et al. 2022; RePaint with ``resample`` > 1);
- :func:`variation` noises the clip's latent to the grid point at ``strength`` and
  denoises it (SDEdit, Meng et al. 2022): 0 gives back the clip's VAE reconstruction, 1
  samples afresh.
"""

from __future__ import annotations

import math

import torch

from polydiff import editing

from .metrics import as_waves, labels_of


def _labels(model, clips, label):
    n = as_waves(clips).shape[0]
    if label is not None:
        return model.modality.cond_tensors({"label": label}, n)
    lab = labels_of(clips)
    if lab is None and model.modality.label_names:
        raise ValueError("give label= (the clips carry no labels)")
    return None if lab is None else {"label": lab, "cond_mask": torch.ones(lab.shape[0])}


def span_mask(model, n: int, start_s: float, end_s: float) -> torch.Tensor:
    """Bool ``[n, z, h, w]``: True on latent columns to keep (outside the span)."""
    mod = model.modality
    shape = mod.latent_shape()
    frames_per_col = 4 * mod.frontend.hop_length / mod.frontend.sample_rate  # seconds per latent column
    c0 = max(0, int(math.floor(start_s / frames_per_col)))
    c1 = min(shape[-1], int(math.ceil(end_s / frames_per_col)))
    if c1 <= c0:
        raise ValueError(f"empty span [{start_s}, {end_s}) s")
    keep = torch.ones((n,) + shape, dtype=torch.bool)
    keep[..., c0:c1] = False
    return keep


def inpaint(
    model,
    clips,
    start_s: float,
    end_s: float,
    *,
    label=None,
    steps: int = 30,
    sampler: str = "dpmpp_2m",
    seed: int = 0,
    guidance: float = 1.0,
    **kw,
):
    """Regenerate ``[start_s, end_s)`` seconds of each clip, keep the rest (in the latent).
    ``clips``: waveforms ``[B, N]`` or :class:`AudioClips`; returns :class:`AudioClips`.
    Further keywords go to :func:`polydiff.editing.inpaint` (``resample``, …)."""
    waves = as_waves(clips)
    known = model.modality.encode(waves.to(model.device))
    keep = span_mask(model, waves.shape[0], start_s, end_s).to(known.device)
    cond = _labels(model, clips, label)
    x = editing.inpaint(model, known, keep, cond=cond, sampler=sampler, steps=steps, seed=seed, guidance=guidance, **kw)
    return model.modality.decode(x, cond)


def variation(
    model, clips, strength: float, *, label=None, steps: int = 30, sampler: str = "dpmpp_2m", seed: int = 0, **kw
):
    """SDEdit: noise the clip's latent to the grid point at ``strength`` ∈ [0, 1] and
    denoise it; returns :class:`AudioClips`. Further keywords go to
    :func:`polydiff.editing.sdedit` (``guidance``, ``grid``, …)."""
    waves = as_waves(clips)
    x0 = model.modality.encode(waves.to(model.device))
    cond = _labels(model, clips, label)
    x = editing.sdedit(model, x0, strength, cond=cond, sampler=sampler, steps=steps, seed=seed, **kw)
    return model.modality.decode(x, cond)
