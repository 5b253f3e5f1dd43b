"""Peak memory of the running process, as the benchmark rows report it (``peak_mem_mb``).

On a CUDA device: the most memory torch's caching allocator has handed out on that device
since the last :func:`reset_peak_memory` (``torch.cuda.max_memory_allocated``). On the CPU:
the process's resident-set high-water mark (``getrusage`` ``ru_maxrss``: KiB on Linux,
bytes on macOS), which cannot be reset and also counts what Python and the libraries use.
"""

from __future__ import annotations

import sys

import torch

__all__ = ["peak_memory_mb", "reset_peak_memory"]

MIB = 2**20


def peak_memory_mb(device="cpu") -> float:
    """Peak memory in MiB for ``device`` (a ``torch.device`` or a string); NaN where the
    platform cannot tell (no ``resource`` module)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / MIB
    try:
        import resource
    except ImportError:  # not POSIX
        return float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / MIB if sys.platform == "darwin" else rss / 1024


def reset_peak_memory(device="cpu") -> None:
    """Start a new CUDA peak for ``device``; nothing on the CPU (the RSS peak cannot be reset)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
