"""The video modality: grey clips ``x`` of shape ``[C=1, T, H, W]`` in [-1, 1].

Samples decode to :class:`Clip` objects (uint8 frames plus the class they were asked
for); ``write`` produces one animated GIF per clip, a frame-strip PNG and a
``labels.json``; ``read`` takes such a folder (or any folder of GIFs / frame folders)
back. Conditioning: ``{"label": int | "random" | list}`` for class-conditional models,
``{"context": clips [n, C, k or T, H, W], "context_frames": k}`` for frame-conditioned
prediction (see :mod:`polydiff.plugins.video.prediction`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polydiff.checkpoint import atomic_write_bytes
from polydiff.errors import InputError
from polydiff.modality import Modality

DEFAULTS = {
    "canvas": 32,
    "frames": 8,
    "channels": 1,
    "n_classes": 10,
    "conditional": True,
    "context_frames": False,
    "context_prob": 0.25,
    "source": "mnist5k",
    "digit_size": None,
    "class_names": [str(i) for i in range(10)],
    "collate_seed": 0,
}


@dataclass
class Clip:
    """A decoded clip: ``frames`` uint8 ``[T, H, W]`` (0 = background); ``label`` the class
    it was generated for (None if unconditional); ``context_frames`` how many leading
    frames were given (prediction), 0 otherwise."""

    frames: np.ndarray
    label: int | None = None
    context_frames: int = 0

    def tensor(self) -> torch.Tensor:
        """``[1, T, H, W]`` float in [-1, 1]."""
        return torch.as_tensor(self.frames).float().div(127.5).sub(1.0).unsqueeze(0)


class VideoModality(Modality):
    """Config keys: ``canvas`` (H = W, px), ``frames`` (T), ``channels``, ``n_classes``,
    ``conditional`` (class embedding on), ``context_frames`` (network takes known frames),
    ``context_prob`` (share of training batches items with a random known prefix),
    ``source``/``digit_size`` (which digits, for the metric classifiers)."""

    name = "video"
    default_network = "video_unet"
    default_dataset = "moving_digits"
    sigma_data = 0.5
    default_metrics = ("video_frame_accuracy", "video_identity_consistency")

    def __init__(self, config: dict | None = None):
        super().__init__({**DEFAULTS, **(config or {})})
        self._collate_gen = torch.Generator().manual_seed(int(self.config["collate_seed"]))

    # -- data --------------------------------------------------------------------------
    def fit(self, dataset) -> None:
        dc = getattr(dataset, "config", {})
        if dc.get("channels", 1) != self.config["channels"]:
            raise ValueError(f"data has {dc.get('channels')} channels, the model {self.config['channels']}")
        for k in ("canvas", "frames", "source", "digit_size", "n_digits", "speed"):
            if k in dc:
                self.config[k] = dc[k]
        if self.config["conditional"] and dc.get("n_classes", 0) > self.config["n_classes"]:
            raise ValueError(f"data has {dc['n_classes']} classes, the network {self.config['n_classes']}")

    def collate(self, items: list) -> dict:
        x = torch.stack([torch.as_tensor(i["x"] if isinstance(i, dict) else i) for i in items])
        cond = {}
        if self.config["conditional"]:
            labels = torch.tensor([int(i.get("label", -1)) if isinstance(i, dict) else -1 for i in items])
            cond["label"] = labels.clamp(min=0)
            cond["cond_mask"] = (labels >= 0).float()
        if self.config["context_frames"]:
            B, T = x.shape[0], x.shape[2]
            k = torch.randint(1, T, (B,), generator=self._collate_gen)
            use = torch.rand(B, generator=self._collate_gen) < float(self.config["context_prob"])
            m = (torch.arange(T)[None] < k[:, None]) & use[:, None]
            cond["context"], cond["context_mask"] = x.clone(), m.float()
        return {"x": x, "cond": cond or None}

    def load_dataset(self, name: str | None = None, **options):
        if (name or self.default_dataset) == "moving_digits":
            options.setdefault("canvas", self.config["canvas"])
            options.setdefault("frames", self.config["frames"])
        return super().load_dataset(name, **options)

    # -- sampling ----------------------------------------------------------------------
    def shape(self) -> tuple[int, int, int, int]:
        c = self.config
        return (int(c["channels"]), int(c["frames"]), int(c["canvas"]), int(c.get("width", c["canvas"])))

    def sampling_request(self, n: int, cond: dict | None, rng):
        cond = dict(cond or {})
        out = {}
        if self.config["conditional"]:
            lab = cond.get("label")
            if lab is None:
                out["label"], out["cond_mask"] = torch.zeros(n, dtype=torch.long), torch.zeros(n)
            else:
                out["label"], out["cond_mask"] = self._labels(lab, n, rng), torch.ones(n)
        elif cond.get("label") is not None:
            raise InputError("this video model is unconditional; it takes no label", field="label")
        if cond.get("context") is not None:
            out.update(self._context(cond, n))
        return self.shape(), (out or None)

    def _labels(self, lab, n: int, rng) -> torch.Tensor:
        K = int(self.config["n_classes"])
        if isinstance(lab, str) and lab == "random":
            return (rng.rand((), dtype=torch.float64) * K).long().clamp(max=K - 1).reshape(n)
        names = self.config["class_names"]
        vals = list(lab) if isinstance(lab, (list, tuple, torch.Tensor, np.ndarray)) else [lab] * n
        if len(vals) != n:
            raise InputError(f"{len(vals)} labels for {n} samples", field="label")
        out = []
        for v in vals:
            v = v.item() if hasattr(v, "item") else v
            if isinstance(v, str):
                if v not in names:
                    raise InputError(f"unknown class {v!r}; classes: {names}", field="label")
                v = names.index(v)
            if not (0 <= int(v) < K):
                raise InputError(f"class {v} outside 0..{K - 1}", field="label")
            out.append(int(v))
        return torch.tensor(out, dtype=torch.long)

    def _context(self, cond: dict, n: int) -> dict:
        C, T, H, W = self.shape()
        ctx = torch.as_tensor(cond["context"]).float()
        k = int(cond.get("context_frames", ctx.shape[2]))
        if ctx.ndim != 5 or ctx.shape[0] != n or ctx.shape[1] != C or tuple(ctx.shape[3:]) != (H, W):
            raise InputError(f"context must be [n={n}, {C}, k, {H}, {W}], got {tuple(ctx.shape)}", field="context")
        if not 0 < k < T or ctx.shape[2] < k:
            raise InputError(f"context_frames {k} must be in 1..{T - 1} and ≤ the given frames", field="context_frames")
        full = torch.zeros(n, C, T, H, W)
        full[:, :, :k] = ctx[:, :, :k]
        m = torch.zeros(n, T)
        m[:, :k] = 1
        return {"context": full, "context_mask": m}

    def decode(self, x: torch.Tensor, cond: dict | None) -> list:
        from .io import to_uint8

        frames = to_uint8(x[:, 0])  # [B, T, H, W]
        out = []
        for i in range(len(frames)):
            lab = None
            if cond and "label" in cond and float(cond.get("cond_mask", torch.ones(len(frames)))[i]) > 0:
                lab = int(cond["label"][i])
            k = int(cond["context_mask"][i].sum()) if cond and "context_mask" in cond else 0
            out.append(Clip(frames[i], lab, k))
        return out

    # -- files -------------------------------------------------------------------------
    def write(self, samples: list, path: str | Path) -> list[Path]:
        """``path/clip_0000.gif``… one GIF per clip, ``strip.png`` (first 16 clips) and
        ``labels.json`` (name → class, only for labelled clips)."""
        from .io import write_gif, write_strip_png

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        written, labels = [], {}
        for i, c in enumerate(samples):
            name = f"clip_{i:04d}.gif"
            written.append(write_gif(c.frames, path / name))
            if c.label is not None:
                labels[name] = int(c.label)
        written.append(
            write_strip_png(
                [c.frames for c in samples[:16]], path / "strip.png", labels=[c.label for c in samples[:16]]
            )
        )
        if labels:
            atomic_write_bytes(path / "labels.json", json.dumps(labels, indent=1).encode())
            written.append(path / "labels.json")
        return written

    def read(self, path: str | Path) -> list:
        from .data import ClipFolder
        from .io import read_gif

        path = Path(path)
        if path.is_file():
            return [Clip(read_gif(path, record=0))]
        ds = ClipFolder(path)
        return [Clip(ds.clips[i].numpy(), int(ds.labels[i]) if ds.labels[i] >= 0 else None) for i in range(len(ds))]

    # -- networks and metrics -----------------------------------------------------------
    def network_kwargs(self) -> dict:
        return {
            "in_channels": int(self.config["channels"]),
            "n_classes": int(self.config["n_classes"]) if self.config["conditional"] else 0,
            "context_frames": bool(self.config["context_frames"]),
        }

    def evaluator(self, frames: int | None = None, canvas: int | None = None):
        """The metric classifiers for clips of this modality's size (or the given one),
        trained once per process on the configured digit source and cached."""
        from .classifier import get_evaluator

        C, T, H, W = self.shape()
        same = canvas in (None, H)
        return get_evaluator(
            canvas=canvas or H,
            frames=frames or T,
            source=self.config["source"],
            digit_size=self.config["digit_size"] if same else None,
        )

    def evaluate(self, samples, reference=None, metrics=None, **options):
        if options.get("evaluator") is None:
            from .metrics import as_clips

            x, _ = as_clips(samples)
            options["evaluator"] = self.evaluator(frames=x.shape[2], canvas=x.shape[-1])
        return super().evaluate(samples, reference=reference, metrics=metrics, **options)
