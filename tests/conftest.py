"""Shared fixtures; also makes the repository root importable, so tests can use ``bench``
from any directory."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from katcp.ioloop_manager import IOLoopManager  # noqa: E402 (needs the path above)

LOOP_WAIT = 10.0


@pytest.fixture
def loop_manager():
    """A managed ioloop running in its own thread, stopped and joined after the test."""
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=LOOP_WAIT)
    yield manager
    manager.stop().result(LOOP_WAIT)
    manager.join(LOOP_WAIT)
