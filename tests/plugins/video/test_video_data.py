"""Moving-digits generator: reflection law, pixel content, seeding, splits."""

import numpy as np
import pytest
import torch

from polydiff.plugins.video.data import MovingDigits, bounce_trajectory, digit_bank, reflect


def test_bounce_matches_unfolded_triangle_wave():
    # Specular reflection at both walls = free motion folded by a triangle wave of period 2L.
    rng = np.random.default_rng(0)
    for _ in range(50):
        L = rng.uniform(3, 30)
        p0, v0 = rng.uniform(0, L, 2), rng.uniform(-4, 4, 2)
        traj = bounce_trajectory(p0, v0, 40, L)
        t = np.arange(40)[:, None]
        np.testing.assert_allclose(traj, reflect(p0 + v0 * t, L), atol=1e-9)
        assert traj.min() >= -1e-12 and traj.max() <= L + 1e-12


def test_clips_hold_the_sprite_at_the_rounded_position():
    ds = MovingDigits(20, canvas=16, frames=5, digit_size=8, source="sklearn", seed=3)
    sprites, labels = digit_bank("sklearn", 8, "train", 3)
    L = 16 - 8
    for i in range(20):
        x = ds.clips[i].float() / 255
        for t in range(5):
            r, c = (int(round(v)) for v in ds.positions[i, t, 0])
            win = x[t, r : r + 8, c : c + 8]
            # the window matches one sprite of the right class to uint8 rounding
            err = (sprites - win).abs().flatten(1).max(1).values
            k = int(err.argmin())
            assert err[k] <= 0.5 / 255 + 1e-6 and int(labels[k]) == int(ds.labels[i])
            outside = x[t].clone()
            outside[r : r + 8, c : c + 8] = 0
            assert outside.max() == 0
        assert (ds.positions[i] >= 0).all() and (ds.positions[i] <= L).all()
        # the stored path is the reflected free motion with the stored velocity, |v| in [1, 3]
        t = np.arange(5)[:, None]
        np.testing.assert_allclose(
            ds.positions[i, :, 0], reflect(ds.positions[i, 0, 0] + ds.velocities[i, 0] * t, L), atol=1e-9
        )
        assert 1.0 - 1e-9 <= np.hypot(*ds.velocities[i, 0]) <= 3.0 + 1e-9


def test_seeding_is_per_clip_and_reproducible():
    a = MovingDigits(10, canvas=16, frames=4, source="sklearn", seed=5)
    b = MovingDigits(4, canvas=16, frames=4, source="sklearn", seed=5)
    c = MovingDigits(4, canvas=16, frames=4, source="sklearn", seed=6)
    assert torch.equal(a.clips[:4], b.clips) and torch.equal(a.labels[:4], b.labels)
    assert not torch.equal(b.clips, c.clips)


def test_train_and_test_sprites_are_disjoint_and_items_are_scaled():
    tr, _ = digit_bank("sklearn", 8, "train", 0)
    te, _ = digit_bank("sklearn", 8, "test", 0)
    d = torch.cdist(tr.flatten(1), te.flatten(1))
    al, _ = digit_bank("sklearn", 8, "all", 0)
    assert len(tr) + len(te) == len(al)
    # no test sprite is an exact copy of a train sprite unless the raw data repeats it
    dup_all = (torch.cdist(al.flatten(1), al.flatten(1)) == 0).sum() - len(al)
    assert (d == 0).sum() <= dup_all
    item = MovingDigits(2, canvas=16, frames=3, source="sklearn")[0]
    assert item["x"].shape == (1, 3, 16, 16) and item["x"].min() >= -1 and item["x"].max() <= 1
    assert item["x"].min() == -1  # background


def test_two_digits_combine_by_maximum():
    ds = MovingDigits(5, canvas=16, frames=3, n_digits=2, digit_size=8, source="sklearn", seed=1)
    sprites, labels = digit_bank("sklearn", 8, "train", 1)
    assert ds.digits.shape == (5, 2) and torch.equal(ds.labels, torch.as_tensor(ds.digits[:, 0]))
    for i in range(5):
        for t in range(3):
            canvas = torch.zeros(16, 16)
            for d in range(2):
                k = int(ds.sprite_index[i, d])
                assert int(labels[k]) == int(ds.digits[i, d])
                r, c = (int(round(v)) for v in ds.positions[i, t, d])
                canvas[r : r + 8, c : c + 8] = torch.maximum(canvas[r : r + 8, c : c + 8], sprites[k])
            assert (ds.clips[i, t].float() - canvas * 255).abs().max() <= 0.5 + 1e-4


def test_bad_arguments():
    with pytest.raises(ValueError):
        MovingDigits(2, canvas=8, digit_size=12)
    with pytest.raises(ValueError):
        MovingDigits(2, canvas=16, source="nope")
