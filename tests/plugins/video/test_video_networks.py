"""Space-time U-Net and DiT: shapes, factorisation, CFG switch, bf16, CUDA."""

import pytest
import torch

from polydiff.plugins.video.dit import SpaceTimeDiT
from polydiff.plugins.video.networks import SpaceTimeUNet


def _randomise(net, seed=0):
    """Zero-initialised output layers make a fresh net constant; give every weight a value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim > 1 else 0.1))
    return net


def _cond(labels, mask=None):
    labels = torch.as_tensor(labels)
    return {"label": labels, "cond_mask": torch.ones(len(labels)) if mask is None else torch.as_tensor(mask).float()}


NETS = {
    "unet": lambda **kw: SpaceTimeUNet(1, (8, 16), heads=2, **kw),
    "unet_s2d": lambda **kw: SpaceTimeUNet(1, (8, 16), heads=2, space_to_depth=2, **kw),
    "dit": lambda **kw: SpaceTimeDiT(1, patch=4, dim=24, depth=2, heads=2, **kw),
}


@pytest.mark.parametrize("kind", NETS)
@pytest.mark.parametrize("T", [3, 4])
def test_shapes_and_any_clip_length(kind, T):
    net = _randomise(NETS[kind](n_classes=10)).eval()
    x = torch.randn(2, 1, T, 16, 16)
    out = net(x, torch.tensor([0.1, -0.3]), _cond([1, 2]))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", NETS)
def test_cond_mask_zero_ignores_the_label(kind):
    net = _randomise(NETS[kind](n_classes=10)).eval()
    x, t = torch.randn(2, 1, 4, 16, 16), torch.zeros(2)
    a = net(x, t, _cond([1, 7], [0, 0]))
    b = net(x, t, _cond([3, 2], [0, 0]))
    c = net(x, t, _cond([3, 2], [1, 1]))
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3


def test_without_temporal_attention_frames_are_processed_independently():
    # 1×3×3 convolutions only: output frame t depends on input frame t alone, and the
    # network commutes with any permutation of the frames.
    net = _randomise(SpaceTimeUNet(1, (8, 16), heads=2, temporal_attention=False)).eval()
    net.mid.ta = torch.nn.ModuleList([torch.nn.Identity()])
    x, t = torch.randn(1, 1, 5, 16, 16), torch.zeros(1)
    perm = torch.randperm(5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net(x, t)[:, :, perm], net(x[:, :, perm], t), atol=1e-5, rtol=1e-5)


def test_temporal_attention_connects_frames():
    net = _randomise(SpaceTimeUNet(1, (8, 16), heads=2)).eval()
    x, t = torch.randn(1, 1, 5, 16, 16), torch.zeros(1)
    y = x.clone()
    y[:, :, 0] += 1.0
    d = (net(x, t) - net(y, t)).abs().amax(dim=(0, 1, 3, 4))
    assert (d[1:] > 1e-4).all()  # changing frame 0 changes every other frame's output


def test_context_channels_are_used_only_where_the_mask_is_set():
    net = _randomise(SpaceTimeUNet(1, (8, 16), heads=2, context_frames=True)).eval()
    x, t = torch.randn(1, 1, 4, 16, 16), torch.zeros(1)
    ctx = torch.randn(1, 1, 4, 16, 16)
    m0 = torch.zeros(1, 4)
    a = net(x, t, {"context": ctx, "context_mask": m0})
    b = net(x, t, {"context": ctx * 5, "context_mask": m0})
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, net(x, t, None))
    m = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert (net(x, t, {"context": ctx, "context_mask": m}) - a).abs().max() > 1e-3


@pytest.mark.parametrize("kind", NETS)
def test_bf16_matches_float32(kind):
    net = _randomise(NETS[kind](n_classes=10)).eval()
    x, t, c = torch.randn(2, 1, 4, 16, 16), torch.tensor([0.2, -0.5]), _cond([4, 5])
    ref = net(x, t, c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = net(x, t, c)
    half = net.to(torch.bfloat16)(x.bfloat16(), t, c)
    for out in (amp, half):
        assert out.dtype == torch.bfloat16
        rel = (out.float() - ref).norm() / ref.norm()
        assert rel < 0.05, rel


@pytest.mark.gpu
@pytest.mark.parametrize("kind", NETS)
def test_cuda_matches_cpu_and_runs_bf16(kind):
    net = _randomise(NETS[kind](n_classes=10)).eval()
    x, t, c = torch.randn(2, 1, 4, 16, 16), torch.tensor([0.2, -0.5]), _cond([4, 5])
    ref = net(x, t, c)
    dev = torch.device("cuda")
    gnet = net.to(dev)
    gc = {k: v.to(dev) for k, v in c.items()}
    out = gnet(x.to(dev), t.to(dev), gc)
    torch.testing.assert_close(out.cpu(), ref, atol=1e-3, rtol=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        amp = gnet(x.to(dev), t.to(dev), gc)
    assert ((amp.float().cpu() - ref).norm() / ref.norm()) < 0.05
    # a training step in bf16 autocast produces finite gradients
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = gnet(x.to(dev), t.to(dev), gc).float().square().mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in gnet.parameters() if p.grad is not None)
