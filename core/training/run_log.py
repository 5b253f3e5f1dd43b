"""Training logs: one JSON object per line in ``out_dir/train_log.jsonl`` (and TensorBoard
scalars when the ``tensorboard`` package is installed), written by rank 0 only.

Lines are either metrics ``{"step", "loss", "lr", "grad_norm", "time_s", …}`` or events
``{"event": "resumed" | "checkpoint" | "checkpoint_refused" | "nonfinite_loss", …}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)  # "nan"/"inf": strict JSON has no such numbers
    return v


class RunLog:
    """Append-only JSONL log (+ optional TensorBoard writer). Inactive when ``out_dir`` is None
    or on ranks other than 0."""

    def __init__(self, out_dir: str | Path | None, *, enabled: bool = True, tensorboard: bool = True):
        self._f = None
        self._tb = None
        if not enabled or out_dir is None:
            return
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "train_log.jsonl"
        self._f = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: JSONL only
                pass
            else:
                self._tb = SummaryWriter(log_dir=str(out / "tensorboard"))

    def write(self, record: dict) -> None:
        if self._f is None:
            return
        self._f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")
        self._f.flush()

    def metrics(self, step: int, **values) -> None:
        self.write({"step": step, **values})
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(f"train/{k}", v, step)

    def event(self, name: str, **fields) -> None:
        self.write({"event": name, **fields})

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
