"""U-Net and DiT denoisers: shapes, conditioning conventions, bf16, CUDA."""

import math
import sys
from pathlib import Path

import pytest
import torch

from polydiff.plugins.image.dit import DiT, sincos_2d
from polydiff.plugins.image.unet import UNet, sinusoidal_embedding

sys.path.insert(0, str(Path(__file__).parent))
from net_helpers import randomise as _randomise  # noqa: E402


def _nets(**kw):
    return {
        "unet": UNet(1, 8, base_channels=16, channel_mult=(1, 2), attn_resolutions=(4,), **kw),
        "dit": DiT(1, 8, patch_size=2, hidden_size=32, depth=2, heads=4, **kw),
    }


def _cond(labels, mask=None):
    labels = torch.as_tensor(labels)
    return {"label": labels, "cond_mask": torch.ones(len(labels)) if mask is None else torch.as_tensor(mask).float()}


def test_sinusoidal_embedding_closed_form():
    t = torch.tensor([-1.3, 0.0, 0.7])
    e = sinusoidal_embedding(t, 16)
    half = 8
    for i in range(half):
        f = math.exp(-math.log(10000) * i / half)
        assert torch.allclose(e[:, i], torch.cos(1000 * t * f), atol=1e-4)
        assert torch.allclose(e[:, half + i], torch.sin(1000 * t * f), atol=1e-4)


def test_sincos_2d_positions_are_distinct_and_bounded():
    p = sincos_2d(32, 4)
    assert p.shape == (16, 32)
    assert p.abs().max() <= 1
    assert torch.cdist(p, p).add(torch.eye(16) * 10).min() > 0.1


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_output_shape_and_zero_init(name):
    net = _nets(num_classes=10)[name]
    x = torch.randn(3, 1, 8, 8)
    out = net(x, torch.randn(3), _cond([1, 2, 3]))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer: D starts as c_skip·x


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_class_embedding_and_null(name):
    torch.manual_seed(0)
    net = _randomise(_nets(num_classes=10)[name]).eval()
    x, t = torch.randn(2, 1, 8, 8).repeat(2, 1, 1, 1), torch.zeros(4)
    with torch.no_grad():
        out = net(x, t, _cond([3, 3, 7, 7]))
        assert not torch.allclose(out[0], out[2], atol=1e-5)  # the label matters
        null = net(x, t, _cond([3, 3, 7, 7], [0, 0, 0, 0]))
        # cond_mask = 0 → learned null: the label is ignored
        assert torch.allclose(null[0], null[2], atol=1e-5)
        assert not torch.allclose(null[0], out[0], atol=1e-5)
        # cond None equals the null embedding
        assert torch.allclose(net(x, t, None), null, atol=1e-5)


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_lowres_channels_are_used_and_masked(name):
    net = _randomise(_nets(cond_channels=1)[name]).eval()
    x, t = torch.randn(2, 1, 8, 8), torch.zeros(2)
    low = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        a = net(x, t, {"lowres": low, "cond_mask": torch.ones(2)})
        b = net(x, t, {"lowres": -low, "cond_mask": torch.ones(2)})
        assert not torch.allclose(a, b, atol=1e-5)
        c = net(x, t, {"lowres": low, "cond_mask": torch.zeros(2)})
        d = net(x, t, {"lowres": -low, "cond_mask": torch.zeros(2)})
        assert torch.allclose(c, d)
    with pytest.raises(ValueError, match="lowres"):
        net(x, t, None)


def test_unet_rejects_odd_resolution():
    with pytest.raises(ValueError, match="halved"):
        UNet(1, 14, channel_mult=(1, 2, 2))


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_bf16_cpu_autocast_matches_fp32(name):
    net = _randomise(_nets(num_classes=10)[name]).eval()
    x, t, c = torch.randn(4, 1, 8, 8), torch.randn(4) * 0.5, _cond([0, 1, 2, 3])
    with torch.no_grad():
        ref = net(x, t, c)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x, t, c)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.05, rel  # bf16 has an 8-bit mantissa: ~1e-2 relative error
    # a training step under autocast produces finite gradients for every parameter
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = net(x, t, c).float().pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_pure_bf16_weights(name):
    net = _randomise(_nets(num_classes=10)[name]).eval()
    x, t, c = torch.randn(2, 1, 8, 8), torch.randn(2), _cond([4, 5])
    with torch.no_grad():
        ref = net(x, t, c)
        out = net.to(torch.bfloat16)(x.bfloat16(), t, c)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).norm() / ref.norm() < 0.1


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["unet", "dit"])
def test_cuda_matches_cpu_and_runs_bf16(name):
    net = _randomise(_nets(num_classes=10)[name]).eval()
    x, t, c = torch.randn(4, 1, 8, 8), torch.randn(4), _cond([0, 1, 2, 3])
    with torch.no_grad():
        ref = net(x, t, c)
        gnet = net.cuda()
        gc = {k: v.cuda() for k, v in c.items()}
        out = gnet(x.cuda(), t.cuda(), gc)
        assert torch.allclose(out.cpu(), ref, atol=1e-4, rtol=1e-3)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = gnet(x.cuda(), t.cuda(), gc)
    assert torch.isfinite(low).all()
    assert (low.float().cpu() - ref).norm() / ref.norm() < 0.05
    with torch.autocast("cuda", dtype=torch.bfloat16):
        gnet.train()(x.cuda(), t.cuda(), gc).float().pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in gnet.parameters() if p.grad is not None)


@pytest.mark.gpu
def test_cuda_training_and_sampling_through_the_api():
    import polydiff
    from polydiff.training import TrainConfig, train

    model = polydiff.create(
        "image",
        modality_config={"dataset": "sklearn_digits"},
        base_channels=16,
        channel_mult=(1, 2),
        attn_resolutions=(4,),
    )
    data = model.modality.load_dataset()
    train(model, data, TrainConfig(steps=20, batch_size=32, device="cuda", progress=False, cond_dropout=0.1))
    assert model.device.type == "cuda"
    a = model.sample(4, steps=8, seed=3, cond={"label": 2}, guidance=2.0)
    b = model.sample(4, steps=8, seed=3, cond={"label": 2}, guidance=2.0)
    assert all(torch.equal(p.pixels, q.pixels) for p, q in zip(a, b))
