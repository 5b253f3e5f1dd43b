"""Spaces: where the noise lives.

A space draws noise (``randn_like``), projects a state back onto itself (``project``),
averages squared errors over its valid entries (``mean``) and counts its degrees of
freedom (``dof``, for likelihoods). Samplers and losses only talk to a space, so the core
stays modality-agnostic: images use :class:`EuclideanSpace`, variable-size sets use
:class:`MaskedSpace`, molecules and proteins :class:`ZeroCoMSpace`.
"""

from __future__ import annotations

import torch

from .rng import SampleRNG

Tensor = torch.Tensor


class EuclideanSpace:
    """ℝ^d per sample, plain Gaussian noise. Shapes: x ``[B, ...]``."""

    def randn_like(self, x: Tensor, rng: SampleRNG) -> Tensor:
        return rng.randn_like(x)

    def project(self, x: Tensor) -> Tensor:
        return x

    def mean(self, sq: Tensor) -> Tensor:
        """Per-sample mean of ``sq`` (``[B, ...]`` → ``[B]``)."""
        return sq.flatten(1).mean(1)

    def dof(self, x: Tensor) -> Tensor:
        return torch.full((x.shape[0],), float(x[0].numel()), dtype=torch.float64, device=x.device)

    def mask_like(self, x: Tensor) -> Tensor:
        return torch.ones_like(x)


class MaskedSpace(EuclideanSpace):
    """Entries where ``mask`` is 0 are padding: no noise, kept at 0, not averaged.

    ``mask``: ``[B, N]`` (node mask for ``x`` of shape ``[B, N, D]``) or any shape that
    broadcasts against ``x``.
    """

    def __init__(self, mask: Tensor):
        self.mask = mask

    def _m(self, x: Tensor) -> Tensor:
        m = self.mask.to(device=x.device, dtype=x.dtype)
        while m.ndim < x.ndim:
            m = m.unsqueeze(-1)
        return m

    def randn_like(self, x, rng):
        return self._node_noise(x, rng)

    def _node_noise(self, x: Tensor, rng) -> Tensor:
        """Masked noise. With per-sample generators (:class:`SampleRNG`) and a node mask
        ``[B, N]``, sample i's noise is drawn at exactly its own number of valid nodes and
        scattered into place: torch's CPU ``randn`` fills a tensor differently depending on
        its size, so drawing at the padded size would tie a sample to the longest sample
        in its batch."""
        gens = getattr(rng, "generators", None)
        m = self.mask
        if gens is None or m.ndim != 2 or x.ndim < 3 or tuple(m.shape) != tuple(x.shape[:2]):
            return rng.randn_like(x) * self._m(x)
        valid = m.detach().to("cpu") > 0.5
        out = torch.zeros(x.shape, dtype=torch.float32)
        for i, g in enumerate(gens):
            idx = valid[i].nonzero().squeeze(1)
            out[i, idx] = torch.randn((len(idx),) + tuple(x.shape[2:]), generator=g, dtype=torch.float32)
        return out.to(device=x.device, dtype=x.dtype)

    def project(self, x):
        return x * self._m(x)

    def mean(self, sq):
        m = self._m(sq).expand_as(sq)
        return (sq * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)

    def dof(self, x):
        return self._m(x).expand_as(x).flatten(1).sum(1).to(torch.float64)

    def mask_like(self, x):
        return self._m(x).expand_as(x)


class ZeroCoMSpace(MaskedSpace):
    """Point sets whose first ``n_pos`` feature channels are coordinates with zero centre
    of mass (per sample, over the valid nodes); other channels are plain masked features.

    x: ``[B, N, D]`` with D ≥ n_pos; mask: ``[B, N]``. The coordinate subspace has
    (n_valid − 1)·n_pos degrees of freedom (Hoogeboom et al. 2022, EDM §3).
    """

    def __init__(self, mask: Tensor, n_pos: int = 3):
        super().__init__(mask)
        self.n_pos = n_pos

    def _center(self, x: Tensor) -> Tensor:
        m = self._m(x)  # [B, N, 1]
        pos = x[..., : self.n_pos]
        com = (pos * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
        pos = (pos - com) * m
        return torch.cat([pos, x[..., self.n_pos :] * m], dim=-1)

    def randn_like(self, x, rng):
        return self._center(self._node_noise(x, rng))

    def project(self, x):
        return self._center(x)

    def dof(self, x):
        n = self._m(x)[..., 0].flatten(1).sum(1).to(torch.float64)
        return (n - 1) * self.n_pos + n * (x.shape[-1] - self.n_pos)

    def center_of_mass(self, x: Tensor) -> Tensor:
        """``[B, n_pos]`` centre of mass of the coordinate channels over valid nodes."""
        m = self._m(x)
        return (x[..., : self.n_pos] * m).sum(1) / m.sum(1).clamp(min=1)
