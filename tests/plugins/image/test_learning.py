"""Heavier checks that the image models learn (marked slow)."""

import pytest
import torch

import polydiff
from polydiff.bench.task import BenchContext
from polydiff.training import TrainConfig, train


@pytest.mark.slow
def test_quick_bench_task_beats_untrained(tmp_path):
    from polydiff.plugins.image.bench import DIGITS8

    ctx = BenchContext(suite="quick", device=torch.device("cpu"), seed=0, out_dir=tmp_path, progress=False)
    rows = DIGITS8.run(ctx)
    # the quick suite samples at 20 NFE (DIGITS8: ctx.budget(quick=20, standard=50))
    assert rows and rows[0]["nfe"] == 20 and rows[0]["task"] == "image/digits8"
    r = rows[0]
    m, unt, data = r["metrics"], r["reference"]["untrained"], r["reference"]["data"]
    # rows carry registered metric names (polydiff.bench.make_row)
    assert m["image_fd_ours"] < unt["image_fd_ours"] and m["image_kid_ours"] < unt["image_kid_ours"]
    assert m["image_class_accuracy"] > unt["image_class_accuracy"] + 0.4  # measured 0.82 vs 0.12
    assert data["image_fd_ours"] < m["image_fd_ours"]  # the floor is the floor
    for key in ("train_s", "train_steps_per_s", "samples_per_s", "peak_mem_mb"):
        assert r["timing"][key] > 0
    assert list(tmp_path.glob("*.png")) and (tmp_path / "train_curve.png").exists()


@pytest.mark.slow
def test_superres_beats_bicubic_on_held_out_digits():
    """A 4→8 cascaded stage on scikit-learn digits, scored on the held-out split."""
    from polydiff.plugins.image.superres import bicubic_psnr, psnr, super_resolve

    model = polydiff.create(
        "image",
        modality_config={"dataset": "sklearn_digits", "superres": {"low_size": 4}},
        base_channels=32,
        channel_mult=(1, 2),
        attn_resolutions=(4,),
    )
    train_set = model.modality.load_dataset(split="train")
    test_set = model.modality.load_dataset(split="test")
    train(
        model,
        train_set,
        TrainConfig(steps=800, batch_size=64, lr=2e-3, warmup_steps=50, ema_decay=0.99, progress=False),
    )
    high = test_set.images[:120]
    low = torch.nn.functional.interpolate(high, size=(4, 4), mode="area")
    sr = super_resolve(model, low, steps=12, seed=0)
    ours, base = psnr(sr, high).mean(), bicubic_psnr(high, 4).mean()
    print(f"PSNR super-resolution {ours:.2f} dB vs bicubic {base:.2f} dB")
    assert ours > base + 0.5
