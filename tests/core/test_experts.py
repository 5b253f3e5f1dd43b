"""Time experts (:mod:`polydiff.experts`): per-call dispatch by the network's time input, the
combined model against an explicit network switch, its checkpoint round trip and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import polydiff
from polydiff import cli
from polydiff.errors import PolydiffError
from polydiff.experts import TimeExperts, combine


class _Const(nn.Module):
    """Returns {"y": value} per sample and counts its calls."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.calls = 0
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, time, cond=None):
        self.calls += 1
        return {"y": torch.full((len(time), 2), self.value) + self.w}


def test_each_sample_gets_the_expert_of_its_time_and_a_one_time_batch_runs_one_expert():
    low, mid, high = _Const(0.0), _Const(1.0), _Const(2.0)
    net = TimeExperts([low, mid, high], [0.2, 0.6])
    out = net(None, torch.tensor([0.1, 0.2, 0.59, 0.6, 0.9]))["y"][:, 0]
    assert out.tolist() == [0.0, 1.0, 1.0, 2.0, 2.0]  # an interval holds its lower bound
    calls = (low.calls, mid.calls, high.calls)
    net(None, torch.full((4,), 0.3))
    assert (low.calls, mid.calls, high.calls) == (calls[0], calls[1] + 1, calls[2])


@pytest.mark.parametrize(
    "experts, bounds", [(2, [0.3, 0.5]), (3, [0.5, 0.3]), (2, [float("nan")])], ids=["count", "order", "nan"]
)
def test_bad_bounds_are_refused(experts, bounds):
    with pytest.raises(PolydiffError, match="bounds"):
        TimeExperts([_Const(0.0) for _ in range(experts)], bounds)


def _mixed_pair():
    torch.manual_seed(0)
    base = polydiff.create("pointcloud_labelled")
    torch.manual_seed(1)
    expert = polydiff.create("pointcloud_labelled")
    for m in (base, expert):
        m.init_ema()
    return base, expert


def test_a_combined_mixed_model_is_the_base_above_the_bound_and_the_expert_below(tmp_path):
    """Sampled on the grid 1 → 0.5 → 0 with the bound at 0.6: the call at t = 1 is the base's and
    the one at 0.5 the expert's — the same state as the base sampled with an explicit network
    switch, unlike the base alone; saved and loaded, the same again."""
    base, expert = _mixed_pair()
    model = combine(base, expert, below=0.6)
    assert isinstance(model.network, TimeExperts) and model.network.bounds == [0.6]
    assert not isinstance(base.network, TimeExperts)  # the base is not changed
    other = expert.denoiser()

    def switch(d, c):
        return lambda state, t: other(state, t, c) if float(t.flatten()[0]) < 0.6 else d(state, t)

    kw = dict(steps=2, seed=3, sampler="ancestral")
    got, _ = model.sample_raw(6, **kw)
    want, _ = base.sample_raw(6, wrap=switch, **kw)
    alone, _ = base.sample_raw(6, **kw)
    assert torch.equal(got["pos"], want["pos"]) and torch.equal(got["label"], want["label"])
    assert not torch.allclose(got["pos"], alone["pos"])

    model.save(tmp_path / "combined")
    cfg = json.loads((tmp_path / "combined" / "config.json").read_text())
    assert cfg["network"]["time_experts"] == {"bounds": [0.6]}
    loaded = polydiff.load(tmp_path / "combined")
    assert isinstance(loaded.network, TimeExperts)
    again, _ = loaded.sample_raw(6, **kw)
    assert torch.equal(again["pos"], got["pos"])


def test_a_continuous_edm_model_switches_at_a_sigma():
    """pointcloud (EDM): the bound is a σ̃, the network sees c_noise = ¼ log σ̃."""
    torch.manual_seed(0)
    base = polydiff.create("pointcloud", hidden=32, layers=1)
    torch.manual_seed(1)
    expert = polydiff.create("pointcloud", hidden=32, layers=1)
    model = combine(base, expert, below=1.0)
    data = base.modality.load_dataset(size=3, n_points=8)
    x = torch.stack([data[i] for i in range(3)]) + 0.3 * torch.randn(3, *data[0].shape)
    for sigma, ref in ((0.5, expert), (2.0, base)):
        s = torch.full((3,), sigma, dtype=torch.float64)
        got = model.denoiser()(x, s)
        assert torch.allclose(got, ref.denoiser(ema=False)(x, s), atol=1e-6)
        assert not torch.allclose(got, (base if ref is expert else expert).denoiser(ema=False)(x, s), atol=1e-3)


def test_combine_refuses_what_it_cannot_combine():
    base, expert = _mixed_pair()
    with pytest.raises(PolydiffError, match=r"time in \(0, 1\)"):
        combine(base, expert, below=1.5)
    with pytest.raises(PolydiffError, match="cannot be nested"):
        combine(combine(base, expert, below=0.5), expert, below=0.2)
    other = polydiff.create("pointcloud", hidden=32, layers=1)
    with pytest.raises(PolydiffError, match="modality"):
        combine(base, other, below=0.5)
    wide = polydiff.create("pointcloud", hidden=64, layers=1)
    with pytest.raises(PolydiffError, match="network keywords"):
        combine(other, wide, below=0.5)
    eps = polydiff.create("pointcloud", hidden=32, layers=1, parameterization="eps")
    with pytest.raises(PolydiffError, match="EDM parameterisation"):
        combine(eps, eps, below=0.5)


def test_cli_combine_experts_writes_a_loadable_checkpoint(tmp_path, capsys):
    base, expert = _mixed_pair()
    base.save(tmp_path / "base")
    expert.save(tmp_path / "expert")
    out = tmp_path / "combined"
    rc = cli.main(
        ["combine-experts", str(tmp_path / "base"), str(tmp_path / "expert"), "--below", "0.3", "--out", str(out)]
    )
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["below"] == 0.3
    loaded = polydiff.load(out)
    assert isinstance(loaded.network, TimeExperts) and loaded.network.bounds == [0.3]
    expert_weights = expert.ema.state_dict()
    for k, v in loaded.network.experts[0].state_dict().items():
        assert torch.equal(v, expert_weights[k])


def test_a_time_experts_student_trains_only_the_expert_of_its_trained_calls(tmp_path):
    """distill(init_from=a combined model): the student is the same ensemble; with only the
    last call (t = 0.2 < 0.25) in the batches the expert below the bound moves and the base
    network does not, so the first call stays the base's."""
    from polydiff.distill import DistillConfig, distill

    base, expert = _mixed_pair()
    combine(base, expert, below=0.25).save(tmp_path / "combined")
    cfg = DistillConfig(
        method="trajectory",
        steps=2,
        progress=False,
        dataset_options={"size": 32, "n_points": 8, "seed": 1},
        time_grid=[1.0, 0.2, 0.0],
        segment_steps=2,
        step_shares=[0, 1],
        train_steps=4,
        batch_size=8,
        lr=1e-3,
        init_from=str(tmp_path / "combined"),
    )
    st = distill(base, cfg).student
    assert isinstance(st.network, TimeExperts) and st.network.bounds == [0.25]
    low, high = st.network.experts
    for k, v in high.state_dict().items():
        assert torch.equal(v, base.ema.state_dict()[k])
    assert any(not torch.equal(v, expert.ema.state_dict()[k]) for k, v in low.state_dict().items())
