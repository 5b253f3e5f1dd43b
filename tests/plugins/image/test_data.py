"""Image data sets: bundled sets against their published shapes, folders, .npz, bad input."""

import io as _io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from polydiff.errors import InputError, PolydiffError
from polydiff.plugins.image.data import (
    load_image_folder,
    load_image_npz,
    load_mnist5k,
    load_sklearn_digits,
    read_image_file,
)


def test_sklearn_digits_matches_scikit_learn():
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = load_sklearn_digits()
    assert ds.images.shape == (1797, 1, 8, 8) and ds.num_classes == 10
    assert torch.allclose((ds.images[:, 0] + 1) / 2 * 16, torch.as_tensor(ref.images, dtype=torch.float32), atol=1e-5)
    assert torch.equal(ds.labels, torch.as_tensor(ref.target))
    assert ds[5]["x"].shape == (1, 8, 8) and ds[5]["label"] == int(ref.target[5])


def test_mnist5k_is_500_per_digit_and_split_is_a_partition():
    ds = load_mnist5k()
    assert ds.images.shape == (5000, 1, 28, 28)
    assert ds.images.min() == -1 and ds.images.max() == 1
    assert torch.bincount(ds.labels).tolist() == [500] * 10
    tr, te = load_mnist5k(split="train"), load_mnist5k(split="test")
    assert len(tr) == 4500 and len(te) == 500
    both = torch.cat([tr.images, te.images]).flatten(1)
    assert torch.unique(both, dim=0).shape[0] == torch.unique(ds.images.flatten(1), dim=0).shape[0]
    small = load_mnist5k(size=14, limit=10)
    assert small.images.shape == (10, 1, 14, 14)


def _png(path, arr):
    Image.fromarray(arr).save(path)


def test_image_folder_labels_from_subfolders_and_rgb_to_grey(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = 100
    rgb[..., 2] = 50
    _png(tmp_path / "cat" / "a.png", rgb)
    _png(tmp_path / "dog" / "b.png", np.full((6, 6), 255, np.uint8))
    _png(tmp_path / "loose.png", np.zeros((6, 6), np.uint8))
    ds = load_image_folder(str(tmp_path), size=None)
    assert ds.class_names == ["cat", "dog"]
    assert sorted(ds.labels.tolist()) == [-1, 0, 1]
    i = ds.labels.tolist().index(0)
    grey = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255  # ITU-R 601-2 luma, Pillow's "L"
    assert abs(float((ds.images[i].mean() + 1) / 2) - grey) < 1 / 255 + 1e-6
    rgb_ds = load_image_folder(str(tmp_path), size=4, channels=3)
    assert rgb_ds.images.shape == (3, 3, 4, 4)


def test_image_folder_bad_file_raises_or_is_counted(tmp_path):
    _png(tmp_path / "ok.png", np.zeros((5, 5), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError) as e:
        load_image_folder(str(tmp_path), size=8)
    assert "broken.png" in str(e.value) and "record" in str(e.value)
    ds = load_image_folder(str(tmp_path), size=8, on_error="skip")
    assert len(ds) == 1 and ds.skipped == 1 and "broken.png" in ds.skip_report[0]


def test_npz_loader_and_errors(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (7, 10, 10), dtype=np.uint8)
    y = np.arange(7) % 3
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    ds = load_image_npz(str(tmp_path / "d.npz"))
    assert ds.images.shape == (7, 1, 10, 10) and ds.labels.tolist() == y.tolist() and ds.num_classes == 3
    assert torch.allclose((ds.images[:, 0] + 1) / 2 * 255, torch.as_tensor(x, dtype=torch.float32), atol=1e-3)
    bad = x.astype(np.float32) / 255
    bad[4, 2, 3] = np.nan
    np.savez(tmp_path / "bad.npz", x=bad, y=y)
    with pytest.raises(InputError) as e:
        load_image_npz(str(tmp_path / "bad.npz"))
    assert e.value.record == 4 and e.value.field == "x" and "bad.npz" in str(e.value)
    skipped = load_image_npz(str(tmp_path / "bad.npz"), on_error="skip")
    assert len(skipped) == 6 and skipped.skipped == 1
    np.savez(tmp_path / "lab.npz", x=x, y=np.arange(5))
    with pytest.raises(InputError, match="labels"):
        load_image_npz(str(tmp_path / "lab.npz"))
    with pytest.raises(InputError, match="file"):
        load_image_npz(str(tmp_path / "missing.npz"))


# -- hostile input (issue 9, item 4) ------------------------------------------------------------


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_fuzz_image_file_reader(tmp_path, data):
    p = tmp_path / "fuzz.png"
    p.write_bytes(data)
    try:
        px = read_image_file(p, channels=1, record=0)
    except InputError as e:
        assert "fuzz.png" in str(e) and "record 0" in str(e)
    else:
        assert px.ndim == 3 and px.shape[0] == 1 and np.isfinite(px).all()


def _mutated_png(seed_bytes: bytes) -> bytes:
    buf = _io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buf, format="PNG")
    raw = bytearray(buf.getvalue())
    for i, b in enumerate(seed_bytes[:20]):
        raw[(i * 37 + b) % len(raw)] = b
    return bytes(raw[: max(8, len(raw) - (seed_bytes[0] if seed_bytes else 0))])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.binary(min_size=1, max_size=20))
def test_fuzz_mutated_png_in_folder(tmp_path, seed):
    d = tmp_path / "imgs"
    d.mkdir(exist_ok=True)
    (d / "m.png").write_bytes(_mutated_png(seed))
    try:
        ds = load_image_folder(str(d), size=8)
    except InputError as e:
        assert "m.png" in str(e)
    else:
        assert len(ds) == 1 and torch.isfinite(ds.images).all()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    arr=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=48),
    n=st.integers(1, 3),
    shape_kind=st.sampled_from(["nhw", "flat", "nhwc"]),
    labels=st.one_of(st.none(), st.lists(st.integers(-3, 5), min_size=1, max_size=4)),
)
def test_fuzz_npz_loader(tmp_path, arr, n, shape_kind, labels):
    a = np.asarray(arr, np.float32)
    if shape_kind == "nhw":
        side = int(np.sqrt(len(a) // n)) or 1
        a = np.resize(a, (n, side, side))
    elif shape_kind == "nhwc":
        a = np.resize(a, (n, 2, 2, 3))
    kw = {"images": a}
    if labels is not None:
        kw["labels"] = np.asarray(labels)
    p = tmp_path / "f.npz"
    np.savez(p, **kw)
    try:
        ds = load_image_npz(str(p), on_error="skip")
    except PolydiffError as e:
        assert isinstance(e, InputError) and "f.npz" in str(e)
    else:
        assert len(ds) + ds.skipped == a.shape[0]  # nothing dropped silently
        assert torch.isfinite(ds.images).all() and ds.images.abs().max() <= 1
