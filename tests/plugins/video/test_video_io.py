"""GIF / frame-folder / strip I/O and hostile input."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from polydiff.errors import InputError
from polydiff.plugins.video.data import ClipFolder
from polydiff.plugins.video.io import read_frames, read_gif, to_uint8, write_gif, write_strip_png


def test_gif_roundtrip_is_exact_including_repeated_frames(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 12, 10), dtype=np.uint8)
    frames[2] = frames[1]  # Pillow merges identical consecutive frames; the reader restores them
    frames[3] = frames[1]
    write_gif(frames, tmp_path / "a.gif")
    back = read_gif(tmp_path / "a.gif")
    assert back.shape == frames.shape and np.array_equal(back, frames)


def test_to_uint8_maps_the_unit_interval():
    x = np.array([-1.0, 0.0, 1.0, 2.0, -3.0])
    assert to_uint8(x).tolist() == [0, 128, 255, 255, 0]


def test_frame_folder_and_clip_folder_with_labels(tmp_path):
    rng = np.random.default_rng(1)
    clips = rng.integers(0, 256, (3, 4, 8, 8), dtype=np.uint8)
    write_gif(clips[0], tmp_path / "a.gif")
    write_gif(clips[1], tmp_path / "b.gif")
    seq = tmp_path / "c"
    seq.mkdir()
    for t in range(4):
        Image.fromarray(clips[2, t]).save(seq / f"f{t:02d}.png")
    (tmp_path / "labels.json").write_text(json.dumps({"a.gif": 3, "c": 7}))
    assert np.array_equal(read_frames(seq), clips[2])
    ds = ClipFolder(tmp_path)
    assert len(ds) == 3 and ds.names == ["a.gif", "b.gif", "c"]
    assert np.array_equal(ds.clips.numpy(), clips)
    assert ds.labels.tolist() == [3, -1, 7]
    assert ds[0]["x"].shape == (1, 4, 8, 8)


def test_clip_folder_errors_name_file_record_field_and_skips_are_counted(tmp_path):
    rng = np.random.default_rng(2)
    write_gif(rng.integers(0, 256, (4, 8, 8), dtype=np.uint8), tmp_path / "a.gif")
    write_gif(rng.integers(0, 256, (2, 8, 8), dtype=np.uint8), tmp_path / "b.gif")
    (tmp_path / "c.gif").write_bytes(b"GIF89a not really")
    with pytest.raises(InputError) as e:
        ClipFolder(tmp_path, frames=4)
    assert "b.gif" in str(e.value) and e.value.record == 1 and e.value.field == "frames"
    with pytest.warns(UserWarning, match="skipped 2 of 3"):
        ds = ClipFolder(tmp_path, frames=4, on_error="skip")
    assert len(ds) == 1 and len(ds.skipped) == 2 and "c.gif" in ds.skipped[1]
    (tmp_path / "labels.json").write_text('{"a.gif": "three"}')
    with pytest.raises(InputError, match="label"):
        ClipFolder(tmp_path, frames=4, on_error="skip")


def test_strip_png_layout(tmp_path):
    clips = [np.full((3, 5, 4), v, np.uint8) for v in (10, 200)]
    p = write_strip_png(clips, tmp_path / "s.png", scale=1, gap=1)
    img = np.asarray(Image.open(p))
    assert img.shape == (2 * (5 + 1) + 1, 3 * (4 + 1) + 1)
    assert img[1, 1] == 10 and img[1 + 6, 1 + 5] == 200


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), head=st.sampled_from([b"", b"GIF89a", b"GIF87a", b"\x89PNG\r\n\x1a\n"]))
def test_fuzz_gif_reader_raises_only_input_error(tmp_path_factory, data, head):
    d = tmp_path_factory.mktemp("fuzz")
    p = d / "x.gif"
    p.write_bytes(head + data)
    try:
        out = read_gif(p, record=0)
    except InputError as e:
        assert "x.gif" in str(e) and "record 0" in str(e)
        return
    assert out.ndim == 3 and out.dtype == np.uint8 and len(out) >= 1


@pytest.mark.filterwarnings("ignore:.*skipped")
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60), good=st.booleans())
def test_fuzz_clip_folder_labels_and_bytes(tmp_path_factory, text, good):
    d = tmp_path_factory.mktemp("fuzzdir")
    write_gif(np.zeros((2, 4, 4), np.uint8), d / "ok.gif")
    (d / "bad.gif").write_bytes(text.encode("utf-8", "surrogatepass") if not good else b"")
    if good:
        (d / "bad.gif").unlink()
        (d / "labels.json").write_text(text)
    try:
        ds = ClipFolder(d, on_error="skip") if not good else ClipFolder(d)
    except InputError as e:
        assert e.file is not None
        return
    # nothing silently dropped: every entry is either loaded or reported
    assert len(ds) + len(ds.skipped) == len([p for p in d.iterdir() if p.suffix == ".gif"])


@pytest.mark.filterwarnings("ignore:.*skipped")
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), n_good=st.integers(0, 3), size=st.sampled_from([None, 6]))
def test_fuzz_frame_folders_report_every_bad_clip(tmp_path_factory, data, n_good, size):
    d = tmp_path_factory.mktemp("frames")
    good = d / "good"
    good.mkdir()
    for t in range(n_good):
        Image.fromarray(np.full((5, 5), 40 * t, np.uint8)).save(good / f"{t}.png")
    bad = d / "bad"
    bad.mkdir()
    (bad / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    try:
        ds = ClipFolder(d, size=size, on_error="skip")
    except InputError as e:  # nothing readable at all
        assert n_good == 0 and e.file is not None
        return
    assert ds.names == ["good"] and len(ds.skipped) == 1 and "bad" in ds.skipped[0]
    assert ds.clips.shape == (1, n_good, size or 5, size or 5)
    with pytest.raises(InputError, match="record 0"):
        ClipFolder(d, size=size)


def test_video_folder_dataset_through_the_registry(tmp_path):
    import polydiff

    for i in range(3):
        write_gif(np.full((5, 8, 8), 50 * i, np.uint8), tmp_path / f"c{i}.gif")
    model = polydiff.create("video", modality_config={"conditional": False}, channels=(8, 16), heads=2)
    ds = model.modality.load_dataset("video_folder", root=tmp_path, frames=4)
    assert len(ds) == 3 and model.modality.shape() == (1, 4, 8, 8)
    batch = model.modality.collate([ds[0], ds[1]])
    assert batch["x"].shape == (2, 1, 4, 8, 8) and batch["cond"] is None
