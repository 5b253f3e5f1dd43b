"""Where polydiff keeps files it derives and can always rebuild (perceived QM9 bonds,
reference SMILES sets, trained metric networks): ``$POLYDIFF_CACHE``, by default
``~/.cache/polydiff``. Deleting it costs only the time to rebuild."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$POLYDIFF_CACHE`` (default ``~/.cache/polydiff``); read on every call, so a test
    or a user may point it elsewhere at any time."""
    return Path(os.environ.get("POLYDIFF_CACHE", Path.home() / ".cache" / "polydiff"))
