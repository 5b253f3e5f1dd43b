"""Audio in/out: soundfile read/write, torchaudio resampling, mono mixdown, crop/pad,
loudness normalisation, and the checks that turn bad audio into clear errors.

Waveforms are float32 tensors in [-1, 1]: one clip ``[N]`` (samples), a batch ``[B, N]``;
sample rates in Hz. Every reader raises :class:`polydiff.errors.InputError` naming the
file, the record (the clip index or the file itself) and the field (``samples``,
``sample_rate``, ``format``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from polydiff.checkpoint import atomic_write_bytes
from polydiff.errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")
#: RMS below this (≈ −80 dBFS) counts as silence: the clip carries no signal to learn from.
SILENCE_RMS = 1e-4


def read_audio(path: str | Path, *, record=None) -> tuple[torch.Tensor, int]:
    """Read an audio file with soundfile → ``(wave [channels, N] float32, sample_rate Hz)``.

    Raises InputError (field ``format``) when the file cannot be decoded, (``samples``) when
    it is empty or holds NaN/inf, (``sample_rate``) when the rate is not positive.
    """
    import soundfile as sf

    path = Path(path)
    rec = path.name if record is None else record
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError…
        raise InputError(
            f"cannot decode audio ({type(e).__name__}: {e})", file=path, record=rec, field="format"
        ) from None
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise InputError(f"invalid sample rate {sr!r}", file=path, record=rec, field="sample_rate")
    if data.size == 0:
        raise InputError("file holds no samples", file=path, record=rec, field="samples")
    wave = torch.from_numpy(np.ascontiguousarray(data.T))
    check_wave(wave, file=path, record=rec)
    return wave, int(sr)


def check_wave(wave: torch.Tensor, *, file=None, record=None) -> None:
    """Raise InputError unless ``wave`` is non-empty and finite."""
    if wave.numel() == 0:
        raise InputError("no samples", file=file, record=record, field="samples")
    if not torch.isfinite(wave).all():
        bad = int((~torch.isfinite(wave)).sum())
        raise InputError(f"{bad} sample(s) are NaN or infinite", file=file, record=record, field="samples")


def to_mono(wave: torch.Tensor) -> torch.Tensor:
    """``[channels, N]`` or ``[N]`` → ``[N]`` (mean over channels)."""
    return wave.mean(0) if wave.ndim == 2 else wave


def resample(wave: torch.Tensor, orig_hz: int, new_hz: int) -> torch.Tensor:
    """Band-limited sinc resampling (torchaudio.functional.resample) along the last axis."""
    if int(orig_hz) == int(new_hz):
        return wave
    from torchaudio.functional import resample as ta_resample

    return ta_resample(wave, int(orig_hz), int(new_hz))


def crop_or_pad(wave: torch.Tensor, length: int, *, offset: int = 0) -> torch.Tensor:
    """Fixed length along the last axis: crop ``[offset, offset+length)`` or zero-pad at the end."""
    n = wave.shape[-1]
    if n >= length:
        off = max(0, min(int(offset), n - length))
        return wave[..., off : off + length]
    return torch.nn.functional.pad(wave, (0, length - n))


def rms_dbfs(wave: torch.Tensor) -> torch.Tensor:
    """RMS level in dBFS (0 dB = a full-scale square wave) over the last axis."""
    rms = wave.pow(2).mean(-1).sqrt()
    return 20 * torch.log10(rms.clamp(min=1e-12))


def normalize_loudness(
    wave: torch.Tensor, target_dbfs: float = -20.0, peak: float = 0.99, *, file=None, record=None
) -> torch.Tensor:
    """Scale each clip to ``target_dbfs`` RMS, then down (never up) so |x| ≤ ``peak``.

    RMS normalisation, not ITU-R BS.1770 loudness: for 1-s clips the BS.1770 400-ms gating
    leaves too few blocks. A clip below :data:`SILENCE_RMS` is refused (InputError,
    field ``samples``) rather than amplified noise.
    """
    rms = wave.pow(2).mean(-1, keepdim=True).sqrt()
    if (rms < SILENCE_RMS).any():
        raise InputError(
            f"silent clip (RMS {float(rms.min()):.2e} < {SILENCE_RMS:g})", file=file, record=record, field="samples"
        )
    out = wave * (10 ** (target_dbfs / 20) / rms)
    top = out.abs().amax(-1, keepdim=True)
    return out * torch.clamp(peak / top.clamp(min=1e-12), max=1.0)


def load_clip(
    path: str | Path,
    *,
    sample_rate: int,
    length: int,
    target_dbfs: float | None = -20.0,
    min_rate: int = 1000,
    record=None,
) -> torch.Tensor:
    """File → mono, resampled, fixed-length, loudness-normalised clip ``[length]``.

    A native rate below ``min_rate`` Hz is refused as a wrong sample rate.
    """
    wave, sr = read_audio(path, record=record)
    rec = Path(path).name if record is None else record
    if sr < min_rate:
        raise InputError(f"sample rate {sr} Hz is below {min_rate} Hz", file=path, record=rec, field="sample_rate")
    wave = crop_or_pad(resample(to_mono(wave), sr, sample_rate), length)
    if target_dbfs is not None:
        wave = normalize_loudness(wave, target_dbfs, file=path, record=rec)
    return wave.float()


def write_wav(
    wav,
    out: str | Path,
    sample_rate: int | None = None,
    *,
    prefix: str = "sample",
    names: Sequence[str] | None = None,
    subtype: str = "PCM_16",
) -> list[Path]:
    """Write waveforms as WAV files; returns the paths.

        ``wav``: :class:`~polydiff.plugins.audio.clips.AudioClips` (carries its sample rate),
        a tensor ``[B, N]`` or ``[N]``, or a list of ``[N]`` tensors. ``out``: a folder
        (files ``{prefix}_{i:04d}.wav``, ``{i:04d}_{label}.wav`` for labelled clips, or
        ``{names[i]}.wav``) or, for a single clip, a
        path ending in ``.wav``. Samples are clipped to [-1, 1] and written as 16-bit PCM, each
    file atomically (:func:`polydiff.checkpoint.atomic_write_bytes`).
    """
    import soundfile as sf

    sr = sample_rate or getattr(wav, "sample_rate", None)
    if sr is None:
        raise ValueError("write_wav needs sample_rate= for a plain tensor")
    if hasattr(wav, "waveform"):
        waves = list(wav.waveform)
        if names is None and getattr(wav, "names", None):
            names = [f"{i:04d}_{n}" for i, n in enumerate(wav.names)]
    elif torch.is_tensor(wav):
        waves = [wav] if wav.ndim == 1 else list(wav)
    else:
        waves = [torch.as_tensor(w) for w in wav]
    out = Path(out)
    if out.suffix.lower() == ".wav":
        if len(waves) != 1:
            raise ValueError(f"{out} is a single file but {len(waves)} clips were given")
        targets = [out]
    else:
        targets = [out / f"{(names[i] if names else f'{prefix}_{i:04d}')}.wav" for i in range(len(waves))]
    paths = []
    for w, p in zip(waves, targets):
        x = torch.as_tensor(w).detach().float().cpu().clamp(-1, 1)
        x = torch.nan_to_num(x, nan=0.0)
        buf = io.BytesIO()
        sf.write(buf, x.numpy(), int(sr), subtype=subtype, format="WAV")
        atomic_write_bytes(p, buf.getvalue())
        paths.append(p)
    return paths


def audio_files(folder: str | Path) -> Iterable[Path]:
    """Audio files below ``folder`` (sorted, recursive), by suffix."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
