"""Captions for the audio data sets from their generating attributes, and the prompt parser
the prompt metrics use (issue 20).

Notes (:func:`polydiff.plugins.audio.data.captioned_notes`) have four attributes:
``timbre`` (piano, organ, flute, clarinet), ``pitch`` (scientific name, ``C4`` … ``C5``),
``loudness`` (``soft``: a −12 dB gain applied *after* the −20 dBFS RMS normalisation, so
soft clips sit at −32 dBFS RMS and ``loud`` ones at −20 dBFS) and ``duration`` (``short``:
release at 0.20–0.30 s, ``long``: release at 0.70–0.90 s, 60 ms release ramp). Spoken
digits (:func:`polydiff.plugins.audio.data.captioned_spoken_digits`) have ``word`` and
``voice``.

A caption names a random subset of the attributes with one of several phrasings each
(:data:`LOUDNESS_WORDS`, :data:`DURATION_WORDS`, the pitch forms of :func:`pitch_phrase`:
``A4`` / ``A 4`` / ``A in the fourth octave``) inside one of the whole-caption templates
(:data:`TRAIN_TEMPLATES`). :data:`HELD_OUT_TEMPLATES` never appear in training captions
(the paraphrase test: new sentence frames and filler words around the trained attribute
words). The timbre × pitch pairs of :data:`HELD_OUT_PAIRS` are never named together in a
training caption: their clips are captioned with exactly one of the two (the compositional
test asks for the pair).

In training each item draws a new caption at every visit: the k-th time item i is fetched
it uses ``random.Random(seed·1 000 003 + i·7 919 + k)`` (:class:`~polydiff.plugins.audio.data.CaptionedAudioDataset`),
so a run is reproducible from the data set's ``caption_seed`` and the trainer's batch order.

:func:`parse_prompt` turns any prompt (all phrasings above, in any case and order, ``C#4`` /
``C sharp 4`` / ``Db4``, ``octave 4``) into the attributes it requests.
"""

from __future__ import annotations

import random
import re
from typing import Sequence

TIMBRES = ("piano", "organ", "flute", "clarinet")
TEXT_PITCHES = ("C4", "E4", "G4", "A4", "C5")
LOUDNESS = ("soft", "loud")
DURATIONS = ("short", "long")
#: gain of soft clips (dB), applied after the loudness normalisation to −20 dBFS RMS
SOFT_GAIN_DB = -12.0
#: release time ranges (s) of the two durations
RELEASE_S = {"short": (0.20, 0.30), "long": (0.70, 0.90)}
#: timbre × pitch pairs never named together in training captions (a Latin square: each
#: timbre and each held-out pitch is missing once; A4 keeps all four timbres)
HELD_OUT_PAIRS = (("piano", "E4"), ("organ", "G4"), ("flute", "C5"), ("clarinet", "C4"))

#: attribute value → trained phrasings (the parser also knows :data:`EXTRA_WORDS`)
TIMBRE_WORDS = {t: (t,) for t in TIMBRES}
LOUDNESS_WORDS = {"soft": ("soft", "quiet", "gentle", "faint"), "loud": ("loud", "strong", "powerful", "forceful")}
DURATION_WORDS = {
    "short": ("short", "brief", "staccato", "clipped"),
    "long": ("long", "sustained", "held", "lingering"),
}
#: more words the parser accepts (never in generated captions)
EXTRA_WORDS = {
    "loudness": {"soft": ("softly", "quietly", "gently", "pianissimo"), "loud": ("loudly", "forte", "fortissimo")},
    "duration": {"short": ("shortly",), "long": ("lengthy",)},
}
PITCH_FORMS = ("compact", "spaced", "octave")
ORDINALS = ("zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")

#: whole-caption templates used in training. ``{t}`` timbre, ``{p}`` pitch, ``{l}`` loudness,
#: ``{d}`` duration; ``[...]`` is dropped when a slot inside it is not named; ``{x:word}``
#: falls back to ``word`` when x is not named; ``{list}`` is the named phrases, comma-separated
TRAIN_TEMPLATES = (
    "a[ {l}][ {d}] {t:note}[ playing {p}]",
    "{list}",
    "a[ {l}][ {d}] [{t} ]note[ at {p}]",
    "[{l} ][{d} ]{t:note}[ {p}]",
    "{p:a note} played[ {l}][ and {d}][ on the {t}]",
    "the sound of a[ {d}] {t:note}[ at {p}][, {l}]",
    "[{d} ][{l} ]{t:} note[, pitch {p}]",
    "a[ {d}] tone from a {t:instrument}[ at {p}][, played {l}]",
)
#: templates never used in training captions (the paraphrase test)
HELD_OUT_TEMPLATES = (
    "i would like to hear a {t:instrument}[ sounding {p}][, {l}][ and {d}]",
    "[{p} ]on the {t:instrument}[, make it {l}][ and {d}]",
    "generate[ a {l}][ {d}] {t:sound}[ whose pitch is {p}]",
)

#: spoken digits: voice → phrasings (espeak-ng voices of :func:`~polydiff.plugins.audio.data.spoken_digits`)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICE_WORDS = {
    "en": ("a british voice", "an english voice"),
    "en-us": ("an american voice", "a us voice"),
    "en+f3": ("a female voice", "a woman"),
    "en+m3": ("a male voice", "a man"),
}
DIGIT_TEMPLATES = ("the word {w}[ spoken by {v}]", "{w}[, {v}]", "[{v} saying ]{w}", "someone saying {w}[ in {v}]")
HELD_OUT_DIGIT_TEMPLATES = ("a recording of {w}[ read by {v}]",)


# -- rendering -----------------------------------------------------------------------------------
def pitch_phrase(pitch: str, form: str) -> str:
    """``"A4"`` → ``"A4"`` (compact), ``"A 4"`` (spaced) or ``"A in the fourth octave"``."""
    letter, octave = pitch[:-1], int(pitch[-1])
    if form == "compact":
        return pitch
    if form == "spaced":
        return f"{letter} {octave}"
    if form == "octave":
        return f"{letter} in the {ORDINALS[octave]} octave"
    raise ValueError(f"unknown pitch form {form!r}; one of {PITCH_FORMS}")


_SLOT = re.compile(r"\{(\w+)(?::([^}]*))?\}")


def render(template: str, phrases: dict) -> str:
    """Fill ``template`` with ``phrases`` (slot → text; missing or None = not named)."""
    if template == "{list}":
        return ", ".join(phrases[k] for k in ("t", "p", "l", "d") if phrases.get(k))

    def group(m):
        inner = m.group(1)
        slots = [s.group(1) for s in _SLOT.finditer(inner)]
        return inner if all(phrases.get(s) for s in slots) else ""

    text = re.sub(r"\[([^\]]*)\]", group, template)
    text = _SLOT.sub(lambda m: phrases.get(m.group(1)) or (m.group(2) or ""), text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+,", ",", text).strip(" ,")


def note_caption(attrs: dict, rng: random.Random, *, templates: Sequence[str] = TRAIN_TEMPLATES) -> str:
    """One caption of a note with attributes ``attrs`` naming exactly the keys present in
    ``attrs`` (timbre, pitch, loudness, duration), phrasings drawn from ``rng``."""
    ph = {}
    if attrs.get("timbre"):
        ph["t"] = rng.choice(TIMBRE_WORDS[attrs["timbre"]])
    if attrs.get("pitch"):
        ph["p"] = pitch_phrase(attrs["pitch"], rng.choice(PITCH_FORMS))
    if attrs.get("loudness"):
        ph["l"] = rng.choice(LOUDNESS_WORDS[attrs["loudness"]])
    if attrs.get("duration"):
        ph["d"] = rng.choice(DURATION_WORDS[attrs["duration"]])
    return render(rng.choice(list(templates)), ph)


def training_note_caption(
    attrs: dict,
    rng: random.Random,
    *,
    held_out_pairs: Sequence[Sequence[str]] = HELD_OUT_PAIRS,
    p_timbre: float = 0.9,
    p_pitch: float = 0.9,
    p_loudness: float = 0.6,
    p_duration: float = 0.6,
) -> str:
    """A training caption of a note: each attribute named with its probability; a clip of a
    held-out timbre × pitch pair names exactly one of the two (timbre or pitch, 50/50)."""
    named = {}
    if (attrs["timbre"], attrs["pitch"]) in {tuple(p) for p in held_out_pairs}:
        key = "timbre" if rng.random() < 0.5 else "pitch"
        named[key] = attrs[key]
    else:
        if rng.random() < p_timbre:
            named["timbre"] = attrs["timbre"]
        if rng.random() < p_pitch:
            named["pitch"] = attrs["pitch"]
    if rng.random() < p_loudness:
        named["loudness"] = attrs["loudness"]
    if rng.random() < p_duration:
        named["duration"] = attrs["duration"]
    return note_caption(named, rng, templates=TRAIN_TEMPLATES)


def digit_caption(attrs: dict, rng: random.Random, *, templates: Sequence[str] = DIGIT_TEMPLATES) -> str:
    """A caption of a spoken digit (``word``, optional ``voice``)."""
    ph = {"w": attrs["word"]}
    if attrs.get("voice"):
        ph["v"] = rng.choice(VOICE_WORDS[attrs["voice"]])
    return render(rng.choice(list(templates)), ph)


def training_digit_caption(attrs: dict, rng: random.Random, p_voice: float = 0.7) -> str:
    named = {"word": attrs["word"]}
    if rng.random() < p_voice:
        named["voice"] = attrs["voice"]
    return digit_caption(named, rng)


def caption_rng(seed: int, index: int, visit: int) -> random.Random:
    """The generator of item ``index``'s ``visit``-th caption (see the module docstring)."""
    return random.Random(int(seed) * 1_000_003 + int(index) * 7_919 + int(visit))


# -- parsing -----------------------------------------------------------------------------------------
_NOTE = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_ACC = r"(#|♯|b|♭|\s+sharp|\s+flat)?"
_PITCH_OCTAVE = re.compile(
    r"\b([a-g])" + _ACC + r"\s+in\s+the\s+(" + "|".join(ORDINALS) + r"|[0-8](?:st|nd|rd|th))\s+octave\b", re.I
)
_PITCH_OCTAVE_N = re.compile(r"\b([a-g])" + _ACC + r",?\s+(?:in\s+)?octave\s+([0-8])\b", re.I)
_PITCH_PLAIN = re.compile(r"\b([a-g])" + _ACC + r"\s?([0-8])\b", re.I)


def _pitch_name(letter: str, acc: str | None, octave: int) -> str:
    k = _NOTE.index(letter.upper())
    a = (acc or "").strip().lower()
    if a in ("#", "♯", "sharp"):
        k += 1
    elif a in ("b", "♭", "flat"):
        k -= 1
    octave += k // 12
    return f"{_NOTE[k % 12]}{octave}"


def parse_pitch(text: str) -> str | None:
    """The first pitch named in ``text`` as ``C4``/``C#4`` (sharps), or None."""
    found = []
    for m in _PITCH_OCTAVE.finditer(text):
        o = m.group(3).lower()
        octave = ORDINALS.index(o) if o in ORDINALS else int(o[0])
        found.append((m.start(), _pitch_name(m.group(1), m.group(2), octave)))
    for m in _PITCH_OCTAVE_N.finditer(text):
        found.append((m.start(), _pitch_name(m.group(1), m.group(2), int(m.group(3)))))
    for m in _PITCH_PLAIN.finditer(text):
        found.append((m.start(), _pitch_name(m.group(1), m.group(2), int(m.group(3)))))
    return min(found)[1] if found else None


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9#]+", text.lower())


def _first(words: list[str], table: dict) -> str | None:
    """The value of the first word of ``words`` that one of ``table``'s phrasings starts with."""
    for w in words:
        for value, phrasings in table.items():
            if w in phrasings:
                return value
    return None


def parse_prompt(text: str) -> dict:
    """Prompt → requested attributes among ``timbre``, ``pitch``, ``loudness``, ``duration``
    (notes) and ``word``, ``voice`` (spoken digits); an attribute not named is absent.

    >>> parse_prompt("a soft flute playing A4")
    {'timbre': 'flute', 'pitch': 'A4', 'loudness': 'soft'}
    """
    words = _words(text)
    out = {}
    t = _first(words, TIMBRE_WORDS)
    if t:
        out["timbre"] = t
    p = parse_pitch(text)
    if p:
        out["pitch"] = p
    loud = {k: v + EXTRA_WORDS["loudness"][k] for k, v in LOUDNESS_WORDS.items()}
    v = _first(words, loud)
    if v:
        out["loudness"] = v
    dur = {k: v + EXTRA_WORDS["duration"][k] for k, v in DURATION_WORDS.items()}
    v = _first(words, dur)
    if v:
        out["duration"] = v
    w = _first(words, {d: (d,) for d in DIGIT_WORDS})
    if w:
        out["word"] = w
    low = " ".join(words)
    for voice, phrasings in VOICE_WORDS.items():
        if any(re.search(r"\b" + re.escape(" ".join(_words(ph))) + r"\b", low) for ph in phrasings):
            out["voice"] = voice
            break
    return out


# -- evaluation prompts --------------------------------------------------------------------------------
def prompt_set(
    pairs: Sequence[Sequence[str]],
    *,
    templates: Sequence[str] = TRAIN_TEMPLATES,
    per_pair: int = 4,
    loudness: bool = True,
    duration: bool = True,
    seed: int = 0,
) -> tuple[list[str], list[dict]]:
    """``per_pair`` prompts for each timbre × pitch pair (loudness / duration named at random
    when enabled), templates and phrasings drawn with ``random.Random(seed)``: returns the
    prompts and the attributes each names."""
    rng = random.Random(seed)
    prompts, attrs = [], []
    for t, p in pairs:
        for _ in range(per_pair):
            a = {"timbre": t, "pitch": p}
            if loudness and rng.random() < 0.5:
                a["loudness"] = rng.choice(LOUDNESS)
            if duration and rng.random() < 0.5:
                a["duration"] = rng.choice(DURATIONS)
            prompts.append(note_caption(a, rng, templates=templates))
            attrs.append(a)
    return prompts, attrs


def trained_pairs(
    timbres: Sequence[str] = TIMBRES,
    pitches: Sequence[str] = TEXT_PITCHES,
    held_out: Sequence[Sequence[str]] = HELD_OUT_PAIRS,
) -> list[tuple[str, str]]:
    """Timbre × pitch pairs that training captions name together."""
    ho = {tuple(p) for p in held_out}
    return [(t, p) for t in timbres for p in pitches if (t, p) not in ho]
