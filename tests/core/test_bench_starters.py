"""The quick suite's starter-model tasks: a shipped starter sampled with its card's defaults
and scored beside its own data and untrained rows (issue 19, point 2)."""

from __future__ import annotations

from pathlib import Path

import torch

import polydiff
from polydiff import starters
from polydiff.bench.report import render, untrained_verdicts
from polydiff.bench.task import UNTRAINED_NFE, BenchContext, untrained_copy


def test_every_shipped_starter_has_a_quick_suite_task():
    tasks = {e.obj.starter: e for e in polydiff.registry("benchmark") if getattr(e.obj, "starter", "")}
    assert set(starters.available()) <= set(tasks), (starters.available(), sorted(tasks))
    for name, e in tasks.items():
        assert e.name == f"starter/{name}" and "quick" in (e.info.get("suites") or e.obj.suites)


def test_untrained_copy_reinitialises_only_the_denoiser():
    model = polydiff.load("starter:audio-notes")
    u = untrained_copy(model, seed=3)
    flat = [torch.cat([p.flatten() for p in m.parameters()]) for m in (model.network, u.network, u.ema)]
    assert not torch.allclose(flat[0], flat[1]) and torch.equal(flat[1], flat[2])
    assert u.modality is model.modality and u.extra["sample_defaults"] == model.extra["sample_defaults"]
    again = torch.cat([p.flatten() for p in untrained_copy(model, seed=3).network.parameters()])
    assert torch.equal(again, flat[1])  # seeded
    assert torch.equal(torch.cat([p.flatten() for p in model.network.parameters()]), flat[0])  # untouched


def test_audio_starter_task_scores_the_card_sample_count_beside_its_references(tmp_path):
    task = polydiff.registry("benchmark").get("starter/audio-notes")
    ctx = BenchContext(suite="quick", device=torch.device("cpu"), seed=0, out_dir=tmp_path, progress=False)
    rows = task.run(ctx)
    assert len(rows) == 1
    row = rows[0]
    card = polydiff.load("starter:audio-notes").extra
    assert row["starter"] == "audio-notes" and row["n_samples"] == card["starter"]["check"]["n"]
    assert (row["sampler"], row["nfe"]) == (card["sample_defaults"]["sampler"], card["sample_defaults"]["nfe"])
    assert set(row["reference"]) == {"data", "untrained"} and row["note"]
    assert row["untrained_nfe"] == UNTRAINED_NFE < row["nfe"]  # noise at any NFE: the cheap run
    assert set(row["metrics"]) == set(row["reference"]["data"]) == set(row["reference"]["untrained"])
    files = [Path(f) for f in row["files"]]
    assert all(f.exists() for f in files)
    assert sum(f.suffix == ".wav" for f in files) == row["n_samples"] and any(f.suffix == ".png" for f in files)
    judged, behind = untrained_verdicts(rows)
    assert judged == 5 and not behind, behind
    ctx.end_phase()  # (the runner ends the last phase)
    assert {"load starter", "reference", "sample", "evaluate"} <= set(ctx.phases)
    res = {"polydiff_version": "0", "suite": "q", "device": "cpu", "started": "now", "tasks": rows}
    md = render(res, {}, tmp_path, [])
    section = md[md.index("## Starter models") :]
    assert "| starter/audio-notes | *data* |" in section and "| starter/audio-notes | *untrained* |" in section
