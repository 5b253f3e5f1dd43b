"""Distillation of a trained model into a few-step student, for any modality's network.

``distill(teacher, DistillConfig(method=..., steps=2))`` returns a new
:class:`~polydiff.model.DiffusionModel` (save it with ``student.save(dir)``; the CLI is
``polydiff distill CHECKPOINT --method consistency --steps 2 --out DIR``). Everything goes
through the plugin API: the teacher's ``denoiser`` (D(x̃, σ̃, cond) → x̂₀ in the VE view),
its modality's data set, collate and ``space`` (noise, projection, masked mean), so one
implementation serves images, molecules and third-party modalities alike. Modalities with
parts (mixed continuous–categorical states, e.g. ``molecule_joint``) are distilled with
``trajectory`` (:mod:`polydiff.mixed_distill`); the σ̃-grid methods below are for one-tensor
modalities.

Methods (all on the teacher's σ̃ grid, σ̃ ∈ [σ̃_min, σ̃_max] of the schedule):

``consistency`` — consistency distillation (Song et al. 2023, Alg. 2). On a Karras grid
σ_1 < … < σ_N, x_{n+1} = x₀ + σ_{n+1}·z; one teacher Heun (or Euler) step of the PF-ODE gives
x̂_n; the student f_θ (parameterisation ``consistency_<teacher's>``, exact at σ̃_min) is trained
so that f_θ(x_{n+1}, σ_{n+1}) matches the stop-gradient target f_θ⁻(x̂_n, σ_n) (θ⁻ = θ, as in
Song & Dhariwal 2023, or an EMA with ``target_ema``) under the pseudo-Huber distance with
weight 1/(σ_{n+1} − σ_n) (ibid.). Sampling: the ``consistency`` sampler (Song et al. 2023,
Alg. 1) on [σ̃_max, τ₁, …, 0].

``progressive`` — progressive distillation (Salimans & Ho 2022). Rounds from
``teacher_steps`` halve the step count down to ``steps``; each student (initialised from its
teacher) learns to match two teacher DDIM (= Euler in the σ̃ view) steps s → s' → s'' with one:
x̃ = (x'' − (s''/s)·x)/(1 − s''/s), weight max(σ_d²/σ̃², 1) (truncated SNR). Sampling: ``euler``
on the student's grid.

``reflow`` — rectified-flow reflow (Liu et al. 2023) for flow models (``rectified_flow``
schedule or ``flow`` parameterisation): pairs (z, x₁ = ODE_teacher(z)) from the teacher,
then flow matching on the straight line between them, so few Euler steps suffice.

``trajectory`` — for mixed states: each step t → s of the student's time grid (the teacher's
tuned grid at ``steps``, restarts included) learns to land where ``segment_steps`` teacher
steps land (to s = 0: the teacher's whole completion with its restarts; without them,
``teacher_restarts=False``, the positions' target is a deterministic function of x_t, as in
progressive distillation — on the molecule starter at 4 calls it measured no better,
benchmarks/README.md); positions by the
DDIM inversion, categorical parts by the NLL of the teacher's draw (details in
:mod:`polydiff.mixed_distill`). Sampling: ``dpmpp_2m`` on the student's time grid,
``final="argmax"``.

Guidance is distilled in (Meng et al. 2023): a teacher whose sampling defaults carry a CFG
scale w is distilled as the guided denoiser x̂_u + w(x̂_c − x̂_u); the student samples with
its conditioning and no CFG (half the network calls per step again).

The student is the teacher's network, or with ``student_kwargs`` a bigger one of the same kind
(e.g. more layers) that starts as the teacher: the teacher's weights fill the parameters they
name and the network's ``grow_init_(teacher_kwargs)`` turns the rest into the identity
(:func:`new_student`; ``egnn_joint`` defines it).

The student's checkpoint is a normal one: ``extra["sample_defaults"]`` names its sampler,
``nfe`` = ``steps`` and ``grid="tuned"``, with the grid in
``extra["tuned_grids"][sampler][str(steps)]`` (σ̃ floats, strictly decreasing, last 0);
``extra["distill"]`` records the method, teacher and training run.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from . import discretization
from . import guidance as guidance_mod
from .categorical import check_time_grid, grid_calls
from .conditioning import to_device
from .errors import PolydiffError
from .mixed_denoiser import MixedDenoiser
from .mixed_distill import TrajectoryLoss, set_mixed_student_defaults, teacher_restarts
from .mixed_distill import default_student_grid as default_mixed_grid
from .parameterization import CONSISTENCY, Denoiser
from .rng import SampleRNG, sample_seed
from .training import checkpointing
from .training.data_order import GlobalBatchOrder
from .training.distributed import DistContext
from .training.ema import ema_decay_at, ema_update
from .training.run_log import RunLog

if TYPE_CHECKING:
    from .model import DiffusionModel

F64 = torch.float64
METHODS = ("consistency", "progressive", "reflow", "trajectory")
STUDENT_SAMPLER = {"consistency": "consistency", "progressive": "euler", "reflow": "euler"}
#: the method of modalities with parts (mixed continuous–categorical states)
MIXED_METHODS = ("trajectory",)


@dataclass
class DistillConfig:
    """Options of :func:`distill`. ``steps``: the student's NFE (1–8 sensible).
    ``train_steps`` optimiser steps in total (split evenly over progressive rounds) or until
    ``max_seconds`` of training. ``guidance``: the CFG scale distilled in (None: the
    teacher's ``sample_defaults["guidance"]``, else 1 = none). ``sigmas``: the student's
    sampling grid (σ̃, decreasing, ending in 0, ``steps + 1`` entries; None: a Karras ρ = 7
    grid for ``consistency``, the distillation grid otherwise)."""

    method: str = "consistency"
    steps: int = 2
    train_steps: int = 2000
    max_seconds: float | None = None
    batch_size: int = 64
    lr: float = 5e-5
    warmup_steps: int = 50
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999  # the student's sampling EMA (saved as ema.safetensors)
    guidance: float | None = None
    cond: dict | None = None  # sampling condition (None: the teacher's sample defaults)
    sigmas: list | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    log_every: int = 50
    out_dir: str | None = None  # logs and training checkpoints (resumable)
    checkpoint_every: int = 0
    resume: bool = False
    dataset: str | None = None
    dataset_options: dict = field(default_factory=dict)
    # consistency
    n_grid: int = 18  # N of the distillation grid (Song et al. 2023: 18 on CIFAR-10)
    teacher_solver: str = "heun"  # heun | euler
    target_ema: float = 0.0  # μ of the target network θ⁻ (0: θ⁻ = stop-grad θ)
    huber_c: float = 0.00054  # pseudo-Huber c on the per-entry RMS, scaled by σ_d/0.5
    # progressive
    teacher_steps: int | None = None  # first round's teacher steps (default: steps·2^k ≥ 32)
    # reflow
    reflow_pairs: int = 1024
    reflow_nfe: int = 30
    # trajectory (mixed states)
    time_grid: list | None = None  # the student's time grid (None: the teacher's tuned grid at ``steps``)
    segment_steps: int = 8  # teacher steps per student step
    on_policy: float = 0.0  # share of batches that start from the student's own sampler state
    step_shares: list | None = None  # relative frequency of each student step (None: equal)
    teacher_restarts: bool = True  # completions to 0 end with the teacher's restarts (False: its ODE only)
    # the noise scale γ of each restart of the student's grid (None: all 1; 0 relabels the
    # student's finished sample as the state at the restart time: a refinement call)
    restart_noise: list | None = None
    # any method: start the student from this checkpoint's weights instead of the teacher's
    init_from: str | None = None  # a checkpoint folder or starter:NAME
    # any method: the student's network keywords over the teacher's (a bigger student, e.g.
    # {"layers": 9}); it starts from the teacher's (or init_from's) weights where they fit and
    # the network's ``grow_init_`` makes the parts they lack start as the identity
    student_kwargs: dict | None = None

    def validate(self) -> None:
        if self.method not in METHODS:
            raise PolydiffError(f"unknown distillation method {self.method!r}; one of {', '.join(METHODS)}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 64:
            raise PolydiffError(f"student steps must be an integer in 1…64, got {self.steps!r}")
        if self.train_steps < 0 or self.batch_size < 1:
            raise PolydiffError("train_steps must be ≥ 0 and batch_size ≥ 1")
        if self.teacher_solver not in ("heun", "euler"):
            raise PolydiffError(f"teacher_solver must be 'heun' or 'euler', got {self.teacher_solver!r}")
        if self.n_grid < 2:
            raise PolydiffError("n_grid must be ≥ 2")
        if self.method == "progressive":
            t = self.teacher_steps
            if t is not None and (t <= self.steps or t % self.steps or (t // self.steps) & (t // self.steps - 1)):
                raise PolydiffError(f"teacher_steps ({t}) must be steps ({self.steps}) times a power of 2 (> 1)")
        if self.sigmas is not None and len(self.sigmas) != self.steps + 1:
            raise PolydiffError(f"sigmas has {len(self.sigmas)} entries; a {self.steps}-step grid has {self.steps + 1}")
        if self.init_from is not None and not isinstance(self.init_from, (str, Path)):
            raise PolydiffError(
                f"init_from is a checkpoint folder or 'starter:NAME' (recorded with the student), "
                f"got {type(self.init_from).__name__}"
            )
        if isinstance(self.init_from, Path):
            self.init_from = str(self.init_from)  # recorded in the student's JSON config
        if self.student_kwargs is not None and not isinstance(self.student_kwargs, dict):
            raise PolydiffError(
                f"student_kwargs is a dict of network keywords (e.g. {{'layers': 9}}), got {self.student_kwargs!r}"
            )
        if self.restart_noise is not None and self.method != "trajectory":
            raise PolydiffError(
                f"restart_noise scales the restarts of a mixed student's time grid (method 'trajectory'), "
                f"not of method {self.method!r}"
            )
        if (self.checkpoint_every or self.resume) and not self.out_dir:
            raise PolydiffError("checkpoint_every and resume need out_dir")


def _bc(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[B]`` per-sample coefficients → broadcastable against ``x`` ``[B, ...]`` (x's dtype)."""
    return v.to(device=x.device, dtype=x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))


def _as_model(teacher):
    from . import load

    if isinstance(teacher, (str, Path)):
        return load(str(teacher) if str(teacher).startswith("starter:") else Path(teacher))
    return teacher


def _teacher_name(teacher) -> str:
    """How to load the teacher again: its path or ``starter:NAME`` (a loaded starter), else ""."""
    if isinstance(teacher, (str, Path)):
        return str(teacher)
    name = (teacher.extra.get("starter") or {}).get("name", "")
    return f"starter:{name}" if name else ""


def guided_teacher(model, guidance: float):
    """``T(x̃ [B, ...], σ̃ [B], cond) → x̂₀``: the model's EMA denoiser with CFG ``guidance``
    composed in (the plain denoiser at 1)."""
    den = model.denoiser(True)
    specs = guidance_mod.resolve(float(guidance))
    return guidance_mod.build(den, specs, model=model) if specs else den


def _euler(T, x, s, s_next, cond, space):
    """One PF-ODE Euler (= DDIM) step of T from σ̃ ``s`` to ``s_next`` (``[B]``, s_next ≥ 0)."""
    x0 = T(x, s, cond).to(x.dtype)
    return space.project(x0 + (x - x0) * _bc(s_next / s, x))


def _heun(T, x, s, s_next, cond, space):
    """One EDM Heun step of T from σ̃ ``s`` to ``s_next`` (``[B]``, both > 0)."""
    d0 = (x - T(x, s, cond).to(x.dtype)) / _bc(s, x)
    xe = space.project(x + d0 * _bc(s_next - s, x))
    d1 = (xe - T(xe, s_next, cond).to(x.dtype)) / _bc(s_next, x)
    return space.project(x + (d0 + d1) * _bc((s_next - s) / 2, x))


def karras_ascending(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """``[n]`` float64 Karras σ̃ from σ̃_min up to σ̃_max (the consistency distillation grid)."""
    i = torch.arange(n, dtype=F64) / (n - 1)
    return (sigma_min ** (1 / rho) + i * (sigma_max ** (1 / rho) - sigma_min ** (1 / rho))) ** rho


def default_student_grid(method: str, steps: int, schedule, sigma_min: float, sigma_max: float) -> list[float]:
    """The student's σ̃ grid (``steps + 1`` floats, last 0) when none is given: for
    ``consistency`` the first ``steps`` points of a Karras ρ = 7 grid of ``steps + 1`` points
    (σ̃_max, …; σ̃_min dropped), for ``progressive`` the Karras grid it was distilled on, for
    ``reflow`` uniform in the schedule's t."""
    if method == "consistency":
        g = discretization.karras(steps + 1, sigma_min, sigma_max)[:steps].tolist()
        return [float(v) for v in g] + [0.0]
    if method == "progressive":
        n0 = progressive_teacher_steps(DistillConfig(method=method, steps=steps))
        return [float(v) for v in discretization.karras(n0, sigma_min, sigma_max)[:: n0 // steps]]
    return [float(v) for v in discretization.make_grid("uniform_t", schedule, steps)]


# -- losses: per-sample [B], one per method --------------------------------------------------------
class _Consistency:
    """Consistency distillation loss (module docstring). ``student`` is the live denoiser,
    ``target`` the θ⁻ denoiser (the same network under ``no_grad`` when μ = 0)."""

    def __init__(self, cfg: DistillConfig, T, sigma_min: float, sigma_max: float, sigma_data: float):
        self.cfg, self.T = cfg, T
        self.grid = karras_ascending(cfg.n_grid, sigma_min, sigma_max)
        self.c = cfg.huber_c * sigma_data / 0.5
        self.step = _heun if cfg.teacher_solver == "heun" else _euler

    def __call__(self, student, target, x0, cond, space, rng: SampleRNG) -> torch.Tensor:
        n = torch.cat([torch.randint(0, self.cfg.n_grid - 1, (1,), generator=g) for g in rng.generators])
        s_lo, s_hi = self.grid[n], self.grid[n + 1]
        z = space.randn_like(x0, rng)
        x_hi = space.project(x0 + z * _bc(s_hi, x0))
        with torch.no_grad():
            x_lo = self.step(self.T, x_hi, s_hi, s_lo, cond, space)
            tgt = target(x_lo, s_lo, cond).float()
        pred = student(x_hi, s_hi, cond).float()
        d = torch.sqrt(space.mean((pred - tgt) ** 2) + self.c**2) - self.c
        w = (1 / (s_hi - s_lo)).to(device=x0.device, dtype=torch.float32)
        return w * d


class _Progressive:
    """One progressive-distillation round: a student of ``n`` steps on the grid
    ``grid2`` (the teacher's 2n steps, ``[2n + 1]`` floats ending in 0)."""

    def __init__(self, T, grid2: torch.Tensor, sigma_data: float):
        self.T, self.grid2, self.sd = T, grid2, sigma_data
        self.n = (len(grid2) - 1) // 2

    def __call__(self, student, target, x0, cond, space, rng: SampleRNG) -> torch.Tensor:
        i = torch.cat([torch.randint(0, self.n, (1,), generator=g) for g in rng.generators])
        s, s1, s2 = self.grid2[2 * i], self.grid2[2 * i + 1], self.grid2[2 * i + 2]
        z = space.randn_like(x0, rng)
        x = space.project(x0 + z * _bc(s, x0))
        with torch.no_grad():
            x2 = _euler(self.T, _euler(self.T, x, s, s1, cond, space), s1, s2, cond, space)
            r = _bc(s2 / s, x)
            tgt = (x2 - r * x) / (1 - r)
        pred = student(x, s, cond).float()
        w = torch.clamp(self.sd**2 / s**2, min=1.0).to(device=x0.device, dtype=torch.float32)
        return w * space.mean((pred - tgt.float()) ** 2)


class _Reflow:
    """Flow matching on teacher pairs: x̃ = x₁ + σ̃·z with the pair's own z, σ̃ uniform in t;
    weight: the parameterisation's default (rectified flow: velocity MSE)."""

    def __init__(self, schedule, weight: Callable):
        self.schedule, self.weight = schedule, weight

    def __call__(self, student, target, x1, cond, space, rng: SampleRNG, z: torch.Tensor) -> torch.Tensor:
        sch = self.schedule
        u = torch.cat([torch.rand(1, generator=g, dtype=F64) for g in rng.generators])
        s = sch.sigma_ve(sch.t_min + u * (sch.t_max - sch.t_min))
        x = space.project(x1 + z * _bc(s, x1))
        pred = student(x, s, cond).float()
        w = self.weight(s).to(device=x1.device, dtype=torch.float32)
        return w * space.mean((pred - x1.float()) ** 2)


# -- the run ------------------------------------------------------------------------------------
@dataclass
class DistillResult:
    student: DiffusionModel
    losses: list  # (step, mean loss)
    steps: int
    seconds: float
    rounds: list  # progressive: (teacher steps, student steps, optimiser steps) per round
    sigmas: list


def _check_teacher(teacher, cfg: DistillConfig) -> None:
    if (teacher.parts is not None) != (cfg.method in MIXED_METHODS):
        kind = "has parts (a mixed continuous–categorical state)" if teacher.parts is not None else "has one tensor"
        allowed = MIXED_METHODS if teacher.parts is not None else tuple(m for m in METHODS if m not in MIXED_METHODS)
        raise PolydiffError(
            f"modality {teacher.modality.name!r} {kind}: distil it with --method {' or '.join(allowed)} "
            f"(not {cfg.method!r})"
        )
    if cfg.method == "reflow" and not (teacher.parameterization == "flow" or teacher.schedule_name == "rectified_flow"):
        raise PolydiffError(
            f"reflow needs a rectified-flow model (schedule 'rectified_flow' or parameterisation 'flow'); "
            f"this one has schedule {teacher.schedule_name!r}, parameterisation {teacher.parameterization!r} — "
            "use --method consistency or progressive"
        )
    if cfg.method == "consistency" and teacher.parameterization.startswith("consistency_"):
        raise PolydiffError("the teacher is already a consistency model; distil its own teacher instead")


def _sigma_range(teacher) -> tuple[float, float]:
    d = teacher.extra.get("sample_defaults") or {}
    lo, hi = teacher.schedule.sigma_ve_min, teacher.schedule.sigma_ve_max
    if teacher.parameterization == "edm" and teacher.schedule_name == "edm":
        lo, hi = 0.002, 80.0  # DiffusionModel.sigma_grid's Karras range
    return float(d.get("sigma_min", lo)), float(d.get("sigma_max", hi))


def new_student(teacher, method: str, student_kwargs: dict | None = None):
    """A copy of ``teacher`` whose network (and EMA) start from the teacher's EMA weights; for
    ``consistency`` its parameterisation becomes ``consistency_<teacher's>``. With
    ``student_kwargs`` the student's network is built with those keywords over the teacher's
    (a bigger network: :func:`_load_weights` starts it from the teacher's weights and the
    network's ``grow_init_`` makes its new parts the identity, so it starts as the teacher)."""
    student = copy.deepcopy(teacher)
    if student_kwargs:
        kw = {**teacher.network_kwargs, **student_kwargs}
        try:
            net = teacher.modality.build_network(teacher.network_name, **kw)
        except (TypeError, ValueError) as e:
            raise PolydiffError(f"student_kwargs {student_kwargs}: network {teacher.network_name!r}: {e}") from e
        student.network = net.to(teacher.device)
        student.network_kwargs = kw
    _load_weights(student, teacher)
    student.training_info = {}
    if method == "consistency":
        kind = f"consistency_{teacher.parameterization}"
        if kind not in CONSISTENCY:
            raise PolydiffError(
                f"no consistency parameterisation over {teacher.parameterization!r}; built for: "
                f"{', '.join(sorted(CONSISTENCY))}"
            )
        student.parameterization = kind
    return student


def warm_start(student, source) -> None:
    """Start ``student``'s network (and EMA) from ``source``'s EMA weights (a checkpoint folder,
    ``starter:NAME`` or a model): e.g. an earlier student, to train on with another recipe.
    The source must be the same modality and network as the student, with the same keywords
    or ones the student's network can grow from (:func:`_load_weights`)."""
    src = _as_model(source)
    mine = (student.modality.name, student.network_name)
    theirs = (src.modality.name, src.network_name)
    if mine != theirs:
        raise PolydiffError(f"init_from {source!s}: modality/network {theirs} does not match the student's {mine}")
    from .experts import TimeExperts

    if isinstance(src.network, TimeExperts):
        # time experts (polydiff.experts): the student becomes the same ensemble; each expert
        # is trained by the calls in its interval only (e.g. --step-shares 0,0,0,1: the last)
        if student.network_kwargs != src.network_kwargs:
            raise PolydiffError(f"init_from {source!s}: a time-experts model cannot start a bigger student")
        dev = student.device
        student.network = copy.deepcopy(src.ema if src.ema is not None else src.network).requires_grad_(True).to(dev)
        student.init_ema()
        return
    _load_weights(student, src, source=f"init_from {source!s}")


def _load_weights(student, src, *, source: str = "the teacher") -> None:
    """``student``'s network and EMA := ``src``'s EMA weights (its live weights without EMA).

    A student whose network keywords differ (a bigger one) loads every parameter of ``src`` by
    name — a parameter ``src`` has and the student lacks, or one of another shape, is an
    error — and then calls the network's ``grow_init_(src_kwargs)``, which must set the
    parameters ``src`` lacks so that the grown network computes what ``src``'s does."""
    weights = (src.ema if src.ema is not None else src.network).state_dict()
    if student.network_kwargs == src.network_kwargs:
        student.network.load_state_dict(weights)
        student.init_ema()
        return
    grow = getattr(student.network, "grow_init_", None)
    if grow is None:
        raise PolydiffError(
            f"{source}: network {student.network_name!r} with {student.network_kwargs} cannot start from one with "
            f"{src.network_kwargs}: it defines no grow_init_ (use the same network keywords)"
        )
    mine = student.network.state_dict()
    bad = [k for k, v in weights.items() if k not in mine or mine[k].shape != v.shape]
    if bad:
        raise PolydiffError(
            f"{source}: the student's network ({student.network_kwargs}) does not contain "
            f"{src.network_kwargs}'s parameters {', '.join(bad[:5])}{' …' if len(bad) > 5 else ''}"
        )
    student.network.load_state_dict(weights, strict=False)
    try:
        grow(dict(src.network_kwargs))
    except ValueError as e:
        raise PolydiffError(f"{source}: {e}") from e
    student.init_ema()


def distill(teacher, cfg: DistillConfig | None = None, *, callback=None) -> DistillResult:
    """Distil ``teacher`` (a model, a checkpoint folder or ``"starter:NAME"``) into a student
    of ``cfg.steps`` network evaluations (module docstring). ``callback(step, loss)`` after
    every optimiser step. Returns the student (with its sampling defaults and grid set) and
    the run's record; with ``cfg.out_dir`` it also writes ``train_log.jsonl`` and, with
    ``checkpoint_every``, resumable training checkpoints (``resume=True`` continues them)."""
    cfg = cfg or DistillConfig()
    cfg.validate()
    name = _teacher_name(teacher)
    teacher = _as_model(teacher)
    _check_teacher(teacher, cfg)
    dev = torch.device(cfg.device)
    teacher.to(dev)
    for m in (teacher.ema, teacher.network, *teacher.modality.modules().values()):
        if m is not None:
            m.eval()
    defaults = dict(teacher.extra.get("sample_defaults") or {})
    w = float(defaults.get("guidance", 1.0) if cfg.guidance is None else cfg.guidance)
    cond = defaults.get("cond") if cfg.cond is None else cfg.cond
    lo, hi = _sigma_range(teacher)
    student = new_student(teacher, cfg.method, cfg.student_kwargs)
    if cfg.init_from is not None:
        warm_start(student, cfg.init_from)
    log = RunLog(cfg.out_dir, tensorboard=False)
    t0 = time.perf_counter()
    try:
        if cfg.method == "trajectory":
            if w != 1.0:
                raise PolydiffError(f"trajectory distillation has no guidance to distil in (guidance {w}); use 1")
            rounds, sigmas = [], None
            grid, loss = _trajectory_setup(teacher, cfg)
            losses, done = _train(
                student, loss, _data_batches(student, cfg), cfg, cfg.train_steps, cfg.max_seconds, log, callback, 0
            )
        elif cfg.method == "progressive":
            losses, done, rounds = _progressive(teacher, student, cfg, w, lo, hi, log, callback)
            g0 = discretization.karras(progressive_teacher_steps(cfg), lo, hi)
            sigmas = [float(v) for v in g0[:: (len(g0) - 1) // cfg.steps]]
        else:
            rounds = []
            if cfg.method == "consistency":
                loss = _Consistency(cfg, guided_teacher(teacher, w), lo, hi, student.sigma_data)
                batches = _data_batches(student, cfg)
            else:
                loss, batches = _reflow_setup(teacher, student, cfg, w, cond)
            losses, done = _train(student, loss, batches, cfg, cfg.train_steps, cfg.max_seconds, log, callback, 0)
            sigmas = default_student_grid(cfg.method, cfg.steps, teacher.schedule, lo, hi)
    finally:
        log.close()
    if cfg.sigmas is not None:
        sigmas = [float(v) for v in cfg.sigmas]
    seconds = time.perf_counter() - t0
    if cfg.method == "trajectory":
        set_mixed_student_defaults(student, grid, restart_noise=cfg.restart_noise)
        sigmas = grid  # its time grid
    else:
        set_student_defaults(student, cfg.method, sigmas, cond=cond)
    assert sigmas is not None
    student.extra["distill"] = {
        "method": cfg.method,
        "teacher": name,
        "teacher_sample_defaults": defaults,
        "guidance_distilled": w,
        "train_steps": done,
        "seconds": round(seconds, 1),
        "final_loss": losses[-1][1] if losses else None,
        "rounds": rounds,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("progress", "out_dir", "resume")},
    }
    return DistillResult(student, losses, done, seconds, rounds, sigmas)


def set_student_defaults(student, method: str, sigmas, *, cond=None) -> None:
    """Point ``student``'s sampling defaults at its sampler, NFE and σ̃ grid
    (``extra["tuned_grids"][sampler][str(nfe)]``, ``grid="tuned"``); guidance is baked in."""
    s = [float(v) for v in sigmas]
    if len(s) < 2 or s[-1] != 0.0 or any(b >= a for a, b in zip(s[:-1], s[1:])):
        raise PolydiffError(f"a student grid must be strictly decreasing σ̃ ending in 0, got {s}")
    sampler, nfe = STUDENT_SAMPLER[method], len(s) - 1
    student.extra.pop("starter", None)
    student.extra["tuned_grids"] = {sampler: {str(nfe): s}}
    student.extra["sample_defaults"] = {
        "sampler": sampler,
        "nfe": nfe,
        "grid": "tuned",
        **({"cond": cond} if cond is not None else {}),
    }


def student_sigmas(model, nfe: int | None = None) -> torch.Tensor:
    """The stored grid of a distilled model (``extra["tuned_grids"]``) for its default
    sampler at ``nfe`` (default: its default NFE), as a float64 tensor."""
    d = model.extra.get("sample_defaults") or {}
    grids = (model.extra.get("tuned_grids") or {}).get(d.get("sampler"), {})
    key = str(nfe or d.get("nfe"))
    if key not in grids:
        raise PolydiffError(
            f"no stored grid for sampler {d.get('sampler')!r} at {key} NFE; stored: {', '.join(grids) or '(none)'}"
        )
    return torch.tensor(grids[key], dtype=F64)


def _data_batches(student, cfg: DistillConfig):
    """Endless ``(x0, cond)`` batches of the modality's data set (global order seeded by
    ``cfg.seed``); the data set is fitted on a copy so the student keeps the teacher's statistics."""
    mod = copy.deepcopy(student.modality)
    data = mod.load_dataset(cfg.dataset, **cfg.dataset_options)
    if len(data) == 0:
        raise PolydiffError("the distillation data set is empty")
    order = GlobalBatchOrder(len(data), cfg.batch_size, cfg.seed)

    def gen():
        while True:
            b = student.modality.collate([data[i] for i in order.next()])
            yield b["x"], b.get("cond"), None

    return _Batches(gen(), order)


class _Batches:
    """An endless batch iterator and the data order it follows (saved for resuming)."""

    def __init__(self, it, order: GlobalBatchOrder | None):
        self.it, self.order = it, order

    def __next__(self):
        return next(self.it)


def _reflow_setup(teacher, student, cfg: DistillConfig, w: float, cond):
    """Teacher pairs (z, x₁): ``reflow_pairs`` samples at ``reflow_nfe`` (dpmpp_2m, CFG ``w``) from
    noise z drawn as :meth:`DiffusionModel.sample_raw` draws it."""
    from .samplers import get_sampler

    n, sig_hi = cfg.reflow_pairs, teacher.schedule.sigma_ve_max
    rng = SampleRNG(sample_seed(cfg.seed, 7), n)
    shape, c = teacher.modality.sampling_request(n, cond, rng)
    space = teacher.modality.space(c)
    z = space.randn_like(torch.zeros((n,) + tuple(shape)), rng)
    steps = get_sampler("dpmpp_2m").steps_for_nfe(cfg.reflow_nfe)
    sig = teacher.sigma_grid(steps, "karras", sigma_min=teacher.schedule.sigma_ve_min, sigma_max=sig_hi)
    x1s = []
    for a in range(0, n, 256):
        cc = _index_cond(c, slice(a, a + 256))
        x1, _ = teacher.sample_raw(
            min(256, n - a), sampler="dpmpp_2m", sigmas=sig, x_T=z[a : a + 256] * sig_hi, sampling_cond=cc, guidance=w
        )
        x1s.append(x1.cpu())
    x1 = torch.cat(x1s)
    order = GlobalBatchOrder(n, cfg.batch_size, cfg.seed)
    den = Denoiser(student.network, student.schedule, student.parameterization, student.sigma_data)

    def gen():
        while True:
            idx = torch.tensor(order.next())
            yield x1[idx], _index_cond(c, idx), z[idx]

    return _Reflow(student.schedule, den.default_x0_weight), _Batches(gen(), order)


def _trajectory_setup(teacher, cfg: DistillConfig):
    """The student's time grid and the trajectory loss (:mod:`polydiff.mixed_distill`) of a
    mixed teacher, as a ``_train`` loss function."""
    grid = cfg.time_grid if cfg.time_grid is not None else default_mixed_grid(teacher, cfg.steps)
    grid = [float(v) for v in check_time_grid(grid, "the student's time grid")]
    if grid_calls(grid) != cfg.steps:
        raise PolydiffError(
            f"the student's time grid {grid} has {grid_calls(grid)} network calls, not steps={cfg.steps}"
        )
    traj = TrajectoryLoss(
        teacher.denoiser(True),
        teacher.parts,
        grid,
        weights=teacher.modality.part_loss_weights(),
        teacher_steps=cfg.segment_steps,
        restarts=teacher_restarts(teacher) if cfg.teacher_restarts else [],
        on_policy=cfg.on_policy,
        step_shares=cfg.step_shares,
        restart_noise=cfg.restart_noise,
    )

    def loss(live, _target, x0, cond, _space, rng):
        return traj(live, x0, cond, rng)

    return grid, loss


def _index_cond(c, idx):
    if c is None:
        return None
    return {k: (v[idx] if torch.is_tensor(v) else v) for k, v in c.items()}


def progressive_teacher_steps(cfg: DistillConfig) -> int:
    """The first round's teacher steps: ``cfg.teacher_steps`` or ``steps``·2^k, the first ≥ 32."""
    return cfg.teacher_steps or cfg.steps * 2 ** max(1, math.ceil(math.log2(32 / cfg.steps)))


def _progressive(teacher, student, cfg: DistillConfig, w: float, lo: float, hi: float, log, callback):
    """The rounds of progressive distillation: teacher_steps → … → steps (each round a
    fresh student from the previous one; CFG only in the first teacher)."""

    n0 = progressive_teacher_steps(cfg)
    g0 = discretization.karras(n0, lo, hi)  # the first teacher's grid; students take every 2^k-th point
    counts = []
    n = n0 // 2
    while n >= cfg.steps:
        counts.append(n)
        n //= 2
    per_round = max(1, cfg.train_steps // len(counts))
    per_s = None if cfg.max_seconds is None else cfg.max_seconds / len(counts)
    T = guided_teacher(teacher, w)
    losses, done, rounds = [], 0, []
    prev = None
    for r, n in enumerate(counts):
        if prev is not None:  # the previous student becomes the teacher (guidance already in it)
            T = prev.denoiser(True)
            student.network.load_state_dict(prev.ema.state_dict())
            student.init_ema()
        grid2 = g0[:: n0 // (2 * n)]
        loss = _Progressive(T, grid2, student.sigma_data)
        lr_, d = _train(student, loss, _data_batches(student, cfg), cfg, per_round, per_s, log, callback, r)
        losses += [(done + s, v) for s, v in lr_]
        done += d
        rounds.append({"teacher_steps": 2 * n, "student_steps": n, "train_steps": d})
        prev = copy.deepcopy(student)
        prev.network.eval()
    return losses, done, rounds


def _train(student, loss_fn, batches, cfg: DistillConfig, steps: int, max_seconds, log, callback, round_: int):
    """AdamW on ``student.network`` for ``steps`` steps (or ``max_seconds``): per-sample losses
    from ``loss_fn``, warm-up then constant LR, gradient clipping, sampling EMA; returns
    ``(losses, steps done)``. Resumes the newest training checkpoint of this round under
    ``out_dir/checkpoints/round_<r>`` with ``cfg.resume``."""
    dev = torch.device(cfg.device)
    net = student.network
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0)
    tnet = copy.deepcopy(net).requires_grad_(False) if cfg.target_ema > 0 else net
    live: Denoiser | MixedDenoiser
    target: Denoiser | MixedDenoiser
    if student.parts is not None:
        live = target = MixedDenoiser(net, student.parts)
    else:
        live = Denoiser(net, student.schedule, student.parameterization, student.sigma_data)
        target = Denoiser(tnet, student.schedule, student.parameterization, student.sigma_data)
    ctx = DistContext(0, 1, 0, dev)
    root = Path(cfg.out_dir) / "checkpoints" / f"round_{round_}" if cfg.out_dir else None
    start = 0
    if cfg.resume and root is not None:
        ck = checkpointing.find_resumable(root)
        if ck is not None:
            checkpointing.apply_training_checkpoint(ck, student, opt, 0)
            if batches.order is not None:
                batches.order.load_state(ck.state["data_order"])
            start = ck.step
            if tnet is not net:
                tnet.load_state_dict(net.state_dict())
            log.event("resumed", path=str(ck.path), step=start)
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc=f"distill {cfg.method} {student.modality.name}", leave=False)
    losses, running, t0, done = [], [], time.perf_counter(), start
    try:
        for step in range(start, steps):
            if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                break
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
            for g in opt.param_groups:
                g["lr"] = lr
            x0, cond, extra = next(batches)
            x0 = to_device(x0, dev) if isinstance(x0, dict) else x0.to(dev)
            cond = to_device(cond, dev)
            n = len(next(iter(x0.values()))) if isinstance(x0, dict) else len(x0)
            rng = SampleRNG(seeds=[sample_seed(sample_seed(cfg.seed, round_ * 10**7 + step), i) for i in range(n)])
            space = student.modality.space(cond) if student.parts is None else None
            args = () if extra is None else (extra.to(dev),)
            loss = loss_fn(live, target, x0, cond, space, rng, *args).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            if not math.isfinite(float(loss.detach())):
                raise PolydiffError(f"distillation step {step}: non-finite loss {float(loss.detach())}; lower lr")
            opt.step()
            assert student.ema is not None
            ema_update(student.ema, net, ema_decay_at(step, cfg.ema_decay, warmup=True))
            if tnet is not net:
                ema_update(tnet, net, cfg.target_ema)
            running.append(float(loss.detach()))
            done = step + 1
            if done % cfg.log_every == 0 or done == steps:
                mean = sum(running) / len(running)
                losses.append((done, mean))
                log.metrics(done, loss=mean, lr=lr, round=round_, time_s=time.perf_counter() - t0)
                running = []
                if bar is not None:
                    bar.set_postfix(loss=f"{mean:.4g}")
            if root is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
                _save(root, student, opt, batches, cfg, done, lr, ctx)
            if callback is not None:
                callback(step, float(loss.detach()))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if running:
        losses.append((done, sum(running) / len(running)))
    if root is not None and cfg.checkpoint_every and done > start:
        _save(root, student, opt, batches, cfg, done, cfg.lr, ctx)
    return losses, done


def _save(root, student, opt, batches, cfg, step, lr, ctx) -> None:
    order = batches.order.state() if batches.order is not None else {"epoch": 0, "pos": 0, "seed": 0, "n_items": 1}
    state = {"data_order": order, "distill_config": asdict(cfg), "lr": lr, "ema_updates": step}
    checkpointing.save_training_checkpoint(
        root, step=step, model=student, optimizer=opt, training_state=state, ctx=ctx, keep=2
    )
