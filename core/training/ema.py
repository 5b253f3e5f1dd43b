"""Exponential moving average of network weights (Polyak averaging).

θ_ema ← β·θ_ema + (1 − β)·θ after every optimiser update, with β = ``decay``; with
``warmup`` the decay starts small, β_k = min(decay, (1 + k)/(10 + k)) after k updates
(the ``num_updates`` rule of TensorFlow's ExponentialMovingAverage), so early averages
do not remember the random initialisation. Buffers are copied, not averaged. The EMA
network is saved beside the trained one as ``ema.safetensors``.
"""

from __future__ import annotations

import torch
from torch import nn


def ema_decay_at(updates: int, decay: float, warmup: bool = False) -> float:
    """β for the update number ``updates`` (0-based)."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1], got {decay}")
    if warmup:
        return min(decay, (1.0 + updates) / (10.0 + updates))
    return decay


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """In place: ``ema`` parameters ← lerp towards ``net`` parameters by ``1 − decay``."""
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.lerp_(p.detach(), 1 - decay)
    # by name: a deep copy may order (or rename) internal buffers differently (e3nn does)
    src = dict(net.named_buffers())
    for name, be in ema.named_buffers():
        be.copy_(src[name])
