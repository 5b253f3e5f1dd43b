"""A factorised space-time U-Net denoiser for video (Ho et al. 2022, "Video Diffusion Models").

Every 3-D operation is split into space and time: residual blocks use 1×3×3 convolutions
(a 2-D convolution applied to each frame), self-attention runs over the pixels of one
frame at the lowest resolution (spatial attention) and over the frames at each pixel
(temporal attention, with learned relative-position biases), and down/up-sampling acts on
H and W only, so the clip length T is never reduced and any T works.

Call: ``net(x [B, C, T, H, W], time [B], cond) → [B, C, T, H, W]`` (the prediction of the
model's parameterisation; EDM's F by default). ``cond`` keys used:

- ``label`` ``[B]`` long and ``cond_mask`` ``[B]`` (class conditioning, CFG null when 0);
- ``context`` ``[B, C, T, H, W]`` clean frames and ``context_mask`` ``[B, T]`` (1 = this
  frame is given): extra input channels for frame-conditioned prediction when the
  network is built with ``context_frames=True`` (absent keys mean "no frame given").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Attention, ConditionEmbedding, RelativeBias, group_norm


class ResBlock(nn.Module):
    """GN-SiLU-conv(3×3) ×2 with a scale/shift from the embedding; frames ``[B·T, C, H, W]``."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float = 0.0):
        super().__init__()
        self.n1, self.c1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * cout)
        self.n2, self.c2 = group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.emb(F.silu(emb)).chunk(2, dim=1)
        h = self.n2(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        h = self.c2(self.drop(F.silu(h)))
        return self.skip(x) + h


class SpatialAttention(nn.Module):
    """Self-attention over the H·W pixels of each frame; ``[B·T, C, H, W]``."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.norm, self.attn = group_norm(ch), Attention(ch, heads)
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x, frames: int):
        N, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)
        return x + self.attn(h).transpose(1, 2).reshape(N, C, H, W)


class TemporalAttention(nn.Module):
    """Self-attention over the T frames at each pixel, relative-position biased;
    ``[B·T, C, H, W]`` in and out."""

    def __init__(self, ch: int, heads: int, max_distance: int = 16):
        super().__init__()
        self.norm, self.attn = group_norm(ch), Attention(ch, heads)
        self.bias = RelativeBias(heads, max_distance)
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x, frames: int):
        N, C, H, W = x.shape
        B = N // frames
        h = self.norm(x).reshape(B, frames, C, H, W).permute(0, 3, 4, 1, 2).reshape(B * H * W, frames, C)
        h = self.attn(h, self.bias(frames, h.dtype, h.device))
        h = h.reshape(B, H, W, frames, C).permute(0, 3, 4, 1, 2).reshape(N, C, H, W)
        return x + h


class Level(nn.Module):
    """``blocks`` × (ResBlock → [spatial attention] → [temporal attention])."""

    def __init__(self, cin, cout, emb, blocks, heads, spatial, temporal, dropout):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout, emb, dropout) for i in range(blocks))
        self.sa = nn.ModuleList(SpatialAttention(cout, heads) if spatial else nn.Identity() for _ in range(blocks))
        self.ta = nn.ModuleList(TemporalAttention(cout, heads) if temporal else nn.Identity() for _ in range(blocks))

    def forward(self, x, emb, frames):
        for r, s, t in zip(self.res, self.sa, self.ta):
            x = r(x, emb)
            x = s(x, frames) if isinstance(s, SpatialAttention) else x
            x = t(x, frames) if isinstance(t, TemporalAttention) else x
        return x


class SpaceTimeUNet(nn.Module):
    """Args:
    in_channels: C of the clips (1 for grey).
    channels: width per resolution level; the spatial size is halved between levels
        (H and W must be divisible by 2^(levels−1)).
    blocks: residual blocks per level (encoder; the decoder has one more).
    n_classes: > 0 adds a class embedding (with a learned CFG null).
    heads: attention heads. spatial_attention: levels (0 = full resolution) with
        spatial attention (default: the lowest). temporal_attention: levels with
        temporal attention (default: all but the full-resolution one, where it costs
        most on a CPU; True = all, False = none — then frames never
        exchange information: an ablation); the middle block has it unless False.
    context_frames: accept clean known frames as extra input channels.
    space_to_depth: r > 1 folds r×r pixel blocks into channels before the first level
        and unfolds them after the last (pixel (un)shuffle, Shi et al. 2016), so every
        level runs at 1/r of the resolution — r² fewer operations, the CPU setting.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels=(32, 64, 96),
        blocks: int = 1,
        n_classes: int = 0,
        heads: int = 4,
        spatial_attention=None,
        temporal_attention=None,
        context_frames: bool = False,
        dropout: float = 0.0,
        emb_dim: int | None = None,
        space_to_depth: int = 1,
    ):
        super().__init__()
        channels = list(channels)
        self.in_channels, self.context_frames, self.levels = in_channels, context_frames, len(channels)
        self.r = r = int(space_to_depth)
        spatial_attention = [len(channels) - 1] if spatial_attention is None else list(spatial_attention)
        if temporal_attention is None:
            temporal_attention = list(range(1 if len(channels) > 1 else 0, len(channels)))
        elif temporal_attention is True or temporal_attention is False:
            temporal_attention = list(range(len(channels))) if temporal_attention else []
        else:
            temporal_attention = list(temporal_attention)
        mid_temporal = bool(temporal_attention) or len(channels) == 0
        emb = emb_dim or 4 * channels[0]
        self.cond_emb = ConditionEmbedding(emb, n_classes)
        cin = in_channels * (2 if context_frames else 1) + (1 if context_frames else 0)
        self.stem = nn.Conv2d(cin * r * r, channels[0], 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            self.down.append(
                Level(prev, ch, emb, blocks, heads, i in spatial_attention, i in temporal_attention, dropout)
            )
            prev = ch
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = Level(prev, prev, emb, 1, heads, True, mid_temporal, dropout)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(channels))):
            ch = channels[i]
            self.up.append(
                Level(prev + ch, ch, emb, blocks + 1, heads, i in spatial_attention, i in temporal_attention, dropout)
            )
            prev = ch
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out_norm = group_norm(prev)
        self.out = nn.Conv2d(prev, in_channels * r * r, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _input(self, x, cond):
        if not self.context_frames:
            return x
        B, C, T, H, W = x.shape
        ctx = cond.get("context") if cond else None
        m = cond.get("context_mask") if cond else None
        if ctx is None or m is None:
            ctx, m = torch.zeros_like(x), torch.zeros(B, T, device=x.device, dtype=x.dtype)
        m = m.to(device=x.device, dtype=x.dtype)
        ctx = ctx.to(device=x.device, dtype=x.dtype) * m[:, None, :, None, None]
        return torch.cat([x, ctx, m[:, None, :, None, None].expand(B, 1, T, H, W)], dim=1)

    def forward(self, x: torch.Tensor, time: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        B, C, T, H, W = x.shape
        div = self.r * 2 ** (self.levels - 1)
        if H % div or W % div:
            raise ValueError(f"frame size {H}×{W} must be divisible by {div}")
        emb = self.cond_emb(time, cond, B).to(x.dtype)
        emb = emb.repeat_interleave(T, dim=0)  # [B·T, E]
        h = self._input(x, cond).permute(0, 2, 1, 3, 4).reshape(B * T, -1, H, W)
        if self.r > 1:
            h = F.pixel_unshuffle(h, self.r)
        h = self.stem(h)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, emb, T)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb, T)
        for j, level in enumerate(self.up):
            h = level(torch.cat([h, skips.pop()], dim=1), emb, T)
            if j < len(self.upsample):
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.out(F.silu(self.out_norm(h)))
        if self.r > 1:
            h = F.pixel_shuffle(h, self.r)
        return h.reshape(B, T, C, H, W).permute(0, 2, 1, 3, 4)
