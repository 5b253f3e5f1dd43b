"""The protein recipe runs end to end at a toy budget and writes what its docstring lists."""

import json

import pytest


@pytest.mark.slow
def test_protein_recipe_smoke(tmp_path, load_recipe):
    mod = load_recipe("protein")
    out = tmp_path / "run"
    report = mod.main(
        ["--out", str(out), "--size", "tiny", "--steps", "4", "--samples", "2", "--nfe", "4", "--crop", "30", "40"]
    )
    for name in ("metrics.json", "traces.png", "contacts.png", "training_curve.png"):
        assert (out / name).exists(), name
    assert len(list((out / "samples").glob("*.pdb"))) == 2
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["args"]["s_noise"] == 0.7 and saved["args"]["frame_features"] is True
    assert set(report["samples"]) == set(report["data"]) and report["scaffold"]["motif_rmsd_max"] <= 0.01
    # the checkpoint carries the frame-feature network
    import polydiff

    model = polydiff.load(out / "checkpoint")
    assert model.network.frame_features and len(model.network.offsets) == 16
