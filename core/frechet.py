"""The Fréchet distance between two Gaussians (Dowson & Landau 1982), the statistic of FID
(Heusel et al. 2017), FVD (Unterthiner et al. 2018) and the plugins' ``*_fd_ours`` metrics:

    d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½

The cross term is computed from the *symmetric* PSD matrix Σ₁^½ Σ₂ Σ₁^½ (it has the
eigenvalues of Σ₁Σ₂, so its square root has the trace of (Σ₁Σ₂)^½): two symmetric
eigendecompositions in float64, eigenvalues clipped at 0 against round-off. Unlike a
general matrix square root of the non-symmetric product Σ₁Σ₂ (``scipy.linalg.sqrtm``),
it never turns complex and stays finite for singular (rank-deficient) covariances, e.g.
fewer samples than feature dimensions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sqrtm_psd", "gaussian_stats", "frechet_distance", "frechet_from_features"]


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)


def sqrtm_psd(a) -> np.ndarray:
    """The symmetric PSD square root of a symmetric PSD matrix ``[d, d]`` (float64; the
    input is symmetrised and negative round-off eigenvalues are taken as 0)."""
    a = _sym(np.atleast_2d(np.asarray(a, dtype=np.float64)))
    w, v = np.linalg.eigh(a)
    return _sym((v * np.sqrt(np.clip(w, 0.0, None))) @ v.T)


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[d]`` and unbiased covariance ``[d, d]`` (float64) of ``features`` ``[N, d]``
    (a NumPy array or a torch tensor); needs N ≥ 2."""
    if hasattr(features, "detach"):  # torch tensor
        features = features.detach().cpu().double().numpy()
    f = np.asarray(features, dtype=np.float64)
    if f.ndim == 1:
        f = f[:, None]
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"the Fréchet distance needs features [N ≥ 2, d], got shape {tuple(f.shape)}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂), in the
    squared units of the features; ``mu`` ``[d]``, ``cov`` ``[d, d]`` (scalars for d = 1).
    Symmetric in its two Gaussians; ≥ 0."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    c1, c2 = _sym(np.atleast_2d(np.asarray(cov1, np.float64))), _sym(np.atleast_2d(np.asarray(cov2, np.float64)))
    if mu1.shape != mu2.shape or c1.shape != c2.shape or c1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not match: mu {mu1.shape}, {mu2.shape}; cov {c1.shape}, {c2.shape}")
    r1 = sqrtm_psd(c1)
    lam = np.linalg.eigvalsh(_sym(r1 @ c2 @ r1))
    cross = np.sqrt(np.clip(lam, 0.0, None)).sum()
    d2 = float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2.0 * cross)
    return max(d2, 0.0)


def frechet_from_features(f1, f2) -> float:
    """:func:`frechet_distance` of the Gaussians fitted to feature sets ``[N₁, d]`` and
    ``[N₂, d]`` (arrays or tensors; N ≥ 2 each)."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))
