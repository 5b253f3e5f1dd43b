"""Training losses, all written as a weighted x̂₀ error λ(σ̃)·‖D(x₀ + σ̃n, σ̃) − x₀‖², which is
exactly MSE on any parameterisation's own target with the matching weight (see
:meth:`polydiff.parameterization.Denoiser.default_x0_weight`).

Weightings λ(σ̃) in x₀ space (SNR = 1/σ̃²):
``default`` — the parameterisation's own MSE; ``uniform`` — x₀-MSE; ``snr`` — ε-MSE;
``min_snr`` — Hang et al. 2023 min-SNR-γ: ε-pred weight min(SNR, γ)/SNR, i.e. min(SNR, γ)
in x₀ space (the same x₀ weight results for v-pred's min(SNR, γ)/(SNR + 1));
``edm`` — (σ̃² + σ_d²)/(σ̃σ_d)² (Karras et al. 2022); ``flow`` — (1 + σ̃)²/σ̃², the
rectified-flow velocity MSE (Lipman et al. 2023; Liu et al. 2023).
σ̃ sampling: ``lognormal`` (EDM: ln σ̃ ~ N(P_mean, P_std²)), ``uniform_t`` (t ~ U over the
schedule's domain), ``discrete`` (uniform integer timestep of a table schedule),
``logit_normal`` (t = sigmoid(N(m, s²)) clipped to the domain; Esser et al. 2024).

Variable-size data: the ``space`` draws the noise in its subspace, projects, and averages
the squared error over valid entries only (``space.mean``).
"""

from __future__ import annotations

import torch

from .parameterization import Denoiser
from .schedules import DiscreteVPSchedule

F64 = torch.float64
WEIGHTINGS = ("default", "uniform", "snr", "min_snr", "edm", "flow")
SIGMA_SAMPLERS = ("lognormal", "uniform_t", "discrete", "logit_normal")


def x0_weight(weighting: str, sigma: torch.Tensor, denoiser: Denoiser, gamma: float = 5.0) -> torch.Tensor:
    """``[B]`` float64 x₀-space weight λ(σ̃) of ``weighting`` (see module docstring)."""
    s = torch.as_tensor(sigma, dtype=F64)
    if weighting == "default":
        return denoiser.default_x0_weight(s)
    if weighting == "uniform":
        return torch.ones_like(s)
    if weighting == "snr":
        return 1 / s**2
    if weighting == "min_snr":
        return torch.clamp(1 / s**2, max=gamma)
    if weighting == "edm":
        sd = denoiser.sigma_data
        return (s**2 + sd**2) / (s * sd) ** 2
    if weighting == "flow":
        return (1 + s) ** 2 / s**2
    raise ValueError(f"unknown weighting {weighting!r}; one of {WEIGHTINGS}")


def sample_sigmas(
    kind: str, n: int, denoiser: Denoiser, generator: torch.Generator | None, p_mean: float = -1.2, p_std: float = 1.2
) -> torch.Tensor:
    """``[n]`` float64 training noise levels σ̃ (``p_mean``/``p_std`` for the (logit-)normal)."""
    sch = denoiser.schedule
    if kind == "lognormal":
        return torch.exp(p_mean + p_std * torch.randn(n, generator=generator, dtype=F64))
    if kind == "uniform_t":
        u = torch.rand(n, generator=generator, dtype=F64)
        return sch.sigma_ve(sch.t_min + u * (sch.t_max - sch.t_min))
    if kind == "logit_normal":
        t = torch.sigmoid(p_mean + p_std * torch.randn(n, generator=generator, dtype=F64))
        return sch.sigma_ve(t.clamp(sch.t_min, sch.t_max))
    if kind == "discrete":
        if not isinstance(sch, DiscreteVPSchedule):
            raise ValueError("discrete σ sampling needs a discrete schedule")
        k = torch.randint(0, sch.num_train_timesteps, (n,), generator=generator).to(F64)
        return sch.sigma_ve(sch.timestep_to_t(k))
    raise ValueError(f"unknown sigma sampler {kind!r}; one of {SIGMA_SAMPLERS}")


def diffusion_loss(
    denoiser: Denoiser,
    x0: torch.Tensor,
    cond,
    space,
    rng,
    generator: torch.Generator | None,
    *,
    sigma_sampling: str = "lognormal",
    weighting: str = "default",
    min_snr_gamma: float = 5.0,
    sigmas: torch.Tensor | None = None,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    auxiliary=None,
) -> torch.Tensor:
    """Per-sample loss ``[B]``: λ(σ̃)·mean_space(‖D(x₀ + σ̃n, σ̃) − x₀‖²) [+ auxiliary].

    x0: ``[B, ...]`` clean data; ``space`` supplies the noise (``space.randn_like(x0, rng)``),
    the projection and the masked mean; ``rng`` draws the noise; ``generator`` draws σ̃ (None:
    torch's global generator), or pass ``sigmas`` ``[B]``. ``auxiliary(x0_hat, x0, sigmas, cond, weight)`` — a
    modality's extra per-sample term ``[B]`` on the denoised estimate (e.g. the protein
    plugin's local-distance loss, FrameDiff-style); ``weight`` is λ(σ̃) ``[B]``, so the
    term can be put on the same scale as the denoising error. ``None`` returns no term.
    """
    B = x0.shape[0]
    if sigmas is None:
        sigmas = sample_sigmas(sigma_sampling, B, denoiser, generator, p_mean, p_std)
    sigmas = torch.as_tensor(sigmas, dtype=F64).reshape(-1)
    noise = space.randn_like(x0, rng)
    x_noisy = space.project(
        x0 + noise * sigmas.to(device=x0.device, dtype=x0.dtype).reshape((B,) + (1,) * (x0.ndim - 1))
    )
    x0_hat = denoiser(x_noisy, sigmas, cond)
    w = x0_weight(weighting, sigmas, denoiser, min_snr_gamma).to(device=x0.device, dtype=torch.float32)
    err = space.mean((x0_hat.float() - x0.float()) ** 2)
    loss = w * err
    if auxiliary is not None:
        extra = auxiliary(x0_hat.float(), x0.float(), sigmas.to(device=x0.device), cond, w)
        if extra is not None:
            loss = loss + extra
    return loss


def low_noise_distance_loss(
    pos_hat: torch.Tensor,
    pos: torch.Tensor,
    mask: torch.Tensor,
    sigmas: torch.Tensor,
    weight: torch.Tensor,
    *,
    select,
    sigma_max: float,
) -> torch.Tensor:
    """Squared error of inter-point distances of the denoised estimate, per sample ``[B]``:
    ``weight``·1[σ̃ < ``sigma_max``]·mean over selected pairs of (d̂ᵢⱼ − dᵢⱼ)².

    ``pos_hat``, ``pos``: ``[B, N, 3]`` predicted and true positions; ``mask``: ``[B, N]``
    (1 = real point); ``sigmas``, ``weight``: ``[B]``; ``select(d, d_hat) -> bool [B, N, N]``
    picks pairs from the true and predicted distances (the diagonal and padding are
    dropped here). Selecting on the true distances alone (d < cutoff) penalises contacts
    the prediction misses but not those it invents, a bias towards compact predictions;
    selecting on either side removes it.
    Invariant under rigid motions of either input; a sample without pairs gives 0. The
    point-cloud modalities' auxiliary term (FrameDiff's L_2D, Yim et al. 2023): bond
    lengths are what their validity metrics read.
    """
    d = torch.cdist(pos, pos)
    d_hat = torch.cdist(pos_hat, pos_hat)
    eye = torch.eye(pos.shape[1], dtype=torch.bool, device=pos.device)
    m = mask.to(pos.dtype)
    pairs = (select(d, d_hat) & ~eye).to(pos.dtype) * m[:, :, None] * m[:, None, :]
    err = ((d_hat - d) ** 2 * pairs).sum((1, 2)) / pairs.sum((1, 2)).clamp(min=1)
    return weight.to(pos.dtype) * (sigmas.to(pos.dtype) < sigma_max).to(pos.dtype) * err


def flow_matching_loss(
    velocity_net,
    x0: torch.Tensor,
    cond,
    space,
    rng,
    generator: torch.Generator | None,
    *,
    t_min: float = 1e-4,
    t_max: float = 0.999,
) -> torch.Tensor:
    """Conditional flow matching with the rectified-flow path (Lipman et al. 2023; Liu et al.
    2023): x_t = (1 − t)x₀ + t·n, target u = n − x₀, t ~ U[t_min, t_max];
    per-sample ``[B]`` mean_space(‖u_θ(x_t, t) − u‖²). ``velocity_net(x_t, t [B] f32, cond)``.

    Identical to :func:`diffusion_loss` with a ``flow`` Denoiser on the rectified-flow
    schedule, uniform t and default weighting (tested)."""
    B = x0.shape[0]
    t = t_min + (t_max - t_min) * torch.rand(B, generator=generator, dtype=F64)
    noise = space.randn_like(x0, rng)
    tb = t.to(device=x0.device, dtype=x0.dtype).reshape((B,) + (1,) * (x0.ndim - 1))
    x_t = space.project((1 - tb) * x0 + tb * noise)
    u = velocity_net(x_t, t.to(device=x0.device, dtype=torch.float32), cond)
    return space.mean((u.float() - (noise - x0).float()) ** 2)
