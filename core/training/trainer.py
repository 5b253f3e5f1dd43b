"""The trainer shared by all modalities.

``train(model, dataset, TrainConfig(...))`` draws seeded mini-batches, computes
:func:`polydiff.losses.diffusion_loss` in the modality's space, applies AdamW with
warm-up, gradient clipping and EMA, logs JSONL and shows a progress bar.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..conditioning import to_device, with_cond_mask
from ..losses import diffusion_loss
from ..rng import GeneratorRNG


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # constant | cosine
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


@dataclass
class TrainResult:
    losses: list = field(default_factory=list)  # (step, mean loss) every log_every steps
    steps: int = 0
    seconds: float = 0.0
    skipped_nonfinite: int = 0

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        span = max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
    return 1.0


class BatchStream:
    """Seeded endless mini-batches: a fresh permutation per epoch (no item dropped)."""

    def __init__(self, dataset, batch_size: int, seed: int, collate):
        self.dataset, self.bs, self.seed, self.collate = dataset, batch_size, seed, collate
        self.epoch, self.pos, self.perm = 0, 0, None

    def _new_perm(self):
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        self.perm = torch.randperm(len(self.dataset), generator=g).tolist()
        self.pos = 0

    def next(self):
        if self.perm is None:
            self._new_perm()
        idx = []
        while len(idx) < self.bs:
            if self.pos >= len(self.perm):
                self.epoch += 1
                self._new_perm()
            take = self.perm[self.pos: self.pos + self.bs - len(idx)]
            idx += take
            self.pos += len(take)
        return self.collate([self.dataset[i] for i in idx])


@torch.no_grad()
def ema_update(ema, net, decay: float) -> None:
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.lerp_(p.detach(), 1 - decay)
    for be, b in zip(ema.buffers(), net.buffers()):
        be.copy_(b)


def train(model, dataset, cfg: TrainConfig | None = None, *, callback=None) -> TrainResult:
    """Train ``model`` (a :class:`polydiff.model.DiffusionModel`) in place on ``dataset``."""
    from ..model import resolve_device

    cfg = cfg or TrainConfig()
    if len(dataset) == 0:
        raise ValueError("cannot train on an empty dataset")
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model.to(dev)
    if model.ema is None:
        model.init_ema()
    net = model.network
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sigma_sampling = cfg.sigma_sampling or ("lognormal" if model.parameterization == "edm" else "uniform_t")
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = GeneratorRNG(gen)
    stream = BatchStream(dataset, cfg.batch_size, cfg.seed, model.modality.collate)
    den = model.denoiser(ema=False)
    log_f = None
    if cfg.out_dir:
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        log_f = open(Path(cfg.out_dir) / "train_log.jsonl", "a")
    result = TrainResult()
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc=f"train {model.modality.name}", leave=False)
    t0 = time.perf_counter()
    running = []
    try:
        for step in range(cfg.steps):
            batch = stream.next()
            x0 = batch["x"].to(dev)
            cond = to_device(batch.get("cond"), dev)
            if cfg.cond_dropout > 0:
                keep = (torch.rand(x0.shape[0], generator=gen) >= cfg.cond_dropout).float().to(dev)
                cond = with_cond_mask(cond, keep, x0.shape[0])
            space = model.modality.space(cond)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(step, cfg)
            loss = diffusion_loss(den, x0, cond, space, rng, gen, sigma_sampling=sigma_sampling,
                                  weighting=cfg.weighting).mean()
            if not torch.isfinite(loss):
                result.skipped_nonfinite += 1
                opt.zero_grad(set_to_none=True)
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            ema_update(model.ema, net, cfg.ema_decay)
            running.append(float(loss.detach()))
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                mean = sum(running) / len(running)
                running = []
                result.losses.append((step + 1, mean))
                if log_f:
                    log_f.write(json.dumps({"step": step + 1, "loss": mean, "lr": opt.param_groups[0]["lr"],
                                            "time_s": time.perf_counter() - t0}) + "\n")
                    log_f.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{mean:.4f}")
            if callback is not None:
                callback(step, float(loss.detach()))
            if bar is not None:
                bar.update(1)
            result.steps = step + 1
    finally:
        if bar is not None:
            bar.close()
        if log_f:
            log_f.close()
    result.seconds = time.perf_counter() - t0
    model.training_info = {"config": asdict(cfg), "steps": result.steps, "seconds": result.seconds,
                           "final_loss": result.losses[-1][1] if result.losses else None}
    return result
