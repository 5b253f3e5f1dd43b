"""Samplers: plain functions over a denoiser D(x̃, σ̃) → x̂₀ and a decreasing σ̃ grid.

Every sampler has the signature::

    fn(denoiser, x, sigmas, *, space=None, rng=None, callback=None, **options) -> x

``x`` is the initial state at ``sigmas[0]`` (noise times σ̃_max, in the VE view),
``sigmas`` a float64 grid ending in 0 (see :mod:`polydiff.discretization`), ``space``
a :mod:`polydiff.spaces` object (projection and noise), ``rng`` a
:class:`polydiff.rng.SampleRNG` for stochastic samplers, ``callback(i, sigma, x, x0)``
an optional observer. There is no hidden step state: the loop is inside the function.
One implementation serves every schedule (the schedule only shapes the grid and the
denoiser). :class:`polydiff.samplers.stepwise.StepSampler` turns any of them into a
step-by-step loop. :func:`tune_sigmas` (:mod:`.tuning`) tunes a σ̃ grid for one model and
sampler against the converged PF-ODE on calibration noise.

:data:`SAMPLERS` maps names to :class:`SamplerSpec` (the function plus facts the suite and
users need: determinism, order, network evaluations per step, and ``documented_nfe``:
the NFE at which the sampler reaches 2× the Monte-Carlo floor (SW2) on the exact-score
2-D and 16-D mixtures, see ``tests/core/test_samplers_distribution.py``). Adaptive
samplers (``ode_rk45``) spend what their tolerances need; their grid only fixes the end
points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .adaptive import sample_ode_rk45
from .ancestral import sample_ddim, sample_ddpm, sample_euler_ancestral
from .deterministic import sample_euler, sample_heun
from .gaussian import sample_unipc_gauss
from .multistep import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_3m, sample_unipc
from .stepwise import StepSampler
from .stochastic import sample_euler_maruyama, sample_pc_langevin
from .tuning import tune_sigmas


@dataclass(frozen=True)
class SamplerSpec:
    fn: Callable
    deterministic: bool
    order: int
    nfe_per_step: int = 1
    defaults: dict = field(default_factory=dict)
    description: str = ""
    documented_nfe: int = 50
    adaptive: bool = False

    def steps_for_nfe(self, nfe: int) -> int:
        """Grid steps that spend at most ``nfe`` network evaluations (≥ 1)."""
        if self.nfe_per_step == 2:  # Heun-type: the last step is a single Euler step
            return max(1, (nfe + 1) // 2)
        return max(1, nfe // self.nfe_per_step)


SAMPLERS: dict[str, SamplerSpec] = {
    "euler": SamplerSpec(sample_euler, True, 1, 1, description="Euler on the PF-ODE (= DDIM η=0)", documented_nfe=100),
    "heun": SamplerSpec(sample_heun, True, 2, 2, description="EDM Heun 2nd order, optional churn", documented_nfe=59),
    "ddim": SamplerSpec(sample_ddim, True, 1, 1, {"eta": 0.0}, "DDIM with η (η=0 deterministic)", documented_nfe=100),
    "ddpm": SamplerSpec(
        sample_ddpm, False, 1, 1, description="DDPM ancestral (posterior) sampling", documented_nfe=200
    ),
    "euler_ancestral": SamplerSpec(
        sample_euler_ancestral, False, 1, 1, {"eta": 1.0}, "Euler ancestral", documented_nfe=200
    ),
    "dpmpp_2m": SamplerSpec(
        sample_dpmpp_2m, True, 2, 1, description="DPM-Solver++(2M), Lu et al. 2022", documented_nfe=30
    ),
    "dpmpp_3m": SamplerSpec(
        sample_dpmpp_3m,
        True,
        3,
        1,
        description="DPM-Solver++(3M), Lu et al. 2022 (exact D'' term; d2_weight=0.5 = diffusers)",
        documented_nfe=20,
    ),
    "dpmpp_2m_sde": SamplerSpec(
        sample_dpmpp_2m_sde, False, 2, 1, {"eta": 1.0}, "DPM-Solver++(2M) SDE, Lu et al. 2022", documented_nfe=100
    ),
    "unipc": SamplerSpec(
        sample_unipc, True, 2, 1, {"order": 2}, "UniPC-bh2 (variant='bh1' too), Zhao et al. 2023", documented_nfe=20
    ),
    "unipc_gauss": SamplerSpec(
        sample_unipc_gauss,
        True,
        3,
        1,
        {"order": 3, "local_var": 0.1, "lower_order_final": False, "variant": "bh1"},
        "UniPC-3 (bh1) in Gaussian-rescaled time r = sqrt(σ̃² + c), full-order step into σ̃ = 0",
        documented_nfe=20,
    ),
    "euler_maruyama": SamplerSpec(
        sample_euler_maruyama,
        False,
        1,
        1,
        description="Euler–Maruyama on the reverse SDE, Song et al. 2021",
        documented_nfe=200,
    ),
    "pc_langevin": SamplerSpec(
        sample_pc_langevin,
        False,
        1,
        2,
        {"snr": 0.16, "n_steps": 1},
        "Predictor–corrector with Langevin corrector, Song et al. 2021",
        documented_nfe=399,
    ),
    "ode_rk45": SamplerSpec(
        sample_ode_rk45,
        True,
        5,
        1,
        {"rtol": 1e-5, "atol": 1e-5},
        "Adaptive PF-ODE, Dormand–Prince RK45 (torchdiffeq)",
        documented_nfe=2,
        adaptive=True,
    ),
}


def get_sampler(name: str) -> SamplerSpec:
    """The registered sampler ``name`` (through the plugin registry — the one reader of it)."""
    from ..plugin_manager import registry

    return registry("sampler").get(name)


__all__ = ["SAMPLERS", "SamplerSpec", "StepSampler", "get_sampler", "tune_sigmas"] + [
    n for n in dir() if n.startswith("sample_")
]
