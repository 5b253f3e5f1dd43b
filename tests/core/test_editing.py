"""Editing: inpainting keeps known entries exactly (replacement and RePaint), SDEdit's
strength, DDIM inversion round trip, slerp."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gmm import ExactNet, circle_mixture  # noqa: E402

from polydiff import discretization as dz  # noqa: E402
from polydiff import editing  # noqa: E402
from polydiff.modality import Modality  # noqa: E402
from polydiff.model import DiffusionModel  # noqa: E402
from polydiff.schedules import EDMSchedule  # noqa: E402

F64 = torch.float64


class Points(Modality):
    name = "points2d"

    def sampling_request(self, n, cond, rng):
        return (2,), cond


@pytest.fixture(scope="module")
def model():
    gmm = circle_mixture()
    sch = EDMSchedule()
    return DiffusionModel(Points(), ExactNet(gmm, sch, "x0").double(), sch, parameterization="x0")


@pytest.mark.parametrize("sampler,resample", [("dpmpp_2m", 1), ("heun", 1), ("unipc", 1), ("ddpm", 4), ("euler", 3)])
def test_inpainting_keeps_known_entries_exactly(model, sampler, resample):
    gmm = circle_mixture()
    known = gmm.sample(64, torch.Generator().manual_seed(0)).float()
    mask = torch.zeros(64, 2, dtype=torch.bool)
    mask[:, 0] = True
    out = editing.inpaint(model, known, mask, sampler=sampler, resample=resample, steps=12)
    assert torch.equal(out[:, 0], known[:, 0])
    # the free coordinate lands near a component consistent with the known one
    d2 = ((out.double()[:, None, :] - gmm.mu[None]) ** 2).sum(-1).min(1).values
    assert float(d2.median()) < 1.0


def test_repaint_resampling_is_closer_to_the_conditional_than_replacement(model):
    """Given x = 0 on the circle mixture, p(y | x) has modes at y = ±4; RePaint's resampling
    harmonises better than replacement (Lugmayr et al. 2022): lower mean distance to ±4."""
    known = torch.zeros(200, 2)
    mask = torch.zeros(200, 2, dtype=torch.bool)
    mask[:, 0] = True
    plain = editing.inpaint(model, known, mask, sampler="ddpm", resample=1, steps=20, seed=1)
    rep = editing.inpaint(model, known, mask, sampler="ddpm", resample=4, steps=20, seed=1)
    err = lambda o: float((o[:, 1].abs() - 4.0).abs().mean())  # noqa: E731
    assert err(rep) < err(plain)
    assert err(rep) < 0.6


def test_sdedit_strength(model):
    gmm = circle_mixture()
    x = gmm.sample(32, torch.Generator().manual_seed(2)).float()
    assert torch.equal(editing.sdedit(model, x, 0.0), x)
    d = [float((editing.sdedit(model, x, s, steps=30, seed=3) - x).norm(dim=1).mean()) for s in (0.2, 0.5, 1.0)]
    assert d[0] < d[1] < d[2]
    assert torch.equal(editing.sdedit(model, x, 0.5, seed=3), editing.sdedit(model, x, 0.5, seed=3))
    with pytest.raises(ValueError):
        editing.sdedit(model, x, 1.5)


def test_ddim_inversion_round_trip_converges():
    """Invert then sample with Euler (= DDIM η=0) on the same grid: error falls ~1st order."""
    mu, s = 0.3, 0.6

    def den(x, sigma):
        return mu + s * s / (s * s + float(sigma) ** 2) * (x - mu)

    x = torch.linspace(-1, 1, 9, dtype=F64).reshape(-1, 1)
    errs = []
    for n in (20, 80):
        sig = dz.karras(n, 0.002, 80.0)
        z = editing.ddim_invert(den, x, sig)
        from polydiff.samplers import SAMPLERS

        back = SAMPLERS["euler"].fn(den, z, sig)
        errs.append(float((back - den(x, 0.002)).abs().max()))
    assert errs[1] < errs[0] / 3  # 4× the steps, ≈ 4× smaller error (1st order)


def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 64, generator=g), torch.randn(3, 64, generator=g)
    path = editing.slerp(a, b, torch.linspace(0, 1, 5))
    assert path.shape == (5, 3, 64)
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    mid = editing.slerp(a, b, 0.5)
    # equal-norm, near-orthogonal inputs keep their norm (linear interpolation shrinks by ~1/√2)
    ratio = mid.norm(dim=1) / (0.5 * (a.norm(dim=1) + b.norm(dim=1)))
    lin = (0.5 * (a + b)).norm(dim=1) / (0.5 * (a.norm(dim=1) + b.norm(dim=1)))
    assert bool((ratio > 0.9).all()) and bool((lin < 0.85).all())
    assert math.isclose(float(editing.slerp(a, a, 0.3).sub(a).abs().max()), 0.0, abs_tol=1e-5)
