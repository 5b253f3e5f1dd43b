"""Time/noise grids: formulae, invariants, and diffusers' timestep spacings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polydiff import discretization as dz
from polydiff import schedules as S

F64 = torch.float64


@pytest.mark.parametrize(
    "sch",
    [
        S.DDPMLinear(),
        S.CosineDiscrete(),
        S.VPLinearContinuous(),
        S.VEGeometric(),
        S.EDMSchedule(),
        S.RectifiedFlow(),
        S.SubVPLinear(),
    ],
    ids=lambda s: s.name,
)
@pytest.mark.parametrize("kind", dz.GRIDS)
@pytest.mark.parametrize("n", [1, 7, 50])
def test_every_grid_is_decreasing_float64_and_ends_at_zero(sch, kind, n):
    if kind in ("leading", "trailing", "linspace") and not isinstance(sch, S.DiscreteVPSchedule):
        with pytest.raises(ValueError, match="discrete"):
            dz.make_grid(kind, sch, n)
        return
    g = dz.make_grid(kind, sch, n)
    assert g.dtype == F64 and g.shape == (n + 1,) and float(g[-1]) == 0.0
    assert bool((g[1:] < g[:-1]).all())


def test_karras_grid_formula():
    g = dz.karras(10, 0.002, 80.0, rho=7.0)
    assert math.isclose(float(g[0]), 80.0) and math.isclose(float(g[-2]), 0.002)
    step = torch.diff(g[:-1] ** (1 / 7))
    assert torch.allclose(step, step[0].expand_as(step), rtol=1e-10)


def test_log_snr_grids_are_uniform_in_lambda():
    sch = S.DDPMLinear()
    g = dz.make_grid("uniform_log_snr", sch, 12)
    lam = -2 * torch.log(g[:-1])
    assert torch.allclose(torch.diff(lam), torch.diff(lam)[:1].expand(11), rtol=1e-10)
    assert math.isclose(float(g[0]), sch.sigma_ve_max) and math.isclose(float(g[-2]), sch.sigma_ve_min)


def test_uniform_t_grid_is_uniform_in_t():
    sch = S.VPLinearContinuous()
    g = dz.make_grid("uniform_t", sch, 9)
    t = sch.t_from_sigma_ve(g[:-1])
    assert torch.allclose(t, torch.linspace(1.0, sch.t_min, 9, dtype=F64), atol=1e-9)


def test_sigma_bounds_are_honoured():
    sch = S.EDMSchedule()
    for kind in ("karras", "exponential", "uniform_log_snr", "uniform_t"):
        g = dz.make_grid(kind, sch, 5, sigma_min=0.1, sigma_max=10.0)
        assert math.isclose(float(g[0]), 10.0, rel_tol=1e-9) and math.isclose(float(g[-2]), 0.1, rel_tol=1e-9)


diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("n", [1, 7, 10, 50, 999])
def test_timestep_spacings_match_diffusers(spacing, n):
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    sched.set_timesteps(n)
    ours = dz.timesteps(S.DDPMLinear(), n, spacing)
    assert np.array_equal(ours.long().numpy(), sched.timesteps.numpy())


def test_user_sigmas_are_validated():
    g = dz.from_sigmas([3.0, 1.0, 0.5])
    assert g.tolist() == [3.0, 1.0, 0.5, 0.0]
    assert dz.from_sigmas([3.0, 1.0, 0.0]).tolist() == [3.0, 1.0, 0.0]
    for bad in ([1.0, 3.0], [1.0, -1.0], []):
        with pytest.raises(ValueError):
            dz.from_sigmas(bad)
    with pytest.raises(ValueError, match="unknown grid"):
        dz.make_grid("nope", S.EDMSchedule(), 3)
