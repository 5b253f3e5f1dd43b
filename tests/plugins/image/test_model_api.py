"""The image modality through the public API: train, sample, save/load, files, editing."""

import pytest
import torch

import polydiff
from polydiff.editing import sdedit_sigmas
from polydiff.errors import InputError
from polydiff.plugins.image.edit import inpaint, sdedit
from polydiff.plugins.image.io import ImageSample, ddim_interpolation, read_samples, write_samples
from polydiff.training import TrainConfig, train

SMALL = dict(base_channels=16, channel_mult=(1, 2), attn_resolutions=(4,))


@pytest.fixture(scope="module")
def digits_model():
    model = polydiff.create("image", modality_config={"dataset": "sklearn_digits"}, **SMALL)
    data = model.modality.load_dataset()
    train(model, data, TrainConfig(steps=15, batch_size=16, cond_dropout=0.2, progress=False))
    return model, data


def test_registered_components():
    names = {(c["kind"], c["name"]) for c in polydiff.plugins_table()}
    for kind, name in [
        ("modality", "image"),
        ("network", "image_unet"),
        ("network", "image_dit"),
        ("dataset", "mnist5k"),
        ("dataset", "sklearn_digits"),
        ("dataset", "image_folder"),
        ("dataset", "image_npz"),
        ("metric", "image_fd_ours"),
        ("metric", "image_kid_ours"),
        ("metric", "image_class_accuracy"),
        ("benchmark", "image/digits8"),
    ]:
        assert (kind, name) in names
    assert polydiff.registry("metric").entry("image_fd_ours").info["higher_is_better"] is False


def test_shape_mismatch_is_explained():
    model = polydiff.create("image", **SMALL | {"channel_mult": (1, 2, 2), "attn_resolutions": (7,)})
    with pytest.raises(ValueError, match="image_size"):
        model.modality.load_dataset("sklearn_digits")


def test_sampling_request_labels():
    mod = polydiff.registry("modality").get("image")({"dataset": "sklearn_digits"})
    shape, c = mod.sampling_request(4, {"label": "7"}, None)
    assert shape == (1, 8, 8) and c["label"].tolist() == [7] * 4 and c["cond_mask"].tolist() == [1] * 4
    _, c = mod.sampling_request(12, {"label": "balanced"}, None)
    assert c["label"].tolist() == [i % 10 for i in range(12)]
    _, c = mod.sampling_request(3, None, None)
    assert c["cond_mask"].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="unknown class"):
        mod.sampling_request(2, {"label": "cat"}, None)


def test_save_load_sample_identical(digits_model, tmp_path):
    model, _ = digits_model
    kw = dict(sampler="dpmpp_2m", steps=6, seed=11, cond={"label": [1, 2, 3]}, guidance=2.0)
    a = model.sample(3, **kw)
    model.save(tmp_path / "ck")
    b = polydiff.load(tmp_path / "ck").sample(3, **kw)
    assert all(torch.equal(p.pixels, q.pixels) and p.label == q.label for p, q in zip(a, b))
    assert [s.label for s in a] == [1, 2, 3]
    # sample i does not depend on the batch it is drawn in
    c = model.sample(1, sampler="dpmpp_2m", steps=6, seed=11, cond={"label": [1]}, guidance=2.0)
    assert torch.allclose(c[0].pixels, a[0].pixels, atol=1e-5)


def test_cfg_with_negative_class_changes_the_result(digits_model):
    model, _ = digits_model
    base = dict(steps=5, seed=0, cond={"label": 3}, guidance=3.0)
    a = model.sample(2, **base)
    b = model.sample(2, **base, negative=model.modality.negative(8, 2))
    assert not all(torch.equal(p.pixels, q.pixels) for p, q in zip(a, b))


def test_write_read_roundtrip(digits_model, tmp_path):
    model, _ = digits_model
    samples = model.sample(4, steps=4, seed=1, cond={"label": [0, 5, 9, 2]})
    paths = model.modality.write(samples, tmp_path / "out")
    assert (tmp_path / "out" / "grid.png").exists() and len(paths) == 5
    back = model.modality.read(tmp_path / "out")
    assert [s.label for s in back] == [0, 5, 9, 2]
    for s, r in zip(samples, back):
        assert (s.pixels - r.pixels).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit quantisation
    unl = write_samples([ImageSample(torch.rand(3, 5, 5))], tmp_path / "rgb")
    assert read_samples(unl[0])[0].pixels.shape == (3, 5, 5)
    with pytest.raises(InputError):
        read_samples(tmp_path / "nothing_here")


def test_inpainting_keeps_known_pixels_exactly(digits_model):
    model, data = digits_model
    images = data.images[:4]
    keep = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    keep[..., :, :4] = True  # keep the left half, fill the right half
    out = inpaint(model, images, keep, label=[int(l) for l in data.labels[:4]], steps=8, seed=0)
    k = keep.expand_as(images)
    assert torch.equal(out[k], images[k])
    assert not torch.allclose(out[~k], images[~k])
    # outpainting: keep the centre
    centre = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    centre[..., 2:6, 2:6] = True
    out = inpaint(model, images, centre, steps=8, seed=1)
    assert torch.equal(out[centre.expand_as(images)], images[centre.expand_as(images)])


def test_sdedit_strength_zero_returns_input_and_strength_grows_the_change(digits_model):
    model, data = digits_model
    images = data.images[:3]
    assert sdedit_sigmas(model.sigma_grid(20), 0.0).tolist() == [0.0]
    assert torch.equal(sdedit(model, images, 0.0, steps=20), images)
    small = sdedit(model, images, 0.3, steps=20, seed=0)
    large = sdedit(model, images, 1.0, steps=20, seed=0)
    assert (small - images).abs().mean() < (large - images).abs().mean()
    with pytest.raises(ValueError):
        sdedit(model, images, 1.5)


def test_ddim_interpolation_endpoints_equal_direct_sampling(digits_model):
    model, _ = digits_model
    strip = ddim_interpolation(model, 4, seed_a=5, seed_b=6, cond={"label": 3}, steps=6)
    grid = model.sigma_grid(6)
    a = model.sample(1, sampler="ddim", sigmas=grid, seed=5, cond={"label": 3})
    b = model.sample(1, sampler="ddim", sigmas=grid, seed=6, cond={"label": 3})
    assert torch.allclose(strip[0].pixels, a[0].pixels, atol=1e-5)
    assert torch.allclose(strip[-1].pixels, b[0].pixels, atol=1e-5)
    assert not torch.allclose(strip[1].pixels, strip[0].pixels, atol=1e-3)


def test_dit_trains_and_round_trips(tmp_path):
    model = polydiff.create(
        "image",
        network="image_dit",
        modality_config={"dataset": "sklearn_digits"},
        patch_size=2,
        hidden_size=32,
        depth=2,
        heads=4,
    )
    data = model.modality.load_dataset(limit=200)
    res = train(model, data, TrainConfig(steps=5, batch_size=16, progress=False, cond_dropout=0.1))
    assert res.steps == 5
    model.save(tmp_path / "dit")
    a = model.sample(2, steps=4, seed=2, cond={"label": 4}, guidance=2.0)
    b = polydiff.load(tmp_path / "dit").sample(2, steps=4, seed=2, cond={"label": 4}, guidance=2.0)
    assert all(torch.equal(p.pixels, q.pixels) for p, q in zip(a, b))


def test_latent_diffusion_saves_the_vae(tmp_path):
    mcfg = {
        "dataset": "sklearn_digits",
        "latent": {"latent_channels": 2, "downsample": 1, "channels": 8, "vae_steps": 30},
    }
    model = polydiff.create("image", modality_config=mcfg, base_channels=16, channel_mult=(1,), attn_resolutions=(4,))
    data = model.modality.load_dataset(limit=300)
    lat = model.modality.config["latent"]
    assert lat["scale"] > 0 and "vae" in model.modality.modules()
    batch = model.modality.collate([data[i] for i in range(8)])
    assert batch["x"].shape == (8, 2, 4, 4)
    assert abs(float(batch["x"].std()) - 1) < 0.5  # scaled to about unit variance
    train(model, data, TrainConfig(steps=3, batch_size=8, progress=False))
    model.save(tmp_path / "lat")
    a = model.sample(2, steps=3, seed=0, cond={"label": 1})
    loaded = polydiff.load(tmp_path / "lat")
    assert loaded.modality.config["latent"]["scale"] == lat["scale"]
    b = loaded.sample(2, steps=3, seed=0, cond={"label": 1})
    assert a[0].pixels.shape == (1, 8, 8)
    assert all(torch.equal(p.pixels, q.pixels) for p, q in zip(a, b))


def test_superres_stage_plumbing():
    from polydiff.plugins.image.superres import bicubic_psnr, psnr, super_resolve

    model = polydiff.create(
        "image", modality_config={"dataset": "sklearn_digits", "superres": {"low_size": 4}}, **SMALL
    )
    data = model.modality.load_dataset(limit=64)
    batch = model.modality.collate([data[i] for i in range(4)])
    assert batch["cond"]["lowres"].shape == (4, 1, 8, 8)
    train(model, data, TrainConfig(steps=2, batch_size=8, progress=False))
    low = torch.nn.functional.interpolate(data.images[:3], size=(4, 4), mode="area")
    out = super_resolve(model, low, steps=3)
    assert out.shape == (3, 1, 8, 8)
    assert torch.isfinite(psnr(out, data.images[:3])).all()
    assert torch.allclose(
        psnr(data.images[:2], data.images[:2]), torch.full((2,), 10 * torch.log10(torch.tensor(4e12)))
    )
    assert bicubic_psnr(data.images[:3], 4).shape == (3,)
