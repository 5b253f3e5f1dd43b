"""Invariant inputs shared by the protein denoisers.

Conventions (see :mod:`polydiff.conditioning`): ``x_in [B, N, 3]`` is the EDM-scaled
noisy Cα trace (c_in·x, x in nm), ``time [B]`` = ¼ ln σ̃, ``cond`` holds ``mask [B, N]``
(1 = residue), ``res_idx [B, N]`` (residue numbers from 0), optionally ``ss [B, 3]`` (H/E/C
composition) and ``cond_mask [B]`` (1 = use ``ss``, 0 = learned null).

Geometry features use the *physical* noisy coordinates y = x_in·√(σ̃² + σ_d²) (nm): a
Cα–Cα bond is 0.38 nm whatever the noise level, which lets a small network place bonds
precisely. Neighbour lists combine sequence neighbours (|i − j| ≤ ``k_seq``) and the
``k_nn`` spatially nearest residues: both are invariant under rotations and translations,
so gathering along them keeps the networks equivariant.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MAX_OFFSET = 32  # relative sequence offsets are clipped to ±32 (+1 bucket: different chain/far)


def with_residue_mask(x_in: torch.Tensor, cond: dict | None) -> tuple[dict, torch.Tensor]:
    """A copy of ``cond`` whose ``mask`` is set (all ones when absent) and in ``x_in``'s
    dtype; returns ``(cond, mask [B, N])``."""
    B, N, _ = x_in.shape
    cond = dict(cond or {})
    mask = cond.get("mask")
    mask = torch.ones(B, N, device=x_in.device, dtype=x_in.dtype) if mask is None else mask.to(x_in.dtype)
    cond["mask"] = mask
    return cond, mask


def physical_scale(time: torch.Tensor, sigma_data: float, dtype=torch.float32) -> torch.Tensor:
    """``[B]`` factor √(σ̃² + σ_d²) = 1/c_in with σ̃ = exp(4·time) (EDM c_noise inverted)."""
    sigma = torch.exp(4.0 * time.to(dtype))
    return torch.sqrt(sigma**2 + sigma_data**2)


def physical_coords(x_in: torch.Tensor, time: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """y = x_in·√(σ̃² + σ_d²) (nm), the noisy state before EDM input scaling; ``[B, N, 3]``."""
    return x_in * physical_scale(time, sigma_data, x_in.dtype).reshape(-1, 1, 1)


def fourier(t: torch.Tensor, dim: int, max_period: float = 100.0) -> torch.Tensor:
    """Sinusoidal embedding ``[..., dim]`` of a float tensor ``t [...]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    a = t[..., None] * freqs
    return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)


def rbf(d: torch.Tensor, lo: float, hi: float, n: int) -> torch.Tensor:
    """Gaussian radial basis ``[..., n]`` of distances ``d [...]`` on [lo, hi]."""
    c = torch.linspace(lo, hi, n, device=d.device, dtype=d.dtype)
    w = (hi - lo) / (n - 1)
    return torch.exp(-(((d[..., None] - c) / w) ** 2))


def neighbours(y: torch.Tensor, mask: torch.Tensor, k_seq: int, k_nn: int):
    """Neighbour indices ``[B, N, K]`` (K = 2·k_seq + k_nn) and their validity ``[B, N, K]``.

    The first 2·k_seq slots are i−k_seq..i+k_seq (without i) by position in the chain;
    the rest are the k_nn nearest other residues (excluding those sequence slots).
    """
    B, N, _ = y.shape
    dev = y.device
    ar = torch.arange(N, device=dev)
    offs = torch.tensor([o for o in range(-k_seq, k_seq + 1) if o != 0], device=dev)
    seq_idx = (ar[:, None] + offs[None]).expand(B, N, -1)
    seq_ok = (seq_idx >= 0) & (seq_idx < N)
    seq_idx = seq_idx.clamp(0, N - 1)
    m = mask.bool()
    seq_ok = seq_ok & m[:, :, None] & torch.gather(m, 1, seq_idx.reshape(B, -1)).reshape(B, N, -1)
    k = min(k_nn, max(N - 1 - 2 * k_seq, 0))
    if k > 0:
        d = torch.cdist(y.detach(), y.detach())
        big = torch.finfo(d.dtype).max / 4
        excl = (ar[:, None] - ar[None]).abs() <= k_seq
        d = d.masked_fill(excl[None], big).masked_fill(~m[:, None, :], big)
        dk, nn_idx = torch.topk(d, k, dim=-1, largest=False)
        nn_ok = (dk < big) & m[:, :, None]
        idx = torch.cat([seq_idx, nn_idx], -1)
        ok = torch.cat([seq_ok, nn_ok], -1)
    else:
        idx, ok = seq_idx, seq_ok
    return idx, ok


def gather_nodes(f: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``f [B, N, C]``, ``idx [B, N, K]`` → ``[B, N, K, C]``."""
    B, N, K = idx.shape
    flat = idx.reshape(B, N * K, 1).expand(-1, -1, f.shape[-1])
    return torch.gather(f, 1, flat).reshape(B, N, K, f.shape[-1])


def local_dihedral(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, N, 2]`` (cos, sin) of the virtual dihedral CA(i−1), CA(i), CA(i+1), CA(i+2);
    0 where undefined. The sine is a pseudo-scalar (changes sign under reflection): it
    lets the networks tell right- from left-handed helices (SE(3), not E(3))."""
    B, N, _ = y.shape
    out = y.new_zeros(B, N, 2)
    if N < 4:
        return out
    b0, b1, b2 = y[:, 1:-2] - y[:, :-3], y[:, 2:-1] - y[:, 1:-2], y[:, 3:] - y[:, 2:-1]
    n1, n2 = torch.cross(b0, b1, dim=-1), torch.cross(b1, b2, dim=-1)
    b1n = b1 / (b1.norm(dim=-1, keepdim=True) + 1e-8)
    m1 = torch.cross(n1, b1n, dim=-1)
    x, s = (n1 * n2).sum(-1), (m1 * n2).sum(-1)
    r = torch.sqrt(x**2 + s**2 + 1e-12)
    valid = mask[:, :-3] * mask[:, 1:-2] * mask[:, 2:-1] * mask[:, 3:]
    out[:, 1:-2, 0] = x / r * valid
    out[:, 1:-2, 1] = -s / r * valid
    return out


class NodeEmbedding(nn.Module):
    """Invariant per-residue features ``[B, N, dim]``: time, residue index, chain length
    and the secondary-structure composition (switched by ``cond_mask`` to a learned null)."""

    def __init__(self, dim: int):
        super().__init__()
        self.time = nn.Sequential(nn.Linear(32, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.pos = nn.Linear(32 + 1, dim)
        self.ss = nn.Linear(3, dim)
        self.null = nn.Parameter(torch.zeros(dim))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, time: torch.Tensor, cond: dict, N: int, dtype) -> torch.Tensor:
        mask = cond["mask"].to(dtype)
        B = mask.shape[0]
        idx = cond.get("res_idx")
        if idx is None:
            idx = torch.arange(N, device=mask.device).expand(B, N)
        length = mask.sum(1, keepdim=True)
        pos = torch.cat([fourier(idx.to(dtype), 32, 1000.0), (length / 100.0)[:, :, None].expand(B, N, 1)], -1)
        h = self.time(fourier(time.to(dtype) * 4, 32, 100.0))[:, None] + self.pos(pos)
        ss = cond.get("ss")
        cm = cond.get("cond_mask")
        cm = torch.ones(B, device=mask.device, dtype=dtype) if cm is None else cm.to(dtype)
        if ss is None:
            cm = torch.zeros_like(cm)
            ss = torch.zeros(B, 3, device=mask.device, dtype=dtype)
        c = self.ss(ss.to(dtype)) * cm[:, None] + self.null * (1 - cm[:, None])
        return self.out(h + c[:, None])


def edge_offsets(cond: dict, idx: torch.Tensor) -> torch.Tensor:
    """Bucketed sequence offsets ``[B, N, K]`` in 0..2·MAX_OFFSET+1 (last = far)."""
    B, N, K = idx.shape
    ri = cond.get("res_idx")
    if ri is None:
        ri = torch.arange(N, device=idx.device).expand(B, N)
    rj = torch.gather(ri, 1, idx.reshape(B, -1)).reshape(B, N, K)
    off = rj - ri[:, :, None]
    far = off.abs() > MAX_OFFSET
    return torch.where(far, torch.full_like(off, 2 * MAX_OFFSET + 1), off + MAX_OFFSET)


def remove_com(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Subtract the masked mean over nodes and zero padding; ``v [B, N, 3]``."""
    m = mask.to(v.dtype)[..., None]
    com = (v * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
    return (v - com) * m


def bond_vectors(z: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(to_previous, to_next)``, each ``[B, N, 3]``: x_{i−1} − x_i and x_{i+1} − x_i, zero
    at the chain ends and wherever either residue is padding."""
    m = mask.to(z.dtype)
    nxt = torch.zeros_like(z)
    prv = torch.zeros_like(z)
    nxt[:, :-1] = (z[:, 1:] - z[:, :-1]) * (m[:, 1:] * m[:, :-1])[..., None]
    prv[:, 1:] = -nxt[:, :-1]
    return prv, nxt


def chain_tangent(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, N, 3]`` chain direction at each residue: x_{i+1} − x_{i−1} (one-sided at the
    ends, zero on padding and for isolated residues)."""
    prv, nxt = bond_vectors(z, mask)
    return nxt - prv


#: sequence offsets whose vectors are read in each residue's frame
LOCAL_OFFSETS = (-4, -3, -2, -1, 1, 2, 3, 4)


def unit(v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return v / torch.sqrt((v * v).sum(-1, keepdim=True) + eps * eps)


def chain_frames(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-residue orthonormal frames ``[B, N, 3, 3]`` (columns e₁, e₂, e₃) from a Cα trace
    ``y [B, N, 3]``: e₁ along xᵢ₊₁ − xᵢ₋₁, e₂ along (xᵢ₋₁ − xᵢ) + (xᵢ₊₁ − xᵢ) made
    orthogonal to e₁, e₃ = e₁ × e₂. Chain ends take their inner neighbour's frame; padding
    gets the identity. Rotating the input by R maps every frame F to R·F."""
    B, N, _ = y.shape
    m = mask.to(y.dtype)
    prv, nxt = bond_vectors(y, mask)
    e1 = unit(nxt - prv)
    e2 = unit(prv + nxt - (prv + nxt).mul(e1).sum(-1, keepdim=True) * e1)
    e3 = torch.cross(e1, e2, dim=-1)
    R = torch.stack([e1, e2, e3], -1)  # [B, N, 3, 3]
    has_prev = torch.zeros_like(m)
    has_prev[:, 1:] = m[:, 1:] * m[:, :-1]
    has_next = torch.zeros_like(m)
    has_next[:, :-1] = m[:, :-1] * m[:, 1:]
    inner = (has_prev * has_next)[..., None, None]
    # ends: copy the inner neighbour's frame (N-terminus from i+1, C-terminus from i−1)
    from_next = torch.cat([R[:, 1:], R[:, -1:]], 1)
    from_prev = torch.cat([R[:, :1], R[:, :-1]], 1)
    nterm = ((1 - has_prev) * has_next)[..., None, None]
    cterm = ((1 - has_next) * has_prev)[..., None, None]
    eye = torch.eye(3, dtype=y.dtype, device=y.device).expand(B, N, 3, 3)
    lone = (1 - inner - nterm - cterm).clamp(min=0)
    return inner * R + nterm * from_next + cterm * from_prev + lone * eye


#: width of :func:`local_window_features` per offset (and + 2 for the dihedral)
PER_OFFSET = 3 + 3 + 12 + 1
LOCAL_FEATURES = len(LOCAL_OFFSETS) * PER_OFFSET + 2


def window_offsets(window: int) -> tuple[int, ...]:
    """Sequence offsets −window…−1, 1…window."""
    return tuple(o for o in range(-window, window + 1) if o != 0)


def local_window_features(y: torch.Tensor, mask: torch.Tensor, R: torch.Tensor, offsets=LOCAL_OFFSETS) -> torch.Tensor:
    """``[B, N, len(offsets)·PER_OFFSET + 2]`` invariant, handedness-aware description of
    each residue's chain neighbourhood: for each offset o in ``offsets``, the vector
    Rᵢᵀ(yᵢ₊ₒ − yᵢ) (nm, clipped to ±2), its direction, an RBF of its length and a validity
    flag; then the local virtual dihedral (cos, sin). ``y [B, N, 3]`` nm, ``R`` from
    :func:`chain_frames`."""
    B, N, _ = y.shape
    ar = torch.arange(N, device=y.device)
    m = mask.to(y.dtype)
    feats = []
    for o in offsets:
        j = (ar + o).clamp(0, N - 1)
        ok = (((ar + o >= 0) & (ar + o < N)).to(y.dtype)[None] * m * m[:, j])[..., None]
        v = torch.einsum("bixk,bix->bik", R, y[:, j] - y)  # in frame i
        feats += [v.clamp(-2, 2) * ok, unit(v) * ok, rbf(v.norm(dim=-1), 0.0, 2.0, 12) * ok, ok]
    return torch.cat(feats + [local_dihedral(y, mask)], -1)
