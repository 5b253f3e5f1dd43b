"""Exact-score Gaussian mixtures: the ground truth the sampler tests measure against.

For x₀ ~ Σ_k w_k N(μ_k, s_k² I) and x̃ = x₀ + σ̃ε (the σ̃ view), the marginal is
Σ_k w_k N(μ_k, (s_k² + σ̃²) I) and the denoiser is closed-form:
D(x̃, σ̃) = Σ_k r_k(x̃)·[μ_k + s_k²/(s_k² + σ̃²)·(x̃ − μ_k)], r_k the posterior
component responsibilities. Everything is computed in float64 and returned in the
input's dtype.
"""
from __future__ import annotations

import math

import torch

F64 = torch.float64


class GaussianMixture:
    """weights ``[K]``, means ``[K, d]``, stds ``[K]`` (isotropic)."""

    def __init__(self, weights, means, stds):
        self.w = torch.as_tensor(weights, dtype=F64)
        self.w = self.w / self.w.sum()
        self.mu = torch.as_tensor(means, dtype=F64)
        self.s = torch.as_tensor(stds, dtype=F64)
        self.d = self.mu.shape[1]

    # -- data --------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        k = torch.multinomial(self.w, n, replacement=True, generator=generator)
        z = torch.randn(n, self.d, generator=generator, dtype=F64)
        return self.mu[k] + self.s[k, None] * z

    def _comp_logp(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """``[n, K]`` log w_k + log N(x; μ_k, (s_k² + σ̃²) I)."""
        sig = torch.as_tensor(sigma, dtype=F64).reshape(-1, 1)
        var = self.s[None, :] ** 2 + sig ** 2  # [n or 1, K]
        sq = ((x.to(F64)[:, None, :] - self.mu[None]) ** 2).sum(-1)
        return torch.log(self.w)[None] - 0.5 * sq / var - 0.5 * self.d * torch.log(2 * math.pi * var)

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """``[n]`` log p_σ̃(x) of the noised marginal."""
        return torch.logsumexp(self._comp_logp(x, sigma), dim=1)

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Exact D(x̃, σ̃) = E[x₀ | x̃]; x ``[n, d]``, σ̃ scalar or ``[n]``."""
        xf = x.to(F64)
        sig = torch.as_tensor(sigma, dtype=F64).reshape(-1, 1)
        r = torch.softmax(self._comp_logp(xf, sig), dim=1)  # [n, K]
        shrink = self.s[None] ** 2 / (self.s[None] ** 2 + sig ** 2)  # [n, K]
        comp = self.mu[None] + shrink[..., None] * (xf[:, None, :] - self.mu[None])
        return (r[..., None] * comp).sum(1).to(x.dtype)

    def __call__(self, x, sigma, cond=None):
        return self.denoise(x, sigma)

    def eps_table_model(self, alphas_cumprod: torch.Tensor):
        """A diffusers-style ε-network ``model(x_t, timestep)`` for a discrete VP table
        (timestep rounded to the nearest table index): ε̂ = (x_t − √ᾱ·D(x_t/√ᾱ, σ̃))/√(1−ᾱ)."""
        ac = torch.as_tensor(alphas_cumprod, dtype=F64)

        def model(x_t, timestep, cond=None):
            k = torch.as_tensor(timestep, dtype=F64).reshape(-1).round().long()
            k = k.expand(x_t.shape[0]) if k.numel() == 1 else k
            a, s = ac[k].sqrt(), (1 - ac[k]).sqrt()
            xs = x_t.to(F64) / a[:, None]
            x0 = self.denoise(xs, s / a)
            return ((x_t.to(F64) - a[:, None] * x0) / s[:, None]).to(x_t.dtype)

        return model


def circle_mixture(k: int = 8, radius: float = 4.0, s_lo: float = 0.2, s_hi: float = 0.5) -> GaussianMixture:
    """REFERENCES.md's 2-D problem: k components on a circle, stds spread over [s_lo, s_hi]."""
    ang = torch.arange(k, dtype=F64) * (2 * math.pi / k)
    means = torch.stack([radius * torch.cos(ang), radius * torch.sin(ang)], 1)
    stds = torch.linspace(s_lo, s_hi, k, dtype=F64)
    weights = torch.linspace(1.0, 2.0, k, dtype=F64)
    return GaussianMixture(weights, means, stds)


def mixture_16d(k: int = 6, seed: int = 3) -> GaussianMixture:
    """A 16-D mixture with well-separated means (|μ| ≈ 3) and stds in [0.3, 0.7]."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, 16, generator=g, dtype=F64)
    means = 3.0 * means / means.norm(dim=1, keepdim=True)
    stds = torch.linspace(0.3, 0.7, k, dtype=F64)
    return GaussianMixture(torch.ones(k, dtype=F64), means, stds)


def sliced_w2(a: torch.Tensor, b: torch.Tensor, n_proj: int = 128, seed: int = 0) -> float:
    """Sliced Wasserstein-2 between two equal-size point sets ``[n, d]`` (fixed directions)."""
    if a.shape != b.shape:
        raise ValueError("sliced_w2 needs sets of equal size")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], n_proj, generator=g, dtype=F64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a.to(F64) @ dirs, dim=0)
    pb, _ = torch.sort(b.to(F64) @ dirs, dim=0)
    return float(((pa - pb) ** 2).mean().sqrt())


def mc_floor(gmm: GaussianMixture, n: int, pairs: int = 5, seed: int = 1000) -> float:
    """Mean SW2 over ``pairs`` pairs of independent exact sample sets of size ``n``."""
    vals = []
    for p in range(pairs):
        g = torch.Generator().manual_seed(seed + p)
        vals.append(sliced_w2(gmm.sample(n, g), gmm.sample(n, g)))
    return sum(vals) / len(vals)


class ExactNet(torch.nn.Module):
    """``net(x_t, time, cond)`` predicting ``kind`` (eps, x0, v, score, flow) exactly for a
    mixture, given the schedule the Denoiser uses (time → t via the schedule's inverse).
    A dummy parameter gives it a device for :class:`polydiff.model.DiffusionModel`."""

    def __init__(self, gmm: GaussianMixture, schedule, kind: str):
        super().__init__()
        self.gmm, self.schedule, self.kind = gmm, schedule, kind
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def t_of(self, time):
        from polydiff.schedules import DiscreteVPSchedule, EDMSchedule, VEGeometric

        tm = torch.as_tensor(time, dtype=F64)
        sch = self.schedule
        if isinstance(sch, DiscreteVPSchedule):
            return tm / (sch.num_train_timesteps - 1)
        if isinstance(sch, EDMSchedule):
            return torch.exp(4 * tm)
        if isinstance(sch, VEGeometric):
            return torch.log(torch.exp(tm) / sch.s0) / math.log(sch.s1 / sch.s0)
        if sch.name in ("vp_linear", "sub_vp_linear"):
            return tm / 999.0
        return tm

    def forward(self, x_t, time, cond=None):
        from polydiff.parameterization import _derivatives, from_x0

        t = self.t_of(time)
        a, s = self.schedule.alpha(t), self.schedule.sigma(t)
        sv = (s / a).reshape(-1)
        xt = x_t.to(F64)
        x0 = self.gmm.denoise(xt / a.reshape(-1, 1), sv)
        da = ds = None
        if self.kind == "flow":
            da, ds = _derivatives(self.schedule, t)
        return from_x0(self.kind, x0, xt, a, s, da, ds).to(x_t.dtype)
