"""The plugin conformance kit: call it from your plugin's own pytest suite.

>>> from polydiff.testing import check_plugin
>>> def test_my_plugin_conforms(tmp_path):
...     check_plugin("polydiff_pointcloud", tmp_dir=tmp_path)     # raises PluginError listing every fault

:func:`check_plugin` loads the plugin next to the core plugin only, in a fresh plugin manager
that serves as the process-wide one while the checks run, and checks (names for
``checks=``/``skip=``):

=====================  ===================================================================
``registration``       the plugin registers without errors or clashes next to the core
``components``         every component's form: modality attributes and methods, network
                       ``forward(x, time, cond)``, metrics ``<modality>_…`` with a declared
                       ``higher_is_better``, benchmark tasks named as registered
``data``               tiny data: ``load_dataset`` → ``collate`` → ``space`` keeps it; JSON config
``network``            the default network runs on the collated batch
``loss``               the training loss (with ``auxiliary_loss``) is finite and has gradients
``sampling``           ``sampling_request`` → ``sample_raw`` (euler, 2 steps) → ``decode``
``files``              ``write`` → ``read`` returns the samples (count, type, metric values)
``batch_independence`` sample i alone = sample i of a batch (same seed)
``save_load``          save → load gives the same config and samples
``equivariance``       declared symmetries (``equivariance``, ``position_dims``) hold
``metrics``            every metric gives a finite float on the samples
``benchmark``          tasks registered for the ``smoke`` suite run and return valid rows
=====================  ===================================================================

Every fault becomes a :class:`Finding` (check, component, message, fix); with
``raise_on_failure`` (the default) one :class:`polydiff.errors.PluginError` lists them all,
otherwise the :class:`ConformanceReport` is returned. How a modality is exercised (tiny data
options, a tiny network, a sampling request) comes from its class attribute
``conformance`` (keys of :class:`ModalityOptions`) or ``modality_options=``.
"""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from pathlib import Path

from .bench import check_benchmarks
from .components import check_components
from .environment import Registration, fresh_manager, process_manager, record_registrations, resolve_plugin
from .modality import MODALITY_CHECKS, ModalityOptions, ModalityRun, describe
from .report import ConformanceError, ConformanceReport, Finding
from .symmetry import random_orthogonal

CHECKS = ("registration", "components") + MODALITY_CHECKS + ("benchmark",)

__all__ = [
    "CHECKS",
    "ConformanceError",
    "ConformanceReport",
    "Finding",
    "ModalityOptions",
    "check_modality",
    "check_plugin",
    "random_orthogonal",
]


def _select(checks, skip) -> set[str]:
    chosen = set(CHECKS if checks is None else checks)
    unknown = sorted((chosen | set(skip)) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown conformance check(s) {unknown}; checks: {', '.join(CHECKS)}")
    return chosen - set(skip)


def _tmp(tmp_dir):
    if tmp_dir is not None:
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        return nullcontext(str(tmp_dir))
    return tempfile.TemporaryDirectory(prefix="polydiff-conformance-")


def check_plugin(
    plugin,
    *,
    name: str | None = None,
    checks=None,
    skip=(),
    modality_options: dict[str, dict] | None = None,
    benchmarks: str = "smoke",
    with_plugins=(),
    raise_on_failure: bool = True,
    tmp_dir=None,
) -> ConformanceReport:
    """Check a plugin against polydiff's plugin contract.

    Args:
        plugin: an entry-point name (``"pointcloud"``), a module path
            (``"polydiff_pointcloud"``), a module, or a class/instance with hookimpls.
        name: the plugin's name (default: its entry-point name, else the module's).
        checks / skip: names from :data:`CHECKS` to run / leave out (default: all).
        modality_options: ``{modality name: {option: value}}`` overriding the modality's
            ``conformance`` attribute (see :class:`ModalityOptions`).
        benchmarks: ``"smoke"`` runs the tasks registered for the smoke suite; ``"all"``
            every task of the plugin (quick budgets where a task has no smoke one).
        with_plugins: other plugins to load next to the core (entry-point names, module
            paths or modules), for a plugin that uses their components.
        raise_on_failure: raise :class:`polydiff.errors.PluginError` listing every finding
            (default); otherwise return the report.
        tmp_dir: where samples, files and checkpoints go (default: a temporary folder).
    """
    selected = _select(checks, skip)
    try:
        obj, pname, version = resolve_plugin(plugin, name)
    except Exception as e:
        rep = ConformanceReport(name or str(plugin))
        rep.add(
            "registration", f"plugin {rep.plugin!r}", f"importing it raised {describe(e)}", "make the module importable"
        )
        return _finish(rep, raise_on_failure)
    rep = ConformanceReport(pname)
    comp = f"plugin {pname!r}"
    try:
        pm, refusal = fresh_manager(obj, pname, version, with_plugins)
    except Exception as e:
        rep.add(
            "registration",
            comp,
            f"registering it with pluggy raised {describe(e)}",
            "implement only hooks of polydiff.hookspecs (polydiff_register_…, polydiff_add_hookspecs), spelled "
            "exactly, marked with @polydiff.hookimpl",
        )
        return _finish(rep, raise_on_failure)
    with process_manager(pm), _tmp(tmp_dir) as tmp:
        calls, errors = record_registrations(pm)
        mine = [c for c in calls if c.plugin == pname]
        for owner, hook, err in errors:
            if owner == pname:
                rep.add(
                    "registration",
                    comp,
                    f"{hook} raised {describe(err)}",
                    "a registration hook only calls register(name, obj, **info) once per component; it must not fail",
                )
        if "components" in selected:
            check_components(pname, mine, calls, rep)
        messages = [str(refusal)] if refusal is not None else []
        messages += [f"{p}: {t}" for p, t in pm.failed.items()] + [str(m) for m in pm.problems]
        for m in messages:
            if not _explained(m, rep.findings):
                rep.add(
                    "registration",
                    comp,
                    m,
                    "change what the message names; the accepted forms are in polydiff.hookspecs",
                )
        if "registration" in selected and not any(f.check == "registration" for f in rep.findings):
            rep.passed.append(("registration", comp))
        if refusal is not None:
            rep.skipped.append(("data", comp, "the plugin manager refused the plugin (see the registration finding)"))
            return _finish(rep, raise_on_failure)
        options = dict(modality_options or {})
        for entry in pm.registry("modality"):
            if entry.plugin != pname:
                continue
            opts = ModalityOptions.resolve(entry.obj, options.pop(entry.name, {}))
            ModalityRun(entry.obj, opts, rep, selected, Path(tmp), plugin=pname).run()
        if options:
            raise ValueError(f"modality_options names modalities the plugin does not register: {sorted(options)}")
        if "benchmark" in selected:
            check_benchmarks(pname, rep, Path(tmp), benchmarks)
    return _finish(rep, raise_on_failure)


def _explained(message: str, findings) -> bool:
    """Whether a finding already covers the manager's ``message`` (same component or hook)."""
    for f in findings:
        if f.component.startswith("plugin "):
            hook = f.message.split(" ", 1)[0]
            if hook.startswith("polydiff_") and hook in message:
                return True
        elif f.component.split(" ", 1)[-1] in message:
            return True
    return False


def check_modality(
    cls, *, checks=None, skip=(), raise_on_failure: bool = True, tmp_dir=None, **options
) -> ConformanceReport:
    """Check one Modality subclass with the plugins installed now (its networks, data sets
    and metrics must be registered). ``options`` override its ``conformance`` attribute
    (see :class:`ModalityOptions`); ``checks``/``skip`` as in :func:`check_plugin` (the
    plugin-level ``registration`` and ``benchmark`` checks do not apply)."""
    from polydiff.plugin_manager import get_plugins

    if not isinstance(cls, type):
        raise TypeError(f"check_modality takes a Modality subclass, got {type(cls).__name__}")
    selected = _select(checks, skip)
    pm = get_plugins()
    every = [Registration(e.kind, e.name, e.obj, dict(e.info), e.plugin) for k in pm.registries for e in pm.registry(k)]
    name = getattr(cls, "name", "") or cls.__name__
    owner = next((r.plugin for r in every if r.kind == "modality" and r.obj is cls), None)
    rep = ConformanceReport(owner or cls.__name__)
    if "components" in selected:
        me = Registration("modality", name, cls, {}, owner or "", "")
        check_components(rep.plugin, [me], every + ([] if owner else [me]), rep)
    opts = ModalityOptions.resolve(cls, options)
    with _tmp(tmp_dir) as tmp:
        ModalityRun(cls, opts, rep, selected, Path(tmp), plugin=None).run()
    return _finish(rep, raise_on_failure)


def _finish(rep: ConformanceReport, raise_on_failure: bool) -> ConformanceReport:
    return rep.raise_if_failed() if raise_on_failure else rep
