"""A small audio classifier on normalised log-mels, trained by the plugin on the same
data as the generator. It scores generated clips: class accuracy, ``fd_ours`` (Fréchet
distance of its penultimate embeddings), an inception-style score and KL (see
:mod:`polydiff.plugins.audio.metrics`). Its numbers are ours: never compare them with
published FAD/IS computed with VGGish/PANNs.

Shapes: ``[B, 1, n_mels, T]`` → logits ``[B, n_classes]``, embedding ``[B, emb_dim]``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from polydiff.metric_nets import tensors_sha1


class MelClassifier(nn.Module):
    """Three conv blocks (3×3 conv, GroupNorm, SiLU, 2×2 max-pool), global mean+max pooling
    over frequency and time, a linear embedding and a linear classifier."""

    def __init__(self, n_classes: int, ch: int = 24, emb_dim: int = 64):
        super().__init__()
        self.n_classes = n_classes

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(4, o), nn.SiLU(), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(1, ch), block(ch, 2 * ch), block(2 * ch, 4 * ch))
        self.embed = nn.Linear(8 * ch, emb_dim)
        self.head = nn.Linear(emb_dim, max(1, n_classes))

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        h = torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1)
        return F.silu(self.embed(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(x))


def train_classifier(
    clf: MelClassifier,
    mels: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> list:
    """Cross-entropy training on normalised log-mels ``[n, 1, F, T]`` with a random time
    shift (±4 frames, circular) and ±0.1 gain jitter as augmentation; returns
    ``(step, loss)`` every 25 steps."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=1e-4)
    dev = next(clf.parameters()).device
    clf.train()
    log = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="train classifier", leave=False)
    for step in range(steps):
        idx = torch.randint(0, mels.shape[0], (batch_size,), generator=g)
        x = mels[idx]
        shift = int(torch.randint(-4, 5, (1,), generator=g))
        x = torch.roll(x, shift, dims=-1) + 0.1 * torch.randn((x.shape[0], 1, 1, 1), generator=g)
        loss = F.cross_entropy(clf(x.to(dev)), labels[idx].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 25 == 0 or step + 1 == steps:
            log.append((step + 1, float(loss.detach())))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    clf.eval()
    return log


@torch.no_grad()
def classify(clf: MelClassifier, mels: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities ``[B, K]``, embeddings ``[B, emb_dim]``) of normalised log-mels."""
    clf.eval()
    dev = next(clf.parameters()).device
    probs, embs = [], []
    for i in range(0, mels.shape[0], batch_size):
        e = clf.embedding(mels[i : i + batch_size].to(dev))
        probs.append(F.softmax(clf.head(e), dim=-1).cpu())
        embs.append(e.cpu())
    return torch.cat(probs), torch.cat(embs)


#: bump when MelClassifier or train_classifier changes (stored weights are keyed by it)
RECIPE_VERSION = 1
#: trained classifiers the plugin ships (see :mod:`polydiff.metric_nets`)
SHIPPED = Path(__file__).with_name("metric_nets")


def classifier_recipe(
    mels: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_classes: int,
    steps: int,
    seed: int,
    provenance: dict | None = None,
    frontend: dict | None = None,
) -> dict:
    """What determines :func:`stored_or_trained_classifier`'s network: the data, the class
    count and the training settings. The data are named by ``provenance`` and the front end
    (``frontend``) when they were generated (synthesised clips differ in their last bits
    from one CPU to another, so their bytes would not name them across machines), else by
    the SHA-1 of the normalised log-mels (float32) and labels (int64)."""
    if provenance is not None:
        data: dict = {"data": provenance, "frontend": frontend}
    else:
        data = {"data_sha1": tensors_sha1(mels.float(), labels.long())}
    return {
        "net": "MelClassifier",
        "version": RECIPE_VERSION,
        **data,
        "shape": list(mels.shape),
        "n_classes": int(n_classes),
        "steps": int(steps),
        "seed": int(seed),
    }


def stored_or_trained_classifier(
    mels: torch.Tensor, labels: torch.Tensor, recipe: dict, *, progress: bool = False
) -> MelClassifier:
    """A :class:`MelClassifier` for (``mels`` ``[n, 1, F, T]``, ``labels`` ``[n]``) and their
    :func:`classifier_recipe`: stored (shipped with the plugin or in the user cache,
    :func:`polydiff.metric_nets.load_or_train`) or trained now from an initialisation seeded
    by the recipe's ``seed``."""
    from polydiff.metric_nets import load_or_train

    n_classes, steps, seed = recipe["n_classes"], recipe["steps"], recipe["seed"]

    def train() -> tuple[nn.Module, dict]:
        torch.manual_seed(seed)  # (load_or_train restores the caller's random state)
        clf = MelClassifier(n_classes)
        train_classifier(clf, mels, labels, steps=steps, seed=seed, progress=progress)
        return clf, {}

    clf, _ = load_or_train(
        "audio_mel_classifier", recipe, build=lambda: MelClassifier(n_classes), train=train, shipped=[SHIPPED]
    )
    assert isinstance(clf, MelClassifier)
    return clf
