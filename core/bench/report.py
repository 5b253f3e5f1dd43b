"""``report.md``: a table per modality, the starter models, where the time went, the sampler × NFE
table, timings, failures, plots."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def beats_untrained(value, untrained, data, higher_is_better) -> bool | None:
    """Whether a metric value beats its untrained (ceiling) reference.

    Directional metrics (``higher_is_better`` True/False) compare with the untrained
    value. Metrics with a target rather than a direction (``None``: radius-of-gyration
    ratio, secondary-structure shares, diversity — which pure noise maximises) beat the
    ceiling when they lie strictly nearer the ``data`` value than the untrained one does.
    ``None`` when a needed number is missing.
    """
    if value is None or untrained is None:
        return None
    if higher_is_better is True:
        return value > untrained
    if higher_is_better is False:
        return value < untrained
    if data is None:
        return None
    return abs(value - data) < abs(untrained - data)


def metric_directions() -> dict:
    """Registered metric name → ``higher_is_better`` (True, False or None)."""
    from ..plugin_manager import registry

    return {e.name: e.info.get("higher_is_better") for e in registry("metric")}


def untrained_verdicts(rows: list, higher_is_better: dict | None = None) -> tuple[int, list[str]]:
    """``(number of judged metrics, ["task/sampler/nfe: metric", …] that do not beat
    their untrained reference)`` over result rows (failed tasks and rows without
    references are skipped). Directions default to the metric registry's."""
    if higher_is_better is None:
        higher_is_better = metric_directions()
    judged, behind = 0, []
    for r in rows:
        if "error" in r:
            continue
        unt, data = r.get("reference", {}).get("untrained", {}), r.get("reference", {}).get("data", {})
        for m, v in r.get("metrics", {}).items():
            ok = beats_untrained(v, unt.get(m), data.get(m), higher_is_better.get(m))
            if ok is None:
                continue
            judged += 1
            if not ok:
                behind.append(f"{r['task']}/{r['sampler']}/{r['nfe']}: {m}")
    return judged, behind


def time_check(results: dict) -> str | None:
    """``"the suite took 812 s, over its time limit of 600 s"`` when it did, else None."""
    limit, wall = results.get("time_limit_s"), results.get("wall_s")
    if limit is None or wall is None or wall <= limit:
        return None
    return f"the suite took {wall:.0f} s, over its time limit of {limit:.0f} s"


def render(results: dict, higher_is_better: dict, out_dir: Path, images: list[Path]) -> str:
    """Markdown for ``results`` (see :mod:`polydiff.bench.schema`)."""
    rows = [r for r in results["tasks"] if "error" not in r]
    failed = [r for r in results["tasks"] if "error" in r]
    trained = [r for r in rows if not r.get("starter")]
    starters = [r for r in rows if r.get("starter")]
    lines = _header(results)
    by_mod = defaultdict(list)
    for r in trained:
        by_mod[r["modality"]].append(r)
    for mod, mrows in sorted(by_mod.items()):
        lines += [f"## {mod}", ""] + _metric_table(mrows, higher_is_better) + [""]
    if starters:
        lines += _starter_section(starters, higher_is_better)
    lines += _time_section(results)
    if rows:
        lines += _timing_table(rows)
    study = results.get("sampler_study")
    if study:
        lines += sampler_table(study)
    if failed:
        lines += ["## Failed tasks", ""]
        for r in failed:
            lines.append(f"- `{r['task']}`: {r['error'].splitlines()[0] if r['error'] else 'error'}")
        lines.append("")
    if images:
        lines += ["## Plots and samples", ""]
        for p in images:
            rel = Path(p).relative_to(out_dir) if Path(p).is_absolute() else Path(p)
            lines.append(f"![{rel}]({rel})")
        lines.append("")
    return "\n".join(lines)


def _header(results: dict) -> list[str]:
    load = ""
    if results.get("load_avg_start") and results.get("load_avg_end"):
        load = (
            f" · load average (1/5/15 min) {'/'.join(f'{x:g}' for x in results['load_avg_start'])} at the start, "
            f"{'/'.join(f'{x:g}' for x in results['load_avg_end'])} at the end"
            + (f" on {results['cores']} cores" if results.get("cores") else "")
        )
    lines = [
        f"# polydiff benchmark — suite `{results['suite']}`",
        "",
        f"polydiff {results['polydiff_version']} · device `{results['device']}` · started {results['started']}"
        + (f" · wall time {results['wall_s']:.0f} s" if "wall_s" in results else "")
        + (f" (suite limit {results['time_limit_s']:.0f} s)" if "time_limit_s" in results else "")
        + (
            f" · {results['jobs']} tasks at a time, {results.get('threads_per_task', '?')} torch thread(s) each "
            "(timings are per task under that sharing)"
            if results.get("jobs", 1) > 1
            else ""
        )
        + load,
        "",
    ]
    over = time_check(results)
    if over:
        lines += [f"**Over time: {over}** (see *Suite time* below for the longest tasks).", ""]
    lines += [
        "Arrows give the better direction (↑ higher, ↓ lower). `data` is the real-vs-real row "
        "(the floor), `untrained` the untrained-model/noise row (the ceiling); a ✓ marks a "
        "metric that beats its untrained reference (for metrics without an arrow: lies nearer "
        "the data row than the untrained one).",
        "",
    ]
    return lines


def _metric_table(rows: list, higher_is_better: dict) -> list[str]:
    """One table: each task's rows followed by its ``data`` and ``untrained`` reference rows."""
    metrics = sorted({m for r in rows for m in r["metrics"]})
    arrows: dict[bool | None, str] = {True: "↑", False: "↓"}
    head = ["task", "model", "sampler", "NFE"] + [f"{m} {arrows.get(higher_is_better.get(m), '')}" for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_task = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    for task, trows in by_task.items():
        for r in trows:
            cells = [r["task"], r["model"], r["sampler"], str(r["nfe"])]
            for m in metrics:
                v = r["metrics"].get(m)
                ref = r["reference"]
                ok = beats_untrained(
                    v, ref.get("untrained", {}).get(m), ref.get("data", {}).get(m), higher_is_better.get(m)
                )
                cells.append(_fmt(v) + ("" if ok is None else (" ✓" if ok else " ✗")))
            lines.append("| " + " | ".join(cells) + " |")
        for ref in ("data", "untrained"):
            if ref in trows[0]["reference"]:
                vals = trows[0]["reference"][ref]
                lines.append(
                    "| " + " | ".join([task, f"*{ref}*", "", ""] + [_fmt(vals.get(m)) for m in metrics]) + " |"
                )
    return lines


def _starter_section(rows: list, higher_is_better: dict) -> list[str]:
    lines = [
        "## Starter models (shipped, not trained here)",
        "",
        'The checkpoints in `polydiff/starter_models/` (`polydiff.load("starter:<name>")`), each '
        "sampled with its model card's defaults and scored with its modality's metrics beside "
        "its own `data` and `untrained` rows (the untrained row: the same network, freshly "
        "initialised). What the package does out of the box, next to the minutes-old models above.",
        "",
    ]
    by_mod = defaultdict(list)
    for r in rows:
        by_mod[r["modality"]].append(r)
    for mod, mrows in sorted(by_mod.items()):
        lines += [f"### {mod}", ""] + _metric_table(mrows, higher_is_better) + [""]
        for r in mrows:
            if r.get("note"):
                lines += [f"*{r['task']}*: {r['note']}", ""]
    return lines


def _time_section(results: dict) -> list[str]:
    """Where the suite's time went: wall vs limit, the load, each task's wall, CPU and phases."""
    times = sorted(results.get("task_times") or [], key=lambda t: -t.get("wall_s", 0.0))
    if "wall_s" not in results or not times:
        return []
    limit = results.get("time_limit_s")
    verdict = time_check(results)
    lines = [
        "## Suite time",
        "",
        f"{results['wall_s']:.0f} s"
        + (f" against a limit of {limit:.0f} s: " + ("**over**" if verdict else "within") if limit else "")
        + ". Tasks, longest first (wall seconds while sharing the machine; CPU seconds are the "
        "task process's own work; phases as the task reported them; *reused*: finished in an "
        "earlier run of this folder, not re-run):",
        "",
        "| task | wall s | CPU s | phases (wall s) |",
        "|---|---|---|---|",
    ]
    for t in times:
        phases = " · ".join(f"{k} {v:.0f}" for k, v in sorted(t.get("phases", {}).items(), key=lambda kv: -kv[1]))
        lines.append(
            f"| {t['task']}{' (reused)' if t.get('reused') else ''} | {_fmt(t.get('wall_s'))} | "
            f"{_fmt(t.get('cpu_s'))} | {phases} |"
        )
    lines.append("")
    return lines


def _timing_table(rows: list) -> list[str]:
    lines = [
        "## Timings",
        "",
        "| task | sampler | NFE | train s | train steps/s | samples/s | peak MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["timing"]
        lines.append(
            f"| {r['task']} | {r['sampler']} | {r['nfe']} | {_fmt(t.get('train_s'))} | "
            f"{_fmt(t.get('train_steps_per_s'))} | {_fmt(t.get('samples_per_s'))} | "
            f"{_fmt(t.get('peak_mem_mb'))} |"
        )
    lines.append("")
    return lines


def _study_headline(summary: dict) -> list[str]:
    """Best of polydiff (tuned grids included) vs best of diffusers (any scheduler and
    spacing) per problem and NFE, and the NFE each needs for the study's RMSE targets."""
    best = [
        (prob, key, e)
        for prob, entry in sorted(summary.items())
        if isinstance(entry, dict)
        for key, e in entry.items()
        if key.startswith("nfe") and key[3:].isdigit() and e.get("rmse_ratio") is not None
    ]
    if not best:
        return []
    lines = [
        "| problem | NFE | polydiff best | RMSE | diffusers best | RMSE | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for prob, key, e in sorted(best, key=lambda t: (t[0], int(t[1][3:]))):
        o, t = e["best_ours"], e["best_diffusers"]
        lines.append(
            f"| {prob} | {key[3:]} | {o['sampler']} ({o['grid']}) | {_fmt(o['rmse_to_ode'])} | "
            f"{t['sampler']} ({t['grid']}) | {_fmt(t['rmse_to_ode'])} | {e['rmse_ratio']:.2f}× |"
        )
    lines += ["", "NFE needed to reach an RMSE (least NFE of the study's budgets; – never):", ""]
    lines += ["| problem | RMSE ≤ | polydiff | diffusers |", "|---|---|---|---|"]
    for prob, entry in sorted(summary.items()):
        for target, need in (entry.get("nfe_for_target") or {}).items() if isinstance(entry, dict) else ():
            cells = []
            for src in ("polydiff", "diffusers"):
                hits = {k.split("/", 1)[1]: v for k, v in need.items() if k.startswith(src + "/")}
                k_min = min(hits.values(), default=None)
                cells.append(
                    "–" if k_min is None else f"{k_min} ({', '.join(n for n, v in hits.items() if v == k_min)})"
                )
            lines.append(f"| {prob} | {target} | {cells[0]} | {cells[1]} |")
    return lines + [""]


def sampler_table(study: dict) -> list[str]:
    """The sampler × NFE table from a sampler study (``rows``: sampler, grid, nfe, rmse, sw2…)."""
    rows = study.get("rows", [])
    if not rows:
        return []
    nfes = sorted({r["nfe"] for r in rows})
    lines = ["## Sampler × NFE (exact-score mixture)", ""] + _study_headline(study.get("summary") or {})
    for metric in ("rmse_to_ode", "sw2"):
        if not any(metric in r for r in rows):
            continue
        lines += [
            f"**{metric}** (lower is better)",
            "",
            "| problem | sampler | grid | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
            "|---|---|---|" + "---|" * len(nfes),
        ]
        keys = sorted({(r.get("problem", ""), r["sampler"], r.get("grid", "")) for r in rows})
        for key in keys:
            vals = {
                r["nfe"]: r.get(metric) for r in rows if (r.get("problem", ""), r["sampler"], r.get("grid", "")) == key
            }
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(_fmt(vals.get(n)) for n in nfes) + " |")
        lines.append("")
    return lines
