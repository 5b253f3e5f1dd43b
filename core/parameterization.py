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


class Parameterization:
    """What a network predicts, and how its output becomes x̂₀ (one instance per model).

    A plugin adds one by subclassing and registering the class through
    ``polydiff_register_parameterizations`` (``register(name, cls)``); the class is built as
    ``cls(sigma_data=...)``. Subclasses of this base describe a network target that is an
    affine function of (x_t, x₀) at fixed noise level and implement :meth:`to_x0` and
    :meth:`from_x0`; the loss weight then follows exactly (:meth:`x0_weight`). A
    parameterisation that preconditions the network's input (EDM) overrides :meth:`denoise`.

    Arrays: ``x_t``/``out``/``x0`` ``[B, ...]`` float64; ``alpha``, ``sigma`` (and the time
    derivatives ``d_alpha``, ``d_sigma`` when :attr:`needs_derivatives`) ``[B]`` float64.
    """

    #: whether :meth:`to_x0`/:meth:`from_x0` need dα/dt and dσ/dt
    needs_derivatives: bool = False

    def __init__(self, sigma_data: float = 0.5):
        self.sigma_data = float(sigma_data)

    def to_x0(self, out, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        raise NotImplementedError(f"{type(self).__name__} does not implement to_x0")

    def from_x0(self, x0, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        raise NotImplementedError(f"{type(self).__name__} does not implement from_x0")

    def denoise(self, net, x: torch.Tensor, s: torch.Tensor, cond, schedule: Schedule, net_dtype) -> torch.Tensor:
        """x̂₀ ``[B, ...]`` (float64) from ``net(x_t, time, cond)`` at σ̃ = ``s`` ``[B]`` (float64)."""
        t = schedule.t_from_sigma_ve(s)
        a, sg = schedule.alpha(t), schedule.sigma(t)
        x_t = x.to(F64) * _bc(a, x)
        time = schedule.network_time(t).to(device=x.device, dtype=torch.float32)
        out = net(x_t.to(net_dtype), time, cond)
        da, ds = _derivatives(schedule, t) if self.needs_derivatives else (None, None)
        return self.to_x0(out.to(F64), x_t, _bc(a, x), _bc(sg, x), _bcn(da, x), _bcn(ds, x))

    def x0_weight(self, s: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        """λ(σ̃) ``[B]`` with λ·‖x̂₀ − x₀‖² = ‖F̂ − F‖² on the network's own target F.

        At fixed x_t the target is affine in x₀ with slope c, so λ = c², read off
        :meth:`from_x0` (exact for every affine parameterisation)."""
        s = torch.as_tensor(s, dtype=F64).reshape(-1)
        t = schedule.t_from_sigma_ve(s)
        a, sg = schedule.alpha(t).reshape(-1, 1), schedule.sigma(t).reshape(-1, 1)
        da = ds = None
        if self.needs_derivatives:
            d_a, d_s = _derivatives(schedule, t)
            da, ds = d_a.reshape(-1, 1), d_s.reshape(-1, 1)
        one, zero = torch.ones_like(a), torch.zeros_like(a)
        c = self.from_x0(one, zero, a, sg, da, ds) - self.from_x0(zero, zero, a, sg, da, ds)
        return (c**2).reshape(-1)


def _bcn(c, x):
    return None if c is None else _bc(c, x)


class EpsParameterization(Parameterization):
    """ε-prediction (Ho et al. 2020); weight (α/σ)² = 1/σ̃²."""

    def to_x0(self, out, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        return to_x0("eps", out, x_t, alpha, sigma)

    def from_x0(self, x0, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        return from_x0("eps", x0, x_t, alpha, sigma)

    def x0_weight(self, s, schedule):
        return 1 / torch.as_tensor(s, dtype=F64) ** 2


class ScoreParameterization(EpsParameterization):
    """Score prediction −ε/σ; trained as ε (denoising score matching with λ = σ², Song et al. 2021)."""

    def to_x0(self, out, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        return to_x0("score", out, x_t, alpha, sigma)

    def from_x0(self, x0, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        return from_x0("score", x0, x_t, alpha, sigma)


class X0Parameterization(Parameterization):
    """x₀-prediction; weight 1."""

    def to_x0(self, out, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        return out

    def from_x0(self, x0, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        return x0

    def x0_weight(self, s, schedule):
        return torch.ones_like(torch.as_tensor(s, dtype=F64))


class VParameterization(Parameterization):
    """v = αε − σx₀ (Salimans & Ho 2022); weight ((α² + σ²)/σ)² (VP: 1/σ̃² + 1)."""

    def to_x0(self, out, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        return to_x0("v", out, x_t, alpha, sigma)

    def from_x0(self, x0, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        return from_x0("v", x0, x_t, alpha, sigma)


class FlowParameterization(Parameterization):
    """Flow velocity u = α'x₀ + σ'ε (rectified flow, Liu et al. 2023; Lipman et al. 2023);
    weight (α' − σ'α/σ)² (rectified flow: (1 + σ̃)²/σ̃²)."""

    needs_derivatives = True

    def to_x0(self, out, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        return to_x0("flow", out, x_t, alpha, sigma, d_alpha, d_sigma)

    def from_x0(self, x0, x_t, alpha, sigma, d_alpha=None, d_sigma=None):
        return from_x0("flow", x0, x_t, alpha, sigma, d_alpha, d_sigma)


class EDMParameterization(Parameterization):
    """EDM preconditioning on σ̃ (Karras et al. 2022, Table 1): D = c_skip·x̃ + c_out·F(c_in·x̃, c_noise);
    weight (σ̃² + σ_d²)/(σ̃σ_d)²."""

    def denoise(self, net, x, s, cond, schedule, net_dtype):
        c_skip, c_out, c_in, c_noise = edm_coefficients(s, self.sigma_data)
        x_in = (x.to(F64) * _bc(c_in, x)).to(net_dtype)
        out = net(x_in, c_noise.to(device=x.device, dtype=torch.float32), cond)
        return _bc(c_skip, x) * x.to(F64) + _bc(c_out, x) * out.to(F64)

    def x0_weight(self, s, schedule):
        s, sd = torch.as_tensor(s, dtype=F64), self.sigma_data
        return (s**2 + sd**2) / (s * sd) ** 2


#: the built-in parameterisations (registered by the core plugin under these names)
BUILTIN: dict[str, type[Parameterization]] = {
    "eps": EpsParameterization,
    "x0": X0Parameterization,
    "v": VParameterization,
    "score": ScoreParameterization,
    "flow": FlowParameterization,
    "edm": EDMParameterization,
}


class ConsistencyParameterization(Parameterization):
    """A consistency model's output f(x̃, σ̃) = g·x̃ + (1 − g)·D_base(x̃, σ̃), g = σ̃_min/σ̃ (Song
    et al. 2023, §3 "parameterisation": skip and output scalings with c_skip(σ̃_min) = 1,
    c_out(σ̃_min) = 0), so the student is exactly the identity at the schedule's smallest σ̃
    (σ̃_min = ``schedule.sigma_ve_min``, EDM: 0.002). ``D_base`` is the teacher's own
    parameterisation (:attr:`base`), so a teacher's weights initialise the student and
    g → 0 away from σ̃_min leaves it the teacher's denoiser. Registered as
    ``consistency_<base>`` for every built-in base (``consistency_edm``, …); the loss weight
    is the base's."""

    base_kind: str = "edm"

    def __init__(self, sigma_data: float = 0.5):
        super().__init__(sigma_data)
        self.base = BUILTIN[self.base_kind](sigma_data=sigma_data)
        self.needs_derivatives = self.base.needs_derivatives

    def denoise(self, net, x, s, cond, schedule, net_dtype):
        d = self.base.denoise(net, x, s, cond, schedule, net_dtype)
        g = (schedule.sigma_ve_min / torch.as_tensor(s, dtype=F64)).clamp(max=1.0)
        return _bc(g, x) * x.to(F64) + _bc(1 - g, x) * d

    def x0_weight(self, s, schedule):
        return self.base.x0_weight(s, schedule)


#: consistency-model parameterisations over each built-in one (registered by the core plugin)
CONSISTENCY: dict[str, type[Parameterization]] = {
    f"consistency_{k}": type(f"Consistency{cls.__name__}", (ConsistencyParameterization,), {"base_kind": k})
    for k, cls in BUILTIN.items()
}


def get_parameterization(name: str, sigma_data: float = 0.5) -> Parameterization:
    """The registered parameterisation ``name`` (through the plugin registry), built for ``sigma_data``."""
    from .plugin_manager import registry

    return registry("parameterization").get(name)(sigma_data=sigma_data)


class Denoiser(nn.Module):
    """Wraps a network ``net(x_in, time, cond) → out`` into D(x̃, σ̃, cond) → x̂₀.

    Args:
        net: the network; ``time`` it receives is ``[B]`` float32.
        schedule: the schedule the network was trained with.
        kind: the registered parameterisation (built-in: ``eps``, ``x0``, ``v``, ``score``,
            ``flow``, ``edm``; ``edm`` uses EDM preconditioning on σ̃ with ``sigma_data``),
            or a :class:`Parameterization` instance.
    """

    def __init__(self, net: nn.Module, schedule: Schedule, kind="edm", sigma_data: float = 0.5):
        super().__init__()
        if isinstance(kind, Parameterization):
            param, name = kind, type(kind).__name__
        else:
            param, name = get_parameterization(kind, sigma_data), kind
        self.net, self.schedule, self.kind, self.sigma_data = net, schedule, name, float(sigma_data)
        self.param = param

    def forward(self, x: torch.Tensor, sigma, cond: dict | None = None) -> torch.Tensor:
        """x: ``[B, ...]`` noisy state in the VE view; sigma: scalar or ``[B]`` σ̃ (> 0)."""
        B = x.shape[0]
        s = torch.as_tensor(sigma, dtype=F64).detach().cpu().reshape(-1)
        s = s.expand(B) if s.numel() == 1 else s
        return self.param.denoise(self.net, x, s, cond, self.schedule, self._net_dtype(x)).to(x.dtype)

    def _net_dtype(self, x: torch.Tensor) -> torch.dtype:
        """The network's parameter dtype when it runs in half precision, else ``x``'s."""
        p = next(self.net.parameters(), None) if isinstance(self.net, nn.Module) else None
        if p is not None and p.dtype in (torch.float16, torch.bfloat16):
            return p.dtype
        return x.dtype

    def default_x0_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """The x₀-space loss weight λ(σ̃) of the parameterisation (see :meth:`Parameterization.x0_weight`)."""
        return self.param.x0_weight(torch.as_tensor(sigma, dtype=F64), self.schedule)
