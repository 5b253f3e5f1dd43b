"""Shared fixtures: the 50 shipped domains are parsed once per test session."""

import pytest


@pytest.fixture(scope="session")
def domains():
    from polydiff.plugins.protein.data import load_domains

    return load_domains()
