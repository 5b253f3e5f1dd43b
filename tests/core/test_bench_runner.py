"""`polydiff bench`: suites, results schema, report, resume after a kill, failures recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from polydiff.bench.schema import SchemaError, validate_results

SUITE = """
name = "smoke-test"
budget = "smoke"
tasks = ["pointcloud/*"]
"""


def _bench(tmp_path, *extra, timeout=900, suite=SUITE):
    suite_text, suite = suite, tmp_path / "smoke.toml"
    suite.write_text(suite_text)
    cmd = [
        sys.executable,
        "-m",
        "polydiff.cli",
        "bench",
        "--suite",
        str(suite),
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_suite_writes_valid_results_report_and_plots(tmp_path):
    proc = _bench(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    res = json.loads((out / "results.json").read_text())
    validate_results(res)
    assert res["suite"] == "smoke-test" and res["device"] == "cpu"
    tasks = {r["task"] for r in res["tasks"]}
    assert tasks == {"pointcloud/rings", "pointcloud/rings8"}
    row = res["tasks"][0]
    assert row["timing"]["peak_mem_mb"] > 10 and row["timing"]["train_s"] > 0
    assert set(row["reference"]) >= {"data", "untrained"}
    report = (out / "report.md").read_text()
    assert "## pointcloud" in report and "ring_error ↓" in report and "## Timings" in report
    assert list((out / "tasks").glob("*/*.png")) and (out / "training_loss.png").exists()
    # where the time went: every task's wall and CPU seconds and its phases, the load average
    times = {t["task"]: t for t in res["task_times"]}
    assert set(times) == tasks and not any(t["reused"] for t in times.values())
    for t in times.values():
        assert {"data", "reference", "train", "sample"} <= set(t["phases"]), t
        assert 0 < sum(t["phases"].values()) <= t["wall_s"] and t["cpu_s"] > 0
    assert len(res["load_avg_start"]) == 3 and len(res["load_avg_end"]) == 3 and res["cores"] >= 1
    assert "## Suite time" in report and "load average" in report
    # re-running skips finished tasks (their result files are not rewritten)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "tasks").glob("*/result.json")}
    proc = _bench(tmp_path)
    assert proc.returncode == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert all(t["reused"] for t in json.loads((out / "results.json").read_text())["task_times"])
    # --force re-runs them
    proc = _bench(tmp_path, "--force")
    assert proc.returncode == 0
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items())


def test_parallel_jobs_run_every_task_once_and_record_the_sharing(tmp_path):
    proc = _bench(tmp_path, "--jobs", "2", suite=SUITE + "time_limit_s = 1\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    res = json.loads((out / "results.json").read_text())
    validate_results(res)
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert res["jobs"] == 2 and res["threads_per_task"] == threads
    assert [r["task"] for r in res["tasks"]] == ["pointcloud/rings", "pointcloud/rings8"]  # registry order
    assert all(r["timing"]["torch_threads"] == threads for r in res["tasks"])
    assert "2 tasks at a time" in (out / "report.md").read_text()
    assert "done (" in proc.stdout + proc.stderr  # one line per finished task instead of interleaved child bars
    assert "over its time limit of 1 s" in proc.stderr and "(suite limit 1 s)" in (out / "report.md").read_text()


def test_failing_task_is_recorded_and_suite_continues(tmp_path):
    proc = _bench(tmp_path, "--samplers", "no_such_sampler")
    assert proc.returncode == 1
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    validate_results(res)
    assert len(res["tasks"]) == 2 and all("no_such_sampler" in r["error"] for r in res["tasks"])
    assert "## Failed tasks" in (tmp_path / "out" / "report.md").read_text()


def test_killed_suite_resumes_without_redoing_finished_tasks(tmp_path):
    suite = tmp_path / "smoke.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "polydiff.cli",
        "bench",
        "--suite",
        str(suite),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    first = None
    while time.time() < deadline and first is None:
        done = list((out / "tasks").glob("*/result.json")) if (out / "tasks").exists() else []
        first = done[0] if done else None
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first is not None, "no task finished before the deadline"
    assert not (out / "results.json").exists()
    stamp = first.stat().st_mtime_ns
    proc = _bench(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert first.stat().st_mtime_ns == stamp
    assert len(json.loads((out / "results.json").read_text())["tasks"]) == 2


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda r: r.pop("suite"), "missing field 'suite'"),
        (lambda r: r["tasks"][0].pop("reference"), "reference"),
        (lambda r: r["tasks"][0]["metrics"].update(acc="high"), "metrics.acc"),
        (lambda r: r["tasks"][0]["reference"].pop("untrained"), "untrained"),
        (lambda r: r["tasks"][0].update(nfe=True), "nfe"),
    ],
)
def test_schema_rejects_malformed_results(mutate, where):
    res = {
        "polydiff_version": "0",
        "suite": "q",
        "device": "cpu",
        "started": "2026-01-01T00:00:00+00:00",
        "tasks": [
            {
                "task": "t",
                "modality": "m",
                "model": "n",
                "sampler": "euler",
                "nfe": 10,
                "seed": 0,
                "metrics": {"acc": 0.9},
                "reference": {"data": {"acc": 1.0}, "untrained": {"acc": 0.1}},
                "timing": {"train_s": 1.0},
            }
        ],
    }
    validate_results(res)
    mutate(res)
    with pytest.raises(SchemaError, match=where):
        validate_results(res)


def test_unknown_suite_lists_suites(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "polydiff.cli", "bench", "--suite", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "quick" in proc.stderr and "samplers" in proc.stderr


def test_context_reports_phases_and_steps_to_its_progress_file(tmp_path):
    from polydiff.bench.runner import _status
    from polydiff.bench.task import BenchContext, progress_text, read_progress

    task_dir = tmp_path / "tasks" / "m_q"
    task_dir.mkdir(parents=True)
    ctx = BenchContext(suite="quick", device=None, seed=0, out_dir=task_dir, progress_path=task_dir / "progress.json")
    assert read_progress(task_dir) is None and progress_text(None) == ""
    ctx.phase("reference")
    assert progress_text(read_progress(task_dir)) == "reference"
    ctx.phase("train", total=2400)
    cb = ctx.train_callback(2400)
    ctx._written = 0.0  # the next report is due
    cb(1199, 0.5)  # 0-based step 1199 = 1,200 done
    assert progress_text(read_progress(task_dir)) == "train 1200/2400"
    cb(1200, 0.5)  # within PROGRESS_EVERY_S of the last write: not written yet
    assert read_progress(task_dir)["step"] == 1200
    ctx.phase("sample")
    sample_cb = ctx.sample_callback("ddpm", 100)
    ctx._written = 0.0
    sample_cb(9, 1.0, None, None)
    assert progress_text(read_progress(task_dir)) == "sample 10/100"
    mixed_cb = ctx.sample_callback("ancestral", 20)  # a mixed state's sampler: one evaluation per step
    ctx._written = 0.0
    mixed_cb(19, 0.0, None, None)
    assert progress_text(read_progress(task_dir)) == "sample 20/20"
    ctx._written = 0.0
    sample_cb(9, 1.0, None, None)
    line = _status({"m/q": time.perf_counter() - 5}, tmp_path)
    assert line.startswith("m/q sample 10/100 · ") and line.endswith(" s")
    ctx.end_phase()
    assert set(ctx.phases) == {"reference", "train", "sample"} and all(v >= 0 for v in ctx.phases.values())
    # a phase entered twice adds up
    before = ctx.phases["train"]
    ctx.phase("train", total=1)
    ctx.end_phase()
    assert ctx.phases["train"] >= before


def test_report_names_the_overrun_and_the_longest_tasks(tmp_path):
    from polydiff.bench.report import render, time_check

    res = {
        "polydiff_version": "0",
        "suite": "q",
        "device": "cpu",
        "started": "2026-01-01T00:00:00+00:00",
        "wall_s": 812.0,
        "time_limit_s": 600.0,
        "load_avg_start": [2.5, 2.0, 1.0],
        "load_avg_end": [3.0, 2.5, 1.5],
        "cores": 2,
        "tasks": [],
        "task_times": [
            {"task": "p/d", "wall_s": 594.0, "cpu_s": 300.0, "phases": {"train": 500.0, "sample": 80.0}},
            {"task": "m/q", "wall_s": 706.0, "cpu_s": 400.0, "phases": {"train": 600.0}, "reused": False},
        ],
    }
    validate_results(res)
    assert time_check(res) == "the suite took 812 s, over its time limit of 600 s"
    md = render(res, {}, tmp_path, [])
    assert "**Over time: the suite took 812 s" in md and "load average (1/5/15 min) 2.5/2/1 at the start" in md
    section = md[md.index("## Suite time") :]
    assert section.index("| m/q |") < section.index("| p/d |")  # longest first
    assert "train 500 · sample 80" in section
    res["wall_s"] = 500.0
    assert time_check(res) is None and "Over time" not in render(res, {}, tmp_path, [])
    res["load_avg_end"] = [1.0]
    with pytest.raises(SchemaError, match="load_avg_end"):
        validate_results(res)


def test_untrained_verdicts_directional_and_target_metrics():
    from polydiff.bench.report import beats_untrained, untrained_verdicts

    assert beats_untrained(0.9, 0.1, 1.0, True) and not beats_untrained(0.1, 0.9, 1.0, True)
    assert beats_untrained(0.1, 0.9, 0.0, False) and not beats_untrained(0.1, 0.1, 0.0, False)
    # no direction: nearer the data row than the untrained row (noise maximises diversity)
    assert beats_untrained(11.0, 30.0, 10.8, None) and not beats_untrained(35.0, 30.0, 10.8, None)
    assert beats_untrained(1.2, 2.5, 1.3, None) and beats_untrained(0.2, 2.5, 1.3, None)
    assert beats_untrained(1.0, None, 1.0, True) is None and beats_untrained(1.0, 2.0, None, None) is None
    rows = [
        {
            "task": "t",
            "sampler": "euler",
            "nfe": 5,
            "metrics": {"acc": 0.9, "rg": 3.0, "new": 1.0},
            "reference": {"data": {"acc": 1.0, "rg": 1.0}, "untrained": {"acc": 0.1, "rg": 2.0}},
        },
        {"task": "u", "error": "boom"},
    ]
    judged, behind = untrained_verdicts(rows, {"acc": True, "rg": None, "new": True})
    assert judged == 2 and behind == ["t/euler/5: rg"]
