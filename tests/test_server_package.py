"""katcp.server as a package: documented homes, keyword parameters, thread crossings."""

import asyncio
import concurrent.futures
import gc
import importlib
import inspect
import logging
import os
import pickle
import threading
import time
import warnings
from unittest import mock

import pytest
import tornado.ioloop

import katcp.server
from katcp.core import Message, Sensor
from katcp.ioloop_manager import IOLoopManager
from katcp.sampling import SampleStrategy
from katcp.server import ClientRequestConnection, DeviceLogger, DeviceServer
from katcp.testutils import ClientConnectionTest, call_in_ioloop

from log_helpers import recording_logger
from server_kinds import start_async
from server_line_client import LineClient

TIMEOUT = 10


@pytest.mark.parametrize("name", katcp.server.__all__)
def test_documented_names_live_at_katcp_server(name):
    obj = getattr(katcp.server, name)
    if isinstance(obj, type) or callable(obj):
        assert obj.__module__ == "katcp.server"
    if isinstance(obj, type):
        assert repr(obj) == "<class 'katcp.server.%s'>" % name
        assert pickle.loads(pickle.dumps(obj)) is obj


def test_katcp_server_time_is_the_time_module():
    # Code written for the single-module katcp.server patches katcp.server.time.time.
    assert katcp.server.time is time


class _Recorder(DeviceServer):
    """An unstarted server whose mass informs are kept."""

    def setup_sensors(self):
        """No sensors."""
        self.sent = []

    def mass_inform(self, msg):
        self.sent.append(msg)


def test_device_logger_takes_name_and_timestamp_keywords():
    device = _Recorder("127.0.0.1", 0)
    logger = DeviceLogger(device, root_logger="dev")
    logger.error("value %s", 5, name="dev.sub", timestamp=1234.5)
    logger.fatal("plain", timestamp=10.0)
    assert [str(msg) for msg in device.sent] == [
        r"#log error 1234.500000 dev.sub value\_5",
        r"#log fatal 10.000000 dev plain"]
    assert logger.warn.__name__ == "warn"


@pytest.fixture
def python_log():
    with recording_logger("katcp.test.devicelogger") as (logger, handler):
        yield logger, handler.records


def test_device_logger_passes_python_loggings_keywords_on(python_log):
    # As code written for Python's logging calls it: self.log.error(..., exc_info=True).
    python_logger, records = python_log
    device = _Recorder("127.0.0.1", 0)
    logger = DeviceLogger(device, python_logger=python_logger)
    try:
        1 / 0
    except ZeroDivisionError:
        logger.error("could not compute %s", "x", exc_info=True, stack_info=True,
                     extra={"device": "d1"})
    [record] = records
    assert record.getMessage() == "could not compute x"
    assert record.exc_info[0] is ZeroDivisionError
    assert record.stack_info and record.device == "d1"
    # The record names the code that logged, not DeviceLogger.
    assert record.funcName == "test_device_logger_passes_python_loggings_keywords_on"
    # The inform carries the message alone.
    assert [msg.arguments[3] for msg in device.sent] == [b"could not compute x"]

    def log_for_caller():
        logger.log(DeviceLogger.WARN, "from a helper", stacklevel=2)
        logger.warn("from a helper", stacklevel=2)

    log_for_caller()
    assert [r.funcName for r in records[1:]] == [
        "test_device_logger_passes_python_loggings_keywords_on"] * 2


def test_device_logger_refuses_an_unknown_keyword():
    logger = DeviceLogger(_Recorder("127.0.0.1", 0))
    with pytest.raises(TypeError):
        logger.error("typo", timstamp=1.0)
    with pytest.raises(TypeError):
        logger.log(DeviceLogger.ERROR, "typo", nmae="x")


def test_sampling_strategies_take_ioloop_as_a_keyword_and_refuse_others():
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    try:
        sensor = Sensor.integer("an.int", "", "", [0, 10])
        strategy = SampleStrategy.get_strategy("period", lambda s, r: None, sensor, "1",
                                               ioloop=ioloop)
        assert strategy.ioloop is ioloop
        with pytest.raises(TypeError):
            SampleStrategy.get_strategy("event", lambda s, r: None, sensor, iolop=ioloop)
    finally:
        ioloop.close()


def test_request_connection_tells_whether_it_replied():
    req = ClientRequestConnection(ClientConnectionTest(), Message.request("watchdog", mid=3))
    assert not req.replied
    req.reply("ok")
    assert req.replied
    with pytest.raises(RuntimeError):
        req.reply("ok")
    req.reply_again("ok", "again")
    assert [str(msg) for msg in req.client_connection.replies] == [
        "!watchdog[3] ok", "!watchdog[3] ok again"]


class _Device(DeviceServer):
    """A threaded server that keeps its client connections."""

    def setup_sensors(self):
        """No sensors."""
        self.connected = []
        self.has_client = threading.Event()

    def on_client_connect(self, client_conn):
        self.connected.append(client_conn)
        self.has_client.set()
        return super().on_client_connect(client_conn)


@pytest.fixture
def device():
    server = _Device("127.0.0.1", 0)
    assert server.start(timeout=TIMEOUT)
    yield server
    server.stop().result(TIMEOUT)
    server.join(timeout=TIMEOUT)


def test_disconnect_from_another_thread_waits_for_the_close(device):
    with LineClient(device.bind_address[1]) as client:
        client.greeting()
        assert device.has_client.wait(TIMEOUT)
        done = device.connected[0].disconnect("Go away.")
        assert isinstance(done, concurrent.futures.Future)
        done.result(TIMEOUT)
        assert client.read_to_eof() == [b"#disconnect Go\\_away.", b""]


def test_call_from_thread_runs_on_the_loop_and_logs_a_failure(device, caplog):
    transport = device._server
    seen = transport.call_from_thread(threading.get_ident).result(TIMEOUT)
    assert seen == transport.ioloop_thread_id != threading.get_ident()

    def broken():
        raise KeyError("broken")

    with caplog.at_level(logging.ERROR, logger="katcp.server"):
        failed = transport.call_from_thread(broken)
        with pytest.raises(KeyError):
            failed.result(TIMEOUT)
        # The failure is logged by a callback of the future, right after it resolves.
        device.sync_with_ioloop(timeout=TIMEOUT)
    assert any(record.exc_info and record.exc_info[0] is KeyError
               for record in caplog.records)


def test_call_from_thread_runs_an_async_def_on_the_loop_thread_too(device):
    # On the loop thread the future resolved with the coroutine itself, which nobody
    # awaited (from another thread it resolved with the coroutine's result).
    transport = device._server

    async def work(value):
        await asyncio.sleep(0)
        return value

    async def on_loop():
        return await transport.call_from_thread(lambda: work("on loop"))

    assert transport.call_from_thread(lambda: work("off loop")).result(TIMEOUT) == "off loop"
    assert call_in_ioloop(transport.ioloop, on_loop) == "on loop"


def test_package_modules_stay_under_a_thousand_lines():
    folder = os.path.dirname(katcp.server.__file__)
    for name in os.listdir(folder):
        if name.endswith(".py"):
            with open(os.path.join(folder, name)) as module:
                assert sum(1 for _ in module) <= 1000, name


def test_sync_with_ioloop_on_the_loop_waits_for_a_loop_turn():
    class Quiet(katcp.server.AsyncDeviceServer):
        def setup_sensors(self):
            """No sensors."""

    async def main():
        device = Quiet("127.0.0.1", 0)
        device.start()
        try:
            order = []
            tornado.ioloop.IOLoop.current().add_callback(order.append, "queued before")
            synced = device.sync_with_ioloop()
            assert order == []
            await synced
            assert order == ["queued before"]
        finally:
            device.stop()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


class _AwaitedFuture(concurrent.futures.Future):
    """A future that tells when something waits on it (asyncio.wrap_future adds a
    callback): the server is then awaiting the handler's reply."""

    def __init__(self):
        super().__init__()
        self.awaited = threading.Event()

    def add_done_callback(self, fn):
        super().add_done_callback(fn)
        self.awaited.set()


class _NeverReplies(DeviceServer):
    """Its ?hang handler returns a future that nothing resolves, once `release` is set."""

    def setup_sensors(self):
        """No sensors."""
        self.handler_future = _AwaitedFuture()
        self.handled = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def request_hang(self, req, msg):
        """Never reply."""
        self.handled.set()
        assert self.release.wait(TIMEOUT)
        return self.handler_future


@pytest.mark.parametrize("handler_thread", [True, False])
def test_stopping_ends_handlers_still_waiting(handler_thread):
    device = _NeverReplies("127.0.0.1", 0)
    device.set_concurrency_options(thread_safe=True, handler_thread=handler_thread)
    device.start(timeout=TIMEOUT)
    with LineClient(device.bind_address[1]) as client:
        client.send(b"?hang")
        assert device.handler_future.awaited.wait(TIMEOUT)
        device.stop().result(TIMEOUT)
        device.join(TIMEOUT)
    # The server's wait on it was cancelled, which cancels the handler's future.
    assert device.handler_future.cancelled()


class _NeverReady(katcp.server.AsyncDeviceServer):
    """Its on_client_connect waits for ever, and tells when it waits and when it ends."""

    def setup_sensors(self):
        """No sensors."""
        self.waiting = threading.Event()
        self.ended = threading.Event()

    async def on_client_connect(self, client_conn):
        self.waiting.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self.ended.set()


def test_stopping_ends_an_on_client_connect_still_waiting():
    # As it ends the handlers it finds waiting: the device's coroutine went on waiting,
    # for a client long gone, on a loop that runs on after the stop.
    device = start_async(_NeverReady)
    with LineClient(device.bind_address[1]):
        assert device.waiting.wait(TIMEOUT)
        device.stop().result(TIMEOUT)
        device.join(TIMEOUT)
        assert device.ended.wait(TIMEOUT)


class _NeverHandles(katcp.server.AsyncDeviceServer):
    """Its async def handle_message waits for ever, and tells when it waits and ends."""

    def setup_sensors(self):
        """No sensors."""
        self.waiting = threading.Event()
        self.ended = threading.Event()

    async def handle_message(self, client_conn, msg):
        self.waiting.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self.ended.set()


@pytest.mark.parametrize("handler_thread", [False, True])
def test_stopping_ends_an_async_handle_message_still_waiting(handler_thread):
    # As it ends an on_client_connect coroutine: on a loop that runs on after the stop,
    # the device's coroutine went on waiting for a client long gone.
    device = start_async(_NeverHandles, lambda device: device.set_concurrency_options(
        handler_thread=handler_thread))
    with LineClient(device.bind_address[1]) as client:
        client.send(b"?hang")
        assert device.waiting.wait(TIMEOUT)
        device.stop().result(TIMEOUT)
        device.join(TIMEOUT)
        assert device.ended.wait(TIMEOUT)


def test_a_handler_coroutine_whose_task_is_cancelled_before_it_runs_is_closed():
    # As a stop cancels the task awaiting a handler's coroutine, in the loop turn in
    # which that task was made: nothing else would ever await the coroutine, and Python
    # would warn that it "was never awaited" when it is collected.
    async def scenario():
        server = katcp.server.KATCPServer(None, "127.0.0.1", 0)

        async def handler():
            return "reply"

        async def awaiting(coroutine):
            return await coroutine

        unstarted, started = handler(), handler()
        cancelled = server.spawn(awaiting(unstarted), owns=unstarted)
        finished = server.spawn(awaiting(started), owns=started)
        cancelled.cancel()
        await asyncio.wait([cancelled, finished], timeout=TIMEOUT)
        assert cancelled.cancelled() and finished.result() == "reply"
        return unstarted

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unstarted = asyncio.run(scenario())
        assert inspect.getcoroutinestate(unstarted) == inspect.CORO_CLOSED
        del unstarted
        gc.collect()
    assert [str(warning.message) for warning in caught] == []


def test_a_handler_future_that_reaches_the_loop_after_the_stop_is_ended_too():
    # The handler thread hands the loop its handler's future after the server stopped
    # (the loop runs on): nothing will reply, so it is ended as the stop ended the rest.
    manager = IOLoopManager()
    manager.start()
    try:
        device = _NeverReplies("127.0.0.1", 0)
        device.set_ioloop(manager.get_ioloop())
        device.set_concurrency_options(thread_safe=True, handler_thread=True)
        device.release.clear()
        device.start(timeout=TIMEOUT)
        with LineClient(device.bind_address[1]) as client:
            client.send(b"?hang")
            assert device.handled.wait(TIMEOUT)
            device.stop().result(TIMEOUT)
            device.release.set()
            device.join(TIMEOUT)
        ended = threading.Event()
        device.handler_future.add_done_callback(lambda future: ended.set())
        assert ended.wait(TIMEOUT)
        assert device.handler_future.cancelled()
    finally:
        manager.stop()
        manager.join(TIMEOUT)


class _RepliesLater(_NeverReplies):
    """Its ?hang handler returns a coroutine (not started), once `release` is set."""

    def request_hang(self, req, msg):
        """Reply later."""
        self.handled.set()
        assert self.release.wait(TIMEOUT)
        self.coroutine = self._reply(req)
        return self.coroutine

    async def _reply(self, req):
        return req.make_reply("ok")


class _DispatchesLater(_NeverReplies):
    """Its handle_message returns a coroutine (not started) for ?hang, once `release`
    is set."""

    def handle_message(self, client_conn, msg):
        if msg.name != "hang":
            return super().handle_message(client_conn, msg)
        self.handled.set()
        assert self.release.wait(TIMEOUT)
        self.coroutine = self._dispatch()
        return self.coroutine

    async def _dispatch(self):
        pass


@pytest.mark.parametrize("device_class", [_RepliesLater, _DispatchesLater])
def test_a_handler_coroutine_returned_after_the_loop_closed_is_closed(device_class):
    # The handler thread handed the loop the coroutine its handler (or handle_message)
    # returned once the server had stopped and its loop closed: nothing would ever await
    # it, and Python warned that it "was never awaited" when it was collected.
    device = device_class("127.0.0.1", 0)
    device.release.clear()
    device.start(timeout=TIMEOUT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with LineClient(device.bind_address[1]) as client:
            client.send(b"?hang")
            assert device.handled.wait(TIMEOUT)
            device.stop().result(TIMEOUT)
            device._server.join(TIMEOUT)  # the loop's thread, which closes the loop
            device.release.set()
            device.join(TIMEOUT)
        assert inspect.getcoroutinestate(device.coroutine) == inspect.CORO_CLOSED
        del device.coroutine
        gc.collect()
    assert [str(warning.message) for warning in caught] == []


@pytest.mark.parametrize("module, name, home", [
    ("katcp.server", "Message", "katcp.core"), ("katcp.server", "FailReply", "katcp.core"),
    ("katcp.server", "request", "katcp.kattypes"),
    ("katcp.server", "SampleStrategy", "katcp.sampling"),
    ("katcp.client", "KatcpClientError", "katcp.core"),
    ("katcp.client", "ProtocolFlags", "katcp.core")])
def test_names_the_single_modules_had_still_import_from_the_packages(module, name, home):
    # `from katcp.client import KatcpClientError` worked when katcp.client was one module.
    obj = getattr(importlib.import_module(module), name)
    assert obj is getattr(importlib.import_module(home), name)
    assert obj.__module__ == home
    assert name not in importlib.import_module(module).__all__


class _RecordedRequest(ClientRequestConnection):
    made = []

    def __init__(self, client_connection, msg):
        super().__init__(client_connection, msg)
        self.made.append(msg.name)


class _RecordedHandlerThread(katcp.server.MessageHandlerThread):
    made = 0

    def __init__(self, *args, **kwargs):
        type(self).made += 1
        super().__init__(*args, **kwargs)


def test_names_patched_on_katcp_server_are_heard_where_it_looked_them_up():
    # The single-module katcp.server of 0.9.3 looked these up at call time, so tests
    # patch them there: each submodule's own reference kept the original.
    original = katcp.server.ClientRequestConnection
    with mock.patch("katcp.server.ClientRequestConnection", _RecordedRequest), \
            mock.patch.object(katcp.server, "MessageHandlerThread", _RecordedHandlerThread):
        server = DeviceServer("127.0.0.1", 0)
        assert server.start(timeout=TIMEOUT)
        try:
            with LineClient(server.bind_address[1]) as client:
                client.greeting()
                assert client.request("?watchdog")[1] == "!watchdog ok"
        finally:
            server.stop().result(TIMEOUT)
            server.join(timeout=TIMEOUT)
    assert _RecordedRequest.made == ["watchdog"]
    assert _RecordedHandlerThread.made == 1
    # Undone everywhere with the patch.
    assert katcp.server.ClientRequestConnection is original
    assert katcp.server.base.ClientRequestConnection is original
    thread_module = importlib.import_module("katcp.server.handler_thread")
    assert katcp.server.base.MessageHandlerThread is thread_module.MessageHandlerThread


def test_a_patch_of_katcp_server_leaves_the_defining_module_and_new_names_alone():
    # The module defining a class keeps it (its type checks of the real class); a name
    # the facade did not have (create=True) is set there alone.
    connection_module = importlib.import_module("katcp.server.connection")
    with mock.patch("katcp.server.ClientConnection") as patched:
        assert katcp.server.base.ClientConnection is patched
        assert connection_module.ClientConnection is not patched
    with mock.patch("katcp.server.no_such_name", create=True):
        assert not hasattr(katcp.server.base, "no_such_name")
    assert not hasattr(katcp.server, "no_such_name")


def test_a_name_deleted_from_katcp_server_and_set_again_is_back_in_its_modules(monkeypatch):
    # pytest's monkeypatch.delattr() deletes the name and undoes with a set: the modules
    # it was deleted from had it no more, and a server dispatched no request after that.
    original = katcp.server.ClientRequestConnection
    monkeypatch.delattr(katcp.server, "ClientRequestConnection")
    assert not hasattr(katcp.server.base, "ClientRequestConnection")
    monkeypatch.undo()
    assert katcp.server.ClientRequestConnection is original
    assert katcp.server.base.ClientRequestConnection is original
    # A name set anew after that is the facade's alone again.
    with mock.patch("katcp.server.no_such_name", create=True):
        assert not hasattr(katcp.server.base, "no_such_name")


def test_a_patch_of_katcp_server_leaves_a_module_patched_on_its_own_alone():
    # A module whose name is bound to another object (its own patch) is not the facade's.
    with mock.patch.object(katcp.server.base, "ClientConnection") as own:
        with mock.patch("katcp.server.ClientConnection") as patched:
            assert katcp.server.base.ClientConnection is own
            assert katcp.server.transport.ClientConnection is patched
        assert katcp.server.base.ClientConnection is own
