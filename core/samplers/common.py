"""Helpers shared by the sampler functions: grids as Python floats, state precision.

Precision rule (EDM's habit): the σ̃ grid and every step coefficient are float64 Python
numbers; the state is updated in the dtype it arrives in, except half precision
(float16/bfloat16), which is promoted to float32 so that a bf16/fp16 network does not
round the ODE state at every step. The result is returned in that working dtype.
"""

from __future__ import annotations

import torch

from ..spaces import EuclideanSpace

HALF = (torch.float16, torch.bfloat16)


def grid_floats(sigmas) -> list[float]:
    """The σ̃ grid as float64 Python numbers; checks it is decreasing and ends at 0."""
    s = [float(v) for v in torch.as_tensor(sigmas, dtype=torch.float64).flatten()]
    if len(s) < 2:
        raise ValueError("a sigma grid needs at least 2 entries (σ̃₀ … 0)")
    if any(b >= a for a, b in zip(s[:-1], s[1:])) or s[-1] < 0:
        raise ValueError("the sigma grid must be strictly decreasing and non-negative")
    return s


def working_state(x: torch.Tensor) -> torch.Tensor:
    """``x`` in its working precision (half → float32)."""
    return x.float() if x.dtype in HALF else x


def as_state(x0: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A denoiser output cast to the state's dtype."""
    return x0 if x0.dtype == like.dtype else x0.to(like.dtype)


def space_or_default(space):
    return EuclideanSpace() if space is None else space


def need_rng(rng, name: str):
    if rng is None:
        raise ValueError(f"sampler {name!r} is stochastic: pass rng (a polydiff.rng.SampleRNG)")
    return rng


def denoise(denoiser, x, s: float, i: int, callback):
    """D(x, σ̃) in the state's dtype, reported to ``callback(i, σ̃, x, x̂₀)``."""
    x0 = as_state(denoiser(x, s), x)
    if callback is not None:
        callback(i, s, x, x0)
    return x0
