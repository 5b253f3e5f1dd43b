"""Mixed continuous–categorical states: named parts, each with its own noise process,
advanced together on one time grid.

A state is a dict ``{part name: Tensor [B, ...]}``: real-valued parts (positions) are
float tensors in the VE view (x̃ = x₀ + σ̃(t)·ε, Karras et al. 2022), categorical parts
(atom types, bond orders, residue classes) are ``long`` tensors of state indices. ``parts``
maps each name to a :class:`ContinuousPart` (a :class:`~polydiff.schedules.Schedule`, a
space for where its noise lives) or a :class:`CategoricalPart` (a
:class:`~polydiff.categorical.CategoricalProcess`; ``symmetric`` for edge variables
``[B, N, N]`` with x[i, j] = x[j, i]). All parts share the time t ∈ [0, 1] (t = 1: pure
noise); each maps it to its own noise level.

A mixed denoiser is ``D(state, t [B] float64) → {name: x̂₀ [B, ...] for continuous parts,
clean-class logits [B, ..., K] for categorical parts}`` (conditioning bound, as for the
continuous samplers). :func:`sample_mixed` runs one sampler over all parts;
:func:`mixed_cfg` and :func:`mixed_known_region` are the guidance and inpainting wrappers;
:func:`mixed_loss` trains and :func:`mixed_elbo` bounds the likelihood.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .categorical import (
    CategoricalProcess,
    ancestral_step,
    categorical_loss,
    check_time_grid,
    euler_step,
    grid_restarts,
    kl_step,
    prior_kl,
    process_from_config,
)
from .conditioning import cat_cond, null_cond, requested_cond
from .schedules import Schedule
from .spaces import EuclideanSpace

F64 = torch.float64


@dataclass
class ContinuousPart:
    """A real-valued part with Gaussian noise at σ̃(t) = σ(t)/α(t) of ``schedule``
    (exactly 0 at t = 0). ``space(cond)`` gives where its noise lives (default: Euclidean);
    ``sigma_data`` is the data's scale for the denoiser's preconditioning."""

    schedule: Schedule
    space: Callable | None = None
    sigma_data: float = 0.5
    schedule_name: str = ""

    def sigma(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=F64)
        return torch.where(t > 0, self.schedule.sigma_ve(t.clamp(min=1e-12)), torch.zeros_like(t))

    def loss_weight(self, t) -> torch.Tensor:
        """EDM's weight λ(σ̃) = (σ̃² + σ_d²)/(σ̃σ_d)² of ‖x̂₀ − x₀‖² at times ``t`` (Karras et al. 2022)."""
        s = self.sigma(t)
        return (s**2 + self.sigma_data**2) / (s * self.sigma_data) ** 2

    def make_space(self, cond):
        return self.space(cond) if self.space is not None else EuclideanSpace()

    def config(self) -> dict:
        return {
            "kind": "continuous",
            "schedule": {"name": self.schedule_name or self.schedule.name, "config": self.schedule.config()},
            "sigma_data": self.sigma_data,
        }


@dataclass
class CategoricalPart:
    """A categorical part with ``process``; ``symmetric``: edge variables ``[B, N, N]``
    whose lower triangle mirrors the upper one (the diagonal is kept as sampled)."""

    process: CategoricalProcess
    symmetric: bool = False
    loss: str = "elbo"
    extra: dict = field(default_factory=dict)

    def config(self) -> dict:
        return {"kind": "categorical", "process": self.process.config(), "symmetric": self.symmetric, "loss": self.loss}


Part = ContinuousPart | CategoricalPart


def parts_config(parts: dict[str, Part]) -> dict:
    """Every part's process config (saved in checkpoints)."""
    return {name: p.config() for name, p in parts.items()}


def parts_from_config(cfg: dict, schedules: Callable[[str, dict], Schedule]) -> dict[str, Part]:
    """Rebuild parts from :func:`parts_config`; ``schedules(name, config)`` builds a schedule
    (spaces are the modality's business and are attached by it)."""
    out: dict[str, Part] = {}
    for name, c in cfg.items():
        if c.get("kind") == "categorical":
            out[name] = CategoricalPart(
                process_from_config(c["process"]), c.get("symmetric", False), c.get("loss", "elbo")
            )
        elif c.get("kind") == "continuous":
            sch = c["schedule"]
            conf = {k: v for k, v in sch.get("config", {}).items() if k != "name"}
            out[name] = ContinuousPart(schedules(sch["name"], conf), None, c.get("sigma_data", 0.5), sch["name"])
        else:
            raise ValueError(f"part {name!r}: unknown kind {c.get('kind')!r} (continuous or categorical)")
    return out


# -- helpers ------------------------------------------------------------------------------------------
def symmetrize(x: torch.Tensor) -> torch.Tensor:
    """Edge variables ``[B, N, N, ...]``: the upper triangle mirrored onto the lower one."""
    n = x.shape[1]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=x.device), diagonal=1)
    upper = upper.reshape((1, n, n) + (1,) * (x.ndim - 3))
    xt = x.transpose(1, 2)
    return torch.where(upper, x, torch.where(upper.transpose(1, 2), xt, x))


def _spaces(parts: dict[str, Part], cond) -> dict:
    return {k: p.make_space(cond) for k, p in parts.items() if isinstance(p, ContinuousPart)}


def _bc(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(v, dtype=F64).to(x.device)
    v = v.expand(x.shape[0]) if v.ndim == 0 else v
    return v.reshape((-1,) + (1,) * (x.ndim - 1))


def noise_state(parts: dict[str, Part], x0: dict, t, rng, cond=None) -> dict:
    """x_t ~ q(x_t | x₀) for every part at times ``t`` ``[B]`` (one draw per part)."""
    spaces = _spaces(parts, cond)
    out = {}
    for name, part in parts.items():
        x = x0[name]
        if isinstance(part, ContinuousPart):
            eps = spaces[name].randn_like(x, rng)
            out[name] = spaces[name].project(x + _bc(part.sigma(t), x).to(x.dtype) * eps)
        else:
            xt = part.process.sample_forward(x, t, rng)
            out[name] = symmetrize(xt) if part.symmetric else xt
    return out


def restart_state(parts: dict[str, Part], x0: dict, t, rng, cond=None, *, noise: float = 1.0) -> dict:
    """The state a restart to time ``t`` ``[B]`` continues from, given the finished sample ``x0``.

    ``noise`` γ = 1: a full restart, x_t ~ q(x_t | x₀) for every part (:func:`noise_state`;
    Xu et al. 2023). γ < 1: a *partial* restart — continuous parts get x₀ + γ·σ̃_t·ε and
    categorical parts are kept as they are; γ = 0 adds no noise at all: the finished sample is
    relabelled as a state at t and the next call refines it. A few-call sampler's x̂₀ is
    not clean: it carries the model's own error, so a full restart sees that error plus
    σ̃_t of fresh noise while being told σ̃_t; with γ < 1 the error stands in for (part of)
    the noise the network is told about. With γ = 0 the categorical parts are not re-drawn and
    no random numbers are used."""
    if noise == 1.0:
        return noise_state(parts, x0, t, rng, cond)
    spaces = _spaces(parts, cond)
    out = {}
    for name, part in parts.items():
        x = x0[name]
        if isinstance(part, ContinuousPart) and noise > 0:
            eps = spaces[name].randn_like(x, rng)
            out[name] = spaces[name].project(x + (noise * _bc(part.sigma(t), x)).to(x.dtype) * eps)
        else:
            out[name] = x
    return out


def check_restart_noise(restart_noise, times) -> list[float]:
    """``restart_noise`` as one γ in [0, 1] per restart (rise) of ``times`` (None: all 1)."""
    rises = grid_restarts(times)
    if restart_noise is None:
        return [1.0] * rises
    try:
        vals = [float(v) for v in restart_noise]
    except (TypeError, ValueError):
        vals = []
        rises = -1
    if len(vals) != rises or not all(0.0 <= v <= 1.0 for v in vals):
        raise ValueError(
            f"restart_noise needs one scale in [0, 1] per restart of the time grid "
            f"({max(rises, 0)} in {times.tolist()}; 1 = a full restart, 0 = relabel the sample without noise), "
            f"got {restart_noise!r}"
        )
    return vals


def prior_state(parts: dict[str, Part], shapes: dict[str, tuple], rng, cond=None, device=None) -> dict:
    """The state at t = 1: σ̃(1)·ε for continuous parts, x ~ π for categorical ones (per-sample ``rng``)."""
    spaces = _spaces(parts, cond)
    n = len(rng)
    out = {}
    for name, part in parts.items():
        if isinstance(part, ContinuousPart):
            z = spaces[name].randn_like(torch.zeros((n,) + tuple(shapes[name]), device=device), rng)
            out[name] = spaces[name].project(z * float(part.sigma(1.0)))
        else:
            x = part.process.sample_prior(tuple(shapes[name]), rng, device=device)
            out[name] = symmetrize(x) if part.symmetric else x
    return out


# -- the sampler ----------------------------------------------------------------------------------------
#: ways the last step picks the categorical parts' clean values (:func:`sample_mixed`)
FINAL_STEPS = ("sample", "argmax")
#: sampling methods of :func:`sample_mixed` (continuous step / categorical step)
MIXED_METHODS = ("ancestral", "euler", "dpmpp_2m")


def sample_mixed(
    denoiser,
    state: dict,
    times,
    *,
    parts: dict[str, Part],
    rng,
    method: str = "ancestral",
    cond=None,
    callback=None,
    final: str = "sample",
    temperature: float = 1.0,
    open_end: bool = False,
    restart_noise=None,
) -> dict:
    """Sample all parts along the decreasing time grid ``times`` ``[T + 1]`` (1 → 0).

    ``method="ancestral"``: continuous parts take the exact Gaussian posterior step
    (DDPM in the VE view: mean x̂₀ + (σ̃_s²/σ̃_t²)(x_t − x̂₀), variance σ̃_s²(1 − σ̃_s²/σ̃_t²)),
    categorical parts the exact posterior step (:func:`~polydiff.categorical.ancestral_step`);
    ``method="euler"``: the probability-flow Euler step for continuous parts and the CTMC
    Euler step for categorical ones (:func:`~polydiff.categorical.euler_step`);
    ``method="dpmpp_2m"``: DPM-Solver++(2M) for continuous parts (Lu et al. 2022, the
    deterministic second-order multistep data-prediction solver in log σ̃; first and last
    step first order) and the exact posterior step for categorical ones — for few steps, where
    the ancestral position noise is coarse. The last step
    lands on x̂₀ / the clean classes. ``rng`` draws per sample (a sample does not depend on
    its batch with a :class:`polydiff.rng.SampleRNG`). ``callback(i, t, state, out)`` after
    each network call. A rise in ``times`` (only from 0: a restart,
    :func:`~polydiff.categorical.restart_time_grid`) noises the finished state forward to the
    higher time with :func:`noise_state` (no network call) and sampling goes on from there;
    ``restart_noise`` (one γ in [0, 1] per restart, default all 1) makes restart j partial
    (:func:`restart_state`: γ = 0 relabels the finished sample as the state at that time).
    ``final``: how the last step (to t = 0) picks the categorical parts' clean values:
    ``"sample"`` draws them from p̂(x₀ | x_t) (the model's own distribution), ``"argmax"``
    takes its most probable class per variable (a zero-temperature last step: a pair with
    2 % bond probability is never bonded, where drawing bonds ~150 pairs a molecule leaves
    spurious ones). ``temperature`` τ > 0: the categorical steps use p̂(x₀ | x_t) ∝
    exp(logits/τ); τ < 1 sharpens each step's clean-class guess (fewer inconsistent joint
    draws of many variables per step, at some diversity; 1: the model's own distribution).
    ``open_end``: ``times`` may stop above 0 (a segment of a longer run, e.g. a teacher's
    steps between two student times in :mod:`polydiff.mixed_distill`); the state at its last
    time is returned.
    """
    if method not in MIXED_METHODS:
        raise ValueError(f"unknown mixed sampling method {method!r}; one of {MIXED_METHODS}")
    if final not in FINAL_STEPS:
        raise ValueError(f"unknown final step {final!r}; one of {FINAL_STEPS}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    times = check_time_grid(times, "sample_mixed times", open_end=open_end)
    gammas = iter(check_restart_noise(restart_noise, times))
    spaces = _spaces(parts, cond)
    state = dict(state)
    B = next(iter(state.values())).shape[0]
    previous: dict = {}  # dpmpp_2m: each continuous part's last (x̂₀, h) for the multistep correction
    for i in range(len(times) - 1):
        t, s = times[i].expand(B), times[i + 1].expand(B)
        if times[i + 1] > times[i]:  # a restart: re-noise the finished sample, go on from there
            state = restart_state(parts, state, s, rng, cond, noise=next(gammas))
            previous = {}
            continue
        out = denoiser(state, t)
        if callback is not None:
            callback(i, float(times[i]), state, out)
        new = {}
        for name, part in parts.items():
            x = state[name]
            if isinstance(part, ContinuousPart):
                if method == "dpmpp_2m":
                    new[name], previous[name] = _dpmpp_2m_step(
                        part, spaces[name], x, out[name], t, s, previous.get(name)
                    )
                else:
                    new[name] = _continuous_step(part, spaces[name], x, out[name], t, s, rng, method)
            elif final == "argmax" and bool((s <= 0).all()):
                p0 = part.process.restrict(torch.softmax(out[name].to(F64), dim=-1), x, t)
                xs = p0.argmax(-1)
                new[name] = symmetrize(xs) if part.symmetric else xs
            else:
                step = euler_step if method == "euler" else ancestral_step
                logits = out[name] if temperature == 1.0 else out[name].to(F64) / temperature
                xs = step(part.process, x, logits, t, s, rng)
                new[name] = symmetrize(xs) if part.symmetric else xs
        state = new
    return state


def _dpmpp_2m_step(part: ContinuousPart, space, x, x0, t, s, previous):
    """One DPM-Solver++(2M) step of a continuous part from σ̃_t to σ̃_s (VE view, λ = −log σ̃):
    x_s = (σ̃_s/σ̃_t) x + (1 − σ̃_s/σ̃_t) D, with D = x̂₀ on the first and last step, else
    D = (1 + 1/2r) x̂₀ − (1/2r) x̂₀_prev, r = h_prev / h. Returns (x_s, (x̂₀, h)) for the next step."""
    st, ss = _bc(part.sigma(t), x), _bc(part.sigma(s), x)
    x0 = x0.to(F64)
    if bool((ss == 0).all()):
        return space.project(x0.to(x.dtype)), None
    h = torch.log(st) - torch.log(ss)
    d = x0
    if previous is not None:
        x0_prev, h_prev = previous
        r = h_prev / h
        d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
    ratio = ss / st
    out = ratio * x.to(F64) + (1 - ratio) * d
    return space.project(out.to(x.dtype)), (x0, h)


def _continuous_step(part: ContinuousPart, space, x, x0, t, s, rng, method: str) -> torch.Tensor:
    st, ss = _bc(part.sigma(t), x), _bc(part.sigma(s), x)
    x0 = x0.to(F64)
    if bool((ss == 0).all()):
        return space.project(x0.to(x.dtype))
    r = ss / st
    if method == "euler":
        out = x0 + r * (x.to(F64) - x0)
    else:
        out = (
            x0 + r * r * (x.to(F64) - x0) + ss * torch.sqrt((1 - r * r).clamp(min=0)) * space.randn_like(x, rng).to(F64)
        )
    return space.project(out.to(x.dtype))


# -- guidance and inpainting --------------------------------------------------------------------------------
def mixed_cfg(denoiser, parts: dict[str, Part], cond: dict | None, scale: float, *, uncond: dict | None = None):
    """Classifier-free guidance on a mixed state: x̂ = x̂_u + w·(x̂_c − x̂_u) for continuous
    parts and log p̂ = log p̂_u + w·(log p̂_c − log p̂_u) for categorical logits (a
    product-of-experts sharpening, Nisonoff et al. 2024). ``denoiser(state, t, cond)``;
    ``uncond`` defaults to the null condition; pass a negative condition instead."""

    def guided(state, t):
        n = next(iter(state.values())).shape[0]
        dev = next(iter(state.values())).device
        neg = None if uncond is None else requested_cond(uncond, n, dev)
        c = requested_cond(cond, n, dev, like=neg)
        u = null_cond(c, n) if neg is None else neg
        both = {k: torch.cat([v, v]) for k, v in state.items()}
        out = denoiser(both, torch.as_tensor(t, dtype=F64).reshape(-1).expand(n).repeat(2), cat_cond(c, u))
        res = {}
        for name, part in parts.items():
            oc, ou = out[name].chunk(2)
            if isinstance(part, CategoricalPart):
                oc, ou = torch.log_softmax(oc.to(F64), -1), torch.log_softmax(ou.to(F64), -1)
            res[name] = ou + scale * (oc - ou)
        return res

    return guided


def mixed_known_region(parts: dict[str, Part], known: dict, known_mask: dict):
    """Pin the known entries of any subset of any part (fragment inpainting: given atom
    types, bonds and positions): x̂₀ = known for continuous parts and p̂(x₀) = δ(known) for
    categorical ones, wherever ``known_mask[name]`` (bool, the part's shape) is True. Every
    sampler then lands exactly on the known entries at t = 0. Returns ``wrap(denoiser)``."""

    def wrap(denoiser):
        def pinned(state, t):
            out = dict(denoiser(state, t))
            for name, m in known_mask.items():
                part, k = parts[name], known[name].to(out[name].device)
                if isinstance(part, CategoricalPart):
                    pin = torch.full_like(out[name], -1e30).scatter(-1, k.unsqueeze(-1), 0.0)
                    out[name] = torch.where(m.to(out[name].device).unsqueeze(-1), pin, out[name])
                else:
                    out[name] = torch.where(m.to(out[name].device), k.to(out[name].dtype), out[name])
            return out

        return pinned

    return wrap


# -- training and likelihood ---------------------------------------------------------------------------------
def mixed_loss(
    denoiser,
    parts: dict[str, Part],
    x0: dict,
    t,
    rng,
    *,
    cond=None,
    weights: dict | None = None,
    masks: dict | None = None,
    steps: int = 1000,
) -> torch.Tensor:
    """Per-sample loss ``[B]``: all parts noised at the same ``t`` ``[B]``; continuous parts
    λ(σ̃)·‖x̂₀ − x₀‖² with EDM's weight (σ̃² + σ_d²)/(σ̃σ_d)² averaged over valid entries,
    categorical parts their :func:`~polydiff.categorical.categorical_loss` (``part.loss``:
    ``elbo`` or ``ce``), averaged over valid variables; ``weights[name]`` scales each part."""
    xt = noise_state(parts, x0, t, rng, cond)
    out = denoiser(xt, t)
    spaces = _spaces(parts, cond)
    total = torch.zeros(x0[next(iter(parts))].shape[0], dtype=F64, device=x0[next(iter(parts))].device)
    for name, part in parts.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        if isinstance(part, ContinuousPart):
            lam = part.loss_weight(t).to(total.device)
            sq = (out[name].to(F64) - x0[name].to(F64)) ** 2
            total = total + w * lam * spaces[name].mean(sq).to(F64)
        else:
            m = None if masks is None else masks.get(name)
            per = categorical_loss(part.process, out[name], x0[name], xt[name], t, kind=part.loss, steps=steps, mask=m)
            count = x0[name][0].numel() if m is None else m.reshape(m.shape[0], -1).sum(-1).clamp(min=1)
            total = total + w * per / count
    return total


@torch.no_grad()
def mixed_elbo(denoiser, parts: dict[str, Part], x0: dict, rng, *, steps: int = 1000, cond=None) -> dict:
    """A discrete-time variational bound (nats, per sample ``[B]``) on −log p(x₀) over ``steps``
    uniform time steps, one fresh x_t per step, split by part:

    categorical parts: KL(q(x₁|x₀) ‖ π) + Σ_k KL(q(x_{s}|x_t, x₀) ‖ p_θ(x_s|x_t)) (the last
    step's KL is the reconstruction −log p_θ(x₀ | x_{t₁})); continuous parts (a density,
    VDM-style, Kingma et al. 2021): prior KL ‖x₀‖²/(2σ̃₁²) + Σ_k ½(1/σ̃_s² − 1/σ̃_t²)‖x₀ − x̂₀‖²
    + the Gaussian reconstruction −log N(x₀; x̂₀(t₁), σ̃(t₁)²) over the space's degrees of
    freedom. Reverse steps are conditionally independent across parts and variables given
    x_t, so the joint bound is the sum of the parts'. Exact as ``steps`` → ∞ for an exact model.
    Returns ``{name: [B] nats, "total": [B] nats}``."""
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=F64)
    spaces = _spaces(parts, cond)
    first = x0[next(iter(parts))]
    B, dev = first.shape[0], first.device
    res = {name: torch.zeros(B, dtype=F64, device=dev) for name in parts}
    for name, part in parts.items():
        if isinstance(part, CategoricalPart):
            res[name] += _flat_sum(prior_kl(part.process, x0[name]))
        else:
            s1 = float(part.sigma(1.0))
            res[name] += _flat_sum(spaces[name].project(x0[name]).to(F64) ** 2) / (2 * s1 * s1)
    for i in range(steps):
        t, s = times[i].expand(B), times[i + 1].expand(B)
        xt = noise_state(parts, x0, t, rng, cond)
        out = denoiser(xt, t)
        for name, part in parts.items():
            if isinstance(part, CategoricalPart):
                res[name] += _flat_sum(kl_step(part.process, x0[name], xt[name], out[name], t, s))
                continue
            err = _flat_sum((out[name].to(F64) - x0[name].to(F64)) ** 2)
            st = float(part.sigma(times[i]))
            if i < steps - 1:
                ss = float(part.sigma(times[i + 1]))
                res[name] += 0.5 * (1 / ss**2 - 1 / st**2) * err
            else:  # Gaussian decoder at the last noise level
                dof = spaces[name].dof(x0[name]).to(F64)
                res[name] += err / (2 * st * st) + 0.5 * dof * math.log(2 * math.pi * st * st)
    res["total"] = torch.stack([res[name] for name in parts]).sum(0)
    return res


def _flat_sum(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).sum(-1).to(F64)
