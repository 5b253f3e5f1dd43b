"""The cross-modality benchmark suite: task protocol, runner, report."""

from .task import BenchContext, BenchmarkTask, make_row

__all__ = ["BenchContext", "BenchmarkTask", "make_row"]
