"""Multistep exponential-integrator samplers (DPM-Solver++ family, Lu et al. 2022)."""
from __future__ import annotations

import math

from ..spaces import EuclideanSpace


def sample_dpmpp_2m(denoiser, x, sigmas, *, space=None, rng=None, callback=None):
    """DPM-Solver++(2M): data prediction, 2nd-order multistep in λ = −log σ̃.

    x' = (σ'/σ)·x − (e^{−h} − 1)·D̃, D̃ = (1 + 1/(2r))·D_i − 1/(2r)·D_{i−1}, r = h_{i−1}/h_i;
    the first step and the final step to σ = 0 are first order.
    """
    space = space or EuclideanSpace()
    s_list = [float(v) for v in sigmas]
    x0_prev, h_prev = None, None
    for i in range(len(s_list) - 1):
        s, s_next = s_list[i], s_list[i + 1]
        x0 = denoiser(x, s)
        if callback is not None:
            callback(i, s, x, x0)
        if s_next == 0:
            x = x0
            break
        h = math.log(s / s_next)
        if x0_prev is None:
            d = x0
        else:
            r = h_prev / h
            d = x0 * (1 + 1 / (2 * r)) - x0_prev * (1 / (2 * r))
        x = space.project(x * (s_next / s) - d * math.expm1(-h))
        x0_prev, h_prev = x0, h
    return x
