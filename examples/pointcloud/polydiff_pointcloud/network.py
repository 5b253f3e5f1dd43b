"""A permutation-equivariant DeepSets denoiser (Zaheer et al. 2017) for point sets."""

from __future__ import annotations

import math

import torch
from torch import nn


class DeepSetsDenoiser(nn.Module):
    """``forward(x [B, N, 2], time [B], cond) -> [B, N, 2]``: per-point MLP fed with the
    point, a masked mean-pooled set context and a sinusoidal time embedding."""

    def __init__(self, hidden: int = 128, layers: int = 3, dim: int = 2):
        super().__init__()
        self.freqs = nn.Parameter(torch.exp(torch.linspace(0, math.log(100.0), 16)), requires_grad=False)
        self.inp = nn.Linear(dim + 32, hidden)
        self.blocks = nn.ModuleList(nn.Linear(2 * hidden, hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x, time, cond=None):
        mask = cond["mask"].unsqueeze(-1) if cond and "mask" in cond else torch.ones_like(x[..., :1])
        e = time[:, None] * self.freqs[None]
        temb = torch.cat([e.sin(), e.cos()], -1)[:, None].expand(-1, x.shape[1], -1)
        h = torch.nn.functional.silu(self.inp(torch.cat([x, temb], -1)))
        for blk in self.blocks:
            ctx = (h * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
            h = h + torch.nn.functional.silu(blk(torch.cat([h, ctx.expand_as(h)], -1)))
        return self.out(h) * mask
