"""The sampler-study benchmark runs end to end and its diffusers rows agree with ours where
the algorithms coincide (same start, same grid)."""

from __future__ import annotations

import json

import pytest

from polydiff.bench.sampler_study import run_sampler_study
from polydiff.bench.sampler_study_students import StudentConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on a shared 2-core machine


def test_study_writes_json_and_png(tmp_path):
    pytest.importorskip("diffusers")
    study = run_sampler_study(
        tmp_path,
        samplers=["ddim", "unipc", "ddpm"],
        nfe=(5, 10),
        grids=["trailing"],
        n=600,
        n_rmse=300,
        progress=False,
        problems=("mixture2d",),
        tuned_samplers=("unipc",),
        tune_nfe=(5,),
        n_calib=64,
        tune_evals=30,
        diffusers_schedulers=("DDIM", "UniPC"),
        student_config=StudentConfig(nfe=(1, 2), train_steps=20, batch_size=32, n_data=500, n_calib=32),
    )
    assert (tmp_path / "sampler_study.png").stat().st_size > 0
    saved = json.loads((tmp_path / "sampler_study.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(study["summary"]))
    rows = {(r["source"], r["sampler"], r["nfe"]): r for r in study["rows"] if r.get("grid") == "trailing"}
    for ours, theirs in (("ddim", "DDIM"), ("unipc", "UniPC")):
        for k in (5, 10):
            a, b = rows[("polydiff", ours, k)], rows[("diffusers", theirs, k)]
            assert abs(a["rmse_to_ode"] - b["rmse_to_ode"]) <= 1e-4 * b["rmse_to_ode"] + 1e-6
    assert rows[("polydiff", "unipc", 10)]["rmse_to_ode"] < rows[("polydiff", "unipc", 5)]["rmse_to_ode"]
    assert "rmse_to_ode" not in rows[("polydiff", "ddpm", 5)]  # stochastic: SW2 only
    assert {o["source"] for o in study["overhead"]} == {"polydiff", "diffusers"}
    # every deterministic diffusers scheduler at every spacing it takes (Karras where it has it)
    spacings = {r["grid"] for r in study["rows"] if r["source"] == "diffusers" and r["sampler"] == "UniPC"}
    assert spacings == {"leading", "trailing", "linspace", "leading+karras", "trailing+karras", "linspace+karras"}
    assert not [r for r in study["rows"] if "error" in r]
    tuned = [r for r in study["rows"] if r["grid"] == "tuned"]
    assert [(r["sampler"], r["nfe"], r["nfe_actual"]) for r in tuned] == [("unipc", 5, 5)]
    students = [r for r in study["rows"] if r["grid"] == "student"]  # a tiny one: schema only here
    assert [(r["sampler"], r["nfe"], r["nfe_actual"]) for r in students] == [
        ("consistency_student", k, k) for k in (1, 2)
    ]
    s5 = study["summary"]["mixture2d"]["nfe5"]
    assert s5["rmse_ratio"] == s5["best_ours"]["rmse_to_ode"] / s5["best_diffusers"]["rmse_to_ode"]
    best_theirs = min(r["rmse_to_ode"] for r in study["rows"] if r["source"] == "diffusers" and r["nfe"] == 5)
    assert s5["best_diffusers"]["rmse_to_ode"] == best_theirs
    from polydiff.bench.report import sampler_table

    text = "\n".join(sampler_table(study))
    assert f"| mixture2d | 5 | {s5['best_ours']['sampler']} ({s5['best_ours']['grid']}) |" in text
    assert f"{s5['rmse_ratio']:.2f}×" in text and "| problem | RMSE ≤ | polydiff | diffusers |" in text
    for target, need in study["summary"]["mixture2d"]["nfe_for_target"].items():
        for key, k in need.items():  # each entry is a run that reached the target at that NFE
            src, name = key.split("/")
            assert any(
                r["source"] == src
                and r["sampler"] == name
                and r["nfe_actual"] == k
                and r["rmse_to_ode"] <= float(target)
                for r in study["rows"]
                if "rmse_to_ode" in r
            )
    assert study["summary"]["overhead_ratio"]["ddim"] > 0
