"""Editing with a trained model: known-region inpainting (replacement and RePaint
resampling), SDEdit, DDIM inversion and slerp latent interpolation.

All tools work for every modality through :meth:`DiffusionModel.sample_raw`'s ``wrap``,
``x_init``, ``sigmas`` and ``sampling_cond`` arguments; shapes are ``[B, ...]``.
"""

from __future__ import annotations

import math

import torch

from .samplers.common import denoise, grid_floats, need_rng, space_or_default, working_state


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


def sample_repaint(
    denoiser,
    x,
    sigmas,
    *,
    space=None,
    rng=None,
    callback=None,
    known=None,
    known_mask=None,
    base: str = "ddpm",
    resample: int = 10,
    **base_options,
):
    """RePaint (Lugmayr et al. 2022, Alg. 1 with jump length 1) over any single-step base
    sampler (``ddpm``, ``ddim``, ``euler``, ``heun``, ``euler_ancestral``).

    Each step σ̃_i → σ̃_{i+1} runs ``resample`` times: step with the base sampler, replace
    the known entries by known + σ̃_{i+1}·z (a fresh forward sample), and — except after
    the last repetition — diffuse back to σ̃_i with noise √(σ̃_i² − σ̃_{i+1}²). Pair with
    :func:`known_region` so x̂₀ is pinned too: the final step then returns the known entries
    exactly. NFE = resample·(len(sigmas) − 2) + 1 for a one-evaluation base.
    """
    from .samplers import get_sampler

    if known is None or known_mask is None:
        raise ValueError("repaint needs known= and known_mask=")
    space, s = space_or_default(space), grid_floats(sigmas)
    need_rng(rng, "repaint")
    step = get_sampler(base).fn
    x = working_state(x)
    mask = known_mask.to(x.device)
    kn = known.to(device=x.device, dtype=x.dtype)
    for i in range(len(s) - 1):
        reps = 1 if s[i + 1] == 0 else max(1, int(resample))
        for r in range(reps):
            cb = None if callback is None else (lambda _j, *a, i=i: callback(i, *a))
            x = step(denoiser, x, s[i : i + 2], space=space, rng=rng, callback=cb, **base_options)
            if s[i + 1] == 0:
                break
            x = space.project(torch.where(mask, kn + space.randn_like(x, rng) * s[i + 1], x))
            if r < reps - 1:
                x = space.project(x + space.randn_like(x, rng) * math.sqrt(s[i] ** 2 - s[i + 1] ** 2))
    return x


def inpaint(
    model,
    known: torch.Tensor,
    known_mask: torch.Tensor,
    *,
    cond: dict | None = None,
    sampler: str = "dpmpp_2m",
    resample: int = 1,
    steps: int = 50,
    seed: int = 0,
    **kwargs,
) -> torch.Tensor:
    """Fill the entries of ``known`` where ``known_mask`` is False; known entries are kept
    exactly. ``resample`` > 1 uses RePaint over ``sampler`` (must then be single-step, e.g.
    ``ddpm``). Returns ``[B, ...]`` (not decoded)."""
    n = known.shape[0]
    mask = known_mask.to(torch.bool).expand_as(known)
    x_init = torch.where(mask, known, torch.zeros_like(known))
    wrap = known_region(known, mask)
    if resample > 1:
        x, _ = model.sample_raw(
            n,
            sampler="repaint",
            steps=steps,
            seed=seed,
            wrap=wrap,
            x_init=x_init,
            sampling_cond=cond,
            known=known,
            known_mask=mask,
            base=sampler,
            resample=resample,
            **kwargs,
        )
    else:
        x, _ = model.sample_raw(
            n, sampler=sampler, steps=steps, seed=seed, wrap=wrap, x_init=x_init, sampling_cond=cond, **kwargs
        )
    return torch.where(mask.to(x.device), known.to(device=x.device, dtype=x.dtype), x)


def sdedit_sigmas(sigmas: torch.Tensor, strength: float) -> torch.Tensor:
    """The tail of a σ̃ grid of N steps that starts at step round((1 − strength)·N)
    (Meng et al. 2022, SDEdit: start at t₀ = strength along the schedule)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    n = len(sigmas) - 1
    start = min(n, int(round((1.0 - strength) * n)))
    return sigmas[start:]


def sdedit(
    model,
    x: torch.Tensor,
    strength: float,
    *,
    cond: dict | None = None,
    sampler: str = "euler",
    steps: int = 50,
    grid: str = "karras",
    seed: int = 0,
    **kwargs,
) -> torch.Tensor:
    """SDEdit (Meng et al. 2022): noise ``x`` ``[B, ...]`` to the grid point at ``strength``
    and denoise from there. ``strength`` 0 returns ``x`` itself; 1 samples afresh."""
    sig = sdedit_sigmas(model.sigma_grid(steps, grid), strength)
    if len(sig) <= 1:
        return x.clone()
    out, _ = model.sample_raw(
        x.shape[0], sampler=sampler, sigmas=sig, seed=seed, x_init=x, sampling_cond=cond, **kwargs
    )
    return out


@torch.no_grad()
def ddim_invert(denoiser, x: torch.Tensor, sigmas, *, space=None) -> torch.Tensor:
    """DDIM inversion (Song et al. 2021a; Mokady et al. 2023): run the deterministic DDIM/Euler
    update *up* the grid, from clean ``x`` (taken as the state at the last σ̃ > 0) to
    σ̃₀. Sampling the result with ``euler``/``ddim`` on the same ``sigmas`` gives back ≈ ``x``
    (exactly as the step count grows). ``denoiser(x, σ̃)``; returns ``[B, ...]`` at σ̃₀."""
    space, s = space_or_default(space), grid_floats(sigmas)
    pos = [v for v in s if v > 0]
    x = working_state(x)
    for i in range(len(pos) - 1, 0, -1):
        x0 = denoise(denoiser, x, pos[i], i, None)
        x = space.project(x0 + (x - x0) * (pos[i - 1] / pos[i]))
    return x


def slerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """Spherical linear interpolation of noise latents (Shoemake 1985; used by Song et al.
    2021a §5.3): per sample, along the great circle between ``a`` and ``b`` ``[B, ...]``.
    ``t`` a float, or ``[T]`` → result ``[T, B, ...]``. Keeps ‖·‖ ≈ that of Gaussian noise,
    unlike linear interpolation."""
    tt = torch.as_tensor(t, dtype=torch.float64)
    af, bf = a.flatten(1).to(torch.float64), b.flatten(1).to(torch.float64)
    cos = (af * bf).sum(1) / (af.norm(dim=1) * bf.norm(dim=1)).clamp(min=1e-30)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))  # [B]
    so = torch.sin(omega)
    ts = tt.reshape(-1, 1)
    lin = so.abs() < 1e-8
    wa = torch.where(lin, 1 - ts, torch.sin((1 - ts) * omega) / torch.where(lin, 1.0, so))
    wb = torch.where(lin, ts, torch.sin(ts * omega) / torch.where(lin, 1.0, so))
    out = wa[..., None] * af[None] + wb[..., None] * bf[None]  # [T, B, n]
    out = out.reshape((tt.numel(),) + tuple(a.shape)).to(a.dtype)
    return out[0] if tt.ndim == 0 else out
