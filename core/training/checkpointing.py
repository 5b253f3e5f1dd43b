"""Periodic training checkpoints: atomic, hashed, pickle-free, resumable bit for bit.

Layout (``out_dir/checkpoints/``)::

    step_000000100/
      config.json          the model config (so DiffusionModel.load reads it) + "training_state":
                           step, data order, optimiser param groups/scalars, world size,
                           counters, the TrainConfig; sha256 of every file; content_sha256
      model.safetensors    network (+ modality modules), as DiffusionModel.save writes it
      ema.safetensors      EMA network
      optimizer.safetensors  optimiser state tensors, key ``state.<param index>.<name>``
      rng.safetensors      global RNG states of every rank, key ``rank<r>.<stream>``

A checkpoint is first written to ``.step_….partial/`` (every file atomically, config
last) and then renamed into place, so a kill at any moment leaves either the whole
checkpoint or none. Only the newest ``keep`` are kept. On resume the newest one whose
config and file hashes verify is used; a refused one is named with the reason
(:class:`CheckpointFallbackWarning`) and the one before it is tried.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..errors import CheckpointError
from . import rng_state
from .faults import CheckpointFallbackWarning

STEP_DIR = re.compile(r"^step_(\d{9,})$")
OPT_PREFIX = "state."


def step_dir_name(step: int) -> str:
    return f"step_{step:09d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of finished checkpoint folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = STEP_DIR.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


# -- optimiser state <-> tensors + JSON ------------------------------------------------------
def flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """``opt.state_dict()`` as (tensors, JSON): tensors under ``state.<i>.<name>``, scalars
    and ``param_groups`` in JSON."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{OPT_PREFIX}{int(pid)}.{k}"] = v
            else:
                scalars[f"{int(pid)}.{k}"] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of :func:`flatten_optimizer` (raises ``ValueError`` on malformed input)."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        parts = key.split(".", 2)
        if len(parts) != 3 or parts[0] + "." != OPT_PREFIX or not parts[1].isdigit():
            raise ValueError(f"unexpected optimizer tensor {key!r}")
        state.setdefault(int(parts[1]), {})[parts[2]] = v
    for key, v in meta.get("scalars", {}).items():
        pid, _, name = key.partition(".")
        if not pid.isdigit() or not name:
            raise ValueError(f"unexpected optimizer scalar {key!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"optimizer scalar {key!r} must be a finite number")
        if name in state.get(int(pid), {}):
            raise ValueError(f"optimizer value {key!r} is given twice")
        state.setdefault(int(pid), {})[name] = v
    groups = []
    for g in meta["param_groups"]:
        if (
            not isinstance(g, dict)
            or not isinstance(g.get("params"), list)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in g["params"])
        ):
            raise ValueError("optimizer param_groups must be objects with integer 'params'")
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


# -- writing ----------------------------------------------------------------------------------
def save_training_checkpoint(
    root: Path, *, step: int, model, optimizer, training_state: dict, ctx, keep: int = 3
) -> Path | None:
    """Collective: every rank calls it; rank 0 writes ``root/step_<step>``. Returns its path
    on rank 0 (``None`` elsewhere)."""
    rngs = ctx.all_gather_objects(rng_state.capture())
    final = None
    if ctx.is_main:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        opt_tensors, opt_meta = flatten_optimizer(optimizer)
        config = model.config()
        config["training_state"] = {
            **training_state,
            "step": int(step),
            "optimizer": opt_meta,
            "world_size": ctx.world_size,
        }
        files = {
            "model.safetensors": model.state_tensors(),
            "optimizer.safetensors": opt_tensors,
            "rng.safetensors": {f"rank{r}.{k}": v for r, st in enumerate(rngs) for k, v in st.items()},
        }
        if model.ema is not None:
            files["ema.safetensors"] = model.state_tensors(ema=True)
        name = step_dir_name(step)
        partial = root / f".{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        ckpt.write_checkpoint(partial, config, files)
        final = root / name
        old = None
        if final.exists():  # re-saving a step (after falling back past a corrupt copy)
            old = root / f".{name}.old-{os.getpid()}"
            os.replace(final, old)
        os.replace(partial, final)
        ckpt._fsync_dir(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        prune(root, keep)
    ctx.barrier()
    return final


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints and leftovers of interrupted writes."""
    for p in Path(root).iterdir():
        if p.name.startswith(".step_") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    if keep and keep > 0:
        for _, p in list_checkpoints(root)[:-keep]:
            shutil.rmtree(p, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------------
@dataclass
class TrainingCheckpoint:
    path: Path
    step: int
    config: dict
    state: dict  # config["training_state"]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    optimizer: dict
    rng: dict[str, torch.Tensor]


def _require(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise CheckpointError(f"{path / ckpt.CONFIG_NAME}: training_state {what}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_training_checkpoint(path: Path) -> TrainingCheckpoint:
    """Read and verify one checkpoint folder completely (config hash, every file hash,
    state schema) before anything is applied. Raises :class:`CheckpointError`."""
    path = Path(path)
    cfg = ckpt.read_config(path)
    files = cfg.get("files", {})
    st = _checked_training_state(cfg, path)
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
        if name not in files:
            raise CheckpointError(f"{path / ckpt.CONFIG_NAME}: lists no {name}")
    tensors = {name: ckpt.load_tensors(path, name, files[name]) for name in files}
    _check_rng_ranks(tensors["rng.safetensors"], st.get("world_size", 1), path)
    try:
        opt_sd = unflatten_optimizer(tensors["optimizer.safetensors"], st["optimizer"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: optimizer state is malformed ({e})") from None
    return TrainingCheckpoint(
        path,
        st["step"],
        cfg,
        st,
        tensors["model.safetensors"],
        tensors.get("ema.safetensors"),
        opt_sd,
        tensors["rng.safetensors"],
    )


def _checked_training_state(cfg: dict, path: Path) -> dict:
    """``cfg["training_state"]`` once its schema holds: step, data order, optimiser
    metadata and the counters."""
    st = cfg.get("training_state")
    if not isinstance(st, dict):
        raise CheckpointError(f"{path / ckpt.CONFIG_NAME}: training_state is missing (not a training checkpoint)")
    _require(_is_int(st.get("step")) and 0 <= st["step"] < 2**40, path, "has no valid 'step'")
    order = st.get("data_order")
    _require(
        isinstance(order, dict)
        and all(_is_int(order.get(k)) and 0 <= order[k] < 2**40 for k in ("epoch", "pos", "seed", "n_items"))
        and order["pos"] <= order["n_items"],
        path,
        "has no valid 'data_order'",
    )
    opt = st.get("optimizer")
    _require(
        isinstance(opt, dict)
        and isinstance(opt.get("param_groups"), list)
        and isinstance(opt.get("scalars", {}), dict),
        path,
        "has no valid 'optimizer'",
    )
    for k in ("skipped_nonfinite", "ema_updates", "world_size"):
        _require(_is_int(st.get(k, 0)) and 0 <= st.get(k, 0) < 2**40, path, f"field {k!r} is not a count")
    return st


def _check_rng_ranks(rng: dict[str, torch.Tensor], world: int, path: Path) -> None:
    """The RNG file holds ``rank<r>.<name>`` entries for exactly the ranks 0 … world − 1."""
    ranks = set()
    for key in rng:
        m = re.match(r"^rank(\d+)\.\w+$", key)
        if not m:
            raise CheckpointError(f"{path / 'rng.safetensors'}: unexpected entry {key!r}")
        ranks.add(int(m.group(1)))
    if ranks != set(range(world)):
        raise CheckpointError(
            f"{path / 'rng.safetensors'}: RNG states for ranks {sorted(ranks)}, expected 0..{world - 1}"
        )


def find_resumable(root: Path, log=None) -> TrainingCheckpoint | None:
    """The newest checkpoint under ``root`` that verifies; ``None`` if there is none at all.

    Each refused checkpoint is reported (warning + log event) with its reason; if
    checkpoints exist but every one is refused, :class:`CheckpointError` lists them all.
    """
    found = list_checkpoints(root)
    reasons = []
    for step, p in reversed(found):
        try:
            return read_training_checkpoint(p)
        except CheckpointError as e:
            reasons.append(f"{p.name}: {e}")
            msg = f"training checkpoint {p} refused ({e}); trying the previous one"
            warnings.warn(msg, CheckpointFallbackWarning, stacklevel=2)
            if log is not None:
                log.event("checkpoint_refused", path=str(p), step=step, reason=str(e))
    if found:
        raise CheckpointError(f"{root}: no usable training checkpoint; refused: " + " | ".join(reasons))
    return None


def _load_module(module: torch.nn.Module, tensors: dict, prefix: str, path: Path) -> None:
    sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the model ({prefix[:-1]}): {str(e)[:300]}") from None


def _same_kind(live, saved) -> bool:
    if isinstance(live, bool) or live is None:
        return saved is None or isinstance(saved, bool)
    if isinstance(live, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved)
    if isinstance(live, (tuple, list)):
        return (
            isinstance(saved, (tuple, list))
            and len(saved) == len(live)
            and all(_same_kind(a, b) for a, b in zip(live, saved))
        )
    return type(saved) is type(live)


def _check_param_groups(live: list, saved: list, path: Path) -> None:
    """Saved optimiser hyper-parameters must have the keys and value kinds of the live ones."""
    if len(live) != len(saved):
        raise CheckpointError(f"{path}: optimizer has {len(saved)} parameter groups, the model {len(live)}")
    for gl, gs in zip(live, saved):
        if gs.get("params") != gl["params"]:
            raise CheckpointError(
                f"{path}: optimizer parameter indices {str(gs.get('params'))[:60]} do not "
                f"match the model's {len(gl['params'])} parameters"
            )
        for k, v in gl.items():
            if k == "params":
                continue
            if k not in gs or not _same_kind(v, gs[k]):
                raise CheckpointError(f"{path}: optimizer setting {k!r} is missing or malformed ({gs.get(k)!r:.60})")


def _check_state_shapes(optimizer, state: dict, path: Path) -> None:
    """Every saved per-parameter tensor is a scalar (``step``) or has its parameter's shape."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for pid, entries in state.items():
        if not 0 <= pid < len(params):
            raise CheckpointError(f"{path}: optimizer state for parameter {pid}, the model has {len(params)}")
        for name, v in entries.items():
            if torch.is_tensor(v) and v.numel() != 1 and v.shape != params[pid].shape:
                raise CheckpointError(
                    f"{path}: optimizer state {pid}.{name} has shape {tuple(v.shape)}, "
                    f"the parameter {tuple(params[pid].shape)}"
                )
            if torch.is_tensor(v) and not v.is_floating_point():
                raise CheckpointError(f"{path}: optimizer state {pid}.{name} is not floating point")


def apply_training_checkpoint(ck: TrainingCheckpoint, model, optimizer, rank: int) -> bool:
    """Load weights, EMA, optimiser state and this rank's RNG states into the live objects.
    Returns whether RNG states for ``rank`` were present (a run resumed on more ranks than it
    was saved from keeps fresh seeds on the new ranks)."""
    _load_module(model.network, ck.model, "network.", ck.path)
    for name, mod in model.modality.modules().items():
        _load_module(mod, ck.model, f"modules.{name}.", ck.path)
    if ck.ema is not None:
        if model.ema is None:
            model.init_ema()
        _load_module(model.ema, ck.ema, "network.", ck.path)
    live_groups = optimizer.state_dict()["param_groups"]
    _check_param_groups(live_groups, ck.optimizer["param_groups"], ck.path)
    _check_state_shapes(optimizer, ck.optimizer["state"], ck.path)
    try:
        optimizer.load_state_dict(ck.optimizer)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{ck.path}: optimizer state does not match the model ({e})") from None
    prefix = f"rank{rank}."
    mine = {k[len(prefix) :]: v for k, v in ck.rng.items() if k.startswith(prefix)}
    if not mine:
        return False
    try:
        rng_state.restore(mine)
    except ValueError as e:
        raise CheckpointError(f"{ck.path}: RNG state of rank {rank} is malformed ({e})") from None
    return True
