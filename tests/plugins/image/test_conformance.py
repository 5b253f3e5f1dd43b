"""The image plugin passes the conformance kit (:mod:`polydiff.testing`)."""

from __future__ import annotations

import pytest

from polydiff.testing import check_plugin

#: a tiny run: 16 scikit-learn digits (8×8), a one-level U-Net, class-balanced samples
OPTIONS = {
    "image": {
        "modality_config": {"dataset": "sklearn_digits"},
        "dataset_options": {"limit": 16},
        "network_kwargs": {"base_channels": 8, "channel_mult": [1], "attn_resolutions": []},
        "sample_cond": {"label": "balanced"},
    }
}


def test_image_plugin_conforms(tmp_path):
    # the metrics train a digit classifier first (≈ 20 s on one thread): the slow test runs them
    check_plugin("image", modality_options=OPTIONS, skip=["metrics"], tmp_dir=tmp_path)


@pytest.mark.slow
def test_image_metrics_conform(tmp_path):
    rep = check_plugin("image", modality_options=OPTIONS, checks=["files", "metrics"], tmp_dir=tmp_path)
    assert ("metrics", "metric 'image_class_accuracy'") in rep.passed
