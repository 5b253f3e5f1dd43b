"""Image output and input: single PNGs, PNG grids, DDIM interpolation strips, reading back.

Decoded samples are :class:`ImageSample` objects: ``pixels`` float32 ``[C, H, W]`` in
[0, 1], the requested ``label`` (None when unconditional) and, for a text-prompt model, the
``prompt`` and the ``attributes`` it asks for. Files are 8-bit PNGs
(grey ``L`` or ``RGB``), written atomically (:func:`polydiff.checkpoint.atomic_write_bytes`:
temporary file, fsync, rename).
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polydiff.checkpoint import atomic_write_bytes
from polydiff.errors import InputError


@dataclass
class ImageSample:
    pixels: torch.Tensor  # [C, H, W] float32 in [0, 1]
    label: int | None = None
    #: the text prompt it was sampled with (a prompt model), else None
    prompt: str | None = None
    #: the attributes that prompt asks for (:func:`polydiff.plugins.image.captions.parse_prompt`)
    attributes: dict | None = None

    def to_uint8(self) -> np.ndarray:
        """``[H, W]`` (grey) or ``[H, W, 3]`` uint8."""
        a = (self.pixels.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def _atomic_png(arr: np.ndarray, path: Path) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


def save_image(sample: ImageSample | torch.Tensor, path: str | Path) -> Path:
    """One image (an :class:`ImageSample` or a ``[C, H, W]`` tensor in [0, 1]) as PNG."""
    s = sample if isinstance(sample, ImageSample) else ImageSample(sample)
    return _atomic_png(s.to_uint8(), Path(path))


def grid_array(images: torch.Tensor, nrow: int | None = None, padding: int = 1, scale: int = 1) -> np.ndarray:
    """``[N, C, H, W]`` in [0, 1] → a uint8 grid image (``nrow`` images per row, white padding,
    each pixel repeated ``scale``×)."""
    n, c, h, w = images.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / nrow))
    H, W = rows * (h + padding) + padding, nrow * (w + padding) + padding
    canvas = torch.ones(c, H, W)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        canvas[:, y : y + h, x : x + w] = images[i].float().clamp(0, 1)
    if scale > 1:
        canvas = canvas.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    a = (canvas * 255).round().to(torch.uint8).numpy()
    return a[0] if c == 1 else np.transpose(a[:3], (1, 2, 0))


def save_grid(samples, path: str | Path, nrow: int | None = None, scale: int = 2) -> Path:
    """A PNG grid of ``samples`` (list of :class:`ImageSample` or ``[N, C, H, W]`` in [0, 1])."""
    x = samples if torch.is_tensor(samples) else torch.stack([s.pixels for s in samples])
    return _atomic_png(grid_array(x, nrow, scale=scale), Path(path))


_LABEL = re.compile(r"_label(-?\d+)")


def write_samples(samples: list, folder: str | Path, grid: bool = True) -> list[Path]:
    """One PNG per sample (``00000_label7.png``; label omitted when None) and ``grid.png``."""
    folder = Path(folder)
    paths = []
    for i, s in enumerate(samples):
        name = f"{i:05d}" + ("" if s.label is None else f"_label{int(s.label)}") + ".png"
        paths.append(save_image(s, folder / name))
    if grid and samples:
        paths.append(save_grid(samples, folder / "grid.png", nrow=min(10, len(samples))))
    return paths


def read_samples(path: str | Path, channels: int | None = None) -> list[ImageSample]:
    """PNG files written by :func:`write_samples` (a folder or one file; ``grid.png`` skipped).
    Labels are parsed from ``_label<k>`` in the file name. Unreadable files raise
    :class:`InputError` naming the file."""
    from .data import IMAGE_SUFFIXES, read_image_file

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.name != "grid.png")
    elif p.is_file():
        files = [p]
    else:
        raise InputError("no such file or folder", file=p, field="path")
    if not files:
        raise InputError("no image files found", file=p, field="path")
    out = []
    for i, f in enumerate(files):
        ch = channels
        if ch is None:
            from PIL import Image

            try:
                with Image.open(f) as im:
                    ch = 1 if im.mode in ("L", "1", "I", "I;16", "F", "LA") else 3
            except Exception as e:  # noqa: BLE001 — reported as InputError below
                raise InputError(
                    f"not a readable image ({type(e).__name__})", file=f, record=i, field="pixels"
                ) from None
        px = torch.from_numpy(read_image_file(f, channels=ch, record=i))
        m = _LABEL.search(f.stem)
        out.append(ImageSample(px, int(m.group(1)) if m else None))
    return out


@torch.no_grad()
def ddim_interpolation(
    model,
    n_frames: int = 8,
    *,
    seed_a: int = 0,
    seed_b: int = 1,
    cond: dict | None = None,
    steps: int = 30,
    guidance: float = 1.0,
) -> list[ImageSample]:
    """Decode a slerp path (:func:`polydiff.editing.slerp`) between the initial noises of
    seeds ``seed_a`` and ``seed_b`` with the deterministic DDIM sampler (Song et al. 2021
    §5: the DDIM map noise → image is smooth, so the strip morphs); the end frames are the
    images those seeds sample directly."""
    from polydiff.editing import slerp
    from polydiff.rng import SampleRNG

    shape, _ = model.modality.sampling_request(1, cond, SampleRNG(seed_a, 1))
    za, zb = SampleRNG(seed_a, 1).randn(shape), SampleRNG(seed_b, 1).randn(shape)  # [1, C, H, W]
    sigmas = model.sigma_grid(steps)
    t = torch.linspace(0, 1, n_frames, dtype=torch.float64) if n_frames > 1 else torch.zeros(1, dtype=torch.float64)
    x_T = slerp(za, zb, t)[:, 0] * float(sigmas[0])  # [n_frames, C, H, W], the state at σ̃₀
    _, c = model.modality.sampling_request(n_frames, cond, SampleRNG(0, n_frames))
    x, c = model.sample_raw(n_frames, sampler="ddim", sigmas=sigmas, x_T=x_T, sampling_cond=c, guidance=guidance)
    return model.modality.decode(x, c)


def save_strip(samples: list[ImageSample], path: str | Path, scale: int = 3) -> Path:
    """A one-row PNG strip (interpolations, super-resolution triples)."""
    return save_grid(samples, path, nrow=len(samples), scale=scale)
