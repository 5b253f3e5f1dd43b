"""Per-sample random numbers: sample i's noise never depends on the batch it is in.

Sample i of a call with seed s draws from its own ``torch.Generator`` seeded with a
hash of (s, i), on the CPU (so CPU and CUDA runs see the same noise), then moves the
numbers to the target device.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch


def sample_seed(seed: int, index: int) -> int:
    digest = hashlib.blake2b(f"{int(seed)}:{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class SampleRNG:
    """One generator per sample. ``SampleRNG(seed, n)`` or ``SampleRNG(seeds=[...])``.

    ``offset`` lets a caller continue numbering (sample ``offset + i``), e.g. when a
    large request is split into batches.
    """

    def __init__(
        self, seed: int | None = None, n: int | None = None, *, seeds: Sequence[int] | None = None, offset: int = 0
    ):
        if seeds is None:
            if seed is None or n is None:
                raise ValueError("give seed and n, or seeds")
            seeds = [sample_seed(seed, offset + i) for i in range(n)]
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape, *, device=None, dtype=torch.float32) -> torch.Tensor:
        """Standard normal of shape ``[n, *shape]`` (shape excludes the batch axis)."""
        out = torch.stack([torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in self.generators])
        return out.to(device=device, dtype=dtype)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self):
            raise ValueError(f"batch of {x.shape[0]} but {len(self)} generators")
        return self.randn(x.shape[1:], device=x.device, dtype=x.dtype)

    def rand(self, shape=(), *, device=None, dtype=torch.float32) -> torch.Tensor:
        out = torch.stack([torch.rand(tuple(shape), generator=g, dtype=torch.float32) for g in self.generators])
        return out.to(device=device, dtype=dtype)

    def rademacher_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.rand(x.shape[1:], device=x.device) < 0.5, -1.0, 1.0).to(x.dtype)


class GeneratorRNG:
    """Batch-level randomness from one ``torch.Generator`` (training, where samples need
    not be independent of the batch). Same duck-typed interface as :class:`SampleRNG`."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=self.generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)

    def rand(self, shape, *, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.rand(tuple(shape), generator=self.generator, dtype=torch.float32).to(device=device, dtype=dtype)

    def rademacher_like(self, x: torch.Tensor) -> torch.Tensor:
        """±1 with equal probability, shape of ``x`` (Hutchinson probes)."""
        return torch.where(self.rand(x.shape, device=x.device) < 0.5, -1.0, 1.0).to(x.dtype)
