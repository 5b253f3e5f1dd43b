"""Hook specifications of polydiff (pluggy project name ``polydiff``).

Every registration hook receives a ``register`` callback with the signature
``register(name: str, obj, **info)``; an implementation calls it once per component.
Hooks evolve by adding keyword arguments only (pluggy lets an implementation accept a
subset), never by renaming or removing.

What ``obj`` is, per hook:

============================  =====================================================
hook                          ``obj`` and ``info``
============================  =====================================================
polydiff_register_modalities  a :class:`polydiff.modality.Modality` subclass
polydiff_register_schedules   a :class:`polydiff.schedules.Schedule` subclass
polydiff_register_samplers    a sampler function ``f(denoiser, x, sigmas, *, space,
                              rng, callback, **options)``; info: ``deterministic``,
                              ``order``, ``nfe_per_step``, ``defaults``
polydiff_register_guidance    a denoiser wrapper factory
polydiff_register_datasets    a loader ``f(**options) -> Dataset``; info: ``modality``
polydiff_register_metrics     ``f(samples, reference=None, **options) -> float``;
                              info: ``modality``, ``higher_is_better``
polydiff_register_benchmarks  a :class:`polydiff.bench.BenchmarkTask` factory;
                              info: ``modality``, ``suites``
polydiff_register_networks    an ``nn.Module`` class; info: ``modality``
polydiff_register_parameterizations  a parameterisation class
============================  =====================================================
"""

from __future__ import annotations

import pluggy

PROJECT = "polydiff"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def polydiff_register_modalities(register):
    """Register modalities: ``register(name, ModalityClass)``."""


@hookspec
def polydiff_register_schedules(register):
    """Register noise schedules: ``register(name, ScheduleClass)``."""


@hookspec
def polydiff_register_samplers(register):
    """Register samplers: ``register(name, fn, deterministic=..., order=..., nfe_per_step=...)``."""


@hookspec
def polydiff_register_guidance(register):
    """Register guidance wrappers: ``register(name, factory)``."""


@hookspec
def polydiff_register_datasets(register):
    """Register dataset loaders: ``register(name, loader, modality=...)``."""


@hookspec
def polydiff_register_metrics(register):
    """Register metrics: ``register(name, fn, modality=..., higher_is_better=...)``."""


@hookspec
def polydiff_register_benchmarks(register):
    """Register benchmark tasks: ``register(name, task_factory, modality=..., suites=[...])``."""


@hookspec
def polydiff_register_networks(register):
    """Register denoiser networks: ``register(name, ModuleClass, modality=...)``."""


@hookspec
def polydiff_register_parameterizations(register):
    """Register network-output parameterisations: ``register(name, cls)``."""


@hookspec
def polydiff_add_hookspecs(pm):
    """Let a plugin add hookspecs of its own: call ``pm.add_hookspecs(module_or_class)``.

    Called once, after every allowed plugin is registered and before
    ``pm.check_pending()``.
    """


#: registration hook name → registry kind
REGISTRATION_HOOKS = {
    "polydiff_register_modalities": "modality",
    "polydiff_register_schedules": "schedule",
    "polydiff_register_samplers": "sampler",
    "polydiff_register_guidance": "guidance",
    "polydiff_register_datasets": "dataset",
    "polydiff_register_metrics": "metric",
    "polydiff_register_benchmarks": "benchmark",
    "polydiff_register_networks": "network",
    "polydiff_register_parameterizations": "parameterization",
}
