"""The peak-memory reading of the benchmark rows."""

import pytest
import torch

from polydiff import memory


def test_peak_memory_on_cpu_is_the_resident_set_high_water_mark():
    before = memory.peak_memory_mb("cpu")
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB touched
    after = memory.peak_memory_mb(torch.device("cpu"))
    del block
    assert before > 1 and after >= before and after >= 64
    memory.reset_peak_memory("cpu")  # a no-op on the CPU
    assert memory.peak_memory_mb("cpu") >= after


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_on_cuda_follows_the_allocator_and_resets():
    dev = torch.device("cuda")
    memory.reset_peak_memory(dev)
    x = torch.empty(32 * 2**20 // 4, device=dev)  # 32 MiB
    assert memory.peak_memory_mb(dev) >= 32
    del x
    torch.cuda.empty_cache()
    memory.reset_peak_memory(dev)
    assert memory.peak_memory_mb(dev) < 32
