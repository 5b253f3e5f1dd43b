"""The default vocoder: mel power → linear power, then torchaudio ``GriffinLim`` phase
reconstruction (Griffin & Lim 1984; 32 iterations as in Riffusion, momentum 0.99 as in
Perraudin et al. 2013).

Mel → linear: torchaudio's ``InverseMelScale`` solves the under-determined least-squares
problem (64 equations, 513 unknowns per frame) and clamps negatives to 0, which smears
harmonic spectra (measured on the notes set: SC 0.68, LSD 13.5 dB; and the plugin's
classifier recognises only ~31 % of such clips). The default (``inverse="nnls"``) solves
the *non-negative* least-squares problem min_P ‖M − FᵀP‖², P ≥ 0, by Lee & Seung (2001)
multiplicative updates (200 iterations) started from each band's power spread over its
filter: SC 0.37, LSD 6.7 dB, classifier accuracy 100 % on the same clips.
``inverse="lstsq"`` keeps torchaudio's ``InverseMelScale``.

Reached through the ``polydiff_audio_vocoder`` hook (see
:mod:`polydiff.plugins.audio.hookspecs`); :func:`vocode` asks the hook, so an installed
neural vocoder replaces this one.
"""

from __future__ import annotations

import torch

from .frontend import FrontendConfig

GL_ITERS = 32
NNLS_ITERS = 200
_CACHE: dict = {}


def _transforms(cfg: FrontendConfig, n_iter: int):
    key = (cfg, n_iter)
    if key not in _CACHE:
        import torchaudio.transforms as T

        inv = T.InverseMelScale(
            n_stft=cfg.n_fft // 2 + 1,
            n_mels=cfg.n_mels,
            sample_rate=cfg.sample_rate,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            mel_scale="htk",
            norm=None,
        )
        gl = T.GriffinLim(
            n_fft=cfg.n_fft, hop_length=cfg.hop_length, power=2.0, n_iter=n_iter, momentum=0.99, length=cfg.clip_samples
        )
        _CACHE[key] = (inv, gl)
    return _CACHE[key]


def mel_filterbank(cfg: FrontendConfig) -> torch.Tensor:
    """The front end's filterbank ``F [n_fft/2+1, n_mels]`` (mel power = Fᵀ · linear power)."""
    from .frontend import mel_transform

    return mel_transform(cfg).mel_scale.fb


def linear_power_from_mel(
    log_mel: torch.Tensor, cfg: FrontendConfig, inverse: str = "nnls", iters: int = NNLS_ITERS
) -> torch.Tensor:
    """``[B, n_mels, T]`` natural-log mel power → ``[B, n_fft/2+1, T]`` linear power (≥ 0).

    ``inverse="nnls"``: multiplicative updates P ← P ⊙ (F M) / (F Fᵀ P); ``"lstsq"``:
    torchaudio ``InverseMelScale`` (least squares, clamped at 0).
    """
    mel = log_mel.float().exp()
    if inverse == "lstsq":
        inv, _ = _transforms(cfg, GL_ITERS)
        return inv.to(log_mel.device)(mel).clamp(min=0)
    if inverse != "nnls":
        raise ValueError(f"inverse must be 'nnls' or 'lstsq', not {inverse!r}")
    F = mel_filterbank(cfg).to(device=mel.device, dtype=torch.float32)
    M = mel
    P = (F / F.sum(0, keepdim=True).clamp(min=1e-8)) @ M  # spread each band over its filter
    FM = F @ M
    for _ in range(iters):
        P = P * FM / (F @ (F.T @ P) + 1e-30)
    return P.float()


def griffin_lim(power: torch.Tensor, cfg: FrontendConfig, n_iter: int = GL_ITERS, seed: int = 0) -> torch.Tensor:
    """``[B, n_fft/2+1, T]`` linear power spectrogram → ``[B, clip_samples]`` waveform.

    Griffin-Lim starts from random phase; it is drawn from a fixed ``seed`` so decoding
    is deterministic. Only the generator of ``power``'s device is seeded, inside
    :func:`torch.random.fork_rng`: the caller's CPU and CUDA random states are unchanged.
    """
    _, gl = _transforms(cfg, n_iter)
    gl = gl.to(power.device)
    dev = power.device
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(seed)
        else:
            torch.random.default_generator.manual_seed(seed)
        return gl(power.float())


@torch.no_grad()
def griffin_lim_vocoder(
    log_mel: torch.Tensor, frontend: dict, n_iter: int = GL_ITERS, inverse: str = "nnls"
) -> torch.Tensor:
    """The default ``polydiff_audio_vocoder`` implementation: ``[B, n_mels, T]`` → ``[B, N]``."""
    cfg = FrontendConfig.from_dict(frontend)
    return griffin_lim(linear_power_from_mel(log_mel, cfg, inverse), cfg, n_iter)


def vocode(log_mel: torch.Tensor, cfg: FrontendConfig) -> torch.Tensor:
    """Log-mel → waveform through the plugin hook (first non-None implementation wins)."""
    from polydiff.plugin_manager import get_plugins

    pm = get_plugins().pm
    hook = getattr(pm.hook, "polydiff_audio_vocoder", None)
    out = hook(log_mel=log_mel, frontend=cfg.to_dict()) if hook is not None else None
    if out is None:  # the audio plugin's hookspecs were not loaded (plugin filtered out)
        out = griffin_lim_vocoder(log_mel, cfg.to_dict())
    return out
