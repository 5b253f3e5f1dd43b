"""Shared fixture of the recipe smoke tests: the recipes are scripts, not an importable package."""

import importlib.util
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "examples" / "recipes"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", RECIPES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def load_recipe():
    """``load_recipe(name)``: the module of ``examples/recipes/<name>.py``, loaded from its file."""
    return _load
