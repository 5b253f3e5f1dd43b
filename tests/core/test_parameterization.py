"""Parameterisations convert exactly to the denoiser D, on every schedule."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gmm import ExactNet, circle_mixture  # noqa: E402

from polydiff import schedules as S  # noqa: E402
from polydiff.parameterization import Denoiser, _derivatives, edm_coefficients, from_x0, to_x0  # noqa: E402

F64 = torch.float64
SCHEDULES = [
    S.DDPMLinear(),
    S.CosineDiscrete(),
    S.VPLinearContinuous(),
    S.SubVPLinear(),
    S.VEGeometric(),
    S.EDMSchedule(),
    S.RectifiedFlow(),
]


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "score", "flow"])
@pytest.mark.parametrize("sch", SCHEDULES, ids=lambda s: s.name)
def test_conversions_invert_each_other(kind, sch):
    g = torch.Generator().manual_seed(0)
    t = sch.t_min + (sch.t_max - sch.t_min) * torch.rand(16, generator=g, dtype=F64).clamp(0.05, 0.95)
    a, s = sch.alpha(t), sch.sigma(t)
    da, ds = _derivatives(sch, t)
    x0 = torch.randn(16, 3, generator=g, dtype=F64)
    x_t = a[:, None] * x0 + s[:, None] * torch.randn(16, 3, generator=g, dtype=F64)
    out = from_x0(kind, x0, x_t, a, s, da, ds)
    assert torch.allclose(to_x0(kind, out, x_t, a, s, da, ds), x0, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "score", "flow"])
@pytest.mark.parametrize("sch", SCHEDULES, ids=lambda s: s.name)
def test_denoiser_recovers_the_exact_posterior_mean(kind, sch):
    """A network that outputs the exact target of ``kind`` yields D = E[x₀|x̃] exactly."""
    gmm = circle_mixture()
    den = Denoiser(ExactNet(gmm, sch, kind), sch, kind)
    sv = sch.sigma_ve(torch.tensor([0.1, 0.5, 0.9], dtype=F64) * (sch.t_max - sch.t_min) + sch.t_min)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=F64) * 3
    assert torch.allclose(den(x, sv), gmm.denoise(x, sv), rtol=1e-6, atol=1e-6)


def test_edm_preconditioning_matches_karras_table_1():
    s = torch.tensor([0.01, 0.5, 80.0], dtype=F64)
    c_skip, c_out, c_in, c_noise = edm_coefficients(s, 0.5)
    assert torch.allclose(c_skip, 0.25 / (s**2 + 0.25))
    assert torch.allclose(c_out, s * 0.5 / torch.sqrt(s**2 + 0.25))
    assert torch.allclose(c_in, 1 / torch.sqrt(s**2 + 0.25))
    assert torch.allclose(c_noise, 0.25 * torch.log(s))
    # an F-network with the exact target F = (D − c_skip x̃)/c_out gives D back
    gmm = circle_mixture()

    class FNet(torch.nn.Module):
        def forward(self, x_in, time, cond=None):
            sig = torch.exp(4 * time.double())
            cs, co, ci, _ = edm_coefficients(sig, 0.5)
            x = x_in.double() / ci[:, None]
            return (gmm.denoise(x, sig) - cs[:, None] * x) / co[:, None]

    den = Denoiser(FNet(), S.EDMSchedule(), "edm", 0.5)
    x = torch.randn(3, 2, dtype=F64) * 4
    assert torch.allclose(den(x, s), gmm.denoise(x, s), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kind,sch",
    [
        ("eps", S.DDPMLinear()),
        ("v", S.CosineDiscrete()),
        ("x0", S.EDMSchedule()),
        ("flow", S.RectifiedFlow()),
        ("v", S.VEGeometric()),
        ("flow", S.DDPMLinear()),
        ("edm", S.EDMSchedule()),
    ],
    ids=str,
)
def test_default_weight_equals_mse_on_the_networks_own_target(kind, sch):
    """λ(σ̃)·‖x̂₀ − x₀‖² = ‖F̂ − F‖² for a perturbed prediction (F affine in x₀ at fixed x_t)."""
    g = torch.Generator().manual_seed(3)
    t = sch.t_min + (sch.t_max - sch.t_min) * torch.tensor([0.2, 0.5, 0.8], dtype=F64)
    a, s = sch.alpha(t), sch.sigma(t)
    da, ds = _derivatives(sch, t)
    sv = s / a
    x0 = torch.randn(3, 4, generator=g, dtype=F64)
    x0_hat = x0 + 0.1 * torch.randn(3, 4, generator=g, dtype=F64)
    x_t = a[:, None] * x0 + s[:, None] * torch.randn(3, 4, generator=g, dtype=F64)
    if kind == "edm":
        cs, co, _, _ = edm_coefficients(sv, 0.5)
        xs = x_t / a[:, None]
        target = lambda z: (z - cs[:, None] * xs) / co[:, None]  # noqa: E731
    else:
        target = lambda z: from_x0(kind, z, x_t, a, s, da, ds)  # noqa: E731
    lhs = Denoiser(torch.nn.Identity(), sch, kind, 0.5).default_x0_weight(sv) * ((x0_hat - x0) ** 2).sum(1)
    rhs = ((target(x0_hat) - target(x0)) ** 2).sum(1)
    assert torch.allclose(lhs, rhs, rtol=1e-5)


def test_half_precision_network_gets_half_inputs_and_gives_state_dtype():
    seen = {}

    class Half(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2).to(torch.bfloat16)

        def forward(self, x_in, time, cond=None):
            seen["dtype"] = x_in.dtype
            return self.lin(x_in)

    den = Denoiser(Half(), S.EDMSchedule(), "edm")
    out = den(torch.randn(4, 2), 1.0)
    assert seen["dtype"] == torch.bfloat16 and out.dtype == torch.float32


def test_unknown_kind_is_refused():
    from polydiff.errors import RegistryError

    with pytest.raises(RegistryError, match="unknown parameterization 'nope'.*installed.*edm"):
        Denoiser(torch.nn.Identity(), S.EDMSchedule(), "nope")
