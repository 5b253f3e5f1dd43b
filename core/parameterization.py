"""Network-output parameterisations and their exact conversion to the denoiser D.

Samplers see one interface, ``D(x̃, σ̃, cond) → x̂₀`` with x̃ = x_t/α (Karras et al. 2022).
A network ``F(x_in, time, cond)`` predicts one of ε, x₀, v, the score, the flow velocity,
or EDM's preconditioned F; :class:`Denoiser` turns it into D. All coefficients are computed
in float64 from the schedule and cast to the state's dtype.

Conversions (x_t = α x₀ + σ ε, v = α ε − σ x₀, score = −ε/σ, u = α' x₀ + σ' ε):
x₀ = (x_t − σ ε)/α = (α x_t − σ v)/(α² + σ²) = (σ' x_t − σ u)/(σ' α − σ α').
"""

from __future__ import annotations

import torch
from torch import nn

from .schedules import Schedule

F64 = torch.float64
KINDS = ("eps", "x0", "v", "score", "flow", "edm")


def _bc(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample ``[B]`` coefficient against ``x`` ``[B, ...]``."""
    c = c.to(device=x.device)
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def to_x0(kind: str, out, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
    """x̂₀ from a prediction of ``kind`` at (x_t, α, σ); α, σ are ``[B]`` or scalars."""
    a, s = _bc(torch.as_tensor(alpha, dtype=F64), x_t), _bc(torch.as_tensor(sigma, dtype=F64), x_t)
    o, x = out.to(F64), x_t.to(F64)
    if kind == "eps":
        r = (x - s * o) / a
    elif kind == "x0":
        r = o
    elif kind == "v":
        r = (a * x - s * o) / (a * a + s * s)
    elif kind == "score":
        r = (x + s * s * o) / a
    elif kind == "flow":
        da, ds = _bc(torch.as_tensor(d_alpha, dtype=F64), x_t), _bc(torch.as_tensor(d_sigma, dtype=F64), x_t)
        r = (ds * x - s * o) / (ds * a - s * da)
    else:
        raise ValueError(f"unknown parameterisation {kind!r}; one of {KINDS[:-1]}")
    return r.to(out.dtype)


def from_x0(kind: str, x0, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
    """The prediction of ``kind`` that corresponds to x̂₀ (inverse of :func:`to_x0`)."""
    a, s = _bc(torch.as_tensor(alpha, dtype=F64), x_t), _bc(torch.as_tensor(sigma, dtype=F64), x_t)
    z, x = x0.to(F64), x_t.to(F64)
    eps = (x - a * z) / s
    if kind == "eps":
        r = eps
    elif kind == "x0":
        r = z
    elif kind == "v":
        r = a * eps - s * z
    elif kind == "score":
        r = -eps / s
    elif kind == "flow":
        da, ds = _bc(torch.as_tensor(d_alpha, dtype=F64), x_t), _bc(torch.as_tensor(d_sigma, dtype=F64), x_t)
        r = da * z + ds * eps
    else:
        raise ValueError(f"unknown parameterisation {kind!r}; one of {KINDS[:-1]}")
    return r.to(x0.dtype)


def _derivatives(schedule: Schedule, t: torch.Tensor, h: float = 1e-6):
    """(dα/dt, dσ/dt) by central differences in float64 (exact enough: ~1e-10)."""
    tp, tm = t + h, t - h
    return ((schedule.alpha(tp) - schedule.alpha(tm)) / (2 * h), (schedule.sigma(tp) - schedule.sigma(tm)) / (2 * h))


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = 0.5):
    """EDM preconditioning (c_skip, c_out, c_in, c_noise) at σ̃ (float64)."""
    s = torch.as_tensor(sigma, dtype=F64)
    sd2 = sigma_data**2
    c_skip = sd2 / (s**2 + sd2)
    c_out = s * sigma_data / torch.sqrt(s**2 + sd2)
    c_in = 1 / torch.sqrt(s**2 + sd2)
    c_noise = 0.25 * torch.log(s)
    return c_skip, c_out, c_in, c_noise


class Denoiser(nn.Module):
    """Wraps a network ``net(x_in, time, cond) → out`` into D(x̃, σ̃, cond) → x̂₀.

    Args:
        net: the network; ``time`` it receives is ``[B]`` float32.
        schedule: the schedule the network was trained with.
        kind: what the network predicts (``eps``, ``x0``, ``v``, ``score``, ``flow``,
            ``edm``); ``edm`` uses EDM preconditioning on σ̃ with ``sigma_data``.
    """

    def __init__(self, net: nn.Module, schedule: Schedule, kind: str = "edm", sigma_data: float = 0.5):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown parameterisation {kind!r}; one of {KINDS}")
        self.net, self.schedule, self.kind, self.sigma_data = net, schedule, kind, float(sigma_data)

    def forward(self, x: torch.Tensor, sigma, cond: dict | None = None) -> torch.Tensor:
        """x: ``[B, ...]`` noisy state in the VE view; sigma: scalar or ``[B]`` σ̃ (> 0)."""
        B = x.shape[0]
        s = torch.as_tensor(sigma, dtype=F64).detach().cpu().reshape(-1)
        s = s.expand(B) if s.numel() == 1 else s
        net_dtype = self._net_dtype(x)
        if self.kind == "edm":
            c_skip, c_out, c_in, c_noise = edm_coefficients(s, self.sigma_data)
            x_in = (x.to(F64) * _bc(c_in, x)).to(net_dtype)
            out = self.net(x_in, c_noise.to(device=x.device, dtype=torch.float32), cond)
            return (_bc(c_skip, x) * x.to(F64) + _bc(c_out, x) * out.to(F64)).to(x.dtype)
        t = self.schedule.t_from_sigma_ve(s)
        a, sg = self.schedule.alpha(t), self.schedule.sigma(t)
        x_t = x.to(F64) * _bc(a, x)
        time = self.schedule.network_time(t).to(device=x.device, dtype=torch.float32)
        out = self.net(x_t.to(net_dtype), time, cond)
        da = ds = None
        if self.kind == "flow":
            da, ds = _derivatives(self.schedule, t)
        return to_x0(self.kind, out.to(F64), x_t, a, sg, da, ds).to(x.dtype)

    def _net_dtype(self, x: torch.Tensor) -> torch.dtype:
        """The network's parameter dtype when it runs in half precision, else ``x``'s."""
        p = next(self.net.parameters(), None) if isinstance(self.net, nn.Module) else None
        if p is not None and p.dtype in (torch.float16, torch.bfloat16):
            return p.dtype
        return x.dtype

    def default_x0_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """The x₀-space loss weight λ(σ̃) with λ·‖x̂₀ − x₀‖² = ‖F̂ − F‖² on the network's own
        target F (at fixed x_t, F is affine in x₀ with slope c, so λ = c²):

        ε: (α/σ)² = 1/σ̃²; v = αε − σx₀: ((α² + σ²)/σ)² (VP: 1/σ̃² + 1); x₀: 1;
        flow u = α'x₀ + σ'ε: (α' − σ'α/σ)² (rectified flow: (1 + σ̃)²/σ̃²);
        EDM: (σ̃² + σ_d²)/(σ̃σ_d)² (Karras et al. 2022, Table 1). Score nets are trained
        as ε (denoising score matching with λ = σ², Song et al. 2021), weight 1/σ̃².
        """
        s = torch.as_tensor(sigma, dtype=F64)
        if self.kind in ("eps", "score"):
            return 1 / s**2
        if self.kind == "x0":
            return torch.ones_like(s)
        if self.kind == "edm":
            sd = self.sigma_data
            return (s**2 + sd**2) / (s * sd) ** 2
        t = self.schedule.t_from_sigma_ve(s)
        a, sg = self.schedule.alpha(t), self.schedule.sigma(t)
        if self.kind == "v":
            return ((a * a + sg * sg) / sg) ** 2
        da, ds = _derivatives(self.schedule, t)
        return (da - ds * a / sg) ** 2
