"""The video modality plugin (registered through the polydiff entry-point group).

Registers the ``video`` modality, the ``video_unet`` (factorised space-time U-Net,
Ho et al. 2022) and ``video_dit`` (space-time-patch DiT) denoisers, the
``moving_digits`` and ``video_folder`` data sets, the video metrics and the
``video/moving_digits`` benchmark task. Imports are deferred as in every plugin (see
:mod:`polydiff.lazy`): Pillow, scikit-learn and mlxtend only inside the functions that use them.
"""

from __future__ import annotations

from polydiff.hookspecs import hookimpl
from polydiff.lazy import lazy_exports

#: public names by the submodule defining them, imported on first access (see polydiff.lazy)
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "modality": ["VideoModality", "Clip"],
        "io": ["write_gif", "read_frames", "write_strip_png"],
        "prediction": ["predict"],
    },
)


@hookimpl
def polydiff_register_modalities(register):
    from .modality import VideoModality

    register("video", VideoModality)


@hookimpl
def polydiff_register_networks(register):
    from .dit import SpaceTimeDiT
    from .networks import SpaceTimeUNet

    register("video_unet", SpaceTimeUNet, modality="video")
    register("video_dit", SpaceTimeDiT, modality="video")


@hookimpl
def polydiff_register_datasets(register):
    from .data import ClipFolder, MovingDigits

    register("moving_digits", MovingDigits, modality="video")
    register("video_folder", ClipFolder, modality="video")


@hookimpl
def polydiff_register_metrics(register):
    from .metrics import METRICS

    for name, (fn, higher) in METRICS.items():
        register(name, fn, modality="video", higher_is_better=higher)


@hookimpl
def polydiff_register_benchmarks(register):
    from .bench import TASK

    register(TASK.name, TASK, modality="video", suites=list(TASK.suites))
