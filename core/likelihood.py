"""Likelihood through the probability-flow ODE (Song et al. 2021 §4.3, App. D.2; Chen et al.
2018 / Grathwohl et al. 2019 for the instantaneous change of variables).

In the σ̃ view with u = ln σ̃ the PF-ODE is dx/du = v(x, u) = x − D(x, e^u). Along a
trajectory, d ln p_u(x(u))/du = −∇·v, so for data x at σ̃_min

    ln p_{σ̃min}(x) = ln p_prior(x(σ̃max)) + ∫_{ln σ̃min}^{ln σ̃max} ∇·v du,

with prior N(0, σ̃max² I) (restricted to the space's subspace: ``space.dof`` degrees of
freedom). ∇·v = dof − ∇·D. The divergence is exact (one backward pass per dimension, for
small d) or Hutchinson's estimate εᵀ(∂v/∂x)ε with Rademacher or Gaussian probes ε held
fixed along the trajectory (FFJORD). Integration: torchdiffeq dopri5 on the joint state.

Units: NLL in nats per sample; :func:`bits_per_dim` converts, with the dequantisation /
rescaling offset for data mapped from {0..255} to [−1, 1].

Discrete and mixed states have no PF-ODE density; their likelihood is bounded by the
discrete-time ELBO instead: :func:`discrete_elbo` for one categorical variable set
(:mod:`polydiff.categorical`), :func:`mixed_elbo` (from :mod:`polydiff.mixed`) for a state with
continuous and categorical parts; :func:`bits_per_variable` converts.
"""

from __future__ import annotations

import math

import torch

from .categorical import CategoricalProcess, kl_step, prior_kl, time_grid
from .mixed import mixed_elbo
from .rng import SampleRNG
from .spaces import EuclideanSpace

F64 = torch.float64


def _divergence_exact(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[B]`` Σ_j ∂v_j/∂x_j by one backward pass per coordinate (samples independent)."""
    flat = v.flatten(1)
    div = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
    for j in range(flat.shape[1]):
        (g,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=True)
        div = div + g.flatten(1)[:, j]
    return div


def _divergence_hutchinson(v: torch.Tensor, x: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    """``[B]`` εᵀ(∂v/∂x)ε (unbiased for E[εεᵀ] = I on the space)."""
    (g,) = torch.autograd.grad((v * probe).sum(), x)
    return (g * probe).flatten(1).sum(1)


def _hutchinson_probe(x: torch.Tensor, space, probe: str, rng: SampleRNG | None) -> torch.Tensor:
    """The probe ε ``[B, ...]`` on ``space``: ``rademacher`` (±1, projected) or ``gaussian``,
    drawn per sample from ``rng`` (default: seed 0)."""
    rng = rng if rng is not None else SampleRNG(0, x.shape[0])
    if probe == "rademacher":
        return space.project(rng.rademacher_like(x))
    if probe == "gaussian":
        return space.randn_like(x, rng)
    raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")


def _gaussian_logp(x: torch.Tensor, dof: torch.Tensor, sigma: float) -> torch.Tensor:
    """``[B]`` log N(x; 0, σ̃² I) over ``dof`` degrees of freedom (float64): the prior at σ̃_max."""
    sq = (x.to(F64) ** 2).flatten(1).sum(1)
    return -0.5 * sq / sigma**2 - 0.5 * dof.to(F64) * math.log(2 * math.pi * sigma**2)


def pf_ode_nll(
    denoiser,
    x: torch.Tensor,
    *,
    sigma_min: float,
    sigma_max: float,
    space=None,
    divergence: str = "exact",
    probe: str = "rademacher",
    rng: SampleRNG | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    return_stats: bool = False,
):
    """Negative log-likelihood ``[B]`` (nats) of data ``x`` ``[B, ...]`` under the model's PF-ODE.

    ``denoiser(x̃, σ̃)`` (conditioning bound); ``divergence``: ``exact`` or ``hutchinson``
    (with ``probe`` ``rademacher`` or ``gaussian``, drawn per sample from ``rng``, projected
    onto ``space``). With ``return_stats`` also returns a dict: ``prior_logp``, ``delta_logp``
    (the integral) and ``nfe``. The result is −ln p_{σ̃min}(x): the density of data seen
    through noise σ̃_min (small), as in Song et al. 2021.
    """
    from torchdiffeq import odeint

    space = EuclideanSpace() if space is None else space
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    x = x.to(F64 if x.dtype == F64 else torch.float32)
    x = space.project(x)
    dof = space.dof(x).to(x.dtype)
    eps = _hutchinson_probe(x, space, probe, rng) if divergence == "hutchinson" else None
    count = [0]

    def rhs(u, state):
        xs = state[0]
        count[0] += 1
        with torch.enable_grad():
            xs = xs.detach().requires_grad_(True)
            v = space.project(xs - denoiser(xs, math.exp(float(u))))
            div = _divergence_exact(v, xs) if eps is None else _divergence_hutchinson(v, xs, eps)
        return v.detach(), div.detach()

    u = torch.tensor([math.log(sigma_min), math.log(sigma_max)], dtype=x.dtype)
    xs, dlogp = odeint(rhs, (x, torch.zeros(x.shape[0], dtype=x.dtype)), u, rtol=rtol, atol=atol, method=method)
    x_T, delta = xs[-1], dlogp[-1]
    prior = _gaussian_logp(x_T, dof, sigma_max)
    nll = -(prior + delta.to(F64))
    if return_stats:
        return nll, {"prior_logp": prior, "delta_logp": delta.to(F64), "nfe": count[0]}
    return nll


def bits_per_dim(nll: torch.Tensor, dof, *, data_scale: float | None = None) -> torch.Tensor:
    """Bits per dimension from an NLL in nats: nll/(dof·ln 2).

    ``data_scale``: if the model sees x = u/scale + shift for integer data u (e.g. 127.5
    for {0..255} → [−1, 1]), the density in u-space is p_x/scale^dof, so ln(scale) nats
    per dimension are added (Ho et al. 2020 report bits/dim on that scale).
    """
    dof = torch.as_tensor(dof, dtype=F64)
    per_dim = torch.as_tensor(nll, dtype=F64) / dof
    if data_scale is not None:
        per_dim = per_dim + math.log(data_scale)
    return per_dim / math.log(2.0)


@torch.no_grad()
def discrete_elbo(
    denoiser,
    x0: torch.Tensor,
    process: CategoricalProcess,
    *,
    steps: int,
    rng,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Variational bound ``[B]`` (nats, float64) on −log p(x₀) of categorical data ``x0``
    ``[B, ...]`` (long, clean classes) under a discrete diffusion model:

        KL(q(x₁|x₀) ‖ π) + Σ_{k} E_{q(x_t|x₀)} KL(q(x_s|x_t, x₀) ‖ p_θ(x_s|x_t))

    over ``steps`` uniform steps t → s of :func:`polydiff.categorical.time_grid`, one fresh
    x_t ~ q(x_t|x₀) per step drawn from ``rng`` (per sample with a :class:`SampleRNG`); the last
    step (s = 0) is the reconstruction −log p_θ(x₀|x_{t₁}). ``denoiser(x_t, t [B]) → clean-class
    logits [B, ..., K]``; ``mask`` (bool ``[B, ...]``) leaves padding out. Unbiased for the
    discrete-time bound; for an exact denoiser of data whose variables are independent it equals
    −log p(x₀) in expectation at any ``steps`` (the reverse step is then exact).
    """
    times = time_grid(steps)
    B = x0.shape[0]
    w = torch.ones(x0.shape, dtype=F64, device=x0.device) if mask is None else mask.to(F64)
    total = (prior_kl(process, x0) * w).reshape(B, -1).sum(-1)
    for i in range(int(steps)):
        t, s = times[i].expand(B), times[i + 1].expand(B)
        x_t = process.sample_forward(x0, t, rng)
        total = total + (kl_step(process, x0, x_t, denoiser(x_t, t), t, s) * w).reshape(B, -1).sum(-1)
    return total


def bits_per_variable(nats: torch.Tensor, count) -> torch.Tensor:
    """Bits per variable from a bound or NLL in nats: nats/(count·ln 2); ``count`` the number of
    (valid) variables per sample, a number or ``[B]``."""
    return torch.as_tensor(nats, dtype=F64) / (torch.as_tensor(count, dtype=F64) * math.log(2.0))


__all__ = ["pf_ode_nll", "bits_per_dim", "discrete_elbo", "mixed_elbo", "bits_per_variable"]
