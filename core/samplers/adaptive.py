"""Adaptive probability-flow ODE solver (Song et al. 2021 §4.3 used RK45): torchdiffeq's
Dormand–Prince 5(4) ("dopri5") with error control, in u = ln σ̃ where the PF-ODE reads
dx̃/du = x̃ − D(x̃, e^u) — smooth and well-scaled over many decades of σ̃.
"""

from __future__ import annotations

import math

import torch

from .common import denoise, grid_floats, space_or_default, working_state


def sample_ode_rk45(
    denoiser,
    x,
    sigmas,
    *,
    space=None,
    rng=None,
    callback=None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    stats: dict | None = None,
    per_sample: bool = False,
):
    """Integrate the PF-ODE from σ̃ = sigmas[0] to the last σ̃ > 0 of the grid adaptively,
    then return D there (the grid's interior points are not used).

    The error control takes a norm over the whole batch, so a sample's step sizes (and its
    result, within tolerance) depend on its batch-mates; ``per_sample=True`` integrates
    each sample on its own (batch-size independent, B× the Python overhead).
    ``stats`` (a dict), if given, receives ``nfe`` (network evaluations spent, summed).
    x: ``[B, ...]``; returns ``[B, ...]`` at σ̃ = 0.
    """
    from torchdiffeq import odeint

    if per_sample and x.shape[0] > 1:
        return _rk45_per_sample(denoiser, x, sigmas, space, callback, stats, rtol=rtol, atol=atol, method=method)
    space, s = space_or_default(space), grid_floats(sigmas)
    x = working_state(x)
    pos = [v for v in s if v > 0]
    s_hi, s_lo = pos[0], pos[-1]
    count = [0]

    def velocity(u, y):
        count[0] += 1
        return space.project(y - denoise(denoiser, y, math.exp(float(u)), count[0] - 1, callback))

    if s_hi > s_lo:
        u = torch.tensor([math.log(s_hi), math.log(s_lo)], dtype=x.dtype if x.dtype == torch.float64 else torch.float32)
        x = odeint(velocity, x, u, rtol=rtol, atol=atol, method=method)[-1]
    out = x if s[-1] > 0 else denoise(denoiser, x, s_lo, count[0], callback)
    if stats is not None:
        stats["nfe"] = count[0] + (0 if s[-1] > 0 else 1)
    return out


def _rk45_per_sample(denoiser, x, sigmas, space, callback, stats, **options):
    """:func:`sample_ode_rk45` on each sample of ``x`` ``[B, ...]`` alone (its own step sizes);
    ``stats["nfe"]`` sums the evaluations of all samples."""
    parts, total = [], 0
    for i in range(x.shape[0]):
        st: dict = {}
        parts.append(
            sample_ode_rk45(
                denoiser, x[i : i + 1], sigmas, space=_SliceSpace(space, i), callback=callback, stats=st, **options
            )
        )
        total += st["nfe"]
    if stats is not None:
        stats["nfe"] = total
    return torch.cat(parts)


class _SliceSpace:
    """A space restricted to sample ``i`` (for per-sample integration); masks are sliced."""

    def __init__(self, space, i: int):
        self.space, self.i = space, i

    def _sub(self):
        import copy

        sp = self.space
        if sp is None or not hasattr(sp, "mask"):
            return sp
        sub = copy.copy(sp)
        sub.mask = sp.mask[self.i : self.i + 1]
        return sub

    def project(self, x):
        sub = self._sub()
        return x if sub is None else sub.project(x)
