"""Losses: weights against their definitions, the exact denoiser's expected loss, flow-
matching equivalence, masks and spaces."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff import losses
from polydiff import schedules as S
from polydiff.parameterization import Denoiser
from polydiff.rng import GeneratorRNG
from polydiff.spaces import EuclideanSpace, MaskedSpace, ZeroCoMSpace

F64 = torch.float64


def test_weightings_follow_their_definitions():
    den = Denoiser(torch.nn.Identity(), S.EDMSchedule(), "edm", 0.5)
    s = torch.tensor([0.1, 0.5, 2.0], dtype=F64)
    snr = 1 / s**2
    assert torch.allclose(losses.x0_weight("snr", s, den), snr)
    assert torch.allclose(
        losses.x0_weight("min_snr", s, den, gamma=5.0), torch.minimum(snr, torch.tensor(5.0, dtype=F64))
    )
    assert torch.allclose(losses.x0_weight("edm", s, den), (s**2 + 0.25) / (s * 0.5) ** 2)
    assert torch.allclose(losses.x0_weight("uniform", s, den), torch.ones(3, dtype=F64))
    assert torch.allclose(losses.x0_weight("flow", s, den), (1 + s) ** 2 / s**2)
    with pytest.raises(ValueError):
        losses.x0_weight("nope", s, den)


def test_lognormal_sigma_sampling_has_edm_moments():
    den = Denoiser(torch.nn.Identity(), S.EDMSchedule(), "edm")
    ls = torch.log(losses.sample_sigmas("lognormal", 50000, den, torch.Generator().manual_seed(0)))
    assert abs(float(ls.mean()) + 1.2) < 0.03 and abs(float(ls.std()) - 1.2) < 0.03


class ExactGaussianX0(torch.nn.Module):
    """x₀-prediction of data N(0, s²I) on the EDM schedule: D = s²/(s² + σ̃²)·x̃."""

    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x_t, time, cond=None):
        sig = torch.exp(4 * time.double()).reshape(-1, *([1] * (x_t.ndim - 1)))
        return self.s**2 / (self.s**2 + sig**2) * x_t


def test_exact_denoiser_reaches_the_posterior_variance():
    """E‖D − x₀‖²/d = s²σ̃²/(s² + σ̃²) for Gaussian data (the irreducible loss)."""
    s, sig, n = 0.7, 0.9, 40000
    den = Denoiser(ExactGaussianX0(s), S.EDMSchedule(), "x0")
    g = torch.Generator().manual_seed(1)
    x0 = s * torch.randn(n, 3, generator=g, dtype=F64)
    per = losses.diffusion_loss(
        den,
        x0,
        None,
        EuclideanSpace(),
        GeneratorRNG(g),
        g,
        weighting="uniform",
        sigmas=torch.full((n,), sig, dtype=F64),
    )
    exact = s * s * sig * sig / (s * s + sig * sig)
    se = float(per.std()) / math.sqrt(n)
    assert abs(float(per.mean()) - exact) < 4 * se


def test_flow_matching_equals_diffusion_loss_with_flow_parameterisation():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    vel = lambda x, t, c: net(torch.cat([x, t.double()[:, None]], 1))  # noqa: E731
    sch = S.RectifiedFlow()
    den = Denoiser(lambda x, t, c: vel(x, t, c), sch, "flow")
    x0 = torch.randn(64, 2, dtype=F64)
    a = losses.flow_matching_loss(
        vel,
        x0,
        None,
        EuclideanSpace(),
        GeneratorRNG(torch.Generator().manual_seed(5)),
        torch.Generator().manual_seed(6),
        t_min=sch.t_min,
        t_max=sch.t_max,
    )
    b = losses.diffusion_loss(
        den,
        x0,
        None,
        EuclideanSpace(),
        GeneratorRNG(torch.Generator().manual_seed(5)),
        torch.Generator().manual_seed(6),
        sigma_sampling="uniform_t",
    )
    assert torch.allclose(a.double(), b.double(), rtol=1e-4)


def test_padding_does_not_change_the_loss_and_noise_respects_the_space():
    mask = torch.ones(4, 5)
    mask[:, 3:] = 0
    seen = {}

    def net(x_t, time, cond=None):
        seen["x"] = x_t
        return torch.zeros_like(x_t)

    den = Denoiser(net, S.EDMSchedule(), "x0")
    x0 = torch.randn(4, 5, 3, dtype=F64)
    x0 = ZeroCoMSpace(mask).project(x0)
    sp = ZeroCoMSpace(mask)
    sig = torch.full((4,), 1.0, dtype=F64)
    l1 = losses.diffusion_loss(
        den, x0, None, sp, GeneratorRNG(torch.Generator().manual_seed(0)), None, sigmas=sig, weighting="uniform"
    )
    assert sp.center_of_mass(seen["x"]).abs().max() < 1e-12 and (seen["x"][:, 3:] == 0).all()
    x0_junk = x0.clone()
    x0_junk[:, 3:] = 100.0
    l2 = losses.diffusion_loss(
        den,
        x0_junk,
        None,
        MaskedSpace(mask),
        GeneratorRNG(torch.Generator().manual_seed(0)),
        None,
        sigmas=sig,
        weighting="uniform",
    )
    # only valid entries are averaged: the loss of the zero prediction is mean(x₀²) over them
    assert torch.allclose(l1, (x0[:, :3] ** 2).flatten(1).mean(1).float())
    assert torch.allclose(l2, l1)


def test_auxiliary_term_is_added_per_sample_with_the_loss_weight():
    def net(x_t, time, cond=None):
        return torch.zeros_like(x_t)

    den = Denoiser(net, S.EDMSchedule(), "x0")
    x0 = torch.randn(3, 4, dtype=F64)
    sig = torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    seen = {}

    def aux(x0_hat, x0_, sigmas, cond, weight):
        seen.update(x0_hat=x0_hat, sigmas=sigmas, weight=weight, cond=cond)
        return torch.tensor([1.0, 2.0, 3.0])

    kw = dict(sigmas=sig, weighting="edm")
    base = losses.diffusion_loss(
        den, x0, {"k": 1}, EuclideanSpace(), GeneratorRNG(torch.Generator().manual_seed(0)), None, **kw
    )
    with_aux = losses.diffusion_loss(
        den, x0, {"k": 1}, EuclideanSpace(), GeneratorRNG(torch.Generator().manual_seed(0)), None, auxiliary=aux, **kw
    )
    assert torch.allclose(with_aux - base, torch.tensor([1.0, 2.0, 3.0]))
    assert seen["cond"] == {"k": 1} and torch.equal(seen["sigmas"], sig)
    # the weight handed over is λ(σ̃) of the chosen weighting
    assert torch.allclose(seen["weight"], ((sig**2 + 0.25) / (sig * 0.5) ** 2).float())
    none = losses.diffusion_loss(
        den,
        x0,
        None,
        EuclideanSpace(),
        GeneratorRNG(torch.Generator().manual_seed(0)),
        None,
        auxiliary=lambda *a: None,
        **kw,
    )
    assert torch.equal(none, base)
