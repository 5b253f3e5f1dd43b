"""What an audio model's ``sample`` returns, and the scorer that carries its classifier.

:class:`AudioClips` is a list of ``[N]`` waveforms (one per sample, so it fits the core's
"list of domain objects") that also exposes the batch as ``waveform [B, N]``, its
``sample_rate`` (Hz), the generated ``log_mel [B, n_mels, T]``, the requested ``labels``
and their ``names`` (or, from a text-conditioned model, the ``prompts`` and the attributes
they ``requested``), and a ``scorer`` for the classifier metrics.
"""

from __future__ import annotations

import torch


class AudioClips(list):
    def __init__(
        self,
        waveform: torch.Tensor,
        sample_rate: int,
        *,
        log_mel: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        names: list[str] | None = None,
        scorer=None,
        frontend: dict | None = None,
        prompts: list[str] | None = None,
        requested: list[dict] | None = None,
    ):
        super().__init__(list(waveform))
        self.waveform = waveform
        self.sample_rate = int(sample_rate)
        self.log_mel = log_mel
        self.labels = labels
        self.names = names
        self.scorer = scorer
        self.frontend = frontend
        self.prompts = None if prompts is None else list(prompts)
        if requested is None and prompts is not None:
            from .captions import parse_prompt

            requested = [parse_prompt(p) for p in prompts]
        #: per clip, the attributes its prompt names (timbre, pitch, loudness, duration, …)
        self.requested = requested

    @property
    def seconds(self) -> float:
        """Total duration in seconds."""
        return self.waveform.shape[0] * self.waveform.shape[-1] / self.sample_rate

    def __repr__(self) -> str:
        what = f"prompts={self.prompts[:2]}" if self.prompts else f"labels={self.names[:4] if self.names else None}"
        return (
            f"AudioClips({self.waveform.shape[0]} clips × {self.waveform.shape[-1]} samples "
            f"@ {self.sample_rate} Hz, {what})"
        )


class AudioScorer:
    """The plugin's classifier with the front end and normalisation it was trained with.

    ``score(waves [B, N]) → (probabilities [B, K], embeddings [B, D])``; ``label_names``: the
    classifier's class names (``{timbre}_{pitch}`` for notes) when known.
    """

    def __init__(self, classifier, frontend_cfg, mel_mean: float, mel_std: float, label_names=None):
        self.classifier, self.cfg = classifier, frontend_cfg
        self.mel_mean, self.mel_std = float(mel_mean), float(mel_std)
        self.label_names = list(label_names) if label_names is not None else None

    def normalised_mels(self, waves: torch.Tensor) -> torch.Tensor:
        from .frontend import log_mel

        return ((log_mel(waves, self.cfg) - self.mel_mean) / self.mel_std)[:, None]

    def score(self, waves: torch.Tensor):
        from .classifier import classify

        return classify(self.classifier, self.normalised_mels(waves))
