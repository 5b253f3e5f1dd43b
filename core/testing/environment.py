"""A plugin under test, alone with the core: resolving it, a fresh manager, recording its calls.

:func:`plugin_environment` registers the core plugin and the plugin under test in a fresh
:class:`polydiff.plugin_manager.PolydiffPlugins` and makes it the process-wide manager for
the duration (so ``polydiff.create``/``load`` and the modality's registry look-ups see
exactly these two plugins), restoring the previous manager afterwards.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from polydiff import hookspecs
from polydiff import plugin_manager as pmod


@dataclass
class Registration:
    """One ``register(name, obj, **info)`` call made by a registration hook."""

    kind: str
    name: Any
    obj: Any
    info: dict = field(default_factory=dict)
    plugin: str = ""
    hook: str = ""

    @property
    def component(self) -> str:
        return f"{self.kind} {self.name!r}"


def resolve_plugin(plugin, name: str | None = None) -> tuple[Any, str, str]:
    """``(plugin object, plugin name, version)`` for an entry-point name (``"molecule"``), a
    module path (``"polydiff_pointcloud"``), a module, a class or an instance with hookimpls."""
    eps = list(md.entry_points(group=pmod.ENTRY_POINT_GROUP))
    if isinstance(plugin, str):
        by_name = {ep.name: ep for ep in eps}
        if plugin in by_name:
            ep = by_name[plugin]
            return ep.load(), name or ep.name, _version(ep)
        plugin = importlib.import_module(plugin)
    modname = getattr(plugin, "__name__", None)
    for ep in eps:
        if modname is not None and ep.value == modname:
            return plugin, name or ep.name, _version(ep)
    if name is None:
        name = modname.rsplit(".", 1)[-1] if modname else type(plugin).__name__
    return plugin, name, "local"


def _version(ep) -> str:
    return ep.dist.version if getattr(ep, "dist", None) is not None else "unknown"


def fresh_manager(plugin, name: str, version: str = "local", with_plugins=()):
    """``(manager, refusal)``: a manager holding the core plugin (``polydiff.builtin``, name
    ``core``) and ``plugin``. ``refusal`` is the error the manager raised registering
    ``plugin`` (a contract violation, a misspelt hook) or None; after a refusal the plugin
    is still registered with pluggy (not in the registries) so its hooks can be recorded.
    ``with_plugins`` (entry-point names, module paths or modules) are registered too, before
    ``plugin``: plugins it builds on. Raises what registering those, the core or pluggy
    itself raises."""
    from polydiff import __version__, builtin

    pm = pmod.PolydiffPlugins(load_entrypoints=False)
    if pm.pm.get_plugin("core") is None and plugin is not builtin:
        pm.register(builtin, name="core", version=__version__)
    for other in with_plugins:
        obj, other_name, other_version = resolve_plugin(other)
        if pm.pm.get_plugin(other_name) is None:
            pm.register(obj, name=other_name, version=other_version)
    if pm.pm.get_plugin(name) is not None:
        return pm, None
    try:
        pm.register(plugin, name=name, version=version)
        return pm, None
    except Exception as e:  # the manager refuses the plugin: record its hooks for the report anyway
        if pm.pm.get_plugin(name) is None:
            pm.pm.register(plugin, name=name)
        return pm, e


@contextmanager
def process_manager(pm) -> Iterator[None]:
    """Make ``pm`` the process-wide manager (what :func:`polydiff.get_plugins` returns) for
    the duration of the block."""
    use = getattr(pmod, "use_plugins", None)
    if use is not None:
        with use(pm):
            yield
        return
    with pmod._lock:
        old, pmod._manager = pmod._manager, pm
    try:
        yield
    finally:
        with pmod._lock:
            pmod._manager = old


def record_registrations(pm) -> tuple[list[Registration], list[tuple[str, str, BaseException]]]:
    """Call every plugin's registration hooks with a recording ``register``.

    Returns the calls and ``(plugin, hook, exception)`` for hooks that raised. The records
    are taken from the plugins themselves, not from the registries, so components that
    the manager refuses are still seen (and explained) by the form checks.
    """
    calls: list[Registration] = []
    errors: list[tuple[str, str, BaseException]] = []
    for hook_name, kind in hookspecs.REGISTRATION_HOOKS.items():
        hook = getattr(pm.pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):

            def register(name, obj, _k=kind, _p=impl.plugin_name, _h=hook_name, **info):
                calls.append(Registration(_k, name, obj, dict(info), _p, _h))

            try:
                impl.function(register=register)
            except Exception as e:  # the plugin's own code: report, do not crash the kit
                errors.append((impl.plugin_name, hook_name, e))
    return calls, errors
