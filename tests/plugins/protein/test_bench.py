"""The quick benchmark task runs end to end and its trained metrics beat the untrained
reference (slow: trains for about two minutes)."""

import json

import pytest
import torch

from polydiff.bench.report import untrained_verdicts


@pytest.mark.slow
def test_quick_protein_task_beats_untrained(tmp_path):
    from polydiff.bench import BenchContext
    from polydiff.plugins.protein.bench import QUICK, protein_task

    task = protein_task()
    ctx = BenchContext(suite="quick", device=torch.device("cpu"), seed=0, out_dir=tmp_path, progress=False)
    rows = task.run(ctx)
    assert rows
    for row in rows:
        json.dumps(row)
        m, u = row["metrics"], row["reference"]["untrained"]
        assert m["protein_ca_ca_deviation"] < u["protein_ca_ca_deviation"]
        assert m["protein_clash_share"] < u["protein_clash_share"]
        assert row["reference"]["data"]["protein_ca_ca_validity"] > 0.95
        assert row["timing"]["train_residues_per_s"] > 0 and row["timing"]["sample_residues_per_s"] > 0
        assert any(f.endswith(".png") for f in row["files"]) and any(f.endswith(".pdb") for f in row["files"])
    # every metric, global shape and secondary structure included, beats the untrained ceiling
    # (distribution metrics against real crops of the sampled lengths)
    judged, behind = untrained_verdicts(rows)
    assert judged == 11 and not behind, behind
    assert rows[0]["train_steps"] == QUICK["steps"]  # a step budget, not a wall-clock one: same training on any machine


def test_protein_training_is_deterministic_for_a_seed():
    from polydiff.plugins.protein.bench import train_model

    runs = [
        train_model("protein_egnn", "tiny", steps=8, batch_size=2, crop=(20, 30), seed=3, progress=False)
        for _ in range(2)
    ]
    a, b = (torch.cat([p.detach().flatten() for p in m.network.parameters()]) for m, _, _ in runs)
    assert torch.equal(a, b)
    assert runs[0][2]["losses"] == runs[1][2]["losses"]
