"""Single-step ODE samplers: Euler and EDM's Heun (with optional churn)."""
from __future__ import annotations

import math

import torch

from ..spaces import EuclideanSpace


def _steps(sigmas):
    s = [float(v) for v in sigmas]
    return list(zip(range(len(s) - 1), s[:-1], s[1:]))


def sample_euler(denoiser, x, sigmas, *, space=None, rng=None, callback=None):
    """Euler on dx/dσ = (x − D(x, σ))/σ; the last step (to σ=0) returns D exactly."""
    space = space or EuclideanSpace()
    for i, s, s_next in _steps(sigmas):
        x0 = denoiser(x, s)
        if callback is not None:
            callback(i, s, x, x0)
        x = x0 if s_next == 0 else space.project(x + (x - x0) * ((s_next - s) / s))
    return x


def sample_heun(denoiser, x, sigmas, *, space=None, rng=None, callback=None,
                s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0):
    """EDM Algorithm 2 (Karras et al. 2022): Heun's 2nd-order method with churn.

    With ``s_churn > 0`` noise is added to raise σ_i to σ̂ = σ_i(1 + γ),
    γ = min(S_churn/N, √2 − 1) for σ_i ∈ [S_tmin, S_tmax]; that needs ``rng``.
    """
    space = space or EuclideanSpace()
    n = len(sigmas) - 1
    for i, s, s_next in _steps(sigmas):
        gamma = min(s_churn / n, math.sqrt(2) - 1) if (s_churn > 0 and s_tmin <= s <= s_tmax) else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:
            if rng is None:
                raise ValueError("heun with s_churn > 0 needs rng")
            x = x + space.randn_like(x, rng) * (s_noise * math.sqrt(s_hat ** 2 - s ** 2))
        x0 = denoiser(x, s_hat)
        if callback is not None:
            callback(i, s_hat, x, x0)
        d = (x - x0) / s_hat
        if s_next == 0:
            x = x0
            continue
        x_next = space.project(x + d * (s_next - s_hat))
        d2 = (x_next - denoiser(x_next, s_next)) / s_next
        x = space.project(x + (d + d2) * (0.5 * (s_next - s_hat)))
    return x
