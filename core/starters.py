"""Starter models shipped with the package (``polydiff.load("starter:molecule-qm9")``).

Each starter is a checkpoint folder under ``polydiff/starter_models/<name>/`` with a
``MODEL_CARD.md`` (data, recipe, size, metrics as measured, limits). They are trained by
the recipes in ``examples/recipes/`` with polydiff's own trainer; nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

ROOT = Path(__file__).resolve().parent / "starter_models"

#: modality → its default starter
DEFAULT_STARTER = {
    "molecule": "molecule-qm9",
    "protein": "protein-domains",
    "audio": "audio-notes",
    "image": "image-mnist",
    "video": "video-moving-digits",
}


def available() -> list[str]:
    """Names of the starters present in this installation."""
    if not ROOT.exists():
        return []
    return sorted(p.name for p in ROOT.iterdir() if (p / "config.json").exists())


def starter_path(name: str) -> Path:
    """The checkpoint folder of starter ``name`` (or of a modality's default starter)."""
    name = DEFAULT_STARTER.get(name, name)
    path = ROOT / name
    if not (path / "config.json").exists():
        have = ", ".join(available()) or "(none)"
        raise CheckpointError(f"no starter model {name!r} in this installation; starters: {have}")
    return path


def generate(modality: str, n: int = 16, *, seed: int = 0, device: str | None = "cpu", **sample_kwargs) -> list:
    """Sample ``n`` items from the modality's starter model (no training, no network)."""
    from . import load

    model = load(f"starter:{modality}", device=device)
    return model.sample(n, seed=seed, **sample_kwargs)
