"""Ancestral samplers in the VE view: DDIM with η, DDPM, Euler ancestral.

For a VP schedule in the σ̃ = σ/α view, DDIM's update is
x' = x̂₀ + σ_down·(x − x̂₀)/σ + σ_up·z with σ_up = η·σ'·√(σ² − σ'²)/σ and
σ_down = √(σ'² − σ_up²) (Song et al. 2021a eq. 12 divided by α'). η = 1 is the DDPM
posterior q(x_{t−1} | x_t, x̂₀), hence ``ddpm`` = ``ddim(η=1)``.
"""
from __future__ import annotations

import math

from ..spaces import EuclideanSpace


def ancestral_step(s: float, s_next: float, eta: float) -> tuple[float, float]:
    """(σ_down, σ_up) for a step from σ̃ = s to s_next."""
    if s_next == 0 or eta == 0:
        return s_next, 0.0
    up = min(s_next, eta * s_next * math.sqrt(max(s * s - s_next * s_next, 0.0)) / s)
    return math.sqrt(max(s_next * s_next - up * up, 0.0)), up


def sample_ddim(denoiser, x, sigmas, *, space=None, rng=None, callback=None, eta: float = 0.0):
    """DDIM (Song et al. 2021a) with stochasticity η ∈ [0, 1]; needs ``rng`` when η > 0."""
    space = space or EuclideanSpace()
    if eta > 0 and rng is None:
        raise ValueError("ddim with eta > 0 needs rng")
    s_list = [float(v) for v in sigmas]
    for i in range(len(s_list) - 1):
        s, s_next = s_list[i], s_list[i + 1]
        x0 = denoiser(x, s)
        if callback is not None:
            callback(i, s, x, x0)
        if s_next == 0:
            x = x0
            continue
        down, up = ancestral_step(s, s_next, eta)
        x = x0 + (x - x0) * (down / s)
        if up > 0:
            x = x + space.randn_like(x, rng) * up
        x = space.project(x)
    return x


def sample_ddpm(denoiser, x, sigmas, *, space=None, rng=None, callback=None):
    """DDPM ancestral sampling (Ho et al. 2020) = DDIM with η = 1."""
    return sample_ddim(denoiser, x, sigmas, space=space, rng=rng, callback=callback, eta=1.0)


def sample_euler_ancestral(denoiser, x, sigmas, *, space=None, rng=None, callback=None, eta: float = 1.0):
    """Euler step to σ_down, then fresh noise of σ_up (k-diffusion's Euler ancestral)."""
    return sample_ddim(denoiser, x, sigmas, space=space, rng=rng, callback=callback, eta=eta)
