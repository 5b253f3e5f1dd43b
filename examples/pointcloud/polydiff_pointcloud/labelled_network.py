"""A permutation-equivariant DeepSets denoiser for labelled point sets (a mixed network)."""

from __future__ import annotations

import math

import torch
from torch import nn


class LabelledDeepSets(nn.Module):
    """``forward(state, time [B], cond) -> {"pos": [B, N, 2], "label": [B, N, K]}``.

    ``state["pos"]`` ``[B, N, 2]``: the preconditioned noisy positions; ``state["label"]``
    ``[B, N]`` long: the noisy labels (``num_states`` indices, the mask token included);
    ``time``: t ∈ [0, 1]. A per-point MLP fed with the position, its squared norm, the label's
    embedding, a masked mean-pooled set context and a sinusoidal embedding of t; no operation
    mixes samples, and points enter symmetrically (permutation-equivariant).
    """

    def __init__(self, hidden: int = 128, layers: int = 3, num_states: int = 3, num_classes: int = 2):
        super().__init__()
        self.freqs = nn.Parameter(torch.exp(torch.linspace(0, math.log(200.0), 16)), requires_grad=False)
        self.label_emb = nn.Embedding(num_states, hidden)
        self.inp = nn.Linear(3 + 32, hidden)
        self.blocks = nn.ModuleList(nn.Linear(2 * hidden, hidden) for _ in range(layers))
        self.pos_out = nn.Linear(hidden, 2)
        self.label_out = nn.Linear(hidden, num_classes)

    def forward(self, state, time, cond=None):
        pos, label = state["pos"], state["label"]
        mask = cond["mask"].unsqueeze(-1).to(pos.dtype) if cond and "mask" in cond else torch.ones_like(pos[..., :1])
        e = time[:, None] * self.freqs[None]
        temb = torch.cat([e.sin(), e.cos()], -1)[:, None].expand(-1, pos.shape[1], -1)
        feats = torch.cat([pos, (pos**2).sum(-1, keepdim=True), temb], -1)
        h = torch.nn.functional.silu(self.inp(feats) + self.label_emb(label))
        for blk in self.blocks:
            ctx = (h * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
            h = h + torch.nn.functional.silu(blk(torch.cat([h, ctx.expand_as(h)], -1)))
        return {"pos": self.pos_out(h) * mask, "label": self.label_out(h)}
