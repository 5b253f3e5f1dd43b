"""Audio editing with a trained audio model: inpainting of a time span and SDEdit
variation, built on the core's editing primitives (``sample_raw``'s ``wrap``, ``x_init``,
``sigmas`` and ``sampling_cond``).

- :func:`inpaint` pins the latent columns outside ``[start_s, end_s)`` to the clip's own
  latent (replacement inpainting, Lugmayr et al. 2022 without resampling) and regenerates
  the rest; the latent time axis has one column per ``4·hop`` samples, so the span is
  widened to whole columns.
- :func:`variation` starts from the clip's latent noised to σ at ``strength`` of the grid
  (SDEdit, Meng et al. 2022): 0 keeps the clip, 1 samples afresh.

Both take waveforms ``[B, N]`` (or :class:`AudioClips`) and return :class:`AudioClips`.
"""

from __future__ import annotations

import math

import torch

from polydiff.editing import known_region

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
    """Regenerate ``[start_s, end_s)`` seconds of each clip, keep the rest (in the latent)."""
    waves = as_waves(clips)
    known = model.modality.encode(waves.to(model.device))
    keep = span_mask(model, waves.shape[0], start_s, end_s).to(known.device)
    x, c = model.sample_raw(
        waves.shape[0],
        cond=_labels(model, clips, label),
        sampler=sampler,
        steps=steps,
        seed=seed,
        guidance=guidance,
        wrap=known_region(known, keep),
        **kw,
    )
    return model.modality.decode(x, c)


def variation(
    model, clips, strength: float, *, label=None, steps: int = 30, sampler: str = "dpmpp_2m", seed: int = 0, **kw
):
    """SDEdit: noise the clip's latent to the grid point at ``strength`` and denoise it."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], not {strength}")
    waves = as_waves(clips)
    x0 = model.modality.encode(waves.to(model.device))
    grid = model.sigma_grid(steps)
    start = min(steps - 1, int(round((1 - strength) * steps)))
    cond = _labels(model, clips, label)
    if cond is None:
        cond = {"label": torch.zeros(waves.shape[0], dtype=torch.long)}
        cond["cond_mask"] = torch.zeros(waves.shape[0])
    x, c = model.sample_raw(
        waves.shape[0], x_init=x0, sigmas=grid[start:], sampling_cond=cond, sampler=sampler, seed=seed, **kw
    )
    return model.modality.decode(x, c)
