"""The protein plugin passes the conformance kit (:mod:`polydiff.testing`)."""

from __future__ import annotations

from polydiff.testing import check_plugin

#: a tiny run: domains cropped to 20–24 residues, a one-layer e3nn denoiser (SE(3)-equivariant;
#: not permutation-equivariant: residues are a chain)
OPTIONS = {
    "protein": {
        "dataset_options": {"crop": [20, 24]},
        "network_kwargs": {"scalars": 8, "vectors": 4, "layers": 1, "lmax": 1},
        "equivariance": ("rotation",),
        "position_dims": 3,
    }
}


def test_protein_plugin_conforms(tmp_path):
    # protein/domains50 has no smoke budget (its quick budget trains for minutes): not run here
    rep = check_plugin("protein", modality_options=OPTIONS, tmp_dir=tmp_path)
    assert ("equivariance", "modality 'protein'") in rep.passed
