"""MixedDenoiser: what the network sees and how its outputs become x̂₀ and logits, checked
against EDM's preconditioning formulas written out by hand (Karras et al. 2022, Table 1)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polydiff.categorical import MaskedProcess
from polydiff.mixed import CategoricalPart, ContinuousPart
from polydiff.mixed_denoiser import MixedDenoiser
from polydiff.schedules import VEGeometric, VPLinearContinuous

F64 = torch.float64


class ToyNet(nn.Module):
    """F = 2·x_in + time (per sample) for ``pos``; logits = 3·one_hot(label) − time for ``label``;
    records what it was called with."""

    def __init__(self, k: int = 3):
        super().__init__()
        self.k = k
        self.w = nn.Parameter(torch.tensor(2.0))
        self.seen: dict = {}

    def forward(self, state, time, cond=None):
        self.seen = {"state": state, "time": time, "cond": cond}
        pos, lab = state["pos"], state["label"]
        f = self.w * pos + time.reshape(-1, 1, 1)
        logits = 3.0 * nn.functional.one_hot(lab, self.k + 1)[..., : self.k].float() - time.reshape(-1, 1, 1)
        return {"pos": f, "label": logits}


def _parts(sigma_data=0.7):
    return {
        "pos": ContinuousPart(VPLinearContinuous(), sigma_data=sigma_data),
        "label": CategoricalPart(MaskedProcess(3)),
    }


def _state(B=4, N=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"pos": torch.randn(B, N, 2, generator=g), "label": torch.randint(0, 4, (B, N), generator=g)}


def test_outputs_follow_the_edm_formulas_per_sample():
    parts, net = _parts(0.7), ToyNet()
    den = MixedDenoiser(net, parts)
    state = _state()
    t = torch.tensor([0.05, 0.3, 0.6, 1.0], dtype=F64)
    cond = {"mask": torch.ones(4, 5)}
    out = den(state, t, cond)
    sched, sd = VPLinearContinuous(), 0.7
    for b in range(4):
        tb = float(t[b])
        a = math.exp(-0.25 * tb**2 * (20.0 - 0.1) - 0.5 * tb * 0.1)
        s = math.sqrt(1 - a * a) / a  # σ̃ = σ/α of the VP-linear schedule
        assert s == pytest.approx(float(sched.sigma_ve(tb)), rel=1e-12)
        c_skip, c_out, c_in = sd**2 / (s**2 + sd**2), s * sd / math.sqrt(s**2 + sd**2), 1 / math.sqrt(s**2 + sd**2)
        x = state["pos"][b].to(F64)
        # the network saw c_in·x̃ (float32), the labels unchanged, and time = t
        assert torch.allclose(net.seen["state"]["pos"][b].to(F64), c_in * x, rtol=1e-6, atol=1e-7)
        f = 2.0 * (c_in * x).float().to(F64) + float(torch.tensor(tb, dtype=torch.float32))
        assert torch.allclose(out["pos"][b].to(F64), c_skip * x + c_out * f, rtol=1e-5, atol=1e-6)
    assert net.seen["state"]["label"] is state["label"]
    assert net.seen["time"].dtype == torch.float32 and torch.equal(net.seen["time"], t.float())
    assert net.seen["cond"] is cond
    # categorical logits pass through untouched
    want = 3.0 * nn.functional.one_hot(state["label"], 4)[..., :3].float() - t.float().reshape(-1, 1, 1)
    assert torch.equal(out["label"], want)
    assert out["pos"].dtype == state["pos"].dtype


def test_at_t_zero_the_continuous_estimate_is_the_state_itself():
    """σ̃(0) = 0: c_skip = 1, c_out = 0, so x̂₀ = x̃ whatever the network says."""
    den = MixedDenoiser(ToyNet(), _parts())
    state = _state(seed=1)
    out = den(state, 0.0)
    assert torch.equal(out["pos"], state["pos"])


def test_each_continuous_part_uses_its_own_schedule_and_sigma_data():
    """Two continuous parts at one shared t: each sees c_in of its own σ̃(t) and σ_data."""

    class Two(nn.Module):
        def forward(self, state, time, cond=None):
            self.seen = state
            return {k: torch.zeros_like(v) for k, v in state.items()}

    parts = {
        "a": ContinuousPart(VPLinearContinuous(), sigma_data=0.5),
        "b": ContinuousPart(VEGeometric(0.01, 50.0), sigma_data=2.0),
    }
    net = Two()
    x = {"a": torch.ones(1, 3), "b": torch.ones(1, 3)}
    out = MixedDenoiser(net, parts)(x, 0.5)
    for name, sd in (("a", 0.5), ("b", 2.0)):
        s = float(parts[name].schedule.sigma_ve(0.5))
        assert net.seen[name][0, 0].item() == pytest.approx(1 / math.sqrt(s * s + sd * sd), rel=1e-6)
        # F = 0: x̂₀ = c_skip·x̃
        assert out[name][0, 0].item() == pytest.approx(sd * sd / (s * s + sd * sd), rel=1e-6)


def test_a_network_that_leaves_out_a_part_is_a_clear_error():
    class Half(nn.Module):
        def forward(self, state, time, cond=None):
            return {"pos": state["pos"]}

    with pytest.raises(TypeError, match="for every part"):
        MixedDenoiser(Half(), _parts())(_state(), 0.5)
    with pytest.raises(KeyError, match="no part"):
        MixedDenoiser(ToyNet(), _parts())({"pos": torch.zeros(1, 2, 2)}, 0.5)
