"""The plugin contract: the one accepted form of every registered component, checked at
registration (not at first use).

:func:`normalize` is called by the plugin manager for every ``register(name, obj, **info)``
call a hook makes. It returns the entry's object and info in the form the registry's one
reader expects (a :class:`~polydiff.samplers.SamplerSpec` for samplers, a
:class:`~polydiff.bench.task.BenchmarkTask` instance for benchmarks), or raises
:class:`~polydiff.errors.PluginError` naming the plugin, the component and what to change.

=================  ==========================================================================
kind               ``register(name, obj, **info)``
=================  ==========================================================================
modality           a :class:`~polydiff.modality.Modality` subclass whose ``name`` equals the
                   registered name; see :data:`MODALITY_ATTRIBUTES`, :data:`MODALITY_METHODS`
schedule           a :class:`~polydiff.schedules.Schedule` subclass
sampler            ``fn(denoiser, x, sigmas, *, space, rng, callback, **options)``; info:
                   ``deterministic`` (bool), ``order`` (int) required; ``nfe_per_step``
                   (int, 1), ``defaults`` (dict), ``description``, ``documented_nfe``,
                   ``adaptive`` (bool)
guidance           ``factory(denoiser, *, model=None, **options) -> denoiser``
                   (see :mod:`polydiff.guidance`)
dataset            ``loader(**options) -> sequence of items``; info: ``modality``
metric             ``fn(samples, reference=None, **options) -> float`` named
                   ``<modality>_<metric>``; info: ``modality``, ``higher_is_better`` (True,
                   False, or None for a target metric: nearer the data row is better)
benchmark          a :class:`~polydiff.bench.task.BenchmarkTask`, or a factory ``f() -> task``
                   (called once, at registration); ``task.name`` equals the registered
                   name; info: ``modality``, ``suites`` (list of suite names)
network            an ``nn.Module`` subclass with ``forward(x, time, cond)``, or a factory
                   ``f(**kwargs) -> nn.Module``; info: ``modality``
parameterization   a :class:`~polydiff.parameterization.Parameterization` subclass
=================  ==========================================================================
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from .errors import PluginError

#: Modality class attributes a plugin must set (name → type).
MODALITY_ATTRIBUTES: dict[str, type | tuple] = {
    "name": str,
    "default_network": str,
    "default_dataset": str,
    "default_metrics": (list, tuple),
}
#: Modality methods a plugin must override (the base class only raises).
MODALITY_METHODS = ("sampling_request", "write", "read")

#: info keys each kind accepts (required ones first in :data:`_REQUIRED_INFO`).
_ALLOWED_INFO: dict[str, set[str]] = {
    "modality": set(),
    "schedule": set(),
    "sampler": {"deterministic", "order", "nfe_per_step", "defaults", "description", "documented_nfe", "adaptive"},
    "guidance": set(),
    "dataset": {"modality"},
    "metric": {"modality", "higher_is_better"},
    "benchmark": {"modality", "suites"},
    "network": {"modality"},
    "parameterization": set(),
}
_REQUIRED_INFO: dict[str, tuple[str, ...]] = {
    "sampler": ("deterministic", "order"),
    "dataset": ("modality",),
    "metric": ("modality", "higher_is_better"),
    "network": ("modality",),
}
_FORMS = {
    "modality": "register(name, ModalityClass)",
    "schedule": "register(name, ScheduleClass)",
    "sampler": "register(name, fn, deterministic=..., order=..., nfe_per_step=1, defaults={...})",
    "guidance": "register(name, factory)  # factory(denoiser, *, model=None, **options)",
    "dataset": "register(name, loader, modality=...)",
    "metric": "register(name, fn, modality=..., higher_is_better=True|False|None)",
    "benchmark": "register(name, BenchmarkTask(...) or factory, modality=..., suites=[...])",
    "network": "register(name, ModuleClass, modality=...)",
    "parameterization": "register(name, ParameterizationClass)",
}


def normalize(kind: str, name: Any, obj: Any, info: dict, plugin: str) -> tuple[Any, dict]:
    """The entry ``(obj, info)`` of one ``register`` call, or :class:`PluginError`."""
    where = f"plugin {plugin!r}: {kind} {name!r}"
    if not isinstance(name, str) or not name:
        raise PluginError(
            f"plugin {plugin!r} registered a {kind} with an invalid name {name!r}; names are non-empty strings"
        )
    unknown = sorted(set(info) - _ALLOWED_INFO[kind])
    if unknown:
        allowed = ", ".join(sorted(_ALLOWED_INFO[kind])) or "(none)"
        raise PluginError(f"{where}: unknown keyword(s) {', '.join(unknown)} (accepted: {allowed}); use {_FORMS[kind]}")
    missing = [k for k in _REQUIRED_INFO.get(kind, ()) if k not in info]
    if missing:
        raise PluginError(f"{where}: missing keyword(s) {', '.join(missing)}; use {_FORMS[kind]}")
    return _CHECKS[kind](where, name, obj, dict(info))


def _fail(where: str, what: str, kind: str) -> PluginError:
    return PluginError(f"{where}: {what}; use {_FORMS[kind]}")


def _subclass(where: str, obj: Any, base: type, kind: str) -> None:
    if not (inspect.isclass(obj) and issubclass(obj, base)):
        raise _fail(where, f"expected a subclass of {base.__module__}.{base.__qualname__}, got {obj!r}", kind)


def _modality(where, name, obj, info):
    from .modality import Modality

    _subclass(where, obj, Modality, "modality")
    problems = []
    for attr, typ in MODALITY_ATTRIBUTES.items():
        value = getattr(obj, attr, None)
        if not isinstance(value, typ) or (typ is str and not value):
            tname = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            problems.append(f"class attribute {attr} must be a non-empty {tname} (is {value!r})")
    if isinstance(obj.name, str) and obj.name and obj.name != name:
        problems.append(f"its class attribute name = {obj.name!r} differs from the registered name {name!r}")
    not_overridden = [m for m in MODALITY_METHODS if getattr(obj, m) is getattr(Modality, m)]
    if not_overridden:
        problems.append(f"it does not implement {', '.join(m + '()' for m in not_overridden)}")
    if problems:
        raise PluginError(
            f"{where} ({obj.__qualname__}): " + "; ".join(problems) + " (see Modality in polydiff.modality)"
        )
    return obj, info


def _schedule(where, name, obj, info):
    from .schedules import Schedule

    _subclass(where, obj, Schedule, "schedule")
    return obj, info


def _sampler(where, name, obj, info):
    from .samplers import SamplerSpec

    if not callable(obj) or isinstance(obj, SamplerSpec):
        raise _fail(where, f"expected the sampler function, got {obj!r}", "sampler")
    _require_signature(where, obj, "sampler", positional=3, keywords=("space", "rng", "callback"))
    if not isinstance(info["deterministic"], bool):
        raise _fail(where, f"deterministic must be True or False, got {info['deterministic']!r}", "sampler")
    for key in ("order", "nfe_per_step", "documented_nfe"):
        if key in info and (not isinstance(info[key], int) or isinstance(info[key], bool) or info[key] < 1):
            raise _fail(where, f"{key} must be a positive int, got {info[key]!r}", "sampler")
    if not isinstance(info.get("defaults", {}), dict):
        raise _fail(where, f"defaults must be a dict of sampler options, got {info['defaults']!r}", "sampler")
    spec = SamplerSpec(
        obj,
        info["deterministic"],
        info["order"],
        info.get("nfe_per_step", 1),
        dict(info.get("defaults") or {}),
        info.get("description", ""),
        info.get("documented_nfe", 50),
        bool(info.get("adaptive", False)),
    )
    return spec, info


def _guidance(where, name, obj, info):
    if not callable(obj):
        raise _fail(where, f"expected a guidance factory, got {obj!r}", "guidance")
    params = _parameters(obj)
    if params is not None:
        has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not positional or not ("model" in params or has_var_kw):
            raise _fail(
                where, f"its signature {_sig(obj)} does not take (denoiser, *, model=None, **options)", "guidance"
            )
    return obj, info


def _dataset(where, name, obj, info):
    if not callable(obj):
        raise _fail(where, f"expected a loader callable, got {obj!r}", "dataset")
    _modality_info(where, info, "dataset")
    return obj, info


def _metric(where, name, obj, info):
    if not callable(obj):
        raise _fail(where, f"expected a metric function, got {obj!r}", "metric")
    _modality_info(where, info, "metric")
    if not name.startswith(info["modality"] + "_"):
        raise _fail(
            where, f"metric names are global: start it with its modality, e.g. {info['modality']}_{name}", "metric"
        )
    hib = info.get("higher_is_better")
    if hib not in (True, False, None):
        raise _fail(where, f"higher_is_better must be True, False or None, got {hib!r}", "metric")
    return obj, info


def _benchmark(where, name, obj, info):
    from .bench.task import BenchmarkTask

    task = obj
    if not isinstance(task, BenchmarkTask):
        if not callable(task):
            raise _fail(where, f"expected a BenchmarkTask or a factory returning one, got {obj!r}", "benchmark")
        try:
            task = task()
        except Exception as e:  # the factory is plugin code: report it against the plugin
            raise PluginError(f"{where}: the task factory raised {type(e).__name__}: {e}") from e
        if not isinstance(task, BenchmarkTask):
            raise _fail(where, f"the factory returned {task!r}, not a BenchmarkTask", "benchmark")
    if task.name != name:
        raise _fail(where, f"the task's name is {task.name!r}; register it under that name", "benchmark")
    if "modality" in info and not isinstance(info["modality"], str):
        raise _fail(where, f"modality must be a string, got {info['modality']!r}", "benchmark")
    suites = info.get("suites")
    if suites is not None and (isinstance(suites, str) or not all(isinstance(s, str) for s in suites)):
        raise _fail(where, f"suites must be a list of suite names, got {suites!r}", "benchmark")
    return task, info


def _network(where, name, obj, info):
    from torch import nn

    _modality_info(where, info, "network")
    if inspect.isclass(obj):
        _subclass(where, obj, nn.Module, "network")
        check_network_forward(obj, where)
    elif not callable(obj):
        raise _fail(where, f"expected an nn.Module subclass or a factory, got {obj!r}", "network")
    return obj, info


def _parameterization(where, name, obj, info):
    from .parameterization import Parameterization

    _subclass(where, obj, Parameterization, "parameterization")
    return obj, info


_CHECKS: dict[str, Callable] = {
    "modality": _modality,
    "schedule": _schedule,
    "sampler": _sampler,
    "guidance": _guidance,
    "dataset": _dataset,
    "metric": _metric,
    "benchmark": _benchmark,
    "network": _network,
    "parameterization": _parameterization,
}


# -- helpers ------------------------------------------------------------------------------------
def check_network_forward(cls_or_module: Any, where: str) -> None:
    """Denoiser networks are called ``net(x, time, cond)``: refuse a ``forward`` that cannot take that."""
    forward = getattr(cls_or_module, "forward", None)
    params = _parameters(forward) if forward is not None else None
    if params is None:
        return
    ps = list(params.values())
    if ps and ps[0].name == "self" and inspect.isclass(cls_or_module):
        ps = ps[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in ps):
        return
    positional = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 3:
        names = ", ".join(p.name for p in positional)
        raise PluginError(
            f"{where}: forward({names}) must take (x, time, cond) — cond is the batch's conditioning "
            "dict or None; add a cond=None parameter even if the network ignores it"
        )


def _modality_info(where: str, info: dict, kind: str) -> None:
    if not isinstance(info.get("modality"), str) or not info["modality"]:
        raise _fail(where, f"modality must name the modality it belongs to, got {info.get('modality')!r}", kind)


def _require_signature(where: str, fn: Callable, kind: str, *, positional: int, keywords: tuple[str, ...]) -> None:
    params = _parameters(fn)
    if params is None:
        return
    ps = list(params.values())
    if any(p.kind is p.VAR_KEYWORD for p in ps):
        keywords = ()
    n_pos = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in ps)
    var_pos = any(p.kind is p.VAR_POSITIONAL for p in ps)
    missing = [k for k in keywords if k not in params]
    if (n_pos < positional and not var_pos) or missing:
        raise _fail(
            where, f"its signature {_sig(fn)} does not take (denoiser, x, sigmas, *, space, rng, callback)", kind
        )


def _parameters(fn: Any):
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return None


def _sig(fn: Any) -> str:
    try:
        return f"{getattr(fn, '__name__', 'fn')}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return repr(fn)
