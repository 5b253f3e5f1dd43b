"""polydiff: a multimodal scientific diffusion toolkit.

>>> import polydiff
>>> polydiff.plugins_table()                     # what is installed
>>> model = polydiff.load("runs/qm9")            # a checkpoint folder
>>> samples = model.sample(8, sampler="dpmpp_2m", steps=50, seed=0)
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import plugins  # noqa: E402,F401  (the built-in plugins namespace, mapped from plugins/)
from .errors import CheckpointError, InputError, PluginNotFoundError, PolydiffError, RegistryError  # noqa: E402
from .hookspecs import hookimpl, hookspec  # noqa: E402
from .plugin_manager import get_plugins, registry  # noqa: E402


def load(path, *, device: str | None = "cpu", ema: bool = True):
    """Load a checkpoint folder (see :mod:`polydiff.checkpoint`) as a ``DiffusionModel``.

    ``"starter:NAME"`` loads one of the models shipped with the package.
    """
    from .model import DiffusionModel

    if isinstance(path, str) and path.startswith("starter:"):
        from .starters import starter_path

        path = starter_path(path.split(":", 1)[1])
    return DiffusionModel.load(path, device=device, ema=ema)


def save(model, path):
    """Save a ``DiffusionModel`` to a checkpoint folder (atomic, safetensors + JSON)."""
    return model.save(path)


def create(modality: str, **kwargs):
    """An untrained ``DiffusionModel`` of a registered modality (see ``DiffusionModel.create``)."""
    from .model import DiffusionModel

    return DiffusionModel.create(modality, **kwargs)


def generate(modality: str, n: int = 16, **kwargs):
    """Sample ``n`` items from a modality's shipped starter model (see :mod:`polydiff.starters`)."""
    from .starters import generate as _generate

    return _generate(modality, n, **kwargs)


def plugins_table() -> list[dict]:
    """Every registered component as ``{kind, name, plugin, version}``."""
    return get_plugins().components()


__all__ = [
    "load",
    "save",
    "create",
    "generate",
    "plugins_table",
    "get_plugins",
    "registry",
    "hookimpl",
    "hookspec",
    "PolydiffError",
    "RegistryError",
    "PluginNotFoundError",
    "CheckpointError",
    "InputError",
    "__version__",
]
