"""The ``polydiff`` command line: plugins, train, sample, eval, bench, distill, combine-experts, tune-steps, info."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _kv(items) -> dict:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}`` (JSON values where they parse)."""
    out = {}
    for it in items or []:
        if "=" not in it:
            raise SystemExit(f"expected KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def cmd_plugins(args) -> int:
    from .plugin_manager import get_plugins

    pm = get_plugins()
    rows = pm.components()
    failed = [
        {"kind": "failed-plugin", "name": n, "plugin": n, "version": "", "error": e} for n, e in pm.failed.items()
    ]
    if args.json:
        print(json.dumps(rows + failed, indent=2))
        return 0
    cols = ("kind", "name", "plugin", "version")
    w = [max(len(str(r[k])) for r in rows + [dict(zip(cols, cols))]) for k in cols]
    print("  ".join(h.ljust(n) for h, n in zip(cols, w)))
    for r in rows:
        print("  ".join(str(r[k]).ljust(n) for k, n in zip(cols, w)))
    for f in failed:
        print(f"failed plugin {f['name']}: {f['error']}")
    for problem in pm.problems:
        print(f"skipped: {problem}")
    return 0


def cmd_train(args) -> int:
    import torch

    from .model import DiffusionModel
    from .training import TrainConfig, train

    torch.manual_seed(args.seed)
    model = DiffusionModel.create(
        args.modality,
        network=args.network,
        schedule=args.schedule,
        parameterization=args.parameterization,
        **_kv(args.net_opt),
    )
    dataset = model.modality.load_dataset(args.data, **_kv(args.data_opt))
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        out_dir=args.out,
        cond_dropout=args.cond_dropout,
        grad_accum=args.grad_accum,
        amp=args.amp,
        warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        resume=args.resume,
    )
    res = train(model, dataset, cfg)
    if res.rank != 0:  # under torchrun only rank 0 writes the final checkpoint
        return 0
    model.save(args.out)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "steps": res.steps,
                "seconds": round(res.seconds, 2),
                "world_size": res.world_size,
                "resumed_from": res.resumed_from,
                "final_loss": res.losses[-1][1] if res.losses else None,
            }
        )
    )
    return 0


def _load_model(args):
    import polydiff

    from .starters import starter_for

    prompted = getattr(args, "prompt", None) is not None  # a prompt: the modality's text starter
    src = args.checkpoint or f"starter:{starter_for(args.modality, prompted=prompted)}"
    model = polydiff.load(src, device=args.device if args.device != "auto" else None)
    if args.device == "auto":
        from .model import resolve_device

        model.to(resolve_device("auto"))
    want = args.modality.split("-")[0] if args.modality else None
    if want and model.modality.name != want:
        from .plugin_manager import registry

        # a specialised modality serves its base's requests (molecule_joint is a molecule modality)
        base = registry("modality").get(want) if want in registry("modality") else None
        if base is None or not isinstance(model.modality, base):
            raise SystemExit(f"checkpoint {src} is a {model.modality.name!r} model, not {args.modality!r}")
    return model


def cmd_sample(args) -> int:
    model = _load_model(args)
    given = {
        k: v
        for k, v in (("sampler", args.sampler), ("steps", args.steps), ("guidance", args.guidance))
        if v is not None
    }  # the rest: the model's saved sample defaults, then the library's
    if args.prompt is not None:
        given["prompt"] = args.prompt
    if args.negative is not None:
        given["negative"] = args.negative
    samples = model.sample(args.n, seed=args.seed, cond=_kv(args.cond) or None, **given)
    paths = model.modality.write(samples, args.out)
    print(json.dumps({"written": [str(p) for p in paths][:20], "count": len(paths)}))
    return 0


def cmd_eval(args) -> int:
    from .plugin_manager import get_plugins

    modality = get_plugins().get("modality", args.modality)(None)
    samples = modality.read(args.path)
    metrics = args.metrics.split(",") if args.metrics else None
    res = modality.evaluate(samples, reference=args.reference, metrics=metrics)
    print(json.dumps(res, indent=2))
    return 0


def cmd_bench(args) -> int:
    try:
        from .bench.runner import main as bench_main
    except ImportError:
        print("polydiff bench: the benchmark runner is not installed in this version", file=sys.stderr)
        return 2
    return bench_main(args)


def cmd_distill(args) -> int:
    from .distill import DistillConfig, _as_model, distill

    method = args.method
    if method is None:  # the default by the teacher's kind of state
        method = "trajectory" if _as_model(args.checkpoint).parts is not None else "consistency"
    cfg = DistillConfig(
        method=method,
        steps=args.steps,
        train_steps=args.train_steps,
        max_seconds=60 * args.minutes if args.minutes else None,
        batch_size=args.batch_size,
        lr=args.lr,
        guidance=args.guidance,
        seed=args.seed,
        device="cuda" if args.device == "cuda" else "cpu",
        progress=not args.no_progress,
        out_dir=str(Path(args.out) / "work"),
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        dataset=args.data,
        dataset_options=_kv(args.data_opt),
        teacher_steps=args.teacher_steps,
        n_grid=args.n_grid,
        sigmas=[float(v) for v in args.sigmas.split(",")] if args.sigmas else None,
        time_grid=[float(v) for v in args.time_grid.split(",")] if args.time_grid else None,
        segment_steps=args.segment_steps,
        on_policy=args.on_policy,
        step_shares=[float(v) for v in args.step_shares.split(",")] if args.step_shares else None,
        teacher_restarts=not args.no_teacher_restarts,
        restart_noise=[float(v) for v in args.restart_noise.split(",")] if args.restart_noise else None,
        init_from=args.init_from,
        student_kwargs=json.loads(args.student_kwargs) if args.student_kwargs else None,
    )
    res = distill(args.checkpoint, cfg)  # by path, so the student records where its teacher is
    res.student.save(args.out)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "method": method,
                "steps": args.steps,
                "train_steps": res.steps,
                "seconds": round(res.seconds, 1),
                "final_loss": res.losses[-1][1] if res.losses else None,
                "sample_defaults": res.student.extra["sample_defaults"],
                "sigmas": res.sigmas,
            }
        )
    )
    return 0


def cmd_tune_steps(args) -> int:
    from .samplers import tuning

    model = _load_model(args)
    nfes = [int(v) for v in str(args.nfe).split(",") if v.strip()]
    if not nfes or min(nfes) < 1:
        raise SystemExit(f"--nfe must list positive integers, got {args.nfe!r}")
    if args.seed < tuning.CALIBRATION_SEED:
        raise SystemExit(f"--seed must be >= {tuning.CALIBRATION_SEED}: evaluation seeds start at 0")
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr))
    if args.metric:  # by sample quality: any sampler, a mixed state's time grids and restarts included
        res = {
            str(k): tuning.tune_by_metric(model, args.sampler, k, args.metric, n=args.n, seed=args.seed, log=log)
            for k in nfes
        }
    else:
        res = tuning.tune_model(model, args.sampler, nfes, n=args.n, seed=args.seed, max_evals=args.max_evals, log=log)
    src = Path(args.checkpoint) if args.checkpoint and not args.checkpoint.startswith("starter:") else None
    if src is None and not args.out:
        raise SystemExit("tune-steps on a starter needs --out (the starter's folder is not written in place)")
    out = Path(args.out) if args.out else src
    assert out is not None
    if src is None or out.resolve() != src.resolve():
        model.save(out)  # a new checkpoint: weights copied, config with the tuned grids
    else:
        tuning.write_tuned_grids(src, tuning.stored_grids(model))  # config only, atomically
    print(json.dumps({"out": str(out), "sampler": args.sampler, "tuned": res}))
    return 0


def cmd_combine_experts(args) -> int:
    import polydiff

    from .experts import combine

    base, expert = polydiff.load(args.base), polydiff.load(args.expert)
    model = combine(base, expert, below=args.below)
    out = model.save(Path(args.out))
    print(json.dumps({"out": str(out), "base": args.base, "expert": args.expert, "below": args.below}))
    return 0


def cmd_info(args) -> int:
    from .checkpoint import read_config

    print(json.dumps(read_config(Path(args.checkpoint)), indent=2))
    return 0


def _common(sp) -> None:
    sp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--seed", type=int, default=0)


def _add_plugins(sub) -> None:
    sp = sub.add_parser("plugins", help="list registered components (and plugins that failed to load)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_plugins)


def _add_train(sub) -> None:
    sp = sub.add_parser("train", help="train a model of a modality")
    sp.add_argument("modality")
    sp.add_argument("--data", default=None, help="registered dataset name (modality default if omitted)")
    sp.add_argument("--data-opt", action="append", metavar="KEY=VALUE", help="dataset option (repeatable)")
    sp.add_argument("--network", default=None)
    sp.add_argument("--net-opt", action="append", metavar="KEY=VALUE")
    sp.add_argument("--schedule", default=None)
    sp.add_argument("--parameterization", default=None)
    sp.add_argument("--steps", type=int, default=1000)
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--lr", type=float, default=2e-4)
    sp.add_argument("--cond-dropout", type=float, default=0.0)
    sp.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    sp.add_argument("--amp", default="auto", choices=["auto", "bf16", "none"])
    sp.add_argument("--warmup-steps", type=int, default=0)
    sp.add_argument("--ema-decay", type=float, default=0.999)
    sp.add_argument("--checkpoint-every", type=int, default=0, help="steps between training checkpoints")
    sp.add_argument("--keep-checkpoints", type=int, default=3)
    sp.add_argument("--resume", default=None, help="'auto' (newest valid in OUT/checkpoints) or a folder")
    sp.add_argument("--out", required=True, help="checkpoint folder to write")
    _common(sp)
    sp.set_defaults(fn=cmd_train)


def _add_sample(sub) -> None:
    sp = sub.add_parser("sample", help="sample from a checkpoint (or a starter model) and write files")
    sp.add_argument("modality", nargs="?", default=None)
    sp.add_argument("--checkpoint", default=None)
    sp.add_argument("-n", type=int, default=16)
    sp.add_argument("--sampler", default=None, help="default: the model's saved default, else dpmpp_2m")
    sp.add_argument("--steps", type=int, default=None, help="default: the model's saved NFE, else 50 steps")
    sp.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's, else 1)")
    sp.add_argument("--cond", action="append", metavar="KEY=VALUE")
    sp.add_argument("--prompt", default=None, help="a text prompt (text-conditioned models; image, audio starters)")
    sp.add_argument(
        "--negative", default=None, help="a negative prompt (needs CFG: the model's guidance or --guidance)"
    )
    sp.add_argument("--out", required=True)
    _common(sp)
    sp.set_defaults(fn=cmd_sample)


def _add_eval(sub) -> None:
    sp = sub.add_parser("eval", help="evaluate files of samples with a modality's metrics")
    sp.add_argument("modality")
    sp.add_argument("path")
    sp.add_argument("--reference", default=None)
    sp.add_argument("--metrics", default=None, help="comma-separated metric names")
    _common(sp)
    sp.set_defaults(fn=cmd_eval)


def _add_bench(sub) -> None:
    sp = sub.add_parser("bench", help="run a benchmark suite")
    sp.add_argument("--suite", default="quick")
    sp.add_argument("--out", default="runs/bench")
    sp.add_argument("--modality", default=None)
    sp.add_argument("--samplers", default=None)
    sp.add_argument("--nfe", default=None)
    sp.add_argument("--force", action="store_true", help="re-run tasks that already finished")
    sp.add_argument("--no-progress", action="store_true")
    sp.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="tasks run at once on CPU, each with cores/jobs torch threads (default: the suite's "
        "`jobs`, else 1; always 1 on CUDA)",
    )
    _common(sp)
    sp.set_defaults(fn=cmd_bench)


def _add_distill(sub) -> None:
    sp = sub.add_parser("distill", help="distil a checkpoint into a few-step student (a new checkpoint)")
    sp.add_argument("checkpoint", help="checkpoint folder or starter:NAME")
    sp.add_argument(
        "--method",
        default=None,
        choices=["consistency", "progressive", "reflow", "trajectory"],
        help="consistency, progressive or reflow (one-tensor modalities; default consistency); trajectory "
        "(modalities with parts, e.g. molecule_joint; their default)",
    )
    sp.add_argument("--steps", type=int, default=2, help="the student's network evaluations per sample")
    sp.add_argument("--out", required=True, help="student checkpoint folder (training logs in OUT/work)")
    sp.add_argument("--train-steps", type=int, default=2000, help="optimiser steps (all rounds together)")
    sp.add_argument("--minutes", type=float, default=None, help="training time budget")
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--lr", type=float, default=5e-5)
    sp.add_argument("--guidance", type=float, default=None, help="CFG scale distilled in (default: the teacher's)")
    sp.add_argument("--data", default=None, help="dataset name (the modality's default if omitted)")
    sp.add_argument("--data-opt", action="append", metavar="KEY=VALUE", help="dataset option (repeatable)")
    sp.add_argument("--teacher-steps", type=int, default=None, help="progressive: first teacher's steps")
    sp.add_argument("--n-grid", type=int, default=18, help="consistency: points of the distillation grid")
    sp.add_argument("--sigmas", default=None, help="the student's σ̃ grid, comma-separated, ending in 0")
    sp.add_argument(
        "--time-grid",
        default=None,
        help="trajectory: the student's time grid, comma-separated (e.g. 1,0.2,0,0.2,0,0.1,0; default: the "
        "teacher's tuned grid at --steps)",
    )
    sp.add_argument("--segment-steps", type=int, default=8, help="trajectory: teacher steps per student step")
    sp.add_argument(
        "--on-policy",
        type=float,
        default=0.0,
        help="trajectory: share of batches that start from the student's own samples (0-1)",
    )
    sp.add_argument(
        "--step-shares",
        default=None,
        help="trajectory: relative frequency of each student step in the batches, comma-separated (default equal)",
    )
    sp.add_argument(
        "--restart-noise",
        default=None,
        help="trajectory: noise scale of each restart of the student's grid, comma-separated (1 full, "
        "0 none: the finished sample is relabelled and refined; default all 1)",
    )
    sp.add_argument(
        "--no-teacher-restarts",
        action="store_true",
        help="trajectory: the teacher's completions to 0 skip its restarts (deterministic position targets)",
    )
    sp.add_argument(
        "--init-from", default=None, help="start the student from this checkpoint (e.g. an earlier student)"
    )
    sp.add_argument(
        "--student-kwargs",
        default=None,
        metavar="JSON",
        help="network keywords of a bigger student over the teacher's, e.g. '{\"layers\": 9}' (it starts as "
        "the teacher: the network's new parts begin as the identity)",
    )
    sp.add_argument("--checkpoint-every", type=int, default=0, help="steps between training checkpoints")
    sp.add_argument("--resume", action="store_true", help="continue the training checkpoints in OUT/work")
    sp.add_argument("--no-progress", action="store_true")
    _common(sp)
    sp.set_defaults(fn=cmd_distill)


def _add_tune_steps(sub) -> None:
    sp = sub.add_parser("tune-steps", help="tune σ̃ or time grids for a sampler at given NFEs (saved in the checkpoint)")
    sp.add_argument("checkpoint", help="checkpoint folder (updated in place unless --out) or starter:NAME")
    sp.add_argument("--sampler", default="unipc", help="a deterministic sampler (default unipc)")
    sp.add_argument("--nfe", default="5,10,20", help="comma-separated NFE budgets")
    sp.add_argument("--out", default=None, help="write a new checkpoint folder instead of updating CHECKPOINT")
    sp.add_argument("-n", type=int, default=64, help="calibration batch size")
    sp.add_argument("--max-evals", type=int, default=400, help="sampler runs per NFE the search may spend")
    sp.add_argument(
        "--metric",
        default=None,
        help="tune by this registered metric on -n calibration samples instead (any sampler; the way to tune "
        "a mixed state's time grid, restart schedules included)",
    )
    sp.add_argument("--quiet", action="store_true")
    sp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--seed", type=int, default=10_000, help="first calibration seed (>= 10000; evaluation uses 0..)")
    sp.set_defaults(fn=cmd_tune_steps, modality=None)


def _add_combine_experts(sub) -> None:
    sp = sub.add_parser(
        "combine-experts",
        help="one checkpoint whose low-noise calls are made by another network (time experts, eDiff-I)",
    )
    sp.add_argument("base", help="checkpoint folder or starter:NAME: its network makes the calls at or above --below")
    sp.add_argument("expert", help="checkpoint folder: its (EMA) network makes the calls below --below")
    sp.add_argument(
        "--below", type=float, required=True, help="the bound: a time t of a model with parts, a σ̃ of a continuous one"
    )
    sp.add_argument("--out", required=True, help="the combined checkpoint's folder (the base's sampling defaults)")
    sp.set_defaults(fn=cmd_combine_experts)


def _add_info(sub) -> None:
    sp = sub.add_parser("info", help="print a checkpoint's config")
    sp.add_argument("checkpoint")
    sp.set_defaults(fn=cmd_info)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polydiff", description="Multimodal scientific diffusion toolkit")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command")
    for add in (_add_plugins, _add_train, _add_sample, _add_eval, _add_bench, _add_info):
        add(sub)
    _add_distill(sub)
    _add_combine_experts(sub)
    _add_tune_steps(sub)
    return p


def main(argv=None) -> int:
    from . import __version__
    from .errors import PolydiffError

    p = build_parser()
    args = p.parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    if not getattr(args, "fn", None):
        p.print_help()
        return 2
    try:
        return int(args.fn(args) or 0)
    except PolydiffError as e:
        if args.debug:
            raise
        # one line: the cause and the remedy (the messages name both); --debug for the traceback
        print(f"polydiff {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
