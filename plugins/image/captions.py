"""Captions for digit images from attributes measured on the image itself, and the prompt
parser the prompt metrics use (issue 20).

Measurements (:func:`measure_attributes`, deterministic, on the ink ``I = (x + 1) / 2`` of a
``[C, H, W]`` image in [-1, 1], channels averaged, coordinates in pixels, rows ``y`` downwards):

- ``thickness`` (pixels): mean stroke width ``2·M / P`` with the ink mass ``M = Σ I`` and the
  ink perimeter ``P`` = the total variation ``Σ |ΔI|`` over horizontal and vertical
  neighbours (the image zero-padded by one pixel). For a stroke of length L ≫ width w,
  M ≈ L·w and P ≈ 2L, so 2M/P ≈ w; blur leaves both M and P (nearly) unchanged.
- ``slant`` (pixels of horizontal shift per pixel of height, tan of the lean from vertical):
  ``−μ11 / μ02`` from the ink's central second moments (μ11 = Σ I·(x−x̄)(y−ȳ),
  μ02 = Σ I·(y−ȳ)²); positive = the top leans right (the shear that deskews the digit).
- ``size`` (pixels): radius of gyration ``√((μ20 + μ02) / M)`` of the ink.

Words (:func:`attribute_words`) name only clear cases, by quantiles of the training set
(:func:`fit_thresholds`, stored in the modality config ``captions.thresholds``):

- ``thin`` = thickness in the bottom third, ``thick`` = top third (middle third: no word);
- ``upright`` = |slant| in the bottom third of |slant|, ``slanted`` = slant in the top third
  of the signed slant (a strong right lean); left-leaning digits are neither;
- ``small`` / ``large`` = size in the bottom / top third.

Judging a generated image against a requested word (:func:`satisfies`) uses the decision
boundary between the two words' ranges: the median for thickness and size (the middle of
the middle third), and for slant the midpoint ``(a + b) / 2`` between the upright range's
upper edge ``a`` (on |slant|) and the slanted range's lower edge ``b``: "slanted" holds when
slant > (a + b)/2, "upright" when |slant| < (a + b)/2.

Captions (:func:`caption_for`) combine a digit phrase, attribute phrases and a template, each
drawn from the phrasing lists below; :data:`HELD_OUT_PHRASINGS` (some templates and
attribute/digit phrasings) never appear in training captions (they are the paraphrase
test), and the digit × thickness × slant triples in ``held_out_triples`` are never named
together in a training caption (one of the three words is dropped). Training draws a
caption per item and per visit: the k-th time item i is fetched it uses
``torch.Generator().manual_seed(seed·1 000 003 + i·7 919 + k)`` (:class:`CaptionedImageDataset`).
The same draw may shear the image first (slant augmentation, ``shear`` > 0: the caption is then
built from the attributes measured on the sheared image) — without it a 15-minute model learns
thickness but hardly any slant, since the data hold few slanted examples per digit.
"""

from __future__ import annotations

import re

import torch

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

#: attribute → value → trained phrasings (each contains a keyword of :data:`KEYWORDS`)
PHRASINGS = {
    "thickness": {"thick": ["thick", "bold", "heavy"], "thin": ["thin", "fine", "light"]},
    "slant": {"slanted": ["slanted", "tilted", "leaning", "italic"], "upright": ["upright", "straight"]},
    "size": {"large": ["large", "big"], "small": ["small", "little"]},
}
#: digit phrasings used in training ({w}: the word, {n}: the numeral)
DIGIT_PHRASINGS = ["{w}", "{n}", "digit {w}", "digit {n}", "handwritten {w}", "handwritten {n}"]
#: caption templates used in training; {adj}: the attribute phrases, {digit}: the digit phrase
TEMPLATES = [
    "a {adj} {digit}",
    "{adj} {digit}",
    "a picture of a {adj} {digit}",
    "{digit}, {adj}",
    "a {digit} that is {adj_and}",
    "mnist {digit} {adj}",
    "an {adj} {digit} written by hand",
]
#: phrasings never used in training captions: the paraphrase-robustness test
HELD_OUT_PHRASINGS = {
    "templates": ["an image showing a {adj} {digit}", "please draw a {adj} {digit}", "{digit} drawn {adj_and}"],
    "digit": ["number {w}", "numeral {n}"],
    "thick": ["thick-lined", "very bold"],
    "thin": ["thin-lined", "very light"],
    "slanted": ["tilted to the right", "slanted-looking"],
    "upright": ["standing upright", "perfectly straight"],
    "large": ["very large"],
    "small": ["very small"],
}
#: parser keywords (every trained and held-out phrasing contains one)
KEYWORDS = {
    "thickness": {"thick": {"thick", "bold", "heavy", "boldly"}, "thin": {"thin", "fine", "light", "finely"}},
    "slant": {
        "slanted": {"slanted", "tilted", "leaning", "italic", "slant", "tilt"},
        "upright": {"upright", "straight"},
    },
    "size": {"large": {"large", "big"}, "small": {"small", "little"}},
}
#: digit × thickness × slant triples never named together in training (8 of 40: one per
#: digit for 8 digits, each thickness × slant pair twice; every single value and every pair
#: of values still occurs in training captions)
HELD_OUT_TRIPLES = [
    (0, "thin", "slanted"),
    (1, "thick", "upright"),
    (2, "thick", "slanted"),
    (3, "thin", "upright"),
    (4, "thin", "slanted"),
    (5, "thick", "upright"),
    (7, "thick", "slanted"),
    (8, "thin", "upright"),
]
#: probability that a caption names each clear attribute (absent words must not mean "middle")
NAME_PROB = {"digit": 0.9, "thickness": 0.75, "slant": 0.85, "size": 0.3}
#: probability of one nonce word (``xq`` + digits) in a training caption, so the encoder learns to
#: ignore words it has not seen (robustness to new filler words)
NONCE_PROB = 0.1
ATTRIBUTES = ("thickness", "slant", "size")


# -- measurement ---------------------------------------------------------------------------------------------
def ink_of(images: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` (or ``[C, H, W]``) in [-1, 1] → ink ``[N, H, W]`` in [0, 1]."""
    x = images.float()
    if x.ndim == 3:
        x = x[None]
    return ((x + 1) / 2).clamp(0, 1).mean(1)


@torch.no_grad()
def measure_attributes(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image ``thickness``, ``slant``, ``size`` (see the module docstring for units) and
    ``mass`` (Σ ink), each float64 ``[N]``, of images ``[N, C, H, W]`` in [-1, 1]."""
    ink = ink_of(images).double()
    N, H, W = ink.shape
    mass = ink.sum((1, 2))
    p = torch.nn.functional.pad(ink, (1, 1, 1, 1))
    tv = (p[:, :, 1:] - p[:, :, :-1]).abs().sum((1, 2)) + (p[:, 1:, :] - p[:, :-1, :]).abs().sum((1, 2))
    safe = mass.clamp(min=1e-9)
    ys = torch.arange(H, dtype=torch.float64)[:, None].expand(H, W)
    xs = torch.arange(W, dtype=torch.float64)[None].expand(H, W)
    cx = (ink * xs).sum((1, 2)) / safe
    cy = (ink * ys).sum((1, 2)) / safe
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    mu02, mu11, mu20 = (ink * dy * dy).sum((1, 2)), (ink * dx * dy).sum((1, 2)), (ink * dx * dx).sum((1, 2))
    return {
        "thickness": 2 * mass / tv.clamp(min=1e-9),
        "slant": -mu11 / mu02.clamp(min=1e-9),
        "size": ((mu20 + mu02) / safe).sqrt(),
        "mass": mass,
    }


def fit_thresholds(images: torch.Tensor) -> dict:
    """Quantile thresholds of the training images (floats, JSON-ready): per attribute ``low``
    (word below: thin/small; for slant on |slant|: upright), ``high`` (word above:
    thick/large/slanted) and ``boundary`` (the judging boundary between the two words)."""
    a = measure_attributes(images)
    q = torch.tensor([1 / 3, 0.5, 2 / 3], dtype=torch.float64)
    out = {}
    for k in ("thickness", "size"):
        lo, mid, hi = a[k].quantile(q).tolist()
        out[k] = {"low": lo, "high": hi, "boundary": mid}
    up = float(a["slant"].abs().quantile(1 / 3))
    sl = float(a["slant"].quantile(2 / 3))
    out["slant"] = {"low": up, "high": sl, "boundary": (up + sl) / 2}
    return out


def attribute_words(attrs: dict[str, torch.Tensor], thresholds: dict) -> list[dict]:
    """Per image ``{"thickness": "thin"|"thick"|None, "slant": "upright"|"slanted"|None,
    "size": "small"|"large"|None}``: the clear cases only (see the module docstring)."""
    n = len(attrs["thickness"])
    out = []
    for i in range(n):
        w = {}
        for k, (lo_w, hi_w) in {"thickness": ("thin", "thick"), "size": ("small", "large")}.items():
            v, t = float(attrs[k][i]), thresholds[k]
            w[k] = lo_w if v <= t["low"] else hi_w if v >= t["high"] else None
        s, t = float(attrs["slant"][i]), thresholds["slant"]
        w["slant"] = "slanted" if s >= t["high"] else "upright" if abs(s) <= t["low"] else None
        out.append(w)
    return out


def satisfies(attribute: str, word: str, value: float, thresholds: dict) -> bool:
    """Does a measured ``value`` of ``attribute`` satisfy the requested ``word`` (judged at
    the boundary between the two words' ranges)?"""
    b = thresholds[attribute]["boundary"]
    if attribute == "slant":
        return value > b if word == "slanted" else abs(value) < b
    high = {"thickness": "thick", "size": "large"}[attribute]
    return value > b if word == high else value < b


def is_slanted(value: float, thresholds: dict) -> bool:
    """The caption's "slanted" (top third of the training set's slant), for share counts."""
    return value >= thresholds["slant"]["high"]


# -- prompt parsing ------------------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+")


def parse_prompt(text: str | None) -> dict:
    """Words → requested attributes ``{"digit": int|None, "thickness": ..., "slant": ...,
    "size": ...}`` (None = not named). Tolerant of every phrasing here (trained and held
    out): case-insensitive words, digits as words or numerals, synonyms by keyword."""
    out: dict = {"digit": None, "thickness": None, "slant": None, "size": None}
    if not text:
        return out
    words = _WORD.findall(text.lower())
    for w in words:
        if out["digit"] is None:
            if w in DIGIT_WORDS:
                out["digit"] = DIGIT_WORDS.index(w)
            elif len(w) == 1 and w.isdigit():
                out["digit"] = int(w)
        for attr, table in KEYWORDS.items():
            if out[attr] is None:
                for value, keys in table.items():
                    if w in keys:
                        out[attr] = value
    return out


# -- captions ------------------------------------------------------------------------------------------------
def _pick(options: list, g: torch.Generator):
    return options[int(torch.randint(len(options), (1,), generator=g))]


def _coin(p: float, g: torch.Generator) -> bool:
    return bool(torch.rand(1, generator=g) < p)


def phrasings(held_out: bool = False) -> dict:
    """The phrase lists of one split: ``templates``, ``digit`` and one list per attribute
    word (trained phrasings, or the held-out ones with ``held_out=True``)."""
    if held_out:
        return dict(HELD_OUT_PHRASINGS)
    out = {"templates": list(TEMPLATES), "digit": list(DIGIT_PHRASINGS)}
    for table in PHRASINGS.values():
        out.update({k: list(v) for k, v in table.items()})
    return out


def compose(words: dict, g: torch.Generator, *, held_out: bool = False, nonce: bool = False) -> str:
    """A caption naming exactly ``words`` (``{"digit": int|None, attribute: word|None}``),
    with template and phrasings drawn by ``g`` from the trained (or held-out) lists."""
    ph = phrasings(held_out)
    d = words.get("digit")
    digit = "digit" if d is None else _pick(ph["digit"], g).format(w=DIGIT_WORDS[d], n=str(d))
    adjs = [_pick(ph[words[a]], g) for a in ATTRIBUTES if words.get(a)]
    order = torch.randperm(len(adjs), generator=g).tolist()
    adjs = [adjs[i] for i in order]
    if nonce:
        adjs.insert(
            int(torch.randint(len(adjs) + 1, (1,), generator=g)), f"xq{int(torch.randint(10**4, (1,), generator=g))}"
        )
    template = _pick(ph["templates"], g)
    text = template.format(adj=" ".join(adjs), adj_and=" and ".join(adjs), digit=digit)
    if not adjs:  # no attribute words: drop the template's words that led to them
        text = re.sub(r" (that is|drawn)\s*$", "", text.strip())
    text = re.sub(r"\s+", " ", text.replace(" ,", ",")).strip(" ,")
    text = re.sub(r"\ba (?=[aeiou8]|11\b|18\b)(?!one\b)", "an ", text)
    return re.sub(r"\ban (?=[^aeiou8]|one\b)", "a ", text)


def training_words(digit: int, words: dict, g: torch.Generator, held_out_triples) -> dict:
    """Which of an image's words a training caption names: each clear attribute and the
    digit with probability :data:`NAME_PROB`; never a full held-out triple (one of the
    three words is dropped at random)."""
    out = {"digit": digit if (digit is not None and digit >= 0 and _coin(NAME_PROB["digit"], g)) else None}
    for a in ATTRIBUTES:
        out[a] = words.get(a) if words.get(a) and _coin(NAME_PROB[a], g) else None
    triple = (out["digit"], out["thickness"], out["slant"])
    if None not in triple and tuple(triple) in {tuple(t) for t in held_out_triples}:
        out[_pick(["digit", "thickness", "slant"], g)] = None
    return out


def caption_for(digit: int, words: dict, g: torch.Generator, held_out_triples=HELD_OUT_TRIPLES) -> str:
    """A training caption of an image with label ``digit`` and clear attribute ``words``."""
    named = training_words(digit, words, g, held_out_triples)
    return compose(named, g, nonce=_coin(NONCE_PROB, g))


def caption_seed(seed: int, index: int, visit: int) -> int:
    return seed * 1_000_003 + index * 7_919 + visit


def shear_images(images: torch.Tensor, shear) -> torch.Tensor:
    """Images ``[N, C, H, W]`` in [-1, 1] sheared about the image centre so that rows above it
    move right by ``shear`` px per px (bilinear; the measured slant grows by about ``shear``)."""
    x = images.float()
    s = torch.as_tensor(shear, dtype=torch.float32).reshape(-1).expand(x.shape[0])
    theta = torch.zeros(x.shape[0], 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 1] = s * x.shape[-2] / x.shape[-1]  # x_in = x_out + s·y_out (normalised, y down)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    ink = torch.nn.functional.grid_sample((x + 1) / 2, grid, align_corners=False, padding_mode="zeros")
    return (ink * 2 - 1).clamp(-1, 1)


class CaptionedImageDataset:
    """An :class:`~polydiff.plugins.image.data.ImageDataset` whose items also carry a
    ``caption``, drawn afresh per visit (see the module docstring). ``words[i]``: the
    image's clear attribute words; ``attributes``: the measurements.

    ``shear`` > 0 (slant augmentation): with probability ``shear_prob`` a visit shears the
    image by s ~ U(−shear, shear) px per px (:func:`shear_images`, same generator as the
    caption) and captions it from the attributes measured on the sheared image."""

    def __init__(
        self,
        base,
        thresholds: dict,
        *,
        seed: int = 0,
        held_out_triples=HELD_OUT_TRIPLES,
        shear: float = 0.0,
        shear_prob: float = 0.5,
    ):
        self.base, self.thresholds, self.seed = base, thresholds, int(seed)
        self.held_out_triples = [tuple(t) for t in held_out_triples]
        self.shear, self.shear_prob = float(shear), float(shear_prob)
        self.attributes = measure_attributes(base.images)
        self.words = attribute_words(self.attributes, thresholds)
        self._visits = [0] * len(base)

    def item(self, i: int, visit: int) -> dict:
        """Item ``i`` at its ``visit``-th fetch: ``{"x", "label", "caption"}``."""
        g = torch.Generator().manual_seed(caption_seed(self.seed, i, visit))
        item = dict(self.base[i])
        words = self.words[i]
        if self.shear > 0 and _coin(self.shear_prob, g):
            s = (2 * float(torch.rand(1, generator=g)) - 1) * self.shear
            item["x"] = shear_images(item["x"][None], s)[0]
            words = attribute_words(measure_attributes(item["x"][None]), self.thresholds)[0]
        item["caption"] = caption_for(int(self.base.labels[i]), words, g, self.held_out_triples)
        return item

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name):  # images, labels, class_names, num_classes, source, subset…
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def caption(self, i: int, visit: int) -> str:
        return self.item(i, visit)["caption"]

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        item = self.item(i, self._visits[i])
        self._visits[i] += 1
        return item


def triple_prompts(triples, g: torch.Generator, *, per_triple: int, held_out: bool = False) -> list[tuple]:
    """``per_triple`` prompts naming each (digit, thickness, slant) triple: ``[(prompt, triple)]``."""
    out = []
    for t in triples:
        for _ in range(per_triple):
            out.append((compose({"digit": t[0], "thickness": t[1], "slant": t[2]}, g, held_out=held_out), tuple(t)))
    return out


def all_triples() -> list[tuple]:
    return [(d, t, s) for d in range(10) for t in ("thin", "thick") for s in ("slanted", "upright")]
