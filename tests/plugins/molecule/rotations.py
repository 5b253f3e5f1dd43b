"""Helper for the molecule equivariance tests (not a test module)."""

from __future__ import annotations

import torch


def orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    """A random float64 3×3 rotation (``reflect`` False) or reflection (True), seeded."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None]
    if (torch.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q
