"""Image metrics in the feature space of the plugin's own classifier (suffix ``_ours``).

- class accuracy of conditional samples (classifier prediction = requested label);
- ``fd_ours``: Fréchet distance ‖μ₁−μ₂‖² + tr(Σ₁+Σ₂−2(Σ₁Σ₂)^½) of the features
  (Heusel et al. 2017, with our classifier instead of Inception; :mod:`polydiff.frechet`);
- KID: unbiased MMD² with the kernel k(x, y) = (xᵀy/d + 1)³, averaged over random subsets
  (Bińkowski et al. 2018);
- precision / recall (Kynkäänniemi et al. 2019, k = 3): the share of generated features
  inside the real manifold (union of balls to each real point's k-th neighbour) and of
  real features inside the generated one.

Every metric takes ``samples`` (a list of :class:`~polydiff.plugins.image.io.ImageSample`,
an :class:`~polydiff.plugins.image.data.ImageDataset`, or a tensor ``[N, C, H, W]`` in
[-1, 1]) and ``reference`` (the same kinds, a data set name, a folder or an .npz; default
chosen by image size). ``classifier=`` passes a trained
:class:`~polydiff.plugins.image.classifier.DigitClassifier`; otherwise one is trained on the
reference (cached). :func:`real_floor` gives each metric's real-vs-real value.

Prompt metrics (text-prompt models, issue 20; ``image_prompt_*``, higher is better): each
sample's requested attributes come from its ``attributes`` (set by the modality's decode) or
its parsed ``prompt`` (:func:`~polydiff.plugins.image.captions.parse_prompt`; ``prompts=``
passes them for tensors). The digit is judged by the classifier above, thickness, slant and
size by the measurement functions of :mod:`~polydiff.plugins.image.captions` at the boundary
between the two words (``thresholds=``: the model's ``captions.thresholds``; default: fitted
on the reference). Each per-attribute accuracy counts only samples whose prompt named that
attribute; ``image_prompt_alignment`` is the share of all named attributes that hold.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from polydiff.frechet import frechet_from_features

from .classifier import DigitClassifier, classifier_for
from .data import ImageDataset, load_reference


def as_batch(samples) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples → (images ``[N, C, H, W]`` in [-1, 1], labels ``[N]`` long, −1 = none)."""
    if isinstance(samples, ImageDataset):
        return samples.images, samples.labels
    if torch.is_tensor(samples):
        return samples.float(), torch.full((samples.shape[0],), -1, dtype=torch.long)
    samples = list(samples)
    if not samples:
        raise ValueError("no samples to evaluate")
    if torch.is_tensor(samples[0]):
        return torch.stack([s.float() for s in samples]), torch.full((len(samples),), -1, dtype=torch.long)
    x = torch.stack([s.pixels.float() for s in samples]) * 2 - 1
    y = torch.tensor([-1 if s.label is None else int(s.label) for s in samples], dtype=torch.long)
    return x, y


def _default_reference(images: torch.Tensor) -> str:
    return "sklearn_digits" if images.shape[-1] <= 8 else "mnist5k"


def _setup(samples, reference, classifier):
    x, y = as_batch(samples)
    ref = load_reference(reference, default=_default_reference(x))
    rx, ry = as_batch(ref)
    if classifier is None:
        classifier = classifier_for(rx, ry)
    size = rx.shape[-1]
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear")
    if x.shape[1] != rx.shape[1]:
        raise ValueError(f"samples have {x.shape[1]} channels, the reference {rx.shape[1]}")
    return x, y, rx, ry, classifier


def kid_from_features(
    f1: np.ndarray, f2: np.ndarray, *, subsets: int = 50, subset_size: int = 1000, seed: int = 0
) -> float:
    """Mean over ``subsets`` random subsets of the unbiased MMD² with k = (xᵀy/d + 1)³."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    d = f1.shape[1]
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        a = f1[rng.choice(f1.shape[0], m, replace=False)]
        b = f2[rng.choice(f2.shape[0], m, replace=False)]
        kaa, kbb, kab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        vals.append(
            (kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1)) - 2 * kab.mean()
        )
    return float(np.mean(vals))


def _kth_radius(f: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(f, f)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is its 0-th neighbour


def precision_recall_from_features(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of Kynkäänniemi et al. 2019 with k-NN balls (features ``[N, d]``)."""
    r, g = (
        torch.as_tensor(np.asarray(real), dtype=torch.float64),
        torch.as_tensor(np.asarray(fake), dtype=torch.float64),
    )
    if r.shape[0] <= k or g.shape[0] <= k:
        raise ValueError(f"precision/recall need more than k={k} points in each set")
    rr, rg = _kth_radius(r, k), _kth_radius(g, k)
    d = torch.cdist(g, r)  # [N_fake, N_real]
    precision = (d <= rr[None]).any(1).double().mean()
    recall = (d.T <= rg[None]).any(1).double().mean()
    return float(precision), float(recall)


def features(images: torch.Tensor, classifier: DigitClassifier) -> np.ndarray:
    return classifier.embed(images).double().numpy()


# -- registered metrics: f(samples, reference=None, **options) -> float ---------------------------------------


def class_accuracy(samples, reference=None, *, classifier: DigitClassifier | None = None, labels=None, **_) -> float:
    """Share of samples the classifier assigns to the requested label (labelled samples only)."""
    x, y, _, _, clf = _setup(samples, reference, classifier)
    if labels is not None:
        y = torch.as_tensor(labels, dtype=torch.long)
    keep = y >= 0
    if not keep.any():
        raise ValueError("class accuracy needs labelled samples (conditional generation)")
    return float((clf.predict(x[keep]) == y[keep]).float().mean())


def fd_ours(samples, reference=None, *, classifier: DigitClassifier | None = None, **_) -> float:
    x, _, rx, _, clf = _setup(samples, reference, classifier)
    return frechet_from_features(features(x, clf), features(rx, clf))


def kid_ours(
    samples,
    reference=None,
    *,
    classifier: DigitClassifier | None = None,
    subsets: int = 50,
    subset_size: int = 1000,
    seed: int = 0,
    **_,
) -> float:
    x, _, rx, _, clf = _setup(samples, reference, classifier)
    return kid_from_features(features(x, clf), features(rx, clf), subsets=subsets, subset_size=subset_size, seed=seed)


def precision_ours(samples, reference=None, *, classifier: DigitClassifier | None = None, k: int = 3, **_) -> float:
    x, _, rx, _, clf = _setup(samples, reference, classifier)
    return precision_recall_from_features(features(rx, clf), features(x, clf), k)[0]


def recall_ours(samples, reference=None, *, classifier: DigitClassifier | None = None, k: int = 3, **_) -> float:
    x, _, rx, _, clf = _setup(samples, reference, classifier)
    return precision_recall_from_features(features(rx, clf), features(x, clf), k)[1]


# -- prompt metrics -------------------------------------------------------------------------------------------
PROMPT_ATTRIBUTES = ("digit", "thickness", "slant", "size")


def requested_attributes(samples, prompts=None) -> list[dict]:
    """Per sample the attributes its prompt asks for (see the module docstring)."""
    from .captions import parse_prompt

    if prompts is not None:
        return [parse_prompt(p) for p in prompts]
    out = []
    for s in samples:
        a = getattr(s, "attributes", None)
        out.append(dict(a) if a is not None else parse_prompt(getattr(s, "prompt", None)))
    return out


def prompt_judgements(
    samples, reference=None, *, classifier: DigitClassifier | None = None, thresholds=None, prompts=None
) -> list[dict]:
    """Per sample ``{attribute: True/False}`` for each attribute its prompt names, plus the
    measurements (``measured``) and the classifier's digit (``predicted``)."""
    from .captions import fit_thresholds, measure_attributes, satisfies

    if not isinstance(samples, (ImageDataset, torch.Tensor)):
        samples = list(samples)
    req = requested_attributes(samples, prompts)
    if not any(v is not None for r in req for v in r.values()):
        raise ValueError("no sample carries a prompt naming an attribute (prompt metrics need prompted samples)")
    x, _, rx, _, clf = _setup(samples, reference, classifier)
    if len(req) != x.shape[0]:
        raise ValueError(f"{len(req)} prompts for {x.shape[0]} samples")
    if thresholds is None:
        thresholds = fit_thresholds(rx)
    meas = measure_attributes(x)
    pred = clf.predict(x).tolist() if any(r["digit"] is not None for r in req) else [None] * len(req)
    out = []
    for i, r in enumerate(req):
        j = {"measured": {k: float(v[i]) for k, v in meas.items()}, "predicted": pred[i]}
        if r["digit"] is not None:
            j["digit"] = pred[i] == r["digit"]
        for a in ("thickness", "slant", "size"):
            if r.get(a):
                j[a] = satisfies(a, r[a], j["measured"][a], thresholds)
        out.append(j)
    return out


def _share(judged: list[dict], attribute: str | None) -> float:
    keys = PROMPT_ATTRIBUTES if attribute is None else (attribute,)
    vals = [j[k] for j in judged for k in keys if k in j]
    if not vals:
        what = "any attribute" if attribute is None else f"the {attribute}"
        raise ValueError(f"no sample's prompt names {what}")
    return float(sum(vals) / len(vals))


def prompt_scores(samples, reference=None, **options) -> dict[str, float]:
    """Every prompt metric at once (keys without the ``image_`` prefix; attributes no prompt
    names are left out) and the counts ``n_<attribute>``."""
    judged = prompt_judgements(samples, reference, **options)
    out = {}
    for a in PROMPT_ATTRIBUTES:
        n = sum(a in j for j in judged)
        if n:
            out[f"prompt_{a}_accuracy"] = _share(judged, a)
            out[f"n_{a}"] = n
    if out:
        out["prompt_alignment"] = _share(judged, None)
    return out


def _prompt_metric(attribute: str | None):
    def metric(samples, reference=None, *, classifier=None, thresholds=None, prompts=None, **_) -> float:
        judged = prompt_judgements(samples, reference, classifier=classifier, thresholds=thresholds, prompts=prompts)
        return _share(judged, attribute)

    what = "all named attributes" if attribute is None else f"the {attribute}"
    metric.__doc__ = f"Share of samples whose prompt names {what} that satisfy it (see the module docstring)."
    metric.__name__ = f"prompt_{attribute or 'alignment'}"
    return metric


prompt_digit_accuracy = _prompt_metric("digit")
prompt_thickness_accuracy = _prompt_metric("thickness")
prompt_slant_accuracy = _prompt_metric("slant")
prompt_size_accuracy = _prompt_metric("size")
prompt_alignment = _prompt_metric(None)


def prompt_metrics_for(samples) -> list[str]:
    """The registered prompt metrics that apply to ``samples`` (those whose prompts name something)."""
    if isinstance(samples, (ImageDataset, torch.Tensor)):
        return []
    samples = list(samples)
    if not any(getattr(s, "prompt", None) for s in samples):
        return []
    req = requested_attributes(samples)
    names = [f"image_prompt_{a}_accuracy" for a in PROMPT_ATTRIBUTES if any(r.get(a) is not None for r in req)]
    return names + ["image_prompt_alignment"] if names else []


#: registered metric name → (function, higher_is_better)
METRICS = {
    "image_class_accuracy": (class_accuracy, True),
    "image_fd_ours": (fd_ours, False),
    "image_kid_ours": (kid_ours, False),
    "image_precision_ours": (precision_ours, True),
    "image_recall_ours": (recall_ours, True),
    "image_prompt_digit_accuracy": (prompt_digit_accuracy, True),
    "image_prompt_thickness_accuracy": (prompt_thickness_accuracy, True),
    "image_prompt_slant_accuracy": (prompt_slant_accuracy, True),
    "image_prompt_size_accuracy": (prompt_size_accuracy, True),
    "image_prompt_alignment": (prompt_alignment, True),
}


def all_scores(
    samples, reference, classifier: DigitClassifier, *, k: int = 3, kid_subsets: int = 50, kid_subset_size: int = 1000
) -> dict[str, float]:
    """Every metric at once (features computed once); keys without the ``image_`` prefix.
    ``class_accuracy`` only when the samples carry labels."""
    x, y, rx, _, clf = _setup(samples, reference, classifier)
    fx, fr = features(x, clf), features(rx, clf)
    p, r = precision_recall_from_features(fr, fx, k)
    out = {
        "fd_ours": frechet_from_features(fx, fr),
        "kid_ours": kid_from_features(fx, fr, subsets=kid_subsets, subset_size=kid_subset_size),
        "precision_ours": p,
        "recall_ours": r,
    }
    if (y >= 0).any():
        out["class_accuracy"] = float((clf.predict(x[y >= 0]) == y[y >= 0]).float().mean())
    return out


def real_floor(reference, classifier: DigitClassifier, *, n: int | None = None, seed: int = 0, **kw) -> dict:
    """The real-vs-real values of :func:`all_scores`: one random half of ``reference`` (at most
    ``n`` images, with their true labels) scored against the other half."""
    ref = load_reference(reference)
    perm = torch.randperm(len(ref), generator=torch.Generator().manual_seed(seed))
    half = len(ref) // 2
    a, b = ref.subset(perm[:half]), ref.subset(perm[half:])
    if n is not None:
        a = a.subset(torch.arange(min(n, len(a))))
    return all_scores(a, b, classifier, **kw)
