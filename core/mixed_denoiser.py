"""The network wrapper of mixed continuous–categorical states: a network becomes a mixed denoiser.

A mixed network is ``net(state_in, time, cond) → {part: output}`` (an ``nn.Module``): it sees

- every continuous part EDM-preconditioned, ``c_in(σ̃)·x̃`` with the part's own σ̃(t) and
  ``sigma_data`` (Karras et al. 2022, Table 1), and returns F of the part's shape;
- every categorical part as its ``long`` state indices (the network embeds them; the masked
  process adds the mask token, index K, so there are ``process.num_states`` indices) and returns
  clean-class logits ``[..., K]``;
- ``time`` ``[B]`` float32: the shared time t ∈ [0, 1] itself (not a noise level: the parts'
  noise levels differ, t is what they share).

:class:`MixedDenoiser` turns it into the mixed denoiser of :mod:`polydiff.mixed`,
``D(state, t [B] float64, cond) → {continuous part: x̂₀ = c_skip·x̃ + c_out·F,
categorical part: logits}``, which :func:`polydiff.mixed.sample_mixed`,
:func:`polydiff.mixed.mixed_loss` and :func:`polydiff.mixed.mixed_elbo` take (with ``cond``
bound). At t = 0 (σ̃ = 0) c_skip = 1 and c_out = 0: a continuous part's x̂₀ is x̃ itself.
"""

from __future__ import annotations

import torch
from torch import nn

from .mixed import ContinuousPart, Part
from .parameterization import edm_coefficients

F64 = torch.float64


def _bc(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample ``[B]`` coefficient broadcast against ``x`` ``[B, ...]`` (x's device)."""
    c = c.to(device=x.device)
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


class MixedDenoiser(nn.Module):
    """``D(state, t, cond)`` over ``net(state_in, time, cond)`` for the named ``parts``.

    Args:
        net: the network (see the module docstring for what it sees and returns).
        parts: ``{name: ContinuousPart | CategoricalPart}`` (:mod:`polydiff.mixed`).

    ``state``: ``{name: Tensor [B, ...]}`` (continuous parts float in the VE view, categorical
    parts ``long``); ``t``: a scalar or ``[B]`` time in [0, 1]. Returns ``{name: x̂₀ [B, ...]
    (the state's dtype) | logits [B, ..., K] (the network's dtype)}``.
    """

    def __init__(self, net: nn.Module, parts: dict[str, Part]):
        super().__init__()
        self.net = net
        self.parts = dict(parts)

    def forward(self, state: dict, t, cond: dict | None = None) -> dict:
        missing = [k for k in self.parts if k not in state]
        if missing:
            raise KeyError(f"the state has no part(s) {missing}; parts: {list(self.parts)}")
        first = state[next(iter(self.parts))]
        B, dev = first.shape[0], first.device
        tt = torch.as_tensor(t, dtype=F64).detach().cpu().reshape(-1)
        tt = tt.expand(B) if tt.numel() == 1 else tt
        state_in, skip = {}, {}
        for name, part in self.parts.items():
            x = state[name]
            if isinstance(part, ContinuousPart):
                c_skip, c_out, c_in, _ = edm_coefficients(part.sigma(tt), part.sigma_data)
                state_in[name] = (x.to(F64) * _bc(c_in, x)).to(self._net_dtype(x))
                skip[name] = (c_skip, c_out)
            else:
                state_in[name] = x
        out = self.net(state_in, tt.to(device=dev, dtype=torch.float32), cond)
        if not isinstance(out, dict) or any(k not in out for k in self.parts):
            got = sorted(out) if isinstance(out, dict) else type(out).__name__
            raise TypeError(f"a mixed network returns {{part: output}} for every part {list(self.parts)}; got {got}")
        res = {}
        for name in self.parts:
            if name in skip:
                x, (c_skip, c_out) = state[name], skip[name]
                res[name] = (_bc(c_skip, x) * x.to(F64) + _bc(c_out, x) * out[name].to(F64)).to(x.dtype)
            else:
                res[name] = out[name]
        return res

    def _net_dtype(self, x: torch.Tensor) -> torch.dtype:
        """The network's parameter dtype when it runs in half precision, else ``x``'s."""
        p = next(self.net.parameters(), None) if isinstance(self.net, nn.Module) else None
        if p is not None and p.dtype in (torch.float16, torch.bfloat16):
            return p.dtype
        return x.dtype
