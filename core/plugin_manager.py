"""The plugin manager: discovery through entry points, registries filled through hooks.

Built-in plugins (``polydiff.builtin`` and the modality plugins) are declared in
polydiff's own ``pyproject.toml`` under the entry-point group ``polydiff`` and loaded by
exactly the same code as third-party plugins. ``POLYDIFF_PLUGINS`` (comma-separated
entry-point names) restricts which are loaded; unset means all.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import threading
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import PluginNotFoundError, RegistryError
from .registry import KINDS, Registry

ENTRY_POINT_GROUP = "polydiff"
ALLOW_ENV = "POLYDIFF_PLUGINS"


class PolydiffPlugins:
    """A pluggy manager plus the registries its hooks fill.

    ``plugins`` maps plugin name → version (the distribution's version for entry
    points, ``"local"`` for plugins registered by hand).
    """

    def __init__(self, *, load_entrypoints: bool = True, allow: Iterable[str] | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, str] = {}
        self._registries: dict[str, Registry] | None = None
        if allow is None:
            env = os.environ.get(ALLOW_ENV, "").strip()
            allow = [a.strip() for a in env.split(",") if a.strip()] if env else None
        self.allow = None if allow is None else set(allow)
        if load_entrypoints:
            self._load_entrypoints()
        self._finish_loading()

    # -- loading ---------------------------------------------------------------
    def _load_entrypoints(self) -> None:
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if self.allow is not None and ep.name not in self.allow:
                continue
            if self.pm.get_plugin(ep.name) is not None:
                continue
            module = ep.load()
            version = ep.dist.version if ep.dist is not None else "unknown"
            self.pm.register(module, name=ep.name)
            self.plugins[ep.name] = version

    def _finish_loading(self) -> None:
        self.pm.hook.polydiff_add_hookspecs(pm=self.pm)
        self.pm.check_pending()

    def register(self, plugin: Any, name: str, version: str = "local") -> None:
        """Register a plugin object by hand (tests, notebooks); invalidates registries."""
        self.pm.register(plugin, name=name)
        self.plugins[name] = version
        self._finish_loading()
        self._registries = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.plugins.pop(name, None)
        self._registries = None

    # -- registries ------------------------------------------------------------
    @property
    def registries(self) -> dict[str, Registry]:
        if self._registries is None:
            self._registries = self._collect()
        return self._registries

    def _collect(self) -> dict[str, Registry]:
        regs = {kind: Registry(kind) for kind in KINDS}
        for hook_name, kind in hookspecs.REGISTRATION_HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            # Each implementation is called with its own ``register`` so every entry
            # knows its plugin (needed to name both sides of a duplicate).
            for impl in reversed(hook.get_hookimpls()):
                plugin_name = impl.plugin_name
                version = self.plugins.get(plugin_name, "local")

                def register(name, obj, _p=plugin_name, _v=version, _k=kind, **info):
                    regs[_k].add(name, obj, plugin=_p, version=_v, **info)

                impl.function(register=register)
        return regs

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
            if self.allow is not None:
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


def registry(kind: str) -> Registry:
    return get_plugins().registry(kind)


def get(kind: str, name: str) -> Any:
    return get_plugins().get(kind, name)
