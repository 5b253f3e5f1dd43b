"""Resuming training: bit-identical after SIGKILL, fallback past a truncated newest
checkpoint, keep-last-K, refusal of pickle files and escaping paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import trainer_worker as tw  # noqa: E402

from polydiff import checkpoint as ckpt  # noqa: E402
from polydiff.errors import CheckpointError  # noqa: E402
from polydiff.model import DiffusionModel  # noqa: E402
from polydiff.plugin_manager import get_plugins, reset_plugins  # noqa: E402
from polydiff.training import CheckpointFallbackWarning, TrainConfig, train  # noqa: E402
from polydiff.training.checkpointing import list_checkpoints  # noqa: E402

WORKER = Path(__file__).parent / "trainer_worker.py"


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setenv("POLYDIFF_PLUGINS", "core")
    reset_plugins()
    get_plugins().register(tw.TinyPlugin(), name="tiny_train_test_plugin")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: one thread is faster and immune to a busy machine
    yield
    torch.set_num_threads(threads)
    get_plugins().unregister("tiny_train_test_plugin")
    reset_plugins()


def cfg(out, **kw) -> TrainConfig:
    base = dict(
        steps=20,
        batch_size=8,
        lr=1e-2,
        warmup_steps=3,
        lr_schedule="cosine",
        seed=5,
        log_every=5,
        device="cpu",
        progress=False,
        ema_decay=0.9,
        out_dir=str(out),
        checkpoint_every=5,
    )
    base.update(kw)
    return TrainConfig(**base)


def state(model, opt_dir: Path | None = None) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v.detach().clone() for k, v in model.network.state_dict().items()}
    out.update({f"ema.{k}": v.detach().clone() for k, v in model.ema.state_dict().items()})
    return out


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs by {(a[k] - b[k]).abs().max().item()}"


class Interrupt(Exception):
    pass


def train_interrupted(model, out, stop_at: int, **kw):
    """Train with the full config (same LR schedule) but stop after step ``stop_at``."""

    def cb(step, loss):
        if step + 1 == stop_at:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(model, tw.make_dataset(), cfg(out, **kw), callback=cb)


def run_uninterrupted(tmp_path, **kw):
    model = tw.make_model(0, dropout=0.2)
    train(model, tw.make_dataset(), cfg(tmp_path / "ref", **kw))
    return model


def test_resume_in_process_is_bit_identical_with_dropout(tiny, tmp_path):
    """Dropout draws from the global torch RNG: equality needs the saved RNG state."""
    ref = run_uninterrupted(tmp_path)
    first = tw.make_model(0, dropout=0.2)
    train_interrupted(first, tmp_path / "run", 10)
    again = tw.make_model(1, dropout=0.2)  # different init: everything must come from the checkpoint
    res = train(again, tw.make_dataset(), cfg(tmp_path / "run", resume="auto"))
    assert res.start_step == 10 and res.steps == 20
    assert_bit_identical(state(ref), state(again))
    # control: the same resume with another (valid) torch RNG state for rank 0 differs
    ck = tmp_path / "run2" / "checkpoints" / "step_000000010"
    train_interrupted(tw.make_model(0, dropout=0.2), tmp_path / "run2", 10)
    rng = load_file(str(ck / "rng.safetensors"))
    rng["rank0.torch_cpu"] = torch.Generator().manual_seed(999).get_state()
    conf = json.loads((ck / "config.json").read_text())
    conf["files"]["rng.safetensors"] = ckpt.atomic_save_tensors(rng, ck / "rng.safetensors")
    conf["content_sha256"] = ckpt.content_hash(conf)
    (ck / "config.json").write_text(json.dumps(conf))
    other = tw.make_model(0, dropout=0.2)
    res = train(other, tw.make_dataset(), cfg(tmp_path / "run2", resume="auto"))
    assert res.start_step == 10
    assert not torch.equal(state(ref)["model.net.0.weight"], state(other)["model.net.0.weight"])


def test_truncated_newest_checkpoint_is_refused_and_previous_used(tiny, tmp_path):
    ref = run_uninterrupted(tmp_path)
    run = tmp_path / "run"
    train_interrupted(tw.make_model(0, dropout=0.2), run, 15)
    steps = [s for s, _ in list_checkpoints(run / "checkpoints")]
    assert steps == [5, 10, 15]
    newest = run / "checkpoints" / "step_000000015" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    resumed = tw.make_model(1, dropout=0.2)
    with pytest.warns(CheckpointFallbackWarning, match=r"step_000000015.*(hash|truncated)"):
        res = train(resumed, tw.make_dataset(), cfg(run, resume="auto"))
    assert res.resumed_from.endswith("step_000000010") and res.start_step == 10
    assert_bit_identical(state(ref), state(resumed))
    events = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    refused = [e for e in events if e.get("event") == "checkpoint_refused"]
    assert refused and refused[0]["step"] == 15 and "truncated" in refused[0]["reason"]


def test_truncated_config_is_refused_too(tiny, tmp_path):
    run = tmp_path / "run"
    train(tw.make_model(0), tw.make_dataset(), cfg(run, steps=10))
    cfg_file = run / "checkpoints" / "step_000000010" / "config.json"
    cfg_file.write_bytes(cfg_file.read_bytes()[:-40])
    with pytest.warns(CheckpointFallbackWarning, match="not valid JSON"):
        res = train(tw.make_model(0), tw.make_dataset(), cfg(run, resume="auto", steps=12))
    assert res.start_step == 5


def test_an_explicitly_named_corrupt_checkpoint_is_refused_without_fallback(tiny, tmp_path):
    run = tmp_path / "run"
    train(tw.make_model(0), tw.make_dataset(), cfg(run, steps=10))
    ck = run / "checkpoints" / "step_000000010"
    (ck / "ema.safetensors").write_bytes((ck / "ema.safetensors").read_bytes()[:64])
    with pytest.raises(CheckpointError, match="ema.safetensors.*(corrupt|truncated)"):
        train(tw.make_model(0), tw.make_dataset(), cfg(tmp_path / "o", resume=str(ck)))
    res = train(
        tw.make_model(0), tw.make_dataset(), cfg(tmp_path / "o", resume=str(run / "checkpoints" / "step_000000005"))
    )
    assert res.start_step == 5 and res.steps == 20


def test_edited_config_fails_its_content_hash(tiny, tmp_path):
    run = tmp_path / "run"
    train(tw.make_model(0), tw.make_dataset(), cfg(run, steps=10))
    cfg_file = run / "checkpoints" / "step_000000010" / "config.json"
    conf = json.loads(cfg_file.read_text())
    conf["training_state"]["step"] = 3
    cfg_file.write_text(json.dumps(conf))
    with pytest.warns(CheckpointFallbackWarning, match="content hash"):
        res = train(tw.make_model(0), tw.make_dataset(), cfg(run, resume="auto", steps=12))
    assert res.start_step == 5


def test_all_checkpoints_corrupt_is_an_error_not_a_fresh_start(tiny, tmp_path):
    run = tmp_path / "run"
    train(tw.make_model(0), tw.make_dataset(), cfg(run, steps=10))
    for _, p in list_checkpoints(run / "checkpoints"):
        f = p / "optimizer.safetensors"
        f.write_bytes(b"\0" * 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointFallbackWarning)
        with pytest.raises(CheckpointError, match="no usable training checkpoint"):
            train(tw.make_model(0), tw.make_dataset(), cfg(run, resume="auto"))


def test_keep_last_k_and_interrupted_writes_are_ignored(tiny, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / ".step_000000099.partial").mkdir(parents=True)  # a write killed halfway
    res = train(tw.make_model(0), tw.make_dataset(), cfg(run, steps=20, checkpoint_every=2, keep_checkpoints=2))
    assert [s for s, _ in list_checkpoints(run / "checkpoints")] == [18, 20]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000000018", "step_000000020"]
    assert len(res.checkpoints) == 10


def test_training_checkpoint_is_a_loadable_model(tiny, tmp_path):
    model = tw.make_model(0)
    train(model, tw.make_dataset(), cfg(tmp_path, steps=5))
    loaded = DiffusionModel.load(tmp_path / "checkpoints" / "step_000000005")
    assert_bit_identical(state(model), state(loaded))
    files = json.loads((tmp_path / "checkpoints" / "step_000000005" / "config.json").read_text())["files"]
    assert set(files) == {"model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng.safetensors"}
    assert not [p for p in (tmp_path / "checkpoints").rglob("*") if p.suffix in (".pt", ".pkl", ".tmp")]


def test_resume_refuses_pickle_and_escaping_paths(tiny, tmp_path):
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(CheckpointError, match="refusing to load a .pt"):
        train(tw.make_model(0), tw.make_dataset(), cfg(tmp_path / "o", resume=str(pt)))
    run = tmp_path / "run"
    train(tw.make_model(0), tw.make_dataset(), cfg(run, steps=5))
    ck = run / "checkpoints" / "step_000000005"
    (tmp_path / "outside.safetensors").write_bytes((ck / "rng.safetensors").read_bytes())
    for evil in ("../../../outside.safetensors", "/etc/passwd", "weights.pt"):
        conf = json.loads((ck / "config.json").read_text())
        conf["files"][evil] = None
        conf.pop("content_sha256", None)
        (ck / "config.json").write_text(json.dumps(conf))
        with pytest.raises(CheckpointError, match="escapes|plain file name|refusing"):
            train(tw.make_model(0), tw.make_dataset(), cfg(tmp_path / "o2", resume=str(ck)))
    with pytest.raises(CheckpointError, match="does not exist"):
        train(tw.make_model(0), tw.make_dataset(), cfg(tmp_path / "o3", resume=str(tmp_path / "nope")))


def _worker_env():
    env = dict(os.environ, POLYDIFF_PLUGINS="core", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    return env


def test_sigkill_mid_run_then_resume_is_bit_identical(tiny, tmp_path):
    args = ["--steps", "30", "--checkpoint-every", "5", "--dropout", "0.2"]
    assert tw.main(["--out", str(tmp_path / "ref"), *args]) == 0  # uninterrupted, in this process
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "--out", str(out), "--sleep", "0.2", *args],
        env=_worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if [s for s, _ in list_checkpoints(out / "checkpoints") if s >= 10]:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "worker ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "final.safetensors").exists()
    killed_at = max(s for s, _ in list_checkpoints(out / "checkpoints"))
    assert 10 <= killed_at < 30
    res = subprocess.run(
        [sys.executable, str(WORKER), "--out", str(out), "--resume", "auto", *args],
        env=_worker_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((out / "result.json").read_text())
    assert info["start_step"] >= 10 and info["steps"] == 30
    a, b = load_file(str(tmp_path / "ref" / "final.safetensors")), load_file(str(out / "final.safetensors"))
    assert_bit_identical(a, b)
    # and the optimiser state of the last checkpoints agrees bit for bit as well
    oa = ckpt.load_tensors(tmp_path / "ref" / "checkpoints" / "step_000000030", "optimizer.safetensors", None)
    ob = ckpt.load_tensors(out / "checkpoints" / "step_000000030", "optimizer.safetensors", None)
    assert_bit_identical(oa, ob)
