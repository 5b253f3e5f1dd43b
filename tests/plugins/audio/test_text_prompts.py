"""Text prompts for audio (issue 20): captioned notes, captions and their parser, the
cross-attention U-Net, negative prompts, the prompt metrics and the audio-notes-text starter."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

import polydiff
from polydiff.plugins.audio import captions as cap
from polydiff.plugins.audio.clips import AudioClips
from polydiff.plugins.audio.data import captioned_notes
from polydiff.plugins.audio.metrics import (
    DURATION_THRESHOLD_S,
    LOUDNESS_THRESHOLD_DBFS,
    METRICS,
    envelope_duration,
    rms_dbfs,
)
from polydiff.plugins.audio.modality import AudioModality
from polydiff.plugins.audio.networks import LatentUNet, pretrain_text_encoder

TEXT = {"encoder": "tiny"}


@pytest.fixture(scope="module")
def notes():
    return captioned_notes(1, seed=3)


def test_captioned_notes_attributes_are_measurable(notes):
    assert len(notes) == 4 * 5 * 2 * 2 and notes.provenance["generator"] == "captioned_notes"
    assert notes.provenance["soft_gain_db"] == -12.0 and notes.provenance["held_out_pairs"]
    level = rms_dbfs(notes.waves)
    soft = torch.tensor([a["loudness"] == "soft" for a in notes.attributes])
    assert level[soft].max() < LOUDNESS_THRESHOLD_DBFS - 4 < LOUDNESS_THRESHOLD_DBFS + 4 < level[~soft].min()
    dur = torch.tensor([envelope_duration(w, notes.sample_rate) for w in notes.waves])
    short = torch.tensor([a["duration"] == "short" for a in notes.attributes])
    assert dur[short].max() < DURATION_THRESHOLD_S - 0.1 and dur[~short].min() > DURATION_THRESHOLD_S + 0.1
    # labels are the classifier's timbre × pitch classes; generation is deterministic
    assert notes.label_names[notes.labels[0]] == f"{notes.attributes[0]['timbre']}_{notes.attributes[0]['pitch']}"
    again = captioned_notes(1, seed=3)
    assert torch.equal(again.waves, notes.waves) and again[5]["caption"] == captioned_notes(1, seed=3)[5]["caption"]


def test_training_captions_never_name_held_out_pairs_or_templates(notes):
    held = set(cap.HELD_OUT_PAIRS)
    held_words = {"would", "like", "hear", "sounding", "make", "it", "generate", "whose", "is", "instrument"} - {
        w for t in cap.TRAIN_TEMPLATES for w in cap._words(t)
    }
    assert {"would", "hear", "whose", "generate"} <= held_words
    seen_pairs, n = set(), 0
    for _ in range(12):  # every item visited 12 times: new captions each visit
        for i in range(len(notes)):
            item = notes[i]
            got = cap.parse_prompt(item["caption"])
            n += 1
            assert set(cap._words(item["caption"])).isdisjoint(held_words), item["caption"]
            assert all(item["attributes"][k] == v for k, v in got.items()), (item["caption"], item["attributes"])
            pair = (got.get("timbre"), got.get("pitch"))
            assert pair not in held, item["caption"]
            if None not in pair:
                seen_pairs.add(pair)
    assert n == 12 * len(notes)
    # every trained pair is named together somewhere; every held-out pair's clips are captioned
    assert seen_pairs == set(cap.trained_pairs())
    captions = {notes[0]["caption"] for _ in range(20)}
    assert len(captions) > 5  # drawn anew per visit


def test_parser_round_trips_all_phrasings():
    attrs = ("timbre", "pitch", "loudness", "duration")
    rng = random.Random(0)
    n = 0
    for template in cap.TRAIN_TEMPLATES + cap.HELD_OUT_TEMPLATES:
        for k in range(len(attrs) + 1):
            for named in itertools.combinations(attrs, k):
                for form in cap.PITCH_FORMS:
                    for pitch in ("C4", "E4", "A4", "C5", "F#3"):
                        a = {"timbre": rng.choice(cap.TIMBRES), "pitch": pitch}
                        a["loudness"], a["duration"] = rng.choice(cap.LOUDNESS), rng.choice(cap.DURATIONS)
                        want = {x: a[x] for x in named}
                        ph = {}
                        if "timbre" in want:
                            ph["t"] = want["timbre"]
                        if "pitch" in want:
                            ph["p"] = cap.pitch_phrase(pitch, form)
                        if "loudness" in want:
                            ph["l"] = rng.choice(cap.LOUDNESS_WORDS[want["loudness"]])
                        if "duration" in want:
                            ph["d"] = rng.choice(cap.DURATION_WORDS[want["duration"]])
                        text = cap.render(template, ph)
                        assert cap.parse_prompt(text) == want, (template, text)
                        assert cap.parse_prompt(text.upper()) == want, text
                        n += 1
    assert n > 2000
    for words in cap.LOUDNESS_WORDS.values():
        for w in words:
            assert cap.parse_prompt(f"a {w} piano")["loudness"] in cap.LOUDNESS
    assert cap.parse_prompt("a soft flute playing A4") == {"timbre": "flute", "pitch": "A4", "loudness": "soft"}
    assert cap.parse_prompt("flute, A4, quiet") == {"timbre": "flute", "pitch": "A4", "loudness": "soft"}
    assert cap.parse_prompt("a gentle flute note at A4")["loudness"] == "soft"
    for text in ("C#4 organ", "C sharp 4 organ", "Db4 organ", "C# in the fourth octave", "organ C#, octave 4"):
        assert cap.parse_prompt(text)["pitch"] == "C#4", text
    assert cap.parse_prompt("B in the 3rd octave")["pitch"] == "B3"
    assert cap.parse_prompt("a short piano note") == {"timbre": "piano", "duration": "short"}
    assert cap.parse_prompt("") == {} and cap.parse_prompt("a note") == {}
    # spoken digits: word and voice
    for voice in cap.VOICE_WORDS:
        for t in cap.DIGIT_TEMPLATES + cap.HELD_OUT_DIGIT_TEMPLATES:
            text = cap.digit_caption({"word": "seven", "voice": voice}, random.Random(1), templates=(t,))
            got = cap.parse_prompt(text)
            assert got["word"] == "seven" and got["voice"] == voice, text


def _randomised(net):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0:  # zero-initialised outputs: make every path matter
                p.normal_(0, 0.1)
    return net.eval()


def test_text_unet_depends_on_the_prompt_and_null_is_the_empty_prompt():
    from polydiff.text import prompt_cond, tokenizer_for

    torch.manual_seed(0)
    label_net = LatentUNet(4, 16)
    assert not any("text" in k or "xattn" in k for k in label_net.state_dict())
    with pytest.raises(ValueError, match="n_classes"):
        LatentUNet(4, 16, text=TEXT)
    net = _randomised(LatentUNet(4, 0, ch=16, text=TEXT))
    tok = tokenizer_for("tiny")
    x, t = torch.randn(2, 4, 16, 16), torch.full((2,), 0.3)
    with torch.no_grad():
        a = net(x, t, prompt_cond(["a soft flute playing A4"] * 2, 2, tok))
        b = net(x, t, prompt_cond(["loud organ C5"] * 2, 2, tok))
        empty = net(x, t, prompt_cond([""] * 2, 2, tok))
        dropped = prompt_cond(["a soft flute playing A4"] * 2, 2, tok)
        dropped["cond_mask"] = torch.zeros(2)
        null = net(x, t, dropped)
        none = net(x, t, None)
    assert a.shape == x.shape and (a - b).abs().max() > 1e-3
    assert torch.allclose(null, empty, atol=1e-6) and torch.allclose(none, empty, atol=1e-6)


def test_prepare_negative_and_sampling_request():
    mod = AudioModality({"progress": False, "text": TEXT})
    assert mod.accepts_prompts and not AudioModality({"progress": False}).accepts_prompts
    _, cond = mod.sampling_request(3, {"prompt": "a soft flute playing A4"}, None)
    neg = mod.prepare_negative({"prompt": "loud"}, 3)
    assert set(neg) == set(cond) and neg["prompt"] == ["loud"] * 3
    ids, mask = mod.tokenizer(["loud"])
    assert torch.equal(neg["prompt_ids"], ids.expand(3, -1)) and torch.equal(neg["prompt_mask"], mask.expand(3, -1))
    assert torch.equal(neg["cond_mask"], torch.ones(3))
    _, cyc = mod.sampling_request(3, {"prompt_cycle": ["a", "b"]}, None)
    assert cyc["prompt"] == ["a", "b", "a"]
    with pytest.raises(ValueError, match="prompt"):
        mod.sampling_request(2, {"label": "piano_C4"}, None)
    assert mod.sampling_request(2, None, None)[1] is None
    # label models: negatives are already tensors and pass unchanged
    lab = {"label": torch.zeros(2, dtype=torch.long), "cond_mask": torch.ones(2)}
    assert AudioModality({"progress": False}).prepare_negative(lab, 2) is lab


class _OneHotScorer:
    """A stand-in classifier: class index fixed per clip (timbre × pitch classes)."""

    label_names = [f"{t}_{p}" for t in cap.TIMBRES for p in cap.TEXT_PITCHES]

    def __init__(self, timbres):
        self.timbres = timbres

    def score(self, waves):
        p = torch.zeros(len(self.timbres), len(self.label_names))
        for i, t in enumerate(self.timbres):
            p[i, self.label_names.index(f"{t}_C4")] = 0.3
            p[i, self.label_names.index(f"{t}_E4")] = 0.3  # summed over pitches: t wins
            p[i, self.label_names.index("piano_G4" if t != "piano" else "organ_G4")] = 0.4
        return p, torch.zeros(len(self.timbres), 2)


def test_prompt_metrics_pass_on_real_clips_and_can_fail(notes):
    idx = list(range(0, len(notes), 3))
    attrs = [notes.attributes[i] for i in idx]
    rng = random.Random(0)
    right = [cap.note_caption(a, rng) for a in attrs]
    flip = {"soft": "loud", "loud": "soft", "short": "long", "long": "short"}
    other = {"C4": "G4", "E4": "A4", "G4": "C5", "A4": "C4", "C5": "E4"}
    wrong_attrs = [
        {
            "timbre": cap.TIMBRES[(cap.TIMBRES.index(a["timbre"]) + 1) % 4],
            "pitch": other[a["pitch"]],
            "loudness": flip[a["loudness"]],
            "duration": flip[a["duration"]],
        }
        for a in attrs
    ]
    wrong = [cap.note_caption(a, rng) for a in wrong_attrs]
    scorer = _OneHotScorer([a["timbre"] for a in attrs])
    good = AudioClips(notes.waves[idx], notes.sample_rate, scorer=scorer, prompts=right)
    bad = AudioClips(notes.waves[idx], notes.sample_rate, scorer=scorer, prompts=wrong)
    names = [m for m in METRICS if m.startswith("audio_prompt_")]
    assert len(names) == 5
    for m in names:
        fn = METRICS[m][0]
        assert fn(good) == 1.0, m
        assert fn(bad) == 0.0, m
    # only named attributes are judged; none named: NaN
    partial = AudioClips(notes.waves[:2], notes.sample_rate, scorer=scorer, prompts=["a piano", "a note"])
    assert METRICS["audio_prompt_pitch_accuracy"][0](partial) != METRICS["audio_prompt_pitch_accuracy"][0](partial)
    with pytest.raises(ValueError, match="text-conditioned"):
        METRICS["audio_prompt_alignment"][0](notes.waves[:2])


def test_tiny_text_model_trains_samples_saves_and_loads(tmp_path):
    from polydiff.training import TrainConfig, train

    mod = AudioModality({"vae_steps": 5, "classifier_steps": 5, "progress": False, "text": TEXT})
    data = mod.load_dataset(n_per_combo=1)  # the captioned notes are the text model's default
    assert data.provenance["generator"] == "captioned_notes" and mod.config["data_provenance"]["held_out_pairs"]
    batch = mod.collate([data[i] for i in range(4)])
    assert set(batch["cond"]) == {"prompt_ids", "prompt_mask", "cond_mask"}
    model = polydiff.create(mod, ch=16)
    log = pretrain_text_encoder(model.network, data, steps=4, batch_size=16)
    assert len(log) == 1 and log[0][0] == 4 and 0 <= log[0][2] <= 1
    with pytest.raises(ValueError, match="text-conditioned"):
        pretrain_text_encoder(LatentUNet(4, 2), data, steps=1)
    res = train(model, data, TrainConfig(steps=3, batch_size=8, cond_dropout=0.2, progress=False))
    assert res.steps == 3
    clips = model.sample(
        2, prompt=["a soft flute playing A4", "loud organ C5"], negative="loud", guidance=2.0, nfe=4, seed=0
    )
    assert clips.prompts == ["a soft flute playing A4", "loud organ C5"]
    assert clips.requested[1] == {"timbre": "organ", "pitch": "C5", "loudness": "loud"}
    assert clips.waveform.shape == (2, mod.frontend.clip_samples) and torch.isfinite(clips.waveform).all()
    same = model.sample(
        2, prompt=["a soft flute playing A4", "loud organ C5"], negative="loud", guidance=2.0, nfe=4, seed=0
    )
    assert torch.equal(same.waveform, clips.waveform)
    scores = mod.evaluate(clips, metrics=[m for m in METRICS if m.startswith("audio_prompt_")])
    assert all(0.0 <= v <= 1.0 or v != v for v in scores.values())
    model.save(tmp_path / "ck")
    back = polydiff.load(tmp_path / "ck")
    again = back.sample(
        2, prompt=["a soft flute playing A4", "loud organ C5"], negative="loud", guidance=2.0, nfe=4, seed=0
    )
    assert torch.allclose(again.waveform, clips.waveform, atol=1e-5)
    files = mod.write(clips, tmp_path / "wav")
    assert [f.name for f in files] == ["0000_a_soft_flute_playing_a4.wav", "0001_loud_organ_c5.wav"]
    with pytest.raises(polydiff.errors.PolydiffError):
        model.sample(2, prompt=["only one"], nfe=2)


def test_text_starter_generates_from_a_prompt(tmp_path):
    from polydiff import starters

    if "audio-notes-text" not in starters.available():
        pytest.skip("the audio-notes-text starter is not in this installation")
    clips = polydiff.generate("audio", prompt="a soft flute playing A4", n=2, out=tmp_path)
    assert clips.prompts == ["a soft flute playing A4"] * 2
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "0000_a_soft_flute_playing_a4.wav",
        "0001_a_soft_flute_playing_a4.wav",
    ]


@pytest.mark.slow
def test_text_starter_still_meets_its_card_on_fewer_samples():
    """The starter's check (its 20 prompts, ``starters.measure``) and the card's issue-20
    numbers re-measured on fewer samples: 32 compositional clips (the first 8 prompts per
    held-out pair; the card: 16 per pair = 64), 32 trained-template and 32 held-out-template
    clips (2 per trained pair; the card: 64 each) and 2 × 32 negative-prompt clips (the card:
    2 × 64). Bounds: the issue's targets less about two standard errors of a share near 0.8
    at 32 clips (√(0.8·0.2/32) ≈ 0.07): accuracy ≥ 0.65 (target 0.80), paraphrase ratio ≥ 0.6
    (0.7), loud-share cut ≥ 0.4 (0.5). Measured when the starter was written: pitch 0.72,
    timbre 0.75, alignment ratio 0.96, cut 0.92 (the card's 64 clips: 0.83, 0.83, 0.98, 0.92)."""
    from polydiff import starters
    from polydiff.plugins.audio.bench import text_prompt_eval

    if "audio-notes-text" not in starters.available():
        pytest.skip("the audio-notes-text starter is not in this installation")
    model = polydiff.load("starter:audio-notes-text")
    assert not starters.check_bounds(model, starters.measure(model))
    ev = text_prompt_eval(model, per_held_out_pair=8, per_trained_pair=2, seed=0)
    assert ev["n"] == {"compositional": 32, "trained": 32, "paraphrase": 32, "negative": 64}
    assert ev["compositional"]["audio_prompt_pitch_accuracy"] >= 0.65, ev["compositional"]
    assert ev["compositional"]["audio_prompt_timbre_accuracy"] >= 0.65, ev["compositional"]
    assert ev["paraphrase_ratio"]["audio_prompt_alignment"] >= 0.6, ev["paraphrase_ratio"]
    assert ev["negative"]["cut"] >= 0.4, ev["negative"]
