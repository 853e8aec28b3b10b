"""Shared fixtures of the Python unit tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: faster on a busy 2-core machine, and one CPU class.

    Opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``; the determinism
    tests that compare thread counts set their own.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
