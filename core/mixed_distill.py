"""Trajectory distillation of a mixed continuous–categorical model into a few-call student.

A few-step sampler of a mixed state (:func:`polydiff.mixed.sample_mixed`) fails in two ways
that more steps fix: a continuous part's x̂₀ at high noise is a conditional mean (atoms
pulled together), and every categorical variable (atom types, bond orders) is drawn on its own
in each step, so a big step decides many correlated variables independently. The student
here learns, for every step t → s of its own grid, to land where the teacher lands after
many steps between the same two times:

1. a batch of training data x₀ is noised to x_t ~ q(x_t | x₀) (:func:`polydiff.mixed.noise_state`)
   at one of the student grid's step starts t;
2. the teacher runs from x_t to s: ``teacher_steps`` DPM-Solver++(2M) steps (deterministic
   for continuous parts, exact posterior draws for categorical ones); a step to s = 0 is a
   whole completion — the teacher's steps to 0 with ``final="argmax"``, then the restarts of
   the teacher's default grid that lie below t (Xu et al. 2023) — so its target is a finished
   sample of the teacher's best sampler;
3. the student's one step is trained to match that endpoint x_s^T:

   - a continuous part takes the first-order (DDIM) step x_s = r·x_t + (1 − r)·x̂₀ with
     r = σ̃_s/σ̃_t, so its target is x̂₀* = (x_s^T − r·x_t)/(1 − r) (progressive
     distillation's inversion, Salimans & Ho 2022; x̂₀* = x_s^T at s = 0), under the
     training loss's weight λ(σ̃_t) = (σ̃_t² + σ_d²)/(σ̃_t σ_d)²;
   - a categorical part takes the exact posterior step p_S(x_s | x_t) = Σ_{x₀} q(x_s | x_t, x₀)
     p̂_S(x₀ | x_t); it is trained by the negative log-likelihood of the teacher's draw x_s^T
     under it (at s = 0: cross-entropy of the clean-class logits against the teacher's
     sample), which is minimised by the teacher's many-step marginals — the self-distillation
     through time of discrete diffusion (Deschenaux & Gulcehre 2024, "Beyond autoregression:
     fast LLMs via self-distillation through time"), applied per part.

The student samples with ``sampler="dpmpp_2m"`` on its grid (every step of a grid whose
segments have at most two steps is first order, i.e. exactly the DDIM step it was trained
for; restarts re-noise as in :func:`~polydiff.categorical.restart_time_grid`, or partially with
``restart_noise``: :func:`polydiff.mixed.restart_state`) and
``final="argmax"``. Its grid is stored like a tuned one
(``extra["tuned_grids"]["dpmpp_2m"][str(nfe)]``) and named by its sampling defaults.
"""

from __future__ import annotations

import torch

from .categorical import check_time_grid, grid_calls, grid_restarts, named_time_grid, parse_time_grid
from .errors import PolydiffError
from .mixed import ContinuousPart, _spaces, check_restart_noise, noise_state, prior_state, sample_mixed
from .mixed_model import part_masks

F64 = torch.float64

#: the sampler the student is trained for and samples with
STUDENT_SAMPLER = "dpmpp_2m"


def student_intervals(times) -> list[tuple[float, float]]:
    """The network-call steps ``(t, s)`` of a mixed time grid (restart rises skipped)."""
    t = check_time_grid(times, "student grid").tolist()
    return [(a, b) for a, b in zip(t[:-1], t[1:]) if b < a]


def default_student_grid(teacher, steps: int) -> list[float]:
    """The student's time grid for ``steps`` calls: the teacher's tuned ancestral grid at that
    count when one is stored (the tuner's choice of main steps and restarts), else ``power:3``."""
    from .samplers import tuning

    stored = tuning.lookup(teacher, "ancestral", steps)
    g = stored if stored is not None else named_time_grid(steps, "power:3")
    return [float(v) for v in g]


def teacher_segment(t: float, s: float, steps: int, restarts: list[tuple[float, int]]) -> torch.Tensor:
    """The teacher's time grid from ``t`` to ``s``: ``steps`` steps on t·power:3 to s = 0, then
    the ``restarts`` below t; to s > 0, ``steps`` uniform steps (an open-ended segment)."""
    if s > 0:
        return torch.linspace(t, s, steps + 1, dtype=F64)
    main = t * named_time_grid(steps, "power:3")
    grid = [float(v) for v in main]
    for tr, k in restarts:
        if tr < t:
            grid += [float(v) for v in tr * named_time_grid(k, "uniform")]
    return torch.tensor(grid, dtype=F64)


class TrajectoryLoss:
    """Per-sample loss ``[B]`` of trajectory distillation (module docstring) for a mixed model.

    Args:
        teacher: the teacher's mixed denoiser ``D(state, t, cond)`` (eval mode, EMA weights).
        parts: the model's parts.
        grid: the student's time grid (float64, a checked mixed grid).
        weights: per-part loss weights (the modality's ``part_loss_weights``; None: 1).
        teacher_steps: the teacher's steps per student step (plus restarts on steps to 0).
        restarts: the teacher's completion restarts ``[(t_r, k)]``.
        on_policy: the share of batches (of steps after the first) whose x_t is the student's
            own sampler state rather than noised data (:meth:`part_losses`).
        step_shares: relative frequency of each student step in the batches (default: equal);
            e.g. more weight on the last, which sets the final geometry.
        restart_noise: the noise scale γ of each restart of the student's grid
            (:func:`polydiff.mixed.restart_state`; None: all 1). A step after a partial restart
            starts, on the student's own samples, from its relabelled x̂₀; from data, x_t is
            q(x_t | x₀) as for any step.
    """

    def __init__(
        self,
        teacher,
        parts,
        grid,
        *,
        weights=None,
        teacher_steps: int = 8,
        restarts=(),
        on_policy: float = 0.0,
        step_shares=None,
        restart_noise=None,
    ):
        self.teacher, self.parts = teacher, parts
        self.grid = [float(v) for v in check_time_grid(grid, "student grid")]
        try:
            self.restart_noise = check_restart_noise(restart_noise, torch.tensor(self.grid, dtype=F64))
        except ValueError as e:
            raise PolydiffError(f"the student's grid: {e}") from None
        self.intervals = student_intervals(self.grid)
        self.on_policy = float(on_policy)
        if not 0.0 <= self.on_policy <= 1.0:
            raise PolydiffError(f"on_policy is a share of batches in [0, 1], got {on_policy}")
        shares = [1.0] * len(self.intervals) if step_shares is None else [float(v) for v in step_shares]
        if len(shares) != len(self.intervals) or min(shares) < 0 or sum(shares) <= 0:
            raise PolydiffError(
                f"step_shares needs one weight >= 0 per student step ({len(self.intervals)}), not all 0; "
                f"got {step_shares}"
            )
        self.shares = torch.tensor(shares, dtype=F64)
        self.weights = dict(weights or {})
        self.teacher_steps = int(teacher_steps)
        self.restarts = list(restarts)
        if self.teacher_steps < 1:
            raise PolydiffError(f"teacher_steps must be >= 1, got {teacher_steps}")

    def __call__(self, student, x0: dict, cond, rng) -> torch.Tensor:
        """The weighted sum of :meth:`part_losses` at one student step drawn per batch
        (``step_shares``); with probability ``on_policy`` the step starts from the student's
        own samples."""
        i = int(torch.multinomial(self.shares, 1, generator=rng.generators[0]))
        own = i > 0 and float(torch.rand(1, generator=rng.generators[0])) < self.on_policy
        losses = self.part_losses(student, x0, cond, rng, self.intervals[i], own=own)
        return sum(float(self.weights.get(name, 1.0)) * v for name, v in losses.items())

    def rollout(self, student, x0: dict, cond, rng, t: float) -> dict:
        """The student's own state at grid time ``t``: its sampler (no gradient) from the prior
        (shaped like ``x0``, conditioned on ``cond``) along the grid up to t's first visit."""
        k = next(j for j, v in enumerate(self.grid) if v == t and (j == 0 or self.grid[j - 1] != v))
        shapes = {name: tuple(v.shape[1:]) for name, v in x0.items()}
        dev = next(iter(x0.values())).device
        state = prior_state(self.parts, shapes, rng, cond=cond, device=dev)
        if k == 0:
            return state
        head = torch.tensor(self.grid[: k + 1], dtype=F64)
        with torch.no_grad():
            return sample_mixed(
                lambda st, time: student(st, time, cond),
                state,
                head,
                parts=self.parts,
                rng=rng,
                method=STUDENT_SAMPLER,
                cond=cond,
                final="argmax",
                open_end=True,
                restart_noise=self.restart_noise[: grid_restarts(head)],
            )

    def part_losses(self, student, x0: dict, cond, rng, interval: tuple[float, float], *, own: bool = False) -> dict:
        """``{part: [B] loss}`` of the student step ``interval`` = (t, s) from x_t ~ q(x_t | x₀)
        on data ``x0`` (``own``: from the student's own sampler's state at t, :meth:`rollout`,
        so that a step learns to repair what the student's earlier steps got wrong — the teacher
        shows the way back from there): continuous parts λ(σ̃_t)·mean ‖x̂₀ − x̂₀*‖², categorical
        parts the mean NLL of the teacher's x_s over valid variables (module docstring)."""
        t, s = interval
        B = next(iter(x0.values())).shape[0]
        tt, ss = torch.full((B,), t, dtype=F64), torch.full((B,), s, dtype=F64)
        xt = self.rollout(student, x0, cond, rng, t) if own else noise_state(self.parts, x0, tt, rng, cond)
        with torch.no_grad():
            target = sample_mixed(
                lambda state, time: self.teacher(state, time, cond),
                xt,
                teacher_segment(t, s, self.teacher_steps, self.restarts),
                parts=self.parts,
                rng=rng,
                method=STUDENT_SAMPLER,
                cond=cond,
                final="argmax",
                open_end=s > 0,
            )
        out = student(xt, tt, cond)
        masks = part_masks(self.parts, x0, cond) or {}
        spaces = _spaces(self.parts, cond)
        res = {}
        for name, part in self.parts.items():
            if isinstance(part, ContinuousPart):
                x = xt[name].to(F64)
                sig_t, sig_s = part.sigma(tt).to(x.device), part.sigma(ss).to(x.device)
                r = (sig_s / sig_t).reshape((-1,) + (1,) * (x.ndim - 1))
                want = (target[name].to(F64) - r * x) / (1 - r)
                lam = part.loss_weight(tt).to(x.device)
                res[name] = lam * spaces[name].mean((out[name].to(F64) - want) ** 2).to(F64)
                continue
            logits = out[name].to(F64)
            if s > 0:
                probs = part.process.posterior(xt[name], torch.softmax(logits, -1), tt, ss)
                logp = torch.log(probs.clamp(min=1e-300))
            else:
                logp = torch.log_softmax(logits, -1)
            nll = -logp.gather(-1, target[name].unsqueeze(-1)).squeeze(-1).reshape(B, -1)
            m = masks.get(name)
            if m is None:
                res[name] = nll.mean(-1)
            else:
                m = m.reshape(B, -1).to(F64)
                res[name] = (nll * m).sum(-1) / m.sum(-1).clamp(min=1)
        return res


def teacher_restarts(teacher) -> list[tuple[float, int]]:
    """The restarts of the teacher's default grid (``sample_defaults["grid"]``), or none."""
    grid = (teacher.extra.get("sample_defaults") or {}).get("grid")
    if not isinstance(grid, str) or grid == "tuned":
        return []
    return parse_time_grid(grid)[1]


def set_mixed_student_defaults(student, grid, *, final: str = "argmax", restart_noise=None) -> None:
    """Point a mixed student's sampling defaults at its grid: stored as the tuned
    ``dpmpp_2m`` grid of its call count, ``grid="tuned"``, ``final`` and, when given (not all
    1), the grid's ``restart_noise``."""
    g = [float(v) for v in check_time_grid(grid, "student grid")]
    gammas = check_restart_noise(restart_noise, torch.tensor(g, dtype=F64))
    nfe = grid_calls(g)
    student.extra.pop("starter", None)
    student.extra["tuned_grids"] = {STUDENT_SAMPLER: {str(nfe): g}}
    defaults = {"sampler": STUDENT_SAMPLER, "nfe": nfe, "grid": "tuned", "final": final}
    if any(v != 1.0 for v in gammas):
        defaults["restart_noise"] = gammas
    student.extra["sample_defaults"] = defaults
