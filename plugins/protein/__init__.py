"""The protein modality plugin (registered through the polydiff entry-point group).

Cα-trace backbone generation: Biopython structures in (:mod:`.structures`, :mod:`.data`),
SE(3)-equivariant e3nn and EGNN denoisers (:mod:`.networks`), ideal N/C/O placement
(:mod:`.geometry`), P-SEA / DSSP secondary structure (:mod:`.secondary`), geometry metrics
(:mod:`.metrics`), PDB out (:mod:`.io`), motif scaffolding (:mod:`.motif`) and the
benchmark task (:mod:`.bench`). Imports are deferred as in every plugin (see
:mod:`polydiff.lazy`): Biopython and e3nn only inside the functions that use them.
"""

from __future__ import annotations

from polydiff.hookspecs import hookimpl
from polydiff.lazy import lazy_exports

#: public names by the submodule defining them, imported on first access (see polydiff.lazy)
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "modality": ["ProteinModality"],
        "structures": ["Backbone", "load_backbones"],
        "io": ["write_pdb", "read_structures"],
        "motif": ["scaffold"],
    },
)


@hookimpl
def polydiff_register_modalities(register):
    from .modality import ProteinModality

    register("protein", ProteinModality)


@hookimpl
def polydiff_register_networks(register):
    from .frame_net import FrameDenoiser
    from .networks import E3Denoiser, EGNNDenoiser

    register("protein_e3nn", E3Denoiser, modality="protein")
    register("protein_egnn", EGNNDenoiser, modality="protein")
    register("protein_frames", FrameDenoiser, modality="protein")


@hookimpl
def polydiff_register_datasets(register):
    from .data import shipped_domains_dataset, structure_folder_dataset

    register("protein_domains50", shipped_domains_dataset, modality="protein")
    register("protein_structures", structure_folder_dataset, modality="protein")


@hookimpl
def polydiff_register_metrics(register):
    from .metrics import METRICS

    for name, (fn, higher) in METRICS.items():
        register(name, fn, modality="protein", higher_is_better=higher)


@hookimpl
def polydiff_register_benchmarks(register):
    from .bench import STARTER, protein_task

    for task in (protein_task(), STARTER):  # protein/domains50 and the starter's task
        register(task.name, task, modality="protein", suites=list(task.suites))
