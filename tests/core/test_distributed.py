"""Data-parallel training: torchrun with 2 CPU processes (gloo) equals one process with the
same global batch; the data order splits every global batch exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import trainer_worker as tw  # noqa: E402

from polydiff import checkpoint as ckpt  # noqa: E402
from polydiff.plugin_manager import reset_plugins  # noqa: E402
from polydiff.training.data_order import GlobalBatchOrder, micro_batch_positions  # noqa: E402
from polydiff.training.distributed import setup  # noqa: E402

WORKER = Path(__file__).parent / "trainer_worker.py"


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setenv("POLYDIFF_PLUGINS", "core")
    reset_plugins()
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    reset_plugins()


def test_torchrun_two_cpu_processes_equal_one_process(tiny, tmp_path):
    args = [
        "--steps",
        "16",
        "--batch-size",
        "8",
        "--checkpoint-every",
        "8",
        "--cond-dropout",
        "0.3",
        "--nan-item",
        "17",
    ]
    env = dict(os.environ, POLYDIFF_PLUGINS="core", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(WORKER),
        "--out",
        str(tmp_path / "ddp"),
        *args,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    info = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 16
    order = GlobalBatchOrder(48, 8, 7)  # the worker's data set size, batch and seed
    expected_skips = sum(17 in order.next() for _ in range(16))
    assert expected_skips >= 2 and info["skipped_nonfinite"] == expected_skips  # both ranks agreed to skip

    assert tw.main(["--out", str(tmp_path / "one"), *args]) == 0  # one process, same global batch
    one, ddp = (
        load_file(str(tmp_path / "one" / "final.safetensors")),
        load_file(str(tmp_path / "ddp" / "final.safetensors")),
    )
    init = tw.make_model(0).network.state_dict()
    assert one.keys() == ddp.keys()
    moved = max((one[f"model.{k}"] - v).abs().max().item() for k, v in init.items())
    diff = max((one[k] - ddp[k]).abs().max().item() for k in one)
    assert moved > 1e-2, "training did not change the weights"
    assert diff < 1e-5, f"2-process result differs from 1-process by {diff}"
    # the logged global losses agree as well
    one_losses = json.loads((tmp_path / "one" / "result.json").read_text())["losses"]
    assert [s for s, _ in one_losses] == [s for s, _ in info["losses"]]
    assert [v for _, v in one_losses] == pytest.approx([v for _, v in info["losses"]], rel=1e-5)
    # the checkpoint written by the 2-process run holds the RNG streams of both ranks
    rng = ckpt.load_tensors(tmp_path / "ddp" / "checkpoints" / "step_000000016", "rng.safetensors", None)
    assert {k.split(".")[0] for k in rng} == {"rank0", "rank1"}
    assert not torch.equal(rng["rank0.torch_cpu"], rng["rank1.torch_cpu"])
    # a checkpoint written by 2 processes resumes in 1 process and ends where the 2-process run ended
    assert (
        tw.main(
            [
                "--out",
                str(tmp_path / "cont"),
                *args,
                "--resume",
                str(tmp_path / "ddp" / "checkpoints" / "step_000000008"),
            ]
        )
        == 0
    )
    cont = load_file(str(tmp_path / "cont" / "final.safetensors"))
    assert json.loads((tmp_path / "cont" / "result.json").read_text())["start_step"] == 8
    assert max((cont[k] - ddp[k]).abs().max().item() for k in cont) < 1e-5


@settings(max_examples=60, deadline=None)
@given(world=st.integers(1, 4), accum=st.integers(1, 4), per=st.integers(1, 5))
def test_every_item_of_a_global_batch_goes_to_exactly_one_rank_and_micro_batch(world, accum, per):
    batch = world * accum * per
    seen = sorted(
        p for r in range(world) for a in range(accum) for p in micro_batch_positions(batch, world, accum, r, a)
    )
    assert seen == list(range(batch))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), batch=st.integers(1, 17), seed=st.integers(0, 10))
def test_each_epoch_visits_every_item_once(n, batch, seed):
    order = GlobalBatchOrder(n, batch, seed)
    stream = [i for _ in range(-(-3 * n // batch)) for i in order.next()]
    for e in range(3):
        assert sorted(stream[e * n : (e + 1) * n]) == list(range(n))
    again = GlobalBatchOrder(n, batch, seed)
    again.load_state({**order.state()})
    assert again.next() == order.next()  # the data order resumes from its two integers


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 200), batch=st.integers(1, 9), seed=st.integers(0, 5), window=st.integers(1, 6))
def test_size_grouped_order_visits_every_item_once_and_resumes(n, batch, seed, window):
    sizes = [(7 * i) % 23 for i in range(n)]
    order = GlobalBatchOrder(n, batch, seed, sizes=sizes, group_window=window)
    stream = [i for _ in range(-(-2 * n // batch)) for i in order.next()]
    for e in range(2):
        assert sorted(stream[e * n : (e + 1) * n]) == list(range(n))
    again = GlobalBatchOrder(n, batch, seed, sizes=sizes, group_window=window)
    again.load_state({**order.state()})
    assert again.next() == order.next()


def test_size_grouped_batches_hold_similar_sizes():
    """Grouping by size cuts the padding (largest minus mean size per batch) several-fold."""
    sizes = torch.randint(3, 30, (2000,), generator=torch.Generator().manual_seed(0)).tolist()

    def padding(order):
        waste = 0.0
        for _ in range(2000 // 32):
            b = [sizes[i] for i in order.next()]
            waste += max(b) - sum(b) / len(b)
        return waste

    plain = padding(GlobalBatchOrder(2000, 32, 1))
    grouped = padding(GlobalBatchOrder(2000, 32, 1, sizes=sizes, group_window=16))
    assert grouped < plain / 4
    with pytest.raises(ValueError, match="3 entries for 4 items"):
        GlobalBatchOrder(4, 2, 0, sizes=[1, 2, 3])


def test_setup_without_torchrun_is_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = setup("cpu")
    assert (ctx.rank, ctx.world_size, ctx.active, ctx.owns_group) == (0, 1, False, False)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert setup("cpu", mode="off").world_size == 1
