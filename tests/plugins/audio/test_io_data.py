"""Audio in/out, front end, data sets and bad input (clear errors, counted skips, fuzz)."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polydiff.errors import InputError
from polydiff.plugins.audio import io as aio
from polydiff.plugins.audio import metrics as M
from polydiff.plugins.audio.data import audio_folder, espeak_available, spoken_digits, synthetic_notes
from polydiff.plugins.audio.frontend import FrontendConfig, log_mel

SR = 16000


def tone(f, n, sr=SR):
    return 0.5 * np.sin(2 * np.pi * f * np.arange(n) / sr).astype(np.float32)


def test_write_read_round_trip_16bit(tmp_path):
    w = torch.from_numpy(tone(440.0, 8000))[None].repeat(2, 1)
    paths = aio.write_wav(w, tmp_path, SR)
    assert [p.name for p in paths] == ["sample_0000.wav", "sample_0001.wav"]
    back, sr = aio.read_audio(paths[0])
    assert sr == SR and back.shape == (1, 8000)
    assert float((back[0] - w[0]).abs().max()) <= 1 / 32768 + 1e-6  # 16-bit quantisation


def test_resample_keeps_pitch_and_mono_mixdown():
    stereo = torch.from_numpy(np.stack([tone(440.0, 44100, 44100), tone(440.0, 44100, 44100)]))
    mono = aio.to_mono(stereo)
    assert mono.shape == (44100,)
    w16 = aio.resample(mono, 44100, SR)
    assert w16.shape[0] == SR
    assert abs(M.cents(M.estimate_f0(w16, SR), 440.0)) < 1


def test_crop_pad_and_loudness():
    w = torch.ones(10)
    assert aio.crop_or_pad(w, 4).shape == (4,)
    p = aio.crop_or_pad(w, 15)
    assert p.shape == (15,) and float(p[10:].abs().sum()) == 0
    x = torch.from_numpy(tone(300.0, 16000)) * 0.01
    y = aio.normalize_loudness(x, -20.0)
    assert float(aio.rms_dbfs(y)) == pytest.approx(-20.0, abs=1e-3)
    # a square wave at 0 dBFS target would exceed the peak: scaled down, never clipped
    z = aio.normalize_loudness(x, 0.0, peak=0.9)
    assert float(z.abs().max()) == pytest.approx(0.9, rel=1e-5)
    with pytest.raises(InputError, match="silent"):
        aio.normalize_loudness(torch.zeros(100), file="f.wav", record=3)


def test_frontend_shapes_and_floor():
    cfg = FrontendConfig()
    lm = log_mel(torch.zeros(2, cfg.clip_samples), cfg)
    assert lm.shape == (2, cfg.n_mels, cfg.n_frames) == (2, 64, 64)
    assert torch.allclose(lm, torch.full_like(lm, math.log(cfg.log_floor)))
    # a 1 kHz tone puts its energy in the mel band containing 1 kHz (HTK scale)
    lm = log_mel(torch.from_numpy(tone(1000.0, cfg.clip_samples)), cfg)

    def mel(f):
        return 2595 * math.log10(1 + f / 700)

    edges = np.linspace(mel(0), mel(8000), cfg.n_mels + 2)
    centre = int(np.argmin(np.abs(edges[1:-1] - mel(1000.0))))
    assert abs(int(lm[:, 20:40].mean(1).argmax()) - centre) <= 1


def test_synthetic_notes_are_deterministic_and_labelled():
    a, b = synthetic_notes(2), synthetic_notes(2)
    assert torch.equal(a.waves, b.waves)
    assert len(a) == 32 and len(a.label_names) == 16 and a.label_names[0] == "piano_C4"
    assert a.waves.shape[1] == FrontendConfig().clip_samples
    assert not torch.equal(synthetic_notes(2, seed=1).waves, a.waves)
    names = [a.label_names[int(i)] for i in a.labels]
    assert M.pitch_accuracy(a.waves, names=names, sample_rate=SR) == 1.0


def _write_folder(root):
    for lab, f in (("low", 220.0), ("high", 880.0)):
        for i in range(2):
            (root / lab).mkdir(parents=True, exist_ok=True)
            sf.write(str(root / lab / f"{i}.wav"), tone(f * (1 + 0.01 * i), 22050, 22050), 22050)


def test_audio_folder_labels_from_subfolders(tmp_path):
    _write_folder(tmp_path)
    ds = audio_folder(tmp_path)
    assert ds.label_names == ["high", "low"] and len(ds) == 4 and ds.skipped == []
    assert ds.waves.shape[1] == FrontendConfig().clip_samples
    assert ds.labels.tolist() == [0, 0, 1, 1]


def test_audio_folder_bad_files_raise_or_are_counted(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "low" / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav")
    sf.write(str(tmp_path / "low" / "silent.wav"), np.zeros(8000, np.float32), SR)
    sf.write(str(tmp_path / "high" / "nan.wav"), np.full(8000, np.nan, np.float32), SR, subtype="FLOAT")
    sf.write(str(tmp_path / "high" / "slow.wav"), tone(100.0, 400, 400), 400)
    sf.write(str(tmp_path / "loose.wav"), tone(440.0, 1600), SR)
    with pytest.raises(InputError) as e:
        audio_folder(tmp_path)
    assert e.value.file is not None and e.value.record is not None and e.value.field is not None
    ds = audio_folder(tmp_path, on_error="skip")
    assert len(ds) == 4
    fields = sorted((err.record, err.field) for err in ds.skipped)
    assert fields == [
        ("broken.wav", "format"),
        ("loose.wav", "label"),
        ("nan.wav", "samples"),
        ("silent.wav", "samples"),
        ("slow.wav", "sample_rate"),
    ]


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
def test_spoken_digits_with_espeak():
    ds = spoken_digits(voices=("en",), speeds=(160,), pitches=(50,), digits=("one", "two"))
    assert len(ds) == 2 and ds.label_names == ["one", "two"]
    assert float(aio.rms_dbfs(ds.waves[0])) == pytest.approx(-20, abs=0.5)
    assert not torch.allclose(ds.waves[0], ds.waves[1])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(min_size=0, max_size=400),
    header=st.sampled_from([b"", b"RIFF", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS"]),
)
def test_fuzz_read_audio_only_raises_input_errors(tmp_path, data, header):
    p = tmp_path / "fuzz.wav"
    p.write_bytes(header + data)
    try:
        wave, sr = aio.read_audio(p)
    except InputError as e:
        assert "fuzz.wav" in str(e) and e.record is not None
    else:
        assert wave.ndim == 2 and wave.shape[1] > 0 and sr > 0 and torch.isfinite(wave).all()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=300),
    sr=st.sampled_from([8000, 16000, 22050, 44100]),
)
def test_fuzz_load_clip_on_arbitrary_samples(tmp_path, values, sr):
    p = tmp_path / "lbl" / "x.wav"
    p.parent.mkdir(exist_ok=True)
    sf.write(str(p), np.asarray(values, np.float32), sr, subtype="FLOAT")
    try:
        w = aio.load_clip(p, sample_rate=SR, length=1600)
    except InputError as e:
        assert "x.wav" in str(e) and e.field in ("samples", "sample_rate", "format")
    else:
        assert w.shape == (1600,) and torch.isfinite(w).all()
        assert float(aio.rms_dbfs(w)) <= -19.9  # normalised to -20 dBFS RMS, or lower after the peak limit
