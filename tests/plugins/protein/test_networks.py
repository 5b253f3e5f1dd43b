"""Both denoisers are SE(3)-equivariant (rotations + translations), ignore padding, and are
not mirror-symmetric (they can tell helix handedness)."""

import copy

import pytest
import torch
from e3nn import o3

from polydiff.plugins.protein.frame_net import FrameDenoiser
from polydiff.plugins.protein.networks import E3Denoiser, EGNNDenoiser

NETS = {
    "egnn": (EGNNDenoiser, {"hidden": 24, "layers": 2, "k_nn": 6}),
    "egnn_chiral": (EGNNDenoiser, {"hidden": 24, "layers": 2, "k_nn": 6, "chiral": True}),
    "egnn_frames": (EGNNDenoiser, {"hidden": 24, "layers": 2, "k_nn": 6, "frame_features": True}),
    "e3nn": (E3Denoiser, {"scalars": 12, "vectors": 4, "layers": 2, "k_nn": 6}),
    "frames": (FrameDenoiser, {"hidden": 32, "layers": 2, "heads": 4, "pair_dim": 8}),
}


@pytest.fixture(scope="module")
def built():
    """One instance per network (e3nn's tensor-product code generation is slow)."""
    out = {}
    for name, (cls, kw) in NETS.items():
        torch.manual_seed(0)
        out[name] = cls(**kw)
    return out


def net_of(built, name, dtype):
    return copy.deepcopy(built[name]).to(dtype)


def inputs(dtype, B=3, N=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, 3, generator=g, dtype=dtype) * 1.5
    mask = torch.ones(B, N, dtype=dtype)
    mask[1, 14:] = 0
    x = x * mask[..., None]
    cond = {
        "mask": mask,
        "res_idx": torch.arange(N).expand(B, N),
        "ss": torch.rand(B, 3, generator=g, dtype=dtype),
        "cond_mask": torch.tensor([1.0, 0.0, 1.0], dtype=dtype),
    }
    return x, torch.tensor([-1.2, 0.0, 0.8], dtype=dtype), cond


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-6)])
def test_equivariant_under_random_rotations_and_translations(built, name, dtype, tol):
    net = net_of(built, name, dtype)
    x, t, cond = inputs(dtype)
    out = net(x, t, cond)
    m = cond["mask"][..., None]
    assert out.abs().max() > 1e-3 and torch.isfinite(out).all()
    for _ in range(2):
        R = o3.rand_matrix(dtype=dtype)
        shift = torch.randn(1, 1, 3, dtype=dtype) * 3
        out2 = net((x @ R.T + shift) * m, t, cond)
        assert (out @ R.T * m - out2).abs().max() <= tol


@pytest.mark.parametrize("name", list(NETS))
def test_outputs_have_zero_mean_and_padding_does_not_leak(built, name):
    net = net_of(built, name, torch.float64)
    x, t, cond = inputs(torch.float64)
    out = net(x, t, cond)
    m = cond["mask"]
    assert (out[1, 14:] == 0).all()
    assert ((out * m[..., None]).sum(1)).abs().max() < 1e-10
    # change the padding coordinates: valid outputs stay the same
    x2 = x.clone()
    x2[1, 14:] = 50.0
    out2 = net(x2, t, cond)
    assert (out2[1, :14] - out[1, :14]).abs().max() < 1e-10


@pytest.mark.parametrize("name", list(NETS))
def test_not_mirror_symmetric(built, name):
    net = net_of(built, name, torch.float64)
    x, t, cond = inputs(torch.float64)
    P = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    out, out_m = net(x, t, cond), net(x @ P, t, cond)
    assert (out @ P - out_m).abs().max() > 1e-6


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(NETS))
def test_runs_on_cuda_and_matches_cpu(built, name):
    net = net_of(built, name, torch.float32)
    x, t, cond = inputs(torch.float32)
    ref = net(x, t, cond)
    dev = torch.device("cuda")
    out = net.to(dev)(x.to(dev), t.to(dev), {k: v.to(dev) for k, v in cond.items()})
    assert (out.cpu() - ref).abs().max() < 1e-3


def test_chain_frames_are_orthonormal_rotate_with_the_input_and_are_handed():
    from polydiff.plugins.protein.features import chain_frames, local_window_features

    x, _, cond = inputs(torch.float64)
    m = cond["mask"]
    R = chain_frames(x, m)
    eye = torch.eye(3, dtype=torch.float64)
    assert (R.transpose(-1, -2) @ R - eye).abs().max() < 1e-9
    assert (torch.linalg.det(R) - 1).abs().max() < 1e-9  # proper rotations
    Q = o3.rand_matrix(dtype=torch.float64)
    R2 = chain_frames((x @ Q.T + 2.0) * m[..., None], m)
    valid = m.bool()
    assert (R2[valid] - (Q @ R)[valid]).abs().max() < 1e-9
    f = local_window_features(x, m, R)
    assert (local_window_features((x @ Q.T + 2.0) * m[..., None], m, R2) - f)[valid].abs().max() < 1e-9
    # a mirror image changes the features (they carry handedness)
    P = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    assert (local_window_features(x @ P, m, chain_frames(x @ P, m)) - f)[valid].abs().max() > 1e-3
