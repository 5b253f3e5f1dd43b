"""The example plugin's benchmark task: it shows up in ``polydiff bench`` once installed."""

from __future__ import annotations

import time

import torch

import polydiff
from polydiff.bench import BenchmarkTask, make_row
from polydiff.training import TrainConfig, train

from .modality import ring_error


def run(ctx, n_points: int = 16):
    # quick (seed 0): 600 steps gave ring error 0.066 (untrained 0.25, real 0.015), 500 steps
    # 0.12 in 80 % of the time, 300 steps 0.28
    steps = ctx.budget(quick=500, standard=3000, smoke=20)
    ctx.phase("data")
    torch.manual_seed(ctx.seed)  # the initial weights: same seed, same run
    model = polydiff.create("pointcloud")
    data = model.modality.load_dataset("rings2d", size=2000, n_points=n_points, seed=ctx.seed)
    real = torch.stack([data[i] for i in range(len(data))])
    floor = ring_error(real[:256])
    ctx.phase("reference")
    untrained = ring_error(torch.stack(model.sample(256, steps=20, seed=ctx.seed)))
    ctx.phase("train", total=steps)
    res = train(
        model,
        data,
        TrainConfig(
            steps=steps,
            batch_size=128,
            lr=2e-3,
            seed=ctx.seed,
            device=str(ctx.device),
            progress=ctx.progress,
            ema_decay=0.99,
        ),
        callback=ctx.train_callback(steps),
    )
    rows = []
    for sampler, nfe in ctx.sampler_grid(["dpmpp_2m"], [20]):
        ctx.phase("sample")
        t0 = time.perf_counter()
        samples = model.sample(256, sampler=sampler, nfe=nfe, seed=ctx.seed, callback=ctx.sample_callback(sampler, nfe))
        dt = time.perf_counter() - t0
        path = model.modality.write(samples, ctx.out_dir / f"samples_{sampler}_{nfe}.json")[0]
        png = _plot(samples[:16], ctx.out_dir / f"samples_{sampler}_{nfe}.png")
        rows.append(
            make_row(
                f"pointcloud/rings{n_points if n_points != 16 else ''}",
                modality="pointcloud",
                model="pointcloud_deepsets",
                sampler=sampler,
                nfe=nfe,
                seed=ctx.seed,
                metrics={"ring_error": ring_error(torch.stack(samples))},
                reference={"data": {"ring_error": floor}, "untrained": {"ring_error": untrained}},
                timing={"train_s": res.seconds, "train_steps_per_s": res.steps_per_s, "samples_per_s": 256 / dt},
                files=[path, png],
                losses=res.losses,
            )
        )
    return rows


def _plot(samples, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 8, figsize=(12, 3))
    for ax, p in zip(axes.flat, samples):
        ax.scatter(p[:, 0], p[:, 1], s=6)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def run_small(ctx):
    return run(ctx, n_points=8)


TASK = BenchmarkTask(
    name="pointcloud/rings",
    modality="pointcloud",
    model="pointcloud_deepsets",
    run=run,
    description="example third-party plugin: 16-point rings in 2-D",
    expected_s=18,
)
TASK_SMALL = BenchmarkTask(
    name="pointcloud/rings8",
    modality="pointcloud",
    model="pointcloud_deepsets",
    run=run_small,
    description="example third-party plugin: 8-point rings in 2-D",
)
