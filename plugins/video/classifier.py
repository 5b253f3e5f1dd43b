"""The plugin's own metric networks: a per-frame digit classifier and a 3-D-conv clip
classifier, trained on Moving-digits clips of the size being evaluated.

- :class:`FrameClassifier` reads one frame ``[N, 1, H, W]`` → 10 digit logits.
- :class:`ClipClassifier` reads a clip ``[N, 1, T, H, W]`` with 3×3×3 convolutions →
  10 digit logits plus the absolute velocity (|v_row|, |v_col|, px/frame, constant under
  wall reflection); its pooled features ``[N, 64]`` are what ``fvd_ours`` compares, so
  they are sensitive to both identity and motion (the role the I3D network plays in
  FVD, Unterthiner et al. 2018).

:func:`get_evaluator` trains both (seeded, deterministic) once per configuration and
caches them in the process; ``report`` holds their held-out accuracies.
"""
from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import group_norm


def _conv2(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), group_norm(cout), nn.SiLU())


def _conv3(cin, cout, stride=(1, 1, 1)):
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1), group_norm(cout), nn.SiLU())


class FrameClassifier(nn.Module):
    """``[N, 1, H, W]`` in [-1, 1] → logits ``[N, n_classes]`` (translation-invariant by
    global average pooling)."""

    def __init__(self, n_classes: int = 10, width: int = 16):
        super().__init__()
        w = width
        self.body = nn.Sequential(_conv2(1, w, 2), _conv2(w, 2 * w), _conv2(2 * w, 4 * w, 2), _conv2(4 * w, 4 * w))
        self.head = nn.Linear(4 * w, n_classes)

    def features(self, x):
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.head(self.features(x))


class ClipClassifier(nn.Module):
    """``[N, 1, T, H, W]`` in [-1, 1] → (logits ``[N, n_classes]``, |velocity| ``[N, 2]``)."""

    def __init__(self, n_classes: int = 10, width: int = 8):
        super().__init__()
        w = width
        self.body = nn.Sequential(_conv3(1, w, (1, 2, 2)), _conv3(w, 2 * w), _conv3(2 * w, 4 * w, (1, 2, 2)),
                                  _conv3(4 * w, 8 * w))
        self.cls = nn.Linear(8 * w, n_classes)
        self.vel = nn.Linear(8 * w, 2)

    def features(self, x):
        """``[N, 8·width]`` pooled features (the ``fvd_ours`` embedding)."""
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
            raise ValueError(f"clips of {x.shape[-2]}×{x.shape[-1]} px; this evaluator was trained on "
                             f"{self.canvas}×{self.canvas}")

    @torch.no_grad()
    def frame_logits(self, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """x ``[N, 1, T, H, W]`` → ``[N, T, n_classes]``."""
        self.check(x)
        N, C, T, H, W = x.shape
        fr = x.permute(0, 2, 1, 3, 4).reshape(N * T, C, H, W).float()
        out = torch.cat([self.frame(fr[i:i + batch]) for i in range(0, len(fr), batch)])
        return out.reshape(N, T, -1)

    @torch.no_grad()
    def clip_features(self, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
        """x ``[N, 1, T, H, W]`` → ``[N, F]`` float64."""
        self.check(x)
        return torch.cat([self.clip.features(x[i:i + batch].float()) for i in range(0, len(x), batch)]).double()

    @torch.no_grad()
    def clip_predict(self, x: torch.Tensor, batch: int = 128):
        self.check(x)
        outs = [self.clip(x[i:i + batch].float()) for i in range(0, len(x), batch)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def train_evaluator(canvas: int = 32, frames: int = 8, source: str = "mnist5k", digit_size: int | None = None,
                    n_clips: int = 1500, frame_steps: int = 400, clip_steps: int = 300, seed: int = 0,
                    progress: bool = True) -> VideoEvaluator:
    """Train both classifiers on one-digit Moving-digits clips (train-split sprites) and
    measure them on clips made from the held-out test-split sprites."""
    from .data import MovingDigits

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        train = MovingDigits(n_clips, canvas, frames, 1, digit_size, source=source, split="train", seed=seed)
        test = MovingDigits(max(200, n_clips // 5), canvas, frames, 1, digit_size, source=source, split="test",
                            seed=seed + 1)
        X = train.clips.float().div(127.5).sub(1).unsqueeze(1)
        Y, V = train.labels, torch.as_tensor(abs(train.velocities[:, 0]), dtype=torch.float32)
        gen = torch.Generator().manual_seed(seed)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=frame_steps + clip_steps, desc=f"video metric classifiers {canvas}px×{frames}",
                       leave=False)
        fc = FrameClassifier()
        opt = torch.optim.Adam(fc.parameters(), lr=3e-3)
        frames_all = X.permute(0, 2, 1, 3, 4).reshape(-1, 1, canvas, canvas)
        frame_y = Y.repeat_interleave(frames)
        for step in range(frame_steps):
            idx = torch.randint(len(frames_all), (64,), generator=gen)
            loss = F.cross_entropy(fc(frames_all[idx]), frame_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if bar is not None:
                bar.update(1)
        cc = ClipClassifier()
        opt = torch.optim.Adam(cc.parameters(), lr=3e-3)
        for step in range(clip_steps):
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
    ev.report = {"frame_accuracy": float((fl.argmax(-1) == test.labels[:, None]).float().mean()),
                 "clip_accuracy": float((cl.argmax(-1) == test.labels).float().mean()),
                 "velocity_mae": float((vel - Vt).abs().mean()), "test_clips": len(test)}
    return ev


_CACHE: dict = {}
_LOCK = threading.Lock()


def get_evaluator(canvas: int = 32, frames: int = 8, source: str = "mnist5k", digit_size: int | None = None,
                  **train_options) -> VideoEvaluator:
    """The cached evaluator for this clip size (trained on first use)."""
    from .data import default_digit_size

    key = (int(canvas), int(frames), source, int(digit_size or default_digit_size(canvas)),
           tuple(sorted(train_options.items())))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = train_evaluator(canvas, frames, source, key[3], **train_options)
        return _CACHE[key]
