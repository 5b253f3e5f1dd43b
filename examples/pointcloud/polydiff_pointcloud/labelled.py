"""The labelled point-cloud modality: a mixed state with a continuous and a categorical part.

Each cloud is two concentric rings (radii :data:`RADII`, centred at the origin) and each point
carries its ring as a class label. The state has two parts (``Modality.parts``):

- ``pos`` ``[B, N, 2]`` float: positions with zero centre of mass (Gaussian noise in
  :class:`polydiff.spaces.ZeroCoMSpace`, the ``vp_linear`` schedule);
- ``label`` ``[B, N]`` long: the ring of each point, 0 (inner) or 1 (outer), noised by the
  masked process (default) or by the data's class frequencies (``config["process"] =
  "marginal"``), :mod:`polydiff.categorical`.

This is the template for a third-party modality with categorical parts: ``parts`` builds the
processes from ``self.config`` alone, ``collate``/``sampling_request``/``decode`` take dicts of
parts, and the network (:mod:`.labelled_network`) returns ``{part: output}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from polydiff.categorical import MarginalProcess, MaskedProcess
from polydiff.mixed import CategoricalPart, ContinuousPart
from polydiff.modality import Modality
from polydiff.spaces import ZeroCoMSpace

#: radii of the inner (label 0) and outer (label 1) ring
RADII = (0.5, 1.0)
NUM_CLASSES = len(RADII)
PROCESSES = ("masked", "marginal")


@dataclass
class LabelledCloud:
    """One cloud: ``pos`` ``[N, 2]`` float32 (zero centre of mass), ``label`` ``[N]`` long (ring index)."""

    pos: torch.Tensor
    label: torch.Tensor


class LabelledRingsDataset(torch.utils.data.Dataset):
    """``size`` clouds of ``n_points`` (even) points: ``n_points/2`` antipodal pairs at a random
    angle, each pair on the outer ring with probability ``p_outer`` (else the inner one), with
    Gaussian jitter ``noise``; centred. Antipodal pairs keep each ring's centre at the centre of
    mass, so the rings stay centred at the origin. Item: :class:`LabelledCloud`."""

    def __init__(self, size: int = 2000, n_points: int = 16, noise: float = 0.03, p_outer: float = 0.5, seed: int = 0):
        if n_points < 2 or n_points % 2:
            raise ValueError(f"n_points must be even and >= 2 (antipodal pairs), got {n_points}")
        g = torch.Generator().manual_seed(seed)
        pairs = n_points // 2
        ang = torch.rand(size, pairs, generator=g) * 2 * math.pi
        lab = (torch.rand(size, pairs, generator=g) < p_outer).long()
        r = torch.tensor(RADII)[lab]
        unit = torch.stack([ang.cos(), ang.sin()], -1) * r[..., None]
        pos = torch.cat([unit, -unit], 1) + noise * torch.randn(size, n_points, 2, generator=g)
        label = torch.cat([lab, lab], 1)
        order = torch.argsort(torch.rand(size, n_points, generator=g), dim=1)
        pos = torch.gather(pos, 1, order[..., None].expand(-1, -1, 2))
        self.pos = pos - pos.mean(1, keepdim=True)
        self.label = torch.gather(label, 1, order)

    def __len__(self):
        return len(self.pos)

    def __getitem__(self, i):
        return LabelledCloud(self.pos[i], self.label[i])


def _stack(samples):
    pos = torch.stack([torch.as_tensor(s.pos, dtype=torch.float64) for s in samples])
    label = torch.stack([torch.as_tensor(s.label).long() for s in samples])
    return pos, label


def label_accuracy(samples, reference=None, **_) -> float:
    """Share of points whose label is the ring they lie nearest to (by distance to the origin,
    the rings' centre): 1 for the data, about ½ for labels unrelated to positions; higher is better."""
    pos, label = _stack(samples)
    radii = torch.tensor(RADII, dtype=torch.float64)
    nearest = ((pos.norm(dim=-1)[..., None] - radii).abs()).argmin(-1)
    return float((nearest == label).double().mean())


def radius_error(samples, reference=None, **_) -> float:
    """Mean distance of each point from the ring its label names, | ‖p‖ − r_label | (same units
    as the positions); ≈ the jitter for the data; lower is better."""
    pos, label = _stack(samples)
    radii = torch.tensor(RADII, dtype=torch.float64)
    return float((pos.norm(dim=-1) - radii[label.clamp(0, NUM_CLASSES - 1)]).abs().mean())


class LabelledPointCloudModality(Modality):
    """2-D clouds of ``n_points`` labelled points (from the data). Config keys: ``n_points``,
    ``process`` (``"masked"``, default, or ``"marginal"``), ``label_marginals`` (the label
    frequencies, recorded by :meth:`fit` for the marginal process)."""

    name = "pointcloud_labelled"
    default_network = "pointcloud_labelled_deepsets"
    default_dataset = "rings2d_labelled"
    default_schedule = "vp_linear"
    sigma_data = 0.55  # RMS of a coordinate: √((0.5² + 1²)/4)
    default_metrics = ("pointcloud_labelled_label_accuracy", "pointcloud_labelled_radius_error")
    #: the denoiser treats the points (and their labels) as a set
    equivariance = ("permutation",)
    conformance = {"dataset_options": {"size": 8, "n_points": 6}, "network_kwargs": {"hidden": 16, "layers": 1}}

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        if self.config.get("process", "masked") not in PROCESSES:
            raise ValueError(f"process must be one of {PROCESSES}, got {self.config['process']!r}")

    def fit(self, dataset) -> None:
        first = dataset[0]
        self.config["n_points"] = int(first.pos.shape[0])
        if self.config.get("process") == "marginal":
            labels = torch.stack([dataset[i].label for i in range(len(dataset))])
            counts = torch.bincount(labels.reshape(-1), minlength=NUM_CLASSES).double()
            self.config["label_marginals"] = [float(v) for v in counts / counts.sum()]

    # -- the mixed state -------------------------------------------------------------------
    def parts(self):
        from polydiff.plugin_manager import registry

        if self.config.get("process", "masked") == "marginal":
            marginals = self.config.get("label_marginals", [1.0 / NUM_CLASSES] * NUM_CLASSES)
            process = MarginalProcess(NUM_CLASSES, "linear", marginals)
        else:
            process = MaskedProcess(NUM_CLASSES, "linear")
        schedule = registry("schedule").get(self.default_schedule)()
        return {
            "pos": ContinuousPart(
                schedule, space=self._space, sigma_data=self.sigma_data, schedule_name=self.default_schedule
            ),
            "label": CategoricalPart(process),
        }

    @staticmethod
    def _space(cond):
        return ZeroCoMSpace(cond["mask"], n_pos=2)

    def network_kwargs(self) -> dict:
        process = self.parts()["label"].process
        return {"num_states": process.num_states, "num_classes": process.num_classes}

    def collate(self, items):
        pos = torch.stack([it.pos for it in items]).float()
        label = torch.stack([it.label for it in items]).long()
        return {"x": {"pos": pos, "label": label}, "cond": {"mask": torch.ones(pos.shape[:2])}}

    def sampling_request(self, n, cond, rng):
        k = int(self.config.get("n_points", 16))
        return {"pos": (k, 2), "label": (k,)}, {"mask": torch.ones(n, k)}

    def decode(self, x, cond):
        return [LabelledCloud(p.detach().cpu(), lab.detach().cpu()) for p, lab in zip(x["pos"], x["label"])]

    # -- files ------------------------------------------------------------------------------
    def write(self, samples, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([{"pos": s.pos.tolist(), "label": s.label.tolist()} for s in samples]))
        return [path]

    def read(self, path):
        from polydiff.errors import InputError

        try:
            data = json.loads(Path(path).read_text())
            return [
                LabelledCloud(torch.tensor(d["pos"], dtype=torch.float32), torch.tensor(d["label"], dtype=torch.long))
                for d in data
            ]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(f"cannot read labelled point clouds: {e}", file=path) from None
