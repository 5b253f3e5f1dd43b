"""The log-mel front end (torchaudio ``MelSpectrogram``) and its documented parameters.

Defaults follow AudioLDM's 16 kHz / 64-mel front end (Liu et al. 2023) with Make-An-Audio's
n_fft 1024 / hop 256 (Huang et al. 2023): a 1.008-s clip (16 128 samples = 63 hops) gives
exactly 64 frames (``center=True``).

log-mel ``L = ln(max(M, floor))`` with ``M`` the mel *power* spectrogram (Hann window,
``power=2``, HTK mel scale, no filter normalisation, no STFT normalisation) and
``floor = 1e-5`` (≈ −50 dB). Shapes: waveform ``[B, N]`` → log-mel ``[B, n_mels, T]`` with
T = 1 + N // hop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class FrontendConfig:
    sample_rate: int = 16000  # Hz
    n_fft: int = 1024  # samples (also the Hann window length)
    hop_length: int = 256  # samples
    n_mels: int = 64
    f_min: float = 0.0  # Hz
    f_max: float = 8000.0  # Hz (Nyquist at 16 kHz)
    log_floor: float = 1e-5  # mel power floor before the natural log
    clip_samples: int = 16128  # fixed clip length (63 hops → 64 frames)

    @property
    def n_frames(self) -> int:
        return 1 + self.clip_samples // self.hop_length

    @property
    def seconds(self) -> float:
        return self.clip_samples / self.sample_rate

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "FrontendConfig":
        d = dict(d or {})
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


_CACHE: dict = {}


def mel_transform(cfg: FrontendConfig):
    """The torchaudio ``MelSpectrogram`` for ``cfg`` (power 2, cached per config)."""
    key = ("mel", cfg)
    if key not in _CACHE:
        import torchaudio

        _CACHE[key] = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            n_mels=cfg.n_mels,
            power=2.0,
            center=True,
            mel_scale="htk",
            norm=None,
        )
    return _CACHE[key]


@torch.no_grad()
def log_mel(wave: torch.Tensor, cfg: FrontendConfig = FrontendConfig()) -> torch.Tensor:
    """``[B, N]`` or ``[N]`` waveform → natural-log mel power ``[B, n_mels, T]`` (or ``[n_mels, T]``)."""
    mel = mel_transform(cfg).to(wave.device)(wave.float())
    return torch.log(mel.clamp(min=cfg.log_floor))


def pad_frames(mel: torch.Tensor, multiple: int, fill: float) -> torch.Tensor:
    """Pad the time axis (last) with ``fill`` up to a multiple of ``multiple`` frames."""
    t = mel.shape[-1]
    extra = (-t) % multiple
    if extra == 0:
        return mel
    return torch.nn.functional.pad(mel, (0, extra), value=fill)
