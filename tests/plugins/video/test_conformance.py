"""The video plugin passes the conformance kit (:mod:`polydiff.testing`)."""

from __future__ import annotations

import pytest

from polydiff.testing import check_plugin

#: a tiny run: 8 moving-digit clips of 4 frames at 16×16, a one-level U-Net, labelled samples
OPTIONS = {
    "video": {
        "modality_config": {"canvas": 16, "frames": 4},
        "dataset_options": {"n_clips": 8, "source": "sklearn"},
        "network_kwargs": {"channels": [8], "blocks": 1},
        "sample_cond": {"label": "random"},
    }
}


def test_video_plugin_conforms(tmp_path):
    # the metrics train frame classifiers first (≈ 30 s on one thread): the slow test runs them
    check_plugin("video", modality_options=OPTIONS, skip=["metrics"], tmp_dir=tmp_path)


@pytest.mark.slow
def test_video_metrics_conform(tmp_path):
    rep = check_plugin("video", modality_options=OPTIONS, checks=["files", "metrics"], tmp_dir=tmp_path)
    assert ("metrics", "metric 'video_frame_accuracy'") in rep.passed
