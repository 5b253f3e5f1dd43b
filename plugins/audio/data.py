"""Audio data sets: an embedded synthetic set of instrument-like notes, spoken digits
synthesised by espeak-ng (when the binary is installed), and any folder of audio files
whose sub-folders are the labels.

Every loader returns an :class:`AudioDataset`: fixed-length mono clips ``[n, N]`` float32
at one sample rate, integer labels ``[n]`` and their names. Items are dicts
``{"wave": [N], "label": int, "index": int}`` plus any per-item tensors a modality cached
(``mel``, ``latent``) through :meth:`AudioDataset.set_cache`.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from polydiff.errors import InputError

from .frontend import FrontendConfig
from .io import audio_files, crop_or_pad, load_clip, normalize_loudness, read_audio, resample, to_mono

#: equal-tempered pitches (A4 = 440 Hz) used by the notes set
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
DEFAULT_TIMBRES = ("piano", "organ", "flute", "clarinet")
DEFAULT_PITCHES = ("C4", "E4", "G4", "C5")


def note_hz(name: str) -> float:
    """Scientific pitch name (``C4``, ``F#3``) → frequency in Hz, A4 = 440 Hz, 12-TET."""
    try:
        letter, octave = name[:-1], int(name[-1])
        k = NOTE_NAMES.index(letter)
    except (ValueError, IndexError):
        raise ValueError(f"not a pitch name: {name!r} (e.g. 'C4', 'F#3')") from None
    midi = 12 * (octave + 1) + k
    return 440.0 * 2 ** ((midi - 69) / 12)


class AudioDataset:
    """Clips ``waves [n, N]`` (float32, Hz = ``sample_rate``), ``labels [n]`` (long),
    ``label_names`` (class index → name). ``skipped``: InputErrors of files left out with
    ``on_error="skip"`` (counted and reported, never silent). ``provenance``: how generated
    clips were made (generator and its arguments), their machine-independent identity for
    stored metric networks (:mod:`polydiff.metric_nets`); None for clips read from files."""

    def __init__(
        self,
        waves: torch.Tensor,
        labels: torch.Tensor,
        label_names: Sequence[str],
        sample_rate: int,
        *,
        sources: Sequence[str] | None = None,
        skipped: list | None = None,
        name: str = "",
        provenance: dict | None = None,
    ):
        if waves.ndim != 2 or waves.shape[0] != labels.shape[0]:
            raise ValueError(f"waves [n, N] and labels [n] disagree: {tuple(waves.shape)} vs {tuple(labels.shape)}")
        self.waves, self.labels = waves.float(), labels.long()
        self.label_names = list(label_names)
        self.sample_rate = int(sample_rate)
        self.sources = list(sources) if sources is not None else None
        self.skipped = list(skipped or [])
        self.name = name
        self.provenance = provenance
        self._cache: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.waves.shape[0]

    def __getitem__(self, i: int) -> dict:
        item = {"wave": self.waves[i], "label": int(self.labels[i]), "index": int(i)}
        for k, v in self._cache.items():
            item[k] = v[i]
        return item

    def set_cache(self, key: str, values: torch.Tensor) -> None:
        """Attach a per-item tensor ``[n, ...]`` (e.g. encoded latents) to every item."""
        if values.shape[0] != len(self):
            raise ValueError(f"cache {key!r} has {values.shape[0]} rows for {len(self)} items")
        self._cache[key] = values

    def cached(self, key: str) -> torch.Tensor | None:
        return self._cache.get(key)

    def subset(self, idx) -> "AudioDataset":
        idx = torch.as_tensor(idx, dtype=torch.long)
        out = AudioDataset(
            self.waves[idx],
            self.labels[idx],
            self.label_names,
            self.sample_rate,
            sources=[self.sources[i] for i in idx.tolist()] if self.sources else None,
            name=self.name,
        )
        out._cache = {k: v[idx] for k, v in self._cache.items()}
        return out

    def report(self) -> str:
        return f"{len(self)} clips, {len(self.label_names)} labels, {len(self.skipped)} skipped"


# -- synthetic instrument notes ----------------------------------------------------------
def _envelope(kind: str, t: np.ndarray, release_at: float, rng: np.random.Generator) -> np.ndarray:
    """Amplitude envelope [N] in [0, 1] (attack / decay / release, seconds)."""
    if kind == "piano":  # hammer: 5 ms attack, exponential decay
        env = np.minimum(t / 0.005, 1.0) * np.exp(-t * rng.uniform(3.0, 4.5))
    elif kind == "organ":  # 20 ms attack, flat sustain
        env = np.minimum(t / 0.02, 1.0)
    elif kind == "flute":  # slow 90 ms breathy attack, slight swell
        env = np.minimum(t / 0.09, 1.0) * (0.85 + 0.15 * np.minimum(t / 0.5, 1.0))
    else:  # clarinet: 40 ms attack, gentle decay
        env = np.minimum(t / 0.04, 1.0) * np.exp(-t * 0.4)
    rel = np.clip(1 - (t - release_at) / 0.06, 0, 1)  # 60 ms release
    return env * rel


def _partials(kind: str) -> list[tuple[int, float]]:
    """(harmonic number, relative amplitude) of each timbre's recipe."""
    if kind == "piano":
        return [(k, 1.0 / k) for k in range(1, 11)]
    if kind == "organ":
        return [(1, 1.0), (2, 0.8), (3, 0.6), (4, 0.5), (6, 0.35), (8, 0.3)]
    if kind == "flute":
        return [(1, 1.0), (2, 0.12), (3, 0.04)]
    if kind == "clarinet":
        return [(k, 1.0 / k) for k in range(1, 12, 2)]
    raise ValueError(f"unknown timbre {kind!r}; one of {DEFAULT_TIMBRES}")


def synth_note(
    timbre: str, f0: float, sample_rate: int, n: int, rng: np.random.Generator, release_at: float | None = None
) -> np.ndarray:
    """One note [n] float32: harmonic recipe × envelope, random detune (±8 cents), onset
    (0–40 ms), release time (0.6–0.9 s, or ``release_at`` seconds after the onset: the
    random draw is made either way, so the other random choices do not change), vibrato
    (flute) and piano inharmonicity."""
    onset = rng.uniform(0.0, 0.04)
    t = np.arange(n) / sample_rate - onset
    tt = np.clip(t, 0, None)
    f = f0 * 2 ** (rng.uniform(-8, 8) / 1200)
    vib = 0.0
    if timbre == "flute":
        vib = 0.004 * np.sin(2 * np.pi * rng.uniform(4.5, 6.0) * tt)
    x = np.zeros(n)
    for k, a in _partials(timbre):
        fk = k * f * (math.sqrt(1 + 4e-4 * k * k) if timbre == "piano" else 1.0)
        if fk >= sample_rate / 2 - 200:
            break
        decay = np.exp(-tt * 1.5 * (k - 1)) if timbre == "piano" else 1.0
        x += a * decay * np.sin(2 * np.pi * fk * tt * (1 + vib) + rng.uniform(0, 2 * np.pi))
    rel = rng.uniform(0.6, 0.9)
    x *= _envelope(timbre, tt, rel if release_at is None else float(release_at), rng) * (t >= 0)
    if timbre == "flute":  # breath noise
        breath_end = 0.9 if release_at is None else min(0.9, float(release_at))
        x += 0.02 * rng.standard_normal(n) * _envelope(timbre, tt, breath_end, rng) * (t >= 0)
    return x.astype(np.float32)


def synthetic_notes(
    n_per_class: int = 16,
    *,
    timbres: Sequence[str] = DEFAULT_TIMBRES,
    pitches: Sequence[str] = DEFAULT_PITCHES,
    seed: int = 0,
    frontend: dict | None = None,
) -> AudioDataset:
    """The embedded default: ``len(timbres)·len(pitches)`` classes named ``{timbre}_{pitch}``,
    ``n_per_class`` deterministic clips each (seeded by ``seed``), loudness-normalised to
    −20 dBFS RMS. Clip length and rate from the front end (default 1.008 s at 16 kHz)."""
    cfg = FrontendConfig.from_dict(frontend)
    names, waves, labels = [], [], []
    for ti, tb in enumerate(timbres):
        for pi, p in enumerate(pitches):
            c = len(names)
            names.append(f"{tb}_{p}")
            for j in range(n_per_class):
                rng = np.random.default_rng([seed, ti, pi, j])
                waves.append(torch.from_numpy(synth_note(tb, note_hz(p), cfg.sample_rate, cfg.clip_samples, rng)))
                labels.append(c)
    w = normalize_loudness(torch.stack(waves))
    made = {
        "generator": "synthetic_notes",
        "n_per_class": int(n_per_class),
        "timbres": list(timbres),
        "pitches": list(pitches),
        "seed": int(seed),
        "frontend": cfg.to_dict(),
    }
    return AudioDataset(w, torch.tensor(labels), names, cfg.sample_rate, name="notes", provenance=made)


# -- captioned notes (text prompts, issue 20) ------------------------------------------------------
class CaptionedAudioDataset(AudioDataset):
    """An :class:`AudioDataset` whose clips have generating ``attributes`` (one dict per
    clip) and a caption drawn anew at every visit: item i's k-th fetch adds
    ``"caption"`` = ``captioner(attributes[i], caption_rng(caption_seed, i, k))`` and
    ``"attributes"`` (see :mod:`polydiff.plugins.audio.captions`). ``labels`` stay the
    timbre × pitch (or digit) classes the scoring classifier is trained on."""

    def __init__(self, *args, attributes: Sequence[dict], captioner, caption_seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        if len(attributes) != len(self):
            raise ValueError(f"{len(attributes)} attribute records for {len(self)} clips")
        self.attributes = [dict(a) for a in attributes]
        self.captioner = captioner
        self.caption_seed = int(caption_seed)
        self._visits = [0] * len(self)

    def caption(self, i: int, visit: int) -> str:
        from .captions import caption_rng

        return self.captioner(self.attributes[i], caption_rng(self.caption_seed, i, visit))

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        i = int(i)
        item["caption"] = self.caption(i, self._visits[i])
        item["attributes"] = dict(self.attributes[i])
        self._visits[i] += 1
        return item

    def subset(self, idx) -> "CaptionedAudioDataset":
        idx = torch.as_tensor(idx, dtype=torch.long)
        base = AudioDataset.subset(self, idx)
        out = CaptionedAudioDataset(
            base.waves,
            base.labels,
            base.label_names,
            base.sample_rate,
            sources=base.sources,
            name=base.name,
            provenance=self.provenance,
            attributes=[self.attributes[i] for i in idx.tolist()],
            captioner=self.captioner,
            caption_seed=self.caption_seed,
        )
        out._cache = base._cache
        return out

    def report(self) -> str:
        return super().report() + f", captioned ({len(self.attributes[0]) if self.attributes else 0} attributes)"


def captioned_notes(
    n_per_combo: int = 4,
    *,
    timbres: Sequence[str] | None = None,
    pitches: Sequence[str] | None = None,
    held_out_pairs: Sequence[Sequence[str]] | None = None,
    soft_gain_db: float | None = None,
    seed: int = 0,
    caption_seed: int | None = None,
    frontend: dict | None = None,
) -> CaptionedAudioDataset:
    """Synthetic notes whose timbre, pitch, loudness and duration vary, with captions (the
    text modality's default data set). For every timbre × pitch × loudness (soft, loud) ×
    duration (short, long) ``n_per_combo`` deterministic clips (``np.random.default_rng([seed,
    ti, pi, li, di, j])``); release at 0.20–0.30 s (short) or 0.70–0.90 s (long) after the onset;
    every clip normalised to −20 dBFS RMS, then soft clips scaled by ``soft_gain_db``
    (default −12 dB: soft = −32 dBFS RMS). Labels: ``{timbre}_{pitch}`` (the scoring
    classifier's classes). Captions: :mod:`polydiff.plugins.audio.captions` (held-out pairs
    default :data:`~polydiff.plugins.audio.captions.HELD_OUT_PAIRS`, named one at a time)."""
    from functools import partial

    from . import captions as cap

    timbres = tuple(timbres or cap.TIMBRES)
    pitches = tuple(pitches or cap.TEXT_PITCHES)
    held = [list(p) for p in (cap.HELD_OUT_PAIRS if held_out_pairs is None else held_out_pairs)]
    gain_db = cap.SOFT_GAIN_DB if soft_gain_db is None else float(soft_gain_db)
    cfg = FrontendConfig.from_dict(frontend)
    names, waves, labels, attrs = [], [], [], []
    for ti, tb in enumerate(timbres):
        for pi, p in enumerate(pitches):
            c = len(names)
            names.append(f"{tb}_{p}")
            for li, loud in enumerate(cap.LOUDNESS):
                for di, dur in enumerate(cap.DURATIONS):
                    for j in range(n_per_combo):
                        rng = np.random.default_rng([seed, ti, pi, li, di, j])
                        lo, hi = cap.RELEASE_S[dur]
                        release = rng.uniform(lo, hi)
                        w = synth_note(tb, note_hz(p), cfg.sample_rate, cfg.clip_samples, rng, release_at=release)
                        waves.append(torch.from_numpy(w))
                        labels.append(c)
                        attrs.append({"timbre": tb, "pitch": p, "loudness": loud, "duration": dur})
    w = normalize_loudness(torch.stack(waves))
    soft = torch.tensor([a["loudness"] == "soft" for a in attrs])
    w = torch.where(soft[:, None], w * 10 ** (gain_db / 20), w)
    made = {
        "generator": "captioned_notes",
        "n_per_combo": int(n_per_combo),
        "timbres": list(timbres),
        "pitches": list(pitches),
        "loudness": list(cap.LOUDNESS),
        "durations": list(cap.DURATIONS),
        "release_s": {k: list(v) for k, v in cap.RELEASE_S.items()},
        "soft_gain_db": gain_db,
        "held_out_pairs": held,
        "seed": int(seed),
        "frontend": cfg.to_dict(),
    }
    return CaptionedAudioDataset(
        w,
        torch.tensor(labels),
        names,
        cfg.sample_rate,
        name="notes_text",
        provenance=made,
        attributes=attrs,
        captioner=partial(cap.training_note_caption, held_out_pairs=held),
        caption_seed=seed if caption_seed is None else caption_seed,
    )


# -- spoken digits (espeak-ng) -----------------------------------------------------------------
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def spoken_digits(
    *,
    voices: Sequence[str] = ("en", "en-us", "en+f3", "en+m3"),
    speeds: Sequence[int] = (140, 175),
    pitches: Sequence[int] = (35, 65),
    digits: Sequence[str] = DIGITS,
    frontend: dict | None = None,
) -> AudioDataset:
    """Digits spoken by Debian's espeak-ng: voices × speeds (words/min) × pitches (0–99);
    labels = digit words. Resampled from espeak's 22.05 kHz, cropped/padded, RMS-normalised.
    Raises :class:`polydiff.errors.NotImplementedFeature` when espeak-ng is not installed."""
    cfg = FrontendConfig.from_dict(frontend)
    waves, labels, _ = _espeak_clips(voices, speeds, pitches, digits, cfg)
    return AudioDataset(torch.stack(waves), torch.tensor(labels), list(digits), cfg.sample_rate, name="digits")


def _espeak_clips(voices, speeds, pitches, digits, cfg: FrontendConfig):
    """(waves, labels, attributes) of every digit × voice × speed × pitch, spoken by espeak-ng."""
    from polydiff.errors import NotImplementedFeature

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise NotImplementedFeature("the spoken-digits set needs the espeak-ng binary (apt-get install espeak-ng)")
    waves, labels, attrs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for li, word in enumerate(digits):
            for v in voices:
                for s in speeds:
                    for p in pitches:
                        path = Path(tmp) / f"{word}_{v}_{s}_{p}.wav".replace("+", "_")
                        subprocess.run(
                            [exe, "-v", v, "-s", str(s), "-p", str(p), "-w", str(path), word],
                            check=True,
                            capture_output=True,
                            timeout=30,
                        )
                        wave, sr = read_audio(path)
                        w = crop_or_pad(resample(to_mono(wave), sr, cfg.sample_rate), cfg.clip_samples)
                        waves.append(normalize_loudness(w, file=path, record=word))
                        labels.append(li)
                        attrs.append({"word": word, "voice": v, "speed": int(s), "voice_pitch": int(p)})
    return waves, labels, attrs


def captioned_spoken_digits(
    *,
    voices: Sequence[str] = ("en", "en-us", "en+f3", "en+m3"),
    speeds: Sequence[int] = (140, 175),
    pitches: Sequence[int] = (35, 65),
    digits: Sequence[str] = DIGITS,
    caption_seed: int = 0,
    frontend: dict | None = None,
) -> CaptionedAudioDataset:
    """:func:`spoken_digits` with captions naming the word and (70 % of the time) the voice
    (:func:`polydiff.plugins.audio.captions.training_digit_caption`); needs espeak-ng."""
    from .captions import training_digit_caption

    cfg = FrontendConfig.from_dict(frontend)
    waves, labels, attrs = _espeak_clips(voices, speeds, pitches, digits, cfg)
    return CaptionedAudioDataset(
        torch.stack(waves),
        torch.tensor(labels),
        list(digits),
        cfg.sample_rate,
        name="digits_text",
        attributes=attrs,
        captioner=training_digit_caption,
        caption_seed=caption_seed,
    )


# -- any folder ------------------------------------------------------------------------------
def audio_folder(
    path: str | Path,
    *,
    on_error: str = "raise",
    frontend: dict | None = None,
    target_dbfs: float = -20.0,
    progress: bool = False,
) -> AudioDataset:
    """Every audio file below ``path`` whose parent sub-folder name is its label
    (``path/dog/a.wav`` → label ``dog``); files directly in ``path`` are refused.

    ``on_error="raise"`` stops at the first bad file with an InputError (file, record,
    field); ``"skip"`` leaves it out and records the error in ``dataset.skipped``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    root = Path(path)
    if not root.is_dir():
        raise InputError("not a folder", file=root, field="path")
    cfg = FrontendConfig.from_dict(frontend)
    files = list(audio_files(root))
    labels_of = {}
    waves, labels, sources, skipped = [], [], [], []
    it = files
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(files, desc="read audio", leave=False)
    for f in it:
        try:
            rel = f.relative_to(root)
            if len(rel.parts) < 2:
                raise InputError("file is not inside a label sub-folder", file=f, record=f.name, field="label")
            w = load_clip(
                f, sample_rate=cfg.sample_rate, length=cfg.clip_samples, target_dbfs=target_dbfs, record=f.name
            )
        except InputError as e:
            if on_error == "raise":
                raise
            skipped.append(e)
            continue
        lab = rel.parts[0]
        labels.append(labels_of.setdefault(lab, len(labels_of)))
        waves.append(w)
        sources.append(str(f))
    if skipped and progress:
        print(f"audio_folder {root}: skipped {len(skipped)} bad file(s); first: {skipped[0]}")
    if not waves:
        raise InputError(f"no readable audio files ({len(skipped)} skipped)", file=root, field="files")
    # labels in sorted order, stable across runs
    names = sorted(labels_of)
    remap = {labels_of[n]: i for i, n in enumerate(names)}
    lab_t = torch.tensor([remap[l] for l in labels])
    return AudioDataset(
        torch.stack(waves), lab_t, names, cfg.sample_rate, sources=sources, skipped=skipped, name=str(root)
    )
