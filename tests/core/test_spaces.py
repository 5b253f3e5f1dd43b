"""Spaces: where the noise lives (plain, masked, zero centre of mass)."""

from __future__ import annotations

import torch

from polydiff.rng import SampleRNG
from polydiff.spaces import EuclideanSpace, MaskedSpace, ZeroCoMSpace


def mask():
    m = torch.ones(3, 6)
    m[0, 4:] = 0
    m[2, 2:] = 0
    return m


def test_zero_com_noise_is_centred_per_sample_over_valid_nodes():
    sp = ZeroCoMSpace(mask(), n_pos=3)
    x = torch.zeros(3, 6, 5, dtype=torch.float64)
    n = sp.randn_like(x, SampleRNG(0, 3))
    assert sp.center_of_mass(n).abs().max() < 1e-12
    assert (n[0, 4:] == 0).all() and (n[2, 2:] == 0).all()
    assert n[..., 3:].abs().sum() > 0  # feature channels are noised, not centred
    assert torch.allclose(sp.project(n), n)  # projection is idempotent
    assert sp.dof(x).tolist() == [(4 - 1) * 3 + 4 * 2, (6 - 1) * 3 + 6 * 2, (2 - 1) * 3 + 2 * 2]


def test_zero_com_noise_has_unit_variance_in_the_subspace():
    """E‖P n‖² = dof for the projected Gaussian (Hoogeboom et al. 2022, §3)."""
    m = torch.ones(2000, 5)
    sp = ZeroCoMSpace(m, n_pos=3)
    n = sp.randn_like(torch.zeros(2000, 5, 3, dtype=torch.float64), SampleRNG(1, 2000))
    mean_sq = float((n**2).flatten(1).sum(1).mean())
    assert abs(mean_sq - 12.0) < 0.3  # (5 − 1)·3 = 12, MC error ≈ 0.1


def test_masked_mean_ignores_padding_and_euclidean_counts_all():
    sp = MaskedSpace(mask())
    sq = torch.ones(3, 6, 2)
    sq[0, 4:] = 100.0
    assert torch.allclose(sp.mean(sq), torch.ones(3))
    assert EuclideanSpace().dof(torch.zeros(4, 3, 2)).tolist() == [6.0] * 4
    assert sp.dof(torch.zeros(3, 6, 2)).tolist() == [8.0, 12.0, 4.0]


def test_masked_noise_does_not_depend_on_padding():
    """Sample i's noise is drawn at its own valid size: padding to a longer batch mate
    (which changes how torch fills a tensor) must not change it."""
    import torch

    from polydiff.rng import SampleRNG
    from polydiff.spaces import MaskedSpace, ZeroCoMSpace

    for cls in (MaskedSpace, ZeroCoMSpace):
        tight = torch.ones(1, 6)
        padded = torch.cat([torch.ones(1, 6), torch.zeros(1, 24)], 1)
        z_tight = cls(tight).randn_like(torch.zeros(1, 6, 3), SampleRNG(7, 1))
        z_pad = cls(padded).randn_like(torch.zeros(1, 30, 3), SampleRNG(7, 1))
        assert torch.equal(z_tight[0], z_pad[0, :6])
        assert torch.count_nonzero(z_pad[0, 6:]) == 0
