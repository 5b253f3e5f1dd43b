"""Every sampler, at its documented NFE (``SamplerSpec.documented_nfe``), draws from the
exact-score mixture: SW2 to a fresh exact sample set within 2× the Monte-Carlo floor.

n = 10,000 points; floor = mean SW2 over 5 pairs of independent exact sample sets of the
same size (REFERENCES.md: SW2 of well-separated mixtures is noisy below 10k). The grid is
Karras (ρ = 7) over the DDPM-linear σ̃ range [0.01, 157] — the same σ̃_max as t = 999.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gmm import circle_mixture, mc_floor, mixture_16d, sliced_w2  # noqa: E402

from polydiff import discretization as dz  # noqa: E402
from polydiff.rng import GeneratorRNG  # noqa: E402
from polydiff.samplers import SAMPLERS  # noqa: E402
from polydiff.schedules import DDPMLinear  # noqa: E402

N = 10_000
FAST = ["heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ode_rk45"]


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on a shared 2-core machine


_CACHE: dict = {}


def problem(dim: int):
    if dim not in _CACHE:
        gmm = circle_mixture() if dim == 2 else mixture_16d()
        _CACHE[dim] = (gmm, mc_floor(gmm, N, pairs=5), gmm.sample(N, torch.Generator().manual_seed(4242)))
    return _CACHE[dim]


def run(name: str, dim: int) -> float:
    gmm, floor, fresh = problem(dim)
    spec = SAMPLERS[name]
    sig = dz.make_grid("karras", DDPMLinear(), spec.steps_for_nfe(spec.documented_nfe))
    z = torch.randn(N, dim, generator=torch.Generator().manual_seed(17), dtype=torch.float64)
    # batch-level noise here (speed); per-sample determinism is tested in test_samplers.py
    out = spec.fn(gmm, z * float(sig[0]), sig, rng=GeneratorRNG(torch.Generator().manual_seed(23)), **spec.defaults)
    return sliced_w2(out, fresh) / floor


def test_floor_is_a_meaningful_yardstick():
    """The floor is positive and a deliberately wrong sampler (too few steps) is far above it."""
    gmm, floor, fresh = problem(2)
    assert floor > 0
    sig = dz.make_grid("karras", DDPMLinear(), 3)
    z = torch.randn(N, 2, generator=torch.Generator().manual_seed(17), dtype=torch.float64)
    bad = SAMPLERS["euler"].fn(gmm, z * float(sig[0]), sig)
    assert sliced_w2(bad, fresh) / floor > 4


@pytest.mark.parametrize("name", FAST)
def test_fast_samplers_reach_the_floor_in_2d(name):
    assert run(name, 2) <= 2.0


@pytest.mark.slow
@pytest.mark.parametrize("dim", [2, 16])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_reaches_the_floor(name, dim):
    assert run(name, dim) <= 2.0
