"""Pictures of backbones: Cα traces (two projections) and Cα contact maps, as PNG files
(written through :mod:`polydiff.plotting`; the training curve is
:func:`polydiff.plotting.training_curve`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polydiff.plotting import figure, save_figure

from .metrics import as_ca


def plot_traces(samples, path: str | Path, title: str = "", max_n: int = 8) -> Path:
    """Cα traces (x–y and x–z projections of the principal axes), coloured N→C; Å."""
    n = min(len(samples), max_n)
    fig, axes = figure(2, n, figsize=(2.4 * n, 4.8), squeeze=False)
    for k in range(n):
        ca = as_ca(samples[k])
        c = ca - ca.mean(0)
        _, _, vt = np.linalg.svd(c, full_matrices=False)
        p = c @ vt.T
        col = np.linspace(0, 1, len(p))
        for row, (i, j) in enumerate(((0, 1), (0, 2))):
            ax = axes[row, k]
            ax.plot(p[:, i], p[:, j], "-", color="0.7", lw=0.8)
            ax.scatter(p[:, i], p[:, j], c=col, cmap="viridis", s=6)
            ax.set_aspect("equal")
            ax.set_xticks([]), ax.set_yticks([])
        axes[0, k].set_title(f"L={len(ca)}", fontsize=8)
    fig.suptitle(title or "Cα traces (PCA projections, colour N→C)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def plot_contact_maps(samples, path: str | Path, cutoff: float = 8.0, title: str = "", max_n: int = 8) -> Path:
    """Cα contact maps (d < ``cutoff`` Å) of up to ``max_n`` structures."""
    n = min(len(samples), max_n)
    fig, axes = figure(1, n, figsize=(2.4 * n, 2.6), squeeze=False)
    for k in range(n):
        ca = as_ca(samples[k])
        d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
        axes[0, k].imshow(d < cutoff, cmap="Greys", interpolation="nearest")
        axes[0, k].set_title(f"L={len(ca)}", fontsize=8)
        axes[0, k].set_xticks([]), axes[0, k].set_yticks([])
    fig.suptitle(title or f"Cα contact maps (< {cutoff:g} Å)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
