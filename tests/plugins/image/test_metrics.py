"""Image metrics against closed forms and reference implementations."""

import numpy as np
import pytest
import torch

from polydiff.plugins.image.classifier import train_classifier
from polydiff.plugins.image.data import load_sklearn_digits
from polydiff.plugins.image.io import ImageSample
from polydiff.plugins.image.metrics import (
    all_scores,
    class_accuracy,
    kid_from_features,
    precision_recall_from_features,
    real_floor,
)


def test_kid_matches_sklearn_polynomial_kernel():
    from sklearn.metrics.pairwise import polynomial_kernel

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((40, 5)), rng.standard_normal((40, 5)) + 0.5
    k = dict(degree=3, gamma=1 / 5, coef0=1)
    kaa, kbb, kab = polynomial_kernel(a, a, **k), polynomial_kernel(b, b, **k), polynomial_kernel(a, b, **k)
    m = 40
    ref = ((kaa.sum() - np.trace(kaa)) + (kbb.sum() - np.trace(kbb))) / (m * (m - 1)) - 2 * kab.mean()
    # one subset of the full size = the whole sets (order does not matter)
    assert kid_from_features(a, b, subsets=1, subset_size=40) == pytest.approx(ref, rel=1e-10)


def test_kid_is_unbiased_zero_for_equal_distributions_and_positive_otherwise():
    rng = np.random.default_rng(3)
    same = [
        kid_from_features(rng.standard_normal((100, 8)), rng.standard_normal((100, 8)), subsets=1, subset_size=100)
        for _ in range(60)
    ]
    se = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 3 * se  # unbiased: mean 0 within 3 standard errors
    shifted = kid_from_features(rng.standard_normal((200, 8)), rng.standard_normal((200, 8)) + 0.5)
    assert shifted > 10 * np.std(same)


def test_precision_recall_constructed_example():
    # real: a 10×10 grid (spacing 1, every 3-NN radius ≤ √2); fake: half on the grid, half far away
    g = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    fake = np.concatenate([g[::2] + 0.1, g[::2] + 100.0])
    p, r = precision_recall_from_features(g, fake, k=3)
    assert p == pytest.approx(0.5)
    # recall: real points inside the fake manifold = those within reach of the near half
    assert 0.5 <= r <= 1.0
    assert precision_recall_from_features(g, g, k=3) == (1.0, 1.0)
    p, r = precision_recall_from_features(g, g + 1000.0, k=3)
    assert p == 0.0 and r == 0.0


@pytest.fixture(scope="module")
def digits_classifier():
    tr, te = load_sklearn_digits(split="train"), load_sklearn_digits(split="test")
    clf = train_classifier(tr.images, tr.labels, steps=250, progress=False)
    return clf, tr, te


def test_classifier_is_accurate_on_held_out_digits(digits_classifier):
    clf, _, te = digits_classifier
    acc = float((clf.predict(te.images) == te.labels).float().mean())
    assert acc >= 0.9, acc


def test_scores_floor_below_noise_ceiling(digits_classifier):
    clf, tr, te = digits_classifier
    floor = real_floor(tr, clf, n=300, kid_subset_size=300)
    g = torch.Generator().manual_seed(0)
    noise = [ImageSample(torch.rand(1, 8, 8, generator=g), i % 10) for i in range(300)]
    ceil = all_scores(noise, tr, clf, kid_subset_size=300)
    held = all_scores(te, tr, clf, kid_subset_size=len(te))
    assert floor["fd_ours"] < 0.1 * ceil["fd_ours"] and held["fd_ours"] < 0.1 * ceil["fd_ours"]
    assert abs(floor["kid_ours"]) < 0.05 * ceil["kid_ours"]
    # noise features collapse to one spot, which a few outlier balls of the real manifold
    # may cover (a known weakness of k-NN precision); recall exposes the missing coverage
    assert floor["precision_ours"] > 0.5 and floor["recall_ours"] > 0.5 > ceil["recall_ours"]
    assert floor["class_accuracy"] > 0.9 and ceil["class_accuracy"] < 0.4
    # a registered metric with an explicit classifier and labels
    assert class_accuracy(te, tr, classifier=clf) == pytest.approx(held["class_accuracy"])


def test_modality_evaluate_on_files_read_back(digits_classifier, tmp_path):
    """The ``polydiff eval image <folder>`` path: write real digits, read them, score them."""
    import polydiff

    clf, tr, te = digits_classifier
    mod = polydiff.registry("modality").get("image")({"dataset": "sklearn_digits"})
    samples = [ImageSample((te.images[i] + 1) / 2, int(te.labels[i])) for i in range(60)]
    mod.write(samples, tmp_path / "real")
    back = mod.read(tmp_path / "real")
    res = mod.evaluate(back, reference=tr, classifier=clf, subset_size=60)
    assert set(res) == {
        "image_class_accuracy",
        "image_fd_ours",
        "image_kid_ours",
        "image_precision_ours",
        "image_recall_ours",
    }
    assert res["image_class_accuracy"] > 0.85
    unlabelled = [ImageSample(s.pixels) for s in back]
    assert "image_class_accuracy" not in mod.evaluate(unlabelled, reference=tr, classifier=clf, subset_size=60)
