"""Log-mel PNGs: a grid of real vs generated clips (matplotlib figures written through
:mod:`polydiff.plotting`; the training curve is :func:`polydiff.plotting.training_curve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from polydiff.plotting import figure, save_figure


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
    n_cols = min(max_cols, max(int(r[1].shape[0]) for r in rows))
    fig, axes = figure(len(rows), n_cols, figsize=(1.8 * n_cols + 0.6, 1.8 * len(rows) + 0.4), squeeze=False)
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
    return save_figure(fig, path, dpi=80)
