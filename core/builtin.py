"""The built-in core plugin: schedules, samplers, guidance and parameterisations.

Loaded through the ``polydiff`` entry-point group (name ``core``) exactly like any
third-party plugin.
"""
from __future__ import annotations

from . import guidance, parameterization
from .hookspecs import hookimpl
from .samplers import SAMPLERS
from .schedules import SCHEDULES


@hookimpl
def polydiff_register_schedules(register):
    for name, cls in SCHEDULES.items():
        register(name, cls)


@hookimpl
def polydiff_register_samplers(register):
    for name, spec in SAMPLERS.items():
        register(name, spec.fn, spec=spec, deterministic=spec.deterministic, order=spec.order,
                 nfe_per_step=spec.nfe_per_step)


@hookimpl
def polydiff_register_guidance(register):
    register("cfg", guidance.cfg)


@hookimpl
def polydiff_register_parameterizations(register):
    for kind in parameterization.KINDS:
        register(kind, parameterization.Denoiser)
