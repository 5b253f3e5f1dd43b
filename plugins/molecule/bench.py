"""Benchmark task ``molecule/qm9`` and the throughput measurement.

``run(ctx)``: trains an EGNN on QM9 (quick: 3 × 64 on a seeded 5,000-molecule subset,
2,400 steps, ≈ 7 min on one thread; standard/gpu: larger), samples over the sampler grid,
computes EDM's metrics and the W1 distances, and records the references ``data`` (a held-out set of real QM9
molecules scored by the same code) and ``untrained`` (the same network before training).
Writes SDF, a PNG grid of depictions and the training curve into ``ctx.out_dir``.

:func:`measure_throughput` gives training molecules/s (batches of real QM9 molecules) and
sampling molecules/s at a given NFE for one denoiser configuration; the standard and gpu
suites add throughput rows for EGNN at EDM's size (9×256, attention) and for the e3nn
network. EDM's own code trains at 7.0 molecules/s on the project's 2-core CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

from polydiff.memory import peak_memory_mb
from polydiff.plotting import training_curve

#: EDM's QM9 denoiser size (Hoogeboom et al. 2022)
EDM_SIZE = {"hidden": 256, "layers": 9, "attention": True}
EDM_CPU_MOLECULES_PER_S = 7.0


def measure_throughput(
    network: str = "egnn",
    *,
    batch_size: int = 64,
    train_steps: int = 3,
    sample_batch: int = 256,
    nfe: int = 50,
    sample_nfe_measured: int | None = None,
    device="cpu",
    seed: int = 0,
    data=None,
    **net_kwargs,
) -> dict:
    """Training and sampling throughput of one denoiser configuration (molecules/s).

    Training: ``train_steps`` optimiser steps on batches of ``batch_size`` QM9 molecules
    (after one warm-up step). Sampling: molecules/s of ``sample_batch`` molecules at ``nfe``
    network evaluations (Euler); ``sample_nfe_measured`` < ``nfe`` times only that many
    evaluations and scales (sampling time is linear in NFE).
    """
    import torch

    import polydiff
    from polydiff.training import TrainConfig, train

    from .qm9 import load_qm9

    dev = torch.device(device)
    model = polydiff.create("molecule", network=network, **net_kwargs)
    data = data if data is not None else load_qm9("train", limit=max(512, batch_size * (train_steps + 1)), seed=seed)
    model.modality.fit(data)
    train(model, data, TrainConfig(steps=1, batch_size=batch_size, device=str(dev), progress=False, seed=seed))
    res = train(
        model,
        data,
        TrainConfig(steps=train_steps, batch_size=batch_size, device=str(dev), progress=False, seed=seed + 1),
    )
    if dev.type == "cuda":
        torch.cuda.synchronize()
    measured = sample_nfe_measured or nfe
    t0 = time.perf_counter()
    model.sample_raw(sample_batch, sampler="euler", steps=measured, seed=seed)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) * nfe / measured
    return {
        "network": network,
        "params": sum(p.numel() for p in model.network.parameters()),
        "train_molecules_per_s": batch_size * res.steps / res.seconds,
        "train_s_per_step": res.seconds / res.steps,
        "sample_molecules_per_s": sample_batch / dt,
        "sample_nfe": nfe,
        "sample_nfe_measured": measured,
        "batch_size": batch_size,
        "sample_batch": sample_batch,
        "device": str(dev),
        "peak_mem_mb": peak_memory_mb(dev),
        **{k: v for k, v in net_kwargs.items()},
    }


def run(ctx) -> list:
    import torch

    import polydiff
    from polydiff.bench import make_row
    from polydiff.training import TrainConfig, train

    from .io import png_grid, write_sdf
    from .metrics import evaluate_molecules
    from .qm9 import load_qm9

    q = ctx.suite == "quick"
    size = ctx.budget(quick={"hidden": 64, "layers": 3}, standard={"hidden": 128, "layers": 6}, gpu=dict(EDM_SIZE))
    # quick: molecule stability is all-or-nothing per molecule, so it needs a model whose
    # atoms are ~75 % stable and enough samples to see it. Measured (one thread, seed 0, 256
    # samples, DDPM 100): 2,000 steps at lr 2e-3 gave atom stability 0.70 and 0–2 stable
    # molecules; lr 4e-3 0.74 and 3; 2,400 steps at 4e-3 0.76 and 5 (validity 0.71).
    steps = ctx.budget(quick=2400, standard=6000, gpu=50000)
    n_train = ctx.budget(quick=5000, standard=100_000)
    n_samples = ctx.budget(quick=256, standard=1000, gpu=10000)
    out_dir = Path(ctx.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx.phase("data")
    torch.manual_seed(ctx.seed)
    model = polydiff.create("molecule", network="egnn", **size)
    data = model.modality.load_dataset(
        "qm9", split="train", limit=n_train if n_train < 100_000 else None, seed=ctx.seed
    )
    ref = load_qm9("test", limit=n_samples, seed=ctx.seed)
    ctx.phase("reference")
    data_row = evaluate_molecules(
        ref.records[: n_samples // 2], reference=ref.records[n_samples // 2 :], novelty_reference=None if q else "qm9"
    )
    grid = ctx.sampler_grid(["ddpm"] if q else ["ddpm", "dpmpp_2m"], [100] if q else [100, 200])
    s0, n0 = grid[0]
    model.to(ctx.device)
    # the untrained ceiling is 0 on every count metric; 64 molecules show it (quick)
    untrained = evaluate_molecules(
        model.sample(64 if q else n_samples, sampler=s0, nfe=n0, seed=ctx.seed, callback=ctx.sample_callback(s0, n0)),
        reference=ref.records,
        novelty_reference=None if q else "qm9",
    )
    lr = ctx.budget(quick=4e-3, standard=5e-4, gpu=1e-4)
    ctx.phase("train", total=steps)
    res = train(
        model,
        data,
        TrainConfig(
            steps=steps,
            batch_size=64,
            lr=lr,
            seed=ctx.seed,
            device=str(ctx.device),
            progress=ctx.progress,
            ema_decay=ctx.budget(quick=0.99, standard=0.999),
            warmup_steps=ctx.budget(quick=20, standard=200),
            log_every=20,
            lr_schedule="cosine",
        ),
        callback=ctx.train_callback(steps),
    )
    curve = training_curve(res.losses, out_dir / "training_curve.png", title="molecule/qm9 training curve")
    rows = []
    for sampler, nfe in grid:
        ctx.phase("sample")
        t0 = time.perf_counter()
        mols = model.sample(
            n_samples, sampler=sampler, nfe=nfe, seed=ctx.seed, callback=ctx.sample_callback(sampler, nfe)
        )
        dt = time.perf_counter() - t0
        ctx.phase("evaluate")
        metrics = evaluate_molecules(mols, reference=ref.records, novelty_reference=None if q else "qm9")
        sdf = write_sdf(mols, out_dir / f"samples_{sampler}_{nfe}.sdf")
        png = png_grid(mols, out_dir / f"samples_{sampler}_{nfe}.png")
        timing = {
            "train_s": res.seconds,
            "train_steps_per_s": res.steps_per_s,
            "train_molecules_per_s": res.steps_per_s * 64,
            "samples_per_s": n_samples / dt,
            "peak_mem_mb": peak_memory_mb(ctx.device),
        }
        rows.append(
            make_row(
                TASK,
                modality="molecule",
                model=f"egnn-{size['layers']}x{size['hidden']}",
                sampler=sampler,
                nfe=nfe,
                seed=ctx.seed,
                metrics=metrics,
                reference={"data": data_row, "untrained": untrained},
                timing=timing,
                files=[sdf, png, curve],
                losses=res.losses,
                n_samples=n_samples,
            )
        )
    if not q:
        ctx.phase("throughput")
        for net, kw in (("egnn", dict(EDM_SIZE)), ("e3nn_molecule", {})):
            tp = measure_throughput(net, device=ctx.device, seed=ctx.seed, sample_nfe_measured=5, **kw)
            rows.append(
                make_row(
                    TASK.name + "/throughput",
                    modality="molecule",
                    model=net,
                    sampler="euler",
                    nfe=50,
                    seed=ctx.seed,
                    metrics={},
                    reference={},
                    timing={k: v for k, v in tp.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                    edm_reference_train_molecules_per_s=EDM_CPU_MOLECULES_PER_S,
                )
            )
    return rows


#: the starter's untrained reference: 32 molecules (its count metrics are 0; atom stability
#: ≈ 0.11 ± 0.013 over ≈ 570 atoms)
STARTER_UNTRAINED = 32


def run_starter(ctx) -> list:
    """``starter/molecule-qm9``: the shipped starter, its card's 100 molecules (DDPM, 100 NFE),
    scored like ``molecule/qm9`` against the same real QM9 test molecules."""
    from polydiff.bench.task import score_starter

    from .io import png_grid
    from .metrics import evaluate_molecules
    from .qm9 import load_qm9

    ctx.phase("data")
    ref = load_qm9("test", limit=256, seed=ctx.seed)
    data_row = evaluate_molecules(ref.records[:128], reference=ref.records[128:], novelty_reference=None)
    return score_starter(
        ctx,
        STARTER,
        evaluate=lambda mols: evaluate_molecules(mols, reference=ref.records, novelty_reference=None),
        data_row=data_row,
        n_untrained=STARTER_UNTRAINED,
        pictures=lambda mols, out: [png_grid(mols, out / "samples.png")],
        note="100 molecules: molecule stability 0.02 means 2 molecules (95 % interval 0.002–0.07); "
        "atom stability and validity are known to ± 0.01 and ± 0.05.",
    )


def _task():
    from polydiff.bench import BenchmarkTask

    return BenchmarkTask(
        name="molecule/qm9",
        modality="molecule",
        model="egnn",
        run=run,
        description="EDM-class EGNN on QM9 with H: EDM stability/validity/uniqueness, W1 "
        "bond lengths/angles; throughput at EDM's size (standard/gpu)",
        expected_s=460,
    )


def _starter_task():
    from polydiff.bench import BenchmarkTask

    return BenchmarkTask(
        name="starter/molecule-qm9",
        modality="molecule",
        model="egnn",
        run=run_starter,
        description="the shipped molecule-qm9 starter, scored like molecule/qm9",
        expected_s=40,
        starter="molecule-qm9",
    )


TASK = _task()
STARTER = _starter_task()
#: every task of this plugin (the plugin registers each)
TASKS = (TASK, STARTER)


def main(argv=None) -> int:
    """``python -m polydiff.plugins.molecule.bench``: throughput of both denoisers (JSON lines)."""
    import argparse
    import json

    import torch

    p = argparse.ArgumentParser(description="molecule denoiser throughput (molecules/s)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--sample-batch", type=int, default=256)
    p.add_argument("--nfe", type=int, default=50)
    p.add_argument("--nfe-measured", type=int, default=5, help="time this many evaluations and scale to --nfe")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--networks",
        default="egnn,egnn-concat,e3nn_molecule",
        help="egnn-concat = EGNN at EDM's size computed with EDM's per-edge concatenation",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.networks.split(","):
        net = "egnn" if name.startswith("egnn") else name
        kw = dict(EDM_SIZE, split_pair_layers=name != "egnn-concat") if net == "egnn" else {}
        res = measure_throughput(
            net,
            device=args.device,
            train_steps=args.train_steps,
            sample_batch=args.sample_batch,
            nfe=args.nfe,
            sample_nfe_measured=args.nfe_measured,
            **kw,
        )
        res["name"] = name
        res["threads"] = torch.get_num_threads()
        res["vs_edm_cpu_train"] = res["train_molecules_per_s"] / EDM_CPU_MOLECULES_PER_S
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
