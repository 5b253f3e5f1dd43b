"""Molecule-test fixtures. ``POLYDIFF_TEST_THREADS`` caps torch threads for these tests
(on an oversubscribed machine one thread is many times faster than two)."""

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_threads():
    want = int(os.environ.get("POLYDIFF_TEST_THREADS", "0"))
    before = torch.get_num_threads()
    if want:
        torch.set_num_threads(want)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def qm9_small():
    """300 seeded QM9 training molecules (with H)."""
    from polydiff.plugins.molecule.qm9 import load_qm9

    return load_qm9("train", limit=300, seed=0)


@pytest.fixture(scope="module")
def bonded(tmp_path_factory):
    """60 seeded QM9 training molecules with perceived bonds; a temporary $POLYDIFF_CACHE."""
    mp = pytest.MonkeyPatch()
    mp.setenv("POLYDIFF_CACHE", str(tmp_path_factory.mktemp("bond_cache")))
    try:
        from polydiff.plugins.molecule.bonds_qm9 import load_qm9_bonds

        yield load_qm9_bonds("train", limit=60, seed=0)
    finally:
        mp.undo()


def random_orthogonal(generator: torch.Generator, dtype, reflect: bool) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None]
    if (torch.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


@pytest.fixture
def orthogonal():
    return random_orthogonal


def centred_batch(B, N, D, dtype, generator, counts):
    mask = torch.zeros(B, N, dtype=dtype)
    for b, k in enumerate(counts):
        mask[b, :k] = 1
    x = torch.randn(B, N, D, generator=generator, dtype=torch.float64).to(dtype) * mask[..., None]
    com = (x[..., :3] * mask[..., None]).sum(1, keepdim=True) / mask.sum(1)[:, None, None]
    x[..., :3] = (x[..., :3] - com) * mask[..., None]
    return x, mask


@pytest.fixture
def batch_factory():
    return centred_batch
