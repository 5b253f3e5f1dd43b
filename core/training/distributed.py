"""Process-group set-up for data-parallel training with PyTorch's own engine.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and
sets the environment variables ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``
and ``MASTER_PORT``; :func:`setup` reads them (``env://`` rendezvous) and initialises the
default process group with NCCL on CUDA and gloo on CPU. Gradients are averaged by
:class:`torch.nn.parallel.DistributedDataParallel`; this module only adds the few
collectives the trainer needs besides (a mean of the loss, a broadcast of the checkpoint
chosen for resuming, a gather of per-rank RNG states).
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

DIST_MODES = ("auto", "off")


@dataclass
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``.

    ``owns_group`` is true when :func:`setup` created the default process group (then
    :meth:`close` destroys it); a group the caller initialised is left alone.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def all_reduce_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of a tensor over ranks (float32 on the collective's device)."""
        if not self.active:
            return x
        y = x.detach().to(device=self._comm_device(), dtype=torch.float32).clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return (y / self.world_size).to(x.device)

    def broadcast_int(self, value: int, src: int = 0) -> int:
        if not self.active:
            return int(value)
        t = torch.tensor([int(value)], dtype=torch.int64, device=self._comm_device())
        dist.broadcast(t, src=src)
        return int(t.item())

    def all_gather_objects(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, …]`` on every rank (in-memory only: the objects
        travel between this job's own processes, nothing is read from disk)."""
        if not self.active:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def close(self, wait_for_peers: bool = True) -> None:
        """Destroy the group this context created, after the objects that hold it (a DDP
        reducer, pending gloo work) are collected and, with ``wait_for_peers``, every rank got
        here: a group torn down during interpreter finalisation aborts the process
        (``terminate called without an active exception``, seen under CPU contention). After
        an error pass ``wait_for_peers=False`` (a failed peer would never reach the barrier)."""
        if self.owns_group and dist.is_initialized():
            gc.collect()
            try:
                if wait_for_peers:
                    dist.barrier()
            finally:
                dist.destroy_process_group()
                self.owns_group = False


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _device_for(device, local_rank: int) -> torch.device:
    from ..model import resolve_device

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev


def setup(device="auto", mode: str = "auto", backend: str | None = None, timeout_s: float = 1800.0) -> DistContext:
    """Join (or create) the default process group if this process was started by torchrun.

    Args:
        device: ``"auto"`` (``cuda:LOCAL_RANK`` when CUDA exists, else CPU), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``.
        mode: ``"auto"`` uses torchrun's environment when ``WORLD_SIZE > 1``; ``"off"``
            trains in this process alone whatever the environment says.
        backend: ``None`` picks NCCL for CUDA devices and gloo for CPU.
        timeout_s: collective time-out (a hung peer fails the job instead of waiting forever).
    """
    if mode not in DIST_MODES:
        raise ValueError(f"unknown distributed mode {mode!r}; one of {DIST_MODES}")
    if mode != "off" and dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        dev = _device_for(device, local)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistContext(rank, world, local, dev, owns_group=False)
    if mode == "off" or env_world_size() <= 1:
        return DistContext(0, 1, 0, _device_for(device, 0), owns_group=False)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device_for(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    dist.init_process_group(backend=backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(dist.get_rank(), dist.get_world_size(), local, dev, owns_group=True)


def wrap_ddp(net: torch.nn.Module, ctx: DistContext, find_unused_parameters: bool = True) -> torch.nn.Module:
    """``net`` wrapped in DistributedDataParallel when more than one process trains.

    DDP broadcasts rank 0's parameters and buffers at construction and averages gradients
    over ranks during ``backward`` (bucketed all-reduce); ``find_unused_parameters`` lets
    networks whose conditioning branch is idle in a batch (CFG null embeddings) train.
    """
    if not ctx.active:
        return net
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids, find_unused_parameters=find_unused_parameters)
