"""The ``audio/notes`` benchmark task and the evaluation helpers the recipe shares.

Trains the mel-VAE, the scoring classifier and a class-conditional latent U-Net on the
embedded synthetic notes, samples with CFG over the sampler grid, and reports the
classifier metrics (``_ours``), pitch accuracy, the round trip (VAE+Griffin-Lim vs
Griffin-Lim alone vs identity) and throughput in seconds of audio per second.
References: ``data`` = real vs real (held-out half), ``untrained`` = an untrained
denoiser in the same latent.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from polydiff.bench import BenchmarkTask
from polydiff.memory import peak_memory_mb

from .metrics import (
    class_accuracy,
    fd_ours,
    is_ours,
    kl_ours,
    log_spectral_distance,
    mel_cepstral_distortion,
    pitch_accuracy,
    spectral_convergence,
)

#: the quick suite's budget (fixed steps). Measured (one thread, seed 0): VAE 100 and latent
#: U-Net 150 steps beat the untrained reference on all five metrics (class accuracy 0.88 and
#: pitch accuracy 0.62 against 0.12 and 0) in 55 % of the time of 150 and 300 steps (1.0, 1.0)
QUICK = {
    "timbres": ("piano", "flute"),
    "pitches": ("C4", "G4"),
    "n_per_class": 8,
    "vae_steps": 100,
    "classifier_steps": 60,
    "steps": 120,
    "batch_size": 32,
    "n_per_label": 2,
}
STANDARD = {
    "timbres": ("piano", "organ", "flute", "clarinet"),
    "pitches": ("C4", "E4", "G4", "C5"),
    "n_per_class": 16,
    "vae_steps": 800,
    "classifier_steps": 300,
    "steps": 4000,
    "batch_size": 32,
    "n_per_label": 4,
}


def round_trip_table(modality, waves: torch.Tensor) -> dict[str, dict[str, float]]:
    """SC / LSD (dB) / MCD (dB) of four decoders against the original clips ``[B, N]``:
    ``identity`` (the clip itself: all zero), ``griffin_lim`` (true log-mel → vocoder hook,
    NNLS mel inversion by default), ``griffin_lim_lstsq`` (torchaudio ``InverseMelScale``),
    ``vae_griffin_lim`` (log-mel → VAE → vocoder hook)."""
    from .frontend import log_mel
    from .vocoder import griffin_lim_vocoder, vocode

    cfg = modality.frontend
    lm = log_mel(waves, cfg)
    gl = vocode(lm, cfg)
    gl_lstsq = griffin_lim_vocoder(lm, cfg.to_dict(), inverse="lstsq")
    vae = vocode(modality.decode_log_mel(modality.encode(waves)), cfg)
    out = {}
    for name, w in (
        ("identity", waves.clone()),
        ("griffin_lim", gl),
        ("griffin_lim_lstsq", gl_lstsq),
        ("vae_griffin_lim", vae),
    ):
        out[name] = {
            "sc": spectral_convergence(w, waves),
            "lsd": log_spectral_distance(w, waves),
            "mcd": mel_cepstral_distortion(w, waves, frontend=cfg.to_dict()),
        }
    return out


def generation_metrics(clips, real, scorer) -> dict[str, float]:
    """Classifier metrics of conditional ``clips`` against real clips (with labels)."""
    return {
        "class_accuracy_ours": class_accuracy(clips, scorer=scorer),
        "fd_ours": fd_ours(clips, real, scorer=scorer),
        "is_ours": is_ours(clips, scorer=scorer),
        "kl_ours": kl_ours(clips, real, scorer=scorer),
        "pitch_accuracy": pitch_accuracy(clips),
    }


def real_reference(data, scorer, label_names) -> dict[str, float]:
    """The real-vs-real floor: even-indexed clips scored against odd-indexed ones."""
    from .clips import AudioClips

    a, b = data.subset(range(0, len(data), 2)), data.subset(range(1, len(data), 2))
    ca = AudioClips(a.waves, data.sample_rate, labels=a.labels, names=[label_names[int(i)] for i in a.labels])
    return generation_metrics(ca, b, scorer)


def run_notes(ctx, task) -> list[dict]:
    """The benchmark task body (see :mod:`polydiff.bench.task`)."""
    import polydiff
    from polydiff.bench import make_row
    from polydiff.training import TrainConfig, train

    from .modality import AudioModality
    from .plots import plot_log_mels

    b = ctx.budget(quick=QUICK, standard=STANDARD)
    out = Path(ctx.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx.phase("data, VAE, classifier")
    t0 = time.perf_counter()
    mod = AudioModality(
        {
            "vae_steps": b["vae_steps"],
            "classifier_steps": b["classifier_steps"],
            "seed": ctx.seed,
            "progress": ctx.progress,
        }
    )
    data = mod.load_dataset(
        "audio_notes", n_per_class=b["n_per_class"], timbres=b["timbres"], pitches=b["pitches"], seed=ctx.seed
    )
    fit_s = time.perf_counter() - t0
    model = polydiff.create(mod)
    untrained = polydiff.create(mod)
    model.to(ctx.device)
    ctx.phase("train", total=b["steps"])
    res = train(
        model,
        data,
        TrainConfig(
            steps=b["steps"],
            batch_size=b["batch_size"],
            lr=1e-3,
            cond_dropout=0.15,
            ema_decay=0.99,
            seed=ctx.seed,
            device=str(ctx.device),
            progress=ctx.progress,
        ),
        callback=ctx.train_callback(b["steps"]),
    )
    ctx.phase("reference")
    clip_s = mod.frontend.seconds
    scorer = mod.scorer
    names = mod.label_names
    labels = torch.arange(len(names)).repeat_interleave(b["n_per_label"])
    ref = {"data": _registered_names(real_reference(data, scorer, names))}
    model.to("cpu")
    unt = untrained.sample(len(labels), cond={"label": labels}, steps=10, seed=ctx.seed)
    ref["untrained"] = _registered_names(generation_metrics(unt, data, scorer))
    model.to(ctx.device)
    rt = round_trip_table(mod, data.waves[:: max(1, len(data) // 8)][:8].to(next(mod.vae.parameters()).device))
    rows = []
    for sampler, nfe in ctx.sampler_grid(["dpmpp_2m"], [20]):
        ctx.phase("sample")
        if torch.device(ctx.device).type == "cuda":
            torch.cuda.synchronize()
        ts = time.perf_counter()
        clips = model.sample(
            len(labels),
            cond={"label": labels},
            guidance=3.0,
            sampler=sampler,
            nfe=nfe,
            seed=ctx.seed,
            callback=ctx.sample_callback(sampler, nfe),
        )
        sample_s = time.perf_counter() - ts
        ctx.phase("evaluate")
        metrics = _registered_names(generation_metrics(clips, data, scorer))
        tag = f"{sampler}_{nfe}"
        files = mod.write(clips, out / f"wav_{tag}")
        png = plot_log_mels(
            [
                (
                    "real",
                    mod.normalised_mels(data.waves[:: b["n_per_class"]])[:, 0] * mod.config["mel_std"]
                    + mod.config["mel_mean"],
                    [names[int(i)] for i in data.labels[:: b["n_per_class"]]],
                ),
                ("generated", clips.log_mel[:: b["n_per_label"]], clips.names[:: b["n_per_label"]]),
            ],
            out / f"log_mels_{tag}.png",
        )
        timing = {
            "train_s": res.seconds,
            "fit_vae_classifier_s": fit_s,
            "train_steps_per_s": res.steps_per_s,
            "train_audio_s_per_s": res.steps_per_s * b["batch_size"] * clip_s,
            "samples_per_s": len(labels) / sample_s,
            "sample_audio_s_per_s": len(labels) * clip_s / sample_s,
            "peak_mem_mb": peak_memory_mb(ctx.device),
        }
        rows.append(
            make_row(
                task,
                modality="audio",
                model="audio_unet",
                sampler=sampler,
                nfe=nfe,
                seed=ctx.seed,
                metrics=metrics,
                reference=ref,
                timing=timing,
                files=[*files, png],
                round_trip=rt,
                guidance=3.0,
                device=str(ctx.device),
            )
        )
    return rows


def _registered_names(metrics: dict) -> dict:
    """Generation scores under their registered metric names (``class_accuracy_ours`` is
    registered as ``audio_class_accuracy``; the rest only lack the ``audio_`` prefix, which
    :func:`polydiff.bench.make_row` adds)."""
    return {("class_accuracy" if k == "class_accuracy_ours" else k): v for k, v in metrics.items()}


def _run(ctx) -> list[dict]:
    return run_notes(ctx, TASK)


#: the benchmark task the plugin registers (suites quick, standard, gpu)
TASK = BenchmarkTask(
    name="audio/notes",
    modality="audio",
    model="audio_unet",
    run=_run,
    description="class-conditional notes in a mel-VAE latent, Griffin-Lim decoding",
    expected_s=35,
)


def run_starter(ctx) -> list[dict]:
    """``starter/audio-notes``: the shipped starter, its card's 16 clips (one per label,
    DPM-Solver++(2M), 20 NFE, CFG 3), scored like ``audio/notes`` with the starter's own
    scorer against fresh real notes of its 16 labels (seed + 1: not its training clips)."""
    from polydiff import load
    from polydiff.bench.task import score_starter

    from .data import synthetic_notes
    from .plots import plot_log_mels

    ctx.phase("data")
    mod = load(f"starter:{STARTER.starter}").modality
    names = mod.label_names
    timbres = list(dict.fromkeys(n.split("_")[0] for n in names))
    pitches = list(dict.fromkeys(n.split("_")[1] for n in names))
    real = synthetic_notes(4, timbres=timbres, pitches=pitches, seed=ctx.seed + 1, frontend=mod.config["frontend"])
    scorer = mod.scorer
    return score_starter(
        ctx,
        STARTER,
        evaluate=lambda clips: _registered_names(generation_metrics(clips, real, scorer)),
        data_row=_registered_names(real_reference(real, scorer, names)),
        pictures=lambda clips, out: [plot_log_mels([("generated", clips.log_mel, clips.names)], out / "log_mels.png")],
        note="16 clips (the model card's count, one per label): class and pitch accuracy move in steps "
        "of 1/16 and are known to about ± 0.1; the data row scores 32 real clips against 32 others.",
    )


#: the shipped audio-notes starter, scored like audio/notes
STARTER = BenchmarkTask(
    name="starter/audio-notes",
    modality="audio",
    model="audio_unet",
    run=run_starter,
    description="the shipped audio-notes starter (16 labels), scored like audio/notes",
    expected_s=6,
    starter="audio-notes",
)
# -- text prompts (issue 20) ------------------------------------------------------------------------
#: the text-prompt metrics (registered names)
PROMPT_METRICS = (
    "audio_prompt_pitch_accuracy",
    "audio_prompt_timbre_accuracy",
    "audio_prompt_loudness_accuracy",
    "audio_prompt_duration_accuracy",
    "audio_prompt_alignment",
)


def sample_prompts(model, prompts: list[str], *, seed: int, chunk: int = 64, **kwargs):
    """Clips for ``prompts`` (one each) sampled in chunks of ``chunk`` with sample offsets, so
    the result does not depend on the chunk size; the model's sampling defaults apply."""
    from .clips import AudioClips

    parts = [
        model.sample(len(prompts[a : a + chunk]), prompt=prompts[a : a + chunk], seed=seed, sample_offset=a, **kwargs)
        for a in range(0, len(prompts), chunk)
    ]
    first = parts[0]
    return AudioClips(
        torch.cat([p.waveform for p in parts]),
        first.sample_rate,
        log_mel=torch.cat([p.log_mel for p in parts]),
        scorer=first.scorer,
        frontend=first.frontend,
        prompts=[q for p in parts for q in p.prompts],
    )


def text_prompt_eval(model, *, per_held_out_pair: int = 16, per_trained_pair: int = 4, seed: int = 0) -> dict:
    """The issue-20 acceptance numbers of a text-prompted notes model (sampling defaults:
    its saved sampler, NFE and guidance):

    - ``compositional``: prompts naming only held-out timbre × pitch pairs (trained
      templates; loudness/duration named at random), ``per_held_out_pair`` each;
    - ``trained`` / ``paraphrase``: the same attribute sets for the trained pairs,
      ``per_trained_pair`` each, worded with trained vs held-out templates (same seeds);
      ``paraphrase_ratio`` = paraphrase / trained per metric;
    - ``negative``: trained-pair prompts that do not name loudness, sampled without and with
      ``negative="loud"`` (same seeds): the share of loud clips and its relative cut.
    """
    from . import captions as cap
    from .metrics import METRICS, loud_share

    mod = model.modality
    prov = (mod.config.get("data_provenance") or {}) if hasattr(mod, "config") else {}
    held = [tuple(p) for p in prov.get("held_out_pairs", cap.HELD_OUT_PAIRS)]
    timbres = prov.get("timbres", cap.TIMBRES)
    pitches = prov.get("pitches", cap.TEXT_PITCHES)
    trained = cap.trained_pairs(timbres, pitches, held)

    def score(prompts):
        clips = sample_prompts(model, prompts, seed=seed)
        return clips, {m: METRICS[m][0](clips) for m in PROMPT_METRICS}

    out: dict = {"held_out_pairs": [list(p) for p in held], "seed": seed}
    comp_prompts, _ = cap.prompt_set(held, per_pair=per_held_out_pair, seed=seed)
    _, out["compositional"] = score(comp_prompts)
    tr_prompts, _ = cap.prompt_set(trained, per_pair=per_trained_pair, seed=seed + 1)
    para_prompts, _ = cap.prompt_set(
        trained, per_pair=per_trained_pair, seed=seed + 1, templates=cap.HELD_OUT_TEMPLATES
    )
    _, out["trained"] = score(tr_prompts)
    _, out["paraphrase"] = score(para_prompts)
    out["paraphrase_ratio"] = {
        m: (out["paraphrase"][m] / out["trained"][m]) if out["trained"][m] > 0 else float("nan") for m in PROMPT_METRICS
    }
    neg_prompts, _ = cap.prompt_set(trained, per_pair=per_trained_pair, seed=seed + 2, loudness=False)
    plain = sample_prompts(model, neg_prompts, seed=seed)
    neg = sample_prompts(model, neg_prompts, seed=seed, negative="loud")
    a, b = loud_share(plain), loud_share(neg)
    out["negative"] = {
        "negative": "loud",
        "loud_share_without": a,
        "loud_share_with": b,
        "cut": (1 - b / a) if a > 0 else float("nan"),
    }
    out["n"] = {
        "compositional": len(comp_prompts),
        "trained": len(tr_prompts),
        "paraphrase": len(para_prompts),
        "negative": 2 * len(neg_prompts),
    }
    out["prompts_example"] = {
        "compositional": comp_prompts[:3],
        "trained": tr_prompts[:3],
        "paraphrase": para_prompts[:3],
        "negative": neg_prompts[:3],
    }
    return out


def run_text_starter(ctx) -> list[dict]:
    """``starter/audio-notes-text``: the shipped text-prompted starter, its card's check
    (its default prompts in turn, one clip each), scored with the prompt metrics; the data
    row scores real captioned notes (seed + 1) against the captions' attributes."""
    from polydiff import load
    from polydiff.bench.task import score_starter

    from .captions import note_caption
    from .clips import AudioClips
    from .data import captioned_notes
    from .metrics import METRICS
    from .plots import plot_log_mels

    ctx.phase("data")
    mod = load(f"starter:{TEXT_STARTER.starter}").modality
    prov = mod.config.get("data_provenance") or {}
    real = captioned_notes(
        1,
        timbres=prov.get("timbres"),
        pitches=prov.get("pitches"),
        seed=ctx.seed + 1,
        frontend=mod.config["frontend"],
    )
    import random

    rng = random.Random(ctx.seed)
    prompts = [note_caption(a, rng) for a in real.attributes]
    real_clips = AudioClips(real.waves, real.sample_rate, scorer=mod.scorer, prompts=prompts)

    def evaluate(clips):
        return {m: METRICS[m][0](clips) for m in PROMPT_METRICS}

    return score_starter(
        ctx,
        TEXT_STARTER,
        evaluate=evaluate,
        data_row=evaluate(real_clips),
        pictures=lambda clips, out: [
            plot_log_mels([("generated", clips.log_mel, [p[:18] for p in clips.prompts])], out / "log_mels.png")
        ],
        note="the card's check prompts (one clip each): accuracies move in steps of 1/n (n in the row) and are "
        "known to about ± 0.1; the data row scores real captioned notes (all four attributes named) "
        "with the same measurements.",
    )


#: the shipped text-prompted notes starter (scored by make demo like every starter)
TEXT_STARTER = BenchmarkTask(
    name="starter/audio-notes-text",
    modality="audio",
    model="audio_unet",
    run=run_text_starter,
    description="the shipped audio-notes-text starter (text prompts), scored with the prompt metrics",
    expected_s=10,
    starter="audio-notes-text",
)
#: every task of this plugin (the plugin registers each)
TASKS = (TASK, STARTER, TEXT_STARTER)
