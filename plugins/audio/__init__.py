"""The audio modality plugin (registered through the polydiff entry-point group).

Class-conditional (or text-prompted, ``config["text"]``) latent diffusion on log-mel
spectrograms: a KL-VAE trained by the plugin, a U-Net denoiser in its latent, Griffin-Lim decoding behind the
``polydiff_audio_vocoder`` hook (a neural vocoder plugin may replace it).

>>> import polydiff
>>> model = polydiff.load("runs/notes")
>>> clips = model.sample(8, cond={"label": "piano_C4"}, guidance=3.0, seed=0)
>>> clips.waveform.shape, clips.sample_rate      # [8, 16128], 16000
>>> polydiff.plugins.audio.write_wav(clips, "out/")

Imports are deferred as in every plugin (see :mod:`polydiff.lazy`): ``import polydiff``
loads every plugin package, so this one imports its submodules only when used.
"""

from __future__ import annotations

from polydiff.hookspecs import hookimpl
from polydiff.lazy import lazy_exports

#: public names by the submodule defining them, imported on first access (see polydiff.lazy)
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "modality": ["AudioModality"],
        "clips": ["AudioClips"],
        "io": ["write_wav", "read_audio"],
        "editing": ["inpaint", "variation"],
        "captions": ["parse_prompt"],
    },
)


@hookimpl
def polydiff_add_hookspecs(pm):
    from . import hookspecs

    caller = getattr(pm.hook, "polydiff_audio_vocoder", None)
    # pluggy creates a spec-less caller for an implementation it has seen before its spec
    if caller is None or getattr(caller, "spec", None) is None:
        pm.add_hookspecs(hookspecs)


@hookimpl(trylast=True)
def polydiff_audio_vocoder(log_mel, frontend):
    """Default vocoder: non-negative mel inversion + 32-iteration Griffin-Lim."""
    from .vocoder import griffin_lim_vocoder

    return griffin_lim_vocoder(log_mel, frontend)


@hookimpl
def polydiff_register_modalities(register):
    from .modality import AudioModality

    register("audio", AudioModality)


@hookimpl
def polydiff_register_networks(register):
    from .networks import LatentUNet

    register("audio_unet", LatentUNet, modality="audio")


@hookimpl
def polydiff_register_datasets(register):
    from .data import audio_folder, captioned_notes, captioned_spoken_digits, spoken_digits, synthetic_notes

    register("audio_notes", synthetic_notes, modality="audio")
    register("audio_digits", spoken_digits, modality="audio")
    register("audio_notes_text", captioned_notes, modality="audio")  # captioned (text prompts)
    register("audio_digits_text", captioned_spoken_digits, modality="audio")
    register("audio_folder", audio_folder, modality="audio")


@hookimpl
def polydiff_register_metrics(register):
    from .metrics import METRICS

    for name, (fn, higher) in METRICS.items():
        register(name, fn, modality="audio", higher_is_better=higher)


@hookimpl
def polydiff_register_benchmarks(register):
    from .bench import TASKS

    for task in TASKS:  # audio/notes and the starter's task
        register(task.name, task, modality="audio", suites=list(task.suites))
