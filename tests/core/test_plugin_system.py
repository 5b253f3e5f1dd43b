"""The plugin system: hooks, registries, discovery, allow-list, errors."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from polydiff import hookspecs
from polydiff.errors import PluginError, PluginNotFoundError, RegistryError
from polydiff.hookspecs import hookimpl
from polydiff.plugin_manager import PolydiffPlugins, get_plugins
from polydiff.registry import KINDS

ROOT = Path(__file__).resolve().parents[2]


def _hookspec_names():
    return sorted(n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("polydiff_"))


def _valid_components(suffix=""):
    """One component of every kind in its documented form: kind → (obj, info)."""
    from torch import nn

    from polydiff.bench.task import BenchmarkTask
    from polydiff.modality import Modality
    from polydiff.parameterization import X0Parameterization
    from polydiff.samplers import sample_euler
    from polydiff.schedules import EDMSchedule

    class DemoModality(Modality):
        name = f"demo_modality{suffix}"
        default_network = "demo_network"
        default_dataset = "demo_dataset"
        default_metrics = ()

        def sampling_request(self, n, cond, rng):
            return (2,), None

        def write(self, samples, path):
            return []

        def read(self, path):
            return []

    class DemoNet(nn.Module):
        def forward(self, x, time, cond=None):
            return x

    demo = {"modality": "demo"}
    return {
        "modality": (DemoModality, {}),
        "schedule": (type("DemoSchedule", (EDMSchedule,), {}), {}),
        "sampler": (sample_euler, {"deterministic": True, "order": 1}),
        "guidance": (lambda denoiser, *, model=None: denoiser, {}),
        "dataset": (lambda **options: [], demo),
        "metric": (lambda samples, reference=None: 0.0, {**demo, "higher_is_better": True}),
        "benchmark": (
            BenchmarkTask(name=f"demo_benchmark{suffix}", modality="demo", model="x", run=lambda ctx: []),
            {**demo, "suites": ["smoke"]},
        ),
        "network": (DemoNet, demo),
        "parameterization": (type("DemoParam", (X0Parameterization,), {}), {}),
    }


def _make_throwaway(suffix=""):
    """A plugin implementing every registration hook, each registering ``demo_<kind><suffix>``."""
    ns = {}
    comps = _valid_components(suffix)
    for hook, kind in hookspecs.REGISTRATION_HOOKS.items():

        def impl(register, _k=kind):
            obj, info = comps[_k]
            register(f"demo_{_k}{suffix}", obj, **info)

        impl.__name__ = hook
        ns[hook] = hookimpl(impl)
    return type("Throwaway", (), {k: staticmethod(v) for k, v in ns.items()})


@pytest.fixture
def pm():
    """A fresh manager with the installed plugins; throwaway plugins are removed after."""
    return PolydiffPlugins()


# One test per hookspec (datasette's habit): this dict must name every hookspec.
HOOK_TESTS = {}


def _hook_test(name):
    def deco(fn):
        HOOK_TESTS[name] = fn
        return fn

    return deco


def test_every_hookspec_has_a_test():
    assert sorted(HOOK_TESTS) == _hookspec_names()


def test_every_hookspec_is_documented_with_its_signature():
    doc = (ROOT / "examples" / "pointcloud" / "README.md").read_text()
    for name in _hookspec_names():
        sig = f"{name}{inspect.signature(getattr(hookspecs, name))}"
        assert sig in doc, f"'Writing a plugin' does not document {sig}"


def _check_registration(pm, hook, kind):
    pm.register(_make_throwaway(), name="throwaway")
    try:
        entry = pm.registry(kind).entry(f"demo_{kind}")
        assert entry.plugin == "throwaway" and entry.version == "local"
        assert entry.info == _valid_components()[kind][1]
    finally:
        pm.unregister("throwaway")
    assert f"demo_{kind}" not in pm.registry(kind)


for _hook, _kind in hookspecs.REGISTRATION_HOOKS.items():

    def _t(pm, _h=_hook, _k=_kind):
        _check_registration(pm, _h, _k)

    _t.__name__ = f"test_hook_{_hook}"
    globals()[_t.__name__] = _hook_test(_hook)(_t)


@_hook_test("polydiff_text_encoder")
def test_hook_polydiff_text_encoder(pm):
    from polydiff.text import TinyTextEncoder

    class Provider:
        @staticmethod
        @hookimpl
        def polydiff_text_encoder(name, options):
            return TinyTextEncoder(dim=8, layers=1, heads=2) if name == "demo_text" else None

    assert pm.pm.hook.polydiff_text_encoder(name="demo_text", options={}) is None
    pm.register(Provider, name="provider")
    try:
        assert pm.pm.hook.polydiff_text_encoder(name="demo_text", options={}).dim == 8
        assert pm.pm.hook.polydiff_text_encoder(name="tiny", options={"dim": 12}).dim == 12  # the core's answer
    finally:
        pm.unregister("provider")


@_hook_test("polydiff_add_hookspecs")
def test_hook_polydiff_add_hookspecs(pm):
    class ExtraSpecs:
        @hookspecs.hookspec(firstresult=True)
        def polydiff_demo_pick(self, x):
            """A plugin-defined hook."""

    class Provider:
        @staticmethod
        @hookimpl
        def polydiff_add_hookspecs(pm):
            pm.add_hookspecs(ExtraSpecs)

        @staticmethod
        @hookimpl
        def polydiff_demo_pick(x):
            return x * 2

    pm.register(Provider, name="provider")
    try:
        assert pm.pm.hook.polydiff_demo_pick(x=21) == 42
    finally:
        pm.unregister("provider")


def test_builtins_come_from_entry_points(pm):
    import importlib.metadata as md

    eps = {ep.name for ep in md.entry_points(group="polydiff")}
    assert {"core", "molecule", "protein", "audio", "image", "video"} <= eps
    assert {"core", "molecule", "protein", "audio", "image", "video"} <= set(pm.plugins)
    assert pm.registry("sampler").entry("dpmpp_2m").plugin == "core"


def test_duplicate_name_names_both_plugins_and_the_remedy(pm):
    pm.register(_make_throwaway(), name="first")
    with pytest.raises(PluginError) as err:
        pm.register(_make_throwaway(), name="second")
    msg = str(err.value)
    assert "'first'" in msg and "'second'" in msg and "POLYDIFF_PLUGINS" in msg and "Rename" in msg
    # the first plugin keeps its components; the second is gone
    assert pm.registry("sampler").entry("demo_sampler").plugin == "first" and "second" not in pm.plugins


def test_duplicate_of_builtin_names_core(pm):
    from polydiff.samplers import sample_euler

    class Clash:
        @staticmethod
        @hookimpl
        def polydiff_register_samplers(register):
            register("euler", sample_euler, deterministic=True, order=1)

    with pytest.raises(PluginError, match="sampler 'euler' of plugin 'clash' is skipped: plugin 'core'"):
        pm.register(Clash, name="clash")
    assert pm.registry("sampler").entry("euler").plugin == "core"


def test_unknown_name_lists_installed(pm):
    with pytest.raises(RegistryError) as err:
        pm.get("sampler", "no_such_sampler")
    msg = str(err.value)
    assert "no_such_sampler" in msg and "euler" in msg and "dpmpp_2m" in msg


def test_unknown_kind(pm):
    with pytest.raises(RegistryError, match="kinds"):
        pm.registry("flavour")


def test_misspelled_hook_is_refused_with_the_nearest_name(pm):
    class Typo:
        @staticmethod
        @hookimpl
        def polydiff_register_sampler(register):  # missing "s"
            pass

    with pytest.raises(
        PluginError,
        match="plugin 'typo'.*unknown hook polydiff_register_sampler.*did you mean polydiff_register_samplers",
    ):
        pm.register(Typo, name="typo")
    assert "typo" not in pm.plugins


def test_allow_list_restricts_loading():
    pm = PolydiffPlugins(allow=["core"])
    assert set(pm.plugins) == {"core"}
    assert "euler" in pm.registry("sampler")
    assert len(pm.registry("modality")) == 0
    with pytest.raises(PluginNotFoundError, match="POLYDIFF_PLUGINS"):
        pm.require_plugin("molecule")


def test_allow_list_env_var(monkeypatch):
    monkeypatch.setenv("POLYDIFF_PLUGINS", "core, pointcloud")
    pm = PolydiffPlugins()
    assert set(pm.plugins) <= {"core", "pointcloud"} and "core" in pm.plugins


def test_require_plugin_lists_installed(pm):
    with pytest.raises(PluginNotFoundError) as err:
        pm.require_plugin("polydiff-chemistry-xyz", needed_for="checkpoint x")
    assert "polydiff-chemistry-xyz" in str(err.value) and "core" in str(err.value)


def test_cli_plugins_json_covers_every_component():
    out = subprocess.run(
        [sys.executable, "-m", "polydiff.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    rows = json.loads(out.stdout)
    assert rows and all(set(r) == {"kind", "name", "plugin", "version"} for r in rows)
    kinds = {r["kind"] for r in rows}
    assert {"schedule", "sampler", "guidance", "modality", "dataset", "metric", "benchmark"} <= kinds
    # every registered component appears, exactly once per (kind, name)
    pm = get_plugins()
    expected = {(k, e.name) for k in KINDS for e in pm.registry(k)}
    assert {(r["kind"], r["name"]) for r in rows} == expected
    assert ("modality", "pointcloud") in expected


def test_cli_plugins_table():
    out = subprocess.run(
        [sys.executable, "-m", "polydiff.cli", "plugins"], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.splitlines()[0].split() == ["kind", "name", "plugin", "version"]
    assert "dpmpp_2m" in out.stdout


def test_pyproject_lists_every_package():
    from polydiff._toml import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for prefix, folder in cfg["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((prefix,) + rel))
    assert found == listed
