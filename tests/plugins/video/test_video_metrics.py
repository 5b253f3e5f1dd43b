"""Video metrics against closed forms and real data."""

import numpy as np
import pytest
import torch

from polydiff.errors import InputError
from polydiff.plugins.video.data import MovingDigits
from polydiff.plugins.video.metrics import (
    frame_accuracy,
    fvd_ours,
    identity_consistency,
    prediction_mse,
)
from polydiff.plugins.video.modality import Clip


def test_classifiers_recognise_held_out_real_clips(small_evaluator):
    assert small_evaluator.report["frame_accuracy"] >= 0.85, small_evaluator.report
    assert small_evaluator.report["clip_accuracy"] >= 0.4, small_evaluator.report  # chance: 0.1
    real = MovingDigits(60, 16, 4, source="sklearn", split="test", seed=11)
    clips = [Clip(real.clips[i].numpy(), int(real.labels[i])) for i in range(60)]
    assert frame_accuracy(clips, evaluator=small_evaluator) >= 0.85
    real_cons = identity_consistency(clips, evaluator=small_evaluator)
    assert real_cons >= 0.8
    # swapping the digit half-way through each clip breaks identity consistency
    other = torch.roll(real.clips, 1, dims=0)
    mixed = torch.cat([real.clips[:, :2], other[:, 2:]], dim=1)
    keep = real.labels != torch.roll(real.labels, 1)
    cons = identity_consistency(mixed[keep].numpy(), evaluator=small_evaluator)
    assert cons <= real_cons - 0.15
    # wrong labels → low accuracy
    wrong = [Clip(c.frames, (c.label + 1) % 10) for c in clips]
    assert frame_accuracy(wrong, evaluator=small_evaluator) < 0.2


def test_clips_without_digits_are_not_consistent_digits(small_evaluator):
    """Noise, blobs and flat clips go to the "no digit" class: identity consistency near 0
    (a plain 10-digit classifier scored uniform noise 0.975, above real clips) and frame
    accuracy near 0, well below real clips."""
    assert small_evaluator.report["no_digit_recall"] >= 0.9, small_evaluator.report
    g = torch.Generator().manual_seed(3)
    noise = torch.rand(40, 1, 4, 16, 16, generator=g) * 2 - 1
    flat = (torch.rand(40, 1, 1, 1, 1, generator=g) * 2 - 1).expand(40, 1, 4, 16, 16)
    blobs = torch.nn.functional.avg_pool3d(noise, (1, 5, 5), 1, (0, 2, 2), count_include_pad=False) * 3
    real = MovingDigits(40, 16, 4, source="sklearn", split="test", seed=11)
    real_cons = identity_consistency(real.clips.numpy(), evaluator=small_evaluator)
    for junk in (noise, flat, blobs.clamp(-1, 1)):
        assert identity_consistency(junk, evaluator=small_evaluator) < 0.3 < real_cons
        clips = [Clip(((c[0] + 1) * 127.5).round().byte().numpy(), i % 10) for i, c in enumerate(junk)]
        assert frame_accuracy(clips, evaluator=small_evaluator) < 0.2


def test_identity_consistency_is_the_mean_probability_of_the_clip_identity():
    """Closed form with a stub classifier: per clip, identity = argmax of the frames' mean
    probability; the score averages that class's probability over frames and clips. Hard
    votes would give 1.0 for clip 0 (every frame's argmax is class 0)."""
    probs = torch.tensor(
        [
            [[0.4, 0.3, 0.3], [0.4, 0.35, 0.25]],  # clip 0: weakly class 0 twice
            [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]],
        ]
    )  # clip 1: 0 then 1

    class Stub:
        def frame_logits(self, x):
            return probs.log()

    clips = torch.zeros(2, 1, 2, 4, 4)
    # clip 0 → class 0: (0.4 + 0.4) / 2; clip 1 → mean probs (0.5, 0.425, 0.075) → class 0: (0.9 + 0.1) / 2
    expected = ((0.4 + 0.4) / 2 + (0.9 + 0.1) / 2) / 2
    assert identity_consistency(clips, evaluator=Stub()) == pytest.approx(expected, rel=1e-6)


def test_fvd_ours_real_floor_below_noise_and_static_clips(small_evaluator):
    a = MovingDigits(80, 16, 4, source="sklearn", split="test", seed=21)
    b = MovingDigits(80, 16, 4, source="sklearn", split="test", seed=22)
    floor = fvd_ours(a, reference=b, evaluator=small_evaluator)
    noise = torch.rand(80, 1, 4, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    static = a.clips[:, :1].expand(-1, 4, -1, -1).contiguous().numpy()  # digits that never move
    assert floor < fvd_ours(noise, reference=b, evaluator=small_evaluator)
    assert floor < fvd_ours(static, reference=b, evaluator=small_evaluator)
    with pytest.raises(InputError):
        fvd_ours(a, evaluator=small_evaluator)


def test_prediction_mse_counts_only_generated_frames():
    ref = torch.zeros(3, 1, 4, 2, 2)
    gen = ref.clone()
    gen[:, :, :2] = 5.0  # errors in the context frames do not count
    gen[:, :, 2:] = 0.5
    assert prediction_mse(gen, reference=ref, context_frames=2) == pytest.approx(0.25)
    clips = [Clip(np.full((4, 2, 2), 255, np.uint8), None, 3) for _ in range(2)]
    ref2 = torch.full((2, 1, 4, 2, 2), -1.0)
    assert prediction_mse(clips, reference=ref2) == pytest.approx(4.0)
    with pytest.raises(InputError):
        prediction_mse(gen[:2], reference=ref)


def test_frame_accuracy_needs_labels(small_evaluator):
    with pytest.raises(InputError, match="label"):
        frame_accuracy([Clip(np.zeros((4, 16, 16), np.uint8))], evaluator=small_evaluator)
