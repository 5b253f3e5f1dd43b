"""The built-in core plugin: schedules, samplers, guidance and parameterisations.

Loaded through the ``polydiff`` entry-point group (name ``core``) exactly like any
third-party plugin.
"""

from __future__ import annotations

from . import guidance, parameterization
from .editing import sample_repaint
from .hookspecs import hookimpl
from .samplers import SAMPLERS, SamplerSpec
from .samplers.consistency import sample_consistency
from .schedules import SCHEDULES

#: Samplers that need extra inputs (not part of the generic sampler study).
EDITING_SAMPLERS = {
    "repaint": SamplerSpec(
        sample_repaint,
        False,
        1,
        1,
        {"base": "ddpm", "resample": 10},
        "RePaint resampling inpainting (Lugmayr et al. 2022); needs known=, known_mask=",
    ),
}

#: Samplers for distilled students (:mod:`polydiff.distill`); not PF-ODE solvers, so not part
#: of the generic sampler study either.
DISTILLED_SAMPLERS = {
    "consistency": SamplerSpec(
        sample_consistency,
        False,
        1,
        1,
        {},
        "Multistep consistency sampling (Song et al. 2023, Alg. 1) for consistency-distilled students",
        documented_nfe=2,
    ),
}


@hookimpl
def polydiff_register_schedules(register):
    for name, cls in SCHEDULES.items():
        register(name, cls)


@hookimpl
def polydiff_register_samplers(register):
    for name, spec in {**SAMPLERS, **EDITING_SAMPLERS, **DISTILLED_SAMPLERS}.items():
        register(
            name,
            spec.fn,
            deterministic=spec.deterministic,
            order=spec.order,
            nfe_per_step=spec.nfe_per_step,
            defaults=spec.defaults,
            description=spec.description,
            documented_nfe=spec.documented_nfe,
            adaptive=spec.adaptive,
        )


@hookimpl
def polydiff_register_guidance(register):
    register("cfg", guidance.classifier_free)
    register("classifier", guidance.classifier)


@hookimpl
def polydiff_register_parameterizations(register):
    for name, cls in {**parameterization.BUILTIN, **parameterization.CONSISTENCY}.items():
        register(name, cls)


@hookimpl(trylast=True)
def polydiff_text_encoder(name, options):
    if name != "tiny":
        return None
    from .text import TinyTextEncoder

    return TinyTextEncoder(**options)
