"""Hook specifications of polydiff (pluggy project name ``polydiff``).

Every registration hook receives a ``register`` callback with the signature
``register(name: str, obj, **info)``; an implementation calls it once per component.
Each kind has one accepted form, checked when the plugin registers
(:mod:`polydiff.plugin_contract`; a wrong form is a :class:`~polydiff.errors.PluginError`
naming the plugin, the component and the fix). Hooks evolve by adding keyword arguments
only (pluggy lets an implementation accept a subset), never by renaming or removing.

What ``obj`` and ``info`` are, per hook:

====================================  ==============================================================
hook                                  ``register(name, obj, **info)``
====================================  ==============================================================
polydiff_register_modalities          ``register(name, ModalityClass)``: a
                                      :class:`polydiff.modality.Modality` subclass, ``name``
                                      attribute equal to the registered name; a modality
                                      with categorical or several parts declares them in
                                      ``Modality.parts()`` (:mod:`polydiff.mixed`)
polydiff_register_schedules           ``register(name, ScheduleClass)``: a
                                      :class:`polydiff.schedules.Schedule` subclass
polydiff_register_samplers            ``register(name, fn, deterministic=bool, order=int,
                                      nfe_per_step=1, defaults={}, description="",
                                      documented_nfe=50, adaptive=False)``; ``fn(denoiser, x,
                                      sigmas, *, space, rng, callback, **options) -> x``
polydiff_register_guidance            ``register(name, factory)``; ``factory(denoiser, *,
                                      model=None, **options) -> denoiser`` (denoisers are
                                      ``D(x, σ̃, cond) → x̂₀``; see :mod:`polydiff.guidance`)
polydiff_register_datasets            ``register(name, loader, modality=str)``; ``loader(**options)
                                      -> sequence of items``
polydiff_register_metrics             ``register(name, fn, modality=str, higher_is_better=True |
                                      False | None)``; ``fn(samples, reference=None, **options)
                                      -> float``; None marks a target metric (nearer the data
                                      row is better); names are ``<modality>_<metric>``
polydiff_register_benchmarks          ``register(name, task, modality=str, suites=[...])``; ``task``
                                      a :class:`polydiff.bench.task.BenchmarkTask` named ``name``,
                                      or a factory ``f() -> BenchmarkTask`` (called once)
polydiff_register_networks            ``register(name, ModuleClass, modality=str)``: an
                                      ``nn.Module`` with ``forward(x, time, cond)`` (or a factory
                                      ``f(**kwargs) -> nn.Module``)
polydiff_register_parameterizations   ``register(name, ParameterizationClass)``: a
                                      :class:`polydiff.parameterization.Parameterization` subclass
====================================  ==============================================================
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
    """Register samplers: ``register(name, fn, deterministic=..., order=..., nfe_per_step=1, defaults={...})``."""


@hookspec
def polydiff_register_guidance(register):
    """Register guidance: ``register(name, factory)``, ``factory(denoiser, *, model=None, **options)``."""


@hookspec
def polydiff_register_datasets(register):
    """Register dataset loaders: ``register(name, loader, modality=...)``."""


@hookspec
def polydiff_register_metrics(register):
    """Register metrics: ``register(name, fn, modality=..., higher_is_better=...)``."""


@hookspec
def polydiff_register_benchmarks(register):
    """Register benchmark tasks: ``register(name, BenchmarkTask or factory, modality=..., suites=[...])``."""


@hookspec
def polydiff_register_networks(register):
    """Register denoiser networks: ``register(name, ModuleClass, modality=...)``."""


@hookspec
def polydiff_register_parameterizations(register):
    """Register parameterisations: ``register(name, ParameterizationClass)``."""


@hookspec(firstresult=True)
def polydiff_text_encoder(name, options):
    """Provide a text encoder: return an ``nn.Module`` with ``dim`` (output width), ``tokenizer``
    (``tok(list[str]) -> (ids [B, L] long, mask [B, L] bool)``, BOS at position 0) and
    ``forward(ids, mask) -> [B, L, dim]`` when ``name`` is yours, else ``None``. ``options`` is a
    dict of keyword options from the model config. The core answers ``"tiny"``
    (:mod:`polydiff.text`); the first non-None answer is used."""


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
