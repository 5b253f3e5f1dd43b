"""``egnn_joint``: an E(3)-equivariant network over atoms *and* bonds for the joint molecule
modality (:mod:`.joint`).

EGNN (Satorras et al. 2021) in EDM's form (:mod:`.egnn`) with an edge state updated in every
block, as MiDi (Vignac et al. 2023) and EQGAT-diff (Le et al. 2024) carry bond features
through their layers. Dense over the N×N atom pairs of each molecule (QM9: N ≤ 29); per
block, with P_ij = 1 for pairs of distinct real atoms:

    m_ij = φ_m(h_i, h_j, ‖x_i−x_j‖², ‖x⁰_i−x⁰_j‖², e_ij) · σ(φ_att(·)) · P_ij
    h_i ← h_i + φ_h(h_i, Σ_j m_ij / Z)
    x_i ← x_i + Σ_j (x_i−x_j)/(‖x_i−x_j‖+1) · tanh(φ_x(m_ij)) · r / Z
    e_ij ← e_ij + φ_e(m_ij + m_ji) · P_ij           (symmetric in i, j)

With ``triangle`` a :class:`TriangleUpdate` (AlphaFold 2's triangle multiplicative update,
Jumper et al. 2021) follows the edge update in every ``triangle_every``-th block (counted
back from the last): e_ij ← e_ij + Σ_k (gated e_ik ⊙ e_jk), a 3-body term the pair messages
lack.

Outputs: ``pos`` the displacement x_final − x⁰ with zero centre of mass (equivariant);
``atom`` and ``charge`` logits from h (invariant); ``bond`` logits from
φ_b(e_ij, h_i + h_j, ‖x_i−x_j‖²), symmetrised as ½(L_ij + L_ji) (exactly symmetric) and
pinned to "none" on the diagonal and for padding (a −30 margin on the other classes).
Property conditioning (``n_props`` > 0; EDM, Hoogeboom et al. 2022 §5, feeds the properties
to every node): ``cond["props"]`` ``[B, P]`` passes an MLP
(:class:`~.egnn.ConditionEmbedding`) into an embedding added to the time embedding, so every
node's initial features see it; ``cond["cond_mask"]`` 0 (CFG dropout, the unconditional
branch of guidance) swaps in a learned null embedding instead. The properties are invariant
scalars, so the symmetries below are unchanged. With ``atoms_given`` (formula conditioning,
:mod:`.joint`) the atom types come from ``cond["atom_types"]`` instead of the state and there
is no ``atom`` output; they are embedded as before.

Positions enter only through distances and move only along relative vectors with
invariant weights: E(3)-equivariant; atoms are a set and bonds are indexed by atom pairs:
permutation-equivariant with the matching permutation of bond rows and columns.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from .egnn import ConditionEmbedding, remove_com, time_features

#: logit margin that pins the diagonal and padding pairs to "no bond"
PIN = 30.0


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.SiLU(), nn.Linear(h, o))


class JointBlock(nn.Module):
    """One message-passing block over nodes ``h`` ``[B, N, H]``, positions ``x`` ``[B, N, 3]``
    and edges ``e`` ``[B, N, N, E]`` (see the module docstring)."""

    def __init__(self, hidden: int, edge_dim: int, coords_range: float, aggregation_norm: float, triangle_dim: int = 0):
        super().__init__()
        self.a = nn.Linear(hidden, hidden)
        self.b = nn.Linear(hidden, hidden, bias=False)
        self.c = nn.Linear(2 + edge_dim, hidden, bias=False)
        self.m2 = nn.Linear(hidden, hidden)
        self.att = nn.Linear(hidden, 1)
        self.node = _mlp(2 * hidden, hidden, hidden)
        self.coord = _mlp(hidden, hidden, 1)
        nn.init.xavier_uniform_(self.coord[2].weight, gain=0.001)
        self.edge = _mlp(hidden, hidden, edge_dim)
        self.r, self.z = coords_range, aggregation_norm
        self.triangle = TriangleUpdate(edge_dim, triangle_dim) if triangle_dim else None

    def forward(self, h, x, e, d0, pair, node):
        diff = x[:, :, None] - x[:, None, :]
        d2 = (diff * diff).sum(-1, keepdim=True)
        z = self.a(h)[:, :, None] + self.b(h)[:, None, :] + self.c(torch.cat([d2, d0, e], -1))
        m = torch.nn.functional.silu(self.m2(torch.nn.functional.silu(z)))
        m = m * torch.sigmoid(self.att(m)) * pair
        h = (h + self.node(torch.cat([h, m.sum(2) / self.z], -1))) * node
        unit = diff / (torch.sqrt(d2 + 1e-8) + 1.0)
        x = (x + (unit * torch.tanh(self.coord(m)) * pair).sum(2) * self.r / self.z) * node
        e = (e + self.edge(m + m.transpose(1, 2))) * pair
        if self.triangle is not None:
            e = e + self.triangle(e, pair)
        return h, x, e


class TriangleUpdate(nn.Module):
    """A symmetric triangle multiplicative update of the edge state ``e`` ``[B, N, N, E]``
    (AlphaFold 2's "outgoing edges" update, Jumper et al. 2021, Suppl. Alg. 11, with one
    projection for both sides so that a symmetric ``e`` stays symmetric):

        z = LN(e),   a_ik = W_a z_ik · σ(W_g z_ik) · P_ik,   t_ij = Σ_k a_ik ⊙ a_jk,
        e_ij ← e_ij + W_o LN(t_ij) · σ(W_u z_ij) · P_ij

    Pair messages alone see two atoms and their distance; this lets the bond state of i–j
    read those of i–k and k–j over every third atom k (a 3-body term: whether i and j already
    share a bonded neighbour), which an undertrained pairwise model lacks when it closes
    triangles. Invariant features summed over all k: the symmetries of the block are unchanged.
    Cost B·N³·E multiply-adds (QM9, N ≤ 29, E = 32: ≈ 0.8 M per molecule).
    """

    def __init__(self, edge_dim: int, dim: int | None = None):
        super().__init__()
        dim = dim or edge_dim
        self.norm_in = nn.LayerNorm(edge_dim)
        self.proj = nn.Linear(edge_dim, dim)
        self.gate = nn.Linear(edge_dim, dim)
        self.norm_out = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, edge_dim)
        self.out_gate = nn.Linear(edge_dim, edge_dim)
        nn.init.zeros_(self.out.weight)  # a zero update at first: the block starts as the one without it
        nn.init.zeros_(self.out.bias)

    def forward(self, e: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """The update (to add to ``e``), zero off the real pairs ``pair`` ``[B, N, N, 1]``."""
        z = self.norm_in(e)
        a = self.proj(z) * torch.sigmoid(self.gate(z)) * pair
        t = torch.einsum("bikc,bjkc->bijc", a, a)
        return self.out(self.norm_out(t)) * torch.sigmoid(self.out_gate(z)) * pair


def _size_groups(cond: dict | None, N: int) -> list[tuple[int, torch.Tensor]] | None:
    """``[(atom count n, batch indices)]`` when ``cond["mask"]`` is a prefix mask over
    molecules of more than one size (or all smaller than N), else None (one dense pass)."""
    if cond is None or "mask" not in cond:
        return None
    mask = cond["mask"]
    counts = (mask > 0).sum(1)
    prefix = torch.arange(N, device=mask.device)[None] < counts[:, None]
    if not bool(((mask > 0) == prefix).all()) or bool((counts == N).all()):
        return None
    return [(int(n), torch.nonzero(counts == n).flatten()) for n in torch.unique(counts).tolist() if n > 0] or None


def _crop(v: torch.Tensor, n: int, pairs: bool = False) -> torch.Tensor:
    """The first ``n`` atoms of a per-atom ``[b, N, ...]`` (``pairs``: per-pair ``[b, N, N, ...]``) tensor."""
    return v[:, :n, :n] if pairs else v[:, :n]


def _pinned(like: torch.Tensor, B: int, N: int) -> torch.Tensor:
    """Bond logits ``[B, N, N, K]`` of a padding pair: 0 for "none", −PIN for the rest."""
    pin = torch.full((B, N, N, like.shape[-1]), -PIN, dtype=like.dtype, device=like.device)
    pin[..., 0] = 0.0
    return pin


class JointEGNN(nn.Module):
    """``forward(state, time [B], cond) → {"pos": [B, N, 3], "atom": [B, N, Ka],
    "charge": [B, N, Kc], "bond": [B, N, N, Kb]}``.

    ``state``: ``pos`` ``[B, N, 3]`` (preconditioned positions), ``atom``/``charge``
    ``[B, N]`` and ``bond`` ``[B, N, N]`` long state indices (``n_*_states`` each, the mask
    token included for the masked process); ``cond["mask"]`` ``[B, N]``. Args: the state and
    class counts of the three categorical parts (:meth:`.joint.JointMoleculeModality.network_kwargs`),
    ``hidden`` (node width), ``edge_dim`` (edge width), ``layers``, ``coords_range`` r,
    ``aggregation_norm`` Z, ``time_dim``, ``n_props`` (conditioning properties P:
    ``cond["props"]`` ``[B, P]``, ``cond["cond_mask"]`` ``[B]``; 0: unconditional),
    ``atoms_given`` (the atom types are a condition, ``cond["atom_types"]`` ``[B, N]`` long,
    not a part of the state: no ``atom`` output), ``triangle`` (a :class:`TriangleUpdate` of
    the edges, of width ``triangle_dim`` (0: ``edge_dim``), in every ``triangle_every``-th block
    counted back from the last).
    """

    def __init__(
        self,
        n_atom_states: int = 5,
        n_atom_classes: int = 5,
        n_charge_states: int = 3,
        n_charge_classes: int = 3,
        n_bond_states: int = 4,
        n_bond_classes: int = 4,
        hidden: int = 128,
        edge_dim: int = 32,
        layers: int = 4,
        coords_range: float = 15.0,
        aggregation_norm: float = 10.0,
        time_dim: int = 16,
        n_props: int = 0,
        atoms_given: bool = False,
        triangle: bool = False,
        triangle_dim: int = 0,
        triangle_every: int = 1,
    ):
        super().__init__()
        self.time_dim = time_dim
        self.n_props = n_props
        self.atoms_given = bool(atoms_given)
        self.cond_emb = ConditionEmbedding(n_props, hidden) if n_props else None
        self.atom_emb = nn.Embedding(n_atom_states, hidden)
        self.charge_emb = nn.Embedding(n_charge_states, hidden)
        self.time_emb = _mlp(1 + time_dim, hidden, hidden)
        self.bond_emb = nn.Embedding(n_bond_states, edge_dim)
        if triangle and triangle_every < 1:
            raise ValueError(f"triangle_every must be a positive block interval, got {triangle_every!r}")
        tri = (triangle_dim or edge_dim) if triangle else 0
        self.blocks = nn.ModuleList(
            # the triangle updates in every k-th block, counted back from the last
            JointBlock(
                hidden, edge_dim, coords_range, aggregation_norm, tri if (layers - 1 - i) % triangle_every == 0 else 0
            )
            for i in range(layers)
        )
        self.atom_out = None if self.atoms_given else _mlp(hidden, hidden, n_atom_classes)
        self.charge_out = _mlp(hidden, hidden, n_charge_classes)
        self.bond_out = _mlp(edge_dim + hidden + 1, hidden, n_bond_classes)

    @torch.no_grad()
    def grow_init_(self, smaller: dict) -> None:
        """Make the blocks this network has beyond a network of keywords ``smaller`` (whose
        weights were loaded into the first ones; only ``layers`` may differ) the identity: the
        last layers of their node, coordinate and edge MLPs are zeroed, so h, x and e pass them
        unchanged and the grown network computes what the smaller one does; training then
        moves them (their inputs are not zero, so their gradients are not). A bigger
        distillation student (:func:`polydiff.distill.new_student`) starts this way."""
        defaults = {k: p.default for k, p in inspect.signature(JointEGNN).parameters.items()}
        n_old = int(smaller.get("layers", defaults["layers"]))
        # widths and class counts that differ fail the weight loading (shapes); these do not
        mine = {"coords_range": self.blocks[0].r, "aggregation_norm": self.blocks[0].z, "time_dim": self.time_dim}
        other = sorted(k for k, v in mine.items() if float(smaller.get(k, defaults[k])) != float(v))
        if other:
            raise ValueError(f"egnn_joint grows only in layers; {other} differ")
        if not 0 < n_old <= len(self.blocks):
            raise ValueError(f"cannot grow {len(self.blocks)} blocks from {n_old}")
        if any(b.triangle is not None for b in self.blocks[n_old:]):
            raise ValueError("egnn_joint grows only by plain blocks (no triangle updates in the new ones)")
        for blk in self.blocks[n_old:]:
            for mlp in (blk.node, blk.coord, blk.edge):
                nn.init.zeros_(mlp[2].weight)
                nn.init.zeros_(mlp[2].bias)

    def forward(self, state: dict, time: torch.Tensor, cond: dict | None = None) -> dict:
        """The outputs above. A batch of molecules of different sizes (prefix ``cond["mask"]``)
        runs in groups of equal atom count, each cropped to its own size: the padding atoms
        and pairs carry exact zeros through every block, so the real atoms' outputs are the
        dense pass's (to float rounding) and the padding gets what the dense pass gives it, at
        Σ nᵢ² instead of B·N² pair cost (QM9 samples: ≈ 2.5× fewer pairs)."""
        groups = _size_groups(cond, state["pos"].shape[1])
        if groups is None:
            return self._dense(state, time, cond)
        pos0 = state["pos"]
        B, N, _ = pos0.shape
        outs = []
        for n, idx in groups:
            sub_state = {k: _crop(v[idx], n, pairs=k == "bond") for k, v in state.items()}
            sub_cond = {
                k: _crop(v[idx], n) if k in ("mask", "atom_types") else (v[idx] if torch.is_tensor(v) else v)
                for k, v in cond.items()
            }
            outs.append((n, idx, self._dense(sub_state, time[idx] if time.dim() else time, sub_cond)))
        h0 = torch.zeros(self.charge_out[0].in_features, dtype=pos0.dtype, device=pos0.device)
        out = {
            "pos": torch.zeros_like(pos0),
            "charge": self.charge_out(h0).expand(B, N, -1).clone(),
            "bond": _pinned(outs[0][2]["bond"], B, N),
        }
        if not self.atoms_given:
            out["atom"] = self.atom_out(h0).expand(B, N, -1).clone()
        for n, idx, sub in outs:
            for key in [k for k in ("pos", "atom", "charge") if k in sub]:
                out[key][idx, :n] = sub[key]
            out["bond"][idx, :n, :n] = sub["bond"]
        return out

    def _dense(self, state: dict, time: torch.Tensor, cond: dict | None = None) -> dict:
        pos0 = state["pos"]
        B, N, _ = pos0.shape
        dt = pos0.dtype
        mask = cond["mask"].to(pos0) if cond is not None and "mask" in cond else torch.ones(B, N, dtype=dt)
        node = mask[..., None]
        eye = torch.eye(N, dtype=dt, device=pos0.device)
        pair = (mask[:, :, None] * mask[:, None, :] * (1 - eye))[..., None]
        t = self.time_emb(time_features(time.to(dt), self.time_dim))
        if self.cond_emb is not None:
            t = t + self.cond_emb(cond, B, dt, pos0.device)
        if self.atoms_given and (cond is None or "atom_types" not in cond):
            raise ValueError("this network takes the atom types as a condition: cond['atom_types'] [B, N] is missing")
        atom = cond["atom_types"] if self.atoms_given else state["atom"]
        h = (self.atom_emb(atom) + self.charge_emb(state["charge"]) + t[:, None]) * node
        e = self.bond_emb(state["bond"]) * pair
        x = pos0 * node
        diff0 = x[:, :, None] - x[:, None, :]
        d0 = (diff0 * diff0).sum(-1, keepdim=True)
        for block in self.blocks:
            h, x, e = block(h, x, e, d0, pair, node)
        diff = x[:, :, None] - x[:, None, :]
        d2 = (diff * diff).sum(-1, keepdim=True)
        hs = h[:, :, None] + h[:, None, :]
        bond = self.bond_out(torch.cat([e, hs, d2], -1))
        bond = 0.5 * (bond + bond.transpose(1, 2))
        pin = torch.full_like(bond[..., :1], 0.0).expand_as(bond).clone()
        pin[..., 1:] = -PIN
        bond = torch.where(pair > 0, bond, pin)
        out = {"pos": remove_com(x - pos0 * node, mask), "charge": self.charge_out(h), "bond": bond}
        if not self.atoms_given:
            out["atom"] = self.atom_out(h)
        return out
