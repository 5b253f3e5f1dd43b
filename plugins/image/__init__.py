"""The image modality plugin (registered through the polydiff entry-point group).

Modality ``image``; networks ``image_unet`` (:class:`.unet.UNet`) and ``image_dit``
(:class:`.dit.DiT`); data sets ``mnist5k``, ``sklearn_digits``, ``image_folder``,
``image_npz``; metrics ``image_class_accuracy``, ``image_fd_ours``, ``image_kid_ours``,
``image_precision_ours``, ``image_recall_ours`` and the prompt metrics ``image_prompt_*``
(text-prompt models: digit, thickness, slant, size accuracy and alignment); benchmark tasks
``image/digits8``, ``image/mnist`` and the starter rows. Text prompts (issue 20): captions
and attribute measurement in :mod:`.captions`, ``modality_config={"text": {...}}``.
Imports are deferred as in every plugin (see :mod:`polydiff.lazy`):
scikit-learn, mlxtend and Pillow only inside the functions that use them.
"""

from __future__ import annotations

from polydiff.hookspecs import hookimpl
from polydiff.lazy import lazy_exports

#: public names by the submodule defining them, imported on first access (see polydiff.lazy)
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "modality": ["ImageModality"],
        "io": ["ImageSample", "save_image", "save_grid", "write_samples", "read_samples", "ddim_interpolation"],
        "edit": ["inpaint", "sdedit"],
        "captions": ["measure_attributes", "parse_prompt", "CaptionedImageDataset"],
        "superres": ["super_resolve"],
    },
)


@hookimpl
def polydiff_register_modalities(register):
    from .modality import ImageModality

    register("image", ImageModality)


@hookimpl
def polydiff_register_networks(register):
    from .dit import DiT
    from .unet import UNet

    register("image_unet", UNet, modality="image")
    register("image_dit", DiT, modality="image")


@hookimpl
def polydiff_register_datasets(register):
    from . import data

    for name, fn in data.LOADERS.items():
        register(name, fn, modality="image")


@hookimpl
def polydiff_register_metrics(register):
    from .metrics import METRICS

    for name, (fn, higher) in METRICS.items():
        register(name, fn, modality="image", higher_is_better=higher)


@hookimpl
def polydiff_register_benchmarks(register):
    from .bench import TASKS

    for task in TASKS:
        register(task.name, task, modality="image", suites=list(task.suites))
