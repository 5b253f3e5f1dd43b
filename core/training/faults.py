"""What the trainer does when a step goes wrong.

- A non-finite loss (or gradient norm) skips the optimiser update with a counted
  :class:`NonFiniteLossWarning`; after ``max_nonfinite`` such steps training stops with
  :class:`NonFiniteLossError` (the previous checkpoint is still good: a skipped step
  changes no weight).
- Running out of accelerator memory becomes :class:`TrainingOOMError`, naming the
  micro-batch that failed and how the global batch was split, so the fix is obvious.
"""

from __future__ import annotations

import torch

from ..errors import PolydiffError


class TrainingError(PolydiffError, RuntimeError):
    """Training cannot continue (the message says why and what to change)."""


class NonFiniteLossError(TrainingError, FloatingPointError):
    """Too many steps had a NaN/inf loss or gradient."""


class TrainingOOMError(TrainingError, MemoryError):
    """The accelerator ran out of memory; ``micro_batch`` is the per-process batch that failed."""

    def __init__(self, message: str, *, micro_batch: int, batch_size: int):
        super().__init__(message)
        self.micro_batch = micro_batch
        self.batch_size = batch_size


class NonFiniteLossWarning(RuntimeWarning):
    """One optimiser update was skipped because its loss or gradient was not finite."""


class CheckpointFallbackWarning(UserWarning):
    """The newest training checkpoint was refused (corrupt/truncated); an older one is used."""


#: The exception PyTorch raises when an allocation fails on an accelerator.
OOM_ERRORS: tuple[type[BaseException], ...] = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


def oom_error(
    err: BaseException, *, step: int, micro_batch: int, batch_size: int, world_size: int, accum: int, device
) -> TrainingOOMError:
    msg = (
        f"out of memory on {device} at step {step} with a micro-batch of {micro_batch} items per "
        f"process (batch_size {batch_size} = {world_size} process(es) × grad_accum {accum} × "
        f"{micro_batch}). Lower batch_size or raise grad_accum (same global batch, smaller "
        f"micro-batch). PyTorch said: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    )
    return TrainingOOMError(msg, micro_batch=micro_batch, batch_size=batch_size)


def free_accelerator_memory(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
