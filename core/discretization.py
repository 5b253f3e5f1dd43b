"""Time/noise grids for samplers, kept apart from the schedules.

Every function returns a strictly decreasing float64 tensor of σ̃ values (the VE view,
σ̃ = σ/α) of length ``n + 1`` whose last entry is 0: ``n`` denoising steps that end on
clean data with no residual noise.
"""

from __future__ import annotations

import torch

from .schedules import DiscreteVPSchedule, Schedule

F64 = torch.float64


def _append_zero(s: torch.Tensor) -> torch.Tensor:
    return torch.cat([s.to(F64), s.new_zeros(1, dtype=F64)])


def _check_n(n: int) -> None:
    if int(n) < 1:
        raise ValueError(f"a grid needs at least 1 step, got {n}")


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022 eq. 5: σ_i = (σ_max^{1/ρ} + i/(n−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ."""
    _check_n(n)
    ramp = torch.linspace(0, 1, n, dtype=F64) if n > 1 else torch.zeros(1, dtype=F64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """log σ̃ uniform from σ_max to σ_min (k-diffusion's "exponential")."""
    _check_n(n)
    return _append_zero(
        torch.exp(
            torch.linspace(
                torch.log(torch.tensor(sigma_max, dtype=F64)),
                torch.log(torch.tensor(sigma_min, dtype=F64)),
                n,
                dtype=F64,
            )
        )
    )


def uniform_log_snr(schedule: Schedule, n: int, t_min: float | None = None, t_max: float | None = None) -> torch.Tensor:
    """λ uniform between λ(t_max) and λ(t_min) (DPM-Solver's "logSNR" spacing).

    In the σ̃ view λ = −2 log σ̃, so this is the exponential grid between the schedule's
    σ̃ bounds."""
    t0 = schedule.t_min if t_min is None else t_min
    t1 = schedule.t_max if t_max is None else t_max
    return exponential(n, float(schedule.sigma_ve(t0)), float(schedule.sigma_ve(t1)))


def uniform_t(schedule: Schedule, n: int, t_min: float | None = None, t_max: float | None = None) -> torch.Tensor:
    """t uniform from t_max to t_min (Song et al.'s continuous-time default)."""
    _check_n(n)
    t0 = schedule.t_min if t_min is None else t_min
    t1 = schedule.t_max if t_max is None else t_max
    return _append_zero(schedule.sigma_ve(torch.linspace(t1, t0, n, dtype=F64)))


def timesteps(schedule: DiscreteVPSchedule, n: int, spacing: str = "leading", steps_offset: int = 0) -> torch.Tensor:
    """Integer timesteps of a discrete schedule as diffusers spaces them (decreasing).

    ``leading``: k = i·⌊T/n⌋ + offset (DDIM paper); ``trailing``: k = round(T − i·T/n) − 1
    (Lin et al. 2023); ``linspace``: k = round(linspace(0, T−1, n)).
    """
    _check_n(n)
    T = schedule.num_train_timesteps
    if spacing == "leading":
        k = torch.arange(0, n, dtype=F64) * (T // n) + steps_offset
        k = k.flip(0)
    elif spacing == "trailing":
        k = torch.round(torch.arange(T, 0, -T / n, dtype=F64)) - 1
    elif spacing == "linspace":
        k = torch.round(torch.linspace(0, T - 1, n, dtype=F64)).flip(0)
    else:
        raise ValueError(f"unknown spacing {spacing!r}; use leading, trailing or linspace")
    return k


def discrete(schedule: DiscreteVPSchedule, n: int, spacing: str = "leading", steps_offset: int = 0) -> torch.Tensor:
    """σ̃ at diffusers-style integer timesteps (see :func:`timesteps`), then 0."""
    k = timesteps(schedule, n, spacing, steps_offset)
    return _append_zero(schedule.sigma_ve(schedule.timestep_to_t(k)))


def from_sigmas(sigmas) -> torch.Tensor:
    """User-supplied σ̃ values: validated (positive, strictly decreasing), 0 appended."""
    s = torch.as_tensor(sigmas, dtype=F64).flatten()
    if s.numel() and float(s[-1]) == 0.0:
        s = s[:-1]
    if s.numel() < 1 or not bool((s > 0).all()) or not bool((s[1:] < s[:-1]).all()):
        raise ValueError("user sigmas must be positive and strictly decreasing")
    return _append_zero(s)


GRIDS = ("karras", "exponential", "uniform_log_snr", "uniform_t", "leading", "trailing", "linspace")


def make_grid(
    kind: str,
    schedule: Schedule,
    n: int,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
) -> torch.Tensor:
    """Build a grid by name for ``schedule`` (σ̃ bounds default to the schedule's):
    ``karras`` (ρ-grid), ``exponential``/``uniform_log_snr`` (uniform in λ = −2 ln σ̃),
    ``uniform_t`` (uniform in the schedule's t), ``leading``/``trailing``/``linspace``
    (diffusers' integer timesteps of a table schedule). Returns ``[n + 1]`` float64."""
    lo = schedule.sigma_ve_min if sigma_min is None else sigma_min
    hi = schedule.sigma_ve_max if sigma_max is None else sigma_max
    if kind == "karras":
        return karras(n, lo, hi, rho)
    if kind == "exponential":
        return exponential(n, lo, hi)
    if kind == "uniform_log_snr":
        return exponential(n, lo, hi)
    if kind == "uniform_t":
        t_lo = schedule.t_min if sigma_min is None else float(schedule.t_from_sigma_ve(lo))
        t_hi = schedule.t_max if sigma_max is None else float(schedule.t_from_sigma_ve(hi))
        return uniform_t(schedule, n, t_lo, t_hi)
    if kind in ("leading", "trailing", "linspace"):
        if not isinstance(schedule, DiscreteVPSchedule):
            raise ValueError(f"grid {kind!r} needs a discrete schedule, got {schedule.name!r}")
        if sigma_min is not None or sigma_max is not None:
            raise ValueError(f"grid {kind!r} is fixed by the schedule's timesteps: no sigma_min/sigma_max")
        return discrete(schedule, n, kind)
    raise ValueError(f"unknown grid {kind!r}; grids: {', '.join(GRIDS)}")
