"""polydiff.testing: a small conforming throwaway plugin passes; each deliberately broken
variant fails with a report that names the plugin, the component and the fix."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from polydiff.bench.task import BenchmarkTask, make_row
from polydiff.errors import PluginError
from polydiff.hookspecs import hookimpl
from polydiff.modality import Modality
from polydiff.plugin_manager import get_plugins
from polydiff.spaces import ZeroCoMSpace
from polydiff.testing import (
    CHECKS,
    ConformanceError,
    ConformanceReport,
    check_modality,
    check_plugin,
    random_orthogonal,
)

N_POINTS = 5


# -- a small plugin that follows the contract ---------------------------------------------------
def demo_points(size: int = 8, seed: int = 0):
    """``size`` centred clouds of N_POINTS points in 2-D."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size, N_POINTS, 2, generator=g)
    return list(x - x.mean(1, keepdim=True))


def demo_spread(samples, reference=None, **_) -> float:
    """Mean distance of points from their cloud's centre."""
    return float(torch.stack(list(samples)).norm(dim=-1).mean())


class DemoNet(nn.Module):
    """Rotation- and permutation-equivariant: each point scaled by an MLP of its norm and σ."""

    def __init__(self, hidden: int = 8):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, x, time, cond=None):
        r = x.norm(dim=-1, keepdim=True)
        t = time.reshape(-1, 1, 1).expand_as(r).to(x.dtype)
        return x * self.mlp(torch.cat([r, t], -1))


class Demo(Modality):
    name = "demo"
    default_network = "demo_net"
    default_dataset = "demo_points"
    default_metrics = ("demo_spread",)
    sigma_data = 1.0
    equivariance = ("rotation", "permutation")
    position_dims = 2
    conformance = {"dataset_options": {"size": 6}, "network_kwargs": {"hidden": 4}}

    def fit(self, dataset):
        self.config["n_points"] = int(dataset[0].shape[0])

    def collate(self, items):
        x = torch.stack([torch.as_tensor(i) for i in items])
        return {"x": x, "cond": {"mask": torch.ones(x.shape[:2])}}

    def space(self, cond):
        return ZeroCoMSpace(cond["mask"], n_pos=2)

    def sampling_request(self, n, cond, rng):
        k = int(self.config.get("n_points", N_POINTS))
        return (k, 2), {"mask": torch.ones(n, k)}

    def decode(self, x, cond):
        return [p.detach().cpu() for p in x]

    def write(self, samples, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([p.tolist() for p in samples]))
        return [path]

    def read(self, path):
        return [torch.tensor(p) for p in json.loads(Path(path).read_text())]


def _run_task(ctx):
    model = __import__("polydiff").create("demo", hidden=4)
    model.modality.load_dataset(size=4)
    samples = model.sample(4, sampler="euler", steps=2, seed=ctx.seed)
    path = model.modality.write(samples, ctx.out_dir / "samples.json")[0]
    return [
        make_row(
            "demo/smoke",
            modality="demo",
            model="demo_net",
            sampler="euler",
            nfe=2,
            seed=ctx.seed,
            metrics={"demo_spread": demo_spread(samples)},
            reference={},
            timing={},
            files=[path],
        )
    ]


TASK = BenchmarkTask(name="demo/smoke", modality="demo", model="demo_net", run=_run_task)


def make_plugin(
    modality=Demo,
    network=DemoNet,
    dataset=demo_points,
    metrics=(("demo_spread", demo_spread, {"higher_is_better": None}),),
    task=TASK,
):
    """A throwaway plugin class whose hooks register the given components."""

    class Plugin:
        @staticmethod
        @hookimpl
        def polydiff_register_modalities(register):
            register("demo", modality)

        @staticmethod
        @hookimpl
        def polydiff_register_networks(register):
            register("demo_net", network, modality="demo")

        @staticmethod
        @hookimpl
        def polydiff_register_datasets(register):
            register("demo_points", dataset, modality="demo")

        @staticmethod
        @hookimpl
        def polydiff_register_metrics(register):
            for name, fn, info in metrics:
                register(name, fn, modality="demo", **info)

        @staticmethod
        @hookimpl
        def polydiff_register_benchmarks(register):
            register(task.name, task, modality="demo", suites=["smoke"])

    return Plugin


def report_of(plugin, **kwargs) -> ConformanceReport:
    return check_plugin(plugin, name="demo_plugin", raise_on_failure=False, **kwargs)


def assert_finding(rep: ConformanceReport, check: str, component: str, *fix_words: str):
    """The report has a ``check`` finding on ``component`` whose fix says ``fix_words``; the
    error message names the plugin, the component and the fix."""
    assert not rep.ok
    hits = [f for f in rep.findings if f.check == check and f.component == component]
    assert hits, f"no [{check}] finding on {component}; report:\n{rep}"
    assert any(all(w in f.fix for w in fix_words) for f in hits), f"fix lacks {fix_words}:\n{rep}"
    msg = str(ConformanceError(rep))
    assert "'demo_plugin'" in msg and component in msg and "fix:" in msg and fix_words[0] in msg


# -- the conforming plugin ------------------------------------------------------------------------
def test_conforming_plugin_passes_every_check(tmp_path):
    rep = check_plugin(make_plugin(), name="demo_plugin", tmp_dir=tmp_path)
    assert rep.ok and not rep.skipped, rep.skipped
    ran = {check for check, _ in rep.passed}
    assert ran == set(CHECKS)
    assert ("equivariance", "modality 'demo'") in rep.passed
    assert ("benchmark", "benchmark 'demo/smoke'") in rep.passed
    # the process-wide manager is restored: the throwaway plugin is not installed
    assert "demo" not in get_plugins().registry("modality")


def test_checks_and_skip_select_what_runs():
    rep = report_of(make_plugin(), checks=["components", "sampling"])
    assert {c for c, _ in rep.passed} == {"components", "data", "network", "sampling"}
    rep = report_of(make_plugin(), skip=["benchmark", "equivariance", "metrics"])
    assert not {"benchmark", "equivariance", "metrics"} & {c for c, _ in rep.passed}
    with pytest.raises(ValueError, match="unknown conformance check"):
        check_plugin(make_plugin(), checks=["colate"])
    with pytest.raises(TypeError, match="unknown conformance option"):
        check_plugin(make_plugin(), name="demo_plugin", modality_options={"demo": {"datset_options": {}}})


def test_failure_raises_one_plugin_error_listing_every_finding():
    class Unnamed(Demo):
        name = "demo"
        default_metrics = ("demo_spread", "demo_missing")

    plugin = make_plugin(modality=Unnamed, metrics=(("spread", demo_spread, {}),))
    with pytest.raises(PluginError) as err:
        check_plugin(plugin, name="demo_plugin")
    rep = err.value.report
    assert isinstance(err.value, ConformanceError) and len(rep.findings) >= 3
    text = str(err.value)
    assert text.startswith(f"plugin 'demo_plugin' fails {len(rep.findings)} conformance checks")
    for f in rep.findings:
        assert f.component in text and f.fix in text


# -- one deliberately broken plugin per fault --------------------------------------------------------
def test_collate_missing_for_dict_items():
    def dict_points(size: int = 8, seed: int = 0):
        return [{"points": p} for p in demo_points(size, seed)]

    class NoCollate(Demo):
        collate = Modality.collate

        def fit(self, dataset):
            self.config["n_points"] = int(dataset[0]["points"].shape[0])

    rep = report_of(make_plugin(modality=NoCollate, dataset=dict_points))
    assert_finding(rep, "data", "modality 'demo'", "override Modality.collate", "(dict)")
    assert ("sampling", "modality 'demo'", "needs data, network, which failed") in rep.skipped


def test_decode_returning_the_wrong_count():
    class ShortDecode(Demo):
        def decode(self, x, cond):
            return [p for p in x[:-1]]

    rep = report_of(make_plugin(modality=ShortDecode))
    assert_finding(rep, "sampling", "modality 'demo'", "one domain object per sample")
    assert "decode returned 3 objects for 4 sampled states" in str(rep)
    # what needs the decoded samples is skipped; what needs only sample_raw still runs
    assert ("files", "modality 'demo'", "needs sampling, which failed") in rep.skipped
    assert ("save_load", "modality 'demo'") in rep.passed


def test_sampling_that_depends_on_the_batch():
    class BatchNet(DemoNet):
        def forward(self, x, time, cond=None):  # batch statistics leak between samples
            return super().forward(x, time, cond) + x.mean(0, keepdim=True)

    rep = report_of(make_plugin(network=BatchNet), checks=["batch_independence"])
    assert_finding(rep, "batch_independence", "modality 'demo'", "rng argument", "cross-sample")


def test_registered_name_differs_from_the_class_name():
    class Renamed(Demo):
        name = "demo2"

    rep = report_of(make_plugin(modality=Renamed))
    assert_finding(rep, "components", "modality 'demo'", "set `name = 'demo'`")
    # the manager refuses the plugin, so nothing runs (and its refusal is not reported twice)
    assert [f.check for f in rep.findings] == ["components"]


def test_metric_without_direction_and_without_modality_prefix():
    metrics = (("demo_spread", demo_spread, {}), ("spread", demo_spread, {"higher_is_better": True}))
    rep = report_of(make_plugin(metrics=metrics), checks=["components"])
    assert_finding(rep, "components", "metric 'demo_spread'", "higher_is_better=True | False | None")
    assert_finding(rep, "components", "metric 'spread'", "'demo_spread'")


def test_network_ignoring_cond():
    class NoCond(DemoNet):
        def forward(self, x, time):
            return super().forward(x, time)

    rep = report_of(make_plugin(network=NoCond))
    assert_finding(rep, "components", "network 'demo_net'", "forward(self, x, time, cond=None)")


def test_write_read_round_trip_losing_samples():
    class Lossy(Demo):
        def write(self, samples, path):
            return super().write(samples[:-1], path)

    rep = report_of(make_plugin(modality=Lossy), checks=["files"])
    assert_finding(rep, "files", "modality 'demo'", "write must store every sample")
    assert "wrote 4 samples but read back 3" in str(rep)


def test_write_read_round_trip_changing_what_metrics_read():
    class WrongUnits(Demo):
        def read(self, path):  # the files hold Å, the reader takes them for nm
            return [p / 10 for p in super().read(path)]

    rep = report_of(make_plugin(modality=WrongUnits), checks=["files", "metrics"])
    assert_finding(rep, "files", "modality 'demo'", "write must store everything the metrics read")


def test_equivariance_declared_but_broken():
    class Biased(DemoNet):
        def __init__(self, hidden: int = 8):
            super().__init__(hidden)
            self.bias = nn.Parameter(torch.tensor([0.5, -0.25]))

        def forward(self, x, time, cond=None):  # a fixed direction: not rotation-equivariant
            return super().forward(x, time, cond) + self.bias

    rep = report_of(make_plugin(network=Biased), checks=["equivariance"])
    assert_finding(rep, "equivariance", "network 'demo_net'", "remove 'rotation' from equivariance")
    assert "permutation" not in str(rep)  # a per-point bias is still permutation-equivariant


def test_permutation_equivariance_declared_but_broken():
    class Indexed(DemoNet):
        def forward(self, x, time, cond=None):  # positional embedding along the set axis
            return super().forward(x, time, cond) + 0.1 * torch.arange(x.shape[1], dtype=x.dtype)[:, None]

    rep = report_of(make_plugin(network=Indexed), checks=["equivariance"])
    assert_finding(rep, "equivariance", "network 'demo_net'", "remove 'permutation' from equivariance")


def test_rotation_declared_without_a_centred_space():
    class Uncentred(Demo):
        def space(self, cond):
            from polydiff.spaces import MaskedSpace

            return MaskedSpace(cond["mask"])

    rep = report_of(make_plugin(modality=Uncentred), checks=["equivariance"])
    assert_finding(rep, "equivariance", "modality 'demo'", "ZeroCoMSpace")


def test_state_kept_outside_config_breaks_save_load():
    class Hidden(Demo):
        def fit(self, dataset):
            self.n_points = int(dataset[0].shape[0])  # a data statistic the checkpoint does not carry

        def sampling_request(self, n, cond, rng):
            k = getattr(self, "n_points", 3)
            return (k, 2), {"mask": torch.ones(n, k)}

    rep = report_of(make_plugin(modality=Hidden), checks=["save_load"])
    assert_finding(rep, "save_load", "modality 'demo'", "Modality.config")


def test_config_that_is_not_json():
    class TensorConfig(Demo):
        def fit(self, dataset):
            self.config["mean"] = torch.stack(list(dataset)).mean(0)

    rep = report_of(make_plugin(modality=TensorConfig), checks=["data"])
    assert_finding(rep, "data", "modality 'demo'", "str/number/bool/None/list/dict")


def test_metric_crashing_on_decoded_samples():
    def fragile(samples, reference=None, **_):
        return float(samples.mean())  # samples are a list, not a tensor

    metrics = (
        ("demo_spread", demo_spread, {"higher_is_better": None}),
        ("demo_mean", fragile, {"higher_is_better": None}),
    )
    rep = report_of(make_plugin(metrics=metrics), checks=["metrics"])
    assert_finding(rep, "metrics", "metric 'demo_mean'", "objects decode() returns")


def test_metric_returning_nan():
    metrics = (("demo_nan", lambda s, reference=None, **_: math.nan, {"higher_is_better": False}),)

    class NanDefault(Demo):
        default_metrics = ("demo_nan",)

    rep = report_of(make_plugin(modality=NanDefault, metrics=metrics), checks=["metrics"])
    assert_finding(rep, "metrics", "metric 'demo_nan'", "finite float")


def test_metric_refusing_the_kit_samples_is_not_applicable():
    def needs_labels(samples, reference=None, **_):
        raise ValueError("needs labelled samples")

    metrics = (
        ("demo_spread", demo_spread, {"higher_is_better": None}),
        ("demo_acc", needs_labels, {"higher_is_better": True}),
    )
    rep = report_of(make_plugin(metrics=metrics), checks=["metrics"])
    assert rep.ok
    assert any(s[:2] == ("metrics", "metric 'demo_acc'") and "needs labelled samples" in s[2] for s in rep.skipped)


def test_registration_hook_that_raises():
    class Raising:
        @staticmethod
        @hookimpl
        def polydiff_register_datasets(register):
            raise ImportError("no module named 'h5py'")

    rep = report_of(Raising)
    f = rep.findings[0]
    assert (f.check, f.component) == ("registration", "plugin 'demo_plugin'") and len(rep.findings) == 1
    assert "polydiff_register_datasets raised ImportError" in f.message and "must not fail" in f.fix


def test_misspelt_hook():
    class Typo:
        @staticmethod
        @hookimpl
        def polydiff_register_metric(register):
            pass

    rep = report_of(Typo)
    assert_finding(rep, "registration", "plugin 'demo_plugin'", "polydiff.hookspecs")
    assert "polydiff_register_metrics" in str(rep)  # the manager's "did you mean"


def test_benchmark_rows_with_an_unregistered_metric():
    def bad_rows(ctx):
        rows = _run_task(ctx)
        rows[0]["metrics"] = {"demo_unknown": 1.0}
        return rows

    task = BenchmarkTask(name="demo/smoke", modality="demo", model="demo_net", run=bad_rows)
    rep = report_of(make_plugin(task=task), checks=["benchmark"])
    assert_finding(rep, "benchmark", "benchmark 'demo/smoke'", "registered metric names")
    assert "metric 'demo_unknown' is not registered" in str(rep)


# -- helpers and check_modality ------------------------------------------------------------------------
def test_random_orthogonal_is_a_rotation_or_a_reflection():
    g = torch.Generator().manual_seed(0)
    for k in (2, 3):
        for proper in (True, False):
            q = random_orthogonal(k, g, proper)
            assert torch.allclose(q @ q.T, torch.eye(k, dtype=q.dtype), atol=1e-12)
            assert torch.linalg.det(q).item() == pytest.approx(1.0 if proper else -1.0)


def test_check_modality_uses_the_installed_plugins(tmp_path):
    from polydiff_pointcloud.modality import PointCloudModality

    rep = check_modality(
        PointCloudModality,
        checks=["sampling", "batch_independence", "save_load", "equivariance"],
        dataset_options={"size": 6, "n_points": 5},
        network_kwargs={"hidden": 8, "layers": 1},
        equivariance=("permutation",),
        tmp_dir=tmp_path,
    )
    assert rep.plugin == "pointcloud" and ("equivariance", "modality 'pointcloud'") in rep.passed
    with pytest.raises(TypeError, match="Modality subclass"):
        check_modality(PointCloudModality())


def test_core_plugin_conforms():
    rep = check_plugin("core")
    assert ("components", "sampler 'dpmpp_2m'") in rep.passed
    assert ("benchmark", "plugin 'core'", "the plugin registers no benchmark task") in rep.skipped


def test_unknown_conformance_keys_are_reported():
    class Typo(Demo):
        conformance = {"dataset_option": {"size": 6}}

    rep = report_of(make_plugin(modality=Typo), checks=["data"])
    assert_finding(rep, "components", "modality 'demo'", "ModalityOptions", "dataset_options")


def test_with_plugins_loads_what_a_plugin_builds_on():
    class Borrowing(Demo):
        default_network = "pointcloud_deepsets"
        conformance = {"dataset_options": {"size": 6}, "network_kwargs": {"hidden": 8, "layers": 1}}
        equivariance = ("permutation",)

    class Plugin(make_plugin(modality=Borrowing)):
        polydiff_register_networks = None  # uses the example plugin's network

    rep = report_of(Plugin, checks=["components", "equivariance"])
    assert_finding(rep, "components", "modality 'demo'", "default_network")
    rep = report_of(Plugin, checks=["components", "equivariance"], with_plugins=["pointcloud"])
    assert rep.ok, str(rep)
