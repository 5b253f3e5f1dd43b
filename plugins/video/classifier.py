"""The plugin's own metric networks: a per-frame digit classifier and a 3-D-conv clip
classifier, trained on Moving-digits clips of the size being evaluated.

- :class:`FrameClassifier` reads one frame ``[N, 1, H, W]`` → 10 digit logits plus an
  11th, "no digit" (:data:`NO_DIGIT`), trained on frames that hold no digit (uniform and
  smoothed noise, flat fields, empty canvases; :func:`non_digit_frames`). Without it a
  digit classifier sends noise confidently to some digit, and metrics built on it reward
  degenerate clips (an untrained network's noise read as "the same digit in every frame").
- :class:`ClipClassifier` reads a clip ``[N, 1, T, H, W]`` with 3×3×3 convolutions →
  10 digit logits plus the absolute velocity (|v_row|, |v_col|, px/frame, constant under
  wall reflection); its pooled features ``[N, 64]`` are what ``video_fvd_ours`` compares, so
  they are sensitive to both identity and motion (the role the I3D network plays in
  FVD, Unterthiner et al. 2018).

:func:`get_evaluator` trains both (seeded, deterministic) once per configuration and
caches them in the process; ``report`` holds their held-out accuracies.
"""

from __future__ import annotations

import inspect
import json
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import group_norm


def _conv2(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), group_norm(cout), nn.SiLU())


def _conv3(cin, cout, stride=(1, 1, 1)):
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1), group_norm(cout), nn.SiLU())


#: index of the frame classifier's "no digit" class (after the 10 digits)
NO_DIGIT = 10


def non_digit_frames(n: int, canvas: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, 1, canvas, canvas]`` frames in [-1, 1] that hold no digit, in four equal
    kinds: uniform noise, noise smoothed at a random scale (blobs) and stretched to a
    random contrast, a flat field at a random level, and the empty canvas (−1)."""
    g = generator
    kind = torch.arange(n) % 4
    out = torch.empty(n, 1, canvas, canvas)
    u = torch.rand(n, 1, canvas, canvas, generator=g) * 2 - 1
    for i in range(n):
        k = int(kind[i])
        if k == 0:
            out[i] = u[i]
        elif k == 1:
            r = int(torch.randint(1, max(2, canvas // 4) + 1, (), generator=g))
            b = F.avg_pool2d(u[i : i + 1], 2 * r + 1, 1, r, count_include_pad=False)
            b = (b - b.mean()) / (b.std() + 1e-6)
            c = float(torch.rand((), generator=g)) * 0.9 + 0.1
            lvl = float(torch.rand((), generator=g)) * 1.6 - 0.8
            out[i] = (lvl + c * b[0]).clamp(-1, 1)
        elif k == 2:
            out[i] = float(torch.rand((), generator=g)) * 2 - 1
        else:
            out[i] = -1.0
    return out


class FrameClassifier(nn.Module):
    """``[N, 1, H, W]`` in [-1, 1] → logits ``[N, n_classes + 1]``; the last is "no digit"
    (translation-invariant by global average pooling)."""

    def __init__(self, n_classes: int = 10, width: int = 16):
        super().__init__()
        w = width
        self.body = nn.Sequential(_conv2(1, w, 2), _conv2(w, 2 * w), _conv2(2 * w, 4 * w, 2), _conv2(4 * w, 4 * w))
        self.head = nn.Linear(4 * w, n_classes + 1)

    def features(self, x):
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.head(self.features(x))


class ClipClassifier(nn.Module):
    """``[N, 1, T, H, W]`` in [-1, 1] → (logits ``[N, n_classes]``, |velocity| ``[N, 2]``)."""

    def __init__(self, n_classes: int = 10, width: int = 8):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv3(1, w, (1, 2, 2)), _conv3(w, 2 * w), _conv3(2 * w, 4 * w, (1, 2, 2)), _conv3(4 * w, 8 * w)
        )
        self.cls = nn.Linear(8 * w, n_classes)
        self.vel = nn.Linear(8 * w, 2)

    def features(self, x):
        """``[N, 8·width]`` pooled features (the ``video_fvd_ours`` embedding)."""
        return self.body(x).mean(dim=(2, 3, 4))

    def forward(self, x):
        f = self.features(x)
        return self.cls(f), self.vel(f)


class VideoEvaluator:
    """Both classifiers for clips of one size, in eval mode on the CPU.

    ``report``: held-out (test-split sprites) frame accuracy, clip accuracy and velocity
    MAE of the trained classifiers.
    """

    def __init__(self, frame: FrameClassifier, clip: ClipClassifier, canvas: int, frames: int, report: dict):
        self.frame, self.clip = frame.eval(), clip.eval()
        self.canvas, self.frames, self.report = canvas, frames, report

    def check(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.canvas or x.shape[-2] != self.canvas:
            raise ValueError(
                f"clips of {x.shape[-2]}×{x.shape[-1]} px; this evaluator was trained on {self.canvas}×{self.canvas}"
            )

    @torch.no_grad()
    def frame_logits(self, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """x ``[N, 1, T, H, W]`` → ``[N, T, n_classes]``."""
        self.check(x)
        N, C, T, H, W = x.shape
        fr = x.permute(0, 2, 1, 3, 4).reshape(N * T, C, H, W).float()
        out = torch.cat([self.frame(fr[i : i + batch]) for i in range(0, len(fr), batch)])
        return out.reshape(N, T, -1)

    @torch.no_grad()
    def clip_features(self, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
        """x ``[N, 1, T, H, W]`` → ``[N, F]`` float64."""
        self.check(x)
        return torch.cat([self.clip.features(x[i : i + batch].float()) for i in range(0, len(x), batch)]).double()

    @torch.no_grad()
    def clip_predict(self, x: torch.Tensor, batch: int = 128):
        self.check(x)
        outs = [self.clip(x[i : i + batch].float()) for i in range(0, len(x), batch)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def train_evaluator(
    canvas: int = 32,
    frames: int = 8,
    source: str = "mnist5k",
    digit_size: int | None = None,
    n_clips: int = 1500,
    frame_steps: int = 400,
    clip_steps: int = 300,
    seed: int = 0,
    progress: bool = True,
) -> VideoEvaluator:
    """Train both classifiers on one-digit Moving-digits clips (train-split sprites) and
    measure them on clips made from the held-out test-split sprites."""
    from .data import MovingDigits

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        train = MovingDigits(n_clips, canvas, frames, 1, digit_size, source=source, split="train", seed=seed)
        test = MovingDigits(
            max(200, n_clips // 5), canvas, frames, 1, digit_size, source=source, split="test", seed=seed + 1
        )
        X = train.clips.float().div(127.5).sub(1).unsqueeze(1)
        Y, V = train.labels, torch.as_tensor(abs(train.velocities[:, 0]), dtype=torch.float32)
        gen = torch.Generator().manual_seed(seed)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=frame_steps + clip_steps, desc=f"video metric classifiers {canvas}px×{frames}", leave=False
            )
        fc = FrameClassifier()
        opt = torch.optim.Adam(fc.parameters(), lr=3e-3)
        junk_gen = torch.Generator().manual_seed(seed + 3)  # own stream: the clip classifier's draws stay as they were
        frames_all = X.permute(0, 2, 1, 3, 4).reshape(-1, 1, canvas, canvas)
        frame_y = Y.repeat_interleave(frames)
        for _ in range(frame_steps):
            idx = torch.randint(len(frames_all), (64,), generator=gen)
            junk = non_digit_frames(16, canvas, junk_gen)
            xb = torch.cat([frames_all[idx], junk])
            yb = torch.cat([frame_y[idx], torch.full((len(junk),), NO_DIGIT, dtype=frame_y.dtype)])
            loss = F.cross_entropy(fc(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if bar is not None:
                bar.update(1)
        cc = ClipClassifier()
        opt = torch.optim.Adam(cc.parameters(), lr=3e-3)
        for _ in range(clip_steps):
            idx = torch.randint(len(X), (32,), generator=gen)
            logits, vel = cc(X[idx])
            loss = F.cross_entropy(logits, Y[idx]) + F.smooth_l1_loss(vel, V[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    ev = VideoEvaluator(fc, cc, canvas, frames, {})
    Xt = test.clips.float().div(127.5).sub(1).unsqueeze(1)
    fl = ev.frame_logits(Xt)
    cl, vel = ev.clip_predict(Xt)
    Vt = torch.as_tensor(abs(test.velocities[:, 0]), dtype=torch.float32)
    junk = non_digit_frames(200, canvas, torch.Generator().manual_seed(seed + 2))
    ev.report = {
        "frame_accuracy": float((fl.argmax(-1) == test.labels[:, None]).float().mean()),
        "no_digit_recall": float((ev.frame(junk).argmax(-1) == NO_DIGIT).float().mean()),
        "clip_accuracy": float((cl.argmax(-1) == test.labels).float().mean()),
        "velocity_mae": float((vel - Vt).abs().mean()),
        "test_clips": len(test),
    }
    return ev


_CACHE: dict = {}
_LOCK = threading.Lock()
#: bump when the classifiers or train_evaluator change (stored weights are keyed by it)
RECIPE_VERSION = 1
#: trained evaluators the plugin ships (see :mod:`polydiff.metric_nets`)
SHIPPED = Path(__file__).with_name("metric_nets")


def evaluator_recipe(canvas: int, frames: int, source: str, digit_size: int, **train_options) -> dict:
    """What determines :func:`train_evaluator`'s networks (its defaults filled in)."""
    params = inspect.signature(train_evaluator).parameters
    unknown = set(train_options) - set(params) - {"progress"}
    if unknown:
        raise TypeError(f"unknown evaluator training options: {sorted(unknown)}")
    settings = {k: train_options.get(k, params[k].default) for k in ("n_clips", "frame_steps", "clip_steps", "seed")}
    return {
        "net": "VideoEvaluator",
        "version": RECIPE_VERSION,
        "canvas": int(canvas),
        "frames": int(frames),
        "source": source,
        "digit_size": int(digit_size),
        **{k: int(v) for k, v in settings.items()},
    }


def get_evaluator(
    canvas: int = 32, frames: int = 8, source: str = "mnist5k", digit_size: int | None = None, **train_options
) -> VideoEvaluator:
    """The evaluator for this clip size: cached in memory, else stored (shipped with the
    plugin or in the user cache, :func:`polydiff.metric_nets.load_or_train`), else trained
    now. Its ``report`` (held-out accuracies) is stored with the weights."""
    from polydiff.metric_nets import load_or_train

    from .data import default_digit_size

    size = int(digit_size or default_digit_size(canvas))
    recipe = evaluator_recipe(canvas, frames, source, size, **train_options)
    key = json.dumps(recipe, sort_keys=True)

    def train() -> tuple[nn.Module, dict]:
        ev = train_evaluator(canvas, frames, source, size, **train_options)
        return nn.ModuleDict({"frame": ev.frame, "clip": ev.clip}), ev.report

    with _LOCK:
        if key not in _CACHE:
            nets, report = load_or_train(
                "video_evaluator",
                recipe,
                build=lambda: nn.ModuleDict({"frame": FrameClassifier(), "clip": ClipClassifier()}),
                train=train,
                shipped=[SHIPPED],
            )
            frame, clip = nets["frame"], nets["clip"]
            assert isinstance(frame, FrameClassifier) and isinstance(clip, ClipClassifier)
            _CACHE[key] = VideoEvaluator(frame, clip, canvas, frames, report)
        return _CACHE[key]
