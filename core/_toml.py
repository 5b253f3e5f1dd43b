"""TOML reading on every supported Python: the standard :mod:`tomllib` (3.11+) or its
backport ``tomli`` (3.10, a dependency there). Use ``from polydiff._toml import tomllib``."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["tomllib"]
