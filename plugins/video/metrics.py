"""Video metrics (each ``f(samples, reference=None, **options) -> float``).

``samples``/``reference``: a list of :class:`~polydiff.plugins.video.modality.Clip`, a
float tensor ``[N, 1, T, H, W]`` in [-1, 1], a uint8 array ``[N, T, H, W]``, a dataset
with ``.clips`` (uint8 ``[N, T, H, W]``), or a folder path (read with
:class:`~polydiff.plugins.video.data.ClipFolder`). ``evaluator=`` passes the classifiers
(:func:`~polydiff.plugins.video.classifier.get_evaluator`); by default one is trained for
the clips' size on MNIST-5k digits.

- ``video_frame_accuracy``: share of frames whose digit (frame classifier) is the clip's
  requested class.
- ``video_identity_consistency``: per clip, the classifier's mean probability over frames
  of the clip's identity (the digit with the highest mean probability), averaged over
  clips: 1 = every frame is confidently the same digit. Probabilities rather than hard
  votes, and a classifier with a "no digit" class, because a plain digit classifier sends
  every noise frame to the same arbitrary digit (hard votes: uniform noise 0.975, above
  real clips, 0.93): noise and flat clips now put their mass on "no digit" and score ≈ 0.
- ``video_fvd_ours``: Fréchet distance (Dowson & Landau 1982; FID, Heusel et al. 2017; FVD,
  Unterthiner et al. 2018; :mod:`polydiff.frechet`) between clip-classifier features of
  samples and reference.
- ``video_prediction_mse``: mean squared error (in [-1, 1] units) of the generated
  frames after the given context against the true continuation (reference).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from polydiff.errors import InputError
from polydiff.frechet import frechet_from_features


def as_clips(samples) -> tuple[torch.Tensor, list]:
    """→ (float ``[N, 1, T, H, W]`` in [-1, 1], labels list (None where unknown))."""
    if isinstance(samples, (str, Path)):
        from .data import ClipFolder

        samples = ClipFolder(samples)
    if hasattr(samples, "clips") and hasattr(samples, "labels"):
        lab = [int(v) if int(v) >= 0 else None for v in samples.labels]
        return samples.clips.float().div(127.5).sub(1).unsqueeze(1), lab
    if torch.is_tensor(samples):
        x = samples.float()
        return (x if x.ndim == 5 else x.unsqueeze(1)), [None] * len(x)
    if isinstance(samples, np.ndarray):
        return torch.as_tensor(samples).float().div(127.5).sub(1).unsqueeze(1), [None] * len(samples)
    samples = list(samples)
    if not samples:
        raise ValueError("no clips to evaluate")
    if hasattr(samples[0], "frames"):
        x = torch.stack([torch.as_tensor(np.asarray(c.frames)) for c in samples]).float().div(127.5).sub(1)
        return x.unsqueeze(1), [c.label for c in samples]
    if isinstance(samples[0], dict):
        return torch.stack([s["x"] for s in samples]), [s.get("label") for s in samples]
    raise TypeError(f"cannot read clips from {type(samples[0]).__name__}")


def _evaluator(x: torch.Tensor, options: dict):
    ev = options.get("evaluator")
    if ev is None:
        from .classifier import get_evaluator

        ev = get_evaluator(
            canvas=x.shape[-1],
            frames=x.shape[2],
            source=options.get("source", "mnist5k"),
            digit_size=options.get("digit_size"),
        )
    return ev


def frame_predictions(samples, **options) -> tuple[torch.Tensor, list]:
    """Predicted digit per frame ``[N, T]`` and the clips' labels."""
    x, labels = as_clips(samples)
    return _evaluator(x, options).frame_logits(x).argmax(-1), labels


def frame_accuracy(samples, reference=None, **options) -> float:
    pred, labels = frame_predictions(samples, **options)
    if any(v is None for v in labels):
        raise InputError(
            "video_frame_accuracy needs the class of every clip (class-conditional samples or a labels.json)",
            field="label",
        )
    y = torch.as_tensor(labels)[:, None]
    return float((pred == y).float().mean())


def identity_consistency(samples, reference=None, **options) -> float:
    x, _ = as_clips(samples)
    from .classifier import NO_DIGIT

    prob = _evaluator(x, options).frame_logits(x).float().softmax(-1)  # [N, T, 10 digits + no digit]
    identity = prob[..., :NO_DIGIT].mean(1).argmax(-1)  # [N], a digit
    return float(prob.gather(2, identity[:, None, None].expand(-1, prob.shape[1], 1)).mean())


def fvd_ours(samples, reference=None, **options) -> float:
    if reference is None:
        raise InputError("video_fvd_ours needs reference clips (reference=)", field="reference")
    x, _ = as_clips(samples)
    r, _ = as_clips(reference)
    ev = _evaluator(x, options)
    return frechet_from_features(ev.clip_features(x), ev.clip_features(r))


def prediction_mse(samples, reference=None, context_frames: int | None = None, **options) -> float:
    """MSE over frames ``k..T-1`` (``k`` = ``context_frames`` or each clip's own)."""
    if reference is None:
        raise InputError("video_prediction_mse needs the true clips (reference=)", field="reference")
    x, _ = as_clips(samples)
    r, _ = as_clips(reference)
    if x.shape != r.shape:
        raise InputError(f"samples {tuple(x.shape)} and reference {tuple(r.shape)} differ in shape", field="reference")
    if context_frames is None:
        ks = [getattr(c, "context_frames", 0) for c in samples] if isinstance(samples, list) else [0] * len(x)
    else:
        ks = [int(context_frames)] * len(x)
    errs = [((x[i, :, k:] - r[i, :, k:]) ** 2).mean() for i, k in enumerate(ks) if k < x.shape[2]]
    return float(torch.stack(errs).mean())


#: registered metric name → (function, higher_is_better)
METRICS = {
    "video_frame_accuracy": (frame_accuracy, True),
    "video_identity_consistency": (identity_consistency, True),
    "video_fvd_ours": (fvd_ours, False),
    "video_prediction_mse": (prediction_mse, False),
}
