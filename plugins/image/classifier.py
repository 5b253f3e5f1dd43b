"""The plugin's own small digit classifier: class accuracy of generated images and the
feature space of ``fd_ours``, KID and precision/recall (scores labelled ``_ours`` because
they use this network, not Inception; see REFERENCES "classifier-based scores").

Input ``[B, C, H, W]`` in [-1, 1] (any H = W ≥ 8: the head pools adaptively); features are
the penultimate layer, ``[B, feature_dim]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from polydiff.metric_nets import tensors_sha1


class DigitClassifier(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, feature_dim: int = 64):
        super().__init__()
        self.in_channels, self.num_classes, self.feature_dim = in_channels, num_classes, feature_dim
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` → ``[B, feature_dim]`` (after ReLU)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]``."""
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
        self.eval()
        dev = next(self.parameters()).device
        return torch.cat([self(x[i : i + batch].to(dev)).argmax(1).cpu() for i in range(0, x.shape[0], batch)])

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
        self.eval()
        dev = next(self.parameters()).device
        return torch.cat([self.features(x[i : i + batch].to(dev)).cpu() for i in range(0, x.shape[0], batch)])


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = 600,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    num_classes: int | None = None,
    augment: bool = True,
    progress: bool = True,
) -> DigitClassifier:
    """Fit a :class:`DigitClassifier` on labelled ``images`` ``[N, C, H, W]`` in [-1, 1].

    ``augment`` adds random 1-pixel shifts and small pixel noise (robustness to the small
    artefacts of generated digits). Unlabelled items (label −1) are ignored.
    """
    keep = labels >= 0
    images, labels = images[keep], labels[keep].long()
    if images.shape[0] == 0:
        raise ValueError("the classifier needs labelled images")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = DigitClassifier(images.shape[1], num_classes or int(labels.max()) + 1)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    clf.train()
    for _ in tqdm(range(steps), desc="train classifier", leave=False, disable=not progress):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=g)
        x, y = images[idx], labels[idx]
        if augment:
            dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            x = x + 0.05 * torch.randn(x.shape, generator=g)
        loss = F.cross_entropy(clf(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    clf.eval()
    return clf


_CACHE: dict[str, DigitClassifier] = {}


#: bump when DigitClassifier or train_classifier changes (stored weights are keyed by it)
RECIPE_VERSION = 1
#: trained classifiers the plugin ships (see :mod:`polydiff.metric_nets`)
SHIPPED = Path(__file__).with_name("metric_nets")


def classifier_recipe(images: torch.Tensor, labels: torch.Tensor, *, steps: int = 600) -> dict:
    """What determines :func:`classifier_for`'s network: the data (SHA-1 of the float32
    images and int64 labels), their shape and the training settings."""
    keep = labels >= 0
    return {
        "net": "DigitClassifier",
        "version": RECIPE_VERSION,
        "data_sha1": tensors_sha1(images.float(), labels.long()),
        "shape": list(images.shape),
        "num_classes": int(labels[keep].max()) + 1 if bool(keep.any()) else 0,
        "steps": int(steps),
        "batch_size": 128,
        "lr": 2e-3,
        "seed": 0,
        "augment": True,
    }


def classifier_for(
    images: torch.Tensor, labels: torch.Tensor, *, steps: int = 600, progress: bool = False
) -> DigitClassifier:
    """A classifier trained on (images, labels): cached in memory, else stored (shipped with
    the plugin or in the user cache, :func:`polydiff.metric_nets.load_or_train`), else
    trained now."""
    from polydiff.metric_nets import load_or_train

    recipe = classifier_recipe(images, labels, steps=steps)
    key = json.dumps(recipe, sort_keys=True)
    if key not in _CACHE:
        clf, _ = load_or_train(
            "image_digit_classifier",
            recipe,
            build=lambda: DigitClassifier(images.shape[1], recipe["num_classes"]),
            train=lambda: (
                train_classifier(
                    images,
                    labels,
                    steps=steps,
                    batch_size=recipe["batch_size"],
                    lr=recipe["lr"],
                    seed=recipe["seed"],
                    num_classes=recipe["num_classes"],
                    augment=recipe["augment"],
                    progress=progress,
                ),
                {},
            ),
            shipped=[SHIPPED],
        )
        assert isinstance(clf, DigitClassifier)
        _CACHE[key] = clf
    return _CACHE[key]
