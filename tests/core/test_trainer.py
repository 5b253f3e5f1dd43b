"""The trainer: accumulation = big batch, LR schedule, EMA recursion, NaN skipping, OOM
reporting, JSONL log, AMP (bf16 on CUDA)."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import trainer_worker as tw  # noqa: E402

from polydiff.plugin_manager import get_plugins, reset_plugins  # noqa: E402
from polydiff.training import (
    NonFiniteLossError,
    NonFiniteLossWarning,
    TrainConfig,  # noqa: E402
    TrainingOOMError,
    lr_factor,
    train,
)
from polydiff.training.data_order import GlobalBatchOrder  # noqa: E402
from polydiff.training.ema import ema_decay_at, ema_update  # noqa: E402


@pytest.fixture
def tiny(monkeypatch):
    """Only the core plugin plus the throwaway tiny modality (independent of modality plugins)."""
    monkeypatch.setenv("POLYDIFF_PLUGINS", "core")
    reset_plugins()
    get_plugins().register(tw.TinyPlugin(), name="tiny_train_test_plugin")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: one thread is faster and immune to a busy machine
    yield
    torch.set_num_threads(threads)
    get_plugins().unregister("tiny_train_test_plugin")
    reset_plugins()


def cfg(**kw) -> TrainConfig:
    base = dict(steps=12, batch_size=8, lr=1e-2, seed=3, log_every=4, device="cpu", progress=False, ema_decay=0.9)
    base.update(kw)
    return TrainConfig(**base)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.network.state_dict().items()}


def max_diff(a, b) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_gradient_accumulation_equals_the_full_batch(tiny):
    data = tw.make_dataset()
    full = tw.make_model(0)
    train(full, data, cfg())
    acc = tw.make_model(0)
    train(acc, data, cfg(grad_accum=4))
    init = weights(tw.make_model(0))
    moved = max_diff(weights(full), init)
    assert moved > 1e-2  # the run did train
    assert max_diff(weights(full), weights(acc)) < 1e-5
    # control: a different global batch gives a clearly different result
    half = tw.make_model(0)
    train(half, data, cfg(batch_size=4))
    assert max_diff(weights(full), weights(half)) > 1e-3


def test_batch_must_split_evenly(tiny):
    with pytest.raises(ValueError, match="divisible"):
        train(tw.make_model(0), tw.make_dataset(), cfg(batch_size=6, grad_accum=4))


def test_lr_warmup_and_cosine_closed_form():
    c = TrainConfig(steps=110, warmup_steps=10, lr_schedule="cosine")
    assert [lr_factor(s, c) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    for s in (10, 35, 60, 85, 109):
        assert lr_factor(s, c) == pytest.approx(0.5 * (1 + math.cos(math.pi * (s - 10) / 100)))
    assert lr_factor(60, c) == pytest.approx(0.5)


def test_lr_schedule_is_applied(tiny, tmp_path):
    train(
        tw.make_model(0),
        tw.make_dataset(),
        cfg(steps=8, log_every=1, warmup_steps=4, lr=0.02, lr_schedule="cosine", out_dir=str(tmp_path)),
    )
    rows = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if "lr" in r]
    c = cfg(steps=8, warmup_steps=4, lr=0.02, lr_schedule="cosine")
    assert lrs == pytest.approx([0.02 * lr_factor(s, c) for s in range(8)])
    assert all(math.isfinite(r["loss"]) and r["world_size"] == 1 for r in rows if "loss" in r)


def test_time_budget_cosine_and_stop(tiny, tmp_path):
    c = TrainConfig(steps=110, warmup_steps=10, lr_schedule="cosine", max_seconds=10.0)
    # the schedule follows whichever of steps and wall time is further along
    assert lr_factor(35, c, time_fraction=0.1) == pytest.approx(lr_factor(35, c))
    assert lr_factor(35, c, time_fraction=0.5) == pytest.approx(0.5)
    assert lr_factor(35, c, time_fraction=1.0) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="max_seconds"):
        train(tw.make_model(0), tw.make_dataset(), cfg(max_seconds=0.0))
    # a budget far shorter than 100000 steps: stops early, logs the partial window, checkpoints
    res = train(
        tw.make_model(0),
        tw.make_dataset(),
        cfg(
            steps=100000,
            max_seconds=1.0,
            lr_schedule="cosine",
            log_every=10**6,
            out_dir=str(tmp_path),
            checkpoint_every=10**6,
        ),
    )
    assert res.stopped_by_time and 0 < res.steps < 100000 and 0.9 < res.seconds < 5.0
    assert res.losses and res.losses[-1][0] == res.steps
    assert len(res.checkpoints) == 1 and Path(res.checkpoints[0]).name == f"step_{res.steps:09d}"
    full = train(tw.make_model(0), tw.make_dataset(), cfg(steps=5, max_seconds=600.0))
    assert not full.stopped_by_time and full.steps == 5


def test_ema_constant_target_closed_form():
    ema, net = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    e0 = ema.weight.detach().clone()
    for _ in range(7):
        ema_update(ema, net, 0.8)
    expect = net.weight + (e0 - net.weight) * 0.8**7
    assert torch.allclose(ema.weight, expect, atol=1e-6)
    assert [ema_decay_at(k, 0.999, True) for k in (0, 10, 10_000)] == pytest.approx([0.1, 11 / 20, 0.999])


def test_ema_follows_the_recursion_over_training(tiny):
    """ema_k = β·ema_{k−1} + (1−β)·θ_k, recomputed in float64 from the weights after every step."""
    model = tw.make_model(0)
    model.init_ema()
    ref = {k: v.double().clone() for k, v in model.ema.state_dict().items()}

    def cb(step, loss):
        for k, v in model.network.state_dict().items():
            ref[k] = 0.7 * ref[k] + 0.3 * v.double()

    train(model, tw.make_dataset(), cfg(ema_decay=0.7), callback=cb)
    for k, v in model.ema.state_dict().items():
        assert torch.allclose(v.double(), ref[k], atol=1e-6), k
    assert max_diff(weights(model), {k: v for k, v in model.ema.state_dict().items()}) > 1e-4


def test_nonfinite_loss_skips_counted_steps(tiny):
    data = tw.make_dataset()
    bad = 17
    data[bad] = torch.full((tw.DIM,), float("nan"))
    order = GlobalBatchOrder(len(data), 8, 3)
    expected = sum(bad in order.next() for _ in range(12))
    assert expected == 2  # 12 steps × 8 = two epochs of 48
    model = tw.make_model(0)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = train(model, data, cfg())
    assert res.skipped_nonfinite == expected
    assert sum(issubclass(w.category, NonFiniteLossWarning) for w in rec) == expected
    assert all(torch.isfinite(v).all() for v in model.network.state_dict().values())
    assert all(torch.isfinite(v).all() for v in model.ema.state_dict().values())
    with pytest.warns(NonFiniteLossWarning), pytest.raises(NonFiniteLossError, match="2 steps"):
        train(tw.make_model(0), data, cfg(max_nonfinite=2))


class OOMOverFour(tw.TinyMLP):
    """Raises PyTorch's out-of-memory error for batches larger than 4 (CPU stand-in for CUDA OOM)."""

    def forward(self, x, time, cond=None):
        if x.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().forward(x, time, cond)


def test_out_of_memory_names_the_failing_batch(tiny):
    model = tw.make_model(0)
    model.network = OOMOverFour()
    model.ema = None
    with pytest.raises(TrainingOOMError, match="micro-batch of 8 items") as ei:
        train(model, tw.make_dataset(), cfg(batch_size=8))
    assert ei.value.micro_batch == 8 and "grad_accum" in str(ei.value)
    res = train(model, tw.make_dataset(), cfg(batch_size=8, grad_accum=2))  # the suggested fix works
    assert res.steps == 12


class DtypeProbe(tw.TinyMLP):
    seen: set = set()

    def forward(self, x, time, cond=None):
        out = super().forward(x, time, cond)
        DtypeProbe.seen.add(out.dtype)
        return out


def test_amp_defaults_to_fp32_on_cpu_and_bf16_on_request(tiny):
    model = tw.make_model(0)
    model.network, model.ema = DtypeProbe(), None
    DtypeProbe.seen = set()
    train(model, tw.make_dataset(), cfg(steps=2))
    assert DtypeProbe.seen == {torch.float32}
    DtypeProbe.seen = set()
    train(model, tw.make_dataset(), cfg(steps=2, amp="bf16"))
    assert DtypeProbe.seen == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.network.parameters())


@pytest.mark.gpu
def test_cuda_bf16_training_runs_and_learns(tiny):
    model = tw.make_model(0, hidden=128)
    model.network, model.ema = DtypeProbe(hidden=128), None
    DtypeProbe.seen = set()
    res = train(model, tw.make_dataset(256), cfg(steps=300, batch_size=64, device="cuda", log_every=50, lr=3e-3))
    assert DtypeProbe.seen == {torch.bfloat16}
    assert res.losses[-1][1] < res.losses[0][1]
    assert next(model.network.parameters()).device.type == "cuda"


class WideNet(torch.nn.Module):
    """One 4 Mi-unit hidden layer: 65536 items need 1 TiB of activations."""

    def __init__(self, width: int = 1 << 22):
        super().__init__()
        self.a, self.b = torch.nn.Linear(tw.DIM + 1, width), torch.nn.Linear(width, tw.DIM)

    def forward(self, x, time, cond=None):
        return self.b(self.a(torch.cat([x, time[:, None]], 1)))


@pytest.mark.gpu
def test_cuda_real_out_of_memory_is_reported(tiny):
    model = tw.make_model(0)
    model.network, model.ema = WideNet(), None
    with pytest.raises(TrainingOOMError, match="micro-batch of 65536"):
        train(model, tw.make_dataset(65536), cfg(steps=1, batch_size=65536, device="cuda"))


def test_group_by_size_needs_the_modality_item_size(tiny):
    with pytest.raises(ValueError, match="does not define item_size"):
        train(tw.make_model(0), tw.make_dataset(), cfg(group_by_size=4))
    with pytest.raises(ValueError, match="group_by_size"):
        cfg(group_by_size=-1).validate()
