"""``report.md``: a table per modality, the sampler × NFE table, timings, failures, plots."""

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


def render(results: dict, higher_is_better: dict, out_dir: Path, images: list[Path]) -> str:
    """Markdown for ``results`` (see :mod:`polydiff.bench.schema`)."""
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
        ),
        "",
    ]
    rows = [r for r in results["tasks"] if "error" not in r]
    failed = [r for r in results["tasks"] if "error" in r]
    by_mod = defaultdict(list)
    for r in rows:
        by_mod[r["modality"]].append(r)
    lines += [
        "Arrows give the better direction (↑ higher, ↓ lower). `data` is the real-vs-real row "
        "(the floor), `untrained` the untrained-model/noise row (the ceiling); a ✓ marks a "
        "metric that beats its untrained reference (for metrics without an arrow: lies nearer "
        "the data row than the untrained one).",
        "",
    ]
    for mod, mrows in sorted(by_mod.items()):
        metrics = sorted({m for r in mrows for m in r["metrics"]})
        lines += [f"## {mod}", ""]
        head = ["task", "model", "sampler", "NFE"] + [
            f"{m} {dict(((True, '↑'), (False, '↓'))).get(higher_is_better.get(m), '')}" for m in metrics
        ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in mrows:
            cells = [r["task"], r["model"], r["sampler"], str(r["nfe"])]
            for m in metrics:
                v = r["metrics"].get(m)
                ok = beats_untrained(
                    v,
                    r["reference"].get("untrained", {}).get(m),
                    r["reference"].get("data", {}).get(m),
                    higher_is_better.get(m),
                )
                mark = "" if ok is None else (" ✓" if ok else " ✗")
                cells.append(_fmt(v) + mark)
            lines.append("| " + " | ".join(cells) + " |")
        for ref in ("data", "untrained"):
            r0 = mrows[0]
            if ref in r0["reference"]:
                cells = [r0["task"], f"*{ref}*", "", ""] + [_fmt(r0["reference"][ref].get(m)) for m in metrics]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if rows:
        lines += [
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


def sampler_table(study: dict) -> list[str]:
    """The sampler × NFE table from a sampler study (``rows``: sampler, grid, nfe, rmse, sw2…)."""
    rows = study.get("rows", [])
    if not rows:
        return []
    nfes = sorted({r["nfe"] for r in rows})
    lines = ["## Sampler × NFE (exact-score mixture)", ""]
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
