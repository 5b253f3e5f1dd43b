"""polydiff-pointcloud: an example third-party modality plugin.

Registers, through polydiff's pluggy hooks only:

- modality ``pointcloud``: sets of N points in 2-D with zero centre of mass
  (:class:`polydiff.spaces.ZeroCoMSpace` with ``n_pos=2``);
- network ``pointcloud_deepsets``: a permutation-equivariant DeepSets denoiser;
- dataset ``rings2d``: seeded noisy rings of random radius and rotation;
- metric ``pointcloud_ring_error``: how far points lie from the cloud's own best-fit ring;
- benchmark task ``pointcloud/rings``;

and a second modality whose state mixes a continuous and a categorical part (the template
for modalities with ``Modality.parts``):

- modality ``pointcloud_labelled``: points on two concentric rings, each labelled with its
  ring (parts ``pos``, continuous with zero centre of mass, and ``label``, categorical);
- network ``pointcloud_labelled_deepsets``: a DeepSets denoiser over both parts;
- dataset ``rings2d_labelled``;
- metrics ``pointcloud_labelled_label_accuracy`` (labels match the nearest ring) and
  ``pointcloud_labelled_radius_error`` (points lie on their label's ring).
"""

from __future__ import annotations

from polydiff.hookspecs import hookimpl

from .labelled import LabelledPointCloudModality, LabelledRingsDataset, label_accuracy, radius_error
from .labelled_network import LabelledDeepSets
from .modality import PointCloudModality, RingsDataset, ring_error
from .network import DeepSetsDenoiser

__version__ = "0.1.0"


@hookimpl
def polydiff_register_modalities(register):
    register("pointcloud", PointCloudModality)
    register("pointcloud_labelled", LabelledPointCloudModality)


@hookimpl
def polydiff_register_networks(register):
    register("pointcloud_deepsets", DeepSetsDenoiser, modality="pointcloud")
    register("pointcloud_labelled_deepsets", LabelledDeepSets, modality="pointcloud_labelled")


@hookimpl
def polydiff_register_datasets(register):
    register("rings2d", RingsDataset, modality="pointcloud")
    register("rings2d_labelled", LabelledRingsDataset, modality="pointcloud_labelled")


@hookimpl
def polydiff_register_metrics(register):
    register("pointcloud_ring_error", ring_error, modality="pointcloud", higher_is_better=False)
    register(
        "pointcloud_labelled_label_accuracy", label_accuracy, modality="pointcloud_labelled", higher_is_better=True
    )
    register("pointcloud_labelled_radius_error", radius_error, modality="pointcloud_labelled", higher_is_better=False)


@hookimpl
def polydiff_register_benchmarks(register):
    from .bench import TASK, TASK_SMALL

    register(TASK.name, TASK, modality="pointcloud", suites=list(TASK.suites) + ["smoke"])
    # the 8-point variant exists for the runner's own tests (two quick tasks), not for reports
    register(TASK_SMALL.name, TASK_SMALL, modality="pointcloud", suites=["smoke"])
