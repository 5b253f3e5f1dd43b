"""The video evaluator the plugin ships is what its recipe trains now."""

from __future__ import annotations

from polydiff import metric_nets
from polydiff.plugins.video import classifier as clf_mod
from polydiff.plugins.video.bench import CONFIGS
from polydiff.plugins.video.data import MovingDigits


def test_the_quick_suite_evaluator_is_shipped_and_retraining_reproduces_it(monkeypatch, tmp_path):
    cfg = CONFIGS["quick"]
    files = sorted(clf_mod.SHIPPED.glob("*.safetensors"))
    for path in files:
        _, recipe, info = metric_nets.read(path)
        assert path.name == metric_nets.file_name("video_evaluator", recipe)
        assert recipe["version"] == clf_mod.RECIPE_VERSION and info["frame_accuracy"] > 0.8
    monkeypatch.setattr(clf_mod, "_CACHE", {})
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path))
    args = (cfg["canvas"], cfg["frames"], cfg["source"])
    loaded = clf_mod.get_evaluator(*args, progress=False, **cfg["eval_train"])
    assert any(f.name.startswith("video_evaluator-") for f in files) and not any(tmp_path.iterdir())
    monkeypatch.setattr(clf_mod, "_CACHE", {})
    monkeypatch.setenv(metric_nets.ENV_MODE, "train")
    retrained = clf_mod.get_evaluator(*args, progress=False, **cfg["eval_train"])
    assert abs(loaded.report["frame_accuracy"] - retrained.report["frame_accuracy"]) < 0.03
    clips = MovingDigits(40, cfg["canvas"], cfg["frames"], source=cfg["source"], split="test", seed=5).clips
    x = clips.float().div(127.5).sub(1).unsqueeze(1)
    agree = (loaded.frame_logits(x).argmax(-1) == retrained.frame_logits(x).argmax(-1)).float().mean()
    assert float(agree) > 0.95
