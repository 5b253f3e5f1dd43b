"""Deferred imports for plugin packages: public names served from submodules on first use.

``import polydiff`` loads every installed plugin package (the plugin manager registers
each entry point), so a plugin's ``__init__`` must stay light. Every built-in plugin
follows one pattern, and third-party plugins may copy it:

- the package ``__init__`` imports only :mod:`polydiff.hookspecs` and this module;
- each registration hook imports the submodules it registers from inside its body (hooks
  run once, when a registry is first used);
- optional third-party libraries (RDKit, e3nn, Biopython, Pillow, soundfile, torchaudio,
  matplotlib, scikit-learn) are imported inside the functions that need them;
- the package's public names (``polydiff.plugins.audio.write_wav``, …) come from
  :func:`lazy_exports`: a PEP 562 module ``__getattr__`` that imports the submodule
  defining the name on first access.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Callable, Mapping, Sequence

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: Mapping[str, Sequence[str]]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for module ``package``.

    ``homes`` maps each submodule (relative to ``package``) to the public names it defines.
    The first access to a name imports its submodule and caches the value in the package
    namespace; an unknown name raises ``AttributeError`` listing the public ones.
    """
    home = {name: module for module, names in homes.items() for name in names}
    public = list(home)

    def __getattr__(name: str):
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}; public names: {', '.join(public)}")
        value = getattr(import_module(f"{package}.{home[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__, public
