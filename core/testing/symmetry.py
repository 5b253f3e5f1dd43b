"""Declared symmetries (check ``equivariance``).

A modality declares ``equivariance = ("rotation", "permutation")`` (any of ``rotation``,
``reflection``, ``permutation``) and ``position_dims`` (the channels of the last axis of
``x [B, N, D]`` that hold coordinates: ``3`` for ``x[..., :3]``, or ``(start, stop)``). The
kit then checks the denoiser D(x, σ, cond) on a noised collated batch:

- rotation: D(x with positions·Qᵀ) = D(x) with positions·Qᵀ, other channels unchanged, for a
  random proper rotation Q (2-D or 3-D); the space must remove translations (a
  :class:`polydiff.spaces.ZeroCoMSpace`), since rotations act about the origin;
- reflection: the same for a random improper orthogonal Q (det −1);
- permutation: D(x[:, π], cond[:, π]) = D(x, cond)[:, π] for a random permutation π of axis 1
  (every cond tensor shaped ``[B, N, ...]`` is permuted with x).
"""

from __future__ import annotations

import torch

from .components import position_slice
from .modality import SKIPPED

TOLERANCE = 1e-3  # relative to max(1, max |D(x)|): float32 networks reach ~1e-6


def random_orthogonal(k: int, generator: torch.Generator, proper: bool = True) -> torch.Tensor:
    """A Haar-random ``[k, k]`` orthogonal matrix (float64) with det +1 (``proper``) or −1."""
    a = torch.randn(k, k, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    if (torch.linalg.det(q) > 0) != proper:
        q[:, 0] = -q[:, 0]
    return q


def transform_positions(x: torch.Tensor, q: torch.Tensor, sl: slice) -> torch.Tensor:
    out = x.clone()
    out[..., sl] = (x[..., sl].double() @ q.T).to(x.dtype)
    return out


def permute_axis1(x: torch.Tensor, cond, perm: torch.Tensor):
    B, N = x.shape[:2]

    def p(v):
        return v[:, perm.to(v.device)] if torch.is_tensor(v) and v.ndim >= 2 and tuple(v.shape[:2]) == (B, N) else v

    return x[:, perm.to(x.device)], (None if cond is None else {k: p(v) for k, v in cond.items()})


def _relative_error(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    return (a - b).abs().max().item() / max(1.0, scale.abs().max().item())


def check_equivariance(run):
    """Check every symmetry ``run`` (a :class:`~polydiff.testing.modality.ModalityRun`) declares."""
    decl = tuple(run.opts.equivariance or ())
    if not decl:
        run.rep.skipped.append(("equivariance", run.comp, "the modality declares no equivariance"))
        return SKIPPED
    if run.parts is not None:
        from .mixed import check_permutation

        return check_permutation(run, decl)
    net = f"network {run.model.network_name!r}"
    x, cond, out = run.x_noisy, run.cond, run.d_out
    g = torch.Generator().manual_seed(run.opts.seed + 7)
    ok = True
    if {"rotation", "reflection"} & set(decl):
        sl = position_slice(run.opts.position_dims)
        if sl is None or x.ndim < 3:
            run.fail(
                "equivariance",
                f"declares {decl} but positions are not located (position_dims={run.opts.position_dims!r}, "
                f"x {tuple(x.shape)})",
                "set position_dims on the modality (3 for x[..., :3]); x must be [B, N, D]",
            )
            return False
        shift = torch.zeros_like(x)
        shift[..., sl] = 1.0
        moved = (run.space.project(x + shift) - run.space.project(x)).abs().max().item()
        if moved > 1e-4:
            run.fail(
                "equivariance",
                "declares rotation symmetry but its space keeps translations (rotations act about the origin)",
                "return polydiff.spaces.ZeroCoMSpace(mask, n_pos=k) from space(cond): zero centre of mass",
            )
            ok = False
        for sym, proper in (("rotation", True), ("reflection", False)):
            if sym not in decl:
                continue
            q = random_orthogonal(sl.stop - (sl.start or 0), g, proper)
            got = run._denoise(transform_positions(x, q, sl), cond)
            err = _relative_error(got, transform_positions(out, q, sl), out)
            if err > TOLERANCE:
                run.fail(
                    "equivariance",
                    f"declares {sym} equivariance but D(Qx) differs from Q·D(x) by {err:.3g} (relative) for a random "
                    f"{'rotation' if proper else 'reflection'} of channels {sl.start or 0}:{sl.stop}",
                    f"make the network {sym}-equivariant (positions enter only through differences and norms, "
                    f"coordinate updates are sums of difference vectors) or remove {sym!r} from equivariance",
                    net,
                )
                ok = False
    if "permutation" in decl:
        if x.ndim < 3:
            run.fail(
                "equivariance", f"declares permutation equivariance but x is {tuple(x.shape)}", "x must be [B, N, D]"
            )
            return False
        perm = torch.randperm(x.shape[1], generator=g)
        xp, cp = permute_axis1(x, cond, perm)
        err = _relative_error(run._denoise(xp, cp), out[:, perm], out)
        if err > TOLERANCE:
            run.fail(
                "equivariance",
                f"declares permutation equivariance but D(πx) differs from π·D(x) by {err:.3g} (relative) for a "
                "random permutation of axis 1",
                "make the network treat the set symmetrically (no positional embeddings, symmetric pooling) or "
                "remove 'permutation' from equivariance",
                net,
            )
            ok = False
    return ok
