"""Noise schedules as continuous-time functions α(t), σ(t) (forward x_t = α x₀ + σ ε).

Every schedule also exposes the VE ("EDM") view σ̃(t) = σ(t)/α(t) and its inverse, which is
all the samplers need (Karras et al. 2022, §2). The maths is done in float64.

Discrete tables (DDPM's 1000 betas, cosine, scaled-linear, sigmoid) are interpolated
piecewise-linearly in log-SNR over the timestep index k ∈ [0, T−1], with t = k/(T−1);
the network's time input is k (the integer timestep at table points, as diffusers uses).
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor
F64 = torch.float64


def _t64(x) -> Tensor:
    return torch.as_tensor(x, dtype=F64)


class Schedule:
    """Base class. Subclasses define :meth:`alpha` and :meth:`sigma` (a :class:`VPSchedule`
    only α; σ = √(1 − α²) follows), and :meth:`t_from_log_snr` where λ⁻¹ has a closed form
    (the default bisects); :meth:`network_time` maps t to the network's time input.

    ``t_min``/``t_max`` bound the time domain used for training and sampling.
    """

    name = "schedule"
    t_min: float = 0.0
    t_max: float = 1.0

    # --- forward process -------------------------------------------------------
    def alpha(self, t) -> Tensor:
        raise NotImplementedError

    def sigma(self, t) -> Tensor:
        raise NotImplementedError

    def log_snr(self, t) -> Tensor:
        """λ(t) = log(α²/σ²), strictly decreasing in t."""
        t = _t64(t)
        return 2.0 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def t_from_log_snr(self, lam) -> Tensor:
        """λ⁻¹ by bisection (64 halvings: exact to float64); subclasses may override."""
        lam = _t64(lam)
        lo = torch.full_like(lam, self.t_min)
        hi = torch.full_like(lam, self.t_max)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            go_right = self.log_snr(mid) > lam  # λ decreases in t
            lo = torch.where(go_right, mid, lo)
            hi = torch.where(go_right, hi, mid)
        return 0.5 * (lo + hi)

    # --- VE view ----------------------------------------------------------------
    def sigma_ve(self, t) -> Tensor:
        """σ̃(t) = σ(t)/α(t): the noise level of x̃ = x/α."""
        t = _t64(t)
        return self.sigma(t) / self.alpha(t)

    def t_from_sigma_ve(self, sigma_ve) -> Tensor:
        """σ̃⁻¹: the time whose σ̃ is ``sigma_ve`` (through λ = −2 log σ̃)."""
        return self.t_from_log_snr(-2.0 * torch.log(_t64(sigma_ve)))

    def alpha_sigma_from_sigma_ve(self, sigma_ve):
        """(α, σ) of the schedule at the time whose σ̃ is ``sigma_ve``."""
        t = self.t_from_sigma_ve(sigma_ve)
        return self.alpha(t), self.sigma(t)

    @property
    def sigma_ve_min(self) -> float:
        return float(self.sigma_ve(self.t_min))

    @property
    def sigma_ve_max(self) -> float:
        return float(self.sigma_ve(self.t_max))

    def network_time(self, t) -> Tensor:
        """The time value fed to a network (subclasses: timestep index, σ, …)."""
        return _t64(t)

    def config(self) -> dict:
        return {"name": self.name}


class VPSchedule(Schedule):
    """Variance-preserving schedule: σ² = 1 − α²."""

    def sigma(self, t) -> Tensor:
        return torch.sqrt(-torch.expm1(2.0 * torch.log(self.alpha(_t64(t)))))

    def log_snr(self, t) -> Tensor:
        la = torch.log(self.alpha(_t64(t)))
        # λ = 2 log α − log(1 − α²), computed stably
        return 2.0 * la - torch.log(-torch.expm1(2.0 * la))


class DiscreteVPSchedule(VPSchedule):
    """A table ᾱ_k, k = 0..T−1, as diffusers' schedulers hold it, interpolated in λ."""

    def __init__(self, alphas_cumprod, *, name: str = "discrete"):
        self.name = name
        ac = _t64(alphas_cumprod)
        if ac.ndim != 1 or ac.numel() < 2:
            raise ValueError("alphas_cumprod must be a 1-D table of at least 2 entries")
        self.alphas_cumprod = ac
        self.num_train_timesteps = ac.numel()
        self._lam = torch.log(ac) - torch.log1p(-ac)  # λ_k, decreasing
        if not bool((self._lam[1:] < self._lam[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        self.t_min, self.t_max = 0.0, 1.0

    def _k(self, t) -> Tensor:
        return _t64(t) * (self.num_train_timesteps - 1)

    def log_snr(self, t) -> Tensor:
        k = self._k(t).clamp(0, self.num_train_timesteps - 1)
        k0 = torch.floor(k).long().clamp(max=self.num_train_timesteps - 2)
        w = k - k0
        return (1 - w) * self._lam[k0] + w * self._lam[k0 + 1]

    def t_from_log_snr(self, lam) -> Tensor:
        lam = _t64(lam)
        neg = -self._lam  # increasing
        idx = torch.searchsorted(neg, -lam.reshape(-1).contiguous()).clamp(1, self.num_train_timesteps - 1)
        l0, l1 = self._lam[idx - 1], self._lam[idx]
        w = (l0 - lam.reshape(-1)) / (l0 - l1)
        k = (idx - 1).to(F64) + w.clamp(0, 1)
        return (k / (self.num_train_timesteps - 1)).reshape(lam.shape)

    def alpha(self, t) -> Tensor:
        return torch.sqrt(torch.sigmoid(self.log_snr(t)))

    def sigma(self, t) -> Tensor:
        return torch.sqrt(torch.sigmoid(-self.log_snr(t)))

    def network_time(self, t) -> Tensor:
        return self._k(t)

    def timestep_to_t(self, k) -> Tensor:
        return _t64(k) / (self.num_train_timesteps - 1)

    def config(self) -> dict:
        return {"name": self.name, "num_train_timesteps": self.num_train_timesteps}


def _betas_to_alphas_cumprod(betas: Tensor) -> Tensor:
    return torch.cumprod(1.0 - _t64(betas), dim=0)


def rescale_zero_terminal_snr(alphas_cumprod, *, floor: float = 2.0**-24) -> Tensor:
    """Lin et al. 2023, Alg. 1: shift/scale √ᾱ so the last is 0 and the first unchanged.

    An exactly-zero ᾱ_T makes σ̃ infinite, so ᾱ_T is then set to ``floor`` (diffusers'
    solvers use 2⁻²⁴) or half of ᾱ_{T−1} if that is smaller, which keeps the table strictly
    decreasing (for DDPM-linear ᾱ_{T−1} ≈ 4e-9 < 2⁻²⁴) and the VE view finite.
    """
    s = torch.sqrt(_t64(alphas_cumprod))
    s0, sT = s[0].clone(), s[-1].clone()
    s = (s - sT) * s0 / (s0 - sT)
    ac = s**2
    ac[-1] = min(floor, 0.5 * float(ac[-2]))
    return ac


class DDPMLinear(DiscreteVPSchedule):
    """DDPM (Ho et al. 2020): β linear from 1e-4 to 0.02 over T = 1000 steps."""

    def __init__(self, beta_start=1e-4, beta_end=0.02, num_train_timesteps=1000, zero_terminal_snr=False):
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=F64)
        ac = _betas_to_alphas_cumprod(betas)
        if zero_terminal_snr:
            ac = rescale_zero_terminal_snr(ac)
        super().__init__(ac, name="ddpm_linear")
        self._cfg = dict(
            beta_start=beta_start,
            beta_end=beta_end,
            num_train_timesteps=num_train_timesteps,
            zero_terminal_snr=zero_terminal_snr,
        )

    def config(self):
        return {"name": self.name, **self._cfg}


class ScaledLinear(DiscreteVPSchedule):
    """Latent diffusion's "scaled linear": √β linear from √0.00085 to √0.012."""

    def __init__(self, beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000, zero_terminal_snr=False):
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=F64) ** 2
        ac = _betas_to_alphas_cumprod(betas)
        if zero_terminal_snr:
            ac = rescale_zero_terminal_snr(ac)
        super().__init__(ac, name="scaled_linear")
        self._cfg = dict(
            beta_start=beta_start,
            beta_end=beta_end,
            num_train_timesteps=num_train_timesteps,
            zero_terminal_snr=zero_terminal_snr,
        )

    def config(self):
        return {"name": self.name, **self._cfg}


class CosineDiscrete(DiscreteVPSchedule):
    """Nichol & Dhariwal 2021 cosine ᾱ(t) = f(t)/f(0), f = cos²((t+s)/(1+s)·π/2), with
    β_k = 1 − ᾱ_{k+1}/ᾱ_k clipped at ``max_beta`` = 0.999 (the paper's clipping)."""

    def __init__(self, num_train_timesteps=1000, s=0.008, max_beta=0.999, zero_terminal_snr=False):
        T = num_train_timesteps
        f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        betas = [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]
        ac = _betas_to_alphas_cumprod(torch.tensor(betas, dtype=F64))
        if zero_terminal_snr:
            ac = rescale_zero_terminal_snr(ac)
        super().__init__(ac, name="cosine")
        self._cfg = dict(num_train_timesteps=T, s=s, max_beta=max_beta, zero_terminal_snr=zero_terminal_snr)

    def config(self):
        return {"name": self.name, **self._cfg}


class SigmoidDiscrete(DiscreteVPSchedule):
    """Sigmoid β schedule (GeoDiff): β = sigmoid(linspace(−6, 6, T))·(β₁−β₀) + β₀."""

    def __init__(self, beta_start=1e-4, beta_end=0.02, num_train_timesteps=1000):
        x = torch.linspace(-6, 6, num_train_timesteps, dtype=F64)
        betas = torch.sigmoid(x) * (beta_end - beta_start) + beta_start
        super().__init__(_betas_to_alphas_cumprod(betas), name="sigmoid")
        self._cfg = dict(beta_start=beta_start, beta_end=beta_end, num_train_timesteps=num_train_timesteps)

    def config(self):
        return {"name": self.name, **self._cfg}


class VPLinearContinuous(VPSchedule):
    """Continuous VP SDE (Song et al. 2021): β(t) = β_min + t(β_max − β_min), t ∈ [ε, 1].

    log α(t) = −¼t²(β_max−β_min) − ½tβ_min; the continuous limit of DDPM linear.
    """

    name = "vp_linear"

    def __init__(self, beta_min=0.1, beta_max=20.0, t_min=1e-5):
        self.beta_min, self.beta_max, self.t_min, self.t_max = beta_min, beta_max, t_min, 1.0

    def alpha(self, t):
        t = _t64(t)
        return torch.exp(-0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min)

    def beta(self, t):
        return self.beta_min + _t64(t) * (self.beta_max - self.beta_min)

    def t_from_log_snr(self, lam):
        # log α = -½·log(1 + e^{-λ}) = −¼ΔB t² − ½β₀ t: solve the quadratic for t ≥ 0.
        c = 0.5 * torch.nn.functional.softplus(-_t64(lam))
        a, b = 0.25 * (self.beta_max - self.beta_min), 0.5 * self.beta_min
        return (-b + torch.sqrt(b * b + 4 * a * c)) / (2 * a)

    def network_time(self, t):
        return _t64(t) * 999.0

    def config(self):
        return {"name": self.name, "beta_min": self.beta_min, "beta_max": self.beta_max, "t_min": self.t_min}


class SubVPLinear(Schedule):
    """Marginals of the sub-VP SDE (Song et al. 2021, eq. 29): α(t) as the continuous VP
    linear schedule, σ(t) = 1 − α(t)² (so σ² ≤ 1 − α²)."""

    name = "sub_vp_linear"

    def __init__(self, beta_min=0.1, beta_max=20.0, t_min=1e-5):
        self._vp = VPLinearContinuous(beta_min, beta_max, t_min)
        self.beta_min, self.beta_max, self.t_min, self.t_max = beta_min, beta_max, t_min, 1.0

    def alpha(self, t):
        return self._vp.alpha(t)

    def sigma(self, t):
        return -torch.expm1(2.0 * torch.log(self._vp.alpha(t)))

    def beta(self, t):
        return self._vp.beta(t)

    def t_from_log_snr(self, lam):
        # σ̃ = (1 − α²)/α ⇒ α² + σ̃α − 1 = 0 ⇒ α = (−σ̃ + √(σ̃² + 4))/2, then invert the VP α.
        s = torch.exp(-0.5 * _t64(lam))
        a = 2.0 / (s + torch.sqrt(s * s + 4.0))
        return self._vp.t_from_log_snr(2.0 * torch.log(a) - torch.log(-torch.expm1(2.0 * torch.log(a))))

    def network_time(self, t):
        return _t64(t) * 999.0

    def config(self):
        return {"name": self.name, "beta_min": self.beta_min, "beta_max": self.beta_max, "t_min": self.t_min}


class VEGeometric(Schedule):
    """VE (Song et al. 2021): α = 1, σ(t) = σ_min (σ_max/σ_min)^t."""

    name = "ve"

    def __init__(self, sigma_min=0.01, sigma_max=50.0):
        self.s0, self.s1 = float(sigma_min), float(sigma_max)

    def alpha(self, t):
        return torch.ones_like(_t64(t))

    def sigma(self, t):
        return self.s0 * (self.s1 / self.s0) ** _t64(t)

    def t_from_log_snr(self, lam):
        s = torch.exp(-0.5 * _t64(lam))
        return torch.log(s / self.s0) / math.log(self.s1 / self.s0)

    def network_time(self, t):
        return torch.log(self.sigma(t))

    def config(self):
        return {"name": self.name, "sigma_min": self.s0, "sigma_max": self.s1}


class EDMSchedule(Schedule):
    """EDM (Karras et al. 2022): α = 1, σ(t) = t, t ∈ [σ_min, σ_max] = [0.002, 80]."""

    name = "edm"

    def __init__(self, sigma_min=0.002, sigma_max=80.0, sigma_data=0.5):
        self.t_min, self.t_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)

    def alpha(self, t):
        return torch.ones_like(_t64(t))

    def sigma(self, t):
        return _t64(t)

    def t_from_log_snr(self, lam):
        return torch.exp(-0.5 * _t64(lam))

    def network_time(self, t):
        return 0.25 * torch.log(_t64(t))  # c_noise

    def config(self):
        return {"name": self.name, "sigma_min": self.t_min, "sigma_max": self.t_max, "sigma_data": self.sigma_data}


class RectifiedFlow(Schedule):
    """Rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023): α = 1 − t, σ = t
    on [t_min, t_max]; 0 < t_min keeps σ̃ > 0 (loss weights finite), t_max < 1 keeps σ̃ finite."""

    name = "rectified_flow"

    def __init__(self, t_min=1e-4, t_max=0.999):
        self.t_min, self.t_max = float(t_min), float(t_max)

    def alpha(self, t):
        return 1.0 - _t64(t)

    def sigma(self, t):
        return _t64(t)

    def t_from_log_snr(self, lam):
        s = torch.exp(-0.5 * _t64(lam))  # σ̃ = t/(1−t)
        return s / (1.0 + s)

    def network_time(self, t):
        return _t64(t)

    def config(self):
        return {"name": self.name, "t_min": self.t_min, "t_max": self.t_max}


#: name → class, registered by the built-in plugin
SCHEDULES = {
    "ddpm_linear": DDPMLinear,
    "scaled_linear": ScaledLinear,
    "cosine": CosineDiscrete,
    "sigmoid": SigmoidDiscrete,
    "vp_linear": VPLinearContinuous,
    "sub_vp_linear": SubVPLinear,
    "ve": VEGeometric,
    "edm": EDMSchedule,
    "rectified_flow": RectifiedFlow,
}
