"""Global RNG states (torch CPU, CUDA, numpy, python ``random``) as plain tensors.

Training checkpoints store them in ``rng.safetensors`` (one key prefix per rank,
``rank0.torch_cpu`` …) so resuming continues every random stream exactly where it
stopped, without pickle. Shapes: ``torch_cpu`` uint8 [5056] (Mersenne Twister state),
``cuda`` uint8 [k] (Philox seed/offset of the current device), ``numpy_keys`` int64 [624],
``python_state`` int64 [625].
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch


def capture() -> dict[str, torch.Tensor]:
    """This process's RNG states as a dict of CPU tensors."""
    out = {"torch_cpu": torch.get_rng_state().clone()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state().clone()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    out["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    out["numpy_pos"] = torch.tensor([int(pos)], dtype=torch.int64)
    out["numpy_has_gauss"] = torch.tensor([int(has_gauss)], dtype=torch.int64)
    out["numpy_cached_gaussian"] = torch.tensor([float(cached)], dtype=torch.float64)
    version, internal, gauss_next = random.getstate()
    out["python_version"] = torch.tensor([int(version)], dtype=torch.int64)
    out["python_state"] = torch.tensor(list(internal), dtype=torch.int64)
    out["python_gauss_next"] = torch.tensor(
        [math.nan if gauss_next is None else float(gauss_next)], dtype=torch.float64
    )
    return out


def restore(state: dict[str, torch.Tensor]) -> None:
    """Set this process's RNG states from :func:`capture`'s output (raises ``ValueError``
    on a malformed state, before changing anything)."""
    need = (
        "torch_cpu",
        "numpy_keys",
        "numpy_pos",
        "numpy_has_gauss",
        "numpy_cached_gaussian",
        "python_version",
        "python_state",
        "python_gauss_next",
    )
    missing = [k for k in need if k not in state]
    if missing:
        raise ValueError(f"RNG state lacks {missing}")
    cpu = state["torch_cpu"]
    if cpu.dtype != torch.uint8 or cpu.ndim != 1:
        raise ValueError("torch_cpu RNG state must be a 1-d uint8 tensor")
    keys = state["numpy_keys"]
    if keys.numel() != 624 or keys.min() < 0 or keys.max() >= 2**32:
        raise ValueError("numpy RNG state must hold 624 32-bit keys")
    py = state["python_state"]
    if py.numel() != 625 or py.min() < 0 or py.max() >= 2**32:
        raise ValueError("python RNG state must hold 625 32-bit words")
    gn = float(state["python_gauss_next"].reshape(-1)[0])
    np_state = (
        "MT19937",
        keys.numpy().astype(np.uint32),
        int(state["numpy_pos"].reshape(-1)[0]),
        int(state["numpy_has_gauss"].reshape(-1)[0]),
        float(state["numpy_cached_gaussian"].reshape(-1)[0]),
    )
    py_state = (
        int(state["python_version"].reshape(-1)[0]),
        tuple(int(v) for v in py.tolist()),
        None if math.isnan(gn) else gn,
    )
    try:
        torch.set_rng_state(cpu.clone())
        np.random.set_state(np_state)
        random.setstate(py_state)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"RNG state rejected: {e}") from None
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].clone())


def seed_all(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and python ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
