"""Checkpoint format through the public API: round trip, safety, missing plugins."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

import polydiff
from polydiff.errors import CheckpointError, PluginNotFoundError


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = polydiff.create("pointcloud", hidden=32, layers=1)
    m.modality.config["n_points"] = 8
    m.init_ema()
    with torch.no_grad():  # make EMA differ from the live weights
        for p in m.ema.parameters():
            p.add_(0.01)
    return m


def test_round_trip_is_bit_exact(model, tmp_path):
    model.save(tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert cfg["polydiff_version"] == polydiff.__version__
    assert cfg["plugin"] == {"name": "pointcloud", "version": "0.1.0"}
    assert cfg["modality"]["name"] == "pointcloud" and cfg["network"]["name"] == "pointcloud_deepsets"
    assert cfg["schedule"]["name"] == "edm" and cfg["parameterization"]["kind"] == "edm"
    assert set(cfg["files"]) == {"model.safetensors", "ema.safetensors"}
    again = polydiff.load(tmp_path / "ck")
    for (k, a), (k2, b) in zip(model.network.state_dict().items(), again.network.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    for a, b in zip(model.ema.state_dict().values(), again.ema.state_dict().values()):
        assert torch.equal(a, b)
    assert again.modality.config == model.modality.config


def test_save_load_sample_identical(model, tmp_path):
    before = model.sample(6, sampler="heun", steps=8, seed=3)
    model.save(tmp_path / "ck")
    after = polydiff.load(tmp_path / "ck").sample(6, sampler="heun", steps=8, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_saved_sample_defaults_apply_unless_overridden(model, tmp_path):
    model.extra["sample_defaults"] = {"sampler": "euler", "nfe": 3, "sigma_max": 5.0}
    model.save(tmp_path / "ck")
    again = polydiff.load(tmp_path / "ck")
    by_default = again.sample(2, seed=1)
    explicit = again.sample(2, seed=1, sampler="euler", nfe=3, sigma_max=5.0)
    assert all(torch.equal(a, b) for a, b in zip(by_default, explicit))
    other = again.sample(2, seed=1, sigma_max=80.0)  # one option overridden, the rest kept
    assert not torch.equal(other[0], by_default[0])
    # steps given: the default NFE does not fight it
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            again.sample(2, seed=1, steps=4), again.sample(2, seed=1, sampler="euler", steps=4, sigma_max=5.0)
        )
    )


def test_ema_false_uses_live_weights(model, tmp_path):
    model.save(tmp_path / "ck")
    live = polydiff.load(tmp_path / "ck", ema=False)
    assert live.ema is None
    a = live.sample(2, steps=4, seed=0)
    b = polydiff.load(tmp_path / "ck").sample(2, steps=4, seed=0)
    assert not torch.equal(a[0], b[0])


def test_pickle_file_refused(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(CheckpointError, match="pickle"):
        polydiff.load(bad)


def test_config_paths_cannot_escape_directory(tmp_path):
    from polydiff.checkpoint import safe_member

    (tmp_path / "ck").mkdir()
    for bad in ("../model.safetensors", "/etc/passwd", "sub/x.safetensors", "..", "weights.pt", "w.pkl", "notes.txt"):
        with pytest.raises(CheckpointError):
            safe_member(tmp_path / "ck", bad)
    assert safe_member(tmp_path / "ck", "ema.safetensors") == (tmp_path / "ck" / "ema.safetensors").resolve()


def test_corrupt_weights_detected(model, tmp_path):
    model.save(tmp_path / "ck")
    f = tmp_path / "ck" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="hash"):
        polydiff.load(tmp_path / "ck")


def test_missing_plugin_named_with_installed_list(model, tmp_path):
    model.save(tmp_path / "ck")
    cfg_path = tmp_path / "ck" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["plugin"]["name"] = "polydiff-weather"
    from polydiff.checkpoint import content_hash

    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="content hash"):  # hand edits are caught first
        polydiff.load(tmp_path / "ck")
    cfg["content_sha256"] = content_hash(cfg)  # a consistent config from a machine with that plugin
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(PluginNotFoundError) as err:
        polydiff.load(tmp_path / "ck")
    assert "polydiff-weather" in str(err.value) and "pointcloud" in str(err.value) and "core" in str(err.value)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        polydiff.load(tmp_path)


def test_sample_does_not_depend_on_batch_size(model):
    one = [model.sample(1, steps=6, seed=11, sample_offset=i)[0] for i in range(4)]
    four = model.sample(4, steps=6, seed=11)
    for a, b in zip(one, four):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cli_info_and_unknown_command(model, tmp_path):
    import subprocess
    import sys

    model.save(tmp_path / "ck")
    out = subprocess.run(
        [sys.executable, "-m", "polydiff.cli", "info", str(tmp_path / "ck")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["plugin"]["name"] == "pointcloud"
    out = subprocess.run(
        [sys.executable, "-m", "polydiff.cli", "info", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1 and "config.json" in out.stderr
