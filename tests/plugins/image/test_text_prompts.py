"""Text prompts for images (issue 20): attribute measurement, captions, parser, the prompt
U-Net, the modality's prompt cond and negative prompts, the prompt metrics, a tiny train +
sample run, and (slow) the image-mnist-text starter's card."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import torch

import polydiff
from polydiff.plugins.image import captions as C
from polydiff.plugins.image.io import ImageSample
from polydiff.plugins.image.metrics import prompt_metrics_for, prompt_scores
from polydiff.plugins.image.unet import UNet
from polydiff.text import empty_prompt_cond, prompt_cond, tokenizer_for
from polydiff.training import TrainConfig, train

sys.path.insert(0, str(Path(__file__).parent))
from net_helpers import randomise as _randomise  # noqa: E402

TEXT = {"encoder": "tiny", "dim": 32, "layers": 1, "max_len": 16}


def bar(width: int, shear: float = 0.0, size: int = 28, length: int = 16) -> torch.Tensor:
    """A vertical bar ``width`` px wide and ``length`` tall, sheared so its top moves
    ``shear`` px right per px up; ``[1, size, size]`` in [-1, 1]."""
    img = -torch.ones(1, size, size)
    top = (size - length) // 2
    for r in range(top, top + length):
        c0 = round(size / 2 - width / 2 + shear * ((top + length / 2) - r))
        img[0, r, max(0, c0) : c0 + width] = 1.0
    return img


THRESH = C.fit_thresholds(torch.stack([bar(w, s) for w in (1, 2, 3, 4, 5) for s in (-0.3, 0.0, 0.15, 0.3, 0.6)]))


def test_measurements_have_their_units():
    a = C.measure_attributes(torch.stack([bar(2), bar(5), bar(3, 0.5), bar(3, -0.5)]))
    # 2·mass / perimeter = 2·L·w / (2L + 2w) ≈ w (16-px bars)
    assert abs(float(a["thickness"][0]) - 2 * 32 / 36) < 1e-6
    assert abs(float(a["thickness"][1]) - 2 * 80 / 42) < 1e-6
    assert abs(float(a["slant"][0])) < 1e-9 and float(a["slant"][2]) == pytest.approx(0.5, abs=0.05)
    assert float(a["slant"][3]) == pytest.approx(-0.5, abs=0.05)
    assert float(a["size"][1]) > float(a["size"][0])


def test_attribute_words_on_synthetic_bars():
    imgs = torch.stack([bar(1), bar(5), bar(3, 0.6), bar(3, 0.0)])
    w = C.attribute_words(C.measure_attributes(imgs), THRESH)
    assert w[0]["thickness"] == "thin" and w[1]["thickness"] == "thick"
    assert w[2]["slant"] == "slanted" and w[3]["slant"] == "upright"
    a = C.measure_attributes(imgs)
    assert C.satisfies("thickness", "thick", float(a["thickness"][1]), THRESH)
    assert not C.satisfies("thickness", "thick", float(a["thickness"][0]), THRESH)
    assert C.satisfies("slant", "slanted", float(a["slant"][2]), THRESH)
    assert not C.satisfies("slant", "upright", float(a["slant"][2]), THRESH)
    assert C.satisfies("slant", "upright", float(a["slant"][3]), THRESH)


def test_shear_augmentation_moves_the_slant_and_the_caption_follows():
    imgs = torch.stack([bar(3, 0.0), bar(3, 0.0)])
    a = C.measure_attributes(C.shear_images(imgs, torch.tensor([0.5, -0.3])))
    assert float(a["slant"][0]) == pytest.approx(0.5, abs=0.05)
    assert float(a["slant"][1]) == pytest.approx(-0.3, abs=0.05)

    class Bars:
        images, labels = torch.stack([bar(3, 0.0)] * 4), torch.full((4,), 7)

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"x": self.images[i], "label": 7}

    ds = C.CaptionedImageDataset(Bars(), THRESH, shear=0.6, shear_prob=1.0)
    for v in range(30):
        item = ds.item(0, v)
        s = float(C.measure_attributes(item["x"][None])["slant"][0])
        named = C.parse_prompt(item["caption"])["slant"]
        if named == "slanted":
            assert s >= THRESH["slant"]["high"]
        elif named == "upright":
            assert abs(s) <= THRESH["slant"]["low"]
    assert torch.equal(ds.item(0, 3)["x"], ds.item(0, 3)["x"])


def test_training_captions_avoid_held_out_triples_and_phrasings():
    held = {tuple(t) for t in C.HELD_OUT_TRIPLES}
    assert len(held) == 8
    for t, s in itertools.product(("thin", "thick"), ("slanted", "upright")):
        assert sum((t, s) == x[1:] for x in held) == 2
    assert {d for d, _, _ in held} <= set(range(10))
    ho_words = {w for k, v in C.HELD_OUT_PHRASINGS.items() if k != "templates" for p in v for w in [p]}
    ho_templates = [t.split("{")[0].strip() for t in C.HELD_OUT_PHRASINGS["templates"]]
    seen_triples = set()
    for i in range(3000):
        d = i % 10
        words = {
            "thickness": ("thin", "thick")[i // 10 % 2],
            "slant": ("slanted", "upright")[i // 20 % 2],
            "size": None,
        }
        g = torch.Generator().manual_seed(C.caption_seed(0, i, 0))
        cap = C.caption_for(d, words, g)
        p = C.parse_prompt(cap)
        triple = (p["digit"], p["thickness"], p["slant"])
        assert triple not in held, cap
        seen_triples.add(triple)
        for phrase in ho_words:
            assert phrase.format(w="x", n="x") not in cap or phrase in ("number {w}",), (phrase, cap)
        assert "number" not in cap.split() and "numeral" not in cap.split(), cap
        for t in ho_templates:
            assert not (t and cap.startswith(t)), cap
        assert p["digit"] in (d, None)
    # every non-held-out triple is still named somewhere
    assert {t for t in C.all_triples() if t not in held} <= seen_triples


def test_parser_round_trips_every_phrasing():
    g = torch.Generator().manual_seed(1)
    for held_out in (False, True):
        ph = C.phrasings(held_out)
        for d, t, s, z in itertools.product(range(10), ("thin", "thick"), ("slanted", "upright"), ("small", None)):
            for _ in range(2):
                want = {"digit": d, "thickness": t, "slant": s, "size": z}
                cap = C.compose(want, g, held_out=held_out)
                assert C.parse_prompt(cap) == want, cap
        for key in ("thick", "thin", "slanted", "upright"):
            attr = "thickness" if key in ("thick", "thin") else "slant"
            for p in ph[key]:
                assert C.parse_prompt(p)[attr] == key, p
        for p in ph["digit"]:
            assert C.parse_prompt(p.format(w="seven", n="7"))["digit"] == 7
    assert C.parse_prompt("") == {"digit": None, "thickness": None, "slant": None, "size": None}


def test_unet_with_text_depends_on_the_prompt_and_null_is_the_empty_prompt():
    torch.manual_seed(0)
    net = _randomise(UNet(1, 8, base_channels=16, channel_mult=(1, 2), attn_resolutions=(4,), text=TEXT)).eval()
    tok = tokenizer_for("tiny", dim=32, layers=1, max_len=16)
    x, t = torch.randn(2, 1, 8, 8), torch.zeros(2)
    with torch.no_grad():
        a = net(x, t, prompt_cond(["a thick seven", "a thin one"], 2, tok))
        b = net(x, t, prompt_cond(["a thin one", "a thick seven"], 2, tok))
        assert not torch.allclose(a, b, atol=1e-5)
        c = prompt_cond(["a thick seven", "a thin one"], 2, tok)
        c["cond_mask"] = torch.zeros(2)
        null = net(x, t, c)
        empty = net(x, t, prompt_cond("", 2, tok))
        assert torch.allclose(null, empty, atol=1e-6)
        assert torch.allclose(net(x, t, empty_prompt_cond(2, tok)), empty, atol=1e-6)
        assert torch.allclose(net(x, t, None), empty, atol=1e-6)


def test_class_label_unet_is_unchanged_by_the_text_option():
    torch.manual_seed(0)
    a = UNet(1, 8, base_channels=16, channel_mult=(1, 2), attn_resolutions=(4,), num_classes=10)
    torch.manual_seed(0)
    b = UNet(1, 8, base_channels=16, channel_mult=(1, 2), attn_resolutions=(4,), num_classes=10, text=None)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert b.text is None


def _tiny_text_model():
    return polydiff.create(
        "image",
        modality_config={"dataset": "mnist5k", "text": TEXT},
        base_channels=16,
        channel_mult=(1, 2),
        attn_resolutions=(7,),
    )


def test_modality_prompt_cond_and_prepare_negative():
    model = _tiny_text_model()
    mod = model.modality
    assert mod.accepts_prompts and model.network.text is not None and model.network.label is None
    shape, c = mod.sampling_request(3, {"prompt": ["a thick seven", "2"]}, None)
    assert shape == (1, 28, 28) and c["prompt"] == ["a thick seven", "2", "a thick seven"]
    assert c["prompt_ids"].shape == (3, 16) and c["cond_mask"].tolist() == [1, 1, 1]
    _, c2 = mod.sampling_request(2, {"label": 4}, None)
    assert c2["prompt"] == ["four", "four"]
    _, c0 = mod.sampling_request(2, None, None)
    assert c0["cond_mask"].tolist() == [0, 0]
    neg = mod.prepare_negative({"prompt": "slanted"}, 3)
    assert set(neg) == set(c) and neg["prompt"] == ["slanted"] * 3
    assert torch.equal(neg["prompt_ids"][0], tokenizer_for("tiny", dim=32, layers=1, max_len=16)(["slanted"])[0][0])
    items = [
        {"x": torch.zeros(1, 28, 28), "label": 3, "caption": "a thin three"},
        {"x": torch.zeros(1, 28, 28), "label": 5},
    ]
    batch = mod.collate(items)
    assert set(batch["cond"]) == {"prompt_ids", "prompt_mask", "cond_mask"}
    assert torch.equal(batch["cond"]["prompt_ids"][1], prompt_cond("five", 1, mod.tokenizer())["prompt_ids"][0])
    # a class-label model is untouched
    plain = polydiff.registry("modality").get("image")({"dataset": "mnist5k"})
    assert not plain.accepts_prompts and "text" not in plain.network_kwargs()
    assert plain.prepare_negative({"label": torch.ones(2)}, 2)["label"].tolist() == [1, 1]


def test_tiny_train_and_sample_with_prompts_end_to_end(tmp_path):
    torch.manual_seed(0)
    model = _tiny_text_model()
    data = model.modality.load_dataset(limit=64)
    assert isinstance(data, C.CaptionedImageDataset)
    th = model.modality.config["captions"]["thresholds"]
    assert set(th) == {"thickness", "slant", "size"}
    caps = [data[i]["caption"] for i in range(8)]
    assert all(isinstance(c, str) and c for c in caps)
    # a caption per visit: the same item gets fresh draws, reproducibly
    fresh = C.CaptionedImageDataset(data.base, th, seed=0)
    assert [fresh[i]["caption"] for i in range(8)] == caps
    assert len({fresh.caption(0, k) for k in range(20)}) > 1
    train(model, data, TrainConfig(steps=3, batch_size=8, cond_dropout=0.2, progress=False))
    out = model.sample(2, prompt="a thick slanted seven", negative="upright", guidance=2.0, nfe=4, seed=0)
    assert len(out) == 2 and out[0].prompt == "a thick slanted seven" and out[0].label == 7
    assert out[0].attributes["thickness"] == "thick" and out[0].pixels.shape == (1, 28, 28)
    again = model.sample(2, prompt="a thick slanted seven", negative="upright", guidance=2.0, nfe=4, seed=0)
    assert torch.equal(out[0].pixels, again[0].pixels)
    plain = model.sample(2, prompt="a thick slanted seven", guidance=2.0, nfe=4, seed=0)
    assert not torch.equal(out[0].pixels, plain[0].pixels)
    names = prompt_metrics_for(out)
    assert "image_prompt_digit_accuracy" in names and "image_prompt_alignment" in names
    res = model.modality.evaluate(out, metrics=names)
    assert all(0.0 <= v <= 1.0 for v in res.values())
    path = model.save(tmp_path / "ckpt")
    again = polydiff.load(path)
    assert again.modality.config["captions"]["thresholds"] == th
    assert again.sample(1, prompt="a thick slanted seven", nfe=4, seed=0, guidance=2.0)[0].prompt


def test_prompt_metrics_can_fail():
    from polydiff.plugins.image.data import load_mnist5k

    ref = load_mnist5k()  # the reference whose metric classifier ships with the plugin
    th = C.fit_thresholds(ref.images)
    a = C.measure_attributes(ref.images[:300])
    words = C.attribute_words(a, th)
    idx = [i for i, w in enumerate(words) if w["thickness"] and w["slant"]][:40]
    right, wrong = [], []
    flip = {"thick": "thin", "thin": "thick", "slanted": "upright", "upright": "slanted"}
    for i in idx:
        d, w = int(ref.labels[i]), words[i]
        px = (ref.images[i] + 1) / 2
        right.append(ImageSample(px, d, prompt=f"a {w['thickness']} {w['slant']} {C.DIGIT_WORDS[d]}"))
        wd = (d + 1) % 10
        wrong.append(ImageSample(px, wd, prompt=f"a {flip[w['thickness']]} {flip[w['slant']]} {C.DIGIT_WORDS[wd]}"))
    good = prompt_scores(right, ref, thresholds=th)
    bad = prompt_scores(wrong, ref, thresholds=th)
    assert good["prompt_thickness_accuracy"] == 1.0 and good["prompt_slant_accuracy"] == 1.0
    assert good["prompt_digit_accuracy"] >= 0.85 and good["prompt_alignment"] >= 0.9
    assert bad["prompt_thickness_accuracy"] == 0.0 and bad["prompt_slant_accuracy"] == 0.0
    assert bad["prompt_digit_accuracy"] <= 0.15 and bad["prompt_alignment"] <= 0.1
    reg = polydiff.registry("metric")
    for name in ("image_prompt_thickness_accuracy", "image_prompt_alignment"):
        assert reg.entry(name).info["higher_is_better"] is True
        assert reg.get(name)(wrong, reference=ref, thresholds=th) <= 0.1
    with pytest.raises(ValueError, match="names"):
        reg.get("image_prompt_slant_accuracy")([ImageSample(right[0].pixels, 3, prompt="a 3")], reference=ref)


@pytest.mark.slow
def test_text_starter_still_meets_its_model_card():
    """Re-measures the image-mnist-text starter's check metrics on 50 samples (the card's
    check uses 100; 50 keeps this under a minute) against its recorded bounds."""
    from polydiff import starters

    if "image-mnist-text" not in starters.available():
        pytest.skip("the image-mnist-text starter is not in this installation")
    torch.manual_seed(0)
    model = polydiff.load("starter:image-mnist-text")
    measured = starters.measure(model, n=50)
    assert not starters.check_bounds(model, measured), measured


def test_a_network_without_text_support_is_refused_by_name():
    import polydiff
    from polydiff.errors import PolydiffError

    with pytest.raises(PolydiffError, match="'image_dit' cannot read text prompts"):
        polydiff.create("image", network="image_dit", modality_config={"text": {"dim": 32}})
