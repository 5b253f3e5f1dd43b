"""The audio modality through the public API: fit, train, sample with CFG, save/load,
vocoder hook, editing, plots. Tiny budgets: these check wiring and exact invariants; the
learning claims are in the slow test and the recipe."""

import json

import pytest
import torch

import polydiff
from polydiff.plugins.audio import write_wav
from polydiff.plugins.audio.clips import AudioClips
from polydiff.plugins.audio.modality import AudioModality
from polydiff.training import TrainConfig, train


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    mod = AudioModality({"vae_steps": 4, "classifier_steps": 4, "progress": False, "vae": {"z_channels": 4, "ch": 16}})
    data = mod.load_dataset("audio_notes", n_per_class=1, timbres=("piano", "organ"), pitches=("C4", "G4"))
    model = polydiff.create(mod, ch=16)
    train(model, data, TrainConfig(steps=3, batch_size=4, cond_dropout=0.2, progress=False))
    return mod, data, model


def test_fit_records_statistics_and_caches_latents(tiny):
    mod, data, model = tiny
    c = mod.config
    assert c["label_names"] == ["piano_C4", "piano_G4", "organ_C4", "organ_G4"]
    assert c["vae_trained"] and c["classifier_trained"]
    json.dumps(c)  # JSON-able
    lat = data.cached("latent")
    assert lat.shape == (4, 4, 16, 16) == (len(data),) + mod.latent_shape()
    # standardised per channel on the data it was fitted on
    assert torch.allclose(lat.mean((0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(lat.std((0, 2, 3)), torch.ones(4), atol=1e-3)
    batch = mod.collate([data[0], data[3]])
    assert batch["cond"]["label"].tolist() == [0, 3]
    # collate without the cache encodes on the fly to the same latents
    fresh = mod.collate([{"wave": data.waves[i], "label": int(data.labels[i])} for i in (0, 3)])
    assert torch.allclose(fresh["x"], batch["x"], atol=1e-5)


def test_sample_with_cfg_returns_clips_and_writes_wavs(tiny, tmp_path):
    mod, data, model = tiny
    clips = model.sample(3, cond={"label": "piano_C4"}, guidance=3.0, seed=0, steps=3)
    assert isinstance(clips, AudioClips) and len(clips) == 3
    assert clips.waveform.shape == (3, mod.frontend.clip_samples) and clips.sample_rate == 16000
    assert clips.names == ["piano_C4"] * 3 and torch.isfinite(clips.waveform).all()
    paths = write_wav(clips, tmp_path)
    assert len(paths) == 3 and all(p.stat().st_size > 1000 for p in paths)
    back = mod.read(tmp_path)
    assert back.names == ["piano_C4"] * 3 and back.labels.tolist() == [0, 0, 0]
    # negative label and per-sample labels
    neg = mod.cond_tensors({"label": "organ_G4"}, 2)
    clips2 = model.sample(2, cond={"label": ["piano_G4", "organ_C4"]}, guidance=2.0, negative=neg, seed=0, steps=3)
    assert clips2.names == ["piano_G4", "organ_C4"]
    with pytest.raises(ValueError, match="unknown audio label"):
        model.sample(1, cond={"label": "tuba_C9"}, steps=2)


def test_same_seed_same_sample_whatever_the_batch(tiny):
    _, _, model = tiny
    a, _ = model.sample_raw(3, cond={"label": "cycle"}, seed=7, steps=4)
    b, _ = model.sample_raw(1, cond={"label": "cycle"}, seed=7, steps=4)
    assert torch.allclose(a[:1], b, atol=1e-5)


def test_save_load_sample_identical(tiny, tmp_path):
    mod, data, model = tiny
    model.save(tmp_path / "ck")
    loaded = polydiff.load(tmp_path / "ck")
    assert loaded.modality.config["label_names"] == mod.config["label_names"]
    a = model.sample(2, cond={"label": "organ_C4"}, guidance=3.0, seed=3, steps=4)
    b = loaded.sample(2, cond={"label": "organ_C4"}, guidance=3.0, seed=3, steps=4)
    assert torch.equal(a.waveform, b.waveform)
    for k, v in mod.vae.state_dict().items():
        assert torch.equal(v, loaded.modality.vae.state_dict()[k])
    for k, v in mod.classifier.state_dict().items():
        assert torch.equal(v, loaded.modality.classifier.state_dict()[k])


class ConstantVocoder:
    """A throwaway vocoder plugin: a 100 Hz sine of the right length."""

    @polydiff.hookimpl
    def polydiff_audio_vocoder(self, log_mel, frontend):
        n = frontend["clip_samples"]
        t = torch.arange(n) / frontend["sample_rate"]
        return torch.sin(2 * torch.pi * 100 * t).repeat(log_mel.shape[0], 1)


def test_vocoder_hook_is_replaceable(tiny):
    mod, _, model = tiny
    pm = polydiff.get_plugins()
    pm.register(ConstantVocoder(), name="test-vocoder")
    try:
        clips = model.sample(2, cond={"label": 0}, seed=0, steps=2)
        t = torch.arange(mod.frontend.clip_samples) / 16000
        assert torch.allclose(clips.waveform[1], torch.sin(2 * torch.pi * 100 * t), atol=1e-6)
    finally:
        pm.unregister("test-vocoder")
    clips = model.sample(1, cond={"label": 0}, seed=0, steps=2)
    assert not torch.allclose(clips.waveform[0], torch.sin(2 * torch.pi * 100 * t), atol=1e-2)


def test_inpainting_pins_the_latent_outside_the_span(tiny):
    from polydiff.editing import known_region
    from polydiff.plugins.audio.editing import span_mask

    mod, data, model = tiny
    clips = AudioClips(data.waves[:2], 16000, labels=data.labels[:2])
    keep = span_mask(model, 2, 0.3, 0.6)
    # 0.064 s per latent column: the span covers columns 4..9
    assert (~keep[0, 0, 0]).nonzero().flatten().tolist() == list(range(4, 10))
    z = mod.encode(data.waves[:2])
    x, _ = model.sample_raw(2, cond={"label": data.labels[:2]}, steps=3, wrap=known_region(z, keep))
    assert torch.equal(x[keep], z[keep])
    assert not torch.allclose(x[~keep], z[~keep])
    out = polydiff.plugins.audio.inpaint(model, clips, 0.3, 0.6, steps=3)
    assert out.waveform.shape == clips.waveform.shape and out.names is not None
    var = polydiff.plugins.audio.variation(model, clips, 0.3, steps=6)
    assert var.waveform.shape == clips.waveform.shape


def test_log_mel_png(tiny, tmp_path):
    from polydiff.plugins.audio.plots import plot_log_mels

    mod, data, _ = tiny
    from polydiff.plugins.audio.frontend import log_mel

    p = plot_log_mels([("real", log_mel(data.waves), None)], tmp_path / "m.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
