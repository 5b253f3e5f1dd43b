"""Samplers: plain functions over a denoiser D(x̃, σ̃) → x̂₀ and a decreasing σ̃ grid.

Every sampler has the signature::

    fn(denoiser, x, sigmas, *, space=None, rng=None, callback=None, **options) -> x

``x`` is the initial state at ``sigmas[0]`` (noise times σ̃_max, in the VE view),
``sigmas`` a float64 grid ending in 0 (see :mod:`polydiff.discretization`), ``space``
a :mod:`polydiff.spaces` object (projection and noise), ``rng`` a
:class:`polydiff.rng.SampleRNG` for stochastic samplers, ``callback(i, sigma, x, x0)``
an optional observer. There is no hidden step state: the loop is inside the function.

:data:`SAMPLERS` maps names to :class:`SamplerSpec` (the function plus facts the suite and
users need: determinism, order, network evaluations per step).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .deterministic import sample_euler, sample_heun
from .ancestral import sample_ddim, sample_ddpm, sample_euler_ancestral
from .multistep import sample_dpmpp_2m


@dataclass(frozen=True)
class SamplerSpec:
    fn: Callable
    deterministic: bool
    order: int
    nfe_per_step: int = 1
    defaults: dict = field(default_factory=dict)
    description: str = ""

    def steps_for_nfe(self, nfe: int) -> int:
        """Grid steps that spend at most ``nfe`` network evaluations (≥ 1)."""
        if self.nfe_per_step == 2:  # Heun-type: the last step is a single Euler step
            return max(1, (nfe + 1) // 2)
        return max(1, nfe // self.nfe_per_step)


SAMPLERS: dict[str, SamplerSpec] = {
    "euler": SamplerSpec(sample_euler, True, 1, 1, description="Euler on the PF-ODE (= DDIM η=0)"),
    "heun": SamplerSpec(sample_heun, True, 2, 2, description="EDM Heun 2nd order, optional churn"),
    "ddim": SamplerSpec(sample_ddim, True, 1, 1, {"eta": 0.0}, "DDIM with η (η=0 deterministic)"),
    "ddpm": SamplerSpec(sample_ddpm, False, 1, 1, description="DDPM ancestral (posterior) sampling"),
    "euler_ancestral": SamplerSpec(sample_euler_ancestral, False, 1, 1, {"eta": 1.0}, "Euler ancestral"),
    "dpmpp_2m": SamplerSpec(sample_dpmpp_2m, True, 2, 1, description="DPM-Solver++(2M), Lu et al. 2022"),
}


def get_sampler(name: str) -> SamplerSpec:
    """The registered sampler ``name`` (through the plugin registry)."""
    from ..plugin_manager import registry

    entry = registry("sampler").entry(name)
    return entry.info["spec"]
