"""Shared fixtures of the Python unit tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import torch
from local_http import Route, Server


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


@pytest.fixture
def stop() -> threading.Event:
    """Set when the test ends: routes that would talk (or stay silent) for ever stop then."""
    return threading.Event()


@pytest.fixture
def serve(stop: threading.Event) -> Iterator[Callable[..., Server]]:
    """Start local HTTP servers (``local_http.Server`` arguments); all closed at the end."""
    servers: list[Server] = []

    def start(routes: dict[str, Route], *args: object, **kwargs: object) -> Server:
        servers.append(Server(routes, *args, **kwargs))
        return servers[-1]

    yield start
    stop.set()
    for s in servers:
        s.close()
