"""Training losses, all written as a weighted x̂₀ error (exactly equivalent to MSE on
the network's own target with the matching weight; see
:meth:`polydiff.parameterization.Denoiser.default_x0_weight`).

Weightings λ(σ̃) in x₀ space: ``default`` (the parameterisation's own MSE), ``uniform``,
``snr`` (= ε-MSE), ``min_snr`` (Hang et al. 2023: min(SNR, γ), the ε-pred form), ``edm``
((σ̃²+σ_d²)/(σ̃σ_d)²), ``flow`` ((1+σ̃)²/σ̃², rectified-flow velocity MSE).
σ̃ sampling: ``lognormal`` (EDM: ln σ̃ ~ N(P_mean, P_std²)), ``uniform_t`` (t ~ U over
the schedule's domain), ``discrete`` (uniform integer timestep of a table schedule).
"""
from __future__ import annotations

import torch

from .parameterization import Denoiser
from .schedules import DiscreteVPSchedule

F64 = torch.float64
WEIGHTINGS = ("default", "uniform", "snr", "min_snr", "edm", "flow")
SIGMA_SAMPLERS = ("lognormal", "uniform_t", "discrete")


def x0_weight(weighting: str, sigma: torch.Tensor, denoiser: Denoiser, gamma: float = 5.0) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=F64)
    if weighting == "default":
        return denoiser.default_x0_weight(s)
    if weighting == "uniform":
        return torch.ones_like(s)
    if weighting == "snr":
        return 1 / s ** 2
    if weighting == "min_snr":
        return torch.clamp(1 / s ** 2, max=gamma)
    if weighting == "edm":
        sd = denoiser.sigma_data
        return (s ** 2 + sd ** 2) / (s * sd) ** 2
    if weighting == "flow":
        return (1 + s) ** 2 / s ** 2
    raise ValueError(f"unknown weighting {weighting!r}; one of {WEIGHTINGS}")


def sample_sigmas(kind: str, n: int, denoiser: Denoiser, generator: torch.Generator,
                  p_mean: float = -1.2, p_std: float = 1.2) -> torch.Tensor:
    """``[n]`` float64 training noise levels σ̃."""
    sch = denoiser.schedule
    if kind == "lognormal":
        return torch.exp(p_mean + p_std * torch.randn(n, generator=generator, dtype=F64))
    if kind == "uniform_t":
        u = torch.rand(n, generator=generator, dtype=F64)
        return sch.sigma_ve(sch.t_min + u * (sch.t_max - sch.t_min))
    if kind == "discrete":
        if not isinstance(sch, DiscreteVPSchedule):
            raise ValueError("discrete σ sampling needs a discrete schedule")
        k = torch.randint(0, sch.num_train_timesteps, (n,), generator=generator).to(F64)
        return sch.sigma_ve(sch.timestep_to_t(k))
    raise ValueError(f"unknown sigma sampler {kind!r}; one of {SIGMA_SAMPLERS}")


def diffusion_loss(denoiser: Denoiser, x0: torch.Tensor, cond, space, rng, generator: torch.Generator, *,
                   sigma_sampling: str = "lognormal", weighting: str = "default", min_snr_gamma: float = 5.0,
                   sigmas: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample loss ``[B]``: λ(σ̃)·mean_space(‖D(x₀ + σ̃n, σ̃) − x₀‖²).

    ``space`` supplies the noise (``space.randn_like(x0, rng)``), the projection and the
    masked mean; ``rng`` draws the noise; ``generator`` draws σ̃.
    """
    B = x0.shape[0]
    if sigmas is None:
        sigmas = sample_sigmas(sigma_sampling, B, denoiser, generator)
    noise = space.randn_like(x0, rng)
    x_noisy = space.project(x0 + noise * sigmas.to(device=x0.device, dtype=x0.dtype).reshape((B,) + (1,) * (x0.ndim - 1)))
    x0_hat = denoiser(x_noisy, sigmas, cond)
    w = x0_weight(weighting, sigmas, denoiser, min_snr_gamma).to(device=x0.device, dtype=torch.float32)
    err = space.mean((x0_hat.float() - x0.float()) ** 2)
    return w * err
