"""The plugin manager: discovery through entry points, registries filled through hooks.

Built-in plugins (``polydiff.builtin`` and the modality plugins) are declared in
polydiff's own ``pyproject.toml`` under the entry-point group ``polydiff`` and loaded by
exactly the same code as third-party plugins. ``POLYDIFF_PLUGINS`` (comma-separated
entry-point names) restricts which are loaded; unset means all; a name that no installed
entry point has is an error.

Isolation: a plugin that fails to import, implements a misspelt or undecorated hook, or
registers a component in the wrong form (:mod:`polydiff.plugin_contract`) is reported once
(a :class:`PluginWarning` naming it and the error), recorded in :attr:`PolydiffPlugins.failed`
(``polydiff plugins`` lists it) and skipped; everything else keeps working. A name
registered by two plugins stays with the first (core, then polydiff's own plugins, then the
others by name); the later plugin's clashing component alone is skipped, with a message in
:attr:`PolydiffPlugins.problems`. ``POLYDIFF_STRICT_PLUGINS=1`` turns every such report
into a :class:`~polydiff.errors.PluginError` (for CI). A plugin registered by hand with
:meth:`PolydiffPlugins.register` is always checked strictly.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata as md
import inspect
import os
import threading
import warnings
from typing import Any, Iterable, Iterator

import pluggy

from . import hookspecs, plugin_contract
from .errors import PluginError, PluginNotFoundError, RegistryError
from .registry import KINDS, Registry

ENTRY_POINT_GROUP = "polydiff"
ALLOW_ENV = "POLYDIFF_PLUGINS"
STRICT_ENV = "POLYDIFF_STRICT_PLUGINS"


class PluginWarning(UserWarning):
    """A plugin was skipped (failed to load) or one of its components was (name clash)."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


class PolydiffPlugins:
    """A pluggy manager plus the registries its hooks fill.

    ``plugins`` maps plugin name → version (the distribution's version for entry points,
    ``"local"`` for plugins registered by hand); ``failed`` maps a skipped plugin's name to
    its error; ``problems`` lists skipped components (name clashes).
    """

    def __init__(
        self, *, load_entrypoints: bool = True, allow: Iterable[str] | None = None, strict: bool | None = None
    ):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.problems: list[str] = []
        self.available: list[str] = []  # entry-point names installed (allowed or not)
        self.strict = _env_flag(STRICT_ENV) if strict is None else bool(strict)
        self._by_hand: set[str] = set()  # plugins registered by hand: always checked strictly
        self._registries: dict[str, Registry] | None = None
        if allow is None:
            env = os.environ.get(ALLOW_ENV, "").strip()
            allow = [a.strip() for a in env.split(",") if a.strip()] if env else None
        self.allow = None if allow is None else set(allow)
        if load_entrypoints:
            self._load_entrypoints()
        self._finish_loading()
        self._registries = self._collect()

    # -- loading ---------------------------------------------------------------
    def _load_entrypoints(self) -> None:
        eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=_load_order)
        self.available = [ep.name for ep in eps]
        if self.allow is not None:
            unknown = sorted(self.allow - set(self.available))
            if unknown:
                raise PluginError(
                    f"{ALLOW_ENV} names plugin(s) that are not installed: {', '.join(unknown)}; "
                    f"installed: {', '.join(self.available) or '(none)'}"
                )
        for ep in eps:
            if (self.allow is not None and ep.name not in self.allow) or self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as e:  # a broken third-party plugin must not take the others down
                self._fail(ep.name, f"cannot be loaded from {ep.value!r}: {type(e).__name__}: {e}")
                continue
            self.plugins[ep.name] = ep.dist.version if ep.dist is not None else "unknown"

    def _finish_loading(self) -> None:
        """Plugin-added hookspecs, then the hook-name checks (misspelt, undecorated, unknown)."""
        for impl in list(self.pm.hook.polydiff_add_hookspecs.get_hookimpls()):
            try:
                impl.function(pm=self.pm)
            except Exception as e:
                self._fail(impl.plugin_name, f"polydiff_add_hookspecs raised {type(e).__name__}: {e}")
        for name in list(self.plugins):
            problem = self._hook_name_problem(name)
            if problem:
                self._fail(name, problem)

    def _hook_name_problem(self, plugin_name: str) -> str | None:
        plugin = self.pm.get_plugin(plugin_name)
        if plugin is None:
            return None
        known = sorted(
            n for n in dir(self.pm.hook) if n.startswith("polydiff_") and getattr(self.pm.hook, n).spec is not None
        )
        for attr in dir(plugin):
            if not attr.startswith("polydiff_"):
                continue
            fn = inspect.getattr_static(plugin, attr, None)
            fn = getattr(fn, "__func__", fn)
            if not inspect.isfunction(fn) or (inspect.ismodule(plugin) and fn.__module__ != plugin.__name__):
                continue
            caller = getattr(self.pm.hook, attr, None)
            if attr not in known or getattr(caller, "spec", None) is None:
                near = difflib.get_close_matches(attr, known, n=1)
                hint = f"; did you mean {near[0]}?" if near else f"; hooks: {', '.join(known)}"
                return f"implements an unknown hook {attr}{hint}"
            if self.pm.parse_hookimpl_opts(plugin, attr) is None:
                return f"{attr} is not decorated with @polydiff.hookimpl, so pluggy ignores it; add the decorator"
        return None

    def register(self, plugin: Any, name: str, version: str = "local", *, strict: bool = True) -> None:
        """Register a plugin object by hand (tests, notebooks). Checked strictly by default: a
        broken plugin raises :class:`PluginError` and is unregistered again; ``strict=False``
        treats it like an entry-point plugin (reported in :attr:`failed`/:attr:`problems`, skipped)."""
        self.pm.register(plugin, name=name)
        self.plugins[name] = version
        self.failed.pop(name, None)
        if strict:
            self._by_hand.add(name)
        try:
            self._finish_loading()
            self._registries = self._collect()
        except PluginError:
            self.unregister(name)
            raise

    def unregister(self, name: str) -> None:
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self.plugins.pop(name, None)
        self._by_hand.discard(name)
        self._registries = None

    def _fail(self, plugin_name: str, error: str) -> None:
        """Skip ``plugin_name`` (or raise in strict mode), reporting it once."""
        message = error if error.startswith(f"plugin {plugin_name!r}") else f"plugin {plugin_name!r} {error}"
        if self.strict or plugin_name in self._by_hand:
            raise PluginError(message)
        if plugin_name not in self.failed:
            warnings.warn(
                f"polydiff: {message} — skipped ({STRICT_ENV}=1 makes this an error)", PluginWarning, stacklevel=3
            )
        self.failed[plugin_name] = message
        if self.pm.get_plugin(plugin_name) is not None:
            self.pm.unregister(name=plugin_name)
        self.plugins.pop(plugin_name, None)

    def _problem(self, message: str, plugin_name: str) -> None:
        if self.strict or plugin_name in self._by_hand:
            raise PluginError(message)
        if message not in self.problems:
            warnings.warn(f"polydiff: {message}", PluginWarning, stacklevel=3)
            self.problems.append(message)

    # -- registries ------------------------------------------------------------
    @property
    def registries(self) -> dict[str, Registry]:
        if self._registries is None:
            self._registries = self._collect()
        return self._registries

    def _collect(self) -> dict[str, Registry]:
        regs = {kind: Registry(kind, hint=self._unknown_name_hint) for kind in KINDS}
        for plugin_name in list(self.plugins):
            try:
                entries = self._components_of(plugin_name)
            except PluginError as e:
                self._fail(plugin_name, str(e))
                continue
            version = self.plugins.get(plugin_name, "local")
            for kind, name, obj, info in entries:
                if name in regs[kind]:
                    other = regs[kind].entry(name).plugin
                    self._problem(
                        f"{kind} {name!r} of plugin {plugin_name!r} is skipped: plugin {other!r} registered that "
                        f"name first. Rename it in {plugin_name!r}, or load only one of them with "
                        f"{ALLOW_ENV}=<comma-separated plugin names>",
                        plugin_name,
                    )
                    continue
                regs[kind].add(name, obj, plugin=plugin_name, version=version, **info)
        return regs

    def _components_of(self, plugin_name: str) -> list[tuple]:
        """Call ``plugin_name``'s registration hooks; every component checked by the contract."""
        out: list[tuple] = []
        for hook_name, kind in hookspecs.REGISTRATION_HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name != plugin_name:
                    continue

                def register(name, obj, _k=kind, **info):
                    obj, info = plugin_contract.normalize(_k, name, obj, info, plugin_name)
                    out.append((_k, name, obj, info))

                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as e:
                    raise PluginError(f"plugin {plugin_name!r}: {hook_name} raised {type(e).__name__}: {e}") from e
        return out

    def _unknown_name_hint(self, kind: str, name: str) -> str:
        """What to tell a user who asked for an unknown ``kind`` ``name``."""
        hints = [f"a plugin failed to load: {err}" for err in self.failed.values()]
        hints += [m for m in self.problems if f"{kind} {name!r}" in m]
        if self.allow is not None:
            left_out = [p for p in self.available if p not in self.allow]
            hints.append(
                f"{ALLOW_ENV}={','.join(sorted(self.allow))} restricts which plugins load"
                + (f"; not loaded: {', '.join(left_out)}" if left_out else "")
                + " — add the plugin that provides it (the built-in schedules, samplers, guidance and"
                " parameterisations come from 'core')"
            )
        return "; ".join(hints)

    def registry(self, kind: str) -> Registry:
        if kind not in KINDS:
            raise RegistryError(f"unknown registry kind {kind!r}; kinds: {', '.join(KINDS)}")
        return self.registries[kind]

    def get(self, kind: str, name: str) -> Any:
        return self.registry(kind).get(name)

    def require_plugin(self, name: str, *, needed_for: str = "") -> str:
        """Return the installed version of plugin ``name`` or raise naming what is installed."""
        if name not in self.plugins:
            installed = ", ".join(sorted(self.plugins)) or "(none)"
            why = f" (needed for {needed_for})" if needed_for else ""
            hint = ""
            if name in self.failed:
                hint = f"; it is installed but failed to load: {self.failed[name]}"
            elif self.allow is not None:
                hint = f"; note {ALLOW_ENV}={','.join(sorted(self.allow))} restricts loading"
            raise PluginNotFoundError(f"plugin {name!r} is not installed{why}; installed plugins: {installed}{hint}")
        return self.plugins[name]

    def components(self) -> list[dict]:
        """Every registered component as ``{kind, name, plugin, version}`` (the CLI's table)."""
        rows = []
        for kind in KINDS:
            for e in self.registry(kind):
                rows.append({"kind": kind, "name": e.name, "plugin": e.plugin, "version": e.version})
        return rows


def _load_order(ep) -> tuple:
    """core first, then polydiff's own plugins, then the others by name (first registered wins a clash)."""
    dist = ep.dist.metadata["Name"] if ep.dist is not None else ""
    return (ep.name != "core", dist != "polydiff", ep.name)


_lock = threading.Lock()
_manager: PolydiffPlugins | None = None


def get_plugins() -> PolydiffPlugins:
    """The process-wide plugin manager, created on first use."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = PolydiffPlugins()
        return _manager


def reset_plugins() -> None:
    """Forget the process-wide manager (the next :func:`get_plugins` rediscovers)."""
    global _manager
    with _lock:
        _manager = None


@contextlib.contextmanager
def use_plugins(manager: PolydiffPlugins) -> Iterator[PolydiffPlugins]:
    """Make ``manager`` the process-wide manager (what :func:`get_plugins` returns) inside the
    block, then restore the previous one (the conformance kit runs a plugin alone with core)."""
    global _manager
    with _lock:
        old, _manager = _manager, manager
    try:
        yield manager
    finally:
        with _lock:
            _manager = old


def registry(kind: str) -> Registry:
    return get_plugins().registry(kind)


def get(kind: str, name: str) -> Any:
    return get_plugins().get(kind, name)
