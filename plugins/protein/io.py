"""Protein structures out: PDB files through ``Bio.PDB.PDBIO``, and reading them back.

A generated Cα trace is written either with N, C, O placed by ideal geometry
(:func:`polydiff.plugins.protein.geometry.place_backbone`) or as a Cα-only model; both
kinds are labelled with REMARK 250 lines so nobody mistakes them for experimental models.
Files are written atomically (:func:`polydiff.checkpoint.atomic_write_bytes`).
Residue names are unknown for generated backbones and written as GLY. Chain IDs and
residue numbers come from the :class:`Backbone` record and survive a re-parse.
"""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np

from polydiff.checkpoint import atomic_write_bytes

from .structures import BACKBONE_ATOMS, Backbone, load_backbones, structure_files

REMARK_IDEAL = "REMARK 250 POLYDIFF GENERATED BACKBONE: N, C, O PLACED WITH IDEAL GEOMETRY FROM CA TRACE"
REMARK_CA_ONLY = "REMARK 250 POLYDIFF GENERATED CA-ONLY MODEL (NO N, C, O ATOMS)"
REMARK_REAL = "REMARK 250 POLYDIFF BACKBONE FROM INPUT STRUCTURE"


def backbone_structure(bbs: list[Backbone], structure_id: str = "polydiff", ca_only: bool = False):
    """A Biopython ``Structure`` (one model) holding the chains of ``bbs``."""
    from Bio.PDB.StructureBuilder import StructureBuilder

    sb = StructureBuilder()
    sb.init_structure(structure_id)
    sb.init_model(0)
    serial = 1
    seen = set()
    for bb in bbs:
        if bb.chain_id in seen:
            raise ValueError(f"chain {bb.chain_id!r} appears twice in one structure")
        seen.add(bb.chain_id)
        sb.init_chain(bb.chain_id)
        icodes = bb.icodes or [""] * len(bb)
        for k in range(len(bb)):
            sb.init_seg("    ")
            sb.init_residue(bb.res_names[k], " ", int(bb.res_ids[k]), icodes[k] or " ")
            for a, name in enumerate(BACKBONE_ATOMS):
                if ca_only and name != "CA":
                    continue
                xyz = bb.coords[k, a]
                if not np.isfinite(xyz).all():
                    continue
                sb.init_atom(name, xyz.astype(np.float32), 0.0, 1.0, " ", f" {name:<3}", serial, name[0])
                serial += 1
    return sb.get_structure()


def write_pdb(bbs: Backbone | list[Backbone], path: str | Path, *, ca_only: bool | None = None) -> Path:
    """Write one PDB file with the given chains. ``ca_only=None``: Cα-only when N/C/O are
    missing. The REMARK 250 line says how the backbone atoms were obtained."""
    from Bio.PDB import PDBIO

    bbs = [bbs] if isinstance(bbs, Backbone) else list(bbs)
    if ca_only is None:
        ca_only = not all(np.isfinite(b.coords).all() for b in bbs)
    if ca_only:
        remark = REMARK_CA_ONLY
    elif any(b.ideal_placed for b in bbs):
        remark = REMARK_IDEAL
    else:
        remark = REMARK_REAL
    pdbio = PDBIO()
    pdbio.set_structure(backbone_structure(bbs, ca_only=ca_only))
    buf = _io.StringIO()
    pdbio.save(buf)
    path = Path(path)
    atomic_write_bytes(path, (remark + "\n" + buf.getvalue()).encode())
    return path


def write_samples(
    samples: list[Backbone], folder: str | Path, prefix: str = "sample", ca_only: bool = False
) -> list[Path]:
    """One PDB per sample: ``folder/<prefix>_000.pdb`` …"""
    folder = Path(folder)
    return [write_pdb(s, folder / f"{prefix}_{i:03d}.pdb", ca_only=ca_only or None) for i, s in enumerate(samples)]


def read_structures(path: str | Path, on_error: str = "raise") -> list[Backbone]:
    """All chains of a file or of every structure file in a folder (breaks kept, masked)."""
    out = []
    for f in structure_files(path):
        out += load_backbones(f, breaks="mask", on_error=on_error)
    return out
