"""Static checks of what a plugin registers: the form of each component (check ``components``).

Every function takes the plugin's :class:`~polydiff.testing.environment.Registration`
records, all records (the core's too, for cross references) and the report.
"""

from __future__ import annotations

import inspect
import json

from torch import nn

from polydiff.modality import Modality

from .report import ConformanceReport

CHECK = "components"
#: symmetries a modality may declare in ``equivariance``
SYMMETRIES = ("rotation", "reflection", "permutation")


def accepts_positional(fn, n: int) -> bool:
    """Whether ``fn`` can be called with ``n`` positional arguments (``self`` excluded)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True  # builtins / C functions: cannot tell, do not accuse
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in pos if p.default is p.empty]
    return len(required) <= n <= len(pos)


def accepts_keyword(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def position_slice(position_dims) -> slice | None:
    """``position_dims``: ``k`` (the first k channels of the last axis), ``(start, stop)`` or
    a ``slice``; ``None``/0 means the modality has no coordinates."""
    if position_dims is None or position_dims == 0:
        return None
    if isinstance(position_dims, slice):
        return position_dims
    if isinstance(position_dims, int):
        return slice(0, position_dims)
    start, stop = position_dims
    return slice(int(start), int(stop))


def check_components(plugin: str, mine: list, every: list, rep: ConformanceReport) -> bool:
    """Check the form of each of the plugin's components; true when none is broken."""
    names: dict[str, dict] = {}
    for r in every:
        names.setdefault(r.kind, {})[r.name] = r
    before = len(rep.findings)
    for r in mine:
        n0 = len(rep.findings)
        if not isinstance(r.name, str) or not r.name:
            rep.add(
                CHECK,
                f"{r.kind} {r.name!r}",
                f"{r.hook} registered a {r.kind} under the name {r.name!r}",
                "pass a non-empty string as the first argument of register(name, obj, **info)",
            )
            continue
        _FORMS.get(r.kind, _callable)(r, names, rep)
        if len(rep.findings) == n0:
            rep.passed.append((CHECK, r.component))
    if not mine:
        rep.skipped.append((CHECK, f"plugin {plugin!r}", "the plugin registers no component"))
    return len(rep.findings) == before


def _need_modality(r, names, rep) -> str | None:
    mod = r.info.get("modality")
    if not mod:
        rep.add(
            CHECK,
            r.component,
            f"registered without modality= (info: {sorted(r.info)})",
            f"register({r.name!r}, obj, modality='<your modality>', ...)",
        )
        return None
    if mod not in names.get("modality", {}):
        rep.add(
            CHECK,
            r.component,
            f"is registered for modality {mod!r}, which no installed plugin registers",
            f"register it with the name of a registered modality (installed: {sorted(names.get('modality', {}))})",
        )
    return mod


def _callable(r, names, rep) -> None:
    if not callable(r.obj):
        rep.add(CHECK, r.component, f"is a {type(r.obj).__name__}, not callable", f"register a callable {r.kind}")


def _modality(r, names, rep) -> None:
    cls, comp = r.obj, r.component
    if not (inspect.isclass(cls) and issubclass(cls, Modality)):
        rep.add(
            CHECK,
            comp,
            f"registered object is {cls!r}, not a Modality subclass",
            f"register the class itself: register({r.name!r}, MyModality) with "
            "`class MyModality(polydiff.modality.Modality)`",
        )
        return
    if cls.name != r.name:
        rep.add(
            CHECK,
            comp,
            f"{cls.__name__}.name is {cls.name!r} but it is registered as {r.name!r}",
            f"set `name = {r.name!r}` on {cls.__name__} (checkpoints record Modality.name and load it by that key)",
        )
    refs = (
        ("default_network", "network", "polydiff_register_networks"),
        ("default_dataset", "dataset", "polydiff_register_datasets"),
        ("default_schedule", "schedule", "polydiff_register_schedules"),
        ("default_parameterization", "parameterization", "polydiff_register_parameterizations"),
    )
    for attr, kind, hook in refs:
        value = getattr(cls, attr, "")
        if not value or value not in names.get(kind, {}):
            rep.add(
                CHECK,
                comp,
                f"{cls.__name__}.{attr} = {value!r} is not a registered {kind}",
                f"set {attr} to a {kind} your plugin registers through {hook} "
                f"(registered: {', '.join(sorted(names.get(kind, {}))) or 'none'})",
            )
        elif kind == "dataset" and names[kind][value].info.get("modality") not in (None, r.name):
            rep.add(
                CHECK,
                comp,
                f"default_dataset {value!r} is registered for modality {names[kind][value].info.get('modality')!r}",
                f"register the data set with modality={r.name!r}",
            )
    for m in cls.default_metrics:
        if m not in names.get("metric", {}):
            rep.add(
                CHECK,
                comp,
                f"default_metrics names {m!r}, which is not a registered metric",
                "list only metrics registered through polydiff_register_metrics",
            )
    if not (isinstance(cls.sigma_data, (int, float)) and cls.sigma_data > 0):
        rep.add(CHECK, comp, f"sigma_data = {cls.sigma_data!r}", "set sigma_data to the data's RMS (a float > 0)")
    for meth in ("sampling_request", "write", "read"):
        if getattr(cls, meth) is getattr(Modality, meth):
            rep.add(
                CHECK,
                comp,
                f"{cls.__name__} does not implement {meth}() (the base class raises NotImplementedError)",
                f"override {meth}: see the plugin guide (examples/pointcloud/README.md), section 'The modality'",
            )
    _declared_symmetry(cls, comp, rep)
    conf = getattr(cls, "conformance", {})
    try:
        json.dumps(conf)
        ok = isinstance(conf, dict)
    except TypeError:
        ok = False
    if not ok:
        rep.add(CHECK, comp, f"conformance = {conf!r}", "make `conformance` a JSON-able dict of kit options")


def _declared_symmetry(cls, comp, rep) -> None:
    eq = getattr(cls, "equivariance", ())
    if isinstance(eq, str) or not all(s in SYMMETRIES for s in eq):
        rep.add(
            CHECK,
            comp,
            f"equivariance = {eq!r}",
            f"declare a tuple of symmetries from {SYMMETRIES}, e.g. equivariance = ('rotation', 'permutation')",
        )
        return
    if {"rotation", "reflection"} & set(eq):
        try:
            sl = position_slice(getattr(cls, "position_dims", None))
        except (TypeError, ValueError):
            sl = None
        if sl is None or (sl.stop - (sl.start or 0)) not in (2, 3):
            rep.add(
                CHECK,
                comp,
                f"declares {eq} but position_dims = {getattr(cls, 'position_dims', None)!r}",
                "set position_dims to the channels of the last axis of x that hold coordinates "
                "(3 for x[..., :3], or (start, stop)); rotations act on 2 or 3 of them",
            )


def _network(r, names, rep) -> None:
    _need_modality(r, names, rep)
    obj = r.obj
    if inspect.isclass(obj):
        if not issubclass(obj, nn.Module):
            rep.add(CHECK, r.component, f"{obj.__name__} is not an nn.Module", "subclass torch.nn.Module")
        elif not accepts_positional(obj.forward, 4):  # self, x, time, cond
            rep.add(
                CHECK,
                r.component,
                f"{obj.__name__}.forward{inspect.signature(obj.forward)} does not take (x, time, cond)",
                "define forward(self, x, time, cond=None): cond is the batch's cond dict (or None)",
            )
    elif not callable(obj):
        rep.add(CHECK, r.component, f"is a {type(obj).__name__}", "register an nn.Module class (or a factory)")


def _dataset(r, names, rep) -> None:
    _need_modality(r, names, rep)
    _callable(r, names, rep)


def _metric(r, names, rep) -> None:
    mod = _need_modality(r, names, rep)
    if not callable(r.obj):
        _callable(r, names, rep)
    elif not (accepts_positional(r.obj, 1) and accepts_keyword(r.obj, "reference")):
        rep.add(
            CHECK,
            r.component,
            f"signature {inspect.signature(r.obj)} does not take (samples, reference=None, **options)",
            "define f(samples, reference=None, **options) -> float",
        )
    if "higher_is_better" not in r.info or r.info["higher_is_better"] not in (True, False, None):
        got = r.info.get("higher_is_better", "<missing>")
        rep.add(
            CHECK,
            r.component,
            f"no direction declared (higher_is_better={got!r}); reports cannot tell better from worse",
            f"register({r.name!r}, fn, modality=..., higher_is_better=True | False | None) "
            "(None: a target metric, best when it matches the data)",
        )
    if mod and not r.name.startswith(f"{mod}_"):
        rep.add(
            CHECK,
            r.component,
            f"metric names are global; {r.name!r} does not start with its modality's name",
            f"register it as {mod + '_' + r.name!r}",
        )


def _benchmark(r, names, rep) -> None:
    mod = _need_modality(r, names, rep)
    task = r.obj
    if not hasattr(task, "run") and callable(task):  # a factory f() -> BenchmarkTask, called once
        try:
            task = task()
        except Exception as e:
            rep.add(CHECK, r.component, f"the task factory raised {type(e).__name__}: {e}", "make the factory work")
            return
    if not (callable(getattr(task, "run", None)) and hasattr(task, "name")):
        rep.add(
            CHECK,
            r.component,
            f"registered object {task!r} has no run(ctx)",
            "register a polydiff.bench.BenchmarkTask(name=..., modality=..., model=..., run=...)",
        )
        return
    if task.name != r.name:
        rep.add(
            CHECK, r.component, f"task.name is {task.name!r}", f"register the task under its own name {task.name!r}"
        )
    if mod and getattr(task, "modality", mod) != mod:
        rep.add(
            CHECK,
            r.component,
            f"task.modality is {task.modality!r} but it is registered with modality={mod!r}",
            "use the same modality in BenchmarkTask(...) and register(..., modality=...)",
        )
    suites = r.info.get("suites", getattr(task, "suites", ()))
    if isinstance(suites, str) or not all(isinstance(s, str) for s in suites):
        rep.add(CHECK, r.component, f"suites = {suites!r}", "pass suites=[...] as a list of suite names")


def _schedule(r, names, rep) -> None:
    from polydiff.schedules import Schedule

    if not (inspect.isclass(r.obj) and issubclass(r.obj, Schedule)):
        rep.add(
            CHECK,
            r.component,
            f"{r.obj!r} is not a Schedule subclass",
            "register a polydiff.schedules.Schedule subclass",
        )


_FORMS = {
    "modality": _modality,
    "network": _network,
    "dataset": _dataset,
    "metric": _metric,
    "benchmark": _benchmark,
    "schedule": _schedule,
}
