"""A U-Net denoiser for images (Ronneberger et al. 2015 as used by Ho et al. 2020 and
Dhariwal & Nichol 2021 "ADM"): residual blocks with FiLM time/class conditioning,
sinusoidal time embedding, self-attention at low resolutions, a class embedding with a
learned null for classifier-free guidance (Ho & Salimans 2022).

Called as ``net(x_in, time, cond)``: ``x_in`` ``[B, C, H, W]``, ``time`` ``[B]`` float32
(EDM c_noise = ¼ ln σ̃ by default), ``cond`` a dict with optional ``label`` ``[B]`` long,
``cond_mask`` ``[B]`` (1 = conditional, 0 = null) and ``lowres`` ``[B, C_c, H, W]``
(an upsampled low-resolution image for a super-resolution stage, Saharia et al. 2022).
With ``text`` (a text-prompt model, issue 20) the cond carries ``prompt_ids`` / ``prompt_mask``
``[B, L]`` (:func:`polydiff.text.prompt_cond`): a :class:`polydiff.text.TextConditioning`
encodes them, :class:`polydiff.text.CrossAttention2d` blocks attend to the encoded prompt after
the self-attention at the attention resolutions and in the middle block (Rombach et al. 2022
§3.3), and the pooled prompt is added to the time embedding; ``cond_mask`` 0 means the empty
prompt (the CFG null).

Building blocks reused by other plugins (names kept stable): :func:`sinusoidal_embedding`,
:class:`TimeEmbedding`, :class:`ClassEmbedding`, :class:`ResBlock`,
:class:`SelfAttention2d`, :func:`group_norm`, :func:`cond_mask_of`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(
    t: torch.Tensor, dim: int, *, max_period: float = 10000.0, scale: float = 1000.0
) -> torch.Tensor:
    """Transformer sinusoids of ``scale·t`` (Vaswani et al. 2017; DDPM's time embedding).

    t: ``[B]`` (any float; EDM's c_noise ∈ about [−1.6, 1.1]); returns float32 ``[B, dim]``.
    ``scale`` = 1000 puts c_noise on the DDPM timestep range so every frequency is used.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (scale * t.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class TimeEmbedding(nn.Module):
    """``[B]`` time → ``[B, dim]``: sinusoids of width ``freq_dim`` then a 2-layer SiLU MLP."""

    def __init__(self, dim: int, freq_dim: int | None = None):
        super().__init__()
        self.freq_dim = freq_dim or dim
        self.mlp = nn.Sequential(nn.Linear(self.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = sinusoidal_embedding(t, self.freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def cond_mask_of(cond: dict | None, batch: int, device) -> torch.Tensor:
    """``cond["cond_mask"]`` as float ``[B]`` (all ones when absent, zeros when cond is None)."""
    if cond is None:
        return torch.zeros(batch, device=device)
    m = cond.get("cond_mask")
    if m is None:
        return torch.ones(batch, device=device)
    return m.to(device=device, dtype=torch.float32).reshape(batch)


def with_lowres(x: torch.Tensor, cond: dict | None, cond_channels: int) -> torch.Tensor:
    """``x`` ``[B, C, H, W]`` with ``cond["lowres"]`` (zeroed where ``cond_mask`` is 0) concatenated
    on the channel axis when ``cond_channels`` > 0 (a super-resolution stage's input), else ``x``."""
    if not cond_channels:
        return x
    low = None if cond is None else cond.get("lowres")
    if low is None:
        raise ValueError("this network needs cond['lowres'] (a super-resolution stage)")
    m = cond_mask_of(cond, x.shape[0], x.device)[:, None, None, None]
    return torch.cat([x, (low.to(x.device) * m).to(x.dtype)], dim=1)


class ClassEmbedding(nn.Module):
    """``cond["label"]`` → ``[B, dim]``, blended with a learned null embedding by
    ``cond_mask`` (1 = class, 0 = null): the switch CFG and CFG-dropout use."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes, dim)
        self.null = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, cond: dict | None, batch: int, device) -> torch.Tensor:
        m = cond_mask_of(cond, batch, device)
        label = None if cond is None else cond.get("label")
        if label is None:
            m = torch.zeros_like(m)
            label = torch.zeros(batch, dtype=torch.long, device=device)
        label = label.to(device=device, dtype=torch.long).reshape(batch)
        m = m * (label >= 0).float()  # −1 = unlabelled → null
        e = self.table(label.clamp(0, self.num_classes - 1))
        m = m[:, None].to(e.dtype)
        return m * e + (1 - m) * self.null.to(e.dtype)[None]


def group_norm(ch: int) -> nn.GroupNorm:
    """GroupNorm with 32, 16, 8, 4, 2 or 1 groups (the largest dividing ``ch`` with ≥ 4 channels each)."""
    g = next(g for g in (32, 16, 8, 4, 2, 1) if ch % g == 0 and ch // g >= 4 or g == 1)
    return nn.GroupNorm(g, ch)


class ResBlock(nn.Module):
    """GN-SiLU-conv, FiLM from the embedding (scale, shift), GN-SiLU-dropout-conv (zero
    init), plus a 1×1 skip when the width changes. x ``[B, C_in, H, W]``, emb ``[B, E]``."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2, self.drop = group_norm(out_ch), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H·W positions, residual, zero-init output."""

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = group_norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """Args:
        in_channels: channels of the state (1 grey, 3 RGB, or a VAE latent's).
        image_size: H = W of the state (each level but the last halves it: must stay even).
        base_channels, channel_mult: width per level (``base·mult``).
        num_res_blocks: residual blocks per level (the decoder has one more).
        attn_resolutions: resolutions (side lengths) with self-attention; the middle
            block always has it.
        num_classes: > 0 adds a class embedding (``cond["label"]``) with a learned null.
        cond_channels: > 0 concatenates ``cond["lowres"]`` ``[B, cond_channels, H, W]``
            (zeroed where ``cond_mask`` is 0) to the input.
        text: None (no prompts), or ``{"encoder": name, **encoder options}`` for prompt
            conditioning by cross-attention (see the module docstring); use with
            ``num_classes=0``. Without it the network is exactly the class-label one.
    Output: ``[B, out_channels, H, W]`` in the input's dtype (zero at initialisation).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        *,
        base_channels: int = 32,
        channel_mult=(1, 2, 2),
        num_res_blocks: int = 1,
        attn_resolutions=(7,),
        num_classes: int = 0,
        cond_channels: int = 0,
        dropout: float = 0.0,
        out_channels: int | None = None,
        heads: int = 4,
        text: dict | None = None,
    ):
        super().__init__()
        self.in_channels, self.cond_channels, self.num_classes = in_channels, cond_channels, num_classes
        emb = 4 * base_channels
        self.time = TimeEmbedding(emb, base_channels)
        self.label = ClassEmbedding(num_classes, emb) if num_classes > 0 else None
        self.conv_in = nn.Conv2d(in_channels + cond_channels, base_channels, 3, padding=1)
        chans, res = [base_channels], image_size
        ch = base_channels
        self.down = nn.ModuleList()
        for lvl, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out = base_channels * mult
                self.down.append(
                    nn.ModuleList(
                        [
                            ResBlock(ch, out, emb, dropout),
                            SelfAttention2d(out, heads) if res in attn_resolutions else nn.Identity(),
                        ]
                    )
                )
                ch = out
                chans.append(ch)
            if lvl != len(channel_mult) - 1:
                if res % 2:
                    raise ValueError(
                        f"image_size {image_size}: resolution {res} cannot be halved at level {lvl}; "
                        "use fewer channel_mult levels"
                    )
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                res //= 2
                chans.append(ch)
        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, emb, dropout), SelfAttention2d(ch, heads), ResBlock(ch, ch, emb, dropout)]
        )
        ch_mid = ch
        self.up = nn.ModuleList()
        for lvl, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                out = base_channels * mult
                self.up.append(
                    nn.ModuleList(
                        [
                            ResBlock(ch + chans.pop(), out, emb, dropout),
                            SelfAttention2d(out, heads) if res in attn_resolutions else nn.Identity(),
                        ]
                    )
                )
                ch = out
            if lvl != 0:
                self.up.append(
                    nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1))
                )
                res *= 2
        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, out_channels or in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.text = None
        if text:  # built last: a class-label network's parameters and their init are unchanged
            from polydiff.text import CrossAttention2d, TextConditioning

            opts = dict(text)
            self.text = TextConditioning(opts.pop("encoder", "tiny"), opts)
            d = self.text.dim
            self.text_emb = nn.Linear(d, emb)
            for block in [*self.down, *self.up]:
                if isinstance(block, nn.ModuleList) and isinstance(block[1], SelfAttention2d):
                    block.append(CrossAttention2d(block[0].conv2.out_channels, d, heads))
            self.mid.append(CrossAttention2d(ch_mid, d, heads))

    def embed(self, time: torch.Tensor, cond: dict | None, batch: int) -> torch.Tensor:
        e = self.time(time.reshape(batch))
        if self.label is not None:
            e = e + self.label(cond, batch, time.device).to(e.dtype)
        return e

    def forward(self, x: torch.Tensor, time: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        B = x.shape[0]
        emb = self.embed(time, cond, B)
        if self.text is not None:
            return self._forward_text(x, emb, cond)
        h = with_lowres(x, cond, self.cond_channels)
        h = self.conv_in(h)
        skips = [h]
        for block in self.down:
            if isinstance(block, nn.ModuleList):
                h = block[1](block[0](h, emb))
            else:
                h = block(h)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for block in self.up:
            if isinstance(block, nn.ModuleList):
                h = block[1](block[0](torch.cat([h, skips.pop()], dim=1), emb))
            else:
                h = block(h)
        return self.conv_out(F.silu(self.norm_out(h))).to(x.dtype)

    def _forward_text(self, x: torch.Tensor, emb: torch.Tensor, cond: dict | None) -> torch.Tensor:
        """:meth:`forward` of a prompt-conditioned network (cross-attention after self-attention)."""
        assert self.text is not None
        B = x.shape[0]
        ctx, key_mask, pooled = self.text(cond, B, x.device)
        emb = emb + self.text_emb(pooled.to(emb.dtype))
        h = with_lowres(x, cond, self.cond_channels)

        def level(block, h):
            h = block[1](block[0](h, emb))
            return block[2](h, ctx, key_mask) if len(block) > 2 else h

        h = self.conv_in(h)
        skips = [h]
        for block in self.down:
            h = level(block, h) if isinstance(block, nn.ModuleList) else block(h)
            skips.append(h)
        h = self.mid[3](self.mid[1](self.mid[0](h, emb)), ctx, key_mask)
        h = self.mid[2](h, emb)
        for block in self.up:
            h = level(block, torch.cat([h, skips.pop()], dim=1)) if isinstance(block, nn.ModuleList) else block(h)
        return self.conv_out(F.silu(self.norm_out(h))).to(x.dtype)
