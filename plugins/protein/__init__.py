"""The protein modality plugin (registered through the polydiff entry-point group).

Cα-trace backbone generation: Biopython structures in (:mod:`.structures`, :mod:`.data`),
SE(3)-equivariant e3nn and EGNN denoisers (:mod:`.networks`), ideal N/C/O placement
(:mod:`.geometry`), P-SEA / DSSP secondary structure (:mod:`.secondary`), geometry metrics
(:mod:`.metrics`), PDB out (:mod:`.io`), motif scaffolding (:mod:`.motif`) and the
benchmark task (:mod:`.bench`). Heavy modules are imported inside the hooks.
"""

from __future__ import annotations

from polydiff.hookspecs import hookimpl


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

    # registry names carry the modality prefix (metric names are global)
    for name, (fn, higher) in METRICS.items():
        info = {"modality": "protein"}
        if higher is not None:
            info["higher_is_better"] = higher
        register(f"protein_{name}", fn, **info)


@hookimpl
def polydiff_register_benchmarks(register):
    from .bench import protein_task

    register("protein/domains50", protein_task(), modality="protein", suites=["quick", "standard", "gpu"])
