"""The mel classifier the audio plugin ships for the quick suite is what its recipe trains now."""

from __future__ import annotations

import torch

from polydiff import metric_nets
from polydiff.plugins.audio import classifier as clf_mod
from polydiff.plugins.audio.bench import QUICK
from polydiff.plugins.audio.modality import AudioModality


def _fit(monkeypatch, tmp_path, mode: str | None):
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path))
    if mode:
        monkeypatch.setenv(metric_nets.ENV_MODE, mode)
    else:
        monkeypatch.delenv(metric_nets.ENV_MODE, raising=False)
    torch.manual_seed(0)
    mod = AudioModality(
        {"vae_steps": QUICK["vae_steps"], "classifier_steps": QUICK["classifier_steps"], "progress": False}
    )
    data = mod.load_dataset(
        "audio_notes", n_per_class=QUICK["n_per_class"], timbres=QUICK["timbres"], pitches=QUICK["pitches"]
    )
    return mod, data, torch.rand(4)


def test_the_quick_classifier_is_shipped_and_retraining_reproduces_it(monkeypatch, tmp_path):
    files = sorted(clf_mod.SHIPPED.glob("*.safetensors"))
    assert files
    for path in files:
        _, recipe, _ = metric_nets.read(path)
        assert path.name == metric_nets.file_name("audio_mel_classifier", recipe)
        assert recipe["version"] == clf_mod.RECIPE_VERSION
    loaded, data, rng_a = _fit(monkeypatch, tmp_path / "a", None)
    assert not (tmp_path / "a").exists()  # found among the shipped files: nothing trained or cached
    retrained, _, rng_b = _fit(monkeypatch, tmp_path / "b", "train")
    assert torch.equal(rng_a, rng_b)  # what runs next does not depend on the path taken
    # the same function, not the same bits (other thread counts or CPUs take another path
    # through the SGD steps): their predictions on the clips agree
    mels = loaded.normalised_mels(data.waves)[..., : loaded.frontend.n_frames]
    with torch.no_grad():
        pa = loaded.classifier(mels).argmax(1)
        pb = retrained.classifier(mels).argmax(1)
    acc_a = float((pa == data.labels).float().mean())
    acc_b = float((pb == data.labels).float().mean())
    assert float((pa == pb).float().mean()) >= 0.9 and abs(acc_a - acc_b) <= 0.1, (acc_a, acc_b)
