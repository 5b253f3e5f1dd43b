"""Hookspecs the audio plugin adds to polydiff (through ``polydiff_add_hookspecs``).

``polydiff_audio_vocoder`` turns log-mels into waveforms. It is ``firstresult``: the first
implementation that returns something other than ``None`` wins. The audio plugin's own
Griffin-Lim implementation is marked ``trylast``, so any installed neural vocoder plugin
is asked first and may decline (return ``None``) for front ends it was not trained on.
"""

from __future__ import annotations

from polydiff.hookspecs import hookspec


@hookspec(firstresult=True)
def polydiff_audio_vocoder(log_mel, frontend):
    """Log-mel → waveform.

    Args:
        log_mel: ``[B, n_mels, T]`` float tensor, natural log of mel power
            (see :mod:`polydiff.plugins.audio.frontend`).
        frontend: the front-end parameters as a dict (``sample_rate``, ``n_fft``,
            ``hop_length``, ``n_mels``, ``f_min``, ``f_max``, ``log_floor``, ``clip_samples``).

    Returns:
        ``[B, N]`` float waveform at ``frontend["sample_rate"]``, or ``None`` to decline.
    """
