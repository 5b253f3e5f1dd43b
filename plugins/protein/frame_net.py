"""Chain-frame denoiser: a pair-biased transformer on invariant features read in per-residue
frames built from the noisy Cα trace itself (the idea of Genie, Lin & AlQuraishi 2023,
which builds Frenet–Serret frames from noisy Cα coordinates; the layers here are ours).

Why frames: a residue's frame Rᵢ = [e₁ e₂ e₃] comes from its chain neighbours (tangent
e₁ ∝ xᵢ₊₁ − xᵢ₋₁, normal e₂ ∝ the bisector of the two bonds made orthogonal to e₁,
e₃ = e₁ × e₂), so Rᵢ rotates with the input and Rᵢᵀ(xⱼ − xᵢ) is rotation- and
translation-invariant yet *signed*: a right- and a left-handed helix give different
features (e₃ is a cross product), the network is SE(3)- and not E(3)-equivariant. Local
geometry (the i → i±1…±4 vectors that make helices and strands) is read directly, where a
distance-only EGNN has to reconstruct it from messages. The output vector oᵢ, predicted
in frame i, is rotated back (Rᵢ oᵢ), plus an attention-weighted sum of relative vectors
for the global shape; both are exactly equivariant.

Measured on the 50 domains (8-min one-thread run, 2,252 steps): lower training loss than
the EGNN (0.86 vs 1.04) and SDEdit from σ̃ = 0.2 nm keeps more helix (0.081 vs 0.026 for
the 7,000-step EGNN), but samples drawn from σ̃ = 10 nm collapse (Rg ratio 0.75, clash
share 0.48): its global term is weak at high noise. The EGNN with ``frame_features=True``
(:mod:`.networks`) reads the same local-frame features and keeps the EGNN's global
messages.

Called ``net(x_in, time, cond) -> F [B, N, 3]`` like the other protein denoisers (see
:mod:`.features` for the inputs): zero mean over valid residues, zero on padding.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .features import (
    LOCAL_FEATURES,
    MAX_OFFSET,
    NodeEmbedding,
    chain_frames,
    local_window_features,
    physical_coords,
    physical_scale,
    rbf,
    remove_com,
    unit,
    with_residue_mask,
)


class _PairBiasedBlock(nn.Module):
    """Pre-norm transformer block whose attention logits get a per-head bias from the pair
    features and whose output also averages the pair features with the attention weights."""

    def __init__(self, dim: int, heads: int, pair_dim: int):
        super().__init__()
        self.h, self.dh = heads, dim // heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.gate = nn.Linear(dim, dim)
        self.bias = nn.Linear(pair_dim, heads, bias=False)
        self.out = nn.Linear(dim + heads * pair_dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))

    def forward(self, h, pair, key_bias):
        B, N, D = h.shape
        a = self.ln1(h)
        q, k, v = self.qkv(a).reshape(B, N, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.dh) + self.bias(pair).permute(0, 3, 1, 2) + key_bias
        p = logits.softmax(-1)  # [B, H, N, N]
        o = (p @ v).transpose(1, 2).reshape(B, N, D)
        op = torch.einsum("bhij,bijc->bihc", p, pair).reshape(B, N, -1)
        h = h + self.out(torch.cat([o * torch.sigmoid(self.gate(a)), op], -1))
        return h + self.ff(self.ln2(h)), p


class FrameDenoiser(nn.Module):
    """Args: ``hidden`` channels, ``layers`` transformer blocks, ``heads``, ``pair_dim``
    pair-feature channels, ``sigma_data`` (nm)."""

    def __init__(self, hidden: int = 128, layers: int = 4, heads: int = 4, pair_dim: int = 32, sigma_data: float = 1.0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.sigma_data = float(sigma_data)
        self.embed = NodeEmbedding(hidden)
        self.local_in = nn.Sequential(nn.Linear(LOCAL_FEATURES, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.offset = nn.Embedding(2 * MAX_OFFSET + 2, pair_dim)
        self.pair_in = nn.Linear(16 + 8 + 16 + 3 + 1, pair_dim)
        self.blocks = nn.ModuleList([_PairBiasedBlock(hidden, heads, pair_dim) for _ in range(layers)])
        self.ln_out = nn.LayerNorm(hidden)
        self.local_out = nn.Linear(hidden, 3)
        self.rel_out = nn.Linear(hidden, heads)
        with torch.no_grad():  # small initial output: F ≈ 0, D ≈ c_skip·x
            for lin in (self.local_out, self.rel_out):
                lin.weight.mul_(0.1)
                lin.bias.zero_()

    def forward(self, x_in: torch.Tensor, time: torch.Tensor, cond: dict | None) -> torch.Tensor:
        B, N, _ = x_in.shape
        cond, mask = with_residue_mask(x_in, cond)
        y = physical_coords(x_in, time, self.sigma_data) * mask[..., None]  # nm
        R = chain_frames(y, mask)  # [B, N, 3, 3]
        rel = y[:, None, :, :] - y[:, :, None, :]  # [B, i, j, 3] = y_j − y_i
        local_rel = torch.einsum("bixk,bijx->bijk", R, rel)  # in frame i
        d = rel.norm(dim=-1)
        ri = cond.get("res_idx")
        ri = torch.arange(N, device=x_in.device).expand(B, N) if ri is None else ri
        off = ri[:, None, :] - ri[:, :, None]  # j − i
        pair_ok = mask[:, :, None] * mask[:, None, :]

        local = local_window_features(y, mask, R)
        h = self.embed(time, cond, N, x_in.dtype) + self.local_in(local)

        scale = physical_scale(time, self.sigma_data, x_in.dtype).reshape(B, 1, 1)
        d_in = d / scale
        far = off.abs() > MAX_OFFSET
        bucket = torch.where(far, torch.full_like(off, 2 * MAX_OFFSET + 1), off + MAX_OFFSET)
        pf = torch.cat(
            [
                rbf(d, 0.0, 2.0, 16),
                rbf(d, 0.3, 0.8, 8),
                rbf(d_in, 0.0, 4.0, 16),
                unit(local_rel),
                ((d - 0.38) * 10).clamp(-5, 5)[..., None],
            ],
            -1,
        )
        pair = (self.pair_in(pf) + self.offset(bucket)) * pair_ok[..., None]
        key_bias = (1 - mask)[:, None, None, :] * -1e9
        p = None
        for blk in self.blocks:
            h, p = blk(h, pair, key_bias)
        h = self.ln_out(h)
        out = torch.einsum("bixk,bik->bix", R, self.local_out(h))
        # global term: attention-weighted relative vectors (input units, EGNN-style damping)
        rel_in = rel / scale[..., None]
        damped = rel_in / (d_in[..., None] + 1)
        glob = torch.einsum("bhij,bijx->bihx", p, damped)  # [B, N, H, 3]
        out = out + (glob * self.rel_out(h)[..., None]).sum(2)
        return remove_com(out, mask)
