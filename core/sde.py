"""Forward SDEs, the reverse-time SDE and the probability-flow ODE (Song et al. 2021,
"Score-based generative modeling through stochastic differential equations").

A linear SDE dx = f(t)·x dt + g(t) dw has Gaussian marginals x_t = α(t)x₀ + σ(t)ε with
f = d ln α/dt and g² = dσ²/dt − 2fσ², so each SDE here carries a
:class:`polydiff.schedules.Schedule` (its marginals) and the pair (f, g²):

- VP (eq. 11): f = −β(t)/2, g² = β(t); α = e^{−½∫β}, σ² = 1 − α².
- sub-VP (eq. 29): f = −β/2, g² = β(1 − α⁴); σ = 1 − α².
- VE (eq. 9, geometric σ): f = 0, g² = dσ²/dt = 2σ² ln(σ_max/σ_min).

The reverse-time SDE (eq. 6) is dx = [f x − g² ∇ln p_t(x)] dt + g dw̄ and the PF-ODE
(eq. 13) dx/dt = f x − ½g² ∇ln p_t(x); the score comes from a denoiser D in the σ̃ view:
∇ln p_t(x) = (α·D(x/α, σ/α) − x)/σ². Samplers: ``euler_maruyama``, ``pc_langevin``
(these accept ``sde=``), ``ode_rk45``; likelihoods: :mod:`polydiff.likelihood`.
Shapes: x ``[B, ...]``; t a float or ``[B]``; all coefficients float64.
"""

from __future__ import annotations

import math

import torch

from .schedules import Schedule, SubVPLinear, VEGeometric, VPLinearContinuous

F64 = torch.float64


def _bc(c, x: torch.Tensor) -> torch.Tensor:
    c = torch.as_tensor(c, dtype=F64, device=x.device)
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim)).to(x.dtype)


class LinearSDE:
    """dx = f(t)x dt + g(t) dw with marginals given by ``schedule``; the generic f, g² are
    finite differences of α, σ (subclasses give closed forms)."""

    name = "linear"

    def __init__(self, schedule: Schedule):
        self.schedule = schedule

    @property
    def T(self) -> float:
        return self.schedule.t_max

    def f(self, t) -> torch.Tensor:
        t, h = torch.as_tensor(t, dtype=F64), 1e-6
        return (torch.log(self.schedule.alpha(t + h)) - torch.log(self.schedule.alpha(t - h))) / (2 * h)

    def g2(self, t) -> torch.Tensor:
        t, h = torch.as_tensor(t, dtype=F64), 1e-6
        ds2 = (self.schedule.sigma(t + h) ** 2 - self.schedule.sigma(t - h) ** 2) / (2 * h)
        return ds2 - 2 * self.f(t) * self.schedule.sigma(t) ** 2

    # -- forward process --------------------------------------------------------------
    def marginal(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """x_t = α(t)x₀ + σ(t)·noise."""
        return _bc(self.schedule.alpha(t), x0) * x0 + _bc(self.schedule.sigma(t), x0) * noise

    def drift(self, x: torch.Tensor, t) -> torch.Tensor:
        return _bc(self.f(t), x) * x

    def diffusion(self, t) -> torch.Tensor:
        return torch.sqrt(self.g2(t))

    def prior_std(self) -> float:
        """Std of the (approximate) prior N(0, σ(T)² I) at t = T (data term α(T)x₀ ignored)."""
        return float(self.schedule.sigma(self.T))

    def prior_logp(self, x: torch.Tensor, dof=None) -> torch.Tensor:
        """``[B]`` log N(x; 0, σ(T)² I) over ``dof`` degrees of freedom (default: all entries)."""
        s = self.prior_std()
        n = x[0].numel() if dof is None else dof
        return -0.5 * (x.to(F64) ** 2).flatten(1).sum(1) / s**2 - 0.5 * n * math.log(2 * math.pi * s * s)

    # -- scores from a denoiser ---------------------------------------------------------
    def score(self, denoiser, x: torch.Tensor, t) -> torch.Tensor:
        """∇ln p_t(x) = (α·D(x/α, σ/α) − x)/σ²; ``denoiser(x̃, σ̃)``."""
        a, s = self.schedule.alpha(t), self.schedule.sigma(t)
        x0 = denoiser(x / _bc(a, x), s / a)
        return (_bc(a, x) * x0 - x) / _bc(s**2, x)

    def reverse(self, denoiser) -> "ReverseSDE":
        return ReverseSDE(self, denoiser)

    def probability_flow(self, denoiser) -> "ProbabilityFlowODE":
        return ProbabilityFlowODE(self, denoiser)


class VPSDE(LinearSDE):
    """Variance-preserving SDE with linear β(t) = β_min + t(β_max − β_min)."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-5):
        super().__init__(VPLinearContinuous(beta_min, beta_max, t_min))

    def f(self, t):
        return -0.5 * self.schedule.beta(t)

    def g2(self, t):
        return self.schedule.beta(t)


class SubVPSDE(LinearSDE):
    """sub-VP SDE: same drift as VP, g² = β(t)(1 − e^{−2∫β}) = β(1 − α⁴)."""

    name = "sub_vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-5):
        super().__init__(SubVPLinear(beta_min, beta_max, t_min))

    def f(self, t):
        return -0.5 * self.schedule.beta(t)

    def g2(self, t):
        return self.schedule.beta(t) * (1 - self.schedule.alpha(t) ** 4)


class VESDE(LinearSDE):
    """Variance-exploding SDE, σ(t) = σ_min(σ_max/σ_min)^t, f = 0, g² = 2σ² ln(σ_max/σ_min)."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        super().__init__(VEGeometric(sigma_min, sigma_max))

    def f(self, t):
        return torch.zeros_like(torch.as_tensor(t, dtype=F64))

    def g2(self, t):
        sch = self.schedule
        return 2 * sch.sigma(t) ** 2 * math.log(sch.s1 / sch.s0)


class ReverseSDE:
    """Reverse-time SDE of ``sde`` with the score of ``denoiser`` (Anderson 1982; Song eq. 6):
    dx = [f x − g² ∇ln p_t] dt + g dw̄, integrated from t = T down to 0."""

    def __init__(self, sde: LinearSDE, denoiser):
        self.sde, self.denoiser = sde, denoiser

    def drift(self, x, t):
        return self.sde.drift(x, t) - _bc(self.sde.g2(t), x) * self.sde.score(self.denoiser, x, t)

    def diffusion(self, t):
        return self.sde.diffusion(t)


class ProbabilityFlowODE:
    """dx/dt = f x − ½ g² ∇ln p_t (Song eq. 13): same marginals as the SDE, deterministic."""

    def __init__(self, sde: LinearSDE, denoiser):
        self.sde, self.denoiser = sde, denoiser

    def drift(self, x, t):
        return self.sde.drift(x, t) - 0.5 * _bc(self.sde.g2(t), x) * self.sde.score(self.denoiser, x, t)

    def __call__(self, t, x):
        """torchdiffeq-style ``func(t, x)``."""
        return self.drift(x, float(t))


SDES = {"vp": VPSDE, "sub_vp": SubVPSDE, "ve": VESDE}
