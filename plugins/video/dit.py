"""A space-time-patch diffusion transformer for video (DiT, Peebles & Xie 2023, with
the spacetime patches of Latte / Sora-style video transformers).

A clip ``[B, C, T, H, W]`` is cut into patches of ``pt × p × p`` voxels; each becomes a
token with fixed sin/cos position features of its (t, h, w) patch coordinates; blocks
apply joint space-time self-attention and an MLP, both modulated by adaLN-Zero from the
noise/class embedding (scale, shift and a zero-initialised gate), and a final adaLN layer
maps tokens back to patches. Call: ``net(x, time [B], cond) → [B, C, T, H, W]``; ``cond``
as for :class:`~polydiff.plugins.video.networks.SpaceTimeUNet`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Attention, ConditionEmbedding, sincos_positions


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.n1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.n2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c))[:, None].chunk(6, dim=-1)
        x = x + g1 * self.attn(self.n1(x) * (1 + sc1) + sh1)
        return x + g2 * self.mlp(self.n2(x) * (1 + sc2) + sh2)


class SpaceTimeDiT(nn.Module):
    """Args:
    in_channels: C. patch: spatial patch side p. temporal_patch: pt (T divisible by it).
    dim, depth, heads: transformer width, blocks, heads. n_classes: > 0 adds a class
    embedding with a CFG null. context_frames: accept clean known frames as inputs.
    """

    def __init__(
        self,
        in_channels: int = 1,
        patch: int = 4,
        temporal_patch: int = 1,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        n_classes: int = 0,
        context_frames: bool = False,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.in_channels, self.p, self.pt, self.dim = in_channels, patch, temporal_patch, dim
        self.context_frames = context_frames
        cin = in_channels * (2 if context_frames else 1) + (1 if context_frames else 0)
        self.embed = nn.Conv3d(cin, dim, (temporal_patch, patch, patch), (temporal_patch, patch, patch))
        self.cond_emb = ConditionEmbedding(dim, n_classes)
        self.blocks = nn.ModuleList(DiTBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, temporal_patch * patch * patch * in_channels)
        for m in (self.ada, self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def positions(self, nt: int, nh: int, nw: int, device) -> torch.Tensor:
        """``[nt·nh·nw, dim]``: sin/cos features of t, h and w in separate thirds."""
        d = self.dim // 3
        pt, ph, pw = sincos_positions(nt, d, device), sincos_positions(nh, d, device), sincos_positions(nw, d, device)
        grid = torch.cat(
            [
                pt[:, None, None].expand(nt, nh, nw, d),
                ph[None, :, None].expand(nt, nh, nw, d),
                pw[None, None].expand(nt, nh, nw, d),
            ],
            dim=-1,
        ).reshape(nt * nh * nw, 3 * d)
        return F.pad(grid, (0, self.dim - 3 * d))

    def forward(self, x: torch.Tensor, time: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        B, C, T, H, W = x.shape
        if T % self.pt or H % self.p or W % self.p:
            raise ValueError(f"clip {T}×{H}×{W} is not divisible by the patch {self.pt}×{self.p}×{self.p}")
        h = x
        if self.context_frames:
            ctx = cond.get("context") if cond else None
            m = cond.get("context_mask") if cond else None
            if ctx is None or m is None:
                ctx, m = torch.zeros_like(x), torch.zeros(B, T, device=x.device)
            m = m.to(device=x.device, dtype=x.dtype)[:, None, :, None, None]
            h = torch.cat([x, ctx.to(device=x.device, dtype=x.dtype) * m, m.expand(B, 1, T, H, W)], dim=1)
        tok = self.embed(h)  # [B, D, nt, nh, nw]
        nt, nh, nw = tok.shape[2:]
        tok = tok.flatten(2).transpose(1, 2) + self.positions(nt, nh, nw, x.device).to(tok.dtype)
        c = self.cond_emb(time, cond, B).to(tok.dtype)
        for blk in self.blocks:
            tok = blk(tok, c)
        shift, scale = self.ada(F.silu(c))[:, None].chunk(2, dim=-1)
        out = self.out(self.norm(tok) * (1 + scale) + shift)  # [B, N, pt·p·p·C]
        out = out.reshape(B, nt, nh, nw, self.pt, self.p, self.p, C)
        return out.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(B, C, T, H, W)
