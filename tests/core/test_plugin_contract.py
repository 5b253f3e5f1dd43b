"""The plugin contract: each documented registration form works end to end for an
out-of-tree plugin built here, every listed mistake gives a message naming the plugin or
component and the fix, and one broken plugin leaves the others working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import polydiff
from polydiff.errors import PluginError, PolydiffError, RegistryError
from polydiff.hookspecs import hookimpl
from polydiff.modality import Modality
from polydiff.plugin_manager import PluginWarning, PolydiffPlugins, get_plugins, reset_plugins

sys.path.insert(0, str(Path(__file__).parent))
import trainer_worker as tw  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


# -- an installed third-party plugin, made in the test ------------------------------------------
def _install(tmp_path: Path, monkeypatch, name: str, source: str) -> Path:
    """Install module ``<name>_plugin`` with source ``source`` as a distribution whose entry
    point ``name`` is in group ``polydiff`` (a real ``.dist-info`` on ``sys.path``, so child
    processes find it too)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    mod = f"{name}_plugin"
    (site / f"{mod}.py").write_text(textwrap.dedent(source))
    info = site / f"{mod}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {mod}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[polydiff]\n{name} = {mod}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    reset_plugins()
    return site


@pytest.fixture(autouse=True)
def _fresh_manager():
    reset_plugins()
    yield
    reset_plugins()


WAVES = """
    import torch
    from torch import nn
    from polydiff.hookspecs import hookimpl
    from polydiff.modality import Modality


    class Waves(Modality):
        name = "waves"
        default_network = "waves_mlp"
        default_dataset = "waves_sines"
        default_metrics = ("waves_rms",)

        def sampling_request(self, n, cond, rng):
            return (8,), None

        def write(self, samples, path):
            return []

        def read(self, path):
            return []


    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(9, 8)

        def forward(self, x, time, cond=None):
            return self.lin(torch.cat([x, time[:, None]], dim=1))


    @hookimpl
    def polydiff_register_modalities(register):
        register("waves", Waves)


    @hookimpl
    def polydiff_register_networks(register):
        register("waves_mlp", MLP, modality="waves")
"""


def _run_cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "polydiff.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


# -- the documented forms work end to end -----------------------------------------------------
def _tiny_manager_with(plugin, name):
    pm = get_plugins()
    pm.register(tw.TinyPlugin(), name="tiny_train_test_plugin")
    pm.register(plugin, name=name)
    return pm


def test_sampler_registered_as_the_hookspec_documents_samples():
    calls = []

    def sample_halfway(denoiser, x, sigmas, *, space=None, rng=None, callback=None, damping: float = 1.0):
        """Euler with a damping option, counting its calls."""
        calls.append(damping)
        for i in range(len(sigmas) - 1):
            x0 = denoiser(x, float(sigmas[i]))
            x = x0 + (x - x0) * float(sigmas[i + 1] / sigmas[i])
        return x

    class SamplerPlugin:
        @staticmethod
        @hookimpl
        def polydiff_register_samplers(register):
            register("halfway", sample_halfway, deterministic=True, order=1, nfe_per_step=1, defaults={"damping": 0.5})

    _tiny_manager_with(SamplerPlugin, "sampler_plugin")
    model = tw.make_model()
    x = model.sample(3, sampler="halfway", steps=4, seed=0)
    assert len(x) == 3 and all(torch.isfinite(torch.as_tensor(v)).all() for v in x)
    assert calls == [0.5]
    model.sample(1, sampler="halfway", steps=2, damping=0.25)
    assert calls[-1] == 0.25
    with pytest.raises(PolydiffError, match="unexpected keyword.*'dampening'.*sampler 'halfway' also accepts damping"):
        model.sample(1, sampler="halfway", steps=2, dampening=0.25)


def test_third_party_guidance_is_used_by_model_sample_and_composes_after_cfg():
    seen = []

    def shift(denoiser, *, model=None, offset: float = 0.0):
        def guided(x, sigma, cond):
            seen.append(model is not None)
            return denoiser(x, sigma, cond) + offset

        return guided

    class GuidancePlugin:
        @staticmethod
        @hookimpl
        def polydiff_register_guidance(register):
            register("shift", shift)

    _tiny_manager_with(GuidancePlugin, "guidance_plugin")
    model = tw.make_model()
    base = model.sample_raw(2, sampler="euler", steps=1, seed=3)[0]
    moved = model.sample_raw(2, sampler="euler", steps=1, seed=3, guidance=("shift", {"offset": 5.0}))[0]
    # one Euler step to σ = 0 returns x̂₀: the guidance's offset lands exactly
    assert torch.allclose(moved, base + 5.0, atol=1e-5) and seen and all(seen)
    both = model.sample_raw(2, sampler="euler", steps=1, seed=3, guidance=[("cfg", 1.0), ("shift", {"offset": 5.0})])[0]
    assert torch.allclose(both, base + 5.0, atol=1e-5)
    with pytest.raises(PolydiffError, match="guidance 'shift': unknown option.*'scale'.*accepts: offset"):
        model.sample_raw(2, sampler="euler", steps=1, guidance=("shift", 2.0))
    with pytest.raises(RegistryError, match="unknown guidance 'shfit'.*did you mean 'shift'"):
        model.sample_raw(2, sampler="euler", steps=1, guidance="shfit")


def test_built_in_cfg_by_name_equals_the_scale_form():
    get_plugins().register(tw.TinyPlugin(), name="tiny_train_test_plugin")
    model = tw.make_model()
    a = model.sample_raw(2, sampler="euler", steps=3, seed=1, guidance=2.5)[0]
    b = model.sample_raw(2, sampler="euler", steps=3, seed=1, guidance=("cfg", 2.5))[0]
    c = model.sample_raw(2, sampler="euler", steps=3, seed=1, guidance=[("cfg", {"scale": 2.5})])[0]
    assert torch.equal(a, b) and torch.equal(a, c)
    with pytest.raises(PolydiffError, match="negative= has no effect"):
        model.sample_raw(2, sampler="euler", steps=3, negative={"cond_mask": torch.ones(2)})


def test_parameterization_registered_by_a_plugin_trains_and_samples():
    from polydiff.parameterization import Denoiser, Parameterization
    from polydiff.training import TrainConfig, train

    class HalfX0(Parameterization):
        """The network predicts x₀/2."""

        def to_x0(self, out, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
            return 2 * out

        def from_x0(self, x0, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
            return x0 / 2

    class ParamPlugin:
        @staticmethod
        @hookimpl
        def polydiff_register_parameterizations(register):
            register("half_x0", HalfX0)

    _tiny_manager_with(ParamPlugin, "param_plugin")
    net = tw.TinyMLP()
    den = Denoiser(net, polydiff.get_plugins().get("schedule", "edm")(), "half_x0")
    # the generic x₀-weight of an affine target: slope 1/2 → λ = 1/4
    assert torch.allclose(den.default_x0_weight(torch.tensor([0.3, 2.0])), torch.full((2,), 0.25, dtype=torch.float64))
    torch.manual_seed(0)
    model = polydiff.create(tw.TinyModality(), parameterization="half_x0", schedule="vp_linear")
    res = train(model, tw.make_dataset(), TrainConfig(steps=60, batch_size=16, lr=3e-3, progress=False, log_every=10))
    first, last = res.losses[0][1], res.losses[-1][1]
    assert last < first, (first, last)
    assert model.denoiser().kind == "half_x0"
    out = model.sample(2, sampler="euler", steps=5, seed=0)
    assert len(out) == 2 and torch.isfinite(torch.stack(out)).all()


BENCH = """
    from polydiff.bench.task import BenchmarkTask, make_row
    from polydiff.hookspecs import hookimpl


    def _run(ctx):
        (ctx.out_dir / "plot.png").write_bytes(b"")
        return [make_row("mybench/answer", modality="pointcloud", model="none", sampler="euler", nfe=1,
                         seed=ctx.seed, metrics={"answer": 42.0}, timing={"train_s": 0.0},
                         reference={"data": {"answer": 42.0}, "untrained": {"answer": 0.0}})]


    def make_task():
        return BenchmarkTask(name="mybench/answer", modality="pointcloud", model="none", run=_run, suites=("smoke",))


    @hookimpl
    def polydiff_register_benchmarks(register):
        register("mybench/answer", make_task, modality="pointcloud", suites=["smoke"])
"""


def test_benchmark_registered_as_a_factory_runs_in_the_suite(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "mybench", BENCH)
    entry = get_plugins().registry("benchmark").entry("mybench/answer")
    assert entry.plugin == "mybench" and entry.obj.name == "mybench/answer"
    suite = tmp_path / "suite.toml"
    suite.write_text('name = "contract"\nbudget = "smoke"\ntasks = ["mybench/*"]\n')
    proc = _run_cli("bench", "--suite", str(suite), "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["task"] for r in res["tasks"]] == ["mybench/answer"] and res["tasks"][0]["metrics"]["answer"] == 42.0


# -- every mistake of the issue gets a message naming the component and the fix -----------------
def _register_strict(plugin, name="broken"):
    return get_plugins().register(plugin, name=name)


def test_undecorated_misspelt_hook_is_named_with_the_nearest_hook():
    class Undecorated:
        @staticmethod
        def polydiff_register_modalitys(register):  # no decorator, misspelt
            pass

    with pytest.raises(
        PluginError, match="plugin 'broken'.*polydiff_register_modalitys.*did you mean polydiff_register_modalities"
    ):
        _register_strict(Undecorated)


def test_undecorated_hook_is_named_with_the_missing_decorator():
    class Undecorated:
        @staticmethod
        def polydiff_register_modalities(register):
            pass

    with pytest.raises(
        PluginError, match="plugin 'broken'.*polydiff_register_modalities is not decorated with @polydiff.hookimpl"
    ):
        _register_strict(Undecorated)


def _modality_plugin(cls, name="waves"):
    class P:
        @staticmethod
        @hookimpl
        def polydiff_register_modalities(register):
            register(name, cls)

    return P


class _GoodModality(Modality):
    name = "waves"
    default_network = "waves_mlp"
    default_dataset = "waves_sines"
    default_metrics = ()

    def sampling_request(self, n, cond, rng):
        return (4,), None

    def write(self, samples, path):
        return []

    def read(self, path):
        return []


def test_modality_name_mismatch_names_both_names():
    bad = type("Waves", (_GoodModality,), {"name": "wave"})
    with pytest.raises(
        PluginError, match="plugin 'broken': modality 'waves'.*name = 'wave' differs from the registered name 'waves'"
    ):
        _register_strict(_modality_plugin(bad))


def test_modality_missing_methods_and_attributes_are_refused_at_registration():
    class Bare(Modality):
        name = "waves"
        default_network = "waves_mlp"

    with pytest.raises(PluginError) as err:
        _register_strict(_modality_plugin(Bare))
    msg = str(err.value)
    assert "plugin 'broken': modality 'waves'" in msg
    assert "default_dataset must be a non-empty str" in msg
    assert "does not implement sampling_request(), write(), read()" in msg


def test_modality_without_collate_for_dict_items_says_to_implement_collate():
    with pytest.raises(PluginError, match="modality 'waves'.*items are dict.*implement collate"):
        _GoodModality().collate([{"x": torch.zeros(3)}, {"x": torch.zeros(3)}])
    assert _GoodModality().collate([torch.zeros(3), torch.ones(3)])["x"].shape == (2, 3)


def test_network_without_cond_is_refused_at_registration():
    class NoCond(nn.Module):
        def forward(self, x, time):
            return x

    class P:
        @staticmethod
        @hookimpl
        def polydiff_register_networks(register):
            register("nocond", NoCond, modality="waves")

    with pytest.raises(
        PluginError, match=r"network 'nocond': forward\(x, time\) must take \(x, time, cond\).*cond=None"
    ):
        _register_strict(P)


def test_old_sampler_spec_form_and_missing_info_name_the_documented_form():
    from polydiff.samplers import SAMPLERS, sample_euler

    class OldForm:
        @staticmethod
        @hookimpl
        def polydiff_register_samplers(register):
            register("mine", sample_euler, spec=SAMPLERS["euler"])

    with pytest.raises(
        PluginError,
        match=r"sampler 'mine': unknown keyword\(s\) spec.*register\(name, fn, deterministic=\.\.\., order=\.\.\.",
    ):
        _register_strict(OldForm)

    class NoInfo:
        @staticmethod
        @hookimpl
        def polydiff_register_samplers(register):
            register("mine", sample_euler)

    with pytest.raises(PluginError, match=r"sampler 'mine': missing keyword\(s\) deterministic, order"):
        _register_strict(NoInfo)


def test_metric_with_a_wrong_direction_and_dataset_without_modality_are_refused():
    class BadMetric:
        @staticmethod
        @hookimpl
        def polydiff_register_metrics(register):
            register("waves_rms", lambda s, reference=None: 0.0, modality="waves", higher_is_better="lower")

    with pytest.raises(PluginError, match="metric 'waves_rms': higher_is_better must be True, False or None"):
        _register_strict(BadMetric)

    class Unprefixed:
        @staticmethod
        @hookimpl
        def polydiff_register_metrics(register):
            register("rms", lambda s, reference=None: 0.0, modality="waves", higher_is_better=False)

    with pytest.raises(
        PluginError, match="metric 'rms': metric names are global: start it with its modality, e.g. waves_rms"
    ):
        _register_strict(Unprefixed)

    class NoDirection:
        @staticmethod
        @hookimpl
        def polydiff_register_metrics(register):
            register("waves_rms", lambda s, reference=None: 0.0, modality="waves")

    with pytest.raises(PluginError, match=r"metric 'waves_rms': missing keyword\(s\) higher_is_better"):
        _register_strict(NoDirection)

    class NoModality:
        @staticmethod
        @hookimpl
        def polydiff_register_datasets(register):
            register("waves_sines", lambda **o: [])

    with pytest.raises(PluginError, match=r"dataset 'waves_sines': missing keyword\(s\) modality"):
        _register_strict(NoModality)


def test_unknown_sample_keyword_names_it_and_what_sample_accepts():
    get_plugins().register(tw.TinyPlugin(), name="tiny_train_test_plugin")
    model = tw.make_model()
    with pytest.raises(
        PolydiffError, match="unexpected keyword.*'temperature'.*sample accepts sampler, steps.*guidance"
    ):
        model.sample(2, temperature=0.7)
    with pytest.raises(PolydiffError, match="not conditioned on text prompts"):
        model.sample(2, prompt="a soft flute")  # never silently ignored


def test_allow_list_without_core_hints_at_the_allow_list(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "waves", WAVES)
    monkeypatch.setenv("POLYDIFF_PLUGINS", "waves")
    reset_plugins()
    with pytest.raises(RegistryError) as err:
        polydiff.create("waves")
    msg = str(err.value)
    assert "unknown schedule 'edm'" in msg and "POLYDIFF_PLUGINS=waves restricts" in msg and "'core'" in msg


def test_typo_in_the_allow_list_is_an_error_naming_it(monkeypatch):
    monkeypatch.setenv("POLYDIFF_PLUGINS", "core,molecul")
    with pytest.raises(PluginError, match="POLYDIFF_PLUGINS names plugin.*not installed: molecul.*installed: core"):
        PolydiffPlugins()


CLASH = """
    from polydiff.hookspecs import hookimpl
    from waves_plugin import Waves, MLP


    @hookimpl
    def polydiff_register_modalities(register):
        register("waves", Waves)


    @hookimpl
    def polydiff_register_networks(register):
        register("zwaves_other_mlp", MLP, modality="waves")
"""


def test_name_clash_skips_only_the_later_plugins_component(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "waves", WAVES)
    _install(tmp_path, monkeypatch, "zwaves", CLASH)
    with pytest.warns(
        PluginWarning, match="modality 'waves' of plugin 'zwaves' is skipped: plugin 'waves'.*POLYDIFF_PLUGINS"
    ):
        pm = get_plugins()
    assert pm.registry("modality").entry("waves").plugin == "waves"
    assert pm.registry("network").entry("zwaves_other_mlp").plugin == "zwaves"  # its other component stays
    assert polydiff.create("waves").network_name == "waves_mlp"
    assert polydiff.create("molecule").modality.name == "molecule"


BROKEN_IMPORT = """
    raise ImportError("No module named 'nonexistent_dependency'")
"""


def test_plugin_that_fails_to_import_is_reported_and_skipped(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "broken", BROKEN_IMPORT)
    with pytest.warns(PluginWarning, match="plugin 'broken' cannot be loaded.*nonexistent_dependency"):
        pm = get_plugins()
    assert "broken" in pm.failed and "broken" not in pm.plugins
    assert polydiff.create("molecule").modality.name == "molecule"  # everything else keeps working
    from polydiff.bench.runner import load_suite, select_tasks

    names = {e.name for e in select_tasks(load_suite("quick"), None)}
    assert {"molecule_joint/qm9", "protein/domains50", "pointcloud/rings"} <= names
    with pytest.raises(RegistryError, match="a plugin failed to load: plugin 'broken' cannot be loaded"):
        pm.get("modality", "broken_modality")
    # the CLI lists it with its error
    proc = _run_cli("plugins")
    assert proc.returncode == 0 and "failed plugin broken: plugin 'broken' cannot be loaded" in proc.stdout
    rows = json.loads(_run_cli("plugins", "--json").stdout)
    assert {"kind": "failed-plugin", "name": "broken"}.items() <= next(r for r in rows if r["name"] == "broken").items()
    # a benchmark task of another plugin still runs in the suite (a child process rediscovers the plugins)
    suite = tmp_path / "suite.toml"
    suite.write_text('name = "isolation"\nbudget = "smoke"\ntasks = ["pointcloud/rings8"]\n')
    out = tmp_path / "out"
    proc = _run_cli("bench", "--suite", str(suite), "--out", str(out), "--device", "cpu", "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["task"] for r in json.loads((out / "results.json").read_text())["tasks"]] == ["pointcloud/rings8"]
    # strict mode (CI) turns it into an error
    monkeypatch.setenv("POLYDIFF_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'broken' cannot be loaded"):
        PolydiffPlugins()


def test_cli_errors_are_one_line_without_traceback_unless_debug(tmp_path):
    proc = _run_cli("train", "no_such_modality", "--out", str(tmp_path / "x"))
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Warning" not in ln]
    assert len(lines) == 1 and lines[0].startswith("polydiff train: error: unknown modality 'no_such_modality'")
    assert "Traceback" not in proc.stderr
    debug = _run_cli("--debug", "train", "no_such_modality", "--out", str(tmp_path / "x"))
    assert "Traceback" in debug.stderr and "RegistryError" in debug.stderr


def test_sample_raw_takes_an_explicit_initial_state_and_restores_training_mode():
    get_plugins().register(tw.TinyPlugin(), name="tiny_train_test_plugin")
    model = tw.make_model(dropout=0.5)  # dropout: eval mode makes sampling deterministic
    model.init_ema()
    model.network.train()
    model.ema.train()
    sig = model.sigma_grid(4)
    x_T = torch.randn(3, tw.DIM, generator=torch.Generator().manual_seed(0)) * float(sig[0])
    a = model.sample_raw(3, sampler="euler", sigmas=sig, x_T=x_T)[0]
    b = model.sample_raw(3, sampler="euler", sigmas=sig, x_T=x_T, seed=99)[0]  # the seed draws no noise here
    assert torch.equal(a, b)
    assert model.network.training and model.ema.training  # modes given back
    with pytest.raises(PolydiffError, match="x_init .* or x_T .*not both"):
        model.sample_raw(3, sampler="euler", sigmas=sig, x_T=x_T, x_init=x_T)
