"""Fragment (scaffold) inpainting: fixed atoms — types and positions — are kept while the
rest of the molecule is generated (linker / decoration design).

Replacement inpainting (Lugmayr et al. 2022, without resampling) in x̂₀ space: at every
denoiser call the fixed atoms of x̂₀ are overwritten by the fragment. The state lives in
the zero-centre-of-mass subspace while the fragment is given in the user's frame, so the
fragment is first **aligned by translation**: it is shifted so that its centroid equals
the centroid of the network's prediction for those atoms (the optimal translation in the
least-squares sense), written into x̂₀, and x̂₀ is projected back to zero centre of mass
(a translation of the whole molecule, which leaves the fragment's internal geometry
untouched). After the last step, where the samplers return x̂₀, the finished molecule is
translated so that the fragment's centroid is back at its given centroid: the fixed atoms
then sit at their given positions up to float32 rounding (≈1e-6 Å).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from polydiff.spaces import ZeroCoMSpace


def inpaint_fragment(
    model,
    elements: Sequence[str],
    positions,
    n_atoms: int | Sequence[int],
    n: int = 1,
    *,
    sampler: str = "dpmpp_2m",
    steps: int = 50,
    seed: int = 0,
    cond: dict | None = None,
    guidance: float = 1.0,
    return_state: bool = False,
    **sample_options,
):
    """Generate ``n`` molecules of ``n_atoms`` atoms that contain the fragment.

    ``elements`` (K symbols) and ``positions`` (``[K, 3]`` Å) are the fixed atoms; they
    occupy the first K atom slots. Returns RDKit Mols (or, with ``return_state``, the
    raw ``(x [n, N, D], cond)``).
    """
    mod = model.modality
    pos = torch.as_tensor(np.asarray(positions, dtype=np.float64), dtype=torch.float32).reshape(-1, 3)
    K = pos.shape[0]
    if len(elements) != K:
        raise ValueError(f"{len(elements)} fragment elements but {K} positions")
    counts = [int(n_atoms)] * n if np.ndim(n_atoms) == 0 else [int(c) for c in n_atoms]
    if min(counts) < K:
        raise ValueError(f"n_atoms ({min(counts)}) is smaller than the fragment ({K} atoms)")
    feats = mod.record_to_tensor(_record(elements, pos.double().numpy()))[:, 3:]
    centroid = pos.mean(0)
    request = dict(cond or {}, n_atoms=counts)

    def wrap(denoiser, c):
        space = ZeroCoMSpace(c["mask"], n_pos=3)

        def pinned(x, sigma):
            out = denoiser(x, sigma).clone()
            k_pos = pos.to(device=out.device, dtype=out.dtype)
            shift = out[:, :K, :3].mean(1, keepdim=True) - k_pos.mean(0)[None, None]
            out[:, :K, :3] = k_pos[None] + shift
            out[:, :K, 3:] = feats.to(device=out.device, dtype=out.dtype)[None]
            return space.project(out)

        return pinned

    x, c = model.sample_raw(
        n, sampler=sampler, steps=steps, seed=seed, cond=request, guidance=guidance, wrap=wrap, **sample_options
    )
    mask = c["mask"].to(x.device, x.dtype)[..., None]
    x = x.clone()
    x[..., :3] = (x[..., :3] - x[:, :K, :3].mean(1, keepdim=True) + centroid.to(x.device, x.dtype)) * mask
    if return_state:
        return x, c
    return mod.decode(x, c)


def _record(elements, positions):
    from .data import MoleculeRecord

    return MoleculeRecord(list(elements), positions)
