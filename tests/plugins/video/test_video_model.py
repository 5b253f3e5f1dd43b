"""The video modality through the public API: train, sample, save/load, predict, files."""

import json

import numpy as np
import pytest
import torch

import polydiff
from polydiff.errors import InputError
from polydiff.plugins.video.modality import Clip
from polydiff.plugins.video.prediction import copy_last_frame, predict
from polydiff.training import TrainConfig, train

TINY = dict(channels=(8, 16), heads=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = polydiff.create(
        "video", modality_config={"canvas": 16, "frames": 4, "context_frames": True, "source": "sklearn"}, **TINY
    )
    data = model.modality.load_dataset("moving_digits", n_clips=64, source="sklearn")
    res = train(model, data, TrainConfig(steps=6, batch_size=8, cond_dropout=0.2, progress=False))
    return model, data, res


def test_registered_components():
    names = {(r["kind"], r["name"]) for r in polydiff.plugins_table() if r["plugin"] == "video"}
    for kn in [
        ("modality", "video"),
        ("network", "video_unet"),
        ("network", "video_dit"),
        ("dataset", "moving_digits"),
        ("dataset", "video_folder"),
        ("metric", "video_fvd_ours"),
        ("metric", "video_frame_accuracy"),
        ("metric", "video_identity_consistency"),
        ("metric", "video_prediction_mse"),
        ("benchmark", "video/moving_digits"),
    ]:
        assert kn in names, kn


def test_fit_records_data_shape_and_collate_builds_cond(trained):
    model, data, res = trained
    cfg = model.modality.config
    assert (cfg["canvas"], cfg["frames"], cfg["digit_size"]) == (16, 4, 8)
    assert res.steps == 6 and np.isfinite(res.losses[-1][1])
    batch = model.modality.collate([data[i] for i in range(8)])
    assert batch["x"].shape == (8, 1, 4, 16, 16)
    assert torch.equal(batch["cond"]["label"], data.labels[:8])
    m = batch["cond"]["context_mask"]
    # context masks are prefixes of 1..T-1 frames (or empty)
    assert ((m[:, 1:] <= m[:, :-1]).all()) and (m[:, -1] == 0).all()


def test_save_load_sample_identical_and_labels_decoded(trained, tmp_path):
    model, _, _ = trained
    kw = dict(sampler="dpmpp_2m", steps=4, seed=3, cond={"label": [0, 5, "7"]}, guidance=2.0)
    a = model.sample(3, **kw)
    model.save(tmp_path / "ck")
    b = polydiff.load(tmp_path / "ck").sample(3, **kw)
    assert [c.label for c in a] == [0, 5, 7]
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(a, b))
    assert a[0].frames.shape == (4, 16, 16) and a[0].frames.dtype == np.uint8
    # same seed, different batch: sample i does not depend on n
    c = model.sample(1, **{**kw, "cond": {"label": [0]}})
    assert np.array_equal(c[0].frames, a[0].frames)
    u = model.sample(2, sampler="euler", steps=3, seed=0)
    assert [x.label for x in u] == [None, None]


def test_bad_requests_raise_input_error(trained):
    model, _, _ = trained
    with pytest.raises(InputError, match="label"):
        model.sample(2, steps=2, cond={"label": [1]})
    with pytest.raises(InputError, match="class"):
        model.sample(1, steps=2, cond={"label": [12]})
    with pytest.raises(InputError, match="context"):
        model.sample(1, steps=2, cond={"context": torch.zeros(1, 1, 2, 8, 8), "context_frames": 2})


def test_prediction_keeps_the_given_frames_exactly(trained):
    model, data, _ = trained
    ctx = torch.stack([data[i]["x"] for i in range(3)])
    out = predict(model, ctx, 2, steps=4, seed=1, label=[int(data.labels[i]) for i in range(3)])
    truth = np.round((ctx[:, 0].numpy() + 1) * 127.5).astype(np.uint8)
    for i, c in enumerate(out):
        assert np.array_equal(c.frames[:2], truth[i, :2]) and c.context_frames == 2
        assert not np.array_equal(c.frames[2:], truth[i, 2:])
    base = copy_last_frame(ctx, 2, 4)
    assert torch.equal(base[:, :, 2], ctx[:, :, 1]) and torch.equal(base[:, :, 3], ctx[:, :, 1])


def test_write_read_roundtrip_and_cli_eval_path(trained, tmp_path):
    model, _, _ = trained
    clips = model.sample(3, steps=2, seed=0, cond={"label": [1, 2, 3]})
    files = model.modality.write(clips, tmp_path / "out")
    names = {p.name for p in files}
    assert {"clip_0000.gif", "strip.png", "labels.json"} <= names
    assert json.loads((tmp_path / "out" / "labels.json").read_text()) == {
        "clip_0000.gif": 1,
        "clip_0001.gif": 2,
        "clip_0002.gif": 3,
    }
    back = model.modality.read(tmp_path / "out")
    assert [c.label for c in back] == [1, 2, 3]
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(clips, back))
    one = model.modality.read(tmp_path / "out" / "clip_0001.gif")
    assert np.array_equal(one[0].frames, clips[1].frames)


def test_dit_trains_and_round_trips(tmp_path):
    model = polydiff.create(
        "video",
        network="video_dit",
        modality_config={"canvas": 16, "frames": 4, "source": "sklearn"},
        dim=24,
        depth=1,
        heads=2,
        patch=4,
    )
    data = model.modality.load_dataset("moving_digits", n_clips=16, source="sklearn")
    train(model, data, TrainConfig(steps=2, batch_size=4, progress=False))
    a = model.sample(2, steps=3, seed=0, cond={"label": [1, 2]})
    model.save(tmp_path / "dit")
    b = polydiff.load(tmp_path / "dit").sample(2, steps=3, seed=0, cond={"label": [1, 2]})
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(a, b))


def test_evaluate_uses_the_modality_metrics(trained, small_evaluator):
    model, data, _ = trained
    clips = [Clip(data.clips[i].numpy(), int(data.labels[i])) for i in range(20)]
    res = model.modality.evaluate(clips, evaluator=small_evaluator)
    assert set(res) == {"video_frame_accuracy", "video_identity_consistency"}
    assert res["video_frame_accuracy"] >= 0.8


@pytest.mark.gpu
def test_cuda_training_and_sampling_match_cpu(trained):
    import copy

    model, data, _ = trained
    gpu = copy.deepcopy(model).to("cuda")
    kw = dict(sampler="euler", steps=4, seed=2, cond={"label": [3, 4]}, guidance=2.0)
    a, b = model.sample(2, **kw), gpu.sample(2, **kw)
    for x, y in zip(a, b):
        assert np.abs(x.frames.astype(int) - y.frames.astype(int)).max() <= 2
    res = train(gpu, data, TrainConfig(steps=3, batch_size=4, progress=False, device="cuda"))
    assert res.steps == 3 and np.isfinite(res.losses[-1][1])
