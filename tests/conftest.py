"""Shared fixtures; also makes the repository root importable, so tests can use ``bench``
from any directory."""

import os
import sys

import unittest

import pytest
import tornado
import tornado.testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from katcp.ioloop_manager import IOLoopManager  # noqa: E402 (needs the path above)
from katcp.loop import policy  # noqa: E402

# KATCP_EVENT_LOOP=uvloop runs the tests' own loops on uvloop too, not only katcp's.
policy.install()

LOOP_WAIT = 10.0

if tornado.version_info < (6, 4):
    _tornado_test_case_init = tornado.testing.AsyncTestCase.__init__

    def _test_case_init(self, methodName="runTest"):
        # pytest >= 8.2 makes an instance of each TestCase class with the default
        # "runTest" to find its fixtures; tornado < 6.4 then wraps that method, which the
        # class does not have, and the whole module fails to collect. That instance never
        # runs, so unittest's own __init__ is enough for it.
        if methodName == "runTest" and not hasattr(self, methodName):
            unittest.TestCase.__init__(self, methodName)
        else:
            _tornado_test_case_init(self, methodName)

    tornado.testing.AsyncTestCase.__init__ = _test_case_init


@pytest.fixture
def loop_manager():
    """A managed ioloop running in its own thread, stopped and joined after the test."""
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=LOOP_WAIT)
    yield manager
    manager.stop().result(LOOP_WAIT)
    manager.join(LOOP_WAIT)


def pytest_terminal_summary(terminalreporter):
    """Count behaviour tests apart from existence-only checks (marker ``api_surface``).

    Most of the API surface checks only assert that a name exists; counted together with
    behaviour tests they would overstate what the suite covers.
    """
    counts = {False: {}, True: {}}
    for outcome in ("passed", "failed", "error", "skipped", "xfailed", "xpassed"):
        for report in terminalreporter.stats.get(outcome, ()):
            if getattr(report, "when", "call") != "call" and outcome == "passed":
                continue
            surface = "api_surface" in getattr(report, "keywords", {})
            counts[surface][outcome] = counts[surface].get(outcome, 0) + 1
    if not any(counts.values()):
        return

    def describe(found):
        return ", ".join("%d %s" % (n, outcome) for outcome, n in found.items()) or "none"

    terminalreporter.write_line("behaviour tests: %s; existence checks (api_surface): %s"
                                % (describe(counts[False]), describe(counts[True])))
