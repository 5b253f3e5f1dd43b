"""Benchmark task ``molecule/qm9`` and the throughput measurement.

``run(ctx)``: trains an EGNN on QM9 (quick: 3 × 64 on a seeded 5,000-molecule subset, 2,000
steps of 20 molecules, 512 samples by DPM-Solver++(2M) SDE at 50 NFE, ≈ 3 min on one
thread; standard/gpu: larger), samples over the sampler grid, computes EDM's metrics and the
W1 distances, and records the references ``data`` (a held-out set of real QM9 molecules
scored by the same code) and ``untrained`` (the same network before training).
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

#: molecules sampled at a time on a CPU: the EGNN's cost per molecule is 1.7× lower in
#: chunks of 32–64 than in one batch of 256 (its edge activations stay in the caches)
SAMPLE_CHUNK = 64
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
    from polydiff.bench.task import sample_in_chunks
    from polydiff.training import TrainConfig, train

    from .io import png_grid, write_sdf
    from .metrics import evaluate_molecules
    from .qm9 import load_qm9

    q = ctx.suite == "quick"
    size = ctx.budget(quick={"hidden": 64, "layers": 3}, standard={"hidden": 128, "layers": 6}, gpu=dict(EDM_SIZE))
    # quick: molecule stability is all-or-nothing per molecule, so it needs a model whose
    # atoms are ~70 % stable and enough samples to see the ~1 % of molecules that are. Cost
    # grows with the molecules a step sees. Measured (one thread, seed 0; DDPM 100 on 256
    # samples): 2,400 steps of 64 gave atom stability 0.76 and 5 stable molecules, 2,400 of 32
    # (half the work) 0.71 and 1, 1,800 of 32 0.72 and 3. Over 1,024–2,048 samples of that
    # 1,800 × 32 model: DDPM 100 0.72 and 1.1 % stable, DDPM 50 0.69 and 0.44 %,
    # DPM-Solver++(2M) SDE 50 0.73 and 1.3 % (30 NFE: 0.70, 0.7 %), Heun 50 with churn 0.69
    # and 1.0 %. At SDE 50 by steps × batch: 1,800 × 24 1.1 % (0.81× the work of × 32),
    # 2,000 × 20 0.8 %, 1,800 × 16 0.3 %, 1,400 or 1,700 × 32 0.4–0.7 %. No better per unit
    # of work: lr 5e-3 or 6e-3, EMA 0.98, ln σ mean −1.6, bonded-distance loss weight 3,
    # aggregation norm 1, 4 × 48, 3 × 56. So: 2,000 steps of 20 and 768 molecules by
    # DPM-Solver++(2M) SDE at 50 NFE (≈ 6 stable expected), drawn 64 at a time
    # (SAMPLE_CHUNK): 40 % of the work of 2,400 × 64 and DDPM 100 on 256. Then 512 molecules
    # (a third less sampling; seed 0's 768 had stable molecules at indices 46, 62, 72, 449 and
    # 576, and sample i does not depend on n): at a stable share p ≈ 0.7 % the count is
    # Poisson(≈ 3.6), P(0) ≈ 3 %, molecule stability ± 0.004 (one s.e.); atom stability and
    # validity ± 0.01 and ± 0.02. The untrained reference: 32 molecules (its counts are 0).
    steps = ctx.budget(quick=2000, standard=6000, gpu=50000)
    batch = ctx.budget(quick=20, standard=64)
    n_train = ctx.budget(quick=5000, standard=100_000)
    n_samples = ctx.budget(quick=512, standard=1000, gpu=10000)
    n_ref = ctx.budget(quick=256, standard=1000, gpu=10000)  # real test molecules: data row (half vs half), W1
    out_dir = Path(ctx.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx.phase("data")
    torch.manual_seed(ctx.seed)
    model = polydiff.create("molecule", network="egnn", **size)
    data = model.modality.load_dataset(
        "qm9", split="train", limit=n_train if n_train < 100_000 else None, seed=ctx.seed
    )
    ref = load_qm9("test", limit=n_ref, seed=ctx.seed)
    ctx.phase("reference")
    # interleaved halves: the subset is sorted by QM9 index, which follows size and composition
    data_row = evaluate_molecules(
        ref.records[0::2], reference=ref.records[1::2], novelty_reference=None if q else "qm9"
    )
    grid = ctx.sampler_grid(["dpmpp_2m_sde"] if q else ["ddpm", "dpmpp_2m"], [50] if q else [100, 200])
    s0, n0 = grid[0]
    model.to(ctx.device)
    chunk = SAMPLE_CHUNK if ctx.device.type == "cpu" else None
    # the untrained ceiling is 0 on every count metric; 32 molecules show it (quick)
    n_unt = 32 if q else n_samples
    ctx.phase("reference", total=n_unt)
    untrained = evaluate_molecules(
        sample_in_chunks(model, n_unt, chunk=chunk, progress=ctx.step, sampler=s0, nfe=n0, seed=ctx.seed),
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
            batch_size=batch,
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
        ctx.phase("sample", total=n_samples)
        t0 = time.perf_counter()
        mols = sample_in_chunks(
            model, n_samples, chunk=chunk, progress=ctx.step, sampler=sampler, nfe=nfe, seed=ctx.seed
        )
        dt = time.perf_counter() - t0
        ctx.phase("evaluate")
        metrics = evaluate_molecules(mols, reference=ref.records, novelty_reference=None if q else "qm9")
        sdf = write_sdf(mols, out_dir / f"samples_{sampler}_{nfe}.sdf")
        png = png_grid(mols, out_dir / f"samples_{sampler}_{nfe}.png")
        timing = {
            "train_s": res.seconds,
            "train_steps_per_s": res.steps_per_s,
            "train_molecules_per_s": res.steps_per_s * batch,
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
                train_steps=res.steps,
                batch_size=batch,
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


#: the starter's untrained reference: 32 molecules (its count metrics are 0)
STARTER_UNTRAINED = 32


def run_starter(ctx) -> list:
    """``starter/molecule-qm9``: the shipped starter (the bond-aware joint model), its card's
    100 molecules with its sampling defaults, scored like ``molecule_joint/qm9`` (both
    protocols, chemistry checks) against the same real QM9 test molecules with their bonds."""
    return _score_starter(ctx, STARTER)


def run_starter_4step(ctx) -> list:
    """``starter/molecule-qm9-4step``: the starter's 4-call student (trajectory distillation),
    scored as ``starter/molecule-qm9``."""
    return _score_starter(ctx, STARTER_4STEP)


def _score_starter(ctx, task) -> list:
    from polydiff.bench.task import score_starter

    from .bonds_qm9 import load_qm9_bonds
    from .chem_checks import CHEMISTRY_CHECKS
    from .io import png_grid
    from .joint import JointMoleculeModality

    ctx.phase("data")
    ref = load_qm9_bonds("test", limit=256, seed=ctx.seed).records
    metrics = [*JointMoleculeModality.default_metrics, *CHEMISTRY_CHECKS]
    mod = JointMoleculeModality()
    return score_starter(
        ctx,
        task,
        evaluate=lambda mols: mod.evaluate(mols, reference=ref, metrics=metrics),
        data_row=mod.evaluate(ref[0::2], reference=ref[1::2], metrics=metrics),  # interleaved: sorted by index
        n_untrained=STARTER_UNTRAINED,
        chunk=SAMPLE_CHUNK if ctx.device.type == "cpu" else None,
        pictures=lambda mols, out: [png_grid(mols[:16], out / "samples.png")],
        note="100 molecules: a share of 0.50 is known to ± 0.05 (one s.e.); the chemistry checks "
        "compare with 256 real QM9 test molecules.",
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
        # the quick suite's molecule task is the bond-aware joint model (molecule_joint/qm9)
        suites=("standard", "gpu"),
        expected_s=175,
    )


def _starter_task(starter: str, run_fn, description: str, expected_s: float):
    """The quick-suite task ``starter/<starter>`` of a shipped molecule_joint starter."""
    from polydiff.bench import BenchmarkTask

    return BenchmarkTask(
        name=f"starter/{starter}",
        modality="molecule_joint",
        model="egnn_joint",
        run=run_fn,
        description=description,
        expected_s=expected_s,
        starter=starter,
    )


TASK = _task()
# 100 molecules × 15 network calls (card: restarts) of a 6-layer egnn_joint
STARTER = _starter_task(
    "molecule-qm9",
    run_starter,
    "the shipped molecule-qm9 starter (bond-aware joint model), scored like molecule_joint/qm9",
    15,
)
STARTER_4STEP = _starter_task(
    "molecule-qm9-4step",
    run_starter_4step,
    "the molecule-qm9 starter distilled to 4 network calls (trajectory distillation), scored like starter/molecule-qm9",
    10,
)


def _tasks() -> tuple:
    from .bench_joint import TASK as JOINT

    return (TASK, JOINT, STARTER, STARTER_4STEP)


#: every task of this plugin (the plugin registers each)
TASKS = _tasks()


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
