"""Consistency-distilled students as rows of the sampler study: a tiny student of the exact
2-D mixture lands near the converged PF-ODE's end point at 2 NFE (an untrained one does not),
and its rows have the schema the summary, NFE-for-target and the report table read."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.bench.sampler_study import _Problem, _summary, circle_mixture, nfe_for_target
from polydiff.bench.sampler_study_students import STUDENT_SAMPLER, StudentConfig, student_rows
from polydiff.schedules import DDPMLinear

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on a shared 2-core machine

TINY = dict(nfe=(1, 2), batch_size=128, n_data=4000, n_calib=200)


def test_tiny_student_beats_the_mean_and_an_untrained_student():
    sch = DDPMLinear()
    prob = _Problem("mixture2d", circle_mixture(), sch, n=1000, n_rmse=500, seed=0)
    rows = student_rows(prob, sch, 0, StudentConfig(train_steps=400, **TINY))
    untrained = student_rows(prob, sch, 0, StudentConfig(train_steps=0, **TINY))
    by_nfe = {r["nfe"]: r for r in rows}
    # trivial baseline: every sample at the mixture's mean (RMSE ≈ 4, the circle's radius)
    x = prob.z * sch.sigma_ve_max
    ref = prob.reference(x, torch.tensor([sch.sigma_ve_max, prob.s_end, 0.0], dtype=torch.float64))
    mean = float(((ref - prob.mix.w @ prob.mix.mu) ** 2).sum(1).mean().sqrt())
    bound = 0.6 * mean
    assert by_nfe[2]["rmse_to_ode"] < bound, (by_nfe[2]["rmse_to_ode"], mean)
    assert by_nfe[1]["rmse_to_ode"] < bound, (by_nfe[1]["rmse_to_ode"], mean)
    assert min(r["rmse_to_ode"] for r in untrained) > bound, ([r["rmse_to_ode"] for r in untrained], mean)
    # the study's row schema (and the student's own record)
    for r in rows:
        assert r["source"] == "polydiff" and r["sampler"] == STUDENT_SAMPLER and r["grid"] == "student"
        assert r["problem"] == "mixture2d" and r["nfe_actual"] == r["nfe"]
        assert {"sw2", "sw2_over_floor", "rmse_to_ode", "rmse_to_own_ode", "deterministic"} <= set(r)
        assert r["train_steps"] == 400 and r["train_seconds"] > 0 and math.isfinite(r["sw2_over_floor"])
        sig = r["student_sigmas"]
        assert len(sig) == r["nfe"] + 1 and sig[-1] == 0.0 and all(a > b for a, b in zip(sig, sig[1:]))
    assert by_nfe[1]["deterministic"] and not by_nfe[2]["deterministic"]
    summary = _summary(rows, [])["mixture2d"]
    assert summary["nfe2"]["best_ours"]["sampler"] == STUDENT_SAMPLER
    assert summary["nfe2"]["best_ours"]["grid"] == "student"
    assert nfe_for_target(rows, bound) == {f"polydiff/{STUDENT_SAMPLER}": 1}
    from polydiff.bench.report import sampler_table

    text = "\n".join(sampler_table({"rows": rows, "summary": {}}))
    assert f"| mixture2d | {STUDENT_SAMPLER} | student |" in text
