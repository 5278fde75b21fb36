"""The high-level and test-helper modules after their split: where names live, how
thread-facing helpers cross onto the loop, and documented keywords that are real
parameters (a misspelt one is an error, not silently ignored)."""

import asyncio
import importlib
import pickle
import sys
import threading
import unittest
from unittest import mock

import pytest
import tornado.gen

from katcp import testutils
from katcp.fake_clients import FakeAsyncClient
from katcp.inspecting_client import ExponentialRandomBackoff
from katcp.ioloop_manager import IOLoopThreadWrapper
from katcp.resource_client import (GroupResults, KATCPClientResource,
                                   ThreadSafeKATCPClientResourceWrapper)

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0


@pytest.mark.parametrize("package", ["katcp.testutils", "katcp.resource_client"])
def test_split_packages_keep_their_documented_home(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name).__module__ == package, name


def test_backoff_lives_in_the_loop_package_and_is_documented_in_inspecting_client():
    from katcp.loop.backoff import ExponentialRandomBackoff as shared

    assert shared is ExponentialRandomBackoff
    assert ExponentialRandomBackoff.__module__ == "katcp.inspecting_client"


def test_backoff_grows_by_its_factor_up_to_the_maximum(monkeypatch):
    monkeypatch.setattr("random.random", lambda: 1.0)
    backoff = ExponentialRandomBackoff(delay_initial=0.5, delay_max=3.0, exp_fac=2.0,
                                       randomicity=0.5)
    delays = [backoff.delay]
    for _ in range(4):
        backoff.failed()
        delays.append(backoff.delay)
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.success()
    assert backoff.delay == 0.5


class TestCallInIoloop:

    def test_returns_what_the_function_returns_computed_on_the_loop_thread(
            self, loop_manager):
        ioloop = loop_manager.get_ioloop()
        loop_thread = testutils.call_in_ioloop(ioloop, threading.get_ident)
        assert loop_thread != threading.get_ident()

    def test_waits_for_a_coroutine_and_passes_keywords_on(self, loop_manager):
        @tornado.gen.coroutine
        def add(a, b=0):
            yield tornado.gen.moment
            return a + b

        async def native(a, b=0):
            return a * b

        ioloop = loop_manager.get_ioloop()
        assert testutils.call_in_ioloop(ioloop, add, 2, b=3) == 5
        assert testutils.call_in_ioloop(ioloop, native, 2, b=3) == 6

    def test_raises_what_the_function_raised(self, loop_manager):
        def fail():
            raise KeyError("nope")

        with pytest.raises(KeyError):
            testutils.call_in_ioloop(loop_manager.get_ioloop(), fail)

    def test_a_timeout_keyword_goes_to_the_function(self, loop_manager):
        # As for call_in_ioloop(ioloop, resource.until_synced, timeout=5): the function's
        # own timeout bounds the wait, and what it raises comes back.
        ioloop = loop_manager.get_ioloop()

        async def wait_for_nothing(timeout=None):
            await asyncio.wait_for(ioloop.asyncio_loop.create_future(), timeout)

        assert testutils.call_in_ioloop(ioloop, lambda a, timeout: (a, timeout), 1,
                                        timeout=7) == (1, 7)
        with pytest.raises(asyncio.TimeoutError):
            testutils.call_in_ioloop(ioloop, wait_for_nothing, timeout=0.05)

    def test_refuses_to_block_its_own_loop(self, loop_manager):
        ioloop = loop_manager.get_ioloop()

        def nested():
            with pytest.raises(RuntimeError, match="would block"):
                testutils.call_in_ioloop(ioloop, threading.get_ident)
            return "refused"

        assert testutils.call_in_ioloop(ioloop, nested) == "refused"


@pytest.fixture
def device_server():
    server = testutils.DeviceTestServer("127.0.0.1", 0)
    server.start(timeout=WAIT)
    yield server
    server.stop()
    server.join(timeout=WAIT)


@pytest.fixture
def synced_resource(device_server, loop_manager):
    """A KATCPClientResource on a managed loop, used through its thread-safe wrapper."""
    ioloop = loop_manager.get_ioloop()
    resource = KATCPClientResource(dict(name="dev", address=device_server.bind_address,
                                        controlled=True))
    resource.set_ioloop(ioloop)
    wrapped = ThreadSafeKATCPClientResourceWrapper(resource, IOLoopThreadWrapper(ioloop))
    wrapped.start()
    wrapped.until_synced(timeout=WAIT)
    yield wrapped
    wrapped.stop()


class TestDocumentedKeywordsAreParameters:
    """A misspelt keyword of a documented keyword argument fails at once."""

    def test_resource_request_takes_timeout_and_refuses_a_typo(self, synced_resource):
        reply = synced_resource.req.watchdog(timeout=WAIT, mid=7)
        assert reply.succeeded
        assert reply.reply.mid == b"7"
        with pytest.raises(TypeError):
            synced_resource.req.watchdog(timout=WAIT)

    def test_simple_and_wrapped_requests_refuse_a_typo(self, synced_resource):
        inspecting = synced_resource.__subject__._inspecting_client
        reply, informs = testutils.call_in_ioloop(
            synced_resource.ioloop, inspecting.simple_request, "help", "watchdog",
            timeout=WAIT)
        assert reply.reply_ok() and len(informs) == 1
        for request in (inspecting.simple_request, inspecting.wrapped_request):
            with pytest.raises(TypeError):
                request("watchdog", use_mids=True)

    def test_blocking_test_client_assertions_refuse_a_typo(self, device_server):
        class Case(unittest.TestCase):
            def runTest(self):
                pass

        case = Case()
        host, port = device_server.bind_address
        client = testutils.BlockingTestClient(case, host, port)
        client.start(timeout=WAIT)
        try:
            assert client.wait_protocol(timeout=WAIT)
            client.assert_request_succeeds("watchdog", informs_count=0, timeout=WAIT)
            client.assert_request_fails("raise-fail", error_equals=(
                "There was a problem with your request."), timeout=WAIT)
            with pytest.raises(TypeError):
                client.assert_request_succeeds("watchdog", inform_count=0)
            with pytest.raises(TypeError):
                client.assert_request_fails("raise-fail", error_equal="x")
        finally:
            client.stop()
            client.join(timeout=WAIT)

    def test_mock_req_keywords(self):
        req = testutils.mock_req("watchdog", mid=3)
        assert req.msg.mid == b"3"
        with pytest.raises(TypeError):
            testutils.mock_req("watchdog", mids=3)

    def test_fake_client_takes_an_async_clients_arguments_and_its_device_keyword(self):
        FakeAsyncClient("fake-host", 5000, timeout=WAIT, auto_reconnect=False)
        FakeAsyncClient("fake-host", 5000, fake_device=None)
        with pytest.raises(TypeError):
            FakeAsyncClient("fake-host", 5000, fake_devices=None)


def test_objects_of_split_packages_pickle_under_their_documented_path():
    results = GroupResults(dev=None)
    restored = pickle.loads(pickle.dumps(results))
    assert type(restored) is GroupResults and restored == {"dev": None}
    assert b"katcp.resource_client" in pickle.dumps(results)


def test_a_name_patched_on_katcp_resource_client_is_heard_by_its_modules():
    # 0.9.3's single module looked ReplyWrappedInspectingClientAsync up when a resource
    # made its client, so tests patch it on katcp.resource_client.
    import katcp.resource_client

    original = katcp.resource_client.ReplyWrappedInspectingClientAsync
    resource = KATCPClientResource(dict(name="dev", address=("127.0.0.1", 1), controlled=True))
    with mock.patch("katcp.resource_client.ReplyWrappedInspectingClientAsync") as patched:
        client = resource.inspecting_client_factory("127.0.0.1", 1, None)
    assert client is patched.return_value
    patched.assert_called_once()
    assert importlib.import_module("katcp.resource_client.resources") \
        .ReplyWrappedInspectingClientAsync is original


@pytest.mark.parametrize("package, name, user", [
    ("katcp.inspecting_client", "ExponentialRandomBackoff", "katcp.inspecting_client.sync"),
    ("katcp.kattypes", "Str", "katcp.kattypes.decorators"),
    ("katcp.resource", "KATCPSensorReading", "katcp.resource.sensor"),
    ("katcp.resource_client", "ClientGroup", "katcp.resource_client.resources"),
    ("katcp.testutils", "WaitingMock", "katcp.testutils.requests"),
])
def test_names_patched_on_the_split_packages_reach_the_modules_that_use_them(package, name,
                                                                          user):
    # Each of these was one module in 0.9.3: a name patched there was heard by all its code.
    facade, user_module = importlib.import_module(package), importlib.import_module(user)
    original = getattr(facade, name)
    assert vars(user_module)[name] is original
    with mock.patch.object(facade, name) as patched:
        assert vars(user_module)[name] is patched
    assert vars(user_module)[name] is original


def test_a_patch_of_katcp_resource_leaves_katcp_resource_client_alone():
    # Its modules' names start with "katcp.resource" too, but they are another package.
    import katcp.resource

    sensor_module = importlib.import_module("katcp.resource.sensor")
    other = importlib.import_module("katcp.resource_client.resources")
    original = katcp.resource.escape_name
    assert vars(other)["escape_name"] is vars(sensor_module)["escape_name"] is original
    with mock.patch.object(katcp.resource, "escape_name") as patched:
        assert vars(sensor_module)["escape_name"] is patched
        assert vars(other)["escape_name"] is original
    assert vars(sensor_module)["escape_name"] is original
