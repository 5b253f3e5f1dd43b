"""Audio metrics.

Round trip (paired ``samples`` vs ``reference``, waveforms ``[B, N]``; STFT with a Hann
window, n_fft 1024, hop 256, ``center=True``, no normalisation):

- spectral convergence  SC = ‖|S| − |Ŝ|‖_F / ‖|S|‖_F per clip (Arık et al. 2019), averaged;
- log-spectral distance LSD = mean_frames √(mean_f (10·log10(P+ε) − 10·log10(P̂+ε))²) dB
  with P = |S|² and ε = 1e-5 fixed. Silent frames are *kept*: where both spectra are far
  below ε they contribute ≈ 0, where only one is silent the ε floor bounds the term.
- mel-cepstral distortion MCD = mean_frames (10/ln 10)·√(2·Σ_{d≥1}(c_d − ĉ_d)²) dB,
  c = orthonormal DCT-II (along the mel axis) of the natural-log mel power of the front end,
  c0 dropped (Kubichek 1993; dB-scaled MFCCs would inflate it ~4×).

Generation (by the plugin's classifier, see :mod:`polydiff.plugins.audio.classifier`):
``class_accuracy``, ``fd_ours`` (Fréchet distance of embeddings; never compare with FAD),
``is_ours`` (exp E_x KL(p(y|x) ‖ p(y)), Salimans et al. 2016), ``kl_ours`` (mean
KL(p̄_real(y|c) ‖ p(y|x)) against the real clips of the requested class c) and
``pitch_accuracy`` (f0 within 50 cents of the label's pitch).

Text prompts (issue 20; clips from a text-conditioned model carry ``prompts`` and the
attributes they ``requested``, :func:`polydiff.plugins.audio.captions.parse_prompt`): each
attribute is judged only on the clips whose prompt names it —

- ``audio_prompt_pitch_accuracy``: f0 (:func:`estimate_f0`) within 50 cents of the named pitch;
- ``audio_prompt_timbre_accuracy``: the classifier's probabilities summed over the pitches of
  each timbre (its classes are ``{timbre}_{pitch}``), arg-max = the named timbre;
- ``audio_prompt_loudness_accuracy``: RMS level ≥ :data:`LOUDNESS_THRESHOLD_DBFS` (−26 dBFS,
  midway between the data's soft −32 and loud −20 dBFS) is ``loud``, below it ``soft``;
- ``audio_prompt_duration_accuracy``: :func:`envelope_duration` ≥ :data:`DURATION_THRESHOLD_S`
  (0.48 s; the data's short notes measure 0.26–0.36 s, long ones 0.61–0.96 s) is ``long``;
- ``audio_prompt_alignment``: per clip the share of its named attributes (of those four) that
  hold, averaged over the clips that name at least one.

Each is NaN when no clip names its attribute; ``prompts=`` or ``requested=`` override what
the clips carry.

:data:`METRICS` holds them under their registered names (``audio_lsd``, ``audio_fd_ours``, …),
each with the registry signature ``f(samples, reference=None, **options) -> float``;
samples/reference may be :class:`AudioClips`, an :class:`AudioDataset`, a tensor
``[B, N]`` or a list of ``[N]`` tensors.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from polydiff.frechet import frechet_from_features

LSD_EPS = 1e-5
DB_PER_NEPER_MCD = 10.0 / math.log(10.0)
STFT_N_FFT, STFT_HOP = 1024, 256


# -- inputs --------------------------------------------------------------------------------
def as_waves(x) -> torch.Tensor:
    """Anything clip-like → float32 ``[B, N]``; a str/Path is read as a WAV folder
    (``polydiff eval audio DIR --reference REF``)."""
    if isinstance(x, (str, Path)):
        from .modality import AudioModality

        x = AudioModality({"progress": False}).read(x)
    if hasattr(x, "waveform"):
        x = x.waveform
    elif hasattr(x, "waves"):
        x = x.waves
    if torch.is_tensor(x):
        w = x
    elif isinstance(x, np.ndarray):
        w = torch.from_numpy(x)
    else:
        w = torch.stack([torch.as_tensor(v) for v in x])
    w = w.float()
    return w[None] if w.ndim == 1 else w


def labels_of(x, labels=None) -> torch.Tensor | None:
    if labels is not None:
        return torch.as_tensor(labels).long()
    lab = getattr(x, "labels", None)
    return None if lab is None else torch.as_tensor(lab).long()


def _paired(samples, reference):
    if reference is None:
        raise ValueError("this metric compares samples with a paired reference: pass reference=")
    a, b = as_waves(samples), as_waves(reference)
    if a.shape != b.shape:
        raise ValueError(f"samples {tuple(a.shape)} and reference {tuple(b.shape)} must have the same shape")
    return a, b


def stft_power(w: torch.Tensor, n_fft: int = STFT_N_FFT, hop: int = STFT_HOP) -> torch.Tensor:
    """``[B, N]`` → |STFT|² ``[B, n_fft/2+1, T]`` (float64)."""
    win = torch.hann_window(n_fft, dtype=torch.float64)
    s = torch.stft(w.double(), n_fft, hop, window=win, center=True, return_complex=True)
    return s.abs() ** 2


# -- closed forms on spectra (what the waveform metrics call) ----------------------------------
def sc_from_magnitudes(mag_ref: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """``[B, F, T]`` magnitudes → SC per clip ``[B]``."""
    mag_ref, mag = mag_ref.double(), mag.double()
    num = (mag_ref - mag).flatten(1).norm(dim=1)
    return num / mag_ref.flatten(1).norm(dim=1).clamp(min=1e-12)


def lsd_from_power(p_ref: torch.Tensor, p: torch.Tensor, eps: float = LSD_EPS) -> torch.Tensor:
    """``[B, F, T]`` powers → LSD per clip ``[B]`` in dB (frames averaged)."""
    p_ref, p = p_ref.double(), p.double()
    d = 10 * torch.log10(p_ref + eps) - 10 * torch.log10(p + eps)
    return d.pow(2).mean(1).sqrt().mean(-1)


def dct_ortho(x: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """Orthonormal DCT-II along ``dim`` (matches ``scipy.fft.dct(norm="ortho")``)."""
    n = x.shape[dim]
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None]
    basis = torch.cos(math.pi * k * (2 * i + 1) / (2 * n)) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)
    xt = x.double().movedim(dim, -1)
    return (xt @ basis.T).movedim(-1, dim)


def mcd_from_log_mel(lm_ref: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:
    """Natural-log mel ``[B, n_mels, T]`` pair → MCD per clip ``[B]`` in dB (c0 dropped)."""
    c_ref, c = dct_ortho(lm_ref, -2)[:, 1:], dct_ortho(lm, -2)[:, 1:]
    per_frame = DB_PER_NEPER_MCD * torch.sqrt(2 * (c_ref - c).pow(2).sum(1))
    return per_frame.mean(-1)


# -- registered round-trip metrics -----------------------------------------------------------
def spectral_convergence(samples, reference=None, **options) -> float:
    a, b = _paired(samples, reference)
    return float(sc_from_magnitudes(stft_power(b).sqrt(), stft_power(a).sqrt()).mean())


def log_spectral_distance(samples, reference=None, eps: float = LSD_EPS, **options) -> float:
    a, b = _paired(samples, reference)
    return float(lsd_from_power(stft_power(b), stft_power(a), eps).mean())


def mel_cepstral_distortion(samples, reference=None, frontend: dict | None = None, **options) -> float:
    from .frontend import FrontendConfig, log_mel

    a, b = _paired(samples, reference)
    cfg = FrontendConfig.from_dict(frontend or getattr(samples, "frontend", None))
    return float(mcd_from_log_mel(log_mel(b, cfg), log_mel(a, cfg)).mean())


# -- classifier-based generation metrics ----------------------------------------------------------
def inception_score_from_probs(p: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))) with p(y) the mean over samples; ``p [B, K]``."""
    p = p.double().clamp(min=1e-12)
    py = p.mean(0, keepdim=True)
    return float(torch.exp((p * (p.log() - py.log())).sum(1).mean()))


def _scorer(samples, options):
    s = options.get("scorer") or getattr(samples, "scorer", None)
    if s is None:
        raise ValueError(
            "classifier metrics need scorer= (an AudioScorer: the plugin's trained classifier); "
            "clips sampled from an audio model carry it"
        )
    return s


def class_accuracy(samples, reference=None, labels=None, **options) -> float:
    """Fraction of clips the classifier assigns to their requested label."""
    probs, _ = _scorer(samples, options).score(as_waves(samples))
    lab = labels_of(samples, labels)
    if lab is None:
        raise ValueError("class_accuracy needs labels (labels= or clips sampled with a label)")
    return float((probs.argmax(1) == lab).double().mean())


def fd_ours(samples, reference=None, **options) -> float:
    """Fréchet distance between classifier embeddings of samples and reference clips."""
    if reference is None:
        raise ValueError("fd_ours needs reference= (real clips)")
    sc = _scorer(samples, options)
    _, e1 = sc.score(as_waves(samples))
    _, e2 = sc.score(as_waves(reference))
    return frechet_from_features(e1, e2)


def is_ours(samples, reference=None, **options) -> float:
    probs, _ = _scorer(samples, options).score(as_waves(samples))
    return inception_score_from_probs(probs)


def kl_ours(samples, reference=None, labels=None, **options) -> float:
    """Mean KL(p̄_real(y|c) ‖ p(y|x)) in nats, p̄_real(y|c) the mean posterior over the real
    clips of the sample's label c (the paired KL of AudioLDM, with class-level pairing)."""
    if reference is None:
        raise ValueError("kl_ours needs reference= (real clips with labels)")
    sc = _scorer(samples, options)
    lab, rlab = labels_of(samples, labels), labels_of(reference)
    if lab is None or rlab is None:
        raise ValueError("kl_ours needs labels on samples and reference")
    p, _ = sc.score(as_waves(samples))
    pr, _ = sc.score(as_waves(reference))
    K = p.shape[1]
    means = torch.stack([pr[rlab == c].mean(0) if (rlab == c).any() else torch.full((K,), 1.0 / K) for c in range(K)])
    q = means[lab].double().clamp(min=1e-12)
    pp = p.double().clamp(min=1e-12)
    return float((q * (q.log() - pp.log())).sum(1).mean())


# -- pitch ----------------------------------------------------------------------------------------
def estimate_f0(
    wave: torch.Tensor, sample_rate: int, fmin: float = 50.0, fmax: float = 2000.0, frame: int = 2048, hop: int = 512
) -> float:
    """Fundamental frequency (Hz) of a clip ``[N]``: normalised autocorrelation per Hann
    frame divided by the window's autocorrelation (Boersma 1993; frames with RMS ≥ 30 % of
    the loudest), the smallest lag whose peak reaches 90 % of the
    best peak in [1/fmax, 1/fmin] (guards against octave-low errors), parabolic
    interpolation, median over frames. NaN for silence."""
    x = wave.double().cpu().numpy()
    if x.shape[0] < frame:
        x = np.pad(x, (0, frame - x.shape[0]))
    starts = range(0, x.shape[0] - frame + 1, hop)
    frames = np.stack([x[s : s + frame] for s in starts])
    rms = np.sqrt((frames**2).mean(1))
    if rms.max() <= 1e-6:
        return float("nan")
    frames = frames[rms >= 0.3 * rms.max()]
    win = np.hanning(frame)
    frames = (frames - frames.mean(1, keepdims=True)) * win
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * frame)) ** 2)[:, :frame]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    # divide by the window's own autocorrelation (Boersma 1993), which removes the bias
    # of the taper towards short lags
    w_ac = np.fft.irfft(np.abs(np.fft.rfft(win, 2 * frame)) ** 2)[:frame]
    ac = ac / np.maximum(w_ac / w_ac[0], 1e-3)
    lo, hi = int(sample_rate / fmax), min(frame - 2, int(sample_rate / fmin))
    f0s = []
    for a in ac:
        seg = a[lo : hi + 1]
        peaks = [i for i in range(1, len(seg) - 1) if seg[i] >= seg[i - 1] and seg[i] > seg[i + 1] and seg[i] > 0]
        if not peaks:
            continue
        best = max(seg[i] for i in peaks)
        i = next(i for i in peaks if seg[i] >= 0.9 * best)
        y0, y1, y2 = seg[i - 1], seg[i], seg[i + 1]
        den = y0 - 2 * y1 + y2
        off = 0.5 * (y0 - y2) / den if den != 0 else 0.0
        f0s.append(sample_rate / (lo + i + off))
    return float(np.median(f0s)) if f0s else float("nan")


def cents(f: float, ref: float) -> float:
    return 1200 * math.log2(f / ref) if f > 0 and ref > 0 and math.isfinite(f) else float("inf")


def pitch_accuracy(
    samples, reference=None, names=None, sample_rate: int | None = None, tolerance_cents: float = 50.0, **options
) -> float:
    """Fraction of clips whose estimated f0 lies within ``tolerance_cents`` of the pitch in
    their label name (``{timbre}_{pitch}``, e.g. ``piano_C4``)."""
    from .data import note_hz

    names = names or getattr(samples, "names", None)
    sr = sample_rate or getattr(samples, "sample_rate", None)
    if names is None or sr is None:
        raise ValueError("pitch_accuracy needs label names (names=) and sample_rate=")
    w = as_waves(samples)
    ok = [
        abs(cents(estimate_f0(w[i], sr), note_hz(str(n).rsplit("_", 1)[-1]))) <= tolerance_cents
        for i, n in enumerate(names)
    ]
    return float(np.mean(ok))


# -- text prompts ---------------------------------------------------------------------------------
#: RMS level (dBFS) above which a clip is "loud" (data: soft −32, loud −20 dBFS)
LOUDNESS_THRESHOLD_DBFS = -26.0
#: envelope duration (s) above which a clip is "long" (data: short 0.26–0.36 s, long ≥ 0.61 s)
DURATION_THRESHOLD_S = 0.48
#: the attributes the prompt metrics judge
PROMPT_ATTRIBUTES = ("pitch", "timbre", "loudness", "duration")


def rms_dbfs(waves) -> torch.Tensor:
    """RMS level of each clip ``[B]`` in dB relative to full scale (1.0)."""
    w = as_waves(waves).double()
    return 20 * torch.log10(w.pow(2).mean(-1).sqrt().clamp(min=1e-10))


def envelope_duration(wave: torch.Tensor, sample_rate: int, frame_s: float = 0.02, rel_db: float = -24.0) -> float:
    """Sounding time (s) of a clip ``[N]``: frames of ``frame_s`` (hop half a frame) whose RMS
    is within ``rel_db`` of the loudest frame, from the first to the last such frame."""
    frame = max(2, int(round(frame_s * sample_rate)))
    hop = frame // 2
    w = wave.double().reshape(-1)
    if w.shape[0] < frame:
        w = torch.nn.functional.pad(w, (0, frame - w.shape[0]))
    r = w.unfold(0, frame, hop).pow(2).mean(1).sqrt()
    if float(r.max()) <= 1e-8:
        return 0.0
    idx = torch.nonzero(r >= r.max() * 10 ** (rel_db / 20)).flatten()
    return float((idx[-1] - idx[0] + 1) * hop / sample_rate)


def requested_attributes(samples, prompts=None, requested=None) -> list[dict]:
    """Per clip, the attributes its prompt names (``requested=``, else parsed ``prompts=``,
    else what the clips carry)."""
    from .captions import parse_prompt

    if requested is None and prompts is not None:
        requested = [parse_prompt(p) for p in prompts]
    if requested is None:
        requested = getattr(samples, "requested", None)
    if requested is None:
        raise ValueError("prompt metrics need clips from a text-conditioned model, or prompts= / requested=")
    return list(requested)


def timbre_predictions(waves: torch.Tensor, scorer, label_names=None) -> list[str]:
    """The classifier's timbre per clip: class probabilities summed over each timbre's pitches."""
    names = list(label_names or getattr(scorer, "label_names", None) or [])
    if not names:
        raise ValueError("timbre accuracy needs the classifier's label names ({timbre}_{pitch}): label_names=")
    probs, _ = scorer.score(waves)
    timbres = list(dict.fromkeys(n.rsplit("_", 1)[0] for n in names))
    member = torch.tensor([[n.rsplit("_", 1)[0] == t for n in names] for t in timbres], dtype=probs.dtype)
    return [timbres[int(i)] for i in (probs @ member.T).argmax(1)]


def prompt_hits(samples, attributes=PROMPT_ATTRIBUTES, **options) -> list[dict]:
    """Per clip ``{attribute: bool}`` for each of ``attributes`` its prompt names."""
    from .data import note_hz

    req = requested_attributes(samples, options.get("prompts"), options.get("requested"))
    w = as_waves(samples)
    if len(req) != w.shape[0]:
        raise ValueError(f"{len(req)} prompts for {w.shape[0]} clips")
    sr = options.get("sample_rate") or getattr(samples, "sample_rate", None) or 16000
    need = {a for r in req for a in r if a in attributes}
    timbre = None
    if "timbre" in need:
        timbre = timbre_predictions(w, _scorer(samples, options), options.get("label_names"))
    level = rms_dbfs(w) if "loudness" in need else None
    out = []
    for i, r in enumerate(req):
        hit = {}
        if "pitch" in r and "pitch" in attributes:
            hit["pitch"] = abs(cents(estimate_f0(w[i], sr), note_hz(r["pitch"]))) <= options.get(
                "tolerance_cents", 50.0
            )
        if "timbre" in r and "timbre" in attributes:
            hit["timbre"] = timbre[i] == r["timbre"]
        if "loudness" in r and "loudness" in attributes:
            loud = float(level[i]) >= options.get("loudness_threshold_dbfs", LOUDNESS_THRESHOLD_DBFS)
            hit["loudness"] = loud == (r["loudness"] == "loud")
        if "duration" in r and "duration" in attributes:
            long_ = envelope_duration(w[i], sr) >= options.get("duration_threshold_s", DURATION_THRESHOLD_S)
            hit["duration"] = long_ == (r["duration"] == "long")
        out.append(hit)
    return out


def _attribute_accuracy(attribute: str):
    def metric(samples, reference=None, **options) -> float:
        hits = [h[attribute] for h in prompt_hits(samples, (attribute,), **options) if attribute in h]
        return float(np.mean(hits)) if hits else float("nan")

    metric.__name__ = f"prompt_{attribute}_accuracy"
    metric.__doc__ = f"Share of the clips whose prompt names a {attribute} that have it (NaN: none names one)."
    return metric


prompt_pitch_accuracy = _attribute_accuracy("pitch")
prompt_timbre_accuracy = _attribute_accuracy("timbre")
prompt_loudness_accuracy = _attribute_accuracy("loudness")
prompt_duration_accuracy = _attribute_accuracy("duration")


def prompt_alignment(samples, reference=None, **options) -> float:
    """Mean over clips (those naming ≥ 1 judged attribute) of the share of named attributes met."""
    per_clip = [np.mean(list(h.values())) for h in prompt_hits(samples, **options) if h]
    return float(np.mean(per_clip)) if per_clip else float("nan")


def loud_share(samples, **options) -> float:
    """Share of clips whose RMS level reads as ``loud`` (the negative-prompt check)."""
    thr = options.get("loudness_threshold_dbfs", LOUDNESS_THRESHOLD_DBFS)
    return float((rms_dbfs(samples) >= thr).double().mean())


#: registered metric name → (function, higher_is_better)
METRICS = {
    "audio_spectral_convergence": (spectral_convergence, False),
    "audio_lsd": (log_spectral_distance, False),
    "audio_mcd": (mel_cepstral_distortion, False),
    "audio_class_accuracy": (class_accuracy, True),
    "audio_fd_ours": (fd_ours, False),
    "audio_is_ours": (is_ours, True),
    "audio_kl_ours": (kl_ours, False),
    "audio_pitch_accuracy": (pitch_accuracy, True),
    "audio_prompt_pitch_accuracy": (prompt_pitch_accuracy, True),
    "audio_prompt_timbre_accuracy": (prompt_timbre_accuracy, True),
    "audio_prompt_loudness_accuracy": (prompt_loudness_accuracy, True),
    "audio_prompt_duration_accuracy": (prompt_duration_accuracy, True),
    "audio_prompt_alignment": (prompt_alignment, True),
}
