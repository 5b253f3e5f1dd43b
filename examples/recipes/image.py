r"""CPU recipe: class-conditional digits on MNIST-5k with classifier-free guidance.

Trains an image diffusion model through the public API, then samples a class-balanced
10×10 grid with CFG and scores it with the plugin's own classifier (class accuracy,
``fd_ours``, KID, precision/recall) next to the real-vs-real floor and two ceilings
(uniform-noise images and the untrained model).

    # latent diffusion: a small conv VAE (28×28 → 4×7×7), then a U-Net in its latent;
    # ≤ 20 min on 2 CPU cores in all (14 min of diffusion training, cosine over the budget)
    .venv/bin/python examples/recipes/image.py --latent --vae-steps 300 --vae-channels 16 --res-blocks 1 \
        --steps 20000 --minutes 14 --classifier-steps 300 --guidance 4 --out runs/recipe_image
    # pixel U-Net (base 16 channels, 28→14→7)
    .venv/bin/python examples/recipes/image.py --out runs/recipe_image_pixel
    # continue training a checkpoint written by this recipe
    .venv/bin/python examples/recipes/image.py --init runs/recipe_image/checkpoint --steps 2000 --out runs/more

Writes into ``--out``: ``checkpoint/`` (polydiff.load-able), ``grid.png`` (rows = digits
0–9), ``samples/`` (one PNG per sample), ``interpolation.png`` (a DDIM slerp strip),
``train_curve.png``, ``train_log.jsonl`` and ``metrics.json`` (scores with and without CFG,
the references, the acceptance booleans and timings). Acceptance (issue 7): class accuracy
≥ 0.80 with CFG and ``fd_ours`` nearer the real floor than the noise ceiling. One torch
thread per process (``OMP_NUM_THREADS=1``) is much faster when the cores are shared.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/recipe_image")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--network", default="image_unet", choices=["image_unet", "image_dit"])
    p.add_argument("--latent", action="store_true", help="latent diffusion in a small conv VAE")
    p.add_argument("--vae-steps", type=int, default=800)
    p.add_argument("--vae-channels", type=int, default=32)
    p.add_argument("--steps", type=int, default=None, help="diffusion training steps (default 2000 pixel, 3000 latent)")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training time budget: stop after this many minutes, the cosine decay ending with it",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--base-channels", type=int, default=None)
    p.add_argument("--res-blocks", type=int, default=2, help="U-Net residual blocks per level (latent mode)")
    p.add_argument("--cond-dropout", type=float, default=0.15)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--nfe", type=int, default=30)
    p.add_argument("--n-samples", type=int, default=500)
    p.add_argument("--classifier-steps", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None, help="continue training a checkpoint written by this recipe")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy machine)")
    return p.parse_args(argv)


def network_kwargs(args, latent: bool) -> dict:
    if args.network == "image_dit":
        return {"patch_size": 1 if latent else 2, "hidden_size": args.base_channels or 128, "depth": 4, "heads": 4}
    if latent:  # 4×7×7 latent
        return {
            "base_channels": args.base_channels or 32,
            "channel_mult": (1,),
            "num_res_blocks": args.res_blocks,
            "attn_resolutions": (7,),
        }
    return {"base_channels": args.base_channels or 16, "channel_mult": (1, 2, 2), "attn_resolutions": (7,)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import polydiff
    from polydiff.plotting import training_curve
    from polydiff.plugins.image.classifier import train_classifier
    from polydiff.plugins.image.io import ImageSample, ddim_interpolation, save_grid, save_strip
    from polydiff.plugins.image.metrics import all_scores, real_floor
    from polydiff.training import TrainConfig, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    mcfg = {"dataset": args.dataset}
    if args.latent:
        mcfg["latent"] = {"vae_steps": args.vae_steps, "channels": args.vae_channels}
    if args.init:  # continue: network, EMA, VAE and latent scale come from the checkpoint
        model = polydiff.load(args.init)
    else:
        model = polydiff.create(
            "image", network=args.network, modality_config=mcfg, **network_kwargs(args, args.latent)
        )
    print(f"network {args.network}: {sum(p.numel() for p in model.network.parameters()) / 1e6:.2f} M parameters")
    data = model.modality.load_dataset(split="train")  # trains the VAE first in latent mode
    reference = polydiff.registry("dataset").get(args.dataset)()
    t_vae = time.perf_counter() - t_start
    print(f"data: {len(data)} training images; VAE {t_vae:.0f} s")

    t0 = time.perf_counter()
    clf = train_classifier(reference.images, reference.labels, steps=args.classifier_steps, seed=args.seed)
    t_clf = time.perf_counter() - t0

    n = args.n_samples
    cond = {"label": "balanced"}
    untrained = (
        polydiff.create(
            "image",
            network=model.network_name,
            modality_config=model.modality.config,
            **{k: v for k, v in model.network_kwargs.items() if k not in ("in_channels", "image_size", "num_classes")},
        )
        if args.init
        else model
    )
    if args.init:
        untrained.modality.vae = model.modality.vae
    untrained = untrained.sample(n, sampler="euler", steps=10, seed=args.seed, cond=cond, ema=False)
    g = torch.Generator().manual_seed(args.seed)
    noise = [ImageSample(torch.rand(reference.images.shape[1:], generator=g), int(i % 10)) for i in range(n)]
    floor = real_floor(reference, clf, n=n, kid_subset_size=n)
    ceil_noise = all_scores(noise, reference, clf, kid_subset_size=n)
    ceil_untrained = all_scores(untrained, reference, clf, kid_subset_size=n)

    steps = args.steps or (3000 if args.latent else 2000)
    lr = args.lr or (1e-3 if args.network == "image_unet" else 3e-4)
    cfg = TrainConfig(
        steps=steps,
        batch_size=args.batch_size,
        lr=lr,
        warmup_steps=100,
        lr_schedule="cosine",
        max_seconds=60 * args.minutes if args.minutes else None,
        ema_decay=0.998,
        cond_dropout=args.cond_dropout,
        seed=args.seed,
        log_every=50,
        out_dir=str(out),
    )
    res = train(model, data, cfg)
    print(f"trained {res.steps} steps in {res.seconds:.0f} s ({res.steps_per_s:.2f} steps/s)")
    ckpt = model.save(out / "checkpoint")

    t0 = time.perf_counter()
    samples = model.sample(n, sampler=args.sampler, nfe=args.nfe, seed=args.seed, cond=cond, guidance=args.guidance)
    t_sample = time.perf_counter() - t0
    trained = all_scores(samples, reference, clf, kid_subset_size=n)
    no_cfg = all_scores(
        model.sample(n, sampler=args.sampler, nfe=args.nfe, seed=args.seed, cond=cond),
        reference,
        clf,
        kid_subset_size=n,
    )

    model.modality.write(samples[:100], out / "samples")
    order = sorted(range(min(n, 100)), key=lambda i: (samples[i].label, i))
    save_grid([samples[i] for i in order], out / "grid.png", nrow=10, scale=3)
    strip = ddim_interpolation(model, 10, seed_a=1, seed_b=2, cond={"label": 3}, steps=args.nfe, guidance=args.guidance)
    save_strip(strip, out / "interpolation.png")
    training_curve(res.losses, out / "train_curve.png")

    report = {
        "args": vars(args),
        "checkpoint": str(ckpt),
        "metrics_cfg": trained,
        "metrics_no_cfg": no_cfg,
        "reference": {"data": floor, "noise": ceil_noise, "untrained": ceil_untrained},
        "acceptance": {
            "class_accuracy_ge_0.80": trained["class_accuracy"] >= 0.80,
            "fd_nearer_floor_than_noise": abs(trained["fd_ours"] - floor["fd_ours"])
            < abs(ceil_noise["fd_ours"] - trained["fd_ours"]),
        },
        "timing": {
            "vae_and_data_s": t_vae,
            "classifier_s": t_clf,
            "train_s": res.seconds,
            "train_steps_per_s": res.steps_per_s,
            "sample_s": t_sample,
            "samples_per_s": n / t_sample,
            "total_s": time.perf_counter() - t_start,
        },
        "final_loss": res.losses[-1][1] if res.losses else None,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("metrics_cfg", "reference", "acceptance", "timing")}, indent=1))
    return report


if __name__ == "__main__":
    main()
