"""The plugin's benchmark tasks on the smoke budget (check ``benchmark``).

A task runs with ``BenchContext(suite="smoke", device=cpu, seed=0)``: ``ctx.budget(quick,
standard, gpu, smoke)`` picks its ``smoke`` value (``quick`` when it has none). By default
only tasks registered for the ``smoke`` suite run (a task promises a small smoke budget by
listing it); ``benchmarks="all"`` runs every task (its quick budget when it has no smoke
one: minutes for the built-ins). Rows must be what :func:`polydiff.bench.make_row` builds:
registered metric names with finite values and existing files.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .modality import describe
from .report import ConformanceReport

ROW_KEYS = ("task", "modality", "model", "sampler", "nfe", "seed", "metrics", "reference", "timing", "files")


def check_benchmarks(plugin: str, rep: ConformanceReport, tmp: Path, which: str = "smoke") -> None:
    from polydiff.bench.task import BenchContext
    from polydiff.plugin_manager import registry

    tasks = [e for e in registry("benchmark") if e.plugin == plugin]
    if not tasks:
        rep.skipped.append(("benchmark", f"plugin {plugin!r}", "the plugin registers no benchmark task"))
        return
    metrics = registry("metric")
    for e in tasks:
        comp = f"benchmark {e.name!r}"
        suites = list(e.info.get("suites", getattr(e.obj, "suites", ())))
        if which != "all" and "smoke" not in suites:
            rep.skipped.append(("benchmark", comp, "not registered for the 'smoke' suite (pass benchmarks='all')"))
            continue
        out = tmp / "bench" / e.name.replace("/", "_")
        out.mkdir(parents=True, exist_ok=True)
        ctx = BenchContext(suite="smoke", device=torch.device("cpu"), seed=0, out_dir=out, progress=False)
        fix = "task.run(ctx) must return a list of rows made by polydiff.bench.make_row(...)"
        try:
            rows = e.obj.run(ctx)
        except Exception as err:
            rep.add("benchmark", comp, f"run(ctx) on the smoke suite raised {describe(err)}", fix)
            continue
        problems = _row_problems(rows, e.obj, metrics)
        if problems:
            rep.add("benchmark", comp, "; ".join(problems[:4]), fix + " with registered metric names and real files")
        else:
            rep.passed.append(("benchmark", comp))


def _row_problems(rows, task, metrics) -> list[str]:
    if not isinstance(rows, list) or not rows:
        return [f"run(ctx) returned {type(rows).__name__} {rows!r:.80}, not a non-empty list of rows"]
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            out.append(f"row {i} is a {type(row).__name__}")
            continue
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            out.append(f"row {i} lacks {missing}")
            continue
        if row["modality"] != getattr(task, "modality", row["modality"]):
            out.append(f"row {i} has modality {row['modality']!r}, the task {task.modality!r}")
        for m, v in row["metrics"].items():
            if m not in metrics:
                out.append(f"row {i}: metric {m!r} is not registered")
            elif not (isinstance(v, float) and math.isfinite(v)):
                out.append(f"row {i}: metric {m!r} = {v!r} is not a finite float")
        out += [f"row {i}: file {f} does not exist" for f in row["files"] if not Path(f).exists()]
    return out
