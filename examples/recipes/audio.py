"""CPU recipe: class-conditional instrument notes in a mel-VAE latent, with CFG.

Trains, through the public API, the audio plugin's log-mel VAE and scoring classifier
(``AudioModality.fit``) and a latent U-Net denoiser on the embedded synthetic notes
(4 timbres × 4 pitches = 16 labels such as ``piano_C4``), then:

- samples every label with classifier-free guidance (and without, for comparison) and
  scores the clips with the plugin's classifier: class accuracy, ``fd_ours``, ``is_ours``,
  ``kl_ours``, plus pitch accuracy (f0 within 50 cents), next to the real-vs-real floor
  (held-out real clips) and two ceilings (white noise, the untrained model);
- measures the round trip (identity / Griffin-Lim from the true log-mel, NNLS and
  torchaudio-lstsq mel inversion / VAE + Griffin-Lim) on held-out clips;
- inpaints 0.40–0.60 s of held-out clips and compares the log-mel error outside the span
  with the VAE round-trip error.

    .venv/bin/python examples/recipes/audio.py --out runs/recipe_audio

Writes into ``--out``: ``checkpoint/`` (``polydiff.load``-able), ``wav/`` (generated WAVs,
``NNNN_<label>.wav``), ``log_mels.png`` (real vs generated), ``inpainting.png``,
``train_curve.png``, ``train_log.jsonl`` and ``metrics.json``. Acceptance (issue 6): class
accuracy ≥ 0.80 with CFG and ``fd_ours`` nearer the real floor than the noise ceiling.
Run with ``--threads 1`` on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/recipe_audio")
    p.add_argument("--n-per-class", type=int, default=16, help="training clips per label")
    p.add_argument("--vae-steps", type=int, default=400)
    p.add_argument("--classifier-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=2000, help="diffusion training steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ch", type=int, default=32, help="U-Net base width")
    p.add_argument("--cond-dropout", type=float, default=0.15)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--nfe", type=int, default=20)
    p.add_argument("--n-per-label", type=int, default=4, help="generated clips per label")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy machine)")
    return p.parse_args(argv)


def inpainting_check(model, clips, start_s=0.4, end_s=0.6):
    """Mean |Δ log-mel| (nats) outside the span (one latent column of margin) for the
    inpainted clips and for the plain VAE round trip, both against the original."""
    from polydiff.plugins.audio import inpaint
    from polydiff.plugins.audio.editing import span_mask
    from polydiff.plugins.audio.frontend import log_mel

    mod = model.modality
    orig = log_mel(clips.waveform, mod.frontend)
    out = inpaint(model, clips, start_s, end_s, steps=20, seed=1)
    rec = mod.decode_log_mel(mod.encode(clips.waveform))
    keep_cols = span_mask(model, 1, start_s, end_s)[0, 0, 0]
    frames = torch.zeros(orig.shape[-1], dtype=torch.bool)
    for c in range(keep_cols.shape[0]):
        near = bool((~keep_cols[max(0, c - 1) : c + 2]).any())
        if keep_cols[c] and not near:
            frames[4 * c : 4 * c + 4] = True
    frames = frames[: orig.shape[-1]]
    err_inp = float((out.log_mel[..., frames] - orig[..., frames]).abs().mean())
    err_rt = float((rec[..., frames] - orig[..., frames]).abs().mean())
    span = ~frames
    return (
        out,
        rec,
        {
            "unmasked_logmel_mae_inpainted": err_inp,
            "unmasked_logmel_mae_vae_round_trip": err_rt,
            "masked_logmel_mae_inpainted": float((out.log_mel[..., span] - orig[..., span]).abs().mean()),
            "span_s": [start_s, end_s],
        },
    )


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import polydiff
    from polydiff.plotting import training_curve
    from polydiff.plugins.audio.bench import generation_metrics, round_trip_table
    from polydiff.plugins.audio.clips import AudioClips
    from polydiff.plugins.audio.frontend import log_mel
    from polydiff.plugins.audio.modality import AudioModality
    from polydiff.plugins.audio.plots import plot_log_mels
    from polydiff.training import TrainConfig, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mod = AudioModality({"vae_steps": args.vae_steps, "classifier_steps": args.classifier_steps, "seed": args.seed})
    data = mod.load_dataset("audio_notes", n_per_class=args.n_per_class, seed=args.seed)
    held = mod.load_dataset("audio_notes", n_per_class=4, seed=args.seed + 1000)  # unseen clips, same labels
    fit_s = time.perf_counter() - t0
    print(f"fitted VAE + classifier in {fit_s:.0f} s: {data.report()}")

    model = polydiff.create(mod, ch=args.ch)
    res = train(
        model,
        data,
        TrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            cond_dropout=args.cond_dropout,
            ema_decay=0.995,
            seed=args.seed,
            out_dir=str(out),
            warmup_steps=50,
        ),
    )
    model.save(out / "checkpoint")
    training_curve(res.losses, out / "train_curve.png", title="audio latent diffusion loss")
    print(f"trained {res.steps} steps in {res.seconds:.0f} s ({res.steps_per_s:.2f} steps/s)")

    names = mod.label_names
    scorer = mod.scorer
    labels = torch.arange(len(names)).repeat_interleave(args.n_per_label)
    metrics = {
        "fit_s": fit_s,
        "train_s": res.seconds,
        "train_steps_per_s": res.steps_per_s,
        "train_audio_s_per_s": res.steps_per_s * args.batch_size * mod.frontend.seconds,
        "final_loss": res.losses[-1][1] if res.losses else None,
        "args": vars(args),
    }
    ts = time.perf_counter()
    clips = model.sample(
        len(labels), cond={"label": labels}, guidance=args.guidance, sampler=args.sampler, nfe=args.nfe, seed=args.seed
    )
    sample_s = time.perf_counter() - ts
    metrics["sample_audio_s_per_s"] = clips.seconds / sample_s
    metrics["cfg"] = generation_metrics(clips, data, scorer)
    metrics["no_cfg"] = generation_metrics(
        model.sample(
            len(labels), cond={"label": labels}, guidance=1.0, sampler=args.sampler, nfe=args.nfe, seed=args.seed
        ),
        data,
        scorer,
    )
    held_clips = AudioClips(
        held.waves, held.sample_rate, labels=held.labels, names=[names[int(i)] for i in held.labels]
    )
    metrics["real_floor"] = generation_metrics(held_clips, data, scorer)
    g = torch.Generator().manual_seed(args.seed)
    noise = AudioClips(
        0.1 * torch.randn(len(labels), mod.frontend.clip_samples, generator=g),
        held.sample_rate,
        labels=labels,
        names=[names[int(i)] for i in labels],
    )
    metrics["noise_ceiling"] = generation_metrics(noise, data, scorer)
    untrained = polydiff.create(mod, ch=args.ch)
    metrics["untrained_ceiling"] = generation_metrics(
        untrained.sample(len(labels), cond={"label": labels}, nfe=args.nfe, seed=args.seed), data, scorer
    )
    fd, lo, hi = metrics["cfg"]["fd_ours"], metrics["real_floor"]["fd_ours"], metrics["noise_ceiling"]["fd_ours"]
    metrics["acceptance"] = {
        "class_accuracy_cfg_ge_0.8": metrics["cfg"]["class_accuracy_ours"] >= 0.8,
        "fd_nearer_floor_than_noise": abs(fd - lo) < abs(hi - fd),
    }

    sub = held.subset(range(0, len(held), 4))
    metrics["round_trip"] = round_trip_table(mod, sub.waves)
    held_sub = AudioClips(sub.waves[:8], held.sample_rate, labels=sub.labels[:8])
    inp, rec, metrics["inpainting"] = inpainting_check(model, held_sub)

    mod.write(clips, out / "wav")
    mod.write(inp, out / "wav_inpainted")
    plot_log_mels(
        [
            ("real (held out)", log_mel(held.waves[::4], mod.frontend), held_clips.names[::4]),
            ("generated, CFG", clips.log_mel[:: args.n_per_label], clips.names[:: args.n_per_label]),
        ],
        out / "log_mels.png",
        max_cols=16,
    )
    plot_log_mels(
        [
            ("original", log_mel(held_sub.waveform, mod.frontend), None),
            ("VAE round trip", rec, None),
            ("inpainted 0.4-0.6 s", inp.log_mel, None),
        ],
        out / "inpainting.png",
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        json.dumps(
            {
                k: metrics[k]
                for k in (
                    "cfg",
                    "no_cfg",
                    "real_floor",
                    "noise_ceiling",
                    "untrained_ceiling",
                    "acceptance",
                    "round_trip",
                    "inpainting",
                )
            },
            indent=1,
        )
    )
    print(f"total {time.perf_counter() - t0:.0f} s; outputs in {out}")


if __name__ == "__main__":
    main()
