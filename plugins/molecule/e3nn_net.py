"""An e3nn denoiser: tensor-field message passing with spherical-harmonic edge features
(Thomas et al. 2018 "Tensor field networks"; Geiger & Smidt 2022, e3nn).

Per layer, over the fully connected graph of each molecule's real atoms:

    m_ij = TP_w(‖r_ij‖)(h_j ⊗ Y(r̂_ij)),    r_ij = x_i − x_j,
    h_i ← Linear(h_i) + Gate(Σ_j m_ij / √n̄)

``Y`` are real spherical harmonics up to ``lmax``; the tensor-product weights come from an
MLP of a Gaussian radial basis of the distance; hidden features are irreps (scalars and
gated vectors/pseudovectors/l=2). The output head maps the last irreps to ``1x1o`` (a
polar vector per atom: the position displacement, then the masked centre of mass is
removed) and ``Kx0e`` scalars (type/charge predictions). Everything is O(3)-equivariant
by construction (e3nn) and translation-invariant (only relative vectors enter).
"""

from __future__ import annotations

import torch
from torch import nn

from .egnn import ConditionEmbedding, edge_index, node_mask_of, remove_com, time_features


class E3nnDenoiser(nn.Module):
    """``forward(x [B, N, 3+K(+1)], time [B], cond) → [B, N, 3+K(+1)]`` (see module doc).

    Args: ``n_types``, ``n_charges``, ``n_props``, ``scalars``/``vectors`` (multiplicities
    of hidden 0e and of each gated 1o/1e/2e), ``layers``, ``lmax`` (edge harmonics),
    ``n_basis`` and ``max_radius`` (radial basis, in the network's input units),
    ``radial_hidden``.
    """

    def __init__(
        self,
        n_types: int = 5,
        n_charges: int = 0,
        n_props: int = 0,
        scalars: int = 32,
        vectors: int = 8,
        layers: int = 3,
        lmax: int = 2,
        n_basis: int = 12,
        max_radius: float = 8.0,
        radial_hidden: int = 32,
        time_dim: int = 16,
        avg_neighbors: float = 16.0,
    ):
        super().__init__()
        from e3nn import nn as enn
        from e3nn import o3

        self._init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__", "enn", "o3")}

        self.n_feat = n_types + n_charges
        self.time_dim, self.n_basis, self.max_radius = time_dim, n_basis, float(max_radius)
        self.norm = avg_neighbors**0.5
        self.cond = ConditionEmbedding(n_props, scalars)
        n_in = self.n_feat + 1 + time_dim + (scalars if n_props else 0)
        self.embed = nn.Linear(n_in, scalars)
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        gated = o3.Irreps(f"{vectors}x1o + {vectors}x1e" + (f" + {vectors}x2e" if lmax >= 2 else ""))
        irreps_scalars = o3.Irreps(f"{scalars}x0e")
        irreps_gates = o3.Irreps(f"{gated.num_irreps}x0e")
        irreps_in = irreps_scalars
        self.tps, self.radials, self.gates, self.selfs = (
            nn.ModuleList(),
            nn.ModuleList(),
            nn.ModuleList(),
            nn.ModuleList(),
        )
        for _ in range(layers):
            gate = enn.Gate(irreps_scalars, [torch.nn.functional.silu], irreps_gates, [torch.sigmoid], gated)
            tp = o3.FullyConnectedTensorProduct(irreps_in, self.irreps_sh, gate.irreps_in, shared_weights=False)
            self.radials.append(
                enn.FullyConnectedNet([n_basis, radial_hidden, tp.weight_numel], torch.nn.functional.silu)
            )
            self.tps.append(tp)
            self.gates.append(gate)
            self.selfs.append(o3.Linear(irreps_in, gate.irreps_out))
            irreps_in = gate.irreps_out
        self.head = o3.Linear(irreps_in, o3.Irreps(f"1x1o + {self.n_feat}x0e"))

    def __deepcopy__(self, memo):
        """Rebuild and load the state: ``copy.deepcopy`` of e3nn's compiled (torch.fx)
        modules renames their constant buffers, which would break EMA copies and their
        checkpoints (``state_dict`` keys must match a freshly built network)."""
        ref = next(self.parameters())
        new = type(self)(**self._init_kwargs).to(device=ref.device, dtype=ref.dtype)
        new.load_state_dict(self.state_dict())
        for p_new, p in zip(new.parameters(), self.parameters()):
            p_new.requires_grad_(p.requires_grad)
        new.train(self.training)
        memo[id(self)] = new
        return new

    def forward(self, x: torch.Tensor, time: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        from e3nn import o3
        from e3nn.math import soft_one_hot_linspace

        B, N, D = x.shape
        mask = node_mask_of(x, cond)
        pos = x[..., :3].reshape(B * N, 3)
        parts = [x[..., 3:], time_features(time.to(x.dtype), self.time_dim)[:, None].expand(B, N, -1)]
        c = self.cond(cond, B, x.dtype, x.device)
        if c is not None:
            parts.append(c[:, None].expand(B, N, -1))
        nm = mask.reshape(B * N, 1)
        h = self.embed(torch.cat(parts, -1)).reshape(B * N, -1) * nm
        recv, send = edge_index(mask)
        rel = pos[recv] - pos[send]
        dist = rel.norm(dim=-1)
        sh = o3.spherical_harmonics(self.irreps_sh, rel, normalize=True, normalization="component")
        basis = soft_one_hot_linspace(dist, 0.0, self.max_radius, self.n_basis, basis="gaussian", cutoff=False)
        basis = basis * self.n_basis**0.5
        for tp, radial, gate, lin in zip(self.tps, self.radials, self.gates, self.selfs):
            msg = tp(h[send], sh, radial(basis))
            agg = torch.zeros(B * N, msg.shape[-1], dtype=msg.dtype, device=msg.device).index_add_(0, recv, msg)
            h = (lin(h) + gate(agg / self.norm)) * nm
        out = self.head(h).reshape(B, N, -1)
        vel = remove_com(out[..., :3], mask)
        return torch.cat([vel, out[..., 3:] * mask[..., None]], -1)
