"""Helper for the trainer tests (not a test module).

Defines a tiny 4-d modality with a small MLP denoiser and a fixed data set, and runs
:func:`polydiff.training.train` from the command line so tests can launch it alone, under
``python -m torch.distributed.run`` (torchrun) or kill it with SIGKILL mid-run. On rank 0 it
writes ``<out>/final.safetensors`` (network, EMA and optimiser tensors) and
``<out>/result.json``.

    python tests/core/trainer_worker.py --out DIR --steps 20 --batch-size 8 [--grad-accum 2]
        [--checkpoint-every 5] [--resume auto] [--sleep 0.05] [--nan-item 17]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from polydiff.hookspecs import hookimpl
from polydiff.modality import Modality

MODALITY = "tiny_train_test"
DIM = 4


class TinyMLP(nn.Module):
    """``net(x [B, 4], time [B], cond) → [B, 4]``; ``dropout`` > 0 exercises the global torch RNG."""

    def __init__(self, dim: int = DIM, hidden: int = 32, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 1, hidden),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, x, time, cond=None):
        return self.net(torch.cat([x, time[:, None].to(x.dtype)], dim=1))


class TinyModality(Modality):
    name = MODALITY
    default_network = "tiny_mlp"
    default_dataset = "tiny_clusters"  # the tests pass make_dataset() to train() directly
    default_metrics = ()
    default_schedule = "edm"
    default_parameterization = "edm"
    sigma_data = 0.5

    def build_network(self, name=None, **kwargs):
        return TinyMLP(**kwargs)

    def sampling_request(self, n, cond, rng):
        return (DIM,), None

    def write(self, samples, path):
        """One ``.npy`` array ``[N, 4]``."""
        import numpy as np

        path = Path(path)
        np.save(path, torch.stack([torch.as_tensor(s) for s in samples]).numpy())
        return [path]

    def read(self, path):
        import numpy as np

        return list(torch.from_numpy(np.load(path)))


class TinyPlugin:
    @hookimpl
    def polydiff_register_modalities(self, register):
        register(MODALITY, TinyModality)


def make_dataset(n: int = 48, seed: int = 123) -> list[torch.Tensor]:
    """Two Gaussian clusters in ℝ⁴ (std 0.1 around ±0.5·1)."""
    g = torch.Generator().manual_seed(seed)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    x = 0.5 * sign[:, None] * torch.ones(n, DIM) + 0.1 * torch.randn(n, DIM, generator=g)
    return list(x)


def make_model(seed: int = 0, **net_kwargs):
    from polydiff.model import DiffusionModel

    torch.manual_seed(seed)
    return DiffusionModel.create(TinyModality(), **net_kwargs)


def final_tensors(model) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in model.network.state_dict().items()}
    out.update({f"ema.{k}": v for k, v in model.ema.state_dict().items()})
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--keep", type=int, default=3)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds to wait after each step")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--cond-dropout", type=float, default=0.0)
    ap.add_argument("--nan-item", type=int, default=None, help="make this data item NaN")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from safetensors.torch import save_file

    from polydiff.plugin_manager import get_plugins
    from polydiff.training import TrainConfig, train

    if get_plugins().pm.get_plugin("tiny_train_test_plugin") is None:
        get_plugins().register(TinyPlugin(), name="tiny_train_test_plugin")
    model = make_model(0, dropout=args.dropout)
    data = make_dataset()
    if args.nan_item is not None:
        data[args.nan_item] = torch.full((DIM,), float("nan"))
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=1e-2,
        warmup_steps=3,
        lr_schedule="cosine",
        ema_decay=0.9,
        seed=7,
        log_every=5,
        out_dir=args.out,
        device="cpu",
        progress=False,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep,
        resume=args.resume,
        cond_dropout=args.cond_dropout,
    )
    cb = (lambda step, loss: time.sleep(args.sleep)) if args.sleep > 0 else None
    res = train(model, data, cfg, callback=cb)
    if res.rank == 0:
        out = Path(args.out)
        save_file(final_tensors(model), str(out / "final.safetensors"))
        (out / "result.json").write_text(
            json.dumps(
                {
                    "steps": res.steps,
                    "start_step": res.start_step,
                    "resumed_from": res.resumed_from,
                    "world_size": res.world_size,
                    "skipped_nonfinite": res.skipped_nonfinite,
                    "losses": res.losses,
                    "checkpoints": res.checkpoints,
                    "pid": os.getpid(),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
