"""The trainer shared by all modalities.

``train(model, dataset, TrainConfig(...))`` minimises :func:`polydiff.losses.diffusion_loss`
in the modality's space with AdamW, LR warm-up + schedule, gradient clipping, gradient
accumulation, EMA, bf16 autocast on CUDA, JSONL logging and a rank-0 progress bar. Started
under ``torchrun`` it trains data-parallel with DistributedDataParallel (gloo on CPU,
NCCL on CUDA). With ``out_dir`` and ``checkpoint_every`` it writes atomic, hashed training
checkpoints and ``resume="auto"`` continues the newest valid one bit for bit.

Randomness of a step does not depend on the number of processes: sample j of the global
batch at step k draws its σ̃, its CFG-dropout coin and its noise from its own generator
seeded with hash(hash(seed, k), j) (a modality with parts, :meth:`polydiff.modality.Modality.parts`:
its time t ~ U(mixed_t_min, 1], then the coin and the noise of
:func:`polydiff.mixed.mixed_loss`, see :mod:`polydiff.mixed_model`). So a global batch of B split over W processes × A
accumulation steps gives the same gradient (up to float summation order) as one process.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import checkpoint as ckpt
from .. import mixed_model
from ..conditioning import to_device, with_cond_mask
from ..errors import CheckpointError
from ..losses import diffusion_loss, sample_sigmas
from ..mixed_denoiser import MixedDenoiser
from ..parameterization import Denoiser
from ..rng import SampleRNG, sample_seed
from . import checkpointing, distributed, rng_state
from .data_order import GlobalBatchOrder, micro_batch_positions
from .ema import ema_decay_at, ema_update
from .faults import OOM_ERRORS, NonFiniteLossError, NonFiniteLossWarning, free_accelerator_memory, oom_error
from .run_log import RunLog

if TYPE_CHECKING:
    from ..model import DiffusionModel

AMP_MODES = ("auto", "bf16", "none")


@dataclass
class TrainConfig:
    steps: int = 1000  # optimiser steps in total (a resumed run continues up to this number)
    batch_size: int = 64  # global batch: items per optimiser step over all processes
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # constant | cosine
    # wall-clock budget (s) of this run's loop: training stops when it is spent, and the
    # cosine schedule runs on max(step fraction, time fraction), so a time-bound run still
    # decays to 0. Results then depend on the machine's speed (not bit-reproducible).
    max_seconds: float | None = None
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    sigma_sampling: str | None = None  # default: lognormal for edm, uniform_t otherwise
    weighting: str = "default"
    p_mean: float = -1.2
    p_std: float = 1.2
    cond_dropout: float = 0.0  # probability of dropping the conditioning (CFG training)
    mixed_t_min: float = 1e-3  # modalities with parts: training times t ~ U(mixed_t_min, 1]
    seed: int = 0
    log_every: int = 50
    out_dir: str | None = None
    device: str = "auto"
    progress: bool = True
    # -- scale and robustness -----------------------------------------------------------
    grad_accum: int = 1  # micro-batches per optimiser step (per process)
    amp: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | none
    ema_warmup: bool = False  # β_k = min(ema_decay, (1+k)/(10+k))
    # batches of items of similar size (Modality.item_size; e.g. atoms per molecule), sorted
    # within windows of this many global batches (0: plain shuffle). Less padding, same epochs.
    group_by_size: int = 0
    checkpoint_every: int = 0  # optimiser steps between training checkpoints (0: none)
    keep_checkpoints: int = 3  # newest K kept under out_dir/checkpoints
    resume: str | None = None  # None | "auto" (newest valid in out_dir/checkpoints) | a folder
    max_nonfinite: int = 20  # stop after this many skipped non-finite steps
    distributed: str = "auto"  # auto (torchrun's env) | off
    dist_backend: str | None = None  # None: nccl on CUDA, gloo on CPU
    find_unused_parameters: bool = True  # DDP option (idle conditioning branches)
    tensorboard: bool = True  # also log to TensorBoard when it is installed

    def validate(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps must be ≥ 0, batch_size and grad_accum ≥ 1")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; constant or cosine")
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp mode {self.amp!r}; one of {AMP_MODES}")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError("cond_dropout must lie in [0, 1]")
        if not 0.0 <= self.mixed_t_min < 1.0:
            raise ValueError("mixed_t_min must lie in [0, 1)")
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ValueError("checkpoint_every must be ≥ 0 and keep_checkpoints ≥ 1")
        if (self.checkpoint_every or self.resume == "auto") and not self.out_dir:
            raise ValueError("checkpoint_every > 0 and resume='auto' need out_dir")
        if self.group_by_size < 0:
            raise ValueError("group_by_size must be ≥ 0 (0: off)")
        if self.max_nonfinite < 1:
            raise ValueError("max_nonfinite must be ≥ 1")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError("max_seconds must be > 0 (or None)")


@dataclass
class TrainResult:
    losses: list = field(default_factory=list)  # (step, mean loss) every log_every steps
    steps: int = 0  # optimiser step reached (== cfg.steps on success)
    seconds: float = 0.0
    skipped_nonfinite: int = 0
    start_step: int = 0  # > 0 when resumed
    resumed_from: str | None = None  # checkpoint folder resumed from
    checkpoints: list = field(default_factory=list)  # folders written (rank 0)
    rank: int = 0
    world_size: int = 1
    stopped_by_time: bool = False  # the max_seconds budget ended the run before cfg.steps

    @property
    def steps_per_s(self) -> float:
        done = self.steps - self.start_step
        return done / self.seconds if self.seconds > 0 else float("nan")


def lr_factor(step: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """Multiplier of ``cfg.lr`` at optimiser step ``step`` (0-based): linear warm-up over
    ``warmup_steps``, then constant or half-cosine decay to 0 at ``cfg.steps`` — or, with
    ``max_seconds``, at whichever comes first of the last step and the end of the budget
    (``time_fraction`` = elapsed / max_seconds)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        span = max(1, cfg.steps - cfg.warmup_steps)
        frac = max((step - cfg.warmup_steps) / span, time_fraction)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return 1.0


def _autocast(cfg: TrainConfig, device: torch.device):
    mode = cfg.amp
    if mode == "auto":
        mode = "bf16" if device.type == "cuda" else "none"
    if mode == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def _micro_loss(den, model, batch, positions, step_seed: int, sigma_kind: str, cfg: TrainConfig, dev):
    """Per-sample losses ``[m]`` of one micro-batch whose items sit at ``positions`` of the
    global batch (their random numbers depend on the position only)."""
    if model.parts is not None:
        rng = SampleRNG(seeds=[sample_seed(step_seed, p) for p in positions])
        return mixed_model.training_loss(den, model, batch, rng, cfg.cond_dropout, cfg.mixed_t_min, dev)
    x0 = batch["x"].to(dev)
    cond = to_device(batch.get("cond"), dev)
    rng = SampleRNG(seeds=[sample_seed(step_seed, p) for p in positions])
    sigmas = torch.cat([sample_sigmas(sigma_kind, 1, den, g, cfg.p_mean, cfg.p_std) for g in rng.generators])
    if cfg.cond_dropout > 0:
        keep = torch.cat([(torch.rand(1, generator=g) >= cfg.cond_dropout) for g in rng.generators])
        cond = with_cond_mask(cond, keep.float().to(dev), x0.shape[0])
    space = model.modality.space(cond)
    return diffusion_loss(
        den,
        x0,
        cond,
        space,
        rng,
        None,
        sigma_sampling=sigma_kind,
        weighting=cfg.weighting,
        sigmas=sigmas,
        auxiliary=model.modality.auxiliary_loss,
    )


def train(model, dataset, cfg: TrainConfig | None = None, *, callback=None) -> TrainResult:
    """Train ``model`` (a :class:`polydiff.model.DiffusionModel`) in place on ``dataset``.

    ``callback(step, loss)`` is called after every step with the 0-based step and the
    global mean loss. The global RNGs (torch, numpy, python ``random``) are seeded from
    ``cfg.seed`` (rank r > 0: hash(seed, r)) so that dropout or data augmentation inside the
    network/dataset is reproducible and resumable. Raises :class:`~polydiff.training.faults.NonFiniteLossError` after
    ``max_nonfinite`` skipped steps and :class:`~polydiff.training.faults.TrainingOOMError`
    (naming the micro-batch size) when the accelerator runs out of memory.
    """
    cfg = cfg or TrainConfig()
    cfg.validate()
    if len(dataset) == 0:
        raise ValueError("cannot train on an empty dataset")
    ctx = distributed.setup(cfg.device, cfg.distributed, cfg.dist_backend)
    try:
        result = _train(model, dataset, cfg, ctx, callback)
    except BaseException:
        ctx.close(wait_for_peers=False)
        raise
    ctx.close()
    return result


@dataclass
class _Run:
    """One training run: what the loop works on, built once by :func:`_train`, plus the
    counters a training checkpoint saves and a resume restores."""

    model: DiffusionModel
    dataset: Any
    cfg: TrainConfig
    ctx: distributed.DistContext
    net: torch.nn.Module  # the model's network (parameters, EMA source)
    opt: torch.optim.Optimizer
    order: GlobalBatchOrder
    sigma_kind: str
    log: RunLog
    result: TrainResult
    root: Path | None  # out_dir/checkpoints (None without out_dir)
    train_net: torch.nn.Module | None = None  # the network, DDP-wrapped under torchrun
    den: Denoiser | MixedDenoiser | None = None  # the denoiser over train_net
    start: int = 0  # optimiser step the loop starts at (> 0 when resumed)
    skipped_nonfinite: int = 0
    ema_updates: int = 0


def _train(model, dataset, cfg: TrainConfig, ctx: distributed.DistContext, callback) -> TrainResult:
    dev = ctx.device
    micro_batch_positions(cfg.batch_size, ctx.world_size, cfg.grad_accum, 0, 0)  # divisibility check first
    rng_state.seed_all(cfg.seed if ctx.rank == 0 else sample_seed(cfg.seed, ctx.rank))
    model.to(dev)
    if model.ema is None:
        model.init_ema()
    net = model.network
    net.train()
    run = _Run(
        model=model,
        dataset=dataset,
        cfg=cfg,
        ctx=ctx,
        net=net,
        opt=torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
        order=_data_order(model, dataset, cfg),
        sigma_kind=cfg.sigma_sampling or ("lognormal" if model.parameterization == "edm" else "uniform_t"),
        log=RunLog(cfg.out_dir, enabled=ctx.is_main, tensorboard=cfg.tensorboard),
        result=TrainResult(rank=ctx.rank, world_size=ctx.world_size),
        root=Path(cfg.out_dir) / "checkpoints" if cfg.out_dir else None,
    )
    try:
        run.start = _maybe_resume(run)
        run.train_net = distributed.wrap_ddp(net, ctx, cfg.find_unused_parameters)
        run.den = _denoiser(model, run.train_net)
        run.result.start_step = run.result.steps = run.start
        run.result.skipped_nonfinite = run.skipped_nonfinite
        _loop(run, callback)
    finally:
        run.log.close()
        # The DDP wrapper's reducer holds the process group; let it go (and its gloo work)
        # before the group is destroyed, not at interpreter exit where tearing it down aborts.
        run.train_net = run.den = None
    result = run.result
    model.training_info = {
        "config": asdict(cfg),
        "steps": result.steps,
        "seconds": result.seconds,
        "final_loss": result.losses[-1][1] if result.losses else None,
        "world_size": ctx.world_size,
    }
    return result


def _data_order(model, dataset, cfg: TrainConfig) -> GlobalBatchOrder:
    """The run's batch order; with ``group_by_size``, grouped by the modality's item sizes."""
    if not cfg.group_by_size:
        return GlobalBatchOrder(len(dataset), cfg.batch_size, cfg.seed)
    sizes = [model.modality.item_size(dataset[i]) for i in range(len(dataset))]
    if any(v is None for v in sizes):
        raise ValueError(
            f"group_by_size needs item sizes, but modality {model.modality.name!r} does not define item_size(item)"
        )
    return GlobalBatchOrder(len(dataset), cfg.batch_size, cfg.seed, sizes=sizes, group_window=cfg.group_by_size)


def _denoiser(model, train_net: torch.nn.Module):
    """The training denoiser over ``train_net`` (DDP-wrapped under torchrun): the model's
    parameterisation, or the mixed denoiser for a modality with parts."""
    parts = model.parts
    if parts is not None:
        return MixedDenoiser(train_net, parts)
    return Denoiser(train_net, model.schedule, model.parameterization, model.sigma_data)


def _maybe_resume(run: _Run) -> int:
    """Restore the chosen training checkpoint (model, optimiser, data order, counters, RNG
    states) into ``run``; the step to start at (0: fresh start)."""
    cfg, ctx, root = run.cfg, run.ctx, run.root
    if cfg.resume is None:
        if root is not None and ctx.is_main and checkpointing.list_checkpoints(root):
            warnings.warn(
                f"{root} holds checkpoints but resume is None: starting from step 0 "
                "(set resume='auto' to continue them)",
                stacklevel=3,
            )
        return 0
    chosen = _agree_on_checkpoint(cfg, ctx, root, run.log)
    if chosen is None:
        return 0
    had_rng = checkpointing.apply_training_checkpoint(chosen, run.model, run.opt, ctx.rank)
    try:
        run.order.load_state(chosen.state["data_order"])
    except ValueError as e:
        raise CheckpointError(f"{chosen.path}: {e}") from None
    run.skipped_nonfinite = chosen.state.get("skipped_nonfinite", 0)
    run.ema_updates = chosen.state.get("ema_updates", 0)
    if not had_rng:
        warnings.warn(
            f"{chosen.path} has no RNG state for rank {ctx.rank} (saved by "
            f"{chosen.state.get('world_size')} process(es)); this rank keeps fresh seeds",
            stacklevel=3,
        )
    saved_cfg = chosen.state.get("train_config", {})
    changed = sorted(
        k
        for k in ("batch_size", "grad_accum", "seed", "lr", "lr_schedule", "warmup_steps")
        if isinstance(saved_cfg, dict) and k in saved_cfg and saved_cfg[k] != getattr(cfg, k)
    )
    if changed and ctx.is_main:
        warnings.warn(f"resuming {chosen.path} with changed settings {changed}", stacklevel=3)
    run.result.resumed_from = str(chosen.path)
    run.log.event("resumed", path=str(chosen.path), step=chosen.step, world_size=ctx.world_size)
    return chosen.step


def _agree_on_checkpoint(cfg: TrainConfig, ctx: distributed.DistContext, root: Path | None, log: RunLog):
    """Rank 0 chooses the checkpoint to resume from and every rank reads the same one (None:
    there is none yet, under ``resume="auto"``)."""
    chosen = None
    if ctx.is_main:
        try:
            chosen = _choose_checkpoint(cfg, root, log)
        except Exception:
            ctx.broadcast_int(-2)
            raise
        ctx.broadcast_int(-1 if chosen is None else 1)
        ctx.all_gather_objects(str(chosen.path) if chosen else None)
        return chosen
    code = ctx.broadcast_int(0)
    if code == -2:
        raise CheckpointError("rank 0 could not read a training checkpoint to resume from")
    path_s = ctx.all_gather_objects(None)[0]
    if code == 1:
        chosen = checkpointing.read_training_checkpoint(Path(path_s))
    return chosen


def _choose_checkpoint(cfg, root, log):
    """``resume="auto"``: newest valid under ``out_dir/checkpoints`` (None when there is none
    yet). A folder: that checkpoint (no fallback) or, for a folder of checkpoints, the newest
    valid one; it must exist."""
    if cfg.resume == "auto":
        return checkpointing.find_resumable(root, log)
    where = Path(cfg.resume)
    ckpt.refuse_pickle(where)
    if not where.is_dir():
        raise CheckpointError(f"{where}: resume folder does not exist")
    if (where / ckpt.CONFIG_NAME).exists():
        return checkpointing.read_training_checkpoint(where)
    chosen = checkpointing.find_resumable(where, log)
    if chosen is None:
        raise CheckpointError(f"{where}: holds no training checkpoint (step_* folders) to resume from")
    return chosen


def _loop(run: _Run, callback) -> None:
    """Optimiser steps ``run.start`` … ``cfg.steps - 1`` (or until the ``max_seconds``
    budget is spent): step, log, checkpoint, report."""
    cfg, result = run.cfg, run.result
    bar = None
    if cfg.progress and run.ctx.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=run.start, desc=f"train {run.model.modality.name}", leave=False)
    t0 = time.perf_counter()
    running: list[float] = []  # global mean losses of the applied steps since the last log line
    lr = cfg.lr
    try:
        for step in range(run.start, cfg.steps):
            time_frac = _time_fraction(run, t0)
            if time_frac >= 1.0:
                result.stopped_by_time = True
                break
            lr = cfg.lr * lr_factor(step, cfg, time_frac)
            g_loss, g_norm, applied = _optimizer_step(run, step, lr)
            if applied:
                running.append(g_loss)
            result.steps = done = step + 1
            if running and (done % cfg.log_every == 0 or done == cfg.steps):
                mean = _log_losses(run, done, running, t0, lr=lr, grad_norm=g_norm)
                running = []
                if bar is not None:
                    bar.set_postfix(loss=f"{mean:.4f}")
            if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                _save_checkpoint(run, done, lr)
            if callback is not None:
                callback(step, g_loss)
            if bar is not None:
                bar.update(1)
        if result.stopped_by_time and result.steps > run.start:
            # the budget ended the run between log lines and checkpoints: record where it stopped
            if running:
                _log_losses(run, result.steps, running, t0, lr=lr, stopped_by_time=True)
            if cfg.checkpoint_every and result.steps % cfg.checkpoint_every:
                _save_checkpoint(run, result.steps, lr)
    finally:
        if bar is not None:
            bar.close()
        result.seconds = time.perf_counter() - t0


def _time_fraction(run: _Run, t0: float) -> float:
    """Elapsed / ``max_seconds`` (0 without a budget). Every process uses the same (mean)
    clock, so the learning rate and the stop agree under DDP."""
    if run.cfg.max_seconds is None:
        return 0.0
    elapsed = float(run.ctx.all_reduce_mean(torch.tensor(time.perf_counter() - t0, device=run.ctx.device)))
    return elapsed / run.cfg.max_seconds


def _optimizer_step(run: _Run, step: int, lr: float) -> tuple[float, float, bool]:
    """Optimiser step ``step`` (0-based) at learning rate ``lr``: gradients of the global
    batch, clipping, then the update and EMA — or, for a non-finite loss or gradient norm, no
    update. Returns (global mean loss, gradient norm, whether the update was applied)."""
    cfg, opt = run.cfg, run.opt
    for g in opt.param_groups:
        g["lr"] = lr
    loss_sum = _accumulate_gradients(run, step)
    g_loss = float(run.ctx.all_reduce_mean(loss_sum))
    max_norm = cfg.grad_clip if cfg.grad_clip else math.inf
    g_norm = float(torch.nn.utils.clip_grad_norm_(run.net.parameters(), max_norm))
    if not (math.isfinite(g_loss) and math.isfinite(g_norm)):
        _skip_nonfinite(run, step, g_loss, g_norm)
        return g_loss, g_norm, False
    opt.step()
    assert run.model.ema is not None  # made by _train
    ema_update(run.model.ema, run.net, ema_decay_at(run.ema_updates, cfg.ema_decay, cfg.ema_warmup))
    run.ema_updates += 1
    return g_loss, g_norm, True


def _accumulate_gradients(run: _Run, step: int) -> torch.Tensor:
    """Zero the gradients, then forward and backward this process's ``grad_accum``
    micro-batches of the global batch of step ``step``; their summed mean loss (a scalar).
    DDP synchronises the gradients on the last micro-batch only. Raises
    :class:`~polydiff.training.faults.TrainingOOMError` when the accelerator runs out of memory."""
    cfg, ctx, dev = run.cfg, run.ctx, run.ctx.device
    W, A = ctx.world_size, cfg.grad_accum
    assert run.train_net is not None and run.den is not None
    idx = run.order.next()
    step_seed = sample_seed(cfg.seed, step)
    run.opt.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), device=dev)
    try:
        for a in range(A):
            pos = micro_batch_positions(cfg.batch_size, W, A, ctx.rank, a)
            batch = run.model.modality.collate([run.dataset[idx[p]] for p in pos])
            sync = _no_sync(run.train_net) if (ctx.active and a < A - 1) else nullcontext()
            with sync:
                with _autocast(cfg, dev):
                    per_sample = _micro_loss(run.den, run.model, batch, pos, step_seed, run.sigma_kind, cfg, dev)
                loss = per_sample.float().mean() / A
                loss.backward()
            loss_sum += loss.detach()
    except OOM_ERRORS as e:
        run.opt.zero_grad(set_to_none=True)
        free_accelerator_memory(dev)
        m = cfg.batch_size // (W * A)
        raise oom_error(
            e, step=step, micro_batch=m, batch_size=cfg.batch_size, world_size=W, accum=A, device=dev
        ) from e
    return loss_sum


def _no_sync(train_net: torch.nn.Module):
    """DDP's context that defers the gradient all-reduce (``train_net`` is DDP-wrapped)."""
    from torch.nn.parallel import DistributedDataParallel

    assert isinstance(train_net, DistributedDataParallel)
    return train_net.no_sync()


def _skip_nonfinite(run: _Run, step: int, g_loss: float, g_norm: float) -> None:
    """Drop the gradients of a step whose loss or gradient norm is not finite, warn, and
    raise :class:`~polydiff.training.faults.NonFiniteLossError` after ``max_nonfinite``."""
    cfg = run.cfg
    run.skipped_nonfinite += 1
    n_bad = run.result.skipped_nonfinite = run.skipped_nonfinite
    run.opt.zero_grad(set_to_none=True)
    if run.ctx.is_main:
        warnings.warn(
            f"step {step}: non-finite loss {g_loss} / gradient norm {g_norm}; update "
            f"skipped ({n_bad} of at most {cfg.max_nonfinite})",
            NonFiniteLossWarning,
            stacklevel=5,  # the frame of train(), like the resume warnings
        )
        run.log.event("nonfinite_loss", step=step + 1, loss=g_loss, grad_norm=g_norm, count=n_bad)
    if n_bad >= cfg.max_nonfinite:
        raise NonFiniteLossError(
            f"stopping at step {step}: {n_bad} steps had a non-finite loss or gradient "
            f"(max_nonfinite={cfg.max_nonfinite}); check the data for NaN/inf and lower lr"
        )


def _log_losses(
    run: _Run,
    done: int,
    running: list[float],
    t0: float,
    *,
    lr: float,
    grad_norm: float | None = None,
    stopped_by_time: bool = False,
) -> float:
    """Record the mean of ``running`` at ``done`` optimiser steps (the result's loss curve
    and a metrics line); returns the mean."""
    mean = sum(running) / len(running)
    run.result.losses.append((done, mean))
    elapsed = time.perf_counter() - t0
    if stopped_by_time:
        run.log.metrics(done, loss=mean, lr=lr, time_s=elapsed, stopped_by_time=True)
    else:
        run.log.metrics(
            done,
            loss=mean,
            lr=lr,
            grad_norm=grad_norm,
            time_s=elapsed,
            skipped_nonfinite=run.skipped_nonfinite,
            world_size=run.ctx.world_size,
            samples_per_s=(done - run.start) * run.cfg.batch_size / elapsed if elapsed > 0 else None,
        )
    return mean


def _save_checkpoint(run: _Run, step: int, lr: float) -> None:
    """Write the training checkpoint of ``step`` completed optimiser steps (rank 0 writes;
    every rank contributes its RNG state) and prune to ``keep_checkpoints``."""
    if run.root is None:
        return
    state = {
        "data_order": run.order.state(),
        "train_config": asdict(run.cfg),
        "lr": lr,
        "skipped_nonfinite": run.skipped_nonfinite,
        "ema_updates": run.ema_updates,
    }
    p = checkpointing.save_training_checkpoint(
        run.root,
        step=step,
        model=run.model,
        optimizer=run.opt,
        training_state=state,
        ctx=run.ctx,
        keep=run.cfg.keep_checkpoints,
    )
    if p is not None:
        run.result.checkpoints.append(str(p))
        run.log.event("checkpoint", step=step, path=str(p))
