"""The default vocoder: non-negative mel inversion + Griffin-Lim, reached through the hook."""
import pytest
import torch
import torchaudio

import polydiff
from polydiff.plugins.audio import metrics as M
from polydiff.plugins.audio import vocoder as V
from polydiff.plugins.audio.data import synthetic_notes
from polydiff.plugins.audio.frontend import FrontendConfig, log_mel

CFG = FrontendConfig()


@pytest.fixture(scope="module")
def notes():
    d = synthetic_notes(1, timbres=("piano", "organ"), pitches=("C4", "G4"))
    return d.waves


def test_nnls_inversion_is_nonnegative_and_consistent_with_the_mel(notes):
    lm = log_mel(notes, CFG)
    F = V.mel_filterbank(CFG).double()
    mel = lm.double().exp()
    rel = {}
    for inv in ("nnls", "lstsq"):
        P = V.linear_power_from_mel(lm, CFG, inverse=inv).double()
        assert P.shape == (4, CFG.n_fft // 2 + 1, CFG.n_frames) and bool((P >= 0).all())
        rel[inv] = float((torch.einsum("fm,bft->bmt", F, P) - mel).norm() / mel.norm())
    assert rel["nnls"] < 0.05
    assert rel["nnls"] < rel["lstsq"]


def test_griffin_lim_from_the_true_linear_spectrum_is_close(notes):
    power = torchaudio.transforms.Spectrogram(n_fft=CFG.n_fft, hop_length=CFG.hop_length, power=2)(notes)
    w = V.griffin_lim(power, CFG)
    assert w.shape == notes.shape
    assert M.spectral_convergence(w, reference=notes) < 0.15


def test_nnls_vocoder_beats_torchaudio_inverse_mel_scale(notes):
    lm = log_mel(notes, CFG)
    nn_ = V.griffin_lim_vocoder(lm, CFG.to_dict(), inverse="nnls")
    ls = V.griffin_lim_vocoder(lm, CFG.to_dict(), inverse="lstsq")
    assert M.spectral_convergence(nn_, reference=notes) < M.spectral_convergence(ls, reference=notes)
    assert M.log_spectral_distance(nn_, reference=notes) < M.log_spectral_distance(ls, reference=notes)


def test_vocode_goes_through_the_hook_and_is_deterministic(notes):
    lm = log_mel(notes[:1], CFG)
    pm = polydiff.get_plugins().pm
    assert pm.hook.polydiff_audio_vocoder.spec.opts["firstresult"]
    a = V.vocode(lm, CFG)
    b = V.griffin_lim_vocoder(lm, CFG.to_dict())
    assert torch.equal(a, b)
