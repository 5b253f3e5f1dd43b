"""PNG figures for plugins and benchmarks: a blank figure, an atomic save, a training curve.

Figures are :class:`matplotlib.figure.Figure` objects made without ``pyplot``, so drawing
neither switches the caller's matplotlib backend nor leaves figures open in pyplot's
global state. PNGs are written through :func:`polydiff.checkpoint.atomic_write_bytes`
(temporary file, fsync, rename): a reader never sees a half-written picture.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

__all__ = ["figure", "save_figure", "training_curve"]


def figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (4.5, 3.0), squeeze: bool = True):
    """``(fig, axes)`` like ``pyplot.subplots`` (``figsize`` in inches), but detached from pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save_figure(fig, path: str | Path, *, dpi: int = 90) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parents created) atomically; returns the path."""
    from .checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def training_curve(
    losses: Sequence[tuple[int, float]],
    path: str | Path,
    *,
    title: str = "",
    ylabel: str = "training loss",
    dpi: int = 90,
) -> Path:
    """A training-curve PNG from ``[(step, loss), …]``: loss on a log axis against the
    optimiser step (an empty list gives empty axes); returns the path."""
    fig, ax = figure(figsize=(4.5, 3.0))
    points = [(s, v) for s, v in losses]
    if points:
        steps, values = zip(*points)
        ax.plot(steps, values)
        if min(values) > 0:
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)
