"""The point-cloud modality, its dataset and its metric."""

from __future__ import annotations

import math

import torch

from polydiff.modality import Modality
from polydiff.spaces import ZeroCoMSpace


class RingsDataset(torch.utils.data.Dataset):
    """``size`` clouds of ``n_points`` points on a ring (radius U[0.6, 1.0], random
    phase, uneven angular spacing, Gaussian jitter ``noise``), centred. Item: ``[N, 2]``."""

    def __init__(self, size: int = 2000, n_points: int = 16, noise: float = 0.02, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        r = 0.6 + 0.4 * torch.rand(size, 1, generator=g)
        ang = torch.rand(size, n_points, generator=g) * 2 * math.pi
        pts = torch.stack([r * ang.cos(), r * ang.sin()], -1) + noise * torch.randn(size, n_points, 2, generator=g)
        self.points = pts - pts.mean(1, keepdim=True)

    def __len__(self):
        return len(self.points)

    def __getitem__(self, i):
        return self.points[i]


def ring_error(samples, reference=None, **_) -> float:
    """Mean distance of points to each cloud's least-squares circle (Kåsa fit).

    The fit solves x² + y² + D·x + E·y + F = 0 per cloud; centre (−D/2, −E/2), radius
    √(D²/4 + E²/4 − F). 0 for perfect rings, ≈ the jitter for the data, large for blobs.
    ``samples``: ``[B, N, 2]``.
    """
    x = torch.as_tensor(samples if torch.is_tensor(samples) else torch.stack(list(samples)), dtype=torch.float64)
    A = torch.cat([x, torch.ones_like(x[..., :1])], -1)  # [B, N, 3]
    b = -(x**2).sum(-1, keepdim=True)  # [B, N, 1]
    sol = torch.linalg.lstsq(A, b).solution[..., 0]  # [B, 3] = D, E, F
    centre = -0.5 * sol[:, :2]
    r = torch.sqrt((centre**2).sum(-1) - sol[:, 2]).clamp(min=0)
    d = (x - centre[:, None]).norm(dim=-1)
    return float((d - r[:, None]).abs().mean())


class PointCloudModality(Modality):
    """2-D point clouds of a fixed size ``n_points`` (from the data)."""

    name = "pointcloud"
    default_network = "pointcloud_deepsets"
    default_dataset = "rings2d"
    sigma_data = 0.5
    default_metrics = ("pointcloud_ring_error",)
    #: positions are x[..., :2]; the DeepSets denoiser treats the points as a set
    position_dims = 2
    equivariance = ("permutation",)
    #: how polydiff.testing exercises the modality: a tiny data set and network
    conformance = {"dataset_options": {"size": 8, "n_points": 6}, "network_kwargs": {"hidden": 16, "layers": 1}}

    def fit(self, dataset) -> None:
        self.config["n_points"] = int(dataset[0].shape[0])

    def collate(self, items):
        x = torch.stack(list(items))
        return {"x": x, "cond": {"mask": torch.ones(x.shape[:2])}}

    def space(self, cond):
        return ZeroCoMSpace(cond["mask"], n_pos=2)

    def sampling_request(self, n, cond, rng):
        k = int(self.config.get("n_points", 16))
        return (k, 2), {"mask": torch.ones(n, k)}

    def decode(self, x, cond):
        return [p.detach().cpu() for p in x]

    def write(self, samples, path):
        import json
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([p.tolist() for p in samples]))
        return [path]

    def read(self, path):
        import json
        from pathlib import Path

        from polydiff.errors import InputError

        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"cannot read point clouds: {e}", file=path) from None
        return [torch.tensor(p, dtype=torch.float32) for p in data]
