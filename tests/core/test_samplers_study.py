"""The sampler-study benchmark runs end to end and its diffusers rows agree with ours where
the algorithms coincide (same start, same grid)."""

from __future__ import annotations

import json

import pytest
import torch

from polydiff.bench.sampler_study import run_sampler_study


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
    )
    assert (tmp_path / "sampler_study.png").stat().st_size > 0
    saved = json.loads((tmp_path / "sampler_study.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(study["summary"]))
    rows = {(r["source"], r["sampler"], r["nfe"]): r for r in study["rows"]}
    for ours, theirs in (("ddim", "DDIM"), ("unipc", "UniPC")):
        for k in (5, 10):
            a, b = rows[("polydiff", ours, k)], rows[("diffusers", theirs, k)]
            assert abs(a["rmse_to_ode"] - b["rmse_to_ode"]) <= 1e-4 * b["rmse_to_ode"] + 1e-6
    assert rows[("polydiff", "unipc", 10)]["rmse_to_ode"] < rows[("polydiff", "unipc", 5)]["rmse_to_ode"]
    assert "rmse_to_ode" not in rows[("polydiff", "ddpm", 5)]  # stochastic: SW2 only
    assert {o["source"] for o in study["overhead"]} == {"polydiff", "diffusers"}
    assert study["summary"]["overhead_ratio"]["ddim"] > 0
