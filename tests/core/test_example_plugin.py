"""The out-of-tree example plugin, installed as its own package, used through the public API."""

from __future__ import annotations

import importlib.metadata as md

import torch

import polydiff
from polydiff.plugin_manager import get_plugins
from polydiff.training import TrainConfig, train


def test_example_plugin_is_discovered_through_its_entry_point():
    eps = {ep.name: ep for ep in md.entry_points(group="polydiff")}
    assert eps["pointcloud"].value == "polydiff_pointcloud"
    assert eps["pointcloud"].dist.name == "polydiff-pointcloud"
    pm = get_plugins()
    assert pm.plugins["pointcloud"] == "0.1.0"
    assert pm.registry("modality").entry("pointcloud").plugin == "pointcloud"
    assert "pointcloud/rings" in pm.registry("benchmark")


def test_example_plugin_trains_samples_evaluates(tmp_path):
    model = polydiff.create("pointcloud")
    data = model.modality.load_dataset("rings2d", size=1000, seed=1)
    untrained = model.modality.evaluate(model.sample(128, steps=10, seed=0))["pointcloud_ring_error"]
    train(model, data, TrainConfig(steps=600, batch_size=128, lr=2e-3, ema_decay=0.98, progress=False))
    samples = model.sample(128, sampler="dpmpp_2m", steps=20, seed=0)
    trained = model.modality.evaluate(samples)["pointcloud_ring_error"]
    floor = model.modality.evaluate([data[i] for i in range(128)])["pointcloud_ring_error"]
    assert floor < trained < 0.5 * untrained, (floor, trained, untrained)
    # zero centre of mass is kept by the space
    assert torch.stack(samples).mean(1).abs().max() < 1e-5
    # save -> load -> sample: identical samples for the same seed
    model.save(tmp_path / "ckpt")
    again = polydiff.load(tmp_path / "ckpt")
    assert again.plugin == "pointcloud"
    s2 = again.sample(8, sampler="dpmpp_2m", steps=20, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(samples[:8], s2))
    # files round-trip through the modality's writer/reader
    path = model.modality.write(samples, tmp_path / "clouds.json")[0]
    back = model.modality.read(path)
    assert torch.allclose(torch.stack(back), torch.stack(samples))
