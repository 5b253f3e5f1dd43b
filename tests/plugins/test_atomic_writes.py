"""Every plugin writer goes through polydiff.checkpoint.atomic_write_bytes (temporary file,
fsync, rename): when the write fails, the old file is intact and no temporary file is
left behind; when it succeeds, only the target exists."""

import os

import numpy as np
import pytest
import torch


def _molecule():
    return (["C", "O", "H", "H"], np.array([[0.0, 0, 0], [1.21, 0, 0], [-0.55, 0.94, 0], [-0.55, -0.94, 0]]))


def _backbone():
    from polydiff.plugins.protein.structures import Backbone

    ca = np.stack([np.arange(4) * 3.8, np.zeros(4), np.zeros(4)], 1)
    coords = np.repeat(ca[:, None], 4, 1) + np.array([[-1.0, 0.5, 0], [0, 0, 0], [1.0, 0.4, 0.3], [1.2, 1.5, 0.3]])
    return Backbone("t_A", "A", coords, np.arange(1, 5), ["GLY"] * 4, [""] * 4)


def _write_sdf(p):
    from polydiff.plugins.molecule.io import write_sdf

    write_sdf([_molecule()], p)


def _write_xyz(p):
    from polydiff.plugins.molecule.io import write_xyz

    write_xyz([_molecule()], p)


def _png_grid(p):
    from polydiff.plugins.molecule.io import png_grid

    png_grid([_molecule()], p, size=80)


def _write_pdb(p):
    from polydiff.plugins.protein.io import write_pdb

    write_pdb(_backbone(), p)


def _write_gif(p):
    from polydiff.plugins.video.io import write_gif

    write_gif(np.zeros((3, 4, 4), np.uint8), p)


def _write_strip(p):
    from polydiff.plugins.video.io import write_strip_png

    write_strip_png([np.zeros((3, 4, 4), np.uint8)], p)


def _save_image(p):
    from polydiff.plugins.image.io import save_image

    save_image(torch.rand(1, 4, 4), p)


def _write_wav(p):
    from polydiff.plugins.audio.io import write_wav

    write_wav(torch.zeros(160), p, 16000)


WRITERS = {
    "molecule.sdf": (_write_sdf, "x.sdf"),
    "molecule.xyz": (_write_xyz, "x.xyz"),
    "molecule.png": (_png_grid, "x.png"),
    "protein.pdb": (_write_pdb, "x.pdb"),
    "video.gif": (_write_gif, "x.gif"),
    "video.strip": (_write_strip, "x.png"),
    "image.png": (_save_image, "x.png"),
    "audio.wav": (_write_wav, "x.wav"),
}


@pytest.mark.parametrize("kind", WRITERS)
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(kind, tmp_path, monkeypatch):
    write, name = WRITERS[kind]
    target = tmp_path / name
    target.write_bytes(b"old")

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        write(target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("kind", WRITERS)
def test_a_write_leaves_only_the_target(kind, tmp_path):
    write, name = WRITERS[kind]
    target = tmp_path / "sub" / name
    write(target)
    assert target.stat().st_size > 0
    assert sorted(p.name for p in target.parent.iterdir()) == [name]
