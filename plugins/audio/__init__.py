"""The audio modality plugin (registered through the polydiff entry-point group).

Class-conditional latent diffusion on log-mel spectrograms: a KL-VAE trained by the
plugin, a U-Net denoiser in its latent, Griffin-Lim decoding behind the
``polydiff_audio_vocoder`` hook (a neural vocoder plugin may replace it).

>>> import polydiff
>>> model = polydiff.load("runs/notes")
>>> clips = model.sample(8, cond={"label": "piano_C4"}, guidance=3.0, seed=0)
>>> clips.waveform.shape, clips.sample_rate      # [8, 16128], 16000
>>> polydiff.plugins.audio.write_wav(clips, "out/")

Heavy modules are imported lazily inside the hooks: ``import polydiff`` loads every plugin.
"""

from __future__ import annotations

from polydiff.hookspecs import hookimpl

__all__ = ["write_wav", "AudioModality", "inpaint", "variation"]


def write_wav(wav, out, sample_rate=None, **kwargs):
    """Write clips as WAV files (see :func:`polydiff.plugins.audio.io.write_wav`)."""
    from .io import write_wav as _write

    return _write(wav, out, sample_rate, **kwargs)


def inpaint(model, clips, start_s, end_s, **kwargs):
    """Regenerate ``[start_s, end_s)`` seconds of each clip (see :mod:`.editing`)."""
    from .editing import inpaint as _inpaint

    return _inpaint(model, clips, start_s, end_s, **kwargs)


def variation(model, clips, strength, **kwargs):
    """SDEdit variation of clips with ``strength`` ∈ (0, 1] (see :mod:`.editing`)."""
    from .editing import variation as _variation

    return _variation(model, clips, strength, **kwargs)


def __getattr__(name):
    if name == "AudioModality":
        from .modality import AudioModality

        return AudioModality
    raise AttributeError(name)


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


def _notes(**options):
    from .data import synthetic_notes

    return synthetic_notes(**options)


def _digits(**options):
    from .data import spoken_digits

    return spoken_digits(**options)


def _folder(path, **options):
    from .data import audio_folder

    return audio_folder(path, **options)


@hookimpl
def polydiff_register_datasets(register):
    register("audio_notes", _notes, modality="audio")
    register("audio_digits", _digits, modality="audio")
    register("audio_folder", _folder, modality="audio")


def _metric(name):
    def f(samples, reference=None, **options):
        from .metrics import METRICS

        return METRICS[name][0](samples, reference=reference, **options)

    f.__name__ = name
    return f


#: metric name → higher_is_better (kept here so registering needs no heavy import)
_METRIC_DIRECTIONS = {
    "spectral_convergence": False,
    "lsd": False,
    "mcd": False,
    "class_accuracy": True,
    "fd_ours": False,
    "is_ours": True,
    "kl_ours": False,
    "pitch_accuracy": True,
}
#: registry names carry the modality prefix (metric names are global across plugins)
PREFIX = "audio_"


@hookimpl
def polydiff_register_metrics(register):
    for name, hib in _METRIC_DIRECTIONS.items():
        register(PREFIX + name, _metric(name), modality="audio", higher_is_better=hib)


@hookimpl
def polydiff_register_benchmarks(register):
    from polydiff.bench import BenchmarkTask

    def run(ctx):
        from .bench import run_notes

        return run_notes(ctx, task)

    task = BenchmarkTask(
        name="audio/notes",
        modality="audio",
        model="audio_unet",
        run=run,
        description="class-conditional notes in a mel-VAE latent, Griffin-Lim decoding",
        expected_s=35,
    )
    register("audio/notes", task, modality="audio", suites=["quick", "standard", "gpu"])
