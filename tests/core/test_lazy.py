"""Deferred imports: plugin packages serve their public names from submodules on first use."""

import importlib
import subprocess
import sys

import pytest

from polydiff.lazy import lazy_exports

PLUGINS = ["audio", "image", "molecule", "protein", "video"]


@pytest.mark.parametrize("plugin", PLUGINS)
def test_every_public_name_of_a_plugin_resolves(plugin):
    pkg = importlib.import_module(f"polydiff.plugins.{plugin}")
    assert pkg.__all__, plugin
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
        assert name in dir(pkg)
    with pytest.raises(AttributeError, match="public names"):
        pkg.no_such_name  # noqa: B018


def test_importing_polydiff_imports_no_plugin_submodule_or_optional_library():
    code = (
        "import sys, polydiff, polydiff.plugins.molecule as m, polydiff.plugins.audio as a\n"
        "loaded = [k for k in sys.modules if k.startswith('polydiff.plugins.') and k.count('.') > 2]\n"
        "heavy = [k for k in ('rdkit', 'e3nn', 'Bio', 'soundfile', 'torchaudio', 'matplotlib', 'PIL', 'sklearn')"
        " if k in sys.modules]\n"
        "print(loaded, heavy)\n"
        "m.write_sdf\n"
        "assert 'polydiff.plugins.molecule.io' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []", out.stdout


def test_lazy_exports_caches_the_value_in_the_package(tmp_path, monkeypatch):
    pkg = tmp_path / "lazypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from polydiff.lazy import lazy_exports\n"
        "__getattr__, __dir__, __all__ = lazy_exports(__name__, {'sub': ['f']})\n"
    )
    (pkg / "sub.py").write_text("def f():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("lazypkg")
    assert "lazypkg.sub" not in sys.modules and mod.__all__ == ["f"]
    assert mod.f() == 42 and "f" in vars(mod)
    get, _, public = lazy_exports("lazypkg", {})
    with pytest.raises(AttributeError):
        get("f")
    assert public == []
