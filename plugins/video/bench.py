"""The ``video/moving_digits`` benchmark task.

Trains a class-conditional space-time U-Net on Moving digits (quick: 16×16 px × 4 frames,
scikit-learn digits; standard/gpu: 32×32 px × 8 frames, MNIST-5k), samples clips with
CFG at each (sampler, NFE) of the grid, and reports per-frame digit accuracy, identity
consistency and ``fvd_ours`` against references: ``data`` (real test clips vs real clips:
the floor) and ``untrained`` (uniform-noise clips: the ceiling).
Timings: ``train_s``, ``train_steps_per_s``, ``samples_per_s`` (clips/s), ``peak_mem_mb``.
"""

from __future__ import annotations

import time

import torch

from polydiff.bench.task import BenchContext, BenchmarkTask, make_row
from polydiff.memory import peak_memory_mb, reset_peak_memory

#: budgets by suite. Quick (measured, one thread, seed 0): channels (16, 32) at full
#: resolution, 300 training steps, 50 NFE and a metric classifier of 600 + 300 steps gave
#: frame accuracy 0.32 (untrained 0, real 0.93); 250 steps, 20 NFE (DPM-Solver++(2M)) and a
#: 400 + 200-step classifier 0.23 (real 0.91; 200 steps: 0.12). Space-to-depth 2 (the U-Net
#: runs at 8 × 8 on 2 × 2 pixel blocks) costs a third per step: channels (32, 48) for 350 steps
#: gave 0.23 in 40 % of the first budget's time (300 steps: 0.13; (16, 32), 400 steps: 0.10).
CONFIGS = {
    "quick": dict(
        nfe=20,
        canvas=16,
        frames=4,
        source="sklearn",
        n_clips=600,
        steps=350,
        batch=16,
        channels=(32, 48),
        space_to_depth=2,
        n_eval=60,
        guidance=4.0,
        eval_train=dict(n_clips=600, frame_steps=400, clip_steps=200),
    ),
    "standard": dict(
        nfe=50,
        canvas=32,
        frames=8,
        source="mnist5k",
        n_clips=3000,
        steps=3000,
        batch=16,
        channels=(32, 64, 96),
        n_eval=100,
        guidance=4.0,
        eval_train={},
        space_to_depth=2,
    ),
    "gpu": dict(
        nfe=50,
        canvas=32,
        frames=8,
        source="mnist5k",
        n_clips=5000,
        steps=20000,
        batch=64,
        channels=(64, 128, 128),
        n_eval=500,
        guidance=4.0,
        eval_train={},
    ),
}


def _metrics(model, clips, reference, evaluator) -> dict:
    from .metrics import METRICS

    out = {}
    for name in ("video_frame_accuracy", "video_identity_consistency", "video_fvd_ours"):
        out[name] = METRICS[name][0](clips, reference=reference, evaluator=evaluator)
    return out


def run(ctx: BenchContext) -> list:
    import polydiff
    from polydiff.training import TrainConfig, train

    from .classifier import get_evaluator
    from .data import MovingDigits
    from .io import write_strip_png
    from .modality import Clip

    cfg = CONFIGS[ctx.budget(quick="quick", standard="standard", gpu="gpu")]
    torch.manual_seed(ctx.seed)
    ctx.phase("metric classifier")
    t_eval = time.perf_counter()
    evaluator = get_evaluator(cfg["canvas"], cfg["frames"], cfg["source"], progress=ctx.progress, **cfg["eval_train"])
    eval_train_s = time.perf_counter() - t_eval
    ctx.phase("data")
    model = polydiff.create(
        "video",
        modality_config={"canvas": cfg["canvas"], "frames": cfg["frames"], "source": cfg["source"]},
        channels=cfg["channels"],
        space_to_depth=cfg.get("space_to_depth", 1),
    )
    data = model.modality.load_dataset("moving_digits", n_clips=cfg["n_clips"], source=cfg["source"], seed=ctx.seed)
    n = cfg["n_eval"]
    ref = MovingDigits(n, cfg["canvas"], cfg["frames"], source=cfg["source"], split="test", seed=ctx.seed + 7)
    ref2 = MovingDigits(n, cfg["canvas"], cfg["frames"], source=cfg["source"], split="test", seed=ctx.seed + 8)
    labels = [i % 10 for i in range(n)]
    grid = ctx.sampler_grid(["dpmpp_2m"], [cfg["nfe"]])
    model.to(ctx.device)

    def draw(sampler, nfe):
        return model.sample(
            n,
            sampler=sampler,
            nfe=nfe,
            seed=ctx.seed,
            cond={"label": labels},
            guidance=cfg["guidance"],
            callback=ctx.sample_callback(sampler, nfe),
        )

    ctx.phase("reference")
    reference = {"data": _metrics(model, ref2, ref, evaluator)}
    # the ceiling: uniform-noise clips carrying the requested labels (an untrained
    # network's output is a fixed blur of noise, no better and as costly to sample)
    g = torch.Generator().manual_seed(ctx.seed)
    noise = torch.randint(0, 256, (n, cfg["frames"], cfg["canvas"], cfg["canvas"]), generator=g, dtype=torch.uint8)
    untrained = [Clip(noise[i].numpy(), labels[i]) for i in range(n)]
    reference["untrained"] = _metrics(model, untrained, ref, evaluator)
    reset_peak_memory(ctx.device)
    ctx.phase("train", total=cfg["steps"])
    res = train(
        model,
        data,
        TrainConfig(
            steps=cfg["steps"],
            batch_size=cfg["batch"],
            lr=2e-3,
            warmup_steps=50,
            lr_schedule="cosine",
            ema_decay=0.99 if cfg["steps"] < 1000 else 0.999,
            cond_dropout=0.15,
            seed=ctx.seed,
            device=str(ctx.device),
            progress=ctx.progress,
            out_dir=str(ctx.out_dir),
        ),
        callback=ctx.train_callback(cfg["steps"]),
    )
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for sampler, nfe in grid:
        ctx.phase("sample")
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        t0 = time.perf_counter()
        clips = draw(sampler, nfe)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        dt = time.perf_counter() - t0
        ctx.phase("evaluate")
        metrics = _metrics(model, clips, ref, evaluator)
        folder = ctx.out_dir / f"{sampler}_nfe{nfe}"
        files = model.modality.write(clips, folder)
        files.append(
            write_strip_png(
                [ref.clips[i].numpy() for i in range(10)],
                ctx.out_dir / "real_strip.png",
                labels=[int(v) for v in ref.labels[:10]],
            )
        )
        rows.append(
            make_row(
                TASK,
                modality="video",
                model="video_unet",
                sampler=sampler,
                nfe=nfe,
                seed=ctx.seed,
                metrics=metrics,
                reference=reference,
                timing={
                    "train_s": res.seconds,
                    "train_steps_per_s": res.steps_per_s,
                    "samples_per_s": n / dt,
                    "peak_mem_mb": peak_memory_mb(ctx.device),
                    "metric_classifier_train_s": eval_train_s,
                },
                files=[str(f) for f in files],
                evaluator=evaluator.report,
                clip_shape=list(model.modality.shape()),
                guidance=cfg["guidance"],
                train_steps=res.steps,
                untrained_reference="uniform-noise clips",
            )
        )
    return rows


TASK = BenchmarkTask(
    name="video/moving_digits",
    modality="video",
    model="video_unet",
    run=run,
    description="class-conditional Moving-digits clips (frame accuracy, identity, fvd_ours)",
    expected_s=50,
)
