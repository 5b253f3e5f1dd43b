"""Plots for the benchmark report (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def quality_vs_nfe(rows: list[dict], path: Path, higher_is_better: dict) -> Path | None:
    """One panel per (task, metric) with ≥ 2 NFE values; a line per sampler."""
    series: defaultdict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if "error" in r:
            continue
        for m, v in r["metrics"].items():
            series[(r["task"], m)][r["sampler"]].append((r["nfe"], v))
    panels = [(k, v) for k, v in series.items() if any(len(p) > 1 for p in v.values())]
    if not panels:
        return None
    plt = _plt()
    cols = min(3, len(panels))
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.2 * nrows), squeeze=False)
    for ax, ((task, metric), by_sampler) in zip(axes.flat, panels):
        for sampler, pts in sorted(by_sampler.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=sampler)
        arrows: dict[bool | None, str] = {True: "↑", False: "↓"}
        arrow = arrows.get(higher_is_better.get(metric), "")
        ax.set_title(f"{task}: {metric} {arrow}", fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("NFE")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def loss_curves(rows: list[dict], path: Path) -> Path | None:
    """Training loss vs step for every task that recorded ``losses`` ([[step, loss], …])."""
    curves: dict = {}
    for r in rows:
        if "error" not in r and r.get("losses"):
            curves.setdefault(r["task"], r["losses"])
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for task, pts in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=task)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
