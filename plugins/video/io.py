"""Video files: animated GIFs, frame-sequence folders and frame-strip PNGs (Pillow).

Frames are uint8 arrays ``[T, H, W]`` (grey, 0 = black). Reading converts any mode to
grey ``L``; every failure is an :class:`polydiff.errors.InputError` naming the file,
the record and the field (``frames`` for decoding problems). Files are written atomically
(:func:`polydiff.checkpoint.atomic_write_bytes`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from polydiff.checkpoint import atomic_write_bytes
from polydiff.errors import InputError

#: largest frame count / pixel count accepted from a file (hostile-input guard)
MAX_FRAMES = 10_000
MAX_PIXELS = 4096 * 4096
#: GIF comment written by :func:`write_gif`: the duration of one time step (ms)
FRAME_TAG = "polydiff frame_ms="


def to_uint8(x) -> np.ndarray:
    """Float frames in [-1, 1] (tensor or array, any shape) → uint8 in [0, 255]."""
    import torch

    if torch.is_tensor(x):
        x = x.detach().float().cpu().numpy()
    return np.clip(np.round((np.asarray(x, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def write_gif(frames: np.ndarray, path: str | Path, *, duration_ms: int = 120, scale: int = 1) -> Path:
    """Write ``frames`` uint8 ``[T, H, W]`` as a looping animated grey GIF (lossless for
    grey: the palette is the 256 grey levels)."""
    from PIL import Image

    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    palette = [v for g in range(256) for v in (g, g, g)]
    imgs = []
    for f in frames:
        im = Image.frombytes("P", (f.shape[1], f.shape[0]), np.ascontiguousarray(f).tobytes())
        im.putpalette(palette)
        imgs.append(im)
    # Pillow merges identical consecutive frames (summing durations); the comment records
    # the frame time so read_gif can expand them back to one frame per time step.
    buf = io.BytesIO()
    imgs[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=imgs[1:],
        duration=int(duration_ms),
        loop=0,
        optimize=False,
        disposal=1,
        comment=f"{FRAME_TAG}{int(duration_ms)}".encode(),
    )
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_gif(path: str | Path, *, size: int | None = None, record=None) -> np.ndarray:
    """All frames of an (animated) GIF as uint8 ``[T, H, W]`` grey."""
    from PIL import Image, ImageSequence

    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise InputError(
                    f"frame of {im.width}×{im.height} px is too large", file=path, record=record, field="size"
                )
            step_ms = _frame_ms(im.info.get("comment"))
            out = []
            for fr in ImageSequence.Iterator(im):
                g = _grey(fr, size)
                repeat = 1
                if step_ms:
                    repeat = max(1, int(round(float(fr.info.get("duration", step_ms) or step_ms) / step_ms)))
                if len(out) + repeat > MAX_FRAMES:
                    raise InputError(f"more than {MAX_FRAMES} frames", file=path, record=record, field="frames")
                out.extend([g] * repeat)
    except InputError:
        raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, EOFError, ValueError… on bad bytes
        raise InputError(
            f"unreadable GIF ({type(e).__name__}: {e})", file=path, record=record, field="frames"
        ) from None
    if not out:
        raise InputError("no frames", file=path, record=record, field="frames")
    return np.stack(out)


def _frame_ms(comment) -> int | None:
    if not isinstance(comment, (bytes, str)):
        return None
    text = comment.decode("latin-1") if isinstance(comment, bytes) else comment
    if not text.startswith(FRAME_TAG):
        return None
    try:
        v = int(text[len(FRAME_TAG) :])
    except ValueError:
        return None
    return v if v > 0 else None


def read_frame_folder(path: str | Path, *, size: int | None = None, record=None) -> np.ndarray:
    """A folder of frame images (sorted by file name) as uint8 ``[T, H, W]`` grey."""
    from PIL import Image

    from .data import IMAGE_SUFFIXES

    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError("folder holds no frame images", file=path, record=record, field="frames")
    out = []
    for f in files[:MAX_FRAMES]:
        try:
            with Image.open(f) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise InputError(
                        f"frame of {im.width}×{im.height} px is too large", file=f, record=record, field="size"
                    )
                out.append(_grey(im, size))
        except InputError:
            raise
        except Exception as e:
            raise InputError(
                f"unreadable frame ({type(e).__name__}: {e})", file=f, record=record, field="frames"
            ) from None
    if len({a.shape for a in out}) > 1:
        raise InputError("frames differ in size (pass size=)", file=path, record=record, field="size")
    return np.stack(out)


def read_frames(path: str | Path, *, size: int | None = None, record=None) -> np.ndarray:
    """A GIF file or a frame folder as uint8 ``[T, H, W]``."""
    path = Path(path)
    return (
        read_frame_folder(path, size=size, record=record) if path.is_dir() else read_gif(path, size=size, record=record)
    )


def _grey(im, size: int | None) -> np.ndarray:
    from PIL import Image

    g = im.convert("L")
    if size is not None:
        g = g.resize((int(size), int(size)), Image.BILINEAR)
    return np.asarray(g, dtype=np.uint8).copy()


def write_strip_png(
    clips: Sequence[np.ndarray], path: str | Path, *, scale: int = 2, gap: int = 1, labels: Sequence | None = None
) -> Path:
    """One row per clip, one column per frame: a PNG of ``clips`` (each uint8 ``[T, H, W]``).

    Rows are separated by ``gap`` grey pixels; with ``labels`` the row's label is drawn at
    its left.
    """
    from PIL import Image, ImageDraw

    path = Path(path)
    clips = [np.asarray(c, dtype=np.uint8) for c in clips]
    T = max(c.shape[0] for c in clips)
    H, W = clips[0].shape[1:]
    left = 12 if labels is not None else 0
    canvas = np.full((len(clips) * (H + gap) + gap, left + T * (W + gap) + gap), 96, dtype=np.uint8)
    for r, c in enumerate(clips):
        for t in range(c.shape[0]):
            y, x = gap + r * (H + gap), left + gap + t * (W + gap)
            canvas[y : y + H, x : x + W] = c[t]
    img = Image.fromarray(canvas, mode="L")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if labels is not None:
        draw = ImageDraw.Draw(img)
        for r, lab in enumerate(labels):
            if lab is not None:
                draw.text((1, (gap + r * (H + gap)) * scale), str(lab), fill=255)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
