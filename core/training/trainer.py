"""The trainer shared by all modalities.

``train(model, dataset, TrainConfig(...))`` minimises :func:`polydiff.losses.diffusion_loss`
in the modality's space with AdamW, LR warm-up + schedule, gradient clipping, gradient
accumulation, EMA, bf16 autocast on CUDA, JSONL logging and a rank-0 progress bar. Started
under ``torchrun`` it trains data-parallel with DistributedDataParallel (gloo on CPU,
NCCL on CUDA). With ``out_dir`` and ``checkpoint_every`` it writes atomic, hashed training
checkpoints and ``resume="auto"`` continues the newest valid one bit for bit.

Randomness of a step does not depend on the number of processes: sample j of the global
batch at step k draws its σ̃, its CFG-dropout coin and its noise from its own generator
seeded with hash(hash(seed, k), j). So a global batch of B split over W processes × A
accumulation steps gives the same gradient (up to float summation order) as one process.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..conditioning import to_device, with_cond_mask
from ..errors import CheckpointError
from ..losses import diffusion_loss, sample_sigmas
from ..parameterization import Denoiser
from ..rng import SampleRNG, sample_seed
from . import checkpointing, distributed, rng_state
from .data_order import GlobalBatchOrder, micro_batch_positions
from .ema import ema_decay_at, ema_update
from .faults import OOM_ERRORS, NonFiniteLossError, NonFiniteLossWarning, free_accelerator_memory, oom_error
from .run_log import RunLog

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
    seed: int = 0
    log_every: int = 50
    out_dir: str | None = None
    device: str = "auto"
    progress: bool = True
    # -- scale and robustness -----------------------------------------------------------
    grad_accum: int = 1  # micro-batches per optimiser step (per process)
    amp: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | none
    ema_warmup: bool = False  # β_k = min(ema_decay, (1+k)/(10+k))
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
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ValueError("checkpoint_every must be ≥ 0 and keep_checkpoints ≥ 1")
        if (self.checkpoint_every or self.resume == "auto") and not self.out_dir:
            raise ValueError("checkpoint_every > 0 and resume='auto' need out_dir")
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
        return _train(model, dataset, cfg, ctx, callback)
    finally:
        ctx.close()


def _train(model, dataset, cfg: TrainConfig, ctx, callback) -> TrainResult:
    dev = ctx.device
    W, A = ctx.world_size, cfg.grad_accum
    micro_batch_positions(cfg.batch_size, W, A, 0, 0)  # divisibility check before any work
    rng_state.seed_all(cfg.seed if ctx.rank == 0 else sample_seed(cfg.seed, ctx.rank))
    model.to(dev)
    if model.ema is None:
        model.init_ema()
    net = model.network
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sigma_kind = cfg.sigma_sampling or ("lognormal" if model.parameterization == "edm" else "uniform_t")
    order = GlobalBatchOrder(len(dataset), cfg.batch_size, cfg.seed)
    log = RunLog(cfg.out_dir, enabled=ctx.is_main, tensorboard=cfg.tensorboard)
    result = TrainResult(rank=ctx.rank, world_size=W)
    root = Path(cfg.out_dir) / "checkpoints" if cfg.out_dir else None
    counters = {"skipped_nonfinite": 0, "ema_updates": 0}
    try:
        start = _maybe_resume(cfg, ctx, root, model, opt, order, counters, log, result)
        train_net = distributed.wrap_ddp(net, ctx, cfg.find_unused_parameters)
        den = Denoiser(train_net, model.schedule, model.parameterization, model.sigma_data)
        result.start_step = result.steps = start
        result.skipped_nonfinite = counters["skipped_nonfinite"]
        _loop(
            model,
            dataset,
            cfg,
            ctx,
            net,
            train_net,
            den,
            opt,
            order,
            sigma_kind,
            counters,
            log,
            result,
            root,
            start,
            callback,
        )
    finally:
        log.close()
    model.training_info = {
        "config": asdict(cfg),
        "steps": result.steps,
        "seconds": result.seconds,
        "final_loss": result.losses[-1][1] if result.losses else None,
        "world_size": W,
    }
    return result


def _maybe_resume(cfg, ctx, root, model, opt, order, counters, log, result) -> int:
    if cfg.resume is None:
        if root is not None and ctx.is_main and checkpointing.list_checkpoints(root):
            warnings.warn(
                f"{root} holds checkpoints but resume is None: starting from step 0 "
                "(set resume='auto' to continue them)",
                stacklevel=3,
            )
        return 0
    chosen = None
    if ctx.is_main:
        try:
            chosen = _choose_checkpoint(cfg, root, log)
        except Exception:
            ctx.broadcast_int(-2)
            raise
        code = ctx.broadcast_int(-1 if chosen is None else 1)
        path_s = ctx.all_gather_objects(str(chosen.path) if chosen else None)[0]
    else:
        code = ctx.broadcast_int(0)
        if code == -2:
            raise CheckpointError("rank 0 could not read a training checkpoint to resume from")
        path_s = ctx.all_gather_objects(None)[0]
        if code == 1:
            chosen = checkpointing.read_training_checkpoint(Path(path_s))
    if chosen is None:
        return 0
    had_rng = checkpointing.apply_training_checkpoint(chosen, model, opt, ctx.rank)
    try:
        order.load_state(chosen.state["data_order"])
    except ValueError as e:
        raise CheckpointError(f"{chosen.path}: {e}") from None
    counters["skipped_nonfinite"] = chosen.state.get("skipped_nonfinite", 0)
    counters["ema_updates"] = chosen.state.get("ema_updates", 0)
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
    result.resumed_from = str(chosen.path)
    log.event("resumed", path=str(chosen.path), step=chosen.step, world_size=ctx.world_size)
    return chosen.step


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


def _loop(
    model, dataset, cfg, ctx, net, train_net, den, opt, order, sigma_kind, counters, log, result, root, start, callback
) -> None:
    dev, W, A = ctx.device, ctx.world_size, cfg.grad_accum
    bar = None
    if cfg.progress and ctx.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"train {model.modality.name}", leave=False)
    t0 = time.perf_counter()
    running = []
    collate = model.modality.collate
    time_frac = 0.0
    try:
        for step in range(start, cfg.steps):
            if cfg.max_seconds is not None:
                # every process uses the same (mean) clock, so lr and the stop agree under DDP
                el = float(ctx.all_reduce_mean(torch.tensor(time.perf_counter() - t0, device=dev)))
                time_frac = el / cfg.max_seconds
                if time_frac >= 1.0:
                    result.stopped_by_time = True
                    break
            lr = cfg.lr * lr_factor(step, cfg, time_frac)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = order.next()
            step_seed = sample_seed(cfg.seed, step)
            opt.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=dev)
            m = cfg.batch_size // (W * A)
            try:
                for a in range(A):
                    pos = micro_batch_positions(cfg.batch_size, W, A, ctx.rank, a)
                    batch = collate([dataset[idx[p]] for p in pos])
                    sync = train_net.no_sync() if (ctx.active and a < A - 1) else nullcontext()
                    with sync:
                        with _autocast(cfg, dev):
                            per_sample = _micro_loss(den, model, batch, pos, step_seed, sigma_kind, cfg, dev)
                        loss = per_sample.float().mean() / A
                        loss.backward()
                    loss_sum += loss.detach()
            except OOM_ERRORS as e:
                opt.zero_grad(set_to_none=True)
                free_accelerator_memory(dev)
                raise oom_error(
                    e, step=step, micro_batch=m, batch_size=cfg.batch_size, world_size=W, accum=A, device=dev
                ) from e
            g_loss = float(ctx.all_reduce_mean(loss_sum))
            max_norm = cfg.grad_clip if cfg.grad_clip else math.inf
            g_norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm))
            if not (math.isfinite(g_loss) and math.isfinite(g_norm)):
                counters["skipped_nonfinite"] += 1
                n_bad = counters["skipped_nonfinite"]
                opt.zero_grad(set_to_none=True)
                result.skipped_nonfinite = n_bad
                if ctx.is_main:
                    warnings.warn(
                        f"step {step}: non-finite loss {g_loss} / gradient norm {g_norm}; update "
                        f"skipped ({n_bad} of at most {cfg.max_nonfinite})",
                        NonFiniteLossWarning,
                        stacklevel=3,
                    )
                    log.event("nonfinite_loss", step=step + 1, loss=g_loss, grad_norm=g_norm, count=n_bad)
                if n_bad >= cfg.max_nonfinite:
                    raise NonFiniteLossError(
                        f"stopping at step {step}: {n_bad} steps had a non-finite loss or gradient "
                        f"(max_nonfinite={cfg.max_nonfinite}); check the data for NaN/inf and lower lr"
                    )
            else:
                opt.step()
                decay = ema_decay_at(counters["ema_updates"], cfg.ema_decay, cfg.ema_warmup)
                ema_update(model.ema, net, decay)
                counters["ema_updates"] += 1
                running.append(g_loss)
            result.steps = step + 1
            if running and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
                mean = sum(running) / len(running)
                running = []
                result.losses.append((step + 1, mean))
                el = time.perf_counter() - t0
                log.metrics(
                    step + 1,
                    loss=mean,
                    lr=lr,
                    grad_norm=g_norm,
                    time_s=el,
                    skipped_nonfinite=counters["skipped_nonfinite"],
                    world_size=W,
                    samples_per_s=(step + 1 - start) * cfg.batch_size / el if el > 0 else None,
                )
                if bar is not None:
                    bar.set_postfix(loss=f"{mean:.4f}")
            if (
                root is not None
                and cfg.checkpoint_every
                and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps)
            ):
                state = {"data_order": order.state(), "train_config": asdict(cfg), "lr": lr, **counters}
                p = checkpointing.save_training_checkpoint(
                    root,
                    step=step + 1,
                    model=model,
                    optimizer=opt,
                    training_state=state,
                    ctx=ctx,
                    keep=cfg.keep_checkpoints,
                )
                if p is not None:
                    result.checkpoints.append(str(p))
                    log.event("checkpoint", step=step + 1, path=str(p))
            if callback is not None:
                callback(step, g_loss)
            if bar is not None:
                bar.update(1)
        if result.stopped_by_time and result.steps > start:
            if running:
                result.losses.append((result.steps, sum(running) / len(running)))
                log.metrics(
                    result.steps,
                    loss=result.losses[-1][1],
                    lr=lr,
                    time_s=time.perf_counter() - t0,
                    stopped_by_time=True,
                )
            if root is not None and cfg.checkpoint_every and result.steps % cfg.checkpoint_every:
                state = {"data_order": order.state(), "train_config": asdict(cfg), "lr": lr, **counters}
                p = checkpointing.save_training_checkpoint(
                    root,
                    step=result.steps,
                    model=model,
                    optimizer=opt,
                    training_state=state,
                    ctx=ctx,
                    keep=cfg.keep_checkpoints,
                )
                if p is not None:
                    result.checkpoints.append(str(p))
                    log.event("checkpoint", step=result.steps, path=str(p))
    finally:
        if bar is not None:
            bar.close()
        result.seconds = time.perf_counter() - t0
