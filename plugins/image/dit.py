"""A Diffusion Transformer (Peebles & Xie 2023, "DiT"): patchify, fixed 2-D sin-cos
position embedding, transformer blocks with adaLN-Zero conditioning on time + class,
a zero-initialised final layer, unpatchify.

Called as ``net(x_in, time, cond)`` with the same conventions as
:class:`polydiff.plugins.image.unet.UNet` (``x_in`` ``[B, C, H, W]``, ``time`` ``[B]``,
``cond`` with ``label``, ``cond_mask``, ``lowres``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .unet import ClassEmbedding, TimeEmbedding, with_lowres


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding ``[grid·grid, dim]`` (MAE/DiT); dim % 4 == 0."""
    if dim % 4:
        raise ValueError(f"hidden size {dim} must be a multiple of 4 for 2-D sin-cos positions")
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    ys, xs = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )
    parts = []
    for pos in (ys.reshape(-1), xs.reshape(-1)):
        a = pos[:, None] * omega[None]
        parts += [torch.sin(a), torch.cos(a)]
    return torch.cat(parts, dim=1).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x·(1 + scale) + shift``; x ``[B, T, D]``, shift/scale ``[B, D]``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Pre-norm attention + MLP; adaLN-Zero gives (shift, scale, gate) for both from ``c``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, D))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=1)
        x = x + g1[:, None] * self.attention(modulate(self.norm1(x), sh1, sc1))
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), sh2, sc2))


class DiT(nn.Module):
    """Args:
        in_channels, image_size: state ``[C, H, W]`` with H = W divisible by ``patch_size``.
        patch_size, hidden_size, depth, heads, mlp_ratio: the transformer's shape.
        num_classes: > 0 adds a class embedding with a learned null (CFG).
        cond_channels: > 0 concatenates ``cond["lowres"]`` to the input before patchifying.
    Output: ``[B, out_channels, H, W]`` (zero at initialisation: adaLN-Zero).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        *,
        patch_size: int = 2,
        hidden_size: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        cond_channels: int = 0,
        out_channels: int | None = None,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        if hidden_size % heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by heads {heads}")
        self.in_channels, self.cond_channels, self.p = in_channels, cond_channels, patch_size
        self.out_channels = out_channels or in_channels
        self.grid = image_size // patch_size
        self.patch = nn.Conv2d(in_channels + cond_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer("pos", sincos_2d(hidden_size, self.grid)[None], persistent=False)
        self.time = TimeEmbedding(hidden_size, 256)
        self.label = ClassEmbedding(num_classes, hidden_size) if num_classes > 0 else None
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, heads, mlp_ratio) for _ in range(depth)])
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(hidden_size, 2 * hidden_size)
        self.out = nn.Linear(hidden_size, patch_size * patch_size * self.out_channels)
        for lin in (self.ada_out, self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, T, p·p·C]`` → ``[B, C, H, W]``."""
        B, g, p, C = tokens.shape[0], self.grid, self.p, self.out_channels
        x = tokens.reshape(B, g, g, p, p, C).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(B, C, g * p, g * p)

    def forward(self, x: torch.Tensor, time: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        B = x.shape[0]
        h = with_lowres(x, cond, self.cond_channels)
        tok = self.patch(h).flatten(2).transpose(1, 2)
        tok = tok + self.pos.to(tok.dtype)
        c = self.time(time.reshape(B))
        if self.label is not None:
            c = c + self.label(cond, B, x.device).to(c.dtype)
        for blk in self.blocks:
            tok = blk(tok, c)
        shift, scale = self.ada_out(F.silu(c)).chunk(2, dim=1)
        tok = self.out(modulate(self.norm_out(tok), shift, scale))
        return self.unpatchify(tok).to(x.dtype)
