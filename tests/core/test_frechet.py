"""The Fréchet distance of Gaussians against closed forms and against scipy's sqrtm."""

import numpy as np
import pytest
import torch
from scipy import linalg

from polydiff.frechet import frechet_distance, frechet_from_features, gaussian_stats, sqrtm_psd


def _spd(rng, d, cond=10.0):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * np.geomspace(1.0, cond, d)) @ q.T


def test_diagonal_covariances_match_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    # diagonal: ‖μ₁ − μ₂‖² + Σ (√aᵢ − √bᵢ)²
    exact = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(exact, rel=1e-12)


def test_commuting_covariances_match_the_closed_form():
    rng = np.random.default_rng(1)
    d = 6
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # shared eigenbasis: Σ₁Σ₂ = Σ₂Σ₁
    a, b = rng.uniform(0.01, 5, d), rng.uniform(0.01, 5, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    exact = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(mu1, (q * a) @ q.T, mu2, (q * b) @ q.T)
    assert got == pytest.approx(exact, rel=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_random_spd_matches_scipy_sqrtm_and_is_symmetric(seed):
    rng = np.random.default_rng(seed)
    d = 8
    s1, s2 = _spd(rng, d), _spd(rng, d, cond=100.0)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(got, rel=1e-12)


def test_sqrtm_psd_squares_back_and_matches_scipy():
    rng = np.random.default_rng(3)
    s = _spd(rng, 7, cond=1e4)
    r = sqrtm_psd(s)
    np.testing.assert_allclose(r, r.T, atol=0)
    np.testing.assert_allclose(r @ r, s, rtol=0, atol=1e-10 * np.abs(s).max())
    np.testing.assert_allclose(r, linalg.sqrtm(s).real, atol=1e-10)


def test_singular_covariances_stay_finite_and_non_negative():
    # fewer samples than dimensions: both covariances are rank-deficient
    rng = np.random.default_rng(4)
    f1, f2 = rng.normal(size=(5, 20)), rng.normal(size=(6, 20)) + 0.1
    d = frechet_from_features(f1, f2)
    assert np.isfinite(d) and d >= 0
    assert frechet_from_features(f1, f1.copy()) == pytest.approx(0.0, abs=1e-9)


def test_identical_sets_give_zero_and_a_shift_gives_its_squared_norm():
    f = torch.randn(500, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert frechet_from_features(f, f.clone()) == pytest.approx(0.0, abs=1e-9)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0], dtype=torch.float64)
    assert frechet_from_features(f + shift, f) == pytest.approx(float((shift**2).sum()), rel=1e-9)


def test_samples_converge_to_the_gaussian_value():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    y = torch.randn(20000, 3, generator=g, dtype=torch.float64) * 2 + 1
    # exact: |μ|² = 3, Σ (1 − 2)² = 3
    assert frechet_from_features(x, y) == pytest.approx(6.0, abs=0.15)


def test_one_dimensional_features_and_bad_shapes():
    a, b = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])
    mu, cov = gaussian_stats(a)
    assert mu.shape == (1,) and cov.shape == (1, 1)
    assert frechet_from_features(a, b) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match="N ≥ 2"):
        frechet_from_features(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
