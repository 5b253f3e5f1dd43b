"""polydiff.testing on a modality with parts (a mixed continuous–categorical state): a
conforming throwaway plugin built on the example's labelled point clouds passes, and each
deliberately broken variant is reported on the right check and component."""

from __future__ import annotations

import torch

from polydiff.hookspecs import hookimpl
from polydiff.testing import ConformanceReport, check_plugin
from polydiff_pointcloud.labelled import LabelledPointCloudModality, LabelledRingsDataset, label_accuracy
from polydiff_pointcloud.labelled_network import LabelledDeepSets

MIXED_CHECKS = {"data", "network", "loss", "sampling", "files", "batch_independence", "save_load", "equivariance"}


class MixDemo(LabelledPointCloudModality):
    name = "mixdemo"
    default_network = "mixdemo_net"
    default_dataset = "mixdemo_rings"
    default_metrics = ("mixdemo_accuracy",)


def make_plugin(modality=MixDemo, network=LabelledDeepSets):
    class Plugin:
        @staticmethod
        @hookimpl
        def polydiff_register_modalities(register):
            register("mixdemo", modality)

        @staticmethod
        @hookimpl
        def polydiff_register_networks(register):
            register("mixdemo_net", network, modality="mixdemo")

        @staticmethod
        @hookimpl
        def polydiff_register_datasets(register):
            register("mixdemo_rings", LabelledRingsDataset, modality="mixdemo")

        @staticmethod
        @hookimpl
        def polydiff_register_metrics(register):
            register("mixdemo_accuracy", label_accuracy, modality="mixdemo", higher_is_better=True)

    return Plugin


def report_of(plugin, **kwargs) -> ConformanceReport:
    return check_plugin(plugin, name="mixdemo_plugin", raise_on_failure=False, **kwargs)


def findings(rep, check):
    return [f for f in rep.findings if f.check == check]


def test_conforming_mixed_plugin_passes(tmp_path):
    rep = check_plugin(make_plugin(), name="mixdemo_plugin", tmp_dir=tmp_path)
    assert rep.ok
    assert MIXED_CHECKS <= {c for c, comp in rep.passed if comp == "modality 'mixdemo'"}
    assert ("metrics", "metric 'mixdemo_accuracy'") in rep.passed


def test_categorical_part_collated_as_floats():
    class FloatLabels(MixDemo):
        def collate(self, items):
            batch = super().collate(items)
            batch["x"]["label"] = batch["x"]["label"].float()
            return batch

    rep = report_of(make_plugin(modality=FloatLabels), checks=["data"])
    (f,) = findings(rep, "data")
    assert "x['label'] (categorical) must be long classes" in f.message and "{part: Tensor" in f.fix


def test_sampling_request_without_a_part():
    class NoLabelShape(MixDemo):
        def sampling_request(self, n, cond, rng):
            shapes, c = super().sampling_request(n, cond, rng)
            return {"pos": shapes["pos"]}, c

    rep = report_of(make_plugin(modality=NoLabelShape), checks=["sampling"])
    (f,) = findings(rep, "sampling")
    assert "not {part: shape} for the parts ['label', 'pos']" in f.message and "{part: shape" in f.fix


def test_network_missing_the_logits_of_a_part():
    class PosOnly(LabelledDeepSets):
        def forward(self, state, time, cond=None):
            return {"pos": super().forward(state, time, cond)["pos"]}

    rep = report_of(make_plugin(network=PosOnly), checks=["network"])
    (f,) = findings(rep, "network")
    assert f.component == "network 'mixdemo_net'" and "for every part" in f.message


def test_network_that_breaks_permutation_equivariance():
    class Positional(LabelledDeepSets):
        def forward(self, state, time, cond=None):
            out = super().forward(state, time, cond)
            idx = torch.arange(out["label"].shape[1], dtype=out["label"].dtype)
            return {"pos": out["pos"], "label": out["label"] + idx[None, :, None] * torch.tensor([1.0, -1.0])}

    rep = report_of(make_plugin(network=Positional), checks=["equivariance"])
    (f,) = findings(rep, "equivariance")
    assert "part 'label' of D(πx) differs" in f.message and f.component == "network 'mixdemo_net'"


def test_sampling_that_depends_on_the_batch():
    class BatchNet(LabelledDeepSets):
        def forward(self, state, time, cond=None):  # batch statistics leak between samples
            out = super().forward(state, time, cond)
            return {"pos": out["pos"] + state["pos"].mean(0, keepdim=True), "label": out["label"]}

    rep = report_of(make_plugin(network=BatchNet), checks=["batch_independence"])
    (f,) = findings(rep, "batch_independence")
    assert "part 'pos'" in f.message and "rng argument" in f.fix


def test_rotation_of_a_mixed_state_is_recorded_as_not_checked():
    class Rotating(MixDemo):
        equivariance = ("permutation", "rotation")
        position_dims = 2

    rep = report_of(make_plugin(modality=Rotating), checks=["equivariance"])
    assert rep.ok and ("equivariance", "modality 'mixdemo'") in rep.passed
    assert any(c == "equivariance" and "not checked yet" in why for c, _, why in rep.skipped)
