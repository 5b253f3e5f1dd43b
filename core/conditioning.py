"""Conditioning dictionaries shared by networks, losses, guidance and samplers.

``cond`` is a dict of per-sample tensors (first axis = batch) or ``None``. Conventions:

- ``cond["mask"]``: ``[B, N]`` node mask of variable-size data (molecules, proteins).
- ``cond["cond_mask"]``: ``[B]`` float, 1 = use the conditioning, 0 = unconditional.
  Networks multiply their conditioning embedding by it (a learned null otherwise), which
  is what classifier-free guidance and CFG dropout switch.
- ``cond["label"]``: ``[B]`` long class labels; other keys are modality-specific.
"""

from __future__ import annotations

from typing import overload

import torch


def batch_size(cond: dict | None) -> int | None:
    if not cond:
        return None
    for v in cond.values():
        if torch.is_tensor(v):
            return v.shape[0]
    return None


def with_cond_mask(cond: dict | None, value: float | torch.Tensor, n: int | None = None) -> dict:
    """A copy of ``cond`` with ``cond_mask`` set (scalar → all samples)."""
    out = dict(cond or {})
    n = n if n is not None else batch_size(out)
    if n is None:
        raise ValueError("cannot infer the batch size of an empty cond")
    if not torch.is_tensor(value):
        dev = next((v.device for v in out.values() if torch.is_tensor(v)), None)
        value = torch.full((n,), float(value), device=dev)
    out["cond_mask"] = value.float()
    return out


def null_cond(cond: dict | None, n: int | None = None) -> dict:
    """Unconditional version of ``cond`` (structure such as ``mask`` kept)."""
    return with_cond_mask(cond, 0.0, n)


def requested_cond(cond: dict | None, n: int, device, like: dict | None = None) -> dict:
    """The conditional branch of classifier-free guidance: ``cond`` with ``cond_mask`` = 1
    where it has none; no request (None) is the null condition, shaped like ``like`` (a
    negative condition) when given so both branches have the same keys."""
    if cond is None:
        return to_device(null_cond(like, n), device)
    return cond if "cond_mask" in cond else to_device(with_cond_mask(cond, 1.0, n), device)


def cat_cond(a: dict | None, b: dict | None) -> dict | None:
    """Concatenate two cond dicts along the batch axis (keys must match)."""
    if a is None and b is None:
        return None
    if a is None or b is None:
        raise ValueError("cannot concatenate a cond dict with None")
    if set(a) != set(b):
        raise ValueError(f"cond keys differ: {sorted(a)} vs {sorted(b)}")
    return {k: torch.cat([a[k], b[k]]) if torch.is_tensor(a[k]) else a[k] for k in a}


def index_cond(cond: dict | None, idx) -> dict | None:
    if cond is None:
        return None
    return {k: (v[idx] if torch.is_tensor(v) else v) for k, v in cond.items()}


@overload
def to_device(cond: dict, device) -> dict: ...
@overload
def to_device(cond: None, device) -> None: ...
def to_device(cond: dict | None, device) -> dict | None:
    """``cond`` with its tensors moved to ``device`` (``None`` stays ``None``)."""
    if cond is None:
        return None
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in cond.items()}
