"""Score a distilled student against its teacher with the modality's registered metrics.

    # distil (background, one thread, resumable with --resume), then score:
    OMP_NUM_THREADS=1 .venv/bin/polydiff distill starter:image-mnist --method consistency --steps 2 \\
        --out runs/distill/image-cd2 --minutes 20 --train-steps 100000 --lr 1e-4 --n-grid 18 --checkpoint-every 200
    OMP_NUM_THREADS=1 .venv/bin/python examples/recipes/distill.py runs/distill/image-cd2 \\
        --metrics image_class_accuracy,image_fd_ours --n 500 --select image_fd_ours --select-n 200

The teacher is the one recorded in the student (``extra["distill"]["teacher"]``) and is
sampled with its own defaults (card sampler, NFE, guidance) and, for comparison, at the
student's NFE with its card sampler and guidance. ``--select METRIC`` picks the student's
grid (consistency students: [σ̃_max, …, σ̃_low, 0], Karras ρ = 7 spacing) over the lowest
intermediate σ̃_low in ``--candidates`` on calibration seed ``--select-seed`` (disjoint from
the evaluation seed) and stores the winner in the student. ``--starter NAME`` writes the
student as a shipped starter (:func:`polydiff.starters.write_starter`) with the measured
values as its check. Samples/s are wall-clock on this machine (not a test).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def timed_sample(model, n: int, **kw):
    t0 = time.perf_counter()
    out = model.sample(n, **kw)
    return out, n / (time.perf_counter() - t0)


def score(model, metrics, n, seed, **kw) -> tuple[dict, float]:
    samples, rate = timed_sample(model, n, seed=seed, **kw)
    return model.modality.evaluate(samples, metrics=metrics), rate


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("student")
    p.add_argument("--metrics", required=True, help="comma-separated registered metric names")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--select", default=None, help="metric that picks the intermediate σ̃ (lower is better)")
    p.add_argument("--select-higher", action="store_true", help="the --select metric is higher-is-better")
    p.add_argument("--select-n", type=int, default=200)
    p.add_argument("--select-seed", type=int, default=1000)
    p.add_argument("--candidates", default="0.2,0.35,0.5,0.8,1.2,1.8,2.5,4.0")
    p.add_argument("--no-teacher", action="store_true")
    p.add_argument("--starter", default=None, help="write the student as this starter (core/starter_models/NAME)")
    p.add_argument("--tolerance", default="{}", help="JSON {metric: tolerance} for --starter")
    p.add_argument("--check-n", type=int, default=100, help="samples of the starter's re-measured check")
    p.add_argument("--out", default=None, help="JSON report path (default: STUDENT/distill_report.json)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reuse-report", action="store_true", help="with --starter: take the numbers of the last run")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import polydiff
    from polydiff.distill import set_student_defaults, student_sigmas

    student = polydiff.load(args.student)
    info = student.extra["distill"]
    metrics = args.metrics.split(",")
    report: dict = {"student": args.student, "method": info["method"], "teacher": info["teacher"], "n": args.n}
    d = student.extra["sample_defaults"]
    out = Path(args.out or Path(args.student) / "distill_report.json")
    if args.reuse_report:
        report = json.loads(out.read_text())
    elif args.select and student.parts is not None:
        raise SystemExit("--select picks a σ̃ grid; a mixed-state student samples on its stored time grid")
    elif args.select:
        from polydiff.discretization import karras

        sig = student_sigmas(student).tolist()
        k = len(sig) - 1
        if k < 2:
            raise SystemExit("--select picks the intermediate σ̃ of a grid with ≥ 2 steps")
        tried, grids = {}, {}
        for low in [float(v) for v in args.candidates.split(",")]:
            grids[low] = karras(k, low, sig[0]).tolist()  # [σ̃_max, …, low, 0]
            res, _ = score(
                student,
                [args.select],
                args.select_n,
                args.select_seed,
                sampler=d["sampler"],
                sigmas=torch.tensor(grids[low], dtype=torch.float64),
            )
            tried[low] = res[args.select]
            print(f"lowest σ̃ {low}: {args.select} {res[args.select]:.4g}", flush=True)
        best = (max if args.select_higher else min)(tried, key=tried.get)
        set_student_defaults(student, info["method"], grids[best], cond=d.get("cond"))
        student.save(args.student)
        report["selection"] = {"metric": args.select, "seed": args.select_seed, "n": args.select_n, "tried": tried}
        report["selected_grid"] = grids[best]
    sig = student_sigmas(student)
    mixed = student.parts is not None  # a time grid (with restarts) under the defaults, not σ̃
    nfe = int(d["nfe"]) if mixed else len(sig) - 1
    if not args.reuse_report:
        kw = {"sampler": d["sampler"], "sigmas": sig, **({"cond": d["cond"]} if "cond" in d else {})}
        res, rate = score(student, metrics, args.n, args.seed, **({} if mixed else kw))
        grid = {"time_grid" if mixed else "sigmas": sig.tolist()}
        report["student_metrics"] = {"nfe": nfe, **grid, **res, "samples_per_s": rate}
        print("student", json.dumps(report["student_metrics"]), flush=True)
    if not args.no_teacher and not args.reuse_report:
        teacher = polydiff.load(info["teacher"])
        td = teacher.extra.get("sample_defaults") or {}
        res, rate = score(teacher, metrics, args.n, args.seed)
        report["teacher_card"] = {**td, **res, "samples_per_s": rate}
        print("teacher card", json.dumps(report["teacher_card"]), flush=True)
        low = {k: v for k, v in td.items() if k != "nfe"}
        low["sampler"] = "dpmpp_2m" if td.get("sampler") in (None, "ddpm") else td["sampler"]
        if mixed:  # the teacher's card sampler on its time grid tuned for this NFE (if stored)
            low.pop("grid", None)
        res, rate = score(teacher, metrics, args.n, args.seed, **low, nfe=nfe)
        report["teacher_at_student_nfe"] = {**low, "nfe": nfe, **res, "samples_per_s": rate}
        print("teacher at student NFE", json.dumps(report["teacher_at_student_nfe"]), flush=True)
    if args.starter:
        from polydiff.starters import write_starter

        tol = json.loads(args.tolerance)
        c = info["config"]
        cfg_note = "no CFG" if mixed else f"CFG {info['guidance_distilled']} distilled in"
        options = (
            f"--segment-steps {c['segment_steps']}" if info["method"] == "trajectory" else f"--n-grid {c['n_grid']}"
        )
        card = {
            "title": f"{args.starter} — {info['method']} distillation of {info['teacher']} to {nfe} NFE",
            "data": f"The teacher's training data (see {info['teacher']}'s card); no new data.",
            "recipe": f"`OMP_NUM_THREADS=1 polydiff distill {info['teacher']} --method {info['method']} "
            f"--steps {nfe} --lr {c['lr']} --batch-size {c['batch_size']} {options} "
            f"--minutes {(c['max_seconds'] or 0) / 60:.0f} --train-steps 100000 --out DIR` "
            f"({info['train_steps']} optimiser steps, {info['seconds']:.0f} s on one CPU thread of a shared "
            f"2-core machine; {cfg_note}), then "
            f"`examples/recipes/distill.py DIR --metrics {args.metrics} --n {report['n']}"
            + (
                f" --select {report['selection']['metric']} --candidates {args.candidates}`"
                if "selection" in report
                else "`"
            )
            + " (grid picked on calibration seed "
            f"{args.select_seed}, scored on seed {args.seed}). Bounds re-checked by the slow test "
            "`tests/core/test_distill.py::test_shipped_student_still_meets_its_bounds`.",
            "metrics_note": "Teacher vs student on this machine:\n\n```json\n" + json.dumps(report, indent=1) + "\n```",
            "limits": "A few-step student of a CPU starter: inherits the teacher's limits; quality is "
            "below the teacher's at its card NFE.",
        }
        check = write_starter(
            student, args.starter, metrics=list(tol), n=args.check_n, tolerance=tol, card=card, seed=args.seed
        )
        report["starter_check"] = check
    out.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
