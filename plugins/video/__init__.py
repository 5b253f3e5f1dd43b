"""The video modality plugin (registered through the polydiff entry-point group).

Registers the ``video`` modality, the ``video_unet`` (factorised space-time U-Net,
Ho et al. 2022) and ``video_dit`` (space-time-patch DiT) denoisers, the
``moving_digits`` and ``video_folder`` data sets, the video metrics and the
``video/moving_digits`` benchmark task. Heavy modules are imported inside the hooks.
"""

from polydiff.hookspecs import hookimpl


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
