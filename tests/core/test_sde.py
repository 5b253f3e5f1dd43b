"""SDEs (VP, sub-VP, VE): coefficients from their marginals, forward simulation, the
PF-ODE's closed-form solution for Gaussian data, and reverse-SDE sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torchdiffeq import odeint

from polydiff import discretization as dz
from polydiff.rng import GeneratorRNG
from polydiff.samplers import SAMPLERS
from polydiff.sde import VESDE, VPSDE, LinearSDE, SubVPSDE

F64 = torch.float64
MU, S = 0.7, 0.5  # 1-D data N(μ, s²)
SDES = [VPSDE(), SubVPSDE(), VESDE(0.01, 50.0)]


def gauss_d(x, sigma):
    s2 = torch.as_tensor(sigma, dtype=F64).reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return MU + S**2 / (S**2 + s2) * (x - MU)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: s.name)
def test_closed_form_coefficients_match_the_marginals(sde):
    """f = d ln α/dt and g² = dσ²/dt − 2fσ² (finite differences of the schedule)."""
    t = torch.linspace(0.05, 0.95, 19, dtype=F64)
    assert torch.allclose(sde.f(t), LinearSDE.f(sde, t), rtol=1e-6, atol=1e-8)
    assert torch.allclose(sde.g2(t), LinearSDE.g2(sde, t), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: s.name)
def test_forward_simulation_reaches_the_marginal(sde):
    """Euler–Maruyama of dx = f x dt + g dw from N(μ, s²) at t = 0.02 to t = 0.6 has
    mean α(0.6)μ' and variance α²s'² + σ² (the schedule's marginal)."""
    g = torch.Generator().manual_seed(0)
    n, t0, t1, steps = 20000, 0.02, 0.6, 800
    a0, s0 = float(sde.schedule.alpha(t0)), float(sde.schedule.sigma(t0))
    x = a0 * (MU + S * torch.randn(n, generator=g, dtype=F64)) + s0 * torch.randn(n, generator=g, dtype=F64)
    dt = (t1 - t0) / steps
    for k in range(steps):
        t = t0 + k * dt
        x = x + float(sde.f(t)) * x * dt + math.sqrt(float(sde.g2(t)) * dt) * torch.randn(n, generator=g, dtype=F64)
    a1, s1 = float(sde.schedule.alpha(t1)), float(sde.schedule.sigma(t1))
    var = a1**2 * S**2 + s1**2
    assert abs(float(x.mean()) - a1 * MU) < 4 * math.sqrt(var / n) + 0.01 * a1
    assert abs(float(x.var()) / var - 1) < 0.04


@pytest.mark.parametrize("sde", SDES, ids=lambda s: s.name)
def test_probability_flow_ode_has_the_closed_form_solution(sde):
    """Integrating dx/dt = f x − ½g²∇ln p_t in t from 0.9 to 0.1 maps x to
    α₁·[μ + (x/α₀ − μ)·√((s² + σ̃₁²)/(s² + σ̃₀²))] for Gaussian data (σ̃ view closed form)."""
    ode = sde.probability_flow(gauss_d)
    t0, t1 = 0.9, 0.1
    x = torch.linspace(-3, 3, 7, dtype=F64).reshape(-1, 1) * float(sde.schedule.sigma(t0))
    out = odeint(ode, x, torch.tensor([t0, t1], dtype=F64), rtol=1e-9, atol=1e-9)[-1]
    a0, a1 = float(sde.schedule.alpha(t0)), float(sde.schedule.alpha(t1))
    v0, v1 = float(sde.schedule.sigma_ve(t0)), float(sde.schedule.sigma_ve(t1))
    exact = a1 * (MU + (x / a0 - MU) * math.sqrt((S**2 + v1**2) / (S**2 + v0**2)))
    assert torch.allclose(out, exact, rtol=1e-6, atol=1e-6)


def test_score_and_reverse_drift_of_gaussian_data():
    sde = VPSDE()
    t = 0.3
    a, s = float(sde.schedule.alpha(t)), float(sde.schedule.sigma(t))
    x = torch.linspace(-2, 2, 5, dtype=F64).reshape(-1, 1)
    score = -(x - a * MU) / (a * a * S * S + s * s)
    assert torch.allclose(sde.score(gauss_d, x, t), score, rtol=1e-9)
    rev = sde.reverse(gauss_d)
    assert torch.allclose(rev.drift(x, t), float(sde.f(t)) * x - float(sde.g2(t)) * score, rtol=1e-9)


@pytest.mark.parametrize("sde", [None] + SDES, ids=lambda s: "sigma-view" if s is None else s.name)
@pytest.mark.parametrize("name", ["euler_maruyama", "pc_langevin"])
def test_reverse_sde_samplers_draw_the_data_distribution(name, sde):
    """20k 1-D samples after 400 steps: mean and std of N(μ, s²) within MC + O(h) error."""
    n = 20000
    lo = 0.002 if sde is None else max(sde.schedule.sigma_ve_min, 2e-3)
    hi = 80.0 if sde is None else sde.schedule.sigma_ve_max
    sig = dz.karras(400, lo, hi)
    x = torch.randn(n, 1, generator=torch.Generator().manual_seed(1), dtype=F64) * float(sig[0])
    out = SAMPLERS[name].fn(gauss_d, x, sig, rng=GeneratorRNG(torch.Generator().manual_seed(2)), sde=sde)
    assert abs(float(out.mean()) - MU) < 0.02
    assert abs(float(out.std()) / S - 1) < 0.03
