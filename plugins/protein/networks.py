"""Cα-trace denoisers: an e3nn SE(3)-equivariant network and an EGNN baseline.

Both are called ``net(x_in, time, cond) -> F [B, N, 3]`` (EDM's preconditioned output,
a vector per residue; see :mod:`.features` for the inputs). Outputs are translation
invariant, rotate with the input (F(R x + t) = R F(x)), have zero mean over the valid
residues and are zero on padding. Both break mirror symmetry through the sine of the
local virtual dihedral, so they are SE(3)- (not E(3)-) equivariant and can learn helix
handedness.

- :class:`EGNNDenoiser`: E(n)-equivariant graph network (Satorras, Hoogeboom & Welling
  2021, eqs. 3–6) on a sparse graph of sequence + nearest neighbours; coordinates are
  updated with messages along relative vectors, normalised by (d + 1); with
  ``chiral=True`` also along the pseudo-vectors rel_ij × t_i (t_i = x_{i+1} − x_{i−1}, the
  chain tangent). Messages along relative vectors are mirror-symmetric, so handedness
  enters the default network only through the dihedral-sine input. Measured on the 50
  domains: neither variant's samples show the real +50° virtual-dihedral peak after CPU
  minutes (7,000 plain / 4,300 chiral steps); chiral samples lean twice as often to +50°
  as to −50° (plain: 1.4×), real ones 18×. With ``frame_features=True`` each residue also
  reads its i±1…±window neighbourhood in its chain frame (signed, so handed) and adds an
  output vector predicted in that frame. Measured (8-min one-thread runs, 2,500 steps):
  training loss 0.87 vs 1.04, and SDEdit of real crops from σ̃ = 0.2 nm keeps helix 0.077
  vs 0.005 (real 0.245) — local conformation is learned much faster.
- :class:`E3Denoiser`: NequIP-style convolutions (Batzner et al. 2022) built with e3nn:
  irreps node features (scalars, pseudo-scalars, vectors, pseudo-vectors), spherical
  harmonics (l ≤ 2) of relative positions, radial MLPs giving per-edge weights of a
  depthwise ('uvu') tensor product, gated nonlinearities, and a ``1x1o`` vector readout.
"""

from __future__ import annotations

import torch
from torch import nn

from .features import (
    MAX_OFFSET,
    PER_OFFSET,
    NodeEmbedding,
    bond_vectors,
    chain_frames,
    chain_tangent,
    edge_offsets,
    gather_nodes,
    local_dihedral,
    local_window_features,
    neighbours,
    physical_coords,
    physical_scale,
    rbf,
    remove_com,
    window_offsets,
    with_residue_mask,
)


def _mlp(i: int, h: int, o: int, last_act: bool = False) -> nn.Sequential:
    layers = [nn.Linear(i, h), nn.SiLU(), nn.Linear(h, o)]
    if last_act:
        layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class _EdgeGeometry(nn.Module):
    """Invariant edge features: RBF of the physical distance (0–2 nm), a fine RBF over
    0.3–0.8 nm (Cα i→i+1…i+4 distances: 0.38, ≈0.55, ≈0.52, ≈0.62 nm in a helix, where
    0.01 nm matters), RBF of the scaled distance, the bond-length offset, and an embedding
    of the sequence offset."""

    def __init__(self, dim: int, n_rbf: int = 24, n_fine: int = 16):
        super().__init__()
        self.n_rbf, self.n_fine = n_rbf, n_fine
        self.offset = nn.Embedding(2 * MAX_OFFSET + 2, dim)
        self.proj = nn.Linear(2 * n_rbf + n_fine + 1, dim)

    def forward(self, d_phys, d_in, off):
        f = torch.cat(
            [
                rbf(d_phys, 0.0, 2.0, self.n_rbf),
                rbf(d_phys, 0.3, 0.8, self.n_fine),
                rbf(d_in, 0.0, 4.0, self.n_rbf),
                ((d_phys - 0.38) * 10).clamp(-5, 5)[..., None],
            ],
            -1,
        )
        return self.proj(f) + self.offset(off)


class EGNNDenoiser(nn.Module):
    """EGNN baseline. Args: ``hidden`` channels, ``layers``, ``k_seq`` sequence
    neighbours on each side, ``k_nn`` spatial neighbours, ``sigma_data`` (nm);
    ``chiral``: also update along pseudo-vectors; ``frame_features``: read each residue's
    i±1…±4 neighbourhood in its chain frame (:func:`~.features.local_window_features`) as
    an input and add an output vector predicted in that frame (Rᵢ oᵢ) — local conformation
    (helix or strand) is then an input rather than something the distance messages must
    reconstruct; ``frame_window`` sets the ±window of offsets read."""

    def __init__(
        self,
        hidden: int = 96,
        layers: int = 5,
        k_seq: int = 3,
        k_nn: int = 16,
        sigma_data: float = 1.0,
        chiral: bool = False,
        frame_features: bool = False,
        frame_window: int = 4,
    ):
        super().__init__()
        self.k_seq, self.k_nn, self.sigma_data, self.chiral = k_seq, k_nn, float(sigma_data), bool(chiral)
        self.frame_features = bool(frame_features)
        self.embed = NodeEmbedding(hidden)
        self.node_in = nn.Linear(hidden + 2, hidden)
        if self.frame_features:
            self.offsets = window_offsets(int(frame_window))
            self.local_in = _mlp(len(self.offsets) * PER_OFFSET + 2, hidden, hidden)
            self.local_out = nn.Linear(hidden, 3)
            with torch.no_grad():
                self.local_out.weight.mul_(0.1)
                self.local_out.bias.zero_()
        self.edge_geo = nn.ModuleList([_EdgeGeometry(hidden) for _ in range(layers)])
        # φ_e([h_i, h_j, a_ij]) with its first linear layer split per argument (node-level
        # products computed once, then gathered: the same function, far fewer flops)
        self.e_src = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(layers)])
        self.e_dst = nn.ModuleList([nn.Linear(hidden, hidden, bias=False) for _ in range(layers)])
        self.phi_e = nn.ModuleList(
            [nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()) for _ in range(layers)]
        )
        self.phi_x = nn.ModuleList([_mlp(hidden, hidden, 1) for _ in range(layers)])
        self.phi_chiral = nn.ModuleList([_mlp(hidden, hidden, 1) for _ in range(layers)]) if chiral else None
        self.phi_h = nn.ModuleList([_mlp(2 * hidden, hidden, hidden) for _ in range(layers)])
        self.norm = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(layers)])

    def forward(self, x_in: torch.Tensor, time: torch.Tensor, cond: dict | None) -> torch.Tensor:
        B, N, _ = x_in.shape
        cond, mask = with_residue_mask(x_in, cond)
        y = physical_coords(x_in, time, self.sigma_data)
        scale = physical_scale(time, self.sigma_data, x_in.dtype).reshape(B, 1, 1)
        h = self.node_in(torch.cat([self.embed(time, cond, N, x_in.dtype), local_dihedral(y, mask)], -1))
        if self.frame_features:
            y_valid = y * mask[..., None]
            R = chain_frames(y_valid, mask)
            h = h + self.local_in(local_window_features(y_valid, mask, R, self.offsets))
        idx, ok = neighbours(y, mask, self.k_seq, self.k_nn)
        off = edge_offsets(cond, idx)
        okf = ok.to(x_in.dtype)[..., None]
        kcount = okf.sum(2).clamp(min=1)
        z = x_in
        for l, (geo, fe, fx, fh, ln) in enumerate(zip(self.edge_geo, self.phi_e, self.phi_x, self.phi_h, self.norm)):
            zj = gather_nodes(z, idx)
            rel = z[:, :, None] - zj  # [B, N, K, 3]
            d_in = rel.norm(dim=-1)
            d_phys = d_in * scale
            pre = self.e_src[l](h)[:, :, None] + gather_nodes(self.e_dst[l](h), idx) + geo(d_phys, d_in, off)
            e = fe(pre) * okf
            upd = rel / (d_in[..., None] + 1) * fx(e)
            if self.chiral:
                # pseudo-vectors rel_ij × t_i: rotate with the input, flip sign under reflection
                t = chain_tangent(z, mask)[:, :, None].expand_as(rel)
                chi = torch.cross(rel, t, dim=-1) / (d_in[..., None] * t.norm(dim=-1, keepdim=True) + 1)
                upd = upd + chi * self.phi_chiral[l](e)
            z = z + (upd * okf).sum(2) / kcount
            h = ln(h + fh(torch.cat([h, e.sum(2) / kcount], -1)))
        out = z - x_in
        if self.frame_features:
            out = out + torch.einsum("bixk,bik->bix", R, self.local_out(h))
        return remove_com(out, mask)


class _IrrepsRMSNorm(nn.Module):
    """Equivariant normalisation: each irreps block (mul × ir) is divided by the RMS of its
    components over channels (a rotation-invariant number), with a learned per-channel gain."""

    def __init__(self, irreps, eps: float = 1e-6):
        super().__init__()
        self.slices = [(s.start, s.stop, mul, ir.dim) for s, (mul, ir) in zip(irreps.slices(), irreps)]
        self.gain = nn.Parameter(torch.ones(sum(mul for _, _, mul, _ in self.slices)))
        self.eps = eps

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        parts, g0 = [], 0
        for a, b, mul, dim in self.slices:
            blk = f[..., a:b].reshape(*f.shape[:-1], mul, dim)
            rms = blk.pow(2).mean(dim=(-1, -2), keepdim=True).add(self.eps).sqrt()
            parts.append((blk / rms * self.gain[g0 : g0 + mul, None]).reshape(*f.shape[:-1], b - a))
            g0 += mul
        return torch.cat(parts, -1)


class E3Denoiser(nn.Module):
    """SE(3)-equivariant denoiser built with e3nn.

    Args: ``scalars``/``vectors`` channel counts of the hidden irreps
    (``S×0e + S/4×0o + V×1o + V/2×1e``), ``layers``, ``lmax`` of the edge spherical
    harmonics, ``k_seq``/``k_nn`` neighbours, ``sigma_data`` (nm).
    """

    def __init__(
        self,
        scalars: int = 48,
        vectors: int = 12,
        layers: int = 4,
        lmax: int = 2,
        k_seq: int = 3,
        k_nn: int = 16,
        sigma_data: float = 1.0,
    ):
        super().__init__()
        from e3nn import o3
        from e3nn.nn import Gate

        self.k_seq, self.k_nn, self.sigma_data = k_seq, k_nn, float(sigma_data)
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        ps, pv = max(scalars // 4, 1), max(vectors // 2, 1)
        self.hidden = o3.Irreps(f"{scalars}x0e + {ps}x0o + {vectors}x1o + {pv}x1e")
        self.embed = NodeEmbedding(scalars)
        # input: scalars (embedding, cos and sin of the local dihedral), bond vectors i→i±1.
        # The sine is a pseudo-scalar fed in as if it were even ("0e"): that deliberately
        # breaks parity, so the network is SE(3)- but not E(3)-equivariant (chirality).
        self.irreps_in = o3.Irreps(f"{scalars + 2}x0e + 2x1o")
        self.lin_in = o3.Linear(self.irreps_in, self.hidden)
        self.edge = nn.ModuleList([_EdgeGeometry(scalars) for _ in range(layers)])
        self.tps, self.radials, self.lin_out, self.gates, self.self_int, self.norms = (
            nn.ModuleList() for _ in range(6)
        )
        for _ in range(layers):
            irreps_mid, instructions = [], []
            for i, (mul, ir_in) in enumerate(self.hidden):
                for j, (_, ir_sh) in enumerate(self.irreps_sh):
                    for ir_out in ir_in * ir_sh:
                        if ir_out in o3.Irreps("0e + 0o + 1o + 1e"):
                            instructions.append((i, j, len(irreps_mid), "uvu", True))
                            irreps_mid.append((mul, ir_out))
            irreps_mid = o3.Irreps(irreps_mid)
            tp = o3.TensorProduct(
                self.hidden, self.irreps_sh, irreps_mid, instructions, shared_weights=False, internal_weights=False
            )
            self.tps.append(tp)
            self.radials.append(_mlp(scalars, scalars, tp.weight_numel))
            n_gated = vectors + pv
            gate = Gate(
                f"{scalars}x0e + {ps}x0o",
                [torch.nn.functional.silu, torch.tanh],
                f"{n_gated}x0e",
                [torch.sigmoid],
                f"{vectors}x1o + {pv}x1e",
            )
            self.gates.append(gate)
            self.lin_out.append(o3.Linear(irreps_mid, gate.irreps_in))
            self.self_int.append(o3.Linear(self.hidden, gate.irreps_in))
            self.norms.append(_IrrepsRMSNorm(self.hidden))
        self.readout = o3.Linear(self.hidden, o3.Irreps("1x1o"))

    def forward(self, x_in: torch.Tensor, time: torch.Tensor, cond: dict | None) -> torch.Tensor:
        from e3nn import o3

        B, N, _ = x_in.shape
        cond, mask = with_residue_mask(x_in, cond)
        y = physical_coords(x_in, time, self.sigma_data)
        m3 = mask[..., None]
        prv, nxt = bond_vectors(y, mask)  # nm, zero at the ends and on padding
        dih = local_dihedral(y, mask)
        s = self.embed(time, cond, N, x_in.dtype)
        f = self.lin_in(torch.cat([s, dih[..., :1], dih[..., 1:], prv, nxt], -1)) * m3
        idx, ok = neighbours(y, mask, self.k_seq, self.k_nn)
        off = edge_offsets(cond, idx)
        okf = ok.to(x_in.dtype)[..., None]
        kcount = okf.sum(2).clamp(min=1)
        rel = gather_nodes(y, idx) - y[:, :, None]  # [B, N, K, 3] nm
        d_phys = rel.norm(dim=-1)
        d_in = gather_nodes(x_in, idx).sub(x_in[:, :, None]).norm(dim=-1)
        sh = o3.spherical_harmonics(self.irreps_sh, rel, normalize=True, normalization="component")
        for geo, tp, radial, lin, gate, si, norm in zip(
            self.edge, self.tps, self.radials, self.lin_out, self.gates, self.self_int, self.norms
        ):
            w = radial(geo(d_phys, d_in, off))  # [B, N, K, weight_numel]
            fj = gather_nodes(f, idx)
            msg = tp(fj, sh, w) * okf
            agg = msg.sum(2) / kcount
            f = norm(f + gate(lin(agg) + si(f))) * m3
        out = self.readout(f)
        return remove_com(out, mask)
