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
    """Run one task in this process and write its ``result.json``."""
    import resource

    import torch

    from ..model import resolve_device
    from ..plugin_manager import registry
    from .task import BenchContext

    task_dir = Path(args.task_dir)
    task_dir.mkdir(parents=True, exist_ok=True)
    entry = registry("benchmark").entry(args.child)
    task = entry.obj
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
    )
    t0 = time.perf_counter()
    try:
        rows = task.run(ctx)
        if not rows:
            raise RuntimeError(f"task {task.name} returned no rows")
    except Exception:
        atomic_write_json(
            {"error": traceback.format_exc(), "wall_s": time.perf_counter() - t0}, task_dir / "result.json"
        )
        return 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB → MB
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    for r in rows:
        r["timing"].setdefault("peak_mem_mb", peak)
        r["timing"].setdefault("torch_threads", torch.get_num_threads())
    atomic_write_json({"rows": rows, "wall_s": time.perf_counter() - t0}, task_dir / "result.json")
    return 0


# ----------------------------------------------------------------------------- parent side
def _spawn(entry, suite, args, task_dir: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "polydiff.bench.runner",
        "--child",
        entry.name,
        "--task-dir",
        str(task_dir),
        "--budget",
        suite.get("budget", suite["name"]),
        "--device",
        args.device_resolved,
        "--seed",
        str(args.seed),
    ]
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
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=env)
    res_path = task_dir / "result.json"
    if res_path.exists():
        return json.loads(res_path.read_text())
    return {
        "error": f"task process exited with code {proc.returncode} and wrote no result",
        "wall_s": time.perf_counter() - t0,
    }


def main(args) -> int:
    from .. import __version__
    from ..model import resolve_device
    from . import plots, report
    from .schema import validate_results

    suite = load_suite(args.suite)
    suite.setdefault("name", args.suite)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = args.device if args.device != "auto" else suite.get("device", "auto")
    args.device_resolved = str(resolve_device(device))
    args.no_progress = getattr(args, "no_progress", False)
    jobs = getattr(args, "jobs", None) or int(suite.get("jobs", 1))
    if jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {jobs}")
    args.jobs_resolved = 1 if args.device_resolved.startswith("cuda") else jobs
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    args.threads_per_task = max(1, cores // args.jobs_resolved) if args.jobs_resolved > 1 else None
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    results = {
        "polydiff_version": __version__,
        "suite": suite["name"],
        "device": args.device_resolved,
        "started": started,
        "tasks": [],
    }
    images: list[Path] = []
    if suite.get("kind") == "sampler_study":
        from .sampler_study import run_sampler_study

        nfe = [int(n) for n in args.nfe.split(",")] if args.nfe else suite.get("nfe", [5, 10, 20, 50])
        samplers = args.samplers.split(",") if args.samplers else None
        study = run_sampler_study(out, samplers=samplers, nfe=tuple(nfe))
        results["sampler_study"] = study
        images += sorted(out.glob("*.png"))
    else:
        entries = select_tasks(suite, args.modality)
        if not entries:
            print("no benchmark tasks selected", file=sys.stderr)
            return 2
        from tqdm.auto import tqdm

        def run_one(entry) -> dict:
            task_dir = out / "tasks" / slug(entry.name)
            res_path = task_dir / "result.json"
            if res_path.exists() and not args.force:
                res = json.loads(res_path.read_text())
                if "error" not in res:
                    return res
                # failed last time: try again
            elif res_path.exists():
                res_path.unlink()
            return _spawn(entry, suite, args, task_dir)

        bar = tqdm(total=len(entries), desc=f"bench {suite['name']}", unit="task", disable=args.no_progress)
        done: dict[str, dict] = {}
        if args.jobs_resolved == 1:
            for entry in entries:
                bar.set_postfix_str(entry.name)
                done[entry.name] = run_one(entry)
                bar.update()
        else:
            order = sorted(entries, key=lambda e: -float(getattr(e.obj, "expected_s", 0.0) or 0.0))
            tqdm.write(
                f"{len(order)} tasks, {args.jobs_resolved} at a time, {args.threads_per_task} torch thread(s) each"
            )
            started: dict[str, float] = {}

            def timed(entry) -> dict:
                started[entry.name] = time.perf_counter()
                return run_one(entry)

            with concurrent.futures.ThreadPoolExecutor(args.jobs_resolved) as pool:
                futures = {pool.submit(timed, e): e for e in order}
                pending = set(futures)
                while pending:
                    finished, pending = concurrent.futures.wait(
                        pending, timeout=2.0, return_when=concurrent.futures.FIRST_COMPLETED
                    )
                    for fut in finished:
                        entry = futures[fut]
                        done[entry.name] = fut.result()
                        bar.update()
                        tqdm.write(f"task {entry.name} done ({time.perf_counter() - started[entry.name]:.0f} s)")
                    now = time.perf_counter()
                    bar.set_postfix_str(
                        ", ".join(f"{n} {now - t:.0f} s" for n, t in list(started.items()) if n not in done),
                        refresh=True,
                    )
        bar.close()
        for entry in entries:  # results in registry order, whatever order they finished in
            res = done[entry.name]
            task_dir = out / "tasks" / slug(entry.name)
            mod = entry.info.get("modality") or getattr(entry.obj, "modality", "")
            if "error" in res:
                results["tasks"].append({"task": entry.name, "modality": mod, "error": res["error"]})
                tqdm.write(f"task {entry.name} failed: {res['error'].strip().splitlines()[-1]}")
            else:
                results["tasks"].extend(res["rows"])
            images += sorted(task_dir.glob("*.png"))
        results["jobs"] = args.jobs_resolved
        if args.threads_per_task:
            results["threads_per_task"] = args.threads_per_task
    results["wall_s"] = time.perf_counter() - t0
    if suite.get("time_limit_s"):
        results["time_limit_s"] = float(suite["time_limit_s"])
    validate_results(results)
    directions = report.metric_directions()
    for maker, name in ((plots.quality_vs_nfe, "quality_vs_nfe.png"), (plots.loss_curves, "training_loss.png")):
        p = (
            maker(results["tasks"], out / name, directions)
            if maker is plots.quality_vs_nfe
            else maker(results["tasks"], out / name)
        )
        if p:
            images.insert(0, p)
    atomic_write_json(results, out / "results.json")
    (out / "report.md").write_text(
        report.render(results, directions, out.resolve(), [Path(p).resolve() for p in images])
    )
    n_fail = sum(1 for r in results["tasks"] if "error" in r)
    judged, behind = report.untrained_verdicts(results["tasks"], directions)
    print(
        f"report: {out / 'report.md'}\nresults: {out / 'results.json'}\n"
        f"{len(results['tasks']) - n_fail} rows, {n_fail} failed tasks, {results['wall_s']:.0f} s\n"
        f"{judged - len(behind)}/{judged} metrics beat their untrained reference"
        + (f"; not: {', '.join(behind)}" if behind else "")
    )
    if results["wall_s"] > results.get("time_limit_s", float("inf")):
        print(
            f"warning: the suite took {results['wall_s']:.0f} s, over its time limit of "
            f"{results['time_limit_s']:.0f} s",
            file=sys.stderr,
        )
    return 1 if n_fail else 0


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
