import pytest


@pytest.fixture(scope="session")
def small_evaluator():
    """Metric classifiers for 16×16 px × 4-frame clips of scikit-learn digits (the quick
    benchmark's configuration; trained once per session)."""
    from polydiff.plugins.video.classifier import get_evaluator

    return get_evaluator(16, 4, "sklearn", n_clips=600, frame_steps=600, clip_steps=300, progress=False)
