"""Named registries of components contributed by plugins.

A :class:`Registry` is filled only through the plugin manager's registration hooks
(see :mod:`polydiff.hookspecs`); each entry remembers which plugin registered it, so a
duplicate name is refused with an error naming both plugins and an unknown name with an
error listing what is installed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .errors import RegistryError

#: The kinds of component a plugin can register, in display order.
KINDS = (
    "modality",
    "schedule",
    "sampler",
    "guidance",
    "dataset",
    "metric",
    "benchmark",
    "network",
    "parameterization",
)


@dataclass(frozen=True)
class Entry:
    """One registered component.

    ``obj`` is the component (class, function or factory); ``plugin`` and ``version``
    name the plugin that registered it; ``info`` holds kind-specific metadata
    (e.g. ``higher_is_better`` for metrics, ``modality`` for datasets).
    """

    kind: str
    name: str
    obj: Any
    plugin: str
    version: str
    info: dict = field(default_factory=dict)


class Registry:
    """Name → :class:`Entry` for one kind of component."""

    def __init__(self, kind: str, hint: Callable[[str, str], str] | None = None):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._hint = hint  # (kind, name) → extra advice for an unknown name (failed plugins, allow-list)

    def add(self, name: str, obj: Any, *, plugin: str, version: str, **info) -> Entry:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"plugin {plugin!r} registered a {self.kind} with an invalid name {name!r}")
        if name in self._entries:
            other = self._entries[name]
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: by plugin {other.plugin!r} and by plugin {plugin!r}"
            )
        entry = Entry(self.kind, name, obj, plugin, version, dict(info))
        self._entries[name] = entry
        return entry

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            installed = ", ".join(sorted(self._entries)) or "(none)"
            near = difflib.get_close_matches(str(name), list(self._entries), n=1)
            extra = (f"; did you mean {near[0]!r}?" if near else "") + (
                f"; {h}" if self._hint is not None and (h := self._hint(self.kind, name)) else ""
            )
            raise RegistryError(f"unknown {self.kind} {name!r}; installed {self.kind}s: {installed}{extra}") from None

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)
