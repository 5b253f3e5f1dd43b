"""Consistency-distilled students as rows of the sampler study (:mod:`.sampler_study`).

For each mixture a student is distilled from the exact-score teacher by the library's own
:func:`polydiff.distill.distill` (``method="consistency"``, Song et al. 2023, Alg. 2), then
evaluated by the ``consistency`` sampler (ibid., Alg. 1) at each NFE of ``nfe`` from the
study's evaluation noise ``z`` (x = z·σ̃_max, the start of every other ``polydiff`` row), on
[σ̃_max, τ, …, 0] (:func:`student_grid`). The first re-noise level τ is searched as Song et
al. 2023 do for two-step sampling, here by the RMSE to the converged PF-ODE on the calibration
noise of the tuned grids (seeds 10,000 + seed, :func:`pick_taus`), never on the evaluated noise.
(The library's default Karras grid re-noises at τ ≈ 5.9 for two steps on this schedule, which
on a mixture of radius 4 re-draws the component: RMSE ≈ 4.3 on the 2-D mixture.)

The adapter is small: a :class:`~polydiff.model.DiffusionModel` on the study's schedule whose
modality (:class:`MixtureVectors`, not registered) serves exact samples of the mixture as its
data set, and whose :meth:`~polydiff.model.DiffusionModel.denoiser` is the mixture's closed
form (:class:`_ExactTeacher`). Its ``network`` is the student's fresh initialisation
(:class:`StudentMLP`): ``distill`` copies the teacher and starts the student from the
teacher's weights, which here are those of the untrained MLP; the copy's parameterisation
becomes ``consistency_edm``, and from then on its denoiser is its own network's.

Training is fixed by optimiser steps (``StudentConfig.train_steps``), not by wall clock; the
rows record the steps and seconds. Training data and noise come from seeds
``STUDENT_SEED + seed`` (the data set, the network's initialisation and ``distill``'s seed),
disjoint from the evaluated noise (17 + seed), the sampler noise (23 + seed), the fresh
samples (4,242 + seed), the floors (1,000 + …) and the calibration noise (10,000 + seed).

More than one step re-noises (x̂₀ + τ·z with fresh z, seeded 23 + ``seed`` like the study's
stochastic samplers), so a multistep student's ``rmse_to_ode`` includes that randomness; its
rows have ``deterministic = False`` (the RMSE is still recorded: a student is meant to land
on the ODE's end point). The reference is the converged PF-ODE from x to σ̃(t = 0)
(``rmse_to_own_ode`` is the same number).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..modality import Modality
from ..model import DiffusionModel
from .sampler_study import STUDENT_GRID

F64 = torch.float64
#: the student's sampler name and grid label in the study's rows
STUDENT_SAMPLER = "consistency_student"
#: training seeds: STUDENT_SEED + the study's seed (disjoint from every evaluation seed)
STUDENT_SEED = 20_000


@dataclass
class StudentConfig:
    """The student's size and (step-fixed) training budget; ``nfe``: the NFEs evaluated."""

    nfe: tuple = (1, 2, 4)
    train_steps: int = 6000
    batch_size: int = 256
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    hidden: int = 128
    layers: int = 3
    n_data: int = 50_000
    n_grid: int = 18
    n_calib: int = 1000


class StudentMLP(nn.Module):
    """``net(x_in [B, d], time [B], cond) → F [B, d]``: an MLP on x_in and Fourier features
    of the time input (EDM's c_noise = ln σ̃ / 4)."""

    def __init__(self, dim: int, hidden: int = 128, layers: int = 3, n_freq: int = 16):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(64.0), n_freq)), persistent=False)
        mods: list[nn.Module] = []
        width = dim + 2 * n_freq
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        mods.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*mods)

    def forward(self, x, time, cond=None):
        t = time.to(x.dtype).reshape(-1, 1) * self.freqs.to(x.dtype)
        return self.mlp(torch.cat([x, torch.sin(t), torch.cos(t)], dim=1))


class MixtureVectors(Modality):
    """d-dim vectors whose data set is ``n`` exact samples of a mixture (not registered: the
    study builds it around a :class:`~.sampler_study.GaussianMixture`)."""

    name = "mixture_vectors"
    default_schedule = "ddpm_linear"
    default_parameterization = "edm"

    def __init__(self, mix, n: int, seed: int):
        super().__init__({"dim": int(mix.d)})
        self.mix, self.n, self.seed = mix, int(n), int(seed)
        # σ_data: the per-coordinate RMS spread of the mixture (EDM preconditioning)
        var = (mix.w[:, None] * (mix.mu**2 + mix.s[:, None] ** 2)).sum(0) - ((mix.w[:, None] * mix.mu).sum(0)) ** 2
        self.sigma_data = float(var.mean().sqrt())

    def load_dataset(self, name=None, **options):
        return self.mix.sample(self.n, torch.Generator().manual_seed(self.seed)).float()

    def sampling_request(self, n, cond, rng):
        return (self.mix.d,), None


class _ExactTeacher(DiffusionModel):
    """A model whose denoiser is the mixture's closed form D(x̃, σ̃) — until ``distill``'s copy
    of it becomes a consistency model, whose denoiser is then its own network's."""

    def denoiser(self, ema: bool = True):
        if self.parameterization.startswith("consistency_"):
            return super().denoiser(ema)
        assert isinstance(self.modality, MixtureVectors)
        mix = self.modality.mix

        def exact(x, sigma, cond=None):
            return mix.denoise(x, torch.as_tensor(sigma, dtype=F64).reshape(-1)).to(x.dtype)

        return exact


def distill_student(mix, schedule, cfg: StudentConfig | None = None, seed: int = 0):
    """Distil a consistency student of ``mix``'s exact-score teacher on ``schedule``; returns
    :class:`polydiff.distill.DistillResult` (``.student``, ``.steps``, ``.seconds``, ``.losses``)."""
    from ..distill import DistillConfig, distill

    cfg = cfg or StudentConfig()
    s = STUDENT_SEED + seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s)
        net = StudentMLP(mix.d, cfg.hidden, cfg.layers)
    teacher = _ExactTeacher(
        MixtureVectors(mix, cfg.n_data, s), net, schedule, parameterization="edm", schedule_name="ddpm_linear"
    )
    dc = DistillConfig(
        method="consistency",
        steps=max(cfg.nfe),
        train_steps=cfg.train_steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        ema_decay=cfg.ema_decay,
        n_grid=cfg.n_grid,
        seed=s,
        progress=False,
        log_every=max(1, cfg.train_steps // 10),
    )
    return distill(teacher, dc)


def student_grid(k: int, tau: float, sigma_min: float, sigma_max: float) -> list[float]:
    """The student's ``k``-NFE grid: [σ̃_max, τ, …, 0], the re-noise levels after the first
    step a Karras ρ = 7 run from τ down towards σ̃_min (σ̃_min itself left out); ``[σ̃_max, 0]``
    for one step."""
    from .. import discretization

    inner = [] if k == 1 else [float(v) for v in discretization.karras(k, sigma_min, tau)[: k - 1]]
    return [float(sigma_max), *inner, 0.0]


def _sample(den, x: torch.Tensor, sig: list[float], gen_seed: int) -> tuple[torch.Tensor, int]:
    """The ``consistency`` sampler from x (float64 ``[n, d]``) on ``sig``; returns (x̂₀ float64, NFE)."""
    from ..rng import GeneratorRNG
    from ..samplers import get_sampler

    count = [0]

    def counted(xx, s):
        count[0] += 1
        return den(xx, s)

    rng = GeneratorRNG(torch.Generator().manual_seed(gen_seed))
    with torch.no_grad():
        out = get_sampler("consistency").fn(counted, x.float(), torch.tensor(sig, dtype=F64), rng=rng)
    return out.double(), count[0]


def pick_taus(den, mix, schedule, nfe, seed: int = 0, n_calib: int = 1000, n_tau: int = 25) -> dict:
    """``{k: (τ, calibration RMSE)}`` for each multistep NFE ``k``: the first re-noise level τ
    (Song et al. 2023 search it for two-step sampling) minimising the RMSE to the converged
    PF-ODE on calibration noise (seeds 10,000 + ``seed``, as the tuned grids; disjoint from the
    evaluated noise), over ``n_tau`` log-spaced values in [2σ̃_min, σ̃_max / 2]."""
    from ..samplers.tuning import CALIBRATION_SEED, reference_solution, rmse

    lo, hi = schedule.sigma_ve_min, schedule.sigma_ve_max
    gen = torch.Generator().manual_seed(CALIBRATION_SEED + seed)
    xc = torch.randn(n_calib, mix.d, generator=gen, dtype=F64) * hi
    ref = reference_solution(mix, xc, hi, lo, tol=1e-8)
    taus = torch.logspace(math.log10(2 * lo), math.log10(hi / 2), n_tau, dtype=F64).tolist()
    out = {}
    for k in (int(v) for v in nfe):
        if k > 1:
            errs = [
                (rmse(_sample(den, xc, student_grid(k, t, lo, hi), CALIBRATION_SEED + seed)[0], ref), t) for t in taus
            ]
            err, tau = min(errs)
            out[k] = (tau, err)
    return out


def student_rows(prob, schedule, seed: int = 0, cfg: StudentConfig | None = None) -> list[dict]:
    """Rows (the study's schema, ``grid="student"``) of a student distilled for ``prob``
    (a :class:`.sampler_study._Problem`) at each NFE of ``cfg.nfe``, from the study's noise
    (re-noising seeded 23 + ``seed``); multistep grids from :func:`pick_taus`."""
    cfg = cfg or StudentConfig()
    res = distill_student(prob.mix, schedule, cfg, seed)
    den = res.student.denoiser(True)  # the EMA network
    lo, hi = schedule.sigma_ve_min, schedule.sigma_ve_max
    t0 = time.perf_counter()
    taus = pick_taus(den, prob.mix, schedule, cfg.nfe, seed, cfg.n_calib)
    tau_seconds = time.perf_counter() - t0
    x = prob.z * hi
    ref_grid = torch.tensor([hi, prob.s_end, 0.0], dtype=F64)  # converged ODE from x to σ̃(t=0)
    rows = []
    for k in (int(v) for v in cfg.nfe):
        sig = student_grid(k, taus[k][0], lo, hi) if k > 1 else student_grid(1, hi, lo, hi)
        out, used = _sample(den, x, sig, 23 + seed)
        row = {
            "problem": prob.name,
            "source": "polydiff",
            "sampler": STUDENT_SAMPLER,
            "grid": STUDENT_GRID,
            "nfe": k,
            "nfe_actual": used,
            "deterministic": k == 1,
            "student_sigmas": sig,
            "distill_method": "consistency",
            "train_steps": int(res.steps),
            "train_seconds": float(res.seconds),
            "train_final_loss": res.losses[-1][1] if res.losses else None,
            "student_params": sum(p.numel() for p in res.student.network.parameters()),
            **({"tune_calib_rmse": taus[k][1], "tune_seconds": tau_seconds} if k > 1 else {}),
        }
        rows.append({**row, **prob.scores(out, x, ref_grid, True)})
    return rows
