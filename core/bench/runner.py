"""``polydiff bench``: run a suite of benchmark tasks contributed by plugins.

Each task runs in its own child process (isolation, honest peak memory, and a crash or
kill loses only that task). On CPU, ``jobs`` > 1 runs that many tasks at once, each with
cores/jobs torch threads, longest first (``BenchmarkTask.expected_s``): small networks
gain little from a second intra-op thread, so two single-threaded tasks side by side
finish a suite sooner than one two-threaded task after another. A finished task leaves
``tasks/<slug>/result.json`` (written atomically), so a re-run skips it unless
``--force``; a failing task is recorded with its error and the suite goes on. At the end
``results.json``, ``report.md`` and the plots are (re)written from all task results.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import fnmatch
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from .._toml import tomllib
from ..checkpoint import atomic_write_json
from .task import PROGRESS_FILE, progress_text, read_progress

SUITE_ENV = "POLYDIFF_BENCHMARKS"


def suite_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(SUITE_ENV):
        dirs.append(Path(os.environ[SUITE_ENV]))
    dirs.append(Path(__file__).resolve().parents[2] / "benchmarks")  # the repository's benchmarks/
    return dirs


def load_suite(name_or_path: str) -> dict:
    """A suite by name (``benchmarks/<name>.toml``) or by path to a TOML file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.exists():
        return {"path": str(p), **tomllib.loads(p.read_text())}
    known = []
    for d in suite_dirs():
        f = d / f"{name_or_path}.toml"
        if f.exists():
            return {"path": str(f), **tomllib.loads(f.read_text())}
        known += sorted(x.stem for x in d.glob("*.toml"))
    raise SystemExit(f"unknown suite {name_or_path!r}; suites: {', '.join(sorted(set(known))) or '(none found)'}")


def slug(task: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task)


def select_tasks(suite: dict, modality: str | None) -> list:
    from ..plugin_manager import registry

    patterns = suite.get("tasks", ["*"])
    out = []
    for e in registry("benchmark"):
        if not any(fnmatch.fnmatch(e.name, p) for p in patterns):
            continue
        suites = e.info.get("suites") or getattr(e.obj, "suites", None)
        if suites and suite["name"] not in suites and suite.get("budget", suite["name"]) not in suites:
            continue
        mod = e.info.get("modality") or getattr(e.obj, "modality", "")
        if modality and mod not in modality.split(","):
            continue
        out.append(e)
    return out


# ----------------------------------------------------------------------------- child side
def run_child(args) -> int:
    """Run one task in this process and write its ``result.json`` (rows, wall and CPU
    seconds, the wall seconds of each phase the task reported)."""
    import resource

    import torch

    from ..model import resolve_device
    from ..plugin_manager import registry
    from .task import PROGRESS_FILE, BenchContext

    task_dir = Path(args.task_dir)
    task_dir.mkdir(parents=True, exist_ok=True)
    task = registry("benchmark").entry(args.child).obj
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ctx = BenchContext(
        suite=args.budget,
        device=device,
        seed=args.seed,
        out_dir=task_dir,
        samplers=args.samplers.split(",") if args.samplers else None,
        nfe=[int(n) for n in args.nfe.split(",")] if args.nfe else None,
        progress=not args.no_progress,
        progress_path=task_dir / PROGRESS_FILE,
    )
    t0 = time.perf_counter()

    def times() -> dict:
        ctx.end_phase()
        use = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "wall_s": time.perf_counter() - t0,
            "cpu_s": use.ru_utime + use.ru_stime,
            "phases": ctx.phases,
            "phases_cpu": ctx.phases_cpu,
        }

    try:
        rows = task.run(ctx)
        if not rows:
            raise RuntimeError(f"task {task.name} returned no rows")
    except Exception:
        atomic_write_json({"error": traceback.format_exc(), **times()}, task_dir / "result.json")
        return 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB → MB
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    for r in rows:
        r["timing"].setdefault("peak_mem_mb", peak)
        r["timing"].setdefault("torch_threads", torch.get_num_threads())
    atomic_write_json({"rows": rows, **times()}, task_dir / "result.json")
    return 0


# ----------------------------------------------------------------------------- parent side
def _child_command(entry, suite, args, task_dir: Path) -> tuple[list[str], dict | None]:
    cmd = [sys.executable, "-m", "polydiff.bench.runner", "--child", entry.name, "--task-dir", str(task_dir)]
    cmd += ["--budget", suite.get("budget", suite["name"]), "--device", args.device_resolved, "--seed", str(args.seed)]
    samplers = args.samplers or (",".join(suite["samplers"]) if suite.get("samplers") else None)
    nfe = args.nfe or (",".join(str(n) for n in suite["nfe"]) if suite.get("nfe") else None)
    if samplers:
        cmd += ["--samplers", samplers]
    if nfe:
        cmd += ["--nfe", nfe]
    if args.no_progress or args.jobs_resolved > 1:  # parallel children would garble each other's bars
        cmd.append("--no-progress")
    env = None
    if args.threads_per_task:
        cmd += ["--threads", str(args.threads_per_task)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads_per_task)}
    return cmd, env


def _spawn(entry, suite, args, task_dir: Path) -> dict:
    """Run ``entry`` in a child process; its ``result.json`` (or the failure)."""
    cmd, env = _child_command(entry, suite, args, task_dir)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=env)
    res_path = task_dir / "result.json"
    if res_path.exists():
        return json.loads(res_path.read_text())
    return {
        "error": f"task process exited with code {proc.returncode} and wrote no result",
        "wall_s": time.perf_counter() - t0,
    }


def _run_one(entry, suite, args, out: Path) -> dict:
    """A finished task's stored result (``reused``), else a fresh run (a failed one is retried)."""
    task_dir = out / "tasks" / slug(entry.name)
    res_path = task_dir / "result.json"
    if res_path.exists() and not args.force:
        res = json.loads(res_path.read_text())
        if "error" not in res:
            return {**res, "reused": True}
    if res_path.exists():
        res_path.unlink()
    (task_dir / PROGRESS_FILE).unlink(missing_ok=True)
    return _spawn(entry, suite, args, task_dir)


def _status(running: dict[str, float], out: Path) -> str:
    """``"molecule/qm9 train 1200/2400 · 212 s, …"`` from the running tasks' progress files."""
    now, parts = time.perf_counter(), []
    for name, t in list(running.items()):
        phase = progress_text(read_progress(out / "tasks" / slug(name)))
        parts.append(f"{name} {phase + ' · ' if phase else ''}{now - t:.0f} s")
    return ", ".join(parts)


def _run_tasks(entries, suite, args, out: Path) -> dict[str, dict]:
    """Run the tasks, ``jobs`` at a time, longest first; name → result. With ``jobs`` > 1
    the bar's line shows each running task's phase and step (children run without bars)."""
    from tqdm.auto import tqdm

    jobs = args.jobs_resolved
    order = sorted(entries, key=lambda e: -float(getattr(e.obj, "expected_s", 0.0) or 0.0)) if jobs > 1 else entries
    bar = tqdm(total=len(entries), desc=f"bench {suite['name']}", unit="task", disable=args.no_progress)
    if jobs > 1:
        tqdm.write(f"{len(order)} tasks, {jobs} at a time, {args.threads_per_task} torch thread(s) each")
    done: dict[str, dict] = {}
    running: dict[str, float] = {}

    def timed(entry) -> dict:
        running[entry.name] = time.perf_counter()
        if jobs == 1:
            bar.set_postfix_str(entry.name)
        return _run_one(entry, suite, args, out)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(timed, e): e for e in order}
        pending = set(futures)
        while pending:
            finished, pending = concurrent.futures.wait(
                pending, timeout=1.0, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for fut in finished:
                name = futures[fut].name
                done[name] = fut.result()
                t = running.pop(name, time.perf_counter())
                bar.update()
                if jobs > 1:
                    tqdm.write(f"task {name} done ({time.perf_counter() - t:.0f} s)")
            if jobs > 1:
                bar.set_postfix_str(_status(running, out), refresh=True)
    bar.close()
    return done


def _collect(entries, done: dict, out: Path, results: dict) -> list[Path]:
    """Rows (registry order, whatever order the tasks finished in), per-task times, images."""
    from tqdm.auto import tqdm

    images: list[Path] = []
    results["task_times"] = []
    for entry in entries:
        res = done[entry.name]
        task_dir = out / "tasks" / slug(entry.name)
        mod = entry.info.get("modality") or getattr(entry.obj, "modality", "")
        if "error" in res:
            results["tasks"].append({"task": entry.name, "modality": mod, "error": res["error"]})
            tqdm.write(f"task {entry.name} failed: {res['error'].strip().splitlines()[-1]}")
        else:
            results["tasks"].extend(res["rows"])
        times = {k: res[k] for k in ("wall_s", "cpu_s") if isinstance(res.get(k), (int, float))}
        for key in ("phases", "phases_cpu"):
            times[key] = {k: float(v) for k, v in (res.get(key) or {}).items()}
        results["task_times"].append({"task": entry.name, **times, "reused": bool(res.get("reused"))})
        images += sorted(task_dir.glob("*.png"))
    return images


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not available on this platform
        return None


def _setup(args, suite: dict) -> None:
    """Resolve the device, the number of tasks run at once and each one's torch threads."""
    from ..model import resolve_device

    device = args.device if args.device != "auto" else suite.get("device", "auto")
    args.device_resolved = str(resolve_device(device))
    args.no_progress = getattr(args, "no_progress", False)
    jobs = getattr(args, "jobs", None) or int(suite.get("jobs", 1))
    if jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {jobs}")
    args.jobs_resolved = 1 if args.device_resolved.startswith("cuda") else jobs
    args.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    args.threads_per_task = max(1, args.cores // args.jobs_resolved) if args.jobs_resolved > 1 else None


def _run_study(args, suite: dict, out: Path, results: dict) -> list[Path]:
    from .sampler_study import run_sampler_study

    nfe = [int(n) for n in args.nfe.split(",")] if args.nfe else suite.get("nfe", [5, 10, 20, 50])
    samplers = args.samplers.split(",") if args.samplers else None
    students = bool(suite.get("students", True))  # consistency-distilled student rows
    results["sampler_study"] = run_sampler_study(out, samplers=samplers, nfe=tuple(nfe), students=students)
    return sorted(out.glob("*.png"))


def _write_outputs(results: dict, out: Path, images: list[Path]) -> None:
    """``results.json`` (validated), the suite plots and ``report.md``."""
    from . import plots, report
    from .schema import validate_results

    validate_results(results)
    directions = report.metric_directions()
    for p in (
        plots.loss_curves(results["tasks"], out / "training_loss.png"),
        plots.quality_vs_nfe(results["tasks"], out / "quality_vs_nfe.png", directions),
    ):
        if p:
            images.insert(0, p)
    atomic_write_json(results, out / "results.json")
    (out / "report.md").write_text(
        report.render(results, directions, out.resolve(), [Path(p).resolve() for p in images])
    )


def _summary(results: dict, out: Path) -> int:
    """Print where the outputs are, the verdict line and the time check; the exit code."""
    from . import report

    n_fail = sum(1 for r in results["tasks"] if "error" in r)
    trained = [r for r in results["tasks"] if not r.get("starter")]
    starters = [r for r in results["tasks"] if r.get("starter")]
    judged, behind = report.untrained_verdicts(trained)
    print(
        f"report: {out / 'report.md'}\nresults: {out / 'results.json'}\n"
        f"{len(results['tasks']) - n_fail} rows, {n_fail} failed tasks, {results['wall_s']:.0f} s\n"
        f"{judged - len(behind)}/{judged} metrics beat their untrained reference"
        + (f"; not: {', '.join(behind)}" if behind else "")
    )
    if starters:  # shipped models, not trained here: their own line
        judged, behind = report.untrained_verdicts(starters)
        print(
            f"starters: {judged - len(behind)}/{judged} metrics beat their untrained reference"
            + (f"; not: {', '.join(behind)}" if behind else "")
        )
    over = report.time_check(results)
    if over:
        print(f"warning: {over}", file=sys.stderr)
    return 1 if n_fail else 0


def main(args) -> int:
    from .. import __version__

    suite = load_suite(args.suite)
    suite.setdefault("name", args.suite)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _setup(args, suite)
    t0 = time.perf_counter()
    results = {
        "polydiff_version": __version__,
        "suite": suite["name"],
        "device": args.device_resolved,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cores": args.cores,
        "tasks": [],
    }
    if _load_average() is not None:
        results["load_avg_start"] = _load_average()
    if suite.get("kind") == "sampler_study":
        images = _run_study(args, suite, out, results)
    else:
        entries = select_tasks(suite, args.modality)
        if not entries:
            print("no benchmark tasks selected", file=sys.stderr)
            return 2
        images = _collect(entries, _run_tasks(entries, suite, args, out), out, results)
        results["jobs"] = args.jobs_resolved
        if args.threads_per_task:
            results["threads_per_task"] = args.threads_per_task
    results["wall_s"] = time.perf_counter() - t0
    if _load_average() is not None:
        results["load_avg_end"] = _load_average()
    if suite.get("time_limit_s"):
        results["time_limit_s"] = float(suite["time_limit_s"])
    _write_outputs(results, out, images)
    return _summary(results, out)


def _child_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="polydiff.bench.runner")
    p.add_argument("--child", required=True)
    p.add_argument("--task-dir", required=True)
    p.add_argument("--budget", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samplers", default=None)
    p.add_argument("--nfe", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    return run_child(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_child_main())
