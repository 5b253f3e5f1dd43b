"""The digit classifiers the image plugin ships are what their recipes train now."""

from __future__ import annotations

from polydiff import metric_nets
from polydiff.plugins.image import classifier as clf_mod
from polydiff.plugins.image.data import LOADERS


def test_every_shipped_classifier_is_named_by_its_recipe_and_fits_the_network():
    files = sorted(clf_mod.SHIPPED.glob("*.safetensors"))
    assert len(files) >= 3
    for path in files:
        state, recipe, _ = metric_nets.read(path)
        assert path.name == metric_nets.file_name("image_digit_classifier", recipe), path
        assert recipe["version"] == clf_mod.RECIPE_VERSION, f"{path.name}: retrain it (the recipe changed)"
        net = clf_mod.DigitClassifier(recipe["shape"][1], recipe["num_classes"])
        net.load_state_dict(state, strict=True)


def test_the_quick_digits_classifier_is_shipped_and_retraining_reproduces_it(monkeypatch, tmp_path):
    data = LOADERS["sklearn_digits"]()
    recipe = clf_mod.classifier_recipe(data.images, data.labels, steps=200)
    shipped = clf_mod.SHIPPED / metric_nets.file_name("image_digit_classifier", recipe)
    assert shipped.is_file(), "the quick suite's digits classifier is not shipped"
    monkeypatch.setattr(clf_mod, "_CACHE", {})
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path))
    loaded = clf_mod.classifier_for(data.images, data.labels, steps=200)
    monkeypatch.setattr(clf_mod, "_CACHE", {})
    monkeypatch.setenv(metric_nets.ENV_MODE, "train")
    retrained = clf_mod.classifier_for(data.images, data.labels, steps=200)
    assert loaded is not retrained and not any(tmp_path.iterdir())  # nothing cached: loaded / retrained
    a, b = loaded.predict(data.images), retrained.predict(data.images)
    agree = float((a == b).float().mean())
    acc = float((a == data.labels).float().mean())
    print(f"agreement {agree:.4f}, accuracy {acc:.4f}")
    acc_b = float((b == data.labels).float().mean())
    # the same function, not the same bits: retraining with other thread counts or CPUs
    # takes another path through 200 SGD steps
    assert agree > 0.97 and acc > 0.9 and abs(acc - acc_b) < 0.02
