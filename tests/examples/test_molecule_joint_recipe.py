"""The joint molecule recipe runs end to end at a toy budget, with formula conditioning and
triangle edge updates, and writes what its docstring promises."""

import json

import pytest


@pytest.mark.slow
def test_joint_recipe_smoke_with_formula_and_triangles(tmp_path, load_recipe):
    import polydiff

    out = tmp_path / "run"
    tiny = ["--n-train", "60", "--steps", "3", "--minutes", "1", "--batch-size", "8", "--n-samples", "6"]
    tiny += ["--sample-steps", "4", "--grid", "power:3+restart:0.3x1", "--hidden", "16", "--edge-dim", "8"]
    tiny += ["--layers", "3", "--formula", "--triangle-every", "2", "--threads", "1", "--out", str(out)]
    report = load_recipe("molecule_joint").main(tiny)
    for name in ("samples.sdf", "samples.png", "ring_sizes.png", "training_curve.png", "metrics.json"):
        assert (out / name).exists(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["timing"]["train_steps"] == report["timing"]["train_steps"] == 3
    assert set(saved["chemistry"]) == {"samples", "QM9 test"}
    assert saved["chemistry"]["QM9 test"]["ring_hist"] is not None  # QM9 has rings
    assert "molecule_joint_ring_size_tv" in saved["trained"]
    model = polydiff.load(out / "checkpoint")
    # every second block counted back from the last of three: blocks 2 and 0
    assert [b.triangle is not None for b in model.network.blocks] == [True, False, True]
    assert "atom" not in model.parts  # the formula gives the atom types
