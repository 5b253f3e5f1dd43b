"""Single-step ODE samplers on the PF-ODE dx̃/dσ̃ = (x̃ − D(x̃, σ̃))/σ̃ (Karras et al. 2022,
eq. 4 with σ(t) = t, s(t) = 1): Euler and EDM's Heun with optional churn."""

from __future__ import annotations

import math

from .common import denoise, grid_floats, need_rng, space_or_default, working_state


def sample_euler(denoiser, x, sigmas, *, space=None, rng=None, callback=None):
    """Euler (1st order) on the PF-ODE; the last step (to σ̃ = 0) returns D exactly.

    Identical to DDIM with η = 0 in the σ̃ view (Song et al. 2021a; Karras et al. 2022 §3).
    x: ``[B, ...]`` at σ̃ = sigmas[0]; returns ``[B, ...]`` at σ̃ = 0. NFE = len(sigmas) − 1.
    """
    space, s = space_or_default(space), grid_floats(sigmas)
    x = working_state(x)
    for i in range(len(s) - 1):
        x0 = denoise(denoiser, x, s[i], i, callback)
        x = x0 if s[i + 1] == 0 else space.project(x0 + (x - x0) * (s[i + 1] / s[i]))
    return x


def sample_heun(
    denoiser,
    x,
    sigmas,
    *,
    space=None,
    rng=None,
    callback=None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
):
    """EDM Algorithm 2 (Karras et al. 2022): Heun's 2nd-order method with churn.

    With ``s_churn > 0`` noise raises σ̃_i to σ̂ = σ̃_i(1 + γ), γ = min(S_churn/N, √2 − 1)
    for σ̃_i ∈ [S_tmin, S_tmax] (needs ``rng``). The step into σ̃ = 0 is a single Euler
    step (= D), so NFE = 2N − 1 for N steps.
    """
    space, s = space_or_default(space), grid_floats(sigmas)
    x = working_state(x)
    n = len(s) - 1
    for i in range(n):
        gamma = min(s_churn / n, math.sqrt(2) - 1) if (s_churn > 0 and s_tmin <= s[i] <= s_tmax) else 0.0
        s_hat = s[i] * (1 + gamma)
        if gamma > 0:
            noise = space.randn_like(x, need_rng(rng, "heun (s_churn > 0)"))
            x = x + noise * (s_noise * math.sqrt(s_hat**2 - s[i] ** 2))
        x0 = denoise(denoiser, x, s_hat, i, callback)
        if s[i + 1] == 0:
            x = x0
            continue
        d = (x - x0) / s_hat
        x_pred = space.project(x + d * (s[i + 1] - s_hat))
        d2 = (x_pred - denoise(denoiser, x_pred, s[i + 1], i, None)) / s[i + 1]
        x = space.project(x + (d + d2) * (0.5 * (s[i + 1] - s_hat)))
    return x
