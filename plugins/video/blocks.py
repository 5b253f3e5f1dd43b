"""Small building blocks shared by the video denoisers.

Shapes: video tensors are ``[B, C, T, H, W]``; embeddings ``[B, E]``; ``time`` is the
network time ``[B]`` float32 (EDM c_noise = ¼ ln σ̃ by default).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(time: torch.Tensor, dim: int, max_freq: float = 1000.0) -> torch.Tensor:
    """``[B]`` → ``[B, dim]`` sin/cos features at log-spaced frequencies in [1, max_freq]
    (Vaswani et al. 2017 positional features, as in DDPM's time embedding)."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), half, device=time.device, dtype=torch.float32))
    ang = time.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
    return F.pad(emb, (0, dim - 2 * half))


def sincos_positions(n: int, dim: int, device=None) -> torch.Tensor:
    """``[n, dim]`` fixed sin/cos position features of the integer positions 0..n-1."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    ang = torch.arange(n, device=device, dtype=torch.float32)[:, None] * freqs[None]
    return F.pad(torch.cat([torch.sin(ang), torch.cos(ang)], dim=1), (0, dim - 2 * half))


class ConditionEmbedding(nn.Module):
    """Noise level + optional class label → one embedding ``[B, E]``.

    The class embedding is switched by ``cond["cond_mask"]`` (1 = use the label, 0 = a
    learned null embedding), the convention classifier-free guidance relies on
    (Ho & Salimans 2022).
    """

    def __init__(self, dim: int, n_classes: int = 0):
        super().__init__()
        self.dim, self.n_classes = dim, n_classes
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.SiLU(), nn.Linear(dim * 2, dim))
        if n_classes:
            self.label = nn.Embedding(n_classes, dim)
            self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, time: torch.Tensor, cond: dict | None, batch: int) -> torch.Tensor:
        emb = self.time_mlp(sinusoidal_embedding(time, self.dim).to(self.time_mlp[0].weight.dtype))
        if self.n_classes:
            lab = cond.get("label") if cond else None
            if lab is None:
                c = self.null.expand(batch, -1)
            else:
                lab = lab.long().clamp(0, self.n_classes - 1)
                m = cond.get("cond_mask")
                m = torch.ones(batch, device=emb.device) if m is None else m.to(emb.device)
                m = m.to(emb.dtype)[:, None]
                c = self.label(lab) * m + self.null.to(emb.dtype)[None] * (1 - m)
            emb = emb + c
        return emb


class RelativeBias(nn.Module):
    """Learned per-head bias b[h, clamp(j − i, −R, R)] for attention over positions
    (relative position embeddings, Shaw et al. 2018; used for temporal attention in
    Video Diffusion Models, Ho et al. 2022)."""

    def __init__(self, heads: int, max_distance: int = 16):
        super().__init__()
        self.R = max_distance
        self.table = nn.Parameter(torch.zeros(heads, 2 * max_distance + 1))

    def forward(self, n: int, dtype, device) -> torch.Tensor:
        pos = torch.arange(n, device=device)
        rel = (pos[None, :] - pos[:, None]).clamp(-self.R, self.R) + self.R
        return self.table[:, rel].to(dtype)  # [heads, n, n]


class Attention(nn.Module):
    """Multi-head self-attention on ``[N, L, C]`` with optional additive bias ``[h, L, L]``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        N, L, C = x.shape
        q, k, v = self.qkv(x).reshape(N, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if bias is None else bias[None].expand(N, -1, -1, -1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(N, L, C))


def group_norm(ch: int) -> nn.GroupNorm:
    g = 8 if ch % 8 == 0 else (4 if ch % 4 == 0 else 1)
    return nn.GroupNorm(g, ch)
