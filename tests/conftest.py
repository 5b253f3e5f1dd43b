"""Shared test configuration: ``gpu``-marked tests skip without CUDA."""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Fuzz tests (hypothesis) run with a fixed example budget per test and a fixed seed, so a
# CI run is reproducible; run with HYPOTHESIS_PROFILE=explore to draw fresh examples.
import os  # noqa: E402

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None, database=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for a module (use: ``pytestmark =
    pytest.mark.usefixtures("one_thread")``): small tensors run faster on one thread of a
    shared 2-core machine; the previous count is restored after the module."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
