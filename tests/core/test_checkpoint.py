"""The checkpoint format: hashes, atomic writes, pickle refusal, path confinement, and the
pickle-free round trips of optimiser and RNG state used by training checkpoints."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import trainer_worker as tw  # noqa: E402

from polydiff import checkpoint as ckpt  # noqa: E402
from polydiff.errors import CheckpointError  # noqa: E402
from polydiff.model import DiffusionModel  # noqa: E402
from polydiff.plugin_manager import get_plugins, reset_plugins  # noqa: E402
from polydiff.training import rng_state  # noqa: E402
from polydiff.training.checkpointing import flatten_optimizer, unflatten_optimizer  # noqa: E402


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setenv("POLYDIFF_PLUGINS", "core")
    reset_plugins()
    get_plugins().register(tw.TinyPlugin(), name="tiny_train_test_plugin")
    yield
    get_plugins().unregister("tiny_train_test_plugin")
    reset_plugins()


def write_demo(d: Path) -> dict:
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor(3, dtype=torch.int64)}
    ckpt.write_checkpoint(d, {"note": "demo", "nested": {"x": [1, 2.5, None]}}, {"w.safetensors": tensors})
    return tensors


def test_round_trip_with_file_and_content_hashes(tmp_path):
    tensors = write_demo(tmp_path)
    conf = ckpt.read_config(tmp_path)
    assert conf["format"] == ckpt.FORMAT_VERSION and conf["nested"] == {"x": [1, 2.5, None]}
    assert conf["files"]["w.safetensors"] == ckpt.sha256_file(tmp_path / "w.safetensors")
    assert conf["content_sha256"] == ckpt.content_hash(conf)
    got = ckpt.load_tensors(tmp_path, "w.safetensors", conf["files"]["w.safetensors"])
    assert all(torch.equal(got[k], tensors[k]) for k in tensors)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_truncated_or_flipped_weights_are_refused(tmp_path):
    write_demo(tmp_path)
    conf = ckpt.read_config(tmp_path)
    f = tmp_path / "w.safetensors"
    raw = f.read_bytes()
    f.write_bytes(raw[:-7])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        ckpt.load_tensors(tmp_path, "w.safetensors", conf["files"]["w.safetensors"])
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        ckpt.load_tensors(tmp_path, "w.safetensors", None)
    f.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))  # one flipped bit, same length
    with pytest.raises(CheckpointError, match="does not match"):
        ckpt.load_tensors(tmp_path, "w.safetensors", conf["files"]["w.safetensors"])


def test_edited_config_is_refused_by_its_content_hash(tmp_path):
    write_demo(tmp_path)
    conf = json.loads((tmp_path / "config.json").read_text())
    conf["note"] = "tampered"
    (tmp_path / "config.json").write_text(json.dumps(conf))
    with pytest.raises(CheckpointError, match="content hash"):
        ckpt.read_config(tmp_path)


@pytest.mark.parametrize(
    "fmt,msg",
    [("1", "positive integer"), (True, "positive integer"), (0, "positive"), (2, "newer"), (1.0, "positive integer")],
)
def test_format_field_is_checked(tmp_path, fmt, msg):
    (tmp_path / "config.json").write_text(json.dumps({"format": fmt}))
    with pytest.raises(CheckpointError, match=msg):
        ckpt.read_config(tmp_path)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".bin", ".ckpt"])
def test_pickle_files_are_refused_with_an_explanation(tiny, tmp_path, suffix):
    p = tmp_path / f"model{suffix}"
    p.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError, match="arbitrary code"):
        ckpt.read_config(p)
    with pytest.raises(CheckpointError, match="refusing"):
        DiffusionModel.load(p)


def test_names_cannot_escape_the_checkpoint_directory(tmp_path):
    d = tmp_path / "ck"
    write_demo(d)
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes((d / "w.safetensors").read_bytes())
    (d / "link.safetensors").symlink_to(outside)
    for name in (
        "../secret.safetensors",
        str(outside),
        "a/../../secret.safetensors",
        "link.safetensors",
        "..",
        "",
        "w.safe\x00tensors",
        "model.pt",
        "notes.json",
    ):
        with pytest.raises(CheckpointError):
            ckpt.load_tensors(d, name, None)
    conf = json.loads((d / "config.json").read_text())
    conf["files"]["../secret.safetensors"] = None
    del conf["content_sha256"]
    (d / "config.json").write_text(json.dumps(conf))
    with pytest.raises(CheckpointError, match="escapes|plain file name"):
        ckpt.read_config(d)


def test_a_crash_during_a_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    ckpt.atomic_write_json({"format": 1, "v": "old"}, target)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.os, "replace", boom)
    with pytest.raises(OSError):
        ckpt.atomic_write_json({"format": 1, "v": "new"}, target)
    with pytest.raises(OSError):
        ckpt.atomic_save_tensors({"x": torch.ones(3)}, tmp_path / "x.safetensors")
    monkeypatch.undo()
    assert json.loads(target.read_text())["v"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_model_save_load_round_trip_verifies_hashes(tiny, tmp_path):
    model = tw.make_model(0)
    model.init_ema()
    model.save(tmp_path / "m")
    back = DiffusionModel.load(tmp_path / "m")
    for k, v in model.network.state_dict().items():
        assert torch.equal(v, back.network.state_dict()[k])
    f = tmp_path / "m" / "ema.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        DiffusionModel.load(tmp_path / "m")


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
        lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True),
        lambda ps: torch.optim.Adam(ps, lr=1e-2, amsgrad=True),
    ],
)
def test_optimizer_state_round_trips_through_tensors_and_json(make):
    """Continuing from a flattened + JSON-serialised state gives bit-identical updates."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    opt = make(net.parameters())
    x = torch.randn(16, 3)

    def step(n, o):
        o.zero_grad()
        n(x).pow(2).mean().backward()
        o.step()

    for _ in range(3):
        step(net, opt)
    tensors, meta = flatten_optimizer(opt)
    meta = json.loads(json.dumps(meta))  # as stored in config.json
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    twin.load_state_dict(net.state_dict())
    opt2 = make(twin.parameters())
    opt2.load_state_dict(unflatten_optimizer({k: v.clone() for k, v in tensors.items()}, meta))
    for _ in range(3):
        step(net, opt)
        step(twin, opt2)
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_rng_states_round_trip():
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's legacy state
    random.gauss(0, 1)
    st = rng_state.capture()

    def draw():
        return (torch.rand(5).tolist(), np.random.normal(size=3).tolist(), [random.random(), random.gauss(0, 1)])

    first = draw()
    draw()
    rng_state.restore({k: v.clone() for k, v in st.items()})
    assert draw() == first
    bad = dict(st, numpy_keys=st["numpy_keys"][:10])
    with pytest.raises(ValueError):
        rng_state.restore(bad)


def test_tied_weights_are_saved_once_each(tmp_path):
    shared = torch.randn(4, 3)
    ckpt.write_checkpoint(tmp_path, {}, {"w.safetensors": {"enc.weight": shared, "dec.weight": shared}})
    got = ckpt.load_tensors(tmp_path, "w.safetensors", ckpt.read_config(tmp_path)["files"]["w.safetensors"])
    assert torch.equal(got["enc.weight"], shared) and torch.equal(got["dec.weight"], shared)
