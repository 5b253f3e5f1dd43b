"""Time experts: one denoiser network per noise-level interval (eDiff-I's ensemble of expert
denoisers, Balaji et al. 2022, arXiv:2211.01324).

A few-step student makes each of its calls at a fixed time; a call whose job differs from the
others (e.g. the last, low-noise call that refines a finished sample) can be given a network of
its own, trained on that call alone, without moving the calls the other network makes. Each
call is still one network evaluation: :class:`TimeExperts` runs the expert whose interval holds
the call's time (a batch that straddles a bound runs each expert it needs and picks per
sample).

The bounds are in the network's own time input: t ∈ [0, 1] of a model with parts
(:mod:`polydiff.mixed`), c_noise = ¼·log σ̃ of an EDM-parameterised continuous model
(:func:`polydiff.parameterization.edm_coefficients`). :func:`combine` takes them as t or σ̃.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .errors import PolydiffError
from .parameterization import edm_coefficients


class TimeExperts(nn.Module):
    """``experts[k]`` denoises at network time inputs in ``[bounds[k-1], bounds[k])``
    (``bounds`` increasing, one fewer than ``experts``; ``experts[0]`` takes the lowest noise).

    ``forward(x, time, cond)`` is the experts' own signature: ``time`` ``[B]`` the network time
    input; the output (a tensor or a dict of tensors, batch first) is the selected expert's.
    """

    def __init__(self, experts: list[nn.Module], bounds: list[float]):
        super().__init__()
        bounds = [float(b) for b in bounds]
        if len(experts) != len(bounds) + 1:
            raise PolydiffError(
                f"TimeExperts needs one more expert than bounds: {len(experts)} experts, bounds {bounds}"
            )
        if any(not math.isfinite(b) for b in bounds) or any(b >= c for b, c in zip(bounds, bounds[1:])):
            raise PolydiffError(f"TimeExperts bounds must be finite and increasing, got {bounds}")
        self.experts = nn.ModuleList(experts)
        self.bounds = bounds

    def expert_index(self, time: torch.Tensor) -> torch.Tensor:
        """``[B]`` index of the expert for each time input."""
        edges = torch.tensor(self.bounds, dtype=torch.float64, device=time.device)
        return torch.bucketize(time.detach().to(torch.float64).reshape(-1), edges, right=True)

    def forward(self, x, time, cond=None):
        time = torch.as_tensor(time)
        idx = self.expert_index(time)
        used = sorted({int(i) for i in idx.tolist()})
        if len(used) == 1:  # sampling: every sample of a call is at the same time
            return self.experts[used[0]](x, time, cond)
        out = None
        for k in used:
            out_k = self.experts[k](x, time, cond)
            out = out_k if out is None else _where(idx == k, out_k, out)
        return out


def _where(mask: torch.Tensor, a, b):
    """Per-sample pick of ``a`` where ``mask`` [B] else ``b`` (tensors or dicts of tensors, batch first)."""
    if isinstance(a, dict):
        return {k: _where(mask, a[k], b[k]) for k in a}
    if isinstance(a, (tuple, list)):
        return type(a)(_where(mask, u, v) for u, v in zip(a, b))
    m = mask.to(a.device).reshape(-1, *([1] * (a.dim() - 1)))
    return torch.where(m, a, b)


def time_input(model, at: float) -> float:
    """The network time input of ``model`` at time ``at``: t itself for a model with parts, else
    c_noise = ¼·log σ̃ with σ̃ = ``at`` (EDM-parameterised continuous models only)."""
    if model.parts is not None:
        if not 0.0 < at < 1.0:
            raise PolydiffError(f"a time-expert bound of a model with parts is a time in (0, 1), got {at!r}")
        return float(at)
    if model.parameterization != "edm":
        raise PolydiffError(
            f"time experts of a continuous model need the EDM parameterisation (its network time input is "
            f"¼·log σ̃); this model's is {model.parameterization!r}"
        )
    if not at > 0:
        raise PolydiffError(f"a time-expert bound of a continuous model is a σ̃ > 0, got {at!r}")
    return float(
        edm_coefficients(torch.tensor(float(at)), model.sigma_data)[3]
    )  # the c_noise the EDM denoiser feeds its network


def combine(base, expert, *, below: float):
    """A copy of ``base`` whose calls at times below ``below`` (t of a model with parts, σ̃ of a
    continuous one) are made by ``expert``'s network (its EMA weights where it has them); both
    models must share modality, architecture, schedule and parameterisation. The result saves
    and loads like any model (``config.json`` records the experts' bounds)."""
    if isinstance(base.network, TimeExperts) or isinstance(expert.network, TimeExperts):
        raise PolydiffError("combine takes two single-network models (a TimeExperts model cannot be nested)")
    for what, a, b in (
        ("modality", base.modality.name, expert.modality.name),
        ("network", base.network_name, expert.network_name),
        ("network keywords", base.network_kwargs, expert.network_kwargs),
        ("schedule", base.schedule.config(), expert.schedule.config()),
        ("parameterisation", (base.parameterization, base.sigma_data), (expert.parameterization, expert.sigma_data)),
    ):
        if a != b:
            raise PolydiffError(f"combine: the expert's {what} {b!r} differs from the base model's {a!r}")
    bound = time_input(base, below)

    def weights(m):
        return copy.deepcopy(m.ema if m.ema is not None else m.network)

    out = copy.copy(base)
    out.extra = copy.deepcopy(base.extra)
    out.training_info = copy.deepcopy(base.training_info)
    out.network = TimeExperts([weights(expert), weights(base)], [bound])
    out.ema = copy.deepcopy(out.network).requires_grad_(False)
    return out
