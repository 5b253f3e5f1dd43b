"""The out-of-tree example plugin passes the conformance kit (step 0 of the plugin guide),
with the options it declares itself (``PointCloudModality.conformance``)."""

from __future__ import annotations

from polydiff.testing import CHECKS, check_plugin


def test_example_plugin_conforms(tmp_path):
    rep = check_plugin("polydiff_pointcloud", tmp_dir=tmp_path)
    assert rep.plugin == "pointcloud"
    assert {check for check, _ in rep.passed} == set(CHECKS)
    assert ("equivariance", "modality 'pointcloud'") in rep.passed  # declared: permutation
    assert ("benchmark", "benchmark 'pointcloud/rings8'") in rep.passed  # smoke budget
