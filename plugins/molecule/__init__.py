"""The molecule modality plugin: E(3)-equivariant 3-D molecule generation (EDM class,
Hoogeboom et al. 2022) with RDKit in and out.

Registers (through the ``polydiff`` pluggy hooks): modality ``molecule``; networks
``egnn`` and ``e3nn_molecule``; datasets ``qm9``, ``sdf``, ``xyz``, ``smiles``; metrics
``mol_*`` (EDM's stability/validity/uniqueness/novelty, connected validity, bond-length and
bond-angle W1); benchmark task ``molecule/qm9``.

>>> import polydiff
>>> model = polydiff.load("runs/qm9")
>>> mols = model.sample(100, sampler="dpmpp_2m", steps=50, seed=0)   # RDKit Mols, 3-D
>>> polydiff.plugins.molecule.write_sdf(mols, "out.sdf")

Heavy modules (torch networks, RDKit, e3nn) are imported lazily.
"""

from __future__ import annotations

from polydiff.hookspecs import hookimpl

__version__ = "0.1.0"


def __getattr__(name):  # lazy public API: write_sdf, write_xyz, png_grid, load_qm9, inpaint_fragment, …
    from importlib import import_module

    homes = {
        "write_sdf": "io",
        "write_xyz": "io",
        "read_molecules": "io",
        "png_grid": "io",
        "to_smiles": "io",
        "load_qm9": "qm9",
        "download_qm9": "qm9",
        "load_sdf": "data",
        "load_xyz": "data",
        "load_smiles": "data",
        "MoleculeRecord": "data",
        "MoleculeDataset": "data",
        "MoleculeModality": "modality",
        "to_mol": "chem",
        "evaluate_molecules": "metrics",
        "inpaint_fragment": "fragments",
        "EGNNDenoiser": "egnn",
        "E3nnDenoiser": "e3nn_net",
    }
    if name in homes:
        return getattr(import_module(f"{__name__}.{homes[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _lazy_class(module: str, cls: str):
    """A tiny factory so registering a network does not import torch-heavy modules."""
    from importlib import import_module

    def build(**kwargs):
        return getattr(import_module(f"{__name__}.{module}"), cls)(**kwargs)

    build.__name__ = cls
    build.__doc__ = f"Build :class:`{__name__}.{module}.{cls}`."
    return build


@hookimpl
def polydiff_register_modalities(register):
    from .modality import MoleculeModality

    register("molecule", MoleculeModality)


@hookimpl
def polydiff_register_networks(register):
    register("egnn", _lazy_class("egnn", "EGNNDenoiser"), modality="molecule")
    register("e3nn_molecule", _lazy_class("e3nn_net", "E3nnDenoiser"), modality="molecule")


@hookimpl
def polydiff_register_datasets(register):
    from . import data, qm9

    register("qm9", qm9.load_qm9, modality="molecule")
    register("sdf", data.load_sdf, modality="molecule")
    register("xyz", data.load_xyz, modality="molecule")
    register("smiles", data.load_smiles, modality="molecule")


@hookimpl
def polydiff_register_metrics(register):
    from .metrics import METRICS

    for name, (fn, higher) in METRICS.items():
        register(name, fn, modality="molecule", higher_is_better=higher)


@hookimpl
def polydiff_register_benchmarks(register):
    from .bench import TASK

    register(TASK.name, TASK, modality="molecule", suites=list(TASK.suites))
