"""The benchmark task protocol.

A plugin contributes tasks through ``polydiff_register_benchmarks``::

    @hookimpl
    def polydiff_register_benchmarks(register):
        register("molecule/qm9", BenchmarkTask(name="molecule/qm9", modality="molecule",
                                               model="egnn", run=run_qm9), modality="molecule")

``task.run(ctx)`` trains (budget from ``ctx.budget``), samples over ``ctx.samplers`` ×
``ctx.nfe`` (or the task defaults), computes registered metrics, writes samples (SDF, PDB,
WAV, PNG/GIF) and at least one PNG into ``ctx.out_dir``, and returns rows made by
:func:`make_row` — the ``tasks`` entries of ``results.json`` (schema in
``benchmarks/README.md``). Every row carries reference rows: ``data`` (real-vs-real, the
floor) and ``untrained`` (untrained model or noise, the ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch


@dataclass
class BenchContext:
    suite: str  # quick | standard | gpu | samplers | …
    device: torch.device
    seed: int
    out_dir: Path  # this task's folder for samples and plots
    samplers: Sequence[str] | None = None  # user override (--samplers)
    nfe: Sequence[int] | None = None  # user override (--nfe)
    progress: bool = True

    def budget(self, quick, standard, gpu=None, smoke=None):
        """Pick a value by suite budget (``gpu`` falls back to ``standard``, ``smoke`` — the
        runner's own tests — to ``quick``)."""
        if self.suite == "smoke" and smoke is not None:
            return smoke
        if self.suite in ("quick", "smoke"):
            return quick
        if self.suite == "gpu" and gpu is not None:
            return gpu
        return standard

    def sampler_grid(self, default_samplers: Sequence[str], default_nfe: Sequence[int]):
        """(sampler, nfe) pairs to evaluate."""
        return [(s, n) for s in (self.samplers or default_samplers) for n in (self.nfe or default_nfe)]


@dataclass
class BenchmarkTask:
    name: str
    modality: str
    model: str
    run: Callable[[BenchContext], list]
    suites: tuple = ("quick", "standard", "gpu")
    description: str = ""
    #: rough wall time (s) of the quick budget on 2 CPU cores; with ``--jobs`` > 1 the
    #: runner starts the longest tasks first (a hint for scheduling, never a limit)
    expected_s: float = 0.0


def registered_metric_names(modality: str):
    """``name → registered name``: rows must carry registered metric names (the report reads
    each metric's direction from the registry); a modality's own metric given without its
    modality prefix (``fd_ours`` for ``audio_fd_ours``) is mapped to it."""
    from ..plugin_manager import registry

    reg = registry("metric")

    def canon(name: str) -> str:
        if name in reg:
            return name
        prefixed = f"{modality}_{name}"
        return prefixed if prefixed in reg else name

    return canon


def make_row(
    task: BenchmarkTask | str,
    *,
    modality: str,
    model: str,
    sampler: str,
    nfe: int,
    seed: int,
    metrics: dict,
    reference: dict,
    timing: dict,
    files: Sequence[str | Path] = (),
    **extra,
) -> dict:
    """One ``results.json`` task row (see ``benchmarks/README.md``)."""
    name = task.name if isinstance(task, BenchmarkTask) else task
    canon = registered_metric_names(modality)
    row = {
        "task": name,
        "modality": modality,
        "model": model,
        "sampler": sampler,
        "nfe": int(nfe),
        "seed": int(seed),
        "metrics": {canon(k): float(v) for k, v in metrics.items()},
        "reference": {k: {canon(m): float(x) for m, x in v.items()} for k, v in reference.items()},
        "timing": {k: float(v) for k, v in timing.items()},
        "files": [str(f) for f in files],
    }
    row.update(extra)
    return row
