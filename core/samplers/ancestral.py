"""Ancestral samplers in the σ̃ view: DDIM with η, DDPM, Euler ancestral.

For a VP schedule in the σ̃ = σ/α view, DDIM's update (Song et al. 2021a, eq. 12, divided
by α_{t−1}) is x' = x̂₀ + σ_down·(x − x̂₀)/σ̃ + σ_up·z with
σ_up = η·σ̃'·√(σ̃² − σ̃'²)/σ̃ and σ_down = √(σ̃'² − σ_up²). η = 1 is the DDPM posterior
q(x_{t−1} | x_t, x̂₀) (Ho et al. 2020), so ``ddpm`` = ``ddim(η=1)``. k-diffusion's Euler
ancestral (an Euler step to σ_down, then noise σ_up) is algebraically the same update,
so ``euler_ancestral`` shares it (default η = 1).
"""

from __future__ import annotations

import math

from .common import denoise, grid_floats, need_rng, space_or_default, working_state


def ancestral_step(s: float, s_next: float, eta: float) -> tuple[float, float]:
    """(σ_down, σ_up) for a step from σ̃ = s to s_next (σ_down² + σ_up² = s_next²)."""
    if s_next == 0 or eta == 0:
        return s_next, 0.0
    up = min(s_next, eta * s_next * math.sqrt(max(s * s - s_next * s_next, 0.0)) / s)
    return math.sqrt(max(s_next * s_next - up * up, 0.0)), up


def sample_ddim(denoiser, x, sigmas, *, space=None, rng=None, callback=None, eta: float = 0.0, s_noise: float = 1.0):
    """DDIM (Song et al. 2021a) with stochasticity η ∈ [0, 1]; needs ``rng`` when η > 0.

    x: ``[B, ...]`` at σ̃ = sigmas[0]; the last step returns x̂₀ with no residual noise.
    """
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0, got {eta}")
    space, s = space_or_default(space), grid_floats(sigmas)
    if eta > 0:
        need_rng(rng, "ddim (eta > 0)")
    x = working_state(x)
    for i in range(len(s) - 1):
        x0 = denoise(denoiser, x, s[i], i, callback)
        if s[i + 1] == 0:
            x = x0
            continue
        down, up = ancestral_step(s[i], s[i + 1], eta)
        x = x0 + (x - x0) * (down / s[i])
        if up > 0:
            x = x + space.randn_like(x, rng) * (up * s_noise)
        x = space.project(x)
    return x


def sample_ddpm(denoiser, x, sigmas, *, space=None, rng=None, callback=None):
    """DDPM ancestral sampling (Ho et al. 2020) = DDIM with η = 1."""
    return sample_ddim(denoiser, x, sigmas, space=space, rng=rng, callback=callback, eta=1.0)


def sample_euler_ancestral(
    denoiser, x, sigmas, *, space=None, rng=None, callback=None, eta: float = 1.0, s_noise: float = 1.0
):
    """Euler step to σ_down, then fresh noise of σ_up (k-diffusion's Euler ancestral)."""
    return sample_ddim(denoiser, x, sigmas, space=space, rng=rng, callback=callback, eta=eta, s_noise=s_noise)
