"""Guidance wrappers against exact answers on a Gaussian mixture: CFG interpolates the
exact conditional/unconditional denoisers; classifier guidance with the exact noisy
classifier gives the exact class-conditional denoiser."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gmm import GaussianMixture, circle_mixture  # noqa: E402

from polydiff import guidance  # noqa: E402

F64 = torch.float64
GMM = circle_mixture()


def component_d(x, sigma, k):
    """Exact denoiser of component k alone: μ_k + s_k²/(s_k² + σ̃²)(x − μ_k)."""
    s2 = torch.as_tensor(sigma, dtype=F64).reshape(-1, 1) ** 2
    sk2 = GMM.s[k].reshape(-1, 1) ** 2
    return GMM.mu[k] + sk2 / (sk2 + s2) * (x - GMM.mu[k])


def cond_denoiser(x, sigma, cond):
    """cond_mask = 1: the class-conditional denoiser; 0: the unconditional mixture."""
    m = cond["cond_mask"].reshape(-1, 1).to(F64)
    return m * component_d(x, sigma, cond["label"]) + (1 - m) * GMM.denoise(x, sigma)


def test_cfg_scales_interpolate_and_extrapolate_exactly():
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 2
    cond = {"label": torch.tensor([0, 1, 2, 3, 4, 5]), "cond_mask": torch.ones(6)}
    sig = torch.full((6,), 0.8, dtype=F64)
    dc, du = component_d(x, sig, cond["label"]), GMM.denoise(x, sig)
    assert torch.allclose(guidance.cfg(cond_denoiser, cond, 1.0)(x, 0.8), dc)
    assert torch.allclose(guidance.cfg(cond_denoiser, cond, 0.0)(x, 0.8), du)
    assert torch.allclose(guidance.cfg(cond_denoiser, cond, 3.0)(x, sig), du + 3 * (dc - du))
    # negative conditioning: the "unconditional" branch is another class
    neg = {"label": torch.tensor([4, 5, 6, 7, 0, 1]), "cond_mask": torch.ones(6)}
    dn = component_d(x, sig, neg["label"])
    assert torch.allclose(guidance.cfg(cond_denoiser, cond, 2.0, uncond=neg)(x, 0.8), dn + 2 * (dc - dn))


def test_guidance_rescale_restores_the_conditional_std():
    x = torch.randn(4, 2, 8, generator=torch.Generator().manual_seed(1), dtype=F64)

    def den(z, sigma, cond):
        m = cond["cond_mask"].reshape(-1, 1, 1).to(F64)
        return m * 0.5 * z + (1 - m) * 0.1 * z

    cond = {"cond_mask": torch.ones(4)}
    g = guidance.cfg(den, cond, 5.0, rescale=1.0)(x, 1.0)
    xc = 0.5 * x
    assert torch.allclose(g.std(dim=(1, 2)), xc.std(dim=(1, 2)))
    plain = guidance.cfg(den, cond, 5.0)(x, 1.0)
    half = guidance.cfg(den, cond, 5.0, rescale=0.5)(x, 1.0)
    assert torch.allclose(half, 0.5 * g + 0.5 * plain)


def test_classifier_guidance_with_the_exact_classifier_is_exact():
    """∇ln p(y | x̃, σ̃) of the mixture's responsibilities turns D into the class-y denoiser."""

    def classifier(x, sigma):
        return GMM._comp_logp(x, sigma)

    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(2), dtype=F64) * 3
    y = torch.arange(8)
    for s in (0.3, 1.5, 6.0):
        sig = torch.full((8,), s, dtype=F64)
        out = guidance.classifier_guidance(lambda z, sg: GMM.denoise(z, sg), classifier, y, 1.0)(x, sig)
        assert torch.allclose(out, component_d(x, sig, y), rtol=1e-7, atol=1e-7)


def test_wrappers_compose():
    one = GaussianMixture([1.0], [[0.0, 0.0]], [1.0])
    base = lambda x, s, c: one.denoise(x, s)  # noqa: E731
    cond = {"cond_mask": torch.ones(3)}
    d = guidance.compose(guidance.bind(base, cond))
    x = torch.randn(3, 2, dtype=F64)
    assert torch.allclose(d(x, 1.0), 0.5 * x)
