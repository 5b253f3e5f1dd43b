"""The quick benchmark task runs end to end and its trained metrics beat the untrained
reference (slow: trains for up to a minute)."""
import json

import pytest
import torch

from polydiff.bench.report import untrained_verdicts


@pytest.mark.slow
def test_quick_protein_task_beats_untrained(tmp_path):
    from polydiff.bench import BenchContext
    from polydiff.plugins.protein.bench import protein_task

    task = protein_task()
    ctx = BenchContext(suite="quick", device=torch.device("cpu"), seed=0, out_dir=tmp_path, progress=False)
    rows = task.run(ctx)
    assert rows
    for row in rows:
        json.dumps(row)
        m, u = row["metrics"], row["reference"]["untrained"]
        assert m["protein_ca_ca_deviation"] < u["protein_ca_ca_deviation"]
        assert abs(m["protein_rg_ratio"] - 1) < abs(u["protein_rg_ratio"] - 1)
        assert row["reference"]["data"]["protein_ca_ca_validity"] > 0.95
        assert row["timing"]["train_residues_per_s"] > 0 and row["timing"]["sample_residues_per_s"] > 0
        assert any(f.endswith(".png") for f in row["files"]) and any(f.endswith(".pdb") for f in row["files"])
    # At the quick budget (≈ 75 s of training) only the local geometry (Cα–Cα validity and
    # deviation) beats the untrained ceiling reliably: the untrained
    # net's random coils already have near-real global statistics (Rg ratio, pair-distance
    # histogram), rarely clash, and neither has secondary structure. An open shortfall of
    # issue 8, stated in the notes; the 17-minute recipe beats them all but helix/strand.
    judged, behind = untrained_verdicts(rows)
    must = ("ca_ca_validity", "ca_ca_deviation")
    assert judged >= 8 and not [b for b in behind if b.endswith(must)], behind
