"""Log-mel PNGs: a grid of real vs generated clips (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def plot_log_mels(
    rows: Sequence[tuple[str, torch.Tensor, Sequence[str] | None]],
    path: str | Path,
    *,
    sample_rate: int = 16000,
    hop_length: int = 256,
    max_cols: int = 8,
) -> Path:
    """Write a PNG with one row per ``(row_title, log_mel [B, n_mels, T], titles)``.

    Colour = natural-log mel power (shared scale), x = seconds, y = mel band.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = min(max_cols, max(int(r[1].shape[0]) for r in rows))
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.8 * n_cols + 0.6, 1.8 * len(rows) + 0.4), squeeze=False)
    vmin = min(float(r[1].min()) for r in rows)
    vmax = max(float(r[1].max()) for r in rows)
    for i, (name, mels, titles) in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= mels.shape[0]:
                ax.axis("off")
                continue
            m = mels[j].detach().cpu().float().numpy()
            ax.imshow(
                m,
                origin="lower",
                aspect="auto",
                vmin=vmin,
                vmax=vmax,
                cmap="magma",
                extent=(0, m.shape[1] * hop_length / sample_rate, 0, m.shape[0]),
            )
            if titles is not None:
                ax.set_title(str(titles[j]), fontsize=7)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_curve(
    points: Sequence[tuple[int, float]], path: str | Path, *, title: str = "training loss", ylabel: str = "loss"
) -> Path:
    """A training curve PNG from ``(step, value)`` pairs (log y axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3))
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys)
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
