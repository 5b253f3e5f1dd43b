"""Reverse-SDE samplers (Song et al. 2021, "Score-based generative modeling through SDEs"):
Euler–Maruyama on the reverse-time SDE and predictor–corrector with a Langevin corrector.

Without ``sde`` both work in the σ̃ view, where every linear SDE with the schedule's
marginals is the VE SDE dx̃ = √(dσ̃²/dσ̃) dw = √(2σ̃) dw with σ̃ as time; the score is
∇log p_σ̃(x̃) = (D(x̃, σ̃) − x̃)/σ̃². With ``sde`` (a :class:`polydiff.sde.LinearSDE`: VP,
sub-VP, VE) Euler–Maruyama steps that SDE's own drift f(t)x and diffusion g(t) in its
time t; the result is returned in the σ̃ view like every sampler. The final step to σ̃ = 0
returns D (Tweedie's denoised mean): no residual noise.
"""

from __future__ import annotations

import math

import torch

from .common import denoise, grid_floats, need_rng, space_or_default, working_state


def sample_euler_maruyama(denoiser, x, sigmas, *, space=None, rng=None, callback=None, sde=None):
    """Euler–Maruyama on the reverse SDE dx = [f x − g² ∇log p] dt + g dw̄ (Song et al. 2021, eq. 6).

    x: ``[B, ...]`` at σ̃ = sigmas[0] (σ̃ view); NFE = len(sigmas) − 1; needs ``rng``.
    """
    space, s = space_or_default(space), grid_floats(sigmas)
    need_rng(rng, "euler_maruyama")
    x = working_state(x)
    n = len(s) - 1
    if sde is None:
        for i in range(n):
            x0 = denoise(denoiser, x, s[i], i, callback)
            if s[i + 1] == 0:
                return x0
            score = (x0 - x) / s[i] ** 2
            ds = s[i] - s[i + 1]
            x = space.project(x + score * (2 * s[i] * ds) + space.randn_like(x, rng) * math.sqrt(2 * s[i] * ds))
        return x
    pos = torch.tensor([v for v in s if v > 0], dtype=torch.float64)
    t = sde.schedule.t_from_sigma_ve(pos).tolist()
    t += [sde.schedule.t_min] * (len(s) - len(t))  # σ̃ = 0 is only reached by returning D
    xt = x * float(sde.schedule.alpha(t[0]))  # state of the SDE itself: x_t = α(t)·x̃
    for i in range(n):
        a, sg = float(sde.schedule.alpha(t[i])), float(sde.schedule.sigma(t[i]))
        x0 = denoise(denoiser, xt / a, s[i], i, callback)
        if s[i + 1] == 0:
            return x0
        score = (x0 * a - xt) / sg**2
        f, g2 = float(sde.f(t[i])), float(sde.g2(t[i]))
        dt = t[i] - t[i + 1]
        xt = space.project(xt - (xt * f - score * g2) * dt + space.randn_like(xt, rng) * math.sqrt(g2 * dt))
    return xt / float(sde.schedule.alpha(t[-1]))


def _per_sample_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).reshape((-1,) + (1,) * (v.ndim - 1))


def langevin_correct(
    denoiser,
    x,
    sigma: float,
    rng,
    space,
    *,
    snr: float,
    n_steps: int,
    callback=None,
    i: int = 0,
    step_rule: str = "sigma",
):
    """``n_steps`` of Langevin MCMC at fixed σ̃ (Song et al. 2021, Alg. 5, α_i = 1):
    x ← x + ε∇ln p_σ̃ + √(2ε)·z.

    Song et al. set ε = 2(snr·‖z‖/‖∇ln p‖)² with norms averaged over the batch, which
    makes a sample depend on its batch-mates. ``step_rule="sigma"`` (default) uses
    ε = 2(snr·σ̃)², the value of that rule when ‖∇ln p‖ ≈ ‖z‖/σ̃ (noise-dominated
    marginal) — per-sample, batch-independent, and without the blow-up of per-sample
    norms in low dimension near a mode (where ∇ln p → 0). ``step_rule="norm"``: the
    per-sample-norm version of Song's rule.
    """
    for _ in range(n_steps):
        x0 = denoise(denoiser, x, sigma, i, callback)
        grad = (x0 - x) / sigma**2
        z = space.randn_like(x, rng)
        if step_rule == "norm":
            eps_b = 2 * (snr * _per_sample_norm(z) / _per_sample_norm(grad).clamp(min=1e-30)) ** 2  # per sample
            x = space.project(x + eps_b * grad + torch.sqrt(2 * eps_b) * z)
        elif step_rule == "sigma":
            eps = 2 * (snr * sigma) ** 2
            x = space.project(x + grad * eps + z * math.sqrt(2 * eps))
        else:
            raise ValueError(f"step_rule must be 'sigma' or 'norm', got {step_rule!r}")
    return x


def sample_pc_langevin(
    denoiser,
    x,
    sigmas,
    *,
    space=None,
    rng=None,
    callback=None,
    snr: float = 0.16,
    n_steps: int = 1,
    sde=None,
    step_rule: str = "sigma",
):
    """Predictor–corrector (Song et al. 2021, Alg. 1): at each σ̃_i > 0, ``n_steps`` Langevin
    corrector steps at σ̃_i (signal-to-noise ratio ``snr``), then one Euler–Maruyama
    (reverse-diffusion) predictor step to σ̃_{i+1}; the last step returns D.
    NFE = (len(sigmas) − 1)·(1 + n_steps) − n_steps.
    """
    space, s = space_or_default(space), grid_floats(sigmas)
    need_rng(rng, "pc_langevin")
    x = working_state(x)
    for i in range(len(s) - 1):
        if s[i + 1] > 0 and n_steps > 0:
            x = langevin_correct(denoiser, x, s[i], rng, space, snr=snr, n_steps=n_steps, i=i, step_rule=step_rule)
        x = sample_euler_maruyama(
            denoiser,
            x,
            s[i : i + 2],
            space=space,
            rng=rng,
            callback=(None if callback is None else (lambda _j, *a, i=i: callback(i, *a))),
            sde=sde,
        )
    return x
