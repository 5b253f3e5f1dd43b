"""The library's documented exceptions.

Every error a user can provoke with bad input is one of these; parsers raise
:class:`InputError` naming the file, the record and the field.
"""

from __future__ import annotations


class PolydiffError(Exception):
    """Base class of every exception polydiff raises on purpose."""


class RegistryError(PolydiffError, KeyError):
    """A registry name is unknown or registered twice."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class PluginError(PolydiffError):
    """A plugin broke the contract: it failed to import, registered a component in the wrong
    form, or clashed with another plugin. The message names the plugin, the component and
    what to change."""


class PluginNotFoundError(RegistryError):
    """A checkpoint or config names a plugin that is not installed."""


class CheckpointError(PolydiffError):
    """A checkpoint is missing, corrupt, truncated, unsafe (pickle) or incompatible."""


class InputError(PolydiffError, ValueError):
    """Bad input data: names the file, the record (index or id) and the field.

    Attributes are kept so callers can count and report skips.
    """

    def __init__(self, message: str, *, file=None, record=None, field=None):
        self.file = None if file is None else str(file)
        self.record = record
        self.field = field
        where = []
        if self.file is not None:
            where.append(f"file {self.file!r}")
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class NotImplementedFeature(PolydiffError, NotImplementedError):
    """A documented feature that this installation cannot do (says so, never pretends)."""
