"""PNG figures written atomically without touching pyplot."""

import pytest

from polydiff import plotting

PNG = b"\x89PNG\r\n\x1a\n"


def test_training_curve_writes_a_png_and_leaves_no_temporary_file(tmp_path):
    out = plotting.training_curve([(0, 1.0), (10, 0.5), (20, 0.25)], tmp_path / "sub" / "curve.png", title="t")
    assert out == tmp_path / "sub" / "curve.png" and out.read_bytes()[:8] == PNG
    assert [p.name for p in out.parent.iterdir()] == ["curve.png"]
    # empty and non-positive losses: still a picture (no log axis for values ≤ 0)
    assert plotting.training_curve([], tmp_path / "empty.png").read_bytes()[:8] == PNG
    assert plotting.training_curve([(0, -1.0), (1, 0.0)], tmp_path / "neg.png").read_bytes()[:8] == PNG


def test_figures_do_not_switch_the_backend_or_register_with_pyplot(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
    fig, axes = plotting.figure(2, 3, figsize=(3, 2), squeeze=False)
    assert axes.shape == (2, 3)
    plotting.save_figure(fig, tmp_path / "f.png")
    assert matplotlib.get_backend() == backend and plt.get_fignums() == open_figures


def test_save_figure_keeps_the_old_file_when_rendering_fails(tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")

    class Broken:
        def savefig(self, *a, **k):
            raise RuntimeError("render failed")

    with pytest.raises(RuntimeError):
        plotting.save_figure(Broken(), target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["keep.png"]
