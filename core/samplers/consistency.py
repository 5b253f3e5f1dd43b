"""Multistep consistency sampling (Song et al. 2023, "Consistency Models", Algorithm 1).

A consistency model f(x̃, σ̃) maps any point of a PF-ODE trajectory to its origin, so one
evaluation at σ̃_max is a sample; more steps alternate "denoise to x̂₀" with "re-noise to the
next, smaller σ̃". The denoiser passed in is the student's ``D(x̃, σ̃)`` (a
``consistency_*`` parameterisation, :mod:`polydiff.distill`); the grid lists where it is
evaluated, e.g. ``[σ̃_max, τ, 0]`` for two steps.
"""

from __future__ import annotations

from .common import denoise, grid_floats, need_rng, space_or_default, working_state


def sample_consistency(denoiser, x, sigmas, *, space=None, rng=None, callback=None):
    """x: ``[B, ...]`` at σ̃ = sigmas[0] (noise·σ̃_max); returns ``[B, ...]`` at σ̃ = 0.

    For each i: x̂₀ = D(x, σ̃_i); if σ̃_{i+1} > 0 the next state is x̂₀ + σ̃_{i+1}·z with fresh
    noise z from ``space`` (needs ``rng`` then), else x̂₀ is the sample. NFE = len(sigmas) − 1;
    one step is deterministic.
    """
    space, s = space_or_default(space), grid_floats(sigmas)
    x = working_state(x)
    for i in range(len(s) - 1):
        x0 = denoise(denoiser, x, s[i], i, callback)
        if s[i + 1] == 0:
            return x0
        z = space.randn_like(x0, need_rng(rng, "consistency (more than one step)"))
        x = space.project(x0 + z * s[i + 1])
    return x
