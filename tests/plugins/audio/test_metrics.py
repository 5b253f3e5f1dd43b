"""Audio metrics on signals with known answers (identical → 0, scaled, shifted, closed forms)."""

import math

import numpy as np
import pytest
import scipy.fft
import torch

from polydiff.plugins.audio import metrics as M
from polydiff.plugins.audio.data import note_hz, synth_note

SR = 16000


def white(n=2, length=16128, seed=0, scale=0.1):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, length, generator=g)


def tone(f, length=16128, phase=0.0):
    t = torch.arange(length, dtype=torch.float64) / SR
    return torch.sin(2 * math.pi * f * t + phase).float()


@pytest.mark.parametrize("metric", [M.spectral_convergence, M.log_spectral_distance, M.mel_cepstral_distortion])
def test_identical_signals_score_zero(metric):
    w = white()
    assert metric(w, reference=w.clone()) == pytest.approx(0.0, abs=1e-9)


def test_spectral_convergence_of_scaled_signal_is_gain_error():
    w = white()
    for a in (0.5, 2.0):
        assert M.spectral_convergence(a * w, reference=w) == pytest.approx(abs(1 - a), rel=1e-6)


def test_lsd_of_scaled_signal_is_gain_in_db():
    # white noise at 0.1 keeps every STFT power bin far above eps = 1e-5
    w = white()
    assert M.log_spectral_distance(2 * w, reference=w) == pytest.approx(20 * math.log10(2), abs=2e-3)


def test_lsd_eps_bounds_silent_frames():
    p_ref = torch.ones(1, 513, 4)
    silent = torch.zeros(1, 513, 4)
    assert float(M.lsd_from_power(p_ref, silent)) == pytest.approx(10 * math.log10((1 + 1e-5) / 1e-5), rel=1e-9)
    assert float(M.lsd_from_power(silent, silent.clone())) == 0.0
    # with a different eps the figure changes (which is why eps is fixed)
    assert float(M.lsd_from_power(p_ref, silent, eps=1e-3)) == pytest.approx(10 * math.log10((1 + 1e-3) / 1e-3))


def test_dct_ortho_matches_scipy():
    x = torch.randn(3, 64, 7, dtype=torch.float64)
    ref = scipy.fft.dct(x.numpy(), type=2, norm="ortho", axis=1)
    np.testing.assert_allclose(M.dct_ortho(x, 1).numpy(), ref, atol=1e-10)


def test_mcd_ignores_gain_because_c0_is_dropped():
    w = white()
    assert M.mel_cepstral_distortion(3.0 * w, reference=w) == pytest.approx(0.0, abs=1e-4)


def test_mcd_closed_form_for_one_cepstral_component():
    n_mels, T, k, a = 64, 10, 5, 0.3
    lm = torch.randn(2, n_mels, T, dtype=torch.float64)
    basis = torch.cos(math.pi * k * (2 * torch.arange(n_mels, dtype=torch.float64) + 1) / (2 * n_mels))
    shifted = lm + a * basis[None, :, None]
    # orthonormal DCT: c_k changes by a·sqrt(N/2); MCD = (10/ln10)·sqrt(2·(a·sqrt(N/2))²) = (10/ln10)·a·sqrt(N)
    expected = 10 / math.log(10) * a * math.sqrt(n_mels)
    np.testing.assert_allclose(M.mcd_from_log_mel(lm, shifted).numpy(), expected, rtol=1e-9)


def test_polarity_flip_leaves_magnitude_metrics_at_zero():
    w = white()
    assert float((w - (-w)).abs().mean()) > 0.1
    for metric in (M.spectral_convergence, M.log_spectral_distance, M.mel_cepstral_distortion):
        assert metric(-w, reference=w) == pytest.approx(0.0, abs=1e-9)


def test_time_shift_of_stationary_tone_leaves_interior_spectra_unchanged():
    # a quarter-period shift changes every sample but not the magnitude spectrum of the
    # interior frames (the 2 frames at each end see the reflect padding of center=True)
    a, b = tone(500.0)[None], tone(500.0, phase=math.pi / 2)[None]
    assert float((a - b).abs().mean()) > 0.5
    pa, pb = M.stft_power(a)[..., 3:-3], M.stft_power(b)[..., 3:-3]
    assert float(M.sc_from_magnitudes(pa.sqrt(), pb.sqrt())) < 1e-3
    assert float(M.lsd_from_power(pa, pb)) < 0.05
    # while a tone an octave up is far away
    assert M.mel_cepstral_distortion(tone(1000.0)[None], reference=a) > 5


def test_metrics_refuse_unpaired_shapes():
    with pytest.raises(ValueError):
        M.spectral_convergence(white(2), reference=white(3))
    with pytest.raises(ValueError):
        M.log_spectral_distance(white(2))


def test_inception_score_closed_forms():
    K = 5
    assert M.inception_score_from_probs(torch.eye(K)) == pytest.approx(K, rel=1e-9)
    assert M.inception_score_from_probs(torch.full((7, K), 1.0 / K)) == pytest.approx(1.0, rel=1e-9)


class FixedScorer:
    """A stand-in classifier: sample i gets the probability row ``probs[i]``."""

    def __init__(self, probs, embs=None):
        self.probs = probs
        self.embs = embs if embs is not None else probs

    def score(self, waves):
        n = waves.shape[0]
        return self.probs[:n], self.embs[:n]


def test_class_accuracy_and_kl_bookkeeping():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    sc = FixedScorer(probs)
    w = white(4, 2000)
    assert M.class_accuracy(w, labels=[0, 1, 1, 1], scorer=sc) == pytest.approx(0.75)

    class Clips:  # reference clips with labels
        waveform = w
        labels = torch.tensor([0, 1, 0, 1])

    # samples identical to the references, each class's reference posteriors constant → KL 0
    sc2 = FixedScorer(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.9, 0.1], [0.2, 0.8]]))
    assert M.kl_ours(w, reference=Clips, labels=[0, 1, 0, 1], scorer=sc2) == pytest.approx(0.0, abs=1e-12)
    # a sample of label 0 whose posterior is class 1's row: KL(p̄_0 ‖ p) in closed form
    x = white(1, 2000, seed=5)

    class Keyed:  # reference rows → their posteriors, the new sample → [0.2, 0.8]
        def score(self, waves):
            if waves.shape[0] == 1:
                return torch.tensor([[0.2, 0.8]]), torch.zeros(1, 2)
            return sc2.score(waves)

    kl = 0.9 * math.log(0.9 / 0.2) + 0.1 * math.log(0.1 / 0.8)
    assert M.kl_ours(x, reference=Clips, labels=[0], scorer=Keyed()) == pytest.approx(kl, rel=1e-6)


def test_classifier_metrics_need_a_scorer():
    with pytest.raises(ValueError, match="scorer"):
        M.class_accuracy(white(2, 2000), labels=[0, 1])


@pytest.mark.parametrize("f", [110.0, 261.63, 440.0, 1046.5])
def test_f0_of_pure_tone(f):
    assert abs(M.cents(M.estimate_f0(tone(f), SR), f)) < 2.0


@pytest.mark.parametrize("timbre", ["piano", "organ", "flute", "clarinet"])
def test_f0_of_synthetic_notes_within_detune(timbre):
    for j, pitch in enumerate(["C4", "G4", "C5"]):
        w = torch.from_numpy(synth_note(timbre, note_hz(pitch), SR, 16128, np.random.default_rng(j)))
        assert abs(M.cents(M.estimate_f0(w, SR), note_hz(pitch))) < 15  # synth detune ≤ 8 cents


def test_pitch_accuracy_counts_right_and_wrong_pitches():
    waves = torch.stack([tone(note_hz("C4")), tone(note_hz("E4")), tone(note_hz("C4"))])
    names = ["piano_C4", "piano_E4", "organ_G4"]
    assert M.pitch_accuracy(waves, names=names, sample_rate=SR) == pytest.approx(2 / 3)
    assert M.estimate_f0(torch.zeros(16128), SR) != M.estimate_f0(torch.zeros(16128), SR)  # NaN for silence


def test_note_names():
    assert note_hz("A4") == pytest.approx(440.0)
    assert note_hz("C4") == pytest.approx(261.6256, rel=1e-6)
    with pytest.raises(ValueError):
        note_hz("H4")
