"""Categorical noise processes in continuous time (discrete diffusion / discrete flow matching).

Every process here is an *interpolation towards a prior* π over the states: a variable keeps
its clean value with probability α(t) and is otherwise redrawn from π,

    q(x_t | x₀) = α(t)·δ(x_t, x₀) + (1 − α(t))·π(x_t),     α(0) = 1, α(1) = 0,

so that x₁ ~ π. The three priors of the field:

- :class:`MaskedProcess` — absorbing state (Austin et al. 2021 D3PM-absorbing; Sahoo et al.
  2024 MDLM; Shi et al. 2024 MD4): π = δ(mask), the state space has K + 1 states and index
  ``K`` is the mask token;
- :class:`UniformProcess` — π uniform over the K classes (D3PM-uniform);
- :class:`MarginalProcess` — π the marginal class frequencies of the training data
  (Vignac et al. 2023 MiDi / DiGress).

Because q(x_t | x_s) = α(t|s)·δ + (1 − α(t|s))·π with α(t|s) = α(t)/α(s), the forward
process is Markov and the posterior has the closed form

    q(x_s | x_t, x₀) = q(x_t | x_s)·q(x_s | x₀) / q(x_t | x₀).

The network predicts clean-class probabilities p̂(x₀ | x_t) per variable; the reverse step
p(x_s | x_t) = Σ_{x₀} q(x_s | x_t, x₀)·p̂(x₀ | x_t) (:meth:`CategoricalProcess.posterior`)
is exact per variable (and jointly exact in the continuous-time limit, where one variable
changes at a time). p̂ is first restricted to the clean values that could have produced
x_t (an unmasked token keeps its value: "carry-over", MDLM).

Shapes: states are ``long`` tensors ``[B, ...]``; probabilities add a last axis of size K
(clean classes) or S (states: K + 1 for the masked process, K otherwise); times are ``[B]``
float64 in [0, 1]. All probability maths runs in float64.
"""

from __future__ import annotations

import math

import torch

F64 = torch.float64


# -- keep-probability schedules α(t) ---------------------------------------------------------------
class KeepSchedule:
    """α(t): the probability that a variable still holds its clean value at time t.

    ``linear``: α = 1 − t (MDLM's log-linear noise, σ(t) = −log(1 − t)); ``cosine``:
    α = cos(πt/2) (Shi et al. 2024 MD4's cosine). Both are exact, with exact derivatives.
    """

    KINDS = ("linear", "cosine")

    def __init__(self, kind: str = "linear"):
        if kind not in self.KINDS:
            raise ValueError(f"unknown keep schedule {kind!r}; one of {self.KINDS}")
        self.kind = kind

    def alpha(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=F64)
        if self.kind == "linear":
            return (1 - t).clamp(0, 1)
        return torch.cos(0.5 * math.pi * t).clamp(0, 1)

    def d_alpha(self, t) -> torch.Tensor:
        """dα/dt (≤ 0)."""
        t = torch.as_tensor(t, dtype=F64)
        if self.kind == "linear":
            return -torch.ones_like(t)
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def config(self) -> dict:
        return {"kind": self.kind}


# -- processes ----------------------------------------------------------------------------------
class CategoricalProcess:
    """q(x_t | x₀) = α(t)·δ(x₀) + (1 − α(t))·π over ``num_states`` states, ``num_classes`` clean.

    Args:
        num_classes: K, the number of clean classes (states ``0 … K − 1``).
        schedule: a :class:`KeepSchedule` or its kind name.
    """

    name = ""

    def __init__(self, num_classes: int, schedule: KeepSchedule | str = "linear"):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.schedule = KeepSchedule(schedule) if isinstance(schedule, str) else schedule

    # the prior π over states, [S] float64
    def prior(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def num_states(self) -> int:
        return self.num_classes

    def config(self) -> dict:
        """JSON-able; :func:`process_from_config` rebuilds the process from it."""
        return {"kind": self.name, "num_classes": self.num_classes, "schedule": self.schedule.config()}

    # -- forward ---------------------------------------------------------------------------
    def marginal(self, x0: torch.Tensor, t) -> torch.Tensor:
        """q(x_t | x₀) ``[B, ..., S]`` for clean ``x0`` ``[B, ...]`` (long) at ``t`` ``[B]``."""
        a = _per_sample(self.schedule.alpha(t), x0).unsqueeze(-1)
        pi = self.prior().to(x0.device)
        return a * self._one_hot_states(x0) + (1 - a) * pi

    def sample_forward(self, x0: torch.Tensor, t, rng) -> torch.Tensor:
        """x_t ~ q(x_t | x₀); ``rng`` has ``rand(shape, device=)`` per sample (:mod:`polydiff.rng`)."""
        return sample_categorical(self.marginal(x0, t), rng)

    def sample_prior(self, shape: tuple, rng, device=None) -> torch.Tensor:
        """x₁ ~ π, ``[n, *shape]`` with n = len(rng)."""
        n = len(rng) if hasattr(rng, "__len__") else None
        if n is None:
            raise ValueError("sample_prior needs a per-sample rng (polydiff.rng.SampleRNG)")
        probs = self.prior().to(device).expand(n, *shape, self.num_states)
        return sample_categorical(probs, rng)

    def likelihood(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """q(x_t | x₀ = c) for every clean class c: ``[B, ..., K]`` (the emission of x_t)."""
        a = _per_sample(self.schedule.alpha(t), x_t).unsqueeze(-1)
        pi = self.prior().to(x_t.device)
        eye = torch.nn.functional.one_hot(x_t.clamp(max=self.num_classes - 1), self.num_classes).to(F64)
        eye = eye * (x_t < self.num_classes).unsqueeze(-1)  # the mask state is no clean class
        return a * eye + (1 - a) * pi[x_t].unsqueeze(-1)

    # -- reverse ---------------------------------------------------------------------------
    def restrict(self, p0: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """p̂(x₀ | x_t) ``[B, ..., K]`` with zero weight on clean values that cannot have
        produced x_t (carry-over), renormalised; float64."""
        return _restrict(p0, self.likelihood(x_t, t))

    def posterior(self, x_t: torch.Tensor, p0: torch.Tensor, t, s) -> torch.Tensor:
        """p(x_s | x_t) = Σ_{x₀} q(x_s | x_t, x₀)·p̂(x₀ | x_t): ``[B, ..., S]`` float64.

        ``x_t`` ``[B, ...]`` long; ``p0`` ``[B, ..., K]`` clean-class probabilities (the
        network's softmax, or a one-hot x₀ for the exact q(x_s | x_t, x₀)); ``s < t``
        (``[B]`` or scalars)."""
        lik = self.likelihood(x_t, t)  # q(x_t | x₀)
        p = _restrict(p0, lik)
        a_t = _per_sample(self.schedule.alpha(t), x_t).unsqueeze(-1)
        a_s = _per_sample(self.schedule.alpha(s), x_t).unsqueeze(-1)
        a_ts = torch.where(a_s > 0, a_t / a_s.clamp(min=1e-300), torch.zeros_like(a_t))
        pi = self.prior().to(x_t.device)
        left = a_ts * self._one_hot_states(x_t) + (1 - a_ts) * pi[x_t].unsqueeze(-1)  # q(x_t | x_s)
        w = torch.where(lik > 0, p / lik.clamp(min=1e-300), torch.zeros_like(p))
        w_states = self._pad_states(w)
        right = a_s * w_states + (1 - a_s) * pi * w.sum(-1, keepdim=True)
        post = left * right
        return post / post.sum(-1, keepdim=True).clamp(min=1e-300)

    def jump_rate(self, t) -> torch.Tensor:
        """λ(t) = −α'(t)/(1 − α(t)): the rate at which a noisy variable jumps to a clean value
        drawn from p̂(x₀ | x_t) (the mixture path's CTMC, Gat et al. 2024 eq. 25 / Campbell
        et al. 2024); ``[B]`` float64."""
        a = self.schedule.alpha(t)
        return -self.schedule.d_alpha(t) / (1 - a).clamp(min=1e-300)

    # -- helpers ---------------------------------------------------------------------------
    def _one_hot_states(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x, self.num_states).to(F64)

    def _pad_states(self, p: torch.Tensor) -> torch.Tensor:
        """``[..., K]`` over clean classes → ``[..., S]`` over states (zero on the mask state)."""
        extra = self.num_states - self.num_classes
        return torch.nn.functional.pad(p, (0, extra)) if extra else p


class MaskedProcess(CategoricalProcess):
    """Absorbing-state process: noise replaces a value by the mask token (index ``K``)."""

    name = "masked"

    @property
    def num_states(self) -> int:
        return self.num_classes + 1

    @property
    def mask_index(self) -> int:
        return self.num_classes

    def prior(self) -> torch.Tensor:
        pi = torch.zeros(self.num_states, dtype=F64)
        pi[self.mask_index] = 1.0
        return pi


class UniformProcess(CategoricalProcess):
    """Noise redraws a value uniformly over the K classes."""

    name = "uniform"

    def prior(self) -> torch.Tensor:
        return torch.full((self.num_classes,), 1.0 / self.num_classes, dtype=F64)


class MarginalProcess(CategoricalProcess):
    """Noise redraws a value from the training data's class frequencies ``marginals`` [K]."""

    name = "marginal"

    def __init__(self, num_classes: int, schedule: KeepSchedule | str = "linear", marginals=None):
        super().__init__(num_classes, schedule)
        if marginals is None:
            raise ValueError("MarginalProcess needs marginals= (class frequencies of the training data)")
        m = torch.as_tensor(marginals, dtype=F64).reshape(-1)
        if m.numel() != self.num_classes or (m < 0).any() or m.sum() <= 0:
            raise ValueError(f"marginals must be {self.num_classes} non-negative frequencies, got {marginals}")
        self.marginals = m / m.sum()

    def prior(self) -> torch.Tensor:
        return self.marginals.clone()

    def config(self) -> dict:
        return {**super().config(), "marginals": [float(v) for v in self.marginals]}

    @classmethod
    def fit(cls, x0: torch.Tensor, num_classes: int, schedule="linear", mask: torch.Tensor | None = None):
        """The process with the class frequencies of ``x0`` (``mask`` selects valid entries)."""
        vals = x0[mask] if mask is not None else x0.reshape(-1)
        counts = torch.bincount(vals.reshape(-1).long(), minlength=num_classes).to(F64)
        return cls(num_classes, schedule, counts)


PROCESSES = {"masked": MaskedProcess, "uniform": UniformProcess, "marginal": MarginalProcess}


def process_from_config(cfg: dict) -> CategoricalProcess:
    """Rebuild a process from :meth:`CategoricalProcess.config` (checkpoints)."""
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    if kind not in PROCESSES:
        raise ValueError(f"unknown categorical process {kind!r}; one of {', '.join(PROCESSES)}")
    sched = KeepSchedule(**cfg.pop("schedule", {"kind": "linear"}))
    return PROCESSES[kind](schedule=sched, **cfg)


# -- sampling helpers -----------------------------------------------------------------------------
def sample_categorical(probs: torch.Tensor, rng) -> torch.Tensor:
    """Draw from ``probs`` ``[B, ..., S]`` by inverse CDF with one uniform per variable from
    ``rng`` (per-sample for a :class:`polydiff.rng.SampleRNG`: a sample never depends on its
    batch); returns ``long`` ``[B, ...]``."""
    # a SampleRNG draws [n, *shape] (one generator per sample); a batch-level rng draws the full shape
    shape = probs.shape[1:-1] if _per_sample_rng(rng) else probs.shape[:-1]
    u = rng.rand(shape, device=probs.device, dtype=F64)
    cdf = probs.to(F64).cumsum(-1)
    u = u * cdf[..., -1]
    idx = (cdf <= u.unsqueeze(-1)).sum(-1)
    return idx.clamp(max=probs.shape[-1] - 1)


def _restrict(p0: torch.Tensor, lik: torch.Tensor) -> torch.Tensor:
    """``p0`` restricted to the clean values with q(x_t | x₀) = ``lik`` > 0, renormalised (float64)."""
    allowed = lik > 0
    p = p0.to(F64) * allowed
    z = p.sum(-1, keepdim=True)
    # a network that puts all mass on impossible values: fall back to the allowed ones
    fallback = allowed.to(F64)
    return torch.where(z > 0, p / z.clamp(min=1e-300), fallback / fallback.sum(-1, keepdim=True))


def _per_sample_rng(rng) -> bool:
    from .rng import SampleRNG

    return isinstance(rng, SampleRNG)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or ``[B]`` value broadcast against ``like`` ``[B, ...]`` (float64, like's device)."""
    v = torch.as_tensor(v, dtype=F64).to(like.device)
    if v.ndim == 0:
        return v.expand(like.shape)
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim)).expand(like.shape)


# -- reverse steps (used by the discrete and mixed samplers) ------------------------------------------
def ancestral_step(process: CategoricalProcess, x_t: torch.Tensor, logits: torch.Tensor, t, s, rng) -> torch.Tensor:
    """One exact ancestral step t → s: x_s ~ Σ_{x₀} q(x_s | x_t, x₀)·softmax(logits)(x₀)."""
    p0 = torch.softmax(logits.to(F64), dim=-1)
    return sample_categorical(process.posterior(x_t, p0, t, s), rng)


def euler_step(process: CategoricalProcess, x_t: torch.Tensor, logits: torch.Tensor, t, s, rng) -> torch.Tensor:
    """One CTMC Euler (τ-leaping) step t → s of the mixture path (discrete flow matching,
    Campbell et al. 2024; Gat et al. 2024): each variable jumps with probability
    min(1, (t − s)·λ(t)) to a value drawn from p̂(x₀ | x_t), else stays; the last step (s = 0)
    always jumps, so no noise is left."""
    p0 = process.restrict(torch.softmax(logits.to(F64), dim=-1), x_t, t)
    h = _per_sample(torch.as_tensor(t, dtype=F64) - torch.as_tensor(s, dtype=F64), x_t)
    jump = (h * _per_sample(process.jump_rate(t), x_t)).clamp(0, 1)
    jump = torch.where(_per_sample(torch.as_tensor(s, dtype=F64), x_t) <= 0, torch.ones_like(jump), jump)
    jump = jump.unsqueeze(-1)
    probs = (1 - jump) * process._one_hot_states(x_t) + jump * process._pad_states(p0)
    return sample_categorical(probs, rng)


def time_grid(steps: int, *, rho: float = 1.0, device=None) -> torch.Tensor:
    """Decreasing time grid ``[steps + 1]`` float64 from 1 to 0: t_i = 1 − (i/steps)^(1/ρ).

    ρ = 1 is uniform; ρ > 1 takes large steps at high noise and ever smaller ones towards
    t = 0, where the categorical parts commit and positions get their last ångströms (the
    same idea as EDM's ρ for σ grids, Karras et al. 2022 §3)."""
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not rho >= 1.0:
        raise ValueError(f"rho must be >= 1, got {rho}")
    u = torch.linspace(0.0, 1.0, int(steps) + 1, dtype=F64, device=device)
    return 1.0 - u ** (1.0 / float(rho))


def restart_time_grid(steps: int, *, rho: float = 1.0, restarts=()) -> torch.Tensor:
    """A time grid with restarts (Xu et al. 2023, "Restart sampling for improving generative
    processes", adapted to mixed states): ``steps`` network calls in all — the first
    ``steps − Σk`` on :func:`time_grid` (ρ = ``rho``) from 1 to 0, then for each ``(t_r, k)`` of
    ``restarts`` the finished sample is noised forward to t_r (q(x_{t_r} | x₀) for every part,
    no network call) and brought back to 0 in k uniform steps. Returns float64
    ``[steps + 1 + len(restarts)]``: decreasing segments ending in 0, each rise starting at 0.

    Why: a few large steps commit many atoms and bonds at once from independent per-variable
    draws and leave position errors; a restart re-noises a finished molecule a little and lets
    the network repair what does not fit, at a fraction of a full run's calls."""
    restarts = [(float(tr), int(k)) for tr, k in restarts]
    for tr, k in restarts:
        if not _valid_restart(tr, k):
            raise ValueError(f"restart {(tr, k)}: needs 0 < t_r <= 1 and k >= 1 steps")
    main = int(steps) - sum(k for _, k in restarts)
    if main < 1:
        raise ValueError(
            f"{steps} steps leave {main} for the main pass after restarts {restarts}: "
            "the restarts' steps must be fewer than the steps in all"
        )
    segs = [time_grid(main, rho=rho)]
    segs += [torch.linspace(tr, 0.0, k + 1, dtype=F64) for tr, k in restarts]
    return torch.cat(segs)


def _valid_restart(t_r: float, k: int) -> bool:
    """A restart re-noises to 0 < t_r ≤ 1 and takes k ≥ 1 steps back."""
    return 0.0 < t_r <= 1.0 and k >= 1


def check_time_grid(values, what: str = "time grid", *, open_end: bool = False) -> torch.Tensor:
    """``values`` as a float64 tensor, checked as a mixed sampler's time grid: finite, in
    [0, 1], ending in 0 (any time with ``open_end``: a segment of a longer run), no two equal
    neighbours, and every rise (a restart) starting at 0."""
    t = torch.as_tensor(values, dtype=F64).flatten()
    ok = t.numel() >= 2 and bool(torch.isfinite(t).all()) and (open_end or float(t[-1]) == 0.0)
    ok = ok and bool(((t >= 0) & (t <= 1)).all()) and bool((t[1:] != t[:-1]).all())
    if ok:
        rises = t[1:] > t[:-1]
        ok = bool((t[:-1][rises] == 0).all())
    if not ok:
        raise ValueError(
            f"{what}: a time grid must be finite, within [0, 1], end in 0 and decrease except for restarts "
            f"that rise from 0; got {t.tolist()}"
        )
    return t


def grid_calls(times) -> int:
    """Network calls of a (checked) time grid: its decreasing steps (restart rises cost none)."""
    t = torch.as_tensor(times, dtype=F64)
    return int((t[1:] < t[:-1]).sum())


def grid_restarts(times) -> int:
    """Restarts of a (checked) time grid: its rises (each re-noises the finished sample)."""
    t = torch.as_tensor(times, dtype=F64)
    return int((t[1:] > t[:-1]).sum())


def parse_time_grid(grid: str | None) -> tuple[float, list[tuple[float, int]]]:
    """``(ρ, restarts)`` of a mixed sampler's ``grid`` name: None or ``"uniform"`` → ρ = 1;
    ``"power:ρ"`` → ρ (≥ 1); either may end in ``"+restart:t×k,t×k…"`` (``x`` for ×), e.g.
    ``"power:3+restart:0.3x2,0.15x2,0.05x2"`` (:func:`restart_time_grid`)."""
    bad = ValueError(
        f"time grid {grid!r}: mixed samplers take 'uniform' or 'power:<rho>' with rho >= 1 (e.g. 'power:3'), "
        "optionally followed by '+restart:<t>x<k>,…' (e.g. 'power:3+restart:0.2x2,0.1x3')"
    )
    if grid is None:
        return 1.0, []
    if not isinstance(grid, str):
        raise bad
    base, _, tail = grid.partition("+")
    if base == "uniform":
        rho = 1.0
    elif base.startswith("power:"):
        try:
            rho = float(base.split(":", 1)[1])
        except ValueError:
            raise bad from None
        if not rho >= 1.0:
            raise bad
    else:
        raise bad
    restarts: list[tuple[float, int]] = []
    if tail:
        if not tail.startswith("restart:"):
            raise bad
        for item in tail[len("restart:") :].split(","):
            tr, sep, k = item.partition("x")
            try:
                restarts.append((float(tr), int(k)))
            except ValueError:
                raise bad from None
            if not sep or not _valid_restart(*restarts[-1]):
                raise bad
    return rho, restarts


def named_time_grid(steps: int, grid: str | None) -> torch.Tensor:
    """The time grid ``grid`` names (:func:`parse_time_grid`) with ``steps`` network calls."""
    rho, restarts = parse_time_grid(grid)
    return restart_time_grid(steps, rho=rho, restarts=restarts) if restarts else time_grid(steps, rho=rho)


# -- training loss and ELBO terms -----------------------------------------------------------------------
def kl_step(
    process: CategoricalProcess, x0: torch.Tensor, x_t: torch.Tensor, logits: torch.Tensor, t, s
) -> torch.Tensor:
    """KL(q(x_s | x_t, x₀) ‖ p_θ(x_s | x_t)) per variable ``[B, ...]`` (nats, float64)."""
    one_hot = torch.nn.functional.one_hot(x0, process.num_classes).to(F64)
    q = process.posterior(x_t, one_hot, t, s)
    p = process.posterior(x_t, torch.softmax(logits.to(F64), dim=-1), t, s)
    ratio = torch.where(q > 0, torch.log(q.clamp(min=1e-300)) - torch.log(p.clamp(min=1e-300)), torch.zeros_like(q))
    return (q * ratio).sum(-1).clamp(min=0)


def prior_kl(process: CategoricalProcess, x0: torch.Tensor) -> torch.Tensor:
    """KL(q(x₁ | x₀) ‖ π) per variable ``[B, ...]`` (0 when α(1) = 0, as for both schedules)."""
    q = process.marginal(x0, torch.ones(x0.shape[0], dtype=F64))
    pi = process.prior().to(x0.device)
    ratio = torch.where(q > 0, torch.log(q.clamp(min=1e-300)) - torch.log(pi.clamp(min=1e-300)), torch.zeros_like(q))
    return (q * ratio).sum(-1)


def categorical_loss(
    process: CategoricalProcess,
    logits: torch.Tensor,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t,
    *,
    kind: str = "elbo",
    steps: int = 1000,
    mask: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample loss ``[B]`` (nats) of clean-class ``logits`` ``[B, ..., K]`` for ``x0`` noised to ``x_t`` at ``t``.

    ``kind="elbo"``: ``steps``·KL(q(x_s | x_t, x₀) ‖ p_θ(x_s | x_t)) with s = t − 1/steps, the
    diffusion term of the ELBO with t ~ U(1/steps, 1] (for the masked process it is MDLM's
    −α'(t)/(1 − α(t))·CE on masked variables, exactly, as steps → ∞); ``kind="ce"``: plain
    cross-entropy −log p̂(x₀ | x_t) on every variable. ``mask`` (bool ``[B, ...]``) drops
    padding; ``class_weights`` ``[K]`` weights each variable by its clean class."""
    if kind == "elbo":
        s = (torch.as_tensor(t, dtype=F64) - 1.0 / steps).clamp(min=0)
        per_var = steps * kl_step(process, x0, x_t, logits, t, s)
    elif kind == "ce":
        per_var = torch.nn.functional.cross_entropy(logits.to(F64).movedim(-1, 1), x0, reduction="none")
    else:
        raise ValueError(f"unknown categorical loss {kind!r}; one of 'elbo', 'ce'")
    if class_weights is not None:
        per_var = per_var * torch.as_tensor(class_weights, dtype=F64, device=x0.device)[x0]
    if mask is not None:
        per_var = per_var * mask.to(F64)
    return per_var.reshape(per_var.shape[0], -1).sum(-1)
