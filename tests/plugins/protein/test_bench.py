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
        assert m["protein_clash_share"] < u["protein_clash_share"]
        assert row["reference"]["data"]["protein_ca_ca_validity"] > 0.95
        assert row["timing"]["train_residues_per_s"] > 0 and row["timing"]["sample_residues_per_s"] > 0
        assert any(f.endswith(".png") for f in row["files"]) and any(f.endswith(".pdb") for f in row["files"])
    # At the quick budget (50 s of training) local geometry, clashes and (in most runs)
    # secondary structure beat the untrained ceiling; the global shape does not yet: 50-s
    # models are more compact than real 40–64 crops (Rg ratio ≈ 1.04 against 1.31; the
    # untrained network's 1-nm Gaussian cloud gives 1.54) and the Gaussian cloud's
    # pair-distance histogram is already within JS 0.01 of real crops'. An open shortfall
    # of issue 8, stated in the notes; the 16-minute recipe meets issue 5's targets.
    judged, behind = untrained_verdicts(rows)
    allowed = ("rg_ratio", "pair_distance_js", "strand_fraction", "helix_fraction")
    assert judged == 11 and not [b for b in behind if not b.endswith(allowed)], behind
