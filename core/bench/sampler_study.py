"""The exact-score sampler study (``polydiff bench --suite samplers``).

Ground truth: Gaussian mixtures x₀ ~ Σ_k w_k N(μ_k, s_k² I) whose denoiser is closed-form.
For x̃ = x₀ + σ̃ε the marginal is Σ_k w_k N(μ_k, (s_k² + σ̃²) I) and
D(x̃, σ̃) = Σ_k r_k(x̃)·[μ_k + s_k²/(s_k² + σ̃²)·(x̃ − μ_k)], r_k the posterior
responsibilities (REFERENCES.md, "Exact-score test problem").

For every sampler (the built-in ones, or those named, looked up in the plugin registry) ×
time grid × NFE on the DDPM-linear schedule (σ̃ from t = 999 to t = 0) the study records the
per-sample RMSE to the converged PF-ODE solution from the same noise (deterministic
samplers; ``rmse_to_ode``: the ODE solved to t = 0, the common target; ``rmse_to_own_ode``:
solved to the grid's own last σ̃ > 0, which for few-step ``trailing`` grids stops early,
e.g. t = 99 at 10 steps) and SW2 to fresh exact samples over the Monte-Carlo floor (all
samplers), plus per-step sampler overhead (sampler maths with a free denoiser,
4,000 2-D points on CPU). Grids tuned by :func:`polydiff.samplers.tune_sigmas` (for
``TUNED_SAMPLERS``, on calibration noise from seeds 10,000+, disjoint from the evaluated
noise) join as ``grid="tuned"`` rows. Every deterministic diffusers scheduler, when installed,
runs from the same noise on the same schedule at every spacing it takes (``leading``,
``trailing``, ``linspace``, each also with Karras σ where it has them), with the exact ε-model;
its RMSE is to the converged ODE from its own first state (``leading`` starts below t = 999).
Consistency-distilled students (``students=True``, :mod:`.sampler_study_students`) join as
``sampler="consistency_student"``, ``grid="student"`` rows at 1, 2 and 4 NFE: per problem a
small time-conditioned MLP distilled from the exact teacher by :func:`polydiff.distill.distill`
(``method="consistency"``, a fixed number of optimiser steps, recorded with its seconds),
trained on seeds 20,000+ and sampled by the ``consistency`` sampler from the same noise ``z``;
the re-noise level of its multistep grids is picked on the calibration noise (10,000+).
The summary has, per problem and NFE, the best of ours (students included) against the best
of diffusers and their ratio, and the NFE each method needs to reach each of ``RMSE_TARGETS``.
Outputs ``sampler_study.json`` and ``sampler_study.png`` (quality vs NFE, diffusers dashed).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

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
        var = self.s[None, :] ** 2 + sig**2  # [n or 1, K]
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
        shrink = self.s[None] ** 2 / (self.s[None] ** 2 + sig**2)  # [n, K]
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


# ----------------------------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------------------------
DIFFUSERS_SCHEDULERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    # name: (class, extra config, supports use_karras_sigmas): every deterministic diffusers
    # scheduler for a discrete ε-model (the stochastic ones, DDPM / Euler-ancestral / SDE
    # variants, have no per-sample ODE target; LCM/TCD need consistency models)
    "DDIM": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": True}, False),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True, "set_alpha_to_one": True}, False),
    "Euler": ("EulerDiscreteScheduler", {}, True),
    "Heun": ("HeunDiscreteScheduler", {}, True),
    "LMS": ("LMSDiscreteScheduler", {}, True),
    "KDPM2": ("KDPM2DiscreteScheduler", {}, True),
    "DPM-Solver++2M": ("DPMSolverMultistepScheduler", {"solver_order": 2}, True),
    "DPM-Solver++3M": ("DPMSolverMultistepScheduler", {"solver_order": 3}, True),
    "DPM-Solver++2S": ("DPMSolverSinglestepScheduler", {"solver_order": 2}, True),
    "DPM-Solver++3S": ("DPMSolverSinglestepScheduler", {"solver_order": 3}, True),
    "UniPC": ("UniPCMultistepScheduler", {}, True),
    "UniPC-3": ("UniPCMultistepScheduler", {"solver_order": 3}, True),
    # bh1 gives NaN on the step into σ = 0 (B(h) = h = ∞) in 0.42.1: it ends at σ_min instead
    "UniPC-bh1": ("UniPCMultistepScheduler", {"solver_type": "bh1", "final_sigmas_type": "sigma_min"}, True),
    "UniPC-bh1-3": (
        "UniPCMultistepScheduler",
        {"solver_type": "bh1", "solver_order": 3, "final_sigmas_type": "sigma_min"},
        True,
    ),
    "DEIS": ("DEISMultistepScheduler", {}, True),
    "DEIS-3": ("DEISMultistepScheduler", {"solver_order": 3}, True),
}
#: diffusers' spacings; each also with ``use_karras_sigmas=True`` where the scheduler has it
DIFFUSERS_SPACINGS = ("leading", "trailing", "linspace")
#: samplers whose grids the study tunes (on calibration seeds, evaluated on the study's noise)
TUNED_SAMPLERS = ("unipc", "unipc_gauss", "dpmpp_3m")
#: the grid label of the consistency-distilled students' rows (:mod:`.sampler_study_students`)
STUDENT_GRID = "student"
#: RMSE targets for the NFE-for-target table (per problem)
RMSE_TARGETS = (0.2, 0.1, 0.05)
#: grid names for :func:`polydiff.discretization.make_grid`; "kind:σ_min" overrides the lower
#: σ̃ end (the schedule's σ̃(t=0) = 0.01 otherwise): a log-SNR grid stopping at σ̃ = 0.2 is
#: the best 10-NFE grid we found for these mixtures (a user-supplied grid, not a default).
DEFAULT_GRIDS = ("karras", "uniform_log_snr", "uniform_log_snr:0.2", "uniform_t", "trailing", "leading", "linspace")


def _grid(spec_name: str, schedule, steps: int):
    from .. import discretization as dz

    kind, _, lo = spec_name.partition(":")
    return dz.make_grid(kind, schedule, steps, **({"sigma_min": float(lo)} if lo else {}))


def _converged(mix, x: torch.Tensor, sigmas) -> torch.Tensor:
    """The reference: adaptive RK45 on the PF-ODE at tight tolerances (the solver itself,
    not a registry look-up, so that no plugin can replace the ground truth)."""
    from ..samplers.adaptive import sample_ode_rk45

    return sample_ode_rk45(mix, x.to(F64), sigmas, rtol=1e-8, atol=1e-8)


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.to(F64) - b.to(F64)) ** 2).sum(1).mean().sqrt())


def _run_diffusers(cls_name: str, extra: dict, eps_model, z: torch.Tensor, steps: int, spacing: str = "trailing"):
    """Run a diffusers scheduler from noise ``z`` ``[n, d]``; returns ``(x, nfe, sched, x̃₀, σ̃₀)``
    with the start state in the VE view (x̃₀ at σ̃₀) for the reference from the same start."""
    import diffusers

    cls = getattr(diffusers, cls_name)
    space = {"timestep_spacing": spacing} if spacing in _spacings(cls_name) and spacing != "default" else {}
    sched = cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", **space, **extra)
    sched.set_timesteps(steps)
    x = z.float() * sched.init_noise_sigma
    if float(sched.init_noise_sigma) > 1.0:  # k-diffusion-style schedulers: x is already x̃
        s0 = float(sched.sigmas[0])
        x_start = x.to(F64)
    else:  # VP state x_t = α·x̃ at the first timestep
        ac = sched.alphas_cumprod.to(F64)
        sig = getattr(sched, "sigmas", None)
        t0 = int(sched.timesteps[0])
        s0 = float(sig[0]) if sig is not None and len(sig) else float(((1 - ac[t0]) / ac[t0]).sqrt())
        x_start = x.to(F64) * math.sqrt(1 + s0**2)
    nfe = 0
    for t in sched.timesteps:
        x = sched.step(eps_model(sched.scale_model_input(x, t), t), t, x).prev_sample
        nfe += 1
    return x, nfe, sched, x_start, s0


def _spacings(cls_name: str) -> tuple[str, ...]:
    """The spacings a diffusers scheduler takes (``("default",)`` when it has no
    ``timestep_spacing``, e.g. DPMSolverSinglestepScheduler)."""
    import inspect

    import diffusers

    params = inspect.signature(getattr(diffusers, cls_name).__init__).parameters
    return DIFFUSERS_SPACINGS if "timestep_spacing" in params else ("default",)


def _overhead_ours(spec, n_points: int, steps: int = 50, repeats: int = 3) -> float:
    """Seconds per network evaluation spent in the sampler itself (free denoiser)."""
    from .. import discretization as dz
    from ..rng import GeneratorRNG
    from ..schedules import DDPMLinear

    sig = dz.make_grid("karras", DDPMLinear(), steps)
    x = torch.randn(n_points, 2)
    const = torch.randn(n_points, 2)
    count = [0]

    def free(xx, s):
        count[0] += 1
        return const

    best = math.inf
    for _ in range(repeats):
        count[0] = 0
        t0 = time.perf_counter()
        spec.fn(free, x, sig, rng=GeneratorRNG(torch.Generator().manual_seed(0)), **spec.defaults)
        best = min(best, (time.perf_counter() - t0) / max(count[0], 1))
    return best


def _overhead_diffusers(cls_name: str, extra: dict, n_points: int, steps: int = 50, repeats: int = 3) -> float:
    import diffusers

    const = torch.randn(n_points, 2)
    best = math.inf
    for _ in range(repeats):
        space = {"timestep_spacing": "trailing"} if "trailing" in _spacings(cls_name) else {}
        sched = getattr(diffusers, cls_name)(num_train_timesteps=1000, beta_schedule="linear", **space, **extra)
        sched.set_timesteps(steps)
        x = torch.randn(n_points, 2)
        t0 = time.perf_counter()
        for t in sched.timesteps:
            x = sched.step(const, t, sched.scale_model_input(x, t)).prev_sample
        best = min(best, (time.perf_counter() - t0) / len(sched.timesteps))
    return best


def _resolve_samplers(samplers) -> dict:
    """name → :class:`~polydiff.samplers.SamplerSpec` through the plugin registry (default:
    the built-in samplers that need no extra inputs). Unknown names raise ``ValueError``."""
    from ..errors import RegistryError
    from ..samplers import SAMPLERS, get_sampler

    try:
        return {name: get_sampler(name) for name in (samplers or SAMPLERS)}
    except RegistryError as e:
        raise ValueError(f"sampler study: {e}") from None


def _diffusers_available(include: bool) -> bool:
    if not include:
        return False
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return False
    return True


class _Problem:
    """One mixture's fixed inputs: the Monte-Carlo floor, ``n`` fresh exact samples, the
    shared noise ``z`` ``[n, d]``, and a cache of converged PF-ODE references."""

    def __init__(self, name: str, mix: GaussianMixture, schedule, n: int, n_rmse: int, seed: int):
        self.name, self.mix, self.n_rmse = name, mix, n_rmse
        self.floor = mc_floor(mix, n, pairs=5, seed=1000 + seed)
        self.fresh = mix.sample(n, torch.Generator().manual_seed(4242 + seed))
        self.z = torch.randn(n, mix.d, generator=torch.Generator().manual_seed(17 + seed), dtype=F64)
        self.s_end = schedule.sigma_ve_min  # σ̃ at t = 0: the true end of the PF-ODE on this schedule
        self._refs: dict = {}

    def reference(self, x: torch.Tensor, sig, own: bool = False) -> torch.Tensor:
        """The converged PF-ODE from x at σ̃₀ to σ̃(t=0) (``own``: to the grid's last σ̃ > 0),
        then D — the limit of every deterministic sampler from that state."""
        end = float(sig[-2]) if own else self.s_end
        key = (round(float(sig[0]), 9), round(end, 9), float(x[0, 0]))
        if key not in self._refs:
            # a one-step grid's own end is its start (then D alone): [σ̃₀, 0]
            ends = torch.tensor([float(sig[0]), end, 0.0] if end < float(sig[0]) else [float(sig[0]), 0.0], dtype=F64)
            self._refs[key] = _converged(self.mix, x[: self.n_rmse], ends)
        return self._refs[key]

    def scores(self, out: torch.Tensor, x: torch.Tensor, sig, deterministic: bool) -> dict:
        """SW2 to fresh samples (and over the floor); for deterministic samplers the RMSE to
        the converged ODE from the same start ``x`` on grid ``sig``."""
        sw2 = sliced_w2(out.double(), self.fresh)
        row = {"sw2": sw2, "sw2_over_floor": sw2 / self.floor}
        if deterministic:
            row["rmse_to_ode"] = _rmse(out[: self.n_rmse], self.reference(x, sig))
            row["rmse_to_own_ode"] = _rmse(out[: self.n_rmse], self.reference(x, sig, own=True))
        return row


def _our_row(prob: _Problem, name: str, spec, grid: str, k: int, schedule, seed: int) -> dict:
    """Sampler ``name`` on ``grid`` with a budget of ``k`` network evaluations."""
    from ..rng import GeneratorRNG

    sig = _grid(grid, schedule, spec.steps_for_nfe(k))
    x = prob.z * float(sig[0])
    count = [0]

    def den(xx, s):
        count[0] += 1
        return prob.mix.denoise(xx, s)

    out = spec.fn(den, x, sig, rng=GeneratorRNG(torch.Generator().manual_seed(23 + seed)), **spec.defaults)
    row = {
        "problem": prob.name,
        "source": "polydiff",
        "sampler": name,
        "grid": grid,
        "nfe": int(k),
        "nfe_actual": count[0],
        "deterministic": spec.deterministic,
    }
    return {**row, **prob.scores(out, x, sig, spec.deterministic)}


def _our_rows(prob: _Problem, specs: dict, grids, nfe, schedule, seed: int, bar) -> list[dict]:
    """Every sampler × grid × NFE budget (an adaptive sampler runs once, at its own NFE)."""
    rows = []
    for name, spec in specs.items():
        for grid in grids:
            for k in nfe:
                bar.update(1)
                if not (spec.adaptive and k != nfe[0]):
                    rows.append(_our_row(prob, name, spec, grid, k, schedule, seed))
    return rows


def _diffusers_rows(prob: _Problem, schedule, nfe, only=None) -> list[dict]:
    """Every diffusers scheduler × spacing (× Karras σ where supported) with the exact
    ε-model from the same noise ``z``; RMSE to the converged ODE from the run's own start
    (x̃₀ at the first timestep's σ̃₀: ``leading`` starts below t = 999)."""
    import warnings

    rows = []
    eps_model = prob.mix.eps_table_model(schedule.alphas_cumprod)
    for label, (cls_name, extra, has_karras) in DIFFUSERS_SCHEDULERS.items():
        if only is not None and label not in only:
            continue
        for spacing in _spacings(cls_name):
            for karras in (False, True) if has_karras else (False,):
                for k in nfe:
                    two = cls_name in ("HeunDiscreteScheduler", "KDPM2DiscreteScheduler")
                    steps = max(1, (k + 1) // 2) if two else k
                    opts = {**extra, **({"use_karras_sigmas": True} if karras else {})}
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            out, used, _, x_start, s0 = _run_diffusers(
                                cls_name, opts, eps_model, prob.z, steps, spacing
                            )
                    except Exception as e:  # a spacing/option a scheduler refuses: recorded, not fatal
                        rows.append({"problem": prob.name, "source": "diffusers", "sampler": label,
                                     "grid": spacing + ("+karras" if karras else ""), "nfe": int(k),
                                     "error": f"{type(e).__name__}: {e}"[:200]})  # fmt: skip
                        continue
                    row = {
                        "problem": prob.name,
                        "source": "diffusers",
                        "sampler": label,
                        "grid": spacing + ("+karras" if karras else ""),
                        "nfe": int(k),
                        "nfe_actual": used,
                        "deterministic": True,
                        "sigma_start": s0,
                    }
                    sig = torch.tensor([s0, prob.s_end, 0.0], dtype=F64)  # own start, common end
                    rows.append({**row, **prob.scores(out, x_start, sig, True)})
    return rows


def _counting(mix, stats: dict):
    """``mix``'s denoiser counting its calls into ``stats["nfe"]``."""
    stats["nfe"] = 0

    def den(x, s):
        stats["nfe"] += 1
        return mix.denoise(x, s)

    return den


def _tuned_rows(prob: _Problem, specs: dict, nfe, schedule, seed: int, n_calib: int, max_evals: int) -> list[dict]:
    """Grids tuned by :func:`polydiff.samplers.tune_sigmas` on calibration noise (seeds
    10,000 + ``seed``, disjoint from the evaluated noise ``z``), evaluated on ``z``."""
    from ..samplers.tuning import CALIBRATION_SEED, reference_solution, tune_sigmas

    s_max, s_min = schedule.sigma_ve_max, schedule.sigma_ve_min
    zc = torch.randn(n_calib, prob.mix.d, generator=torch.Generator().manual_seed(CALIBRATION_SEED + seed), dtype=F64)
    xc = zc * s_max
    ref = reference_solution(prob.mix, xc, s_max, s_min, tol=1e-8)
    rows = []
    for name, spec in specs.items():
        for k in nfe:
            info: dict = {}
            t0 = time.perf_counter()
            sig = tune_sigmas(
                prob.mix, xc, sampler=spec, nfe=k, sigma_max=s_max, sigma_min=s_min, reference=ref,
                max_evals=max_evals, info=info,
            )  # fmt: skip
            secs = time.perf_counter() - t0
            x = prob.z * s_max
            stats: dict = {}
            out = spec.fn(_counting(prob.mix, stats), x, sig, **spec.defaults)
            row = {
                "problem": prob.name,
                "source": "polydiff",
                "sampler": name,
                "grid": "tuned",
                "nfe": int(k),
                "nfe_actual": stats["nfe"],
                "deterministic": True,
                "tuned_sigmas": [float(v) for v in sig],
                "tune_calib_rmse": info["rmse"],
                "tune_seconds": secs,
                "tune_evals": info["evals"],
            }
            rows.append({**row, **prob.scores(out, x, sig, True)})
    return rows


def _overheads(specs: dict, with_diffusers: bool, n_points: int = 4000, only=None) -> list[dict]:
    """Milliseconds per step spent in the sampler itself, ours and (optionally) diffusers'."""
    rows = [
        {
            "source": "polydiff",
            "sampler": name,
            "n_points": n_points,
            "ms_per_step": 1e3 * _overhead_ours(spec, n_points),
        }
        for name, spec in specs.items()
    ]
    if with_diffusers:
        rows += [
            {
                "source": "diffusers",
                "sampler": label,
                "n_points": n_points,
                "ms_per_step": 1e3 * _overhead_diffusers(cls_name, extra, n_points),
            }
            for label, (cls_name, extra, _) in DIFFUSERS_SCHEDULERS.items()
            if only is None or label in only
        ]
    return rows


def run_sampler_study(
    out_dir,
    *,
    samplers=None,
    nfe=(5, 10, 20, 50),
    grids=None,
    n: int = 10_000,
    n_rmse: int = 2000,
    include_diffusers: bool = True,
    progress: bool = True,
    problems=("mixture2d", "mixture16d"),
    seed: int = 0,
    tuned_samplers=TUNED_SAMPLERS,
    tune_nfe=(5, 10, 20),
    n_calib: int = 1000,
    tune_evals: int = 600,
    diffusers_schedulers=None,
    students: bool = True,
    student_config=None,
) -> dict:
    """Run the study; write ``sampler_study.json`` and ``sampler_study.png`` into ``out_dir``.

    ``samplers``: names looked up in the plugin registry (default: the built-in ones).
    ``n`` points for SW2 (≥ 10,000 recommended), the first ``n_rmse`` of them for RMSE to the
    converged ODE. ``tuned_samplers`` get grids tuned (``tune_sigmas``, ``n_calib`` calibration
    points from seeds 10,000 + ``seed``, ``tune_evals`` sampler runs) at each NFE of
    ``nfe`` that is in ``tune_nfe``; rows with ``grid="tuned"``. Returns the JSON dict
    (``rows``, ``overhead``, ``floors``, ``summary`` with the best ours vs best diffusers at
    each NFE and the NFE each method needs for the ``RMSE_TARGETS``). ``diffusers_schedulers``:
    labels of :data:`DIFFUSERS_SCHEDULERS` to run (default: all). ``students``: add a
    consistency-distilled student per problem (rows ``grid="student"``, at the NFEs of
    ``student_config``, a :class:`.sampler_study_students.StudentConfig`; default 1, 2, 4).
    """
    from tqdm.auto import tqdm

    from ..schedules import DDPMLinear

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = _resolve_samplers(samplers)
    grids = tuple(grids) if grids else DEFAULT_GRIDS
    have_diffusers = _diffusers_available(include_diffusers)
    sch = DDPMLinear()
    mixes: dict[str, Callable[[], GaussianMixture]] = {"mixture2d": circle_mixture, "mixture16d": mixture_16d}
    rows: list[dict] = []
    floors = {}
    bar = tqdm(total=len(problems) * len(specs) * len(grids) * len(nfe), desc="sampler study", disable=not progress)
    t_start = time.perf_counter()
    for name in problems:
        prob = _Problem(name, mixes[name](), sch, n, n_rmse, seed)
        floors[name] = prob.floor
        rows += _our_rows(prob, specs, grids, nfe, sch, seed, bar)
        # an empty list tunes none (``_resolve_samplers([])`` would mean "all built-in")
        tuned = (
            {k: v for k, v in _resolve_samplers(list(tuned_samplers)).items() if v.deterministic}
            if tuned_samplers
            else {}
        )
        tnfe = [k for k in nfe if k in tuple(tune_nfe)]
        if tuned and tnfe:
            rows += _tuned_rows(prob, tuned, tnfe, sch, seed, n_calib, tune_evals)
        if have_diffusers:
            rows += _diffusers_rows(prob, sch, nfe, diffusers_schedulers)
        if students:
            from .sampler_study_students import student_rows

            rows += student_rows(prob, sch, seed, student_config)
    bar.close()
    overhead = _overheads(specs, have_diffusers, only=diffusers_schedulers)
    study = {
        "schedule": "ddpm_linear (t = 999 → 0)",
        "n": n,
        "n_rmse": n_rmse,
        "floors": floors,
        "grids": list(grids),
        "tuned_samplers": list(tuned_samplers or ()),
        "calibration_seed": 10_000 + seed,
        "students": bool(students),
        "rmse_targets": list(RMSE_TARGETS),
        "nfe": list(nfe),
        "rows": rows,
        "overhead": overhead,
        "summary": _summary(rows, overhead),
        "seconds": time.perf_counter() - t_start,
    }
    (out_dir / "sampler_study.json").write_text(json.dumps(study, indent=1))
    _plot(study, out_dir / "sampler_study.png")
    return study


def _best(rows: list[dict]) -> dict | None:
    ok = [r for r in rows if math.isfinite(r.get("rmse_to_ode", math.inf))]
    if not ok:
        return None
    b = min(ok, key=lambda r: r["rmse_to_ode"])
    return {k: b[k] for k in ("sampler", "grid", "rmse_to_ode", "nfe_actual")}


def nfe_for_target(rows: list[dict], target: float) -> dict:
    """``{"source/sampler": least NFE actually spent at which some grid reaches RMSE ≤ target}``
    (methods that never reach it are left out)."""
    out: dict = {}
    for r in rows:
        if r.get("rmse_to_ode", math.inf) <= target:
            key = f"{r['source']}/{r['sampler']}"
            out[key] = min(out.get(key, 10**9), int(r["nfe_actual"]))
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def _summary(rows, overhead) -> dict:
    """Per problem and NFE: the best RMSE to the converged ODE of ours (any sampler, grid,
    tuned grids included) and of diffusers (any scheduler and spacing), both within the NFE
    budget, and their ratio (target ≤ 0.5); per RMSE target the NFE each method needs; and
    the overhead ratio on the samplers both implement (target ≤ 0.5×)."""
    out: dict = {}
    for prob in sorted({r["problem"] for r in rows}):
        entry: dict[str, Any] = {}
        pr = [r for r in rows if r["problem"] == prob and "rmse_to_ode" in r]
        for k in sorted({r["nfe"] for r in pr}):
            at = [r for r in pr if r["nfe"] == k and r["nfe_actual"] <= k]
            ours = _best([r for r in at if r["source"] == "polydiff"])
            theirs = _best([r for r in at if r["source"] == "diffusers"])
            e: dict[str, Any] = {"best_ours": ours, "best_diffusers": theirs}
            if ours and theirs:
                e["rmse_ratio"] = ours["rmse_to_ode"] / theirs["rmse_to_ode"]
                e["rmse_target_met"] = e["rmse_ratio"] <= 0.5
            entry[f"nfe{k}"] = e
        entry["nfe_for_target"] = {str(t): nfe_for_target(pr, t) for t in RMSE_TARGETS}
        out[prob] = entry
    pairs = {
        "ddim": "DDIM",
        "euler": "Euler",
        "heun": "Heun",
        "dpmpp_2m": "DPM-Solver++2M",
        "dpmpp_3m": "DPM-Solver++3M",
        "unipc": "UniPC",
    }
    ours_ms = {o["sampler"]: o["ms_per_step"] for o in overhead if o["source"] == "polydiff"}
    theirs_ms = {o["sampler"]: o["ms_per_step"] for o in overhead if o["source"] == "diffusers"}
    ratios = {k: ours_ms[k] / theirs_ms[v] for k, v in pairs.items() if k in ours_ms and v in theirs_ms}
    if ratios:
        vals = sorted(ratios.values())
        out["overhead_ratio"] = ratios
        out["overhead_ratio_median"] = vals[len(vals) // 2]
        out["overhead_target_met"] = max(vals) <= 0.5
    return out


def _plot(study: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = sorted(study["floors"])
    fig, axes = plt.subplots(1, len(probs), figsize=(8.5 * len(probs), 5.2), squeeze=False)
    for ax, prob in zip(axes[0], probs):
        rows = [r for r in study["rows"] if r["problem"] == prob and "rmse_to_ode" in r]
        series: dict = {}
        for r in rows:
            key = (r["source"], r["sampler"])
            series.setdefault(key, {}).setdefault(r["nfe_actual"], []).append(r["rmse_to_ode"])
        ours_c, theirs_c = plt.get_cmap("tab10"), plt.get_cmap("tab20b")  # solid ours, dashed diffusers
        students = {r["sampler"] for r in rows if r.get("grid") == STUDENT_GRID}
        for j, ((src, name), pts) in enumerate(sorted(series.items())):
            cmap = theirs_c if src == "diffusers" else ours_c
            xs = sorted(pts)
            ys = [min(pts[k]) for k in xs]  # best grid per NFE
            student = src == "polydiff" and name in students
            style = ":*" if student else ("--s" if src == "diffusers" else "-o")
            what = "distilled student" if student else "diffusers, best spacing" if src == "diffusers" else None
            ax.plot(
                xs,
                ys,
                style,
                ms=8 if student else 3,
                color="black" if student else cmap(j % cmap.N),
                label=f"{name} ({what or 'best grid, tuned included'})",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE (network evaluations actually spent)")
        ax.set_ylabel("RMSE to converged PF-ODE")
        ax.set_title(f"{prob}: exact-score mixture (DDPM linear)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=1, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Exact-score sampler study (RMSE-to-ODE, SW2, overhead).")
    p.add_argument("--out", required=True)
    p.add_argument("--samplers", default=None, help="comma-separated sampler names (default: all)")
    p.add_argument("--nfe", default="5,10,20,50")
    p.add_argument("--grids", default=None)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--no-diffusers", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--tuned", default=",".join(TUNED_SAMPLERS), help="samplers to tune grids for ('' for none)")
    p.add_argument("--n-calib", type=int, default=1000)
    p.add_argument("--no-students", action="store_true", help="skip the consistency-distilled students")
    a = p.parse_args(argv)
    study = run_sampler_study(
        a.out,
        samplers=a.samplers.split(",") if a.samplers else None,
        nfe=tuple(int(v) for v in a.nfe.split(",")),
        grids=a.grids.split(",") if a.grids else None,
        n=a.n,
        include_diffusers=not a.no_diffusers,
        progress=not a.no_progress,
        tuned_samplers=[v for v in a.tuned.split(",") if v],
        n_calib=a.n_calib,
        students=not a.no_students,
    )
    print(json.dumps(study["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
