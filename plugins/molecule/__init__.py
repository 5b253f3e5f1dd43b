"""The molecule modality plugin: E(3)-equivariant 3-D molecule generation (EDM class,
Hoogeboom et al. 2022) with RDKit in and out.

Registers (through the ``polydiff`` pluggy hooks): modality ``molecule``; networks
``egnn`` and ``e3nn_molecule``; datasets ``qm9``, ``sdf``, ``xyz``, ``smiles``; metrics
``molecule_*`` (EDM's stability/validity/uniqueness/novelty, connected validity, bond-length and
bond-angle W1); benchmark task ``molecule/qm9``.

The bond-aware joint model (issue 18): modality ``molecule_joint`` (positions, atom types,
formal charges and bond orders as one mixed state, :mod:`.joint`), its network
``egnn_joint`` (EGNN with edge updates, :mod:`.joint_network`), dataset ``qm9_bonds`` (QM9
with RDKit-perceived bonds and charges, :mod:`.bonds_qm9`) and the bond-aware metrics
``molecule_joint_*`` and chemistry checks (:mod:`.chem_checks`); ``molecule_joint`` conditions
on QM9 properties (``properties=["alpha", "gap"]``), judged by the E(3)-invariant EGNN
regressor :class:`~.property_predictor.PropertyPredictor` (EDM's protocol).

>>> import polydiff
>>> model = polydiff.load("runs/qm9")
>>> mols = model.sample(100, sampler="dpmpp_2m", steps=50, seed=0)   # RDKit Mols, 3-D
>>> polydiff.plugins.molecule.write_sdf(mols, "out.sdf")

Imports are deferred as in every plugin (see :mod:`polydiff.lazy`): RDKit and e3nn only
inside the functions that use them, submodules when first used.
"""

from __future__ import annotations

from polydiff.hookspecs import hookimpl
from polydiff.lazy import lazy_exports

__version__ = "0.1.0"

#: public names by the submodule defining them, imported on first access (see polydiff.lazy)
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "modality": ["MoleculeModality"],
        "io": ["write_sdf", "write_xyz", "read_molecules", "png_grid", "to_smiles"],
        "qm9": ["load_qm9", "download_qm9"],
        "data": ["load_sdf", "load_xyz", "load_smiles", "MoleculeRecord", "MoleculeDataset"],
        "chem": ["to_mol"],
        "metrics": ["evaluate_molecules"],
        "fragments": ["inpaint_fragment"],
        "egnn": ["EGNNDenoiser"],
        "e3nn_net": ["E3nnDenoiser"],
        "joint": ["JointMoleculeModality"],
        "joint_network": ["JointEGNN"],
        "bonds_qm9": ["perceive_bonds", "qm9_bond_table", "attach_bonds", "load_qm9_bonds"],
        "decode": ["bonded_mol", "read_bonded_sdf"],
        "chem_checks": ["chemistry_report"],
        "property_predictor": ["PropertyPredictor", "fit_predictor"],
    },
)


@hookimpl
def polydiff_register_modalities(register):
    from .joint import JointMoleculeModality
    from .modality import MoleculeModality

    register("molecule", MoleculeModality)
    register("molecule_joint", JointMoleculeModality)


@hookimpl
def polydiff_register_networks(register):
    from .e3nn_net import E3nnDenoiser
    from .egnn import EGNNDenoiser

    register("egnn", EGNNDenoiser, modality="molecule")
    register("e3nn_molecule", E3nnDenoiser, modality="molecule")
    from .joint_network import JointEGNN

    register("egnn_joint", JointEGNN, modality="molecule_joint")


@hookimpl
def polydiff_register_datasets(register):
    from . import data, qm9

    register("qm9", qm9.load_qm9, modality="molecule")
    register("sdf", data.load_sdf, modality="molecule")
    register("xyz", data.load_xyz, modality="molecule")
    register("smiles", data.load_smiles, modality="molecule")
    from .bonds_qm9 import load_qm9_bonds

    register("qm9_bonds", load_qm9_bonds, modality="molecule_joint")


@hookimpl
def polydiff_register_metrics(register):
    from .metrics import METRICS

    for name, (fn, higher) in METRICS.items():
        register(name, fn, modality="molecule", higher_is_better=higher)
    from .chem_checks import METRICS as BONDED

    for name, (fn, higher) in BONDED.items():
        register(name, fn, modality="molecule_joint", higher_is_better=higher)


@hookimpl
def polydiff_register_benchmarks(register):
    from .bench import TASKS

    for task in TASKS:  # molecule/qm9, molecule_joint/qm9 and the starter's task
        register(task.name, task, modality=task.modality, suites=list(task.suites))
