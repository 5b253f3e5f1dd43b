"""Schedules against closed forms and diffusers' tables (same β definitions)."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff import schedules as S

F64 = torch.float64
T = torch.linspace(0.02, 0.98, 25, dtype=F64)


def all_schedules():
    return [
        S.DDPMLinear(),
        S.DDPMLinear(zero_terminal_snr=True),
        S.ScaledLinear(),
        S.CosineDiscrete(),
        S.SigmoidDiscrete(),
        S.VPLinearContinuous(),
        S.SubVPLinear(),
        S.VEGeometric(),
        S.EDMSchedule(),
        S.RectifiedFlow(),
    ]


@pytest.mark.parametrize(
    "sch", all_schedules(), ids=lambda s: s.config()["name"] + str(s.config().get("zero_terminal_snr", ""))
)
def test_log_snr_is_decreasing_and_inverts(sch):
    t = sch.t_min + (sch.t_max - sch.t_min) * torch.linspace(0.01, 0.99, 50, dtype=F64)
    lam = sch.log_snr(t)
    assert bool((lam[1:] < lam[:-1]).all())
    assert torch.allclose(sch.t_from_log_snr(lam), t, rtol=1e-7, atol=1e-9)
    sv = sch.sigma_ve(t)
    assert torch.allclose(sch.t_from_sigma_ve(sv), t, rtol=1e-7, atol=1e-9)
    assert torch.allclose(sv, torch.exp(-0.5 * lam), rtol=1e-10)


diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize(
    "ours,beta_schedule",
    [
        (S.DDPMLinear(), "linear"),
        (S.ScaledLinear(), "scaled_linear"),
        (S.CosineDiscrete(), "squaredcos_cap_v2"),
        (S.SigmoidDiscrete(), "sigmoid"),
    ],
)
def test_discrete_tables_match_diffusers(ours, beta_schedule):
    kw = {} if beta_schedule in ("squaredcos_cap_v2",) else {}
    if beta_schedule == "scaled_linear":
        kw = dict(beta_start=0.00085, beta_end=0.012)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule, **kw).alphas_cumprod.double()
    assert torch.allclose(ours.alphas_cumprod, ref, rtol=2e-5, atol=1e-9)
    k = torch.arange(0, 1000, 37, dtype=F64)  # table points are hit exactly by the interpolation
    assert torch.allclose(ours.alpha(ours.timestep_to_t(k)) ** 2, ours.alphas_cumprod[k.long()], rtol=1e-10)


def test_zero_terminal_snr_matches_lin_et_al():
    """Lin et al. 2023 Alg. 1: √ᾱ shifted/scaled so the first is unchanged, the last 0
    (stored as 2⁻²⁴ to keep σ̃ finite, as diffusers' solvers do)."""
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float32)
    ref = torch.cumprod(1 - rescale_zero_terminal_snr(betas), 0).double()
    ours = S.DDPMLinear(zero_terminal_snr=True).alphas_cumprod
    assert torch.allclose(ours[:-1], ref[:-1], rtol=1e-4, atol=1e-7)
    assert 0 < float(ours[-1]) <= 2.0**-24 and float(ours[-1]) < float(ours[-2])
    assert math.isclose(float(ours[0]), float(S.DDPMLinear().alphas_cumprod[0]), rel_tol=1e-12)


def test_cosine_follows_its_closed_form_until_clipping():
    """ᾱ_k = f((k+1)/T)/f(0), f(u) = cos²((u+s)/(1+s)·π/2) while β < 0.999 (Nichol & Dhariwal)."""
    sch = S.CosineDiscrete()
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for k in (0, 100, 500, 900, 990):
        assert math.isclose(float(sch.alphas_cumprod[k]), f((k + 1) / 1000) / f(0), rel_tol=1e-9)
    betas = 1 - sch.alphas_cumprod[1:] / sch.alphas_cumprod[:-1]
    assert float(betas.max()) <= 0.999 + 1e-12


def test_continuous_vp_is_the_limit_of_ddpm_linear():
    """log ᾱ_k of DDPM-linear ≈ log α(t)² of the VP SDE (β_min = 0.1, β_max = 20) at t = (k+1)/T."""
    disc, cont = S.DDPMLinear(), S.VPLinearContinuous()
    k = torch.arange(0, 1000, dtype=F64)
    diff = torch.log(disc.alphas_cumprod) - 2 * torch.log(cont.alpha((k + 1) / 1000))
    # gaps: log(1 − β) = −β − β²/2 (Σβ²/2 ≈ 0.07 at k = 999, < 1 % of |log ᾱ|) and the
    # Riemann-sum offset of ∫β, ≈ 1e-5 per step
    assert bool((diff.abs() <= 0.01 * torch.log(disc.alphas_cumprod).abs() + 1.2e-5 * (k + 1)).all())
    assert torch.allclose(cont.sigma(T) ** 2 + cont.alpha(T) ** 2, torch.ones_like(T))


def test_closed_forms_of_continuous_schedules():
    ve = S.VEGeometric(0.01, 50.0)
    assert torch.allclose(ve.sigma(torch.tensor([0.0, 1.0], dtype=F64)), torch.tensor([0.01, 50.0], dtype=F64))
    edm = S.EDMSchedule()
    assert torch.allclose(edm.sigma_ve(T * 10), T * 10)
    rf = S.RectifiedFlow()
    assert torch.allclose(rf.sigma_ve(T), T / (1 - T))
    sub = S.SubVPLinear()
    assert torch.allclose(sub.sigma(T), 1 - sub.alpha(T) ** 2)
    assert bool((sub.sigma(T) ** 2 <= 1 - sub.alpha(T) ** 2 + 1e-15).all())


def test_tables_must_be_decreasing():
    with pytest.raises(ValueError):
        S.DiscreteVPSchedule(torch.tensor([0.5, 0.9]))
