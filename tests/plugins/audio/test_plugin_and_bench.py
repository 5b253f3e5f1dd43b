"""Registration of the audio plugin and its benchmark task (the task run itself is slow)."""

import pytest
import torch

import polydiff


def test_components_registered_with_modality_and_direction():
    reg = polydiff.get_plugins()
    assert reg.registry("modality").entry("audio").plugin == "audio"
    assert reg.registry("network").entry("audio_unet").info["modality"] == "audio"
    for name in ("audio_notes", "audio_digits", "audio_folder"):
        assert reg.registry("dataset").entry(name).info["modality"] == "audio"
    directions = {
        "audio_lsd": False,
        "audio_mcd": False,
        "audio_spectral_convergence": False,
        "audio_class_accuracy": True,
        "audio_fd_ours": False,
        "audio_is_ours": True,
        "audio_kl_ours": False,
        "audio_pitch_accuracy": True,
    }
    for name, hib in directions.items():
        e = reg.registry("metric").entry(name)
        assert e.info["higher_is_better"] is hib and e.info["modality"] == "audio"
    assert "quick" in reg.registry("benchmark").entry("audio/notes").info["suites"]


def test_registered_metric_is_callable_through_the_registry():
    w = 0.1 * torch.randn(2, 16128, generator=torch.Generator().manual_seed(0))
    f = polydiff.registry("metric").get("audio_spectral_convergence")
    assert f(2 * w, reference=w) == pytest.approx(1.0, rel=1e-6)


def test_untrained_network_respects_cond_mask():
    from polydiff.plugins.audio.networks import LatentUNet

    net = LatentUNet(in_channels=4, n_classes=3, ch=16)
    with torch.no_grad():  # zero-initialised output convs would hide every difference
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(std=0.1)
    x, t = torch.randn(2, 4, 16, 16), torch.zeros(2)
    a = net(x, t, {"label": torch.tensor([0, 1]), "cond_mask": torch.tensor([0.0, 0.0])})
    b = net(x, t, {"label": torch.tensor([2, 2]), "cond_mask": torch.tensor([0.0, 0.0])})
    c = net(x, t, None)
    assert torch.allclose(a, b) and torch.allclose(a, c)  # masked labels → the null embedding
    d = net(x, t, {"label": torch.tensor([0, 1]), "cond_mask": torch.tensor([1.0, 1.0])})
    assert not torch.allclose(a, d)


@pytest.mark.slow
def test_quick_bench_task_beats_its_untrained_reference(tmp_path):
    from polydiff.bench import BenchContext

    task = polydiff.registry("benchmark").get("audio/notes")
    ctx = BenchContext(suite="quick", device=torch.device("cpu"), seed=0, out_dir=tmp_path, progress=False)
    rows = task.run(ctx)
    assert rows and rows[0]["task"] == "audio/notes"
    r = rows[0]
    m, unt, data = r["metrics"], r["reference"]["untrained"], r["reference"]["data"]
    assert m["audio_class_accuracy"] > unt["audio_class_accuracy"]
    assert m["audio_fd_ours"] < unt["audio_fd_ours"]
    assert data["audio_fd_ours"] < m["audio_fd_ours"]
    from polydiff.bench.report import untrained_verdicts

    judged, behind = untrained_verdicts(rows)  # every metric beats the untrained ceiling
    assert judged >= 5 and not behind, behind
    assert r["timing"]["sample_audio_s_per_s"] > 0 and r["timing"]["train_audio_s_per_s"] > 0
    assert any(str(f).endswith(".png") for f in r["files"]) and any(str(f).endswith(".wav") for f in r["files"])
    rt = r["round_trip"]
    assert rt["identity"]["sc"] == 0.0 and rt["griffin_lim"]["sc"] < rt["griffin_lim_lstsq"]["sc"]
