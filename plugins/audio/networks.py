"""Denoisers for the mel-VAE latent: a small U-Net (Ronneberger et al. 2015, in the DDPM
form of Ho et al. 2020) whose residual blocks take a time + label embedding as a
scale/shift (FiLM / adaptive GroupNorm, Dhariwal & Nichol 2021).

Called as ``net(x_in, time, cond)``: ``x_in [B, C, H, W]`` (latent channels, mel bands/4,
frames/4), ``time [B]`` float32 (EDM c_noise), ``cond`` a dict with ``label [B]`` (long)
and ``cond_mask [B]`` (1 = conditional, 0 = the learned null label, used by CFG and CFG
dropout) or ``None`` (unconditional). Output ``[B, C, H, W]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B] → [B, dim]`` (Vaswani et al. 2017), scaled for c_noise ∈ ~[−2, 2]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None] / 4.0
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class LabelEmbedding(nn.Module):
    """``n_classes`` learned vectors plus one learned null vector (index ``n_classes``)
    chosen where ``cond_mask`` is 0 or no label is given."""

    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        self.n_classes = n_classes
        self.table = nn.Embedding(n_classes + 1, dim)

    def forward(self, cond: dict | None, batch: int, device) -> torch.Tensor:
        null = torch.full((batch,), self.n_classes, dtype=torch.long, device=device)
        if not cond or "label" not in cond or self.n_classes == 0:
            return self.table(null)
        lab = cond["label"].to(device=device, dtype=torch.long)
        if "cond_mask" in cond:
            lab = torch.where(cond["cond_mask"].to(device) > 0.5, lab, null)
        return self.table(lab)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions of the lowest resolution."""

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(8, ch)
        self.attn = nn.MultiheadAttention(ch, heads, batch_first=True)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)
        h, _ = self.attn(h, h, h, need_weights=False)
        return x + h.transpose(1, 2).reshape(B, C, H, W)


class LatentUNet(nn.Module):
    """Two-level U-Net: ``[B, C, H, W]`` → ``[B, C, H, W]`` (H, W even).

    Args:
        in_channels: latent channels. n_classes: label vocabulary (0 = unconditional).
        ch: base width; ch_mult: width multipliers per level; attention at the lowest level.
    """

    def __init__(self, in_channels: int = 4, n_classes: int = 0, ch: int = 32, ch_mult=(1, 2), emb_dim: int = 128):
        super().__init__()
        self.in_channels, self.n_classes = in_channels, n_classes
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label = LabelEmbedding(n_classes, emb_dim)
        self.ch = ch
        c1, c2 = ch * ch_mult[0], ch * ch_mult[1]
        self.inp = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.down1 = ResBlock(c1, c1, emb_dim)
        self.pool = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.mid1 = ResBlock(c2, c2, emb_dim)
        self.attn = SelfAttention(c2)
        self.mid2 = ResBlock(c2, c2, emb_dim)
        self.up = nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1)
        self.up1 = ResBlock(2 * c1, c1, emb_dim)
        self.out = nn.Sequential(nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, time: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        B = x.shape[0]
        emb = self.time_mlp(timestep_embedding(time.reshape(-1).expand(B), self.ch)) + self.label(cond, B, x.device)
        emb = F.silu(emb)
        h1 = self.down1(self.inp(x), emb)
        h = self.pool(h1)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        h = self.up(h)
        h = self.up1(torch.cat([h, h1], dim=1), emb)
        return self.out(h)
