"""Trained metric networks stored by recipe: the classifiers that score samples are looked
up by a hash of everything that determines them before they are trained.

A plugin's metric network (a digit classifier, a clip classifier …) is trained by a fixed,
seeded recipe on fixed data, so the trained weights are a function of that recipe. Like
FID's fixed Inception weights, storing them makes the metric the same function on every
run, and a fresh machine skips the training (the quick suite: ≈ 30 CPU-seconds).

:func:`load_or_train` looks for ``<name>-<key>.safetensors`` (``key``: SHA-256 of the
recipe as canonical JSON — bump the recipe's ``version`` when the training code changes)
first in the folders a plugin ships (``shipped``), then in the user cache
(``$POLYDIFF_CACHE`` or ``~/.cache/polydiff``, sub-folder ``metric_nets``). A miss trains
and stores the result in the cache (atomic write; weights and JSON metadata only, never a
pickle). ``POLYDIFF_METRIC_NETS=train`` always trains and stores nothing (for checking that
a stored network is what its recipe produces). Neither loading nor training moves the
caller's (CPU) random state, so what runs next does not depend on whether the network was
stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from .cache import cache_root
from .checkpoint import atomic_write_bytes
from .errors import PolydiffError

ENV_MODE = "POLYDIFF_METRIC_NETS"


def cache_dir() -> Path:
    """``$POLYDIFF_CACHE/metric_nets`` (default ``~/.cache/polydiff/metric_nets``)."""
    return cache_root() / "metric_nets"


def recipe_key(recipe: dict) -> str:
    """16 hex digits of the SHA-256 of ``recipe`` as canonical JSON (sorted keys)."""
    try:
        text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    except TypeError as e:
        raise PolydiffError(f"a metric network's recipe must be JSON (numbers, strings, lists, dicts): {e}") from e
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tensors_sha1(*tensors: torch.Tensor) -> str:
    """SHA-1 of the tensors' bytes in order (as stored, C order, on the CPU): data
    identity for a recipe; cast first to fix the dtype the hash sees."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def file_name(name: str, recipe: dict) -> str:
    return f"{name}-{recipe_key(recipe)}.safetensors"


def save(module: nn.Module, path: Path, recipe: dict, info: dict | None = None) -> Path:
    """Write ``module``'s state dict with the recipe and ``info`` (JSON) as metadata."""
    from safetensors.torch import save as st_save

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {"recipe": json.dumps(recipe, sort_keys=True), "info": json.dumps(info or {}, sort_keys=True)}
    atomic_write_bytes(Path(path), st_save(state, metadata=meta))
    return Path(path)


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(state dict, recipe, info) of a stored metric network."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    return state, json.loads(meta.get("recipe", "{}")), json.loads(meta.get("info", "{}"))


def _try_load(path: Path, recipe: dict, build: Callable[[], nn.Module]) -> tuple[nn.Module, dict] | None:
    state, stored_recipe, info = read(path)
    if stored_recipe != recipe:
        warnings.warn(f"{path}: stored recipe differs from the requested one; training instead", stacklevel=3)
        return None
    with torch.random.fork_rng(devices=[]):  # loading must not move the caller's RNG
        module = build()
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        warnings.warn(
            f"{path}: the weights do not fit the network as the code builds it now (bump the recipe's "
            f"'version' when the network changes); training instead. {str(e).splitlines()[0]}",
            stacklevel=3,
        )
        return None
    return module.eval(), info


def load_or_train(
    name: str,
    recipe: dict,
    build: Callable[[], nn.Module],
    train: Callable[[], tuple[nn.Module, dict]],
    *,
    shipped: Sequence[Path | str] = (),
) -> tuple[nn.Module, dict]:
    """The metric network ``name`` for ``recipe``: stored, or trained now (and stored).

    ``build()`` makes the untrained network (the architecture the stored weights load into);
    ``train()`` returns ``(trained network, info)`` with ``info`` a JSON dict kept beside the
    weights (e.g. held-out accuracy). Returns ``(network in eval mode, info)``.
    """
    fname = file_name(name, recipe)
    if os.environ.get(ENV_MODE, "") != "train":
        for folder in [*map(Path, shipped), cache_dir()]:
            path = folder / fname
            if path.is_file():
                got = _try_load(path, recipe, build)
                if got is not None:
                    return got
    with torch.random.fork_rng(devices=[]):  # nor may training: both paths leave it as it was
        module, info = train()
    if os.environ.get(ENV_MODE, "") != "train":
        try:
            save(module, cache_dir() / fname, recipe, info)
        except OSError as e:  # a read-only home must not stop the metric
            warnings.warn(f"could not store metric network {fname} in {cache_dir()}: {e}", stacklevel=2)
    return module.eval(), info
