"""The audio plugin passes the conformance kit (:mod:`polydiff.testing`)."""

from __future__ import annotations

from polydiff.testing import check_plugin

#: a tiny run: one clip per class, 2-step VAE and classifier fits, a narrow U-Net; labelled
#: samples (label "cycle") so the class-dependent metrics run too
OPTIONS = {
    "audio": {
        "modality_config": {"vae_steps": 2, "classifier_steps": 2, "progress": False},
        "dataset_options": {"n_per_class": 1},
        "network_kwargs": {"ch": 8, "emb_dim": 16},
        "sample_cond": {"label": "cycle"},
    }
}


def test_audio_plugin_conforms(tmp_path):
    # audio/notes has no smoke budget (its quick budget trains for a minute): not run here
    rep = check_plugin("audio", modality_options=OPTIONS, tmp_dir=tmp_path)
    assert ("metrics", "metric 'audio_pitch_accuracy'") in rep.passed
