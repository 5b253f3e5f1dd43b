"""The property-conditioning recipe runs end to end at a toy budget, and re-judges a saved
generator only when it was trained on the same split."""

import json

import pytest


@pytest.mark.slow
def test_property_recipe_smoke_and_rejudging_a_saved_generator(tmp_path, load_recipe):
    mod = load_recipe("molecule_property")
    tiny = ["--n-train", "40", "--predictor-minutes", "0.02", "--n-samples", "4", "--steps", "3"]
    tiny += ["--guidance", "1", "--shuffles", "2", "--hidden", "16", "--edge-dim", "8", "--layers", "2"]
    first = tmp_path / "first"
    report = mod.main([*tiny, "--generator-minutes", "0.02", "--out", str(first), "--results", str(first / "res")])
    for name in ("predictor.safetensors", "samples_w1.sdf", "metrics.json"):
        assert (first / name).exists(), name
    assert (first / "res" / "mae.png").exists()
    assert set(report["runs"][0]["mae"]) == {"alpha", "gap"}

    second = tmp_path / "second"
    again = mod.main(
        [*tiny, "--generator-from", str(first / "checkpoint"), "--out", str(second), "--results", str(second / "r")]
    )
    assert again["generator"]["from"] == str(first / "checkpoint")
    assert again["generator"]["steps"] == report["generator"]["steps"]
    assert json.loads((second / "metrics.json").read_text())["timing"]["generator_s"] == 0.0

    # a saved judge: the same predictions (the data bound on B is the same number), sampling on
    # a restart grid with an argmax last step
    third = tmp_path / "third"
    judged = mod.main(
        [*tiny, "--generator-from", str(first / "checkpoint"), "--predictor-from", str(first / "predictor.safetensors")]
        + ["--grid", "power:2+restart:0.2x1", "--final", "argmax", "--out", str(third), "--results", str(third / "r")]
    )
    assert judged["predictor"]["from"] == str(first / "predictor.safetensors")
    for q in ("alpha", "gap"):
        assert judged["baselines"][q]["data_lower_bound"] == report["baselines"][q]["data_lower_bound"]

    # a generator or judge from another subset would share molecules with the other's half: refused
    other = [a if a != "40" else "60" for a in tiny]
    with pytest.raises(ValueError, match="trained on split"):
        mod.main([*other, "--generator-from", str(first / "checkpoint"), "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="conditioned on"):
        mod.main(
            [
                *tiny,
                "--properties",
                "alpha",
                "--generator-from",
                str(first / "checkpoint"),
                "--out",
                str(tmp_path / "y"),
            ]
        )
    with pytest.raises(ValueError, match="judge fitted on other data"):
        mod.main([*other, "--predictor-from", str(first / "predictor.safetensors"), "--out", str(tmp_path / "z")])
