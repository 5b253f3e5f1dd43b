"""Exact-score Gaussian mixtures: the ground truth the sampler tests measure against.

The mixture, its closed-form denoiser, SW2 and the Monte-Carlo floor live in
:mod:`polydiff.bench.sampler_study` (the benchmark uses the same ground truth); this module
re-exports them and adds :class:`ExactNet`, an exact network of any parameterisation.
"""

from __future__ import annotations

import math

import torch

from polydiff.bench.sampler_study import GaussianMixture, circle_mixture, mc_floor, mixture_16d, sliced_w2

__all__ = ["GaussianMixture", "circle_mixture", "mc_floor", "mixture_16d", "sliced_w2", "ExactNet"]

F64 = torch.float64


class ExactNet(torch.nn.Module):
    """``net(x_t, time, cond)`` predicting ``kind`` (eps, x0, v, score, flow) exactly for a
    mixture, given the schedule the Denoiser uses (time → t via the schedule's inverse).
    A dummy parameter gives it a device for :class:`polydiff.model.DiffusionModel`."""

    def __init__(self, gmm: GaussianMixture, schedule, kind: str):
        super().__init__()
        self.gmm, self.schedule, self.kind = gmm, schedule, kind
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def t_of(self, time):
        from polydiff.schedules import DiscreteVPSchedule, EDMSchedule, VEGeometric

        tm = torch.as_tensor(time, dtype=F64)
        sch = self.schedule
        if isinstance(sch, DiscreteVPSchedule):
            return tm / (sch.num_train_timesteps - 1)
        if isinstance(sch, EDMSchedule):
            return torch.exp(4 * tm)
        if isinstance(sch, VEGeometric):
            return torch.log(torch.exp(tm) / sch.s0) / math.log(sch.s1 / sch.s0)
        if sch.name in ("vp_linear", "sub_vp_linear"):
            return tm / 999.0
        return tm

    def forward(self, x_t, time, cond=None):
        from polydiff.parameterization import _derivatives, from_x0

        t = self.t_of(time)
        a, s = self.schedule.alpha(t), self.schedule.sigma(t)
        sv = (s / a).reshape(-1)
        xt = x_t.to(F64)
        x0 = self.gmm.denoise(xt / a.reshape(-1, 1), sv)
        da = ds = None
        if self.kind == "flow":
            da, ds = _derivatives(self.schedule, t)
        return from_x0(self.kind, x0, xt, a, s, da, ds).to(x_t.dtype)
