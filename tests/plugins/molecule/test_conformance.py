"""The molecule plugin passes the conformance kit (:mod:`polydiff.testing`)."""

from __future__ import annotations

from polydiff.testing import check_plugin

#: a tiny run: 8 QM9 molecules, a 2-layer EGNN; EGNN is E(3)- and permutation-equivariant
OPTIONS = {
    "molecule": {
        "dataset_options": {"limit": 8},
        "network_kwargs": {"hidden": 16, "layers": 2},
        "equivariance": ("rotation", "reflection", "permutation"),
        "position_dims": 3,
    }
}


def test_molecule_plugin_conforms(tmp_path):
    # molecule/qm9 has no smoke budget (its quick budget trains for minutes): not run here
    rep = check_plugin("molecule", modality_options=OPTIONS, tmp_dir=tmp_path)
    assert ("equivariance", "modality 'molecule'") in rep.passed
