"""Tests for katcp.server over real sockets on 127.0.0.1."""

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import logging
import queue
import re
import socket
import struct
import threading
import warnings
from unittest import mock

import pytest
import tornado.gen
import tornado.ioloop
import tornado.testing

from katcp import server as katcp_server
from katcp.core import AsyncReply, FailReply, Message, MessageParser, ProtocolFlags, Sensor
from katcp.kattypes import Address, Float, Int, Str, concurrent_reply, \
    has_katcp_protocol_flags, minimum_katcp_version, request, request_timeout_hint, \
    return_reply
from katcp.server import handler_thread
from katcp.server.stream_host import _drop_unsent
from katcp.server import (AsyncDeviceServer, ClientConnection, ClientRequestConnection,
                          DeviceLogger, DeviceServer, KATCPServer, MessageHandlerThread,
                          ThreadsafeClientConnection, construct_name_filter, return_future)
from katcp.version import __version__

from log_helpers import no_logs, recording_logger
from server_kinds import ResolvedWhileEntered, started
from server_line_client import LineClient
from wait_helpers import run_case_for_leftovers

TIMEOUT = 10
T0 = 1234567890.25
TS_RE = r"\d+\.\d{6}"


class ExampleServer(DeviceServer):
    """Server with sensors and request handlers of every style."""

    VERSION_INFO = ("example-api", 2, 3)
    BUILD_INFO = ("example-build", 4, 5, "rc1")
    PROTOCOL_INFO = ProtocolFlags(5, 1, set("BIMT"))

    def setup_sensors(self):
        """Sensors with fixed readings."""
        self.int_sensor = Sensor.integer("an.int", "An integer.", "count", [0, 100])
        self.float_sensor = Sensor.float("a.float", "A float.", "V", [0.0, 5.0])
        self.str_sensor = Sensor.string("a.string", "A string.", "")
        for sensor in (self.int_sensor, self.float_sensor, self.str_sensor):
            self.add_sensor(sensor)
        self.int_sensor.set_value(3, timestamp=T0)
        self.float_sensor.set_value(1.5, status=Sensor.WARN, timestamp=T0)
        self.str_sensor.set_value("hi there", timestamp=T0)
        self.gate = threading.Event()
        self.order = []
        self.waiters = []
        self.pending = []
        self.disconnects = queue.Queue()

    def on_client_disconnect(self, client_conn, msg, connection_valid):
        self.disconnects.put((client_conn.address, msg, connection_valid))
        return super().on_client_disconnect(client_conn, msg, connection_valid)

    def request_plain(self, req, msg):
        """Reply with the arguments reversed."""
        req.inform("first")
        return req.make_reply("ok", *msg.arguments[::-1])

    @request(Int(), Float())
    @return_reply(Float())
    @request_timeout_hint(7)
    def request_typed(self, req, x, y):
        """Multiply an int by a float."""
        return ("ok", x * y)

    @request(Str())
    @return_reply(Str())
    def request_echo(self, req, text):
        """Echo a string."""
        return ("ok", text)

    @tornado.gen.coroutine
    def request_coro(self, req, msg):
        """A tornado coroutine handler."""
        yield tornado.gen.moment
        req.inform("coro-inform")
        return req.make_reply("ok", "coro")

    async def request_native(self, req, msg):
        """An async def handler."""
        await asyncio.sleep(0)
        return req.make_reply("ok", "native")

    @request(Int())
    @return_reply(Int())
    async def request_native_typed(self, req, x):
        """An async def handler decorated with kattypes."""
        await asyncio.sleep(0)
        return ("ok", x + 1)

    def request_nothing(self, req, msg):
        """Return None, replying itself only when asked to (?nothing replied)."""
        if msg.arguments == [b"replied"]:
            req.reply("ok", "myself")

    async def request_native_nothing(self, req, msg):
        """An async def handler that returns None without replying."""

    def request_text(self, req, msg):
        """Return a str, which is not a reply."""
        return "ok"

    def request_misnamed(self, req, msg):
        """Return the reply to another request."""
        return Message.reply("other", "ok")

    async def request_informs_instead(self, req, msg):
        """Return an inform where the reply should be."""
        return Message.inform("informs-instead", "a")

    def request_twice(self, req, msg):
        """Reply, then return a second reply."""
        req.reply("ok", "first")
        return req.make_reply("ok", "second")

    def handle_message(self, client_conn, msg):
        # A dispatch override that fails (as a subclass's own may).
        if msg.name == "explode":
            raise RuntimeError("Exploded while dispatching.")
        return super().handle_message(client_conn, msg)

    async def request_wait(self, req, msg):
        """Wait until ?release (on the loop)."""
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        await future
        return req.make_reply("ok", "waited")

    @concurrent_reply
    async def request_cwait(self, req, msg):
        """Like ?wait but other requests on the connection go on meanwhile."""
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        await future
        return req.make_reply("ok", "cwaited")

    def request_release(self, req, msg):
        """Release every ?wait and ?cwait."""
        waiters, self.waiters = self.waiters, []

        def release():
            for future in waiters:
                future.set_result(None)
        self.ioloop.add_callback(release)
        return req.make_reply("ok", len(waiters))

    def request_later(self, req, msg):
        """Reply later, when ?finish is called (AsyncReply)."""
        self.pending.append(req)
        raise AsyncReply

    def request_finish(self, req, msg):
        """Reply to every ?later."""
        pending, self.pending = self.pending, []
        for other in pending:
            other.reply("ok", "finished")
        return req.make_reply("ok", len(pending))

    def request_block(self, req, msg):
        """Block the handling thread until the gate opens."""
        self.order.append("block-start")
        assert self.gate.wait(TIMEOUT)
        self.order.append("block-end")
        return req.make_reply("ok")

    def request_note(self, req, msg):
        """Record a note."""
        self.order.append("note")
        return req.make_reply("ok")

    def request_fail(self, req, msg):
        """Raise FailReply."""
        raise FailReply("it failed")

    def request_boom(self, req, msg):
        """Raise an unexpected exception."""
        raise RuntimeError("boom")

    def request_log_it(self, req, msg):
        """Log through the device logger."""
        level = msg.arguments[0].decode()
        getattr(self.log, level)(msg.arguments[1].decode(), name="tester")
        return req.make_reply("ok")

    def request_spam(self, req, msg):
        """Send many informs."""
        n = int(msg.arguments[0])
        for i in range(n):
            req.inform(i)
        return req.make_reply("ok", n)

    def request_kick(self, req, msg):
        """Reply, then disconnect the client."""
        req.reply("ok")
        req.client_connection.disconnect("Kicked out.")
        raise AsyncReply

    def request_old_style(self, req, msg):
        """Use the pre-0.5 calling convention: req where a connection is meant."""
        self.reply_inform(req, Message.inform("old-style", "informed"), msg)
        self.reply(req, Message.reply("old-style", "ok"), msg)
        raise AsyncReply

    def inform_note(self, conn, msg):
        """Echo a client's #note inform to everyone."""
        self.mass_inform(Message.inform("note-seen", *msg.arguments))

    async def inform_later(self, conn, msg):
        """Echo a client's #later inform to everyone, after a turn of the loop."""
        await asyncio.sleep(0)
        self.mass_inform(Message.inform("later-seen", *msg.arguments))

    async def reply_later(self, conn, msg):
        """Fail, after a turn of the loop."""
        await asyncio.sleep(0)
        raise ValueError("late reply handler failed")

    async def inform_stream(self, conn, msg):
        """An async generator: a mistake, reported."""
        self.mass_inform(Message.inform("stream-seen"))
        yield


GREETING = [
    "#version-connect katcp-protocol 5.1-BIMT",
    "#version-connect katcp-library katcp-python-%s" % __version__,
    "#version-connect katcp-device example-api-2.3 example-build-4.5rc1",
]

CONCURRENCY = {
    "threaded": dict(thread_safe=True, handler_thread=True),
    "threadsafe": dict(thread_safe=True, handler_thread=False),
    "async": dict(thread_safe=False, handler_thread=False),
}


def start_server(server):
    assert server.start(timeout=TIMEOUT)
    return server.bind_address[1]


def stop_server(server):
    server.stop().result(TIMEOUT)
    server.join(timeout=TIMEOUT)


@pytest.fixture(params=sorted(CONCURRENCY))
def any_server(request):
    server = ExampleServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[request.param])
    port = start_server(server)
    yield server, port
    stop_server(server)


@pytest.fixture
def example(any_server):
    """A started server of each concurrency flavour and a connected client."""
    server, port = any_server
    with LineClient(port) as client:
        assert client.greeting() == GREETING
        yield server, client


@pytest.fixture
def restore_level():
    """Call with a Python logger to have its level put back after the test."""
    saved = []
    yield lambda logger: saved.append((logger, logger.level))
    for logger, level in saved:
        logger.setLevel(level)


def connect(port):
    client = LineClient(port)
    client.greeting()
    return client


# -- connection, greeting, standard requests ---------------------------------------------


def test_default_concurrency_options():
    threaded = ExampleServer("127.0.0.1", 0)
    assert isinstance(threaded._handler_thread, MessageHandlerThread)
    assert threaded._server.client_connection_factory is ThreadsafeClientConnection
    asynchronous = type("Async", (AsyncDeviceServer,), {"setup_sensors": lambda self: None})(
        "127.0.0.1", 0)
    assert asynchronous._handler_thread is None
    assert asynchronous._server.client_connection_factory is ClientConnection
    # 0.9.3 asserted it (AssertionError with this text); refused under python -O too, and
    # the server keeps the options it had.
    with pytest.raises(AssertionError, match=r"^handler_thread=True requires thread_safe=True$"):
        threaded.set_concurrency_options(thread_safe=False, handler_thread=True)
    assert isinstance(threaded._handler_thread, MessageHandlerThread)
    assert threaded._server.client_connection_factory is ThreadsafeClientConnection


def test_watchdog_and_plain_handler(example):
    server, client = example
    assert client.request("?watchdog") == ([], "!watchdog ok")
    assert client.request("?watchdog extra args") == ([], "!watchdog ok")
    assert client.request("?plain a b") == (["#plain first"], "!plain ok b a")


@pytest.mark.parametrize("request_line", ["?nothing", "?native-nothing", "?text"])
def test_a_handler_that_gives_no_reply_fails_the_request(example, request_line, caplog):
    # Every request gets a reply: the client is not left waiting.
    server, client = example
    with caplog.at_level(logging.ERROR, logger=server._logger.name):
        assert client.request(request_line) == (
            [], "!%s fail Handler\\_returned\\_an\\_invalid\\_reply." % request_line[1:])
    assert request_line[1:] in caplog.text


@pytest.mark.parametrize("request_line", ["?misnamed", "?informs-instead"])
def test_a_handler_returning_a_message_other_than_its_reply_fails_the_request(
        example, request_line):
    server, client = example
    assert client.request(request_line) == (
        [], "!%s fail Handler\\_returned\\_an\\_invalid\\_reply." % request_line[1:])


def test_a_failing_dispatch_is_logged_to_the_client_which_stays_connected(example, caplog):
    server, client = example
    with caplog.at_level(logging.ERROR, logger=server._logger.name):
        client.send("?explode")
        client.send("?watchdog")
        error = client.readline()  # sent after the record was logged
    assert error.startswith(b"#log error ") and b"Exploded\\_while\\_dispatching." in error
    assert client.readline() == b"!watchdog ok"
    # The server's log names the message and the client, on the loop and handler thread alike.
    [record] = caplog.records
    assert record.getMessage().startswith("Error handling ?explode from %s: Traceback "
                                          % client.local_address)
    assert "Exploded while dispatching." in record.getMessage()


class _AsyncDispatchServer(ExampleServer):
    """Its handle_message is an async def function."""

    async def handle_message(self, client_conn, msg):
        self.order.append(msg.name)
        done = super().handle_message(client_conn, msg)
        if done is not None:
            await done


class _OddDispatchServer(ExampleServer):
    """Its handle_message returns True for ?odd, after replying itself."""

    def handle_message(self, client_conn, msg):
        if msg.name == "odd":
            client_conn.reply(Message.reply("odd", "ok"), msg)
            return True
        return super().handle_message(client_conn, msg)


@pytest.mark.parametrize("kind", sorted(CONCURRENCY))
def test_an_async_def_handle_message_handles_the_messages_in_turn(kind):
    # Its coroutine was never run: on the handler thread the thread ended (the server
    # answered nothing again), on the loop the connection was closed, and Python warned
    # that the coroutine was never awaited.
    server = _AsyncDispatchServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[kind])
    port = start_server(server)
    try:
        with connect(port) as client:
            client.send_raw(b"?native\n?coro\n?watchdog\n")
            assert client.readlines(4) == [
                b"!native ok native", b"#coro coro-inform", b"!coro ok coro", b"!watchdog ok"]
            assert server.order == ["native", "coro", "watchdog"]
    finally:
        stop_server(server)


class _FailingAsyncDispatchServer(_AsyncDispatchServer):
    """Its async def handle_message raises for ?fail, once its coroutine runs."""

    async def handle_message(self, client_conn, msg):
        if msg.name == "fail":
            raise RuntimeError("Failed in a coroutine.")
        await super().handle_message(client_conn, msg)


@pytest.mark.parametrize("kind", sorted(CONCURRENCY))
def test_an_async_def_handle_message_that_raises_is_logged_and_the_client_served(kind,
                                                                                 caplog):
    # On the handler thread the error went unseen, as if the message had been handled.
    server = _FailingAsyncDispatchServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[kind])
    port = start_server(server)
    try:
        with caplog.at_level(logging.ERROR, logger=server._logger.name), \
                connect(port) as client:
            client.send_raw(b"?fail\n")
            assert client.request("?watchdog") == ([], "!watchdog ok")
            address = client.local_address
        [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert record.getMessage() == "Error handling message from %s" % (address,)
        assert str(record.exc_info[1]) == "Failed in a coroutine."
    finally:
        stop_server(server)


class _CancellingDispatchServer(ExampleServer):
    """Its handle_message returns a future cancelled already for ?give-up."""

    def handle_message(self, client_conn, msg):
        if msg.name == "give-up":
            given_up = concurrent.futures.Future()
            given_up.cancel()
            return given_up
        return super().handle_message(client_conn, msg)


@pytest.mark.parametrize("kind", sorted(CONCURRENCY))
def test_a_handle_message_whose_future_is_cancelled_lets_the_client_be_served(kind):
    server = _CancellingDispatchServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[kind])
    port = start_server(server)
    try:
        with no_logs(server._logger.name, logging.ERROR), connect(port) as client:
            client.send_raw(b"?give-up\n")
            assert client.request("?watchdog") == ([], "!watchdog ok")
    finally:
        stop_server(server)


@pytest.mark.parametrize("kind", sorted(CONCURRENCY))
def test_a_handle_message_returning_no_future_is_logged_and_the_client_served(kind,
                                                                               caplog):
    # The connection was closed (on the loop: "protocol.data_received() call failed"),
    # or the handler thread ended (the server answered nothing again).
    server = _OddDispatchServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[kind])
    port = start_server(server)
    try:
        with caplog.at_level(logging.WARNING, logger=server._logger.name), \
                connect(port) as client:
            assert client.request("?odd") == ([], "!odd ok")
            assert client.request("?watchdog") == ([], "!watchdog ok")
            address = client.local_address
        [message] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert message == ("Handling odd from %s returned True, not a future: it is taken "
                           "as handled" % (address,))
    finally:
        stop_server(server)


@pytest.mark.parametrize("kind", sorted(CONCURRENCY))
def test_logger_none_is_the_default_logger(kind, caplog):
    server = ExampleServer("127.0.0.1", 0, logger=None)
    server.set_concurrency_options(**CONCURRENCY[kind])
    port = start_server(server)
    try:
        with connect(port) as client, caplog.at_level(logging.ERROR, logger="katcp.server"):
            informs, reply = client.request("?boom")
            assert reply.startswith("!boom fail ")
            assert client.request("?watchdog") == ([], "!watchdog ok")
    finally:
        stop_server(server)
    assert "Request boom FAIL: Traceback" in caplog.text


class _FailingLogger(logging.Logger):
    """A logger whose error reports raise, as a faulty stand-in for a logger does."""

    def error(self, *args, **kwargs):
        raise RuntimeError("This logger fails.")

    exception = error


def test_the_handler_thread_outlives_a_failure_of_its_own_error_reporting(caplog):
    server = ExampleServer("127.0.0.1", 0, logger=_FailingLogger("failing"))
    port = start_server(server)
    try:
        with LineClient(port, timeout=TIMEOUT) as client, \
                caplog.at_level(logging.ERROR, logger="katcp.server"):
            client.greeting()
            # The handler's traceback cannot be logged, nor so its fail reply made.
            client.send("?boom")
            client.send("?watchdog")
            lines = client.read_until(lambda line: line.startswith(b"!"))
    finally:
        stop_server(server)
    assert lines[-1] == b"!watchdog ok"
    assert lines[0].startswith(b"#log error ") and b"This\\_logger\\_fails." in lines[0]
    assert "Error logging an error of 'boom'" in caplog.text


class _ExitingServer(ExampleServer):
    """Its ?leave handler raises what is no Exception."""

    leaving = SystemExit

    def request_leave(self, req, msg):
        """Raise SystemExit (or another BaseException)."""
        raise self.leaving("left")


@pytest.mark.parametrize("leaving", [SystemExit, asyncio.CancelledError])
def test_the_handler_thread_outlives_a_handler_raising_what_is_no_exception(leaving,
                                                                            caplog):
    # The thread ended (silently, for SystemExit): the server went on accepting clients
    # and answered none of their requests again.
    server = _ExitingServer("127.0.0.1", 0)
    server.leaving = leaving
    port = start_server(server)
    try:
        with caplog.at_level(logging.ERROR, logger=server._logger.name), \
                connect(port) as client:
            client.send("?leave")
            client.send("?watchdog")
            lines = client.read_until(lambda line: line.startswith(b"!watchdog"))
            assert lines[-1] == b"!watchdog ok"
            # CancelledError is answered as an Exception is (see the dispatch's own test);
            # SystemExit reaches the thread, which reports it without a reply.
            failure = b"%s:\\_left" % leaving.__name__.encode()
            if leaving is SystemExit:
                assert len(lines) == 2
                assert lines[0].startswith(b"#log error ") and failure in lines[0]
            else:
                assert lines[0].startswith(b"!leave fail ") and failure in lines[0]
            with connect(port) as other:
                assert other.request("?watchdog") == ([], "!watchdog ok")
        [record] = caplog.records
        assert record.getMessage().startswith(
            "Error handling ?leave from " if leaving is SystemExit else "Request leave FAIL: ")
    finally:
        stop_server(server)


@pytest.mark.parametrize("request_line, reply", [
    ("?nothing replied", "!nothing ok myself"),  # then returned None
    ("?twice", "!twice ok first")])  # then returned a second reply, which is not sent
def test_a_handler_that_replied_itself_sends_that_one_reply(example, request_line, reply):
    server, client = example
    assert client.request(request_line) == ([], reply)
    assert client.request("?watchdog") == ([], "!watchdog ok")


def test_help(example):
    server, client = example
    informs, reply = client.request("?help")
    names = [line.split()[1] for line in informs]
    assert names == sorted(server._request_handlers)
    assert reply == "!help ok %d" % len(names)
    assert {"halt", "help", "watchdog", "sensor-sampling", "request-timeout-hint",
            "plain"} <= set(names)
    informs, reply = client.request("?help watchdog")
    # The docstring as Python keeps it (3.13 strips its indentation at compile time).
    assert informs == [str(Message.inform(
        "help", "watchdog", DeviceServer.request_watchdog.__doc__.strip()))]
    assert informs[0].startswith(r"#help watchdog Check\_that\_the\_server\_is\_still\_alive.")
    assert reply == "!help ok 1"
    assert client.request("?help nosuch") == ([], r"!help fail Unknown\_request\_method.")


def test_log_level(example, restore_level):
    server, client = example
    restore_level(server._logger)
    assert client.request("?log-level") == ([], "!log-level ok warn")
    assert client.request("?log-level info") == ([], "!log-level ok info")
    assert client.request("?log-level") == ([], "!log-level ok info")
    assert client.request("?log-level bogus") == (
        [], r"!log-level fail Unknown\_logging\_level\_name\_'bogus'")
    for level in DeviceLogger.LEVELS:
        assert client.request("?log-level " + level) == ([], "!log-level ok " + level)


def test_device_logger_informs_all_clients(example):
    server, client = example
    with connect(server.bind_address[1]) as other:
        assert client.request("?log-it info ignored") == ([], "!log-it ok")
        informs, reply = client.request("?log-it error bad\\_thing")
        assert reply == "!log-it ok"
        assert len(informs) == 1
        assert re.match(r"#log error %s tester bad\\_thing$" % TS_RE, informs[0])
        assert other.readline().decode() == informs[0]


def test_version_list(example):
    server, client = example
    server.extra_versions["zz-extra"] = ("zz-1.0", None)
    server.extra_versions["aa-extra"] = ("aa-1.0", "serial-1")
    informs, reply = client.request("?version-list")
    assert informs == [
        "#version-list katcp-protocol 5.1-BIMT",
        "#version-list katcp-library katcp-python-%s %s" % (__version__, __version__),
        "#version-list katcp-device example-api-2.3 example-build-4.5rc1",
        "#version-list aa-extra aa-1.0 serial-1",
        "#version-list zz-extra zz-1.0",
    ]
    assert reply == "!version-list ok 5"


def test_client_list_and_no_client_connected_in_v5(example):
    server, client = example
    with connect(server.bind_address[1]) as other:
        informs, reply = client.request("?client-list")
        assert sorted(informs) == sorted(["#client-list " + client.local_address,
                                          "#client-list " + other.local_address])
        assert reply == "!client-list ok 2"
    # The other client's disconnection is seen by the server before the next listing.
    assert server.disconnects.get(timeout=TIMEOUT)[2] is False
    assert client.request("?client-list") == (["#client-list " + client.local_address],
                                              "!client-list ok 1")


def test_ipv6_client_addresses_are_in_the_address_format():
    # Spec 5.1 section 8.1: the address data type, an IPv6 host in brackets.
    server = ExampleServer("::1", 0)
    port = start_server(server)
    try:
        with LineClient(port, host="::1") as client:
            client.greeting()
            port_seen = client.sock.getsockname()[1]
            assert client.request("?client-list") == (
                ["#client-list [::1]:%d" % port_seen], "!client-list ok 1")
    finally:
        stop_server(server)


def test_sensor_list_and_value(example):
    server, client = example
    informs, reply = client.request("?sensor-list")
    assert informs == [
        r"#sensor-list a.float A\_float. V float 0.0 5.0",
        r"#sensor-list a.string A\_string. \@ string",
        r"#sensor-list an.int An\_integer. count integer 0 100",
    ]
    assert reply == "!sensor-list ok 3"
    assert client.request(r"?sensor-list /^a\\./") == (informs[:2], "!sensor-list ok 2")
    assert client.request("?sensor-list an.int") == (informs[2:], "!sensor-list ok 1")
    assert client.request("?sensor-list nosuch") == (
        [], r"!sensor-list fail Unknown\_sensor\_name.")
    informs, reply = client.request("?sensor-value")
    assert informs == [
        "#sensor-value 1234567890.250000 1 a.float warn 1.5",
        r"#sensor-value 1234567890.250000 1 a.string nominal hi\_there",
        "#sensor-value 1234567890.250000 1 an.int nominal 3",
    ]
    assert reply == "!sensor-value ok 3"
    assert client.request("?sensor-value /int/") == (informs[2:], "!sensor-value ok 1")
    assert client.request("?sensor-value nosuch") == (
        [], r"!sensor-value fail Unknown\_sensor\_name.")
    informs, reply = client.request("?sensor-value /[/")
    assert informs == [] and reply.startswith("!sensor-value fail Traceback")


def test_sensor_sampling_event_and_clear(example):
    server, client = example
    assert client.request("?sensor-sampling an.int") == ([], "!sensor-sampling ok an.int none")
    assert client.request("?sensor-sampling an.int event") == (
        ["#sensor-status 1234567890.250000 1 an.int nominal 3"],
        "!sensor-sampling ok an.int event")
    assert client.request("?sensor-sampling an.int") == ([], "!sensor-sampling ok an.int event")
    server.int_sensor.set_value(4, timestamp=T0 + 1)
    assert client.readline() == b"#sensor-status 1234567891.250000 1 an.int nominal 4"
    assert client.request("?sensor-sampling-clear") == ([], "!sensor-sampling-clear ok")
    server.int_sensor.set_value(5, timestamp=T0 + 2)
    assert client.request("?sensor-sampling an.int") == ([], "!sensor-sampling ok an.int none")
    assert client.request("?sensor-sampling-clear extra") == (
        [], r"!sensor-sampling-clear fail Too\_many\_parameters\_given.")


def transport_method_replaced(server, name, replaced_on):
    """A patch of KATCPServer method `name` that still does its job, on the class or on
    `server`'s transport."""
    if replaced_on == "class":
        return mock.patch.object(KATCPServer, name, autospec=True,
                                 side_effect=getattr(KATCPServer, name))
    return mock.patch.object(server._server, name, wraps=getattr(server._server, name))


@pytest.mark.parametrize("replaced_on", ["class", "instance"])
def test_a_send_message_replaced_once_clients_are_connected_sends_everything(example,
                                                                             replaced_on):
    # 0.9.3 sent each message through KATCPServer.send_message, a thread-safe
    # connection's through send_message_from_thread(), which called it on the loop.
    server, client = example
    with transport_method_replaced(server, "send_message", replaced_on) as send_message:
        assert client.request("?sensor-value an.int") == (
            ["#sensor-value 1234567890.250000 1 an.int nominal 3"], "!sensor-value ok 1")
        assert client.request("?sensor-sampling an.int event") == (
            ["#sensor-status 1234567890.250000 1 an.int nominal 3"],
            "!sensor-sampling ok an.int event")
        server.int_sensor.set_value(4, timestamp=T0 + 1)
        assert client.readline() == b"#sensor-status 1234567891.250000 1 an.int nominal 4"
        client.send("?bad[")
        assert client.readline().startswith(b"#log error ")
        server.mass_inform(Message.inform("hello", "all"))
        assert client.readline() == b"#hello all"
        sent = [bytes(call.args[-1]).decode() for call in send_message.call_args_list]
    assert sent[:5] == ["#sensor-value 1234567890.250000 1 an.int nominal 3",
                        "!sensor-value ok 1",
                        "#sensor-status 1234567890.250000 1 an.int nominal 3",
                        "!sensor-sampling ok an.int event",
                        "#sensor-status 1234567891.250000 1 an.int nominal 4"]
    assert [line.split(" ", 2)[:2] for line in sent[5:]] == [["#log", "error"],
                                                             ["#hello", "all"]]


@pytest.mark.parametrize("replaced_on", ["class", "instance"])
def test_a_send_from_another_thread_goes_through_a_replaced_send_message_once(example,
                                                                             replaced_on):
    # A replacement calling the original from another thread (a worker of an
    # AsyncDeviceServer) had each message again on the loop, where the original handed it.
    server, client = example
    client.send("?later")
    assert client.request("?watchdog") == ([], "!watchdog ok")
    (req,) = server.pending
    with transport_method_replaced(server, "send_message", replaced_on) as send_message, \
            transport_method_replaced(server, "mass_send_message",
                                      replaced_on) as mass_send_message:
        def send_all():
            req.inform("from-a-thread")
            req.reply("ok", "from-a-thread")
            server.mass_inform(Message.inform("hello", "all"))
        replier = threading.Thread(target=send_all)
        replier.start()
        replier.join(TIMEOUT)
        assert [client.readline() for _ in range(3)] == [
            b"#later from-a-thread", b"!later ok from-a-thread", b"#hello all"]
        assert client.request("?watchdog") == ([], "!watchdog ok")
        sent = [bytes(call.args[-1]) for call in send_message.call_args_list]
        sent_to_all = [bytes(call.args[-1]) for call in mass_send_message.call_args_list]
    assert sent == [b"#later from-a-thread", b"!later ok from-a-thread", b"#hello all",
                    b"!watchdog ok"]
    assert sent_to_all == [b"#hello all"]


@pytest.mark.parametrize("replaced_on", ["class", "instance"])
def test_a_mass_inform_on_the_loop_goes_through_a_mass_send_message_replaced_since(
        example, replaced_on):
    # As in 0.9.3, which looked the transport's method up at each mass_inform().
    server, client = example
    with transport_method_replaced(server, "mass_send_message",
                                   replaced_on) as mass_send_message:
        server.ioloop.add_callback(server.mass_inform, Message.inform("hello", "all"))
        assert client.readline() == b"#hello all"
        assert [bytes(call.args[-1]) for call in mass_send_message.call_args_list] == [
            b"#hello all"]


class PlainTupleSensor(Sensor):
    """A sensor whose read() gives a plain (timestamp, status, value) tuple, as documented."""

    def read(self):
        return tuple(super().read())


class OwnFormatSensor(Sensor):
    """A sensor that formats its current reading its own way, through read_formatted()."""

    def read_formatted(self, major=5):
        return b"2000.000000", b"warn", b"seventy seven"


def test_sensor_value_asks_a_sensor_that_formats_its_own_reading(example):
    server, client = example
    server.add_sensor(OwnFormatSensor(Sensor.INTEGER, "own.format", "Own.", ""))
    assert client.request("?sensor-value own.format") == (
        [r"#sensor-value 2000.000000 1 own.format warn seventy\_seven"],
        "!sensor-value ok 1")


@pytest.mark.parametrize("strategy", [["event"], ["differential", "1"], ["event-rate", "0", "9"]])
def test_sensors_reading_as_plain_tuples_are_sampled(example, strategy):
    server, client = example
    sensor = PlainTupleSensor(Sensor.INTEGER, "plain", "Plain.", "", default=3,
                              initial_status=Sensor.NOMINAL)
    sensor.set_value(3, timestamp=T0)
    server.add_sensor(sensor)
    assert client.request("?sensor-sampling plain " + " ".join(strategy)) == (
        ["#sensor-status 1234567890.250000 1 plain nominal 3"],
        "!sensor-sampling ok plain " + " ".join(strategy))
    # From the loop's thread, where updates take the shortest path, and from this one.
    server.ioloop.add_callback(sensor.set_value, 5, timestamp=T0 + 1)
    assert client.readline() == b"#sensor-status 1234567891.250000 1 plain nominal 5"
    sensor.set_value(7, timestamp=T0 + 2)
    assert client.readline() == b"#sensor-status 1234567892.250000 1 plain nominal 7"


def test_sensor_sampling_bulk_and_errors(example):
    server, client = example
    informs, reply = client.request("?sensor-sampling an.int,a.float auto")
    assert sorted(informs) == ["#sensor-status 1234567890.250000 1 a.float warn 1.5",
                               "#sensor-status 1234567890.250000 1 an.int nominal 3"]
    assert reply == "!sensor-sampling ok an.int,a.float auto"
    assert client.request("?sensor-sampling an.int,a.float") == (
        [], r"!sensor-sampling fail Cannot\_query\_multiple\_sensors.")
    assert client.request("?sensor-sampling an.int,nosuch event") == (
        [], r"!sensor-sampling fail Unknown\_sensor\_names:\_['nosuch'].")
    informs, reply = client.request("?sensor-sampling an.int bogus")
    assert informs == [] and reply.startswith("!sensor-sampling fail ")
    assert client.request("?sensor-sampling an.int,a.float none") == (
        [], "!sensor-sampling ok an.int,a.float none")
    assert client.request("?sensor-sampling") == (
        [], r"!sensor-sampling fail No\_sensor\_name\_given.")


def test_sensor_sampling_period_streams(example):
    server, client = example
    informs, reply = client.request("?sensor-sampling an.int period 0.01")
    assert reply == "!sensor-sampling ok an.int period 0.01"
    lines = client.readlines(5)
    assert set(lines) == {b"#sensor-status 1234567890.250000 1 an.int nominal 3"}
    informs, reply = client.request("?sensor-sampling an.int none")
    assert reply == "!sensor-sampling ok an.int none"
    # After the strategy is cancelled only the replies to new requests arrive.
    assert client.request("?watchdog") == ([], "!watchdog ok")
    assert client.request("?watchdog") == ([], "!watchdog ok")


def test_strategies_cancelled_on_disconnect_and_sensor_removal(example):
    server, client = example
    with connect(server.bind_address[1]) as other:
        other.request("?sensor-sampling an.int event")
        client.request("?sensor-sampling an.int event")
    server.disconnects.get(timeout=TIMEOUT)
    strategies = server._strategies
    assert len(strategies) == 1
    (conn_strategies,) = strategies.values()
    assert list(conn_strategies) == [server.int_sensor]
    server.remove_sensor("an.int")
    # The strategy is cancelled on the loop: a later call handed to it shows that it got
    # there (a reply would not on uvloop, which reads sockets before such calls).
    server._server.call_from_thread(lambda: None).result(TIMEOUT)
    assert conn_strategies == {}
    server.int_sensor.set_value(9)
    assert client.request("?watchdog") == ([], "!watchdog ok")


def test_a_sensor_replaced_by_add_sensor_ends_its_strategies(example):
    # As remove_sensor() would: the name now means only the new sensor, so the old
    # one's readings reach no client, and ?sensor-sampling's "none" is the truth.
    server, client = example
    client.request("?sensor-sampling an.int event")
    old = server.int_sensor
    (conn_strategies,) = server._strategies.values()
    assert list(conn_strategies) == [old]
    new = Sensor.integer("an.int", "A replacement.", "", [-5, 5], default=1)
    server.add_sensor(new)
    server._server.call_from_thread(lambda: None).result(TIMEOUT)
    assert conn_strategies == {}
    old.set_value(4)
    assert client.request("?sensor-sampling an.int") == ([], "!sensor-sampling ok an.int none")
    assert client.request("?sensor-value an.int")[1] == "!sensor-value ok 1"
    # Adding the same object again is no replacement: its strategies go on.
    client.request("?sensor-sampling an.int event")
    server.add_sensor(new)
    server._server.call_from_thread(lambda: None).result(TIMEOUT)
    assert list(conn_strategies) == [new]


def test_request_timeout_hint(example):
    server, client = example
    assert client.request("?request-timeout-hint") == (["#request-timeout-hint typed 7.0"],
                                                        "!request-timeout-hint ok 1")
    assert client.request("?request-timeout-hint watchdog") == (
        ["#request-timeout-hint watchdog 0.0"], "!request-timeout-hint ok 1")
    assert client.request("?request-timeout-hint nosuch") == (
        [], r"!request-timeout-hint fail Unknown\_request\_method")
    # An empty name is a name ("must be an existing request if specified").
    assert client.request(r"?request-timeout-hint \@") == (
        [], r"!request-timeout-hint fail Unknown\_request\_method")


def test_restart(example):
    server, client = example
    assert client.request("?restart") == (
        [], r"!restart fail No\_restart\_queue\_registered\_--\_cannot\_restart.")
    restart_queue = queue.Queue()
    server.set_restart_queue(restart_queue)
    assert client.request("?restart") == ([], "!restart ok")
    assert restart_queue.get_nowait() is server


def test_client_connection_disconnect(example):
    server, client = example
    client.send("?kick")
    assert client.read_to_eof() == [b"!kick ok", rb"#disconnect Kicked\_out.", b""]
    assert server.disconnects.get(timeout=TIMEOUT)[1:] == ("Kicked out.", True)


def test_halt_disconnects_everyone():
    server = ExampleServer("127.0.0.1", 0)
    port = start_server(server)
    with connect(port) as client, connect(port) as other:
        client.send("?halt")
        assert client.read_to_eof() == [
            b"!halt ok", rb"#disconnect Device\_server\_shutting\_down.", b""]
        assert other.read_to_eof() == [rb"#disconnect Device\_server\_shutting\_down.", b""]
    server.join(timeout=TIMEOUT)
    assert not server.running()
    assert not server._server._ioloop_manager._ioloop_thread.is_alive()
    assert not server._handler_thread.isAlive()


# -- handler styles ------------------------------------------------------------------------


def test_handler_styles(example):
    server, client = example
    assert client.request("?typed 3 1.5") == ([], "!typed ok 4.5")
    assert client.request("?typed 3")[1].startswith("!typed fail ")
    informs, reply = client.request("?typed x 1")
    assert reply.startswith("!typed fail ") and "x" in reply
    informs, reply = client.request("?typed 1 2 3")
    assert reply == r"!typed fail Too\_many\_parameters\_given."
    assert client.request("?coro") == (["#coro coro-inform"], "!coro ok coro")
    assert client.request("?native") == ([], "!native ok native")
    assert client.request("?native-typed 41") == ([], "!native-typed ok 42")
    assert client.request("?fail") == ([], r"!fail fail it\_failed")
    informs, reply = client.request("?boom")
    assert reply.startswith(r"!boom fail Traceback\_(most\_recent\_call\_last):\n")
    # The traceback ends with its newline, as katcp 0.9 sends it.
    assert reply.endswith(r"RuntimeError:\_boom\n")
    assert client.request("?watchdog") == ([], "!watchdog ok")


def test_unknown_and_malformed_and_bad_utf8(example):
    server, client = example
    assert client.request("?nosuch a b") == ([], r"!nosuch invalid Unknown\_request.")
    client.send("*bad")
    line = client.readline().decode()
    assert re.match(r"#log error %s root Traceback.*KatcpSyntaxError:\\_Bad\\_type"
                    r"\\_character\\_'\*'\.\\n$" % TS_RE, line)
    client.send_raw(b"?echo caf\xc3\xa9\r?echo bad\xff\n\n\r\n")
    assert client.readline() == b"!echo ok caf\xc3\xa9"
    assert client.readline().startswith(b"!echo fail ")
    assert client.request("?watchdog") == ([], "!watchdog ok")


def test_a_line_that_does_not_parse_is_logged_with_the_client_and_the_line(example, caplog):
    # As katcp 0.9.3's "BAD COMMAND": the device's operator sees it, not only the client.
    server, client = example
    long_line = b"*" + b"x" * 300
    with caplog.at_level(logging.ERROR, logger=server._logger.name):
        client.send(b"*bad")
        client.send(long_line)
        # Logged before the #log inform is sent: both records are in once it arrives.
        assert all(line.startswith(b"#log error ") for line in client.readlines(2))
    quoted = repr(long_line[:200])
    assert [r.getMessage() for r in caplog.records] == [
        "Bad message from client %s: b'*bad': Bad type character '*'."
        % client.local_address,
        "Bad message from client %s: %s... (301 bytes): Bad type character '*'."
        % (client.local_address, quoted)]
    assert all(r.levelno == logging.ERROR for r in caplog.records)


def test_the_transports_logger_and_tb_limit_assigned_after_construction_are_heard(example,
                                                                                caplog):
    # katcp 0.9.3's KATCPServer had them as attributes, which a test or subclass assigns
    # (a mock logger, say): what the connections log and send follows them.
    server, client = example
    mine = logging.getLogger("katcp.test.assigned")
    server._server._logger = mine
    server._server._tb_limit = 0
    with caplog.at_level(logging.ERROR, logger=mine.name):
        client.send(b"*bad")
        [line] = client.readlines(1)
    assert [r.name for r in caplog.records] == [mine.name]
    # No frames: the error alone.
    assert re.match(rb"#log error %s root katcp\.core\.KatcpSyntaxError:\\_Bad\\_type"
                    rb"\\_character\\_'\*'\.\\n$" % TS_RE.encode(), line)


def test_the_transports_device_is_the_one_it_hands_connections_to(any_server):
    # katcp 0.9.3's KATCPServer._device, assigned (a wrapper recording what it is told).
    server, port = any_server
    assert server._server._device is server
    wrapper = server._server._device = mock.Mock(wraps=server)
    with connect(port) as client:
        assert client.request("?watchdog") == ([], "!watchdog ok")
    wrapper.on_client_connect.assert_called_once()


def test_standard_requests_refuse_names_that_are_not_utf8(example, caplog):
    # A fail reply saying so, as typed arguments get; no traceback, nothing logged.
    server, client = example
    with caplog.at_level(logging.ERROR, logger="katcp"):
        for name in (b"help", b"sensor-list", b"sensor-value"):
            client.send_raw(b"?" + name + b" bad\xff\n")
            assert client.readline() == b"!" + name + (
                b" fail Could\\_not\\_decode\\_value\\_'bad\\\\xff'\\_as\\_UTF-8"
                b"\\_text.")
        client.send_raw(b"?sensor-sampling bad\xff event\n")
        assert client.readline().startswith(b"!sensor-sampling fail Could\\_not\\_decode")
    assert caplog.records == []


def test_old_style_req_in_place_of_connection(example):
    server, client = example
    # The warnings module's state is process-wide, so this also records the warnings
    # issued in the server's threads.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert client.request("?old-style[4]") == (
            ["#old-style[4] informed"], "!old-style[4] ok")
    assert [w.category for w in caught] == [DeprecationWarning] * 2


def test_message_ids(example):
    server, client = example
    assert client.request("?watchdog[5]") == ([], "!watchdog[5] ok")
    assert client.request("?plain[6] x") == (["#plain[6] first"], "!plain[6] ok x")
    assert client.request("?nosuch[7]") == ([], r"!nosuch[7] invalid Unknown\_request.")
    assert client.request("?coro[8]") == (["#coro[8] coro-inform"], "!coro[8] ok coro")
    assert client.request("?fail[9]") == ([], r"!fail[9] fail it\_failed")
    assert client.request("?sensor-value[10] an.int") == (
        ["#sensor-value[10] 1234567890.250000 1 an.int nominal 3"], "!sensor-value[10] ok 1")
    assert client.request("?watchdog[2147483647]") == ([], "!watchdog[2147483647] ok")


def test_per_connection_serialisation_async_reply_and_concurrent_reply(example):
    server, client = example
    with connect(server.bind_address[1]) as other:
        # ?wait holds this connection's reading until it is done...
        client.send("?wait")
        client.send("?watchdog")
        assert other.request("?watchdog") == ([], "!watchdog ok")
        # ...so the release is only counted once ?wait has registered.
        for _ in range(1000):
            if other.request("?release")[1] == "!release ok 1":
                break
        else:
            pytest.fail("?wait never registered")
        assert client.readlines(2) == [b"!wait ok waited", b"!watchdog ok"]
        # AsyncReply and concurrent_reply let later requests on the connection through.
        client.send("?later")
        assert client.request("?watchdog") == ([], "!watchdog ok")
        client.send("?cwait")
        assert client.request("?watchdog") == ([], "!watchdog ok")
        assert other.request("?finish") == ([], "!finish ok 1")
        assert client.readline() == b"!later ok finished"
        assert other.request("?release") == ([], "!release ok 1")
        assert client.readline() == b"!cwait ok cwaited"


def test_a_reply_sent_from_another_thread_goes_out_at_once(example):
    # Also for a server whose connections are not thread-safe (AsyncDeviceServer): the
    # reply is handed to the loop, which nothing else would wake.
    server, client = example
    client.send("?later")
    assert client.request("?watchdog") == ([], "!watchdog ok")
    (req,) = server.pending
    replier = threading.Thread(target=req.reply, args=("ok", "from-a-thread"))
    replier.start()
    replier.join(TIMEOUT)
    assert client.readline() == b"!later ok from-a-thread"


def test_threaded_server_blocking_handler():
    server = ExampleServer("127.0.0.1", 0)
    port = start_server(server)
    try:
        with connect(port) as client, connect(port) as other:
            client.send("?block")
            other.send("?note")
            # The loop still accepts and greets connections while the handler thread
            # is blocked.
            connect(port).close()
            server.gate.set()
            assert client.read_until(lambda ln: ln.startswith(b"!block"))[-1] == b"!block ok"
            assert other.read_until(lambda ln: ln.startswith(b"!note"))[-1] == b"!note ok"
            assert server.order == ["block-start", "block-end", "note"]
    finally:
        stop_server(server)


def test_inform_handler_and_mass_inform(example):
    server, client = example
    with connect(server.bind_address[1]) as other:
        client.send("#note hello world")
        assert client.readline() == b"#note-seen hello world"
        assert other.readline() == b"#note-seen hello world"
        client.send("#unhandled x")
        client.send("!unhandled ok")
        assert client.request("?watchdog") == ([], "!watchdog ok")


def test_async_def_inform_and_reply_handlers_run_and_their_errors_are_logged(example, caplog):
    # Their coroutines were dropped (Python warned they were never awaited).
    server, client = example
    with caplog.at_level(logging.ERROR, logger=server._logger.name):
        client.send("#later hello")
        assert client.readline() == b"#later-seen hello"
        client.send("!later ok")
        # Its failure is logged before the next inform's coroutine, begun after it, is
        # done.
        client.send("#later again")
        assert client.readline() == b"#later-seen again"
    failures = [r for r in caplog.records if r.getMessage() == "Error handling REPLY 'later'"]
    assert len(failures) == 1
    assert str(failures[0].exc_info[1]) == "late reply handler failed"


def test_an_async_generator_inform_handler_is_reported(example, caplog):
    # Its body never ran, and nothing said so.
    server, client = example
    with caplog.at_level(logging.ERROR, logger=server._logger.name):
        client.send("#stream")
        assert client.request("?watchdog") == ([], "!watchdog ok")
    [failure] = [r for r in caplog.records if r.getMessage() == "Error handling INFORM 'stream'"]
    assert "returned the async generator" in str(failure.exc_info[1])


# -- transport limits ----------------------------------------------------------------------


def test_max_msg_size_closes_only_that_connection(caplog):
    server = ExampleServer("127.0.0.1", 0)
    server._server.MAX_MSG_SIZE = 1000
    port = start_server(server)
    try:
        with connect(port) as client, connect(port) as other:
            with caplog.at_level(logging.ERROR, logger=server._logger.name):
                client.send_raw(b"?plain " + b"x" * 2000)
                lines = client.read_to_eof()
            reason = "Message exceeds maximum size of 1000 bytes."
            assert lines[0] == b"#disconnect " + reason.replace(" ", "\\_").encode()
            assert server.disconnects.get(timeout=TIMEOUT) == (
                client.local_address, reason, True)
            assert ("Message from %s exceeds 1000 bytes; disconnecting"
                    % (client.local_address,)) in caplog.messages
            assert other.request("?watchdog") == ([], "!watchdog ok")
            assert other.request("?plain " + "y" * 900)[1] == "!plain ok " + "y" * 900
    finally:
        stop_server(server)


def test_client_that_does_not_read_is_disconnected(caplog):
    server = ExampleServer("127.0.0.1", 0)
    server.set_concurrency_options(thread_safe=False, handler_thread=False)
    limit = server._server.MAX_WRITE_BUFFER_SIZE = 256 * 1024
    port = start_server(server)
    try:
        with LineClient(port, rcvbuf=4096) as lazy, connect(port) as other:
            lazy.greeting()
            assert lazy.request("?sensor-sampling a.string event")[1] == \
                "!sensor-sampling ok a.string event"

            def pile_up():
                # The lazy client reads no more: the sensor's informs pile up for it, far
                # more than the kernel's buffers take in. In one go on the loop, so that
                # those after the first found waiting are sent while its disconnection
                # has yet to run: dropped, without a warning each.
                for i in range(400):
                    server.str_sensor.set_value("%d %s" % (i, "z" * 100000))
            with caplog.at_level(logging.WARNING, logger=server._logger.name):
                server.ioloop.add_callback(pile_up)
                assert server.disconnects.get(timeout=TIMEOUT) == (
                    lazy.local_address, "Write buffer full.", False)
            assert [m for m in caplog.messages if "not reading" in m] == [
                "Client %s is not reading: more than %d bytes unsent; disconnecting"
                % (lazy.local_address, limit)]
            assert other.request("?watchdog") == ([], "!watchdog ok")
            assert other.request("?client-list")[1] == "!client-list ok 1"
    finally:
        stop_server(server)


@contextlib.contextmanager
def _served_to_a_slow_reader(server_class, flavour="async"):
    """A started `server_class` server whose MAX_WRITE_BUFFER_SIZE is 256 kB, and a greeted
    client of it with a small receive buffer (its replies soon wait for it to read).

    Yields
    ------
    server, client : the device server and its :class:`LineClient`
    """
    server = server_class("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[flavour])
    server._server.MAX_WRITE_BUFFER_SIZE = 256 * 1024
    port = start_server(server)
    try:
        with LineClient(port, rcvbuf=4096) as client:
            client.greeting()
            yield server, client
    finally:
        stop_server(server)


class BlobServer(ExampleServer):
    def request_blob(self, req, msg):
        """Reply with as many bytes as asked for."""
        return req.make_reply("ok", "z" * int(msg.arguments[0]))


@pytest.mark.parametrize("flavour", sorted(CONCURRENCY))
def test_a_reading_client_pipelining_large_replies_gets_them_all(flavour):
    # Their replies to one chunk of requests pass MAX_WRITE_BUFFER_SIZE: the server waits
    # for the client to take them rather than taking it for one that does not read.
    with _served_to_a_slow_reader(BlobServer, flavour) as (server, client):
        count, size = 100, 100000  # 10 MB of replies to 1.2 kB of requests
        client.send_raw(b"?blob %d\n" % size * count)
        replies = [client.readline() for _ in range(count)]
        assert replies == [b"!blob ok " + b"z" * size] * count
        assert server.disconnects.empty()


class InformingBlobServer(BlobServer):
    def request_informs(self, req, msg):
        """Inform with as many bytes as asked for, then reply (as ?help or ?sensor-list)."""
        req.inform("z" * int(msg.arguments[0]))
        return req.make_reply("ok")


def _wmem_max():
    """The most a socket's kernel send buffer takes (autotuned up to it), in bytes."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
            return int(wmem.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


def _more_than_the_kernel_holds(size):
    """How many replies of `size` bytes the kernel's buffers cannot take all of, so that
    the server holds much of them."""
    return 2 * _wmem_max() // size + 10


@pytest.mark.parametrize("flavour", ["async", "threaded"])
def test_a_reading_client_pipelining_requests_with_large_informs_gets_them_all(flavour):
    # The informs of a few requests pass the quarter of MAX_WRITE_BUFFER_SIZE at which
    # the connection's further requests wait, and the last reply is written while they
    # wait: the client is taken for one that does not read only past all of
    # MAX_WRITE_BUFFER_SIZE.
    with _served_to_a_slow_reader(InformingBlobServer, flavour) as (server, client):
        size = 40000
        count = _more_than_the_kernel_holds(size)
        client.send_raw(b"?informs %d\n" % size * count)
        for _ in range(count):
            assert client.readline() == b"#informs " + b"z" * size
            assert client.readline() == b"!informs ok"
        assert server.disconnects.empty()


def test_a_reading_client_gets_a_reply_larger_than_max_write_buffer_size():
    # The client is taken for one that does not read only once its requests wait for it
    # (written to while they wait): one reply larger than the limit is no such case.
    with _served_to_a_slow_reader(BlobServer) as (server, client):
        size = _wmem_max() + 4 * server._server.MAX_WRITE_BUFFER_SIZE
        client.send(b"?blob %d" % size)
        assert client.readline() == b"!blob ok " + b"z" * size
        assert client.request("?watchdog") == ([], "!watchdog ok")
        assert server.disconnects.empty()


def test_a_client_that_does_not_read_is_dropped_once_max_write_buffer_size_is_unsent():
    # Not later: MAX_WRITE_BUFFER_SIZE bounds what the server keeps for a client (the
    # kernel's own buffers come on top).
    server = ExampleServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY["async"])
    limit = server._server.MAX_WRITE_BUFFER_SIZE = 2 * _wmem_max()
    port = start_server(server)
    try:
        with LineClient(port, rcvbuf=4096) as lazy, connect(port) as other:
            lazy.greeting()
            assert lazy.request("?sensor-sampling a.string event")[1] == \
                "!sensor-sampling ok a.string event"
            size, sent = 1024 * 1024, 0
            while server.disconnects.empty() and sent < 3 * limit:
                server.str_sensor.set_value("%d %s" % (sent, "z" * size))  # a change
                sent += size
                # The loop has sent the inform (and seen the limit passed) after this.
                assert other.request("?watchdog") == ([], "!watchdog ok")
            address, _, valid = server.disconnects.get(timeout=TIMEOUT)
            assert address == lazy.local_address and valid is False
            # Dropped past the limit, the kernel's buffers and an inform or two.
            assert sent <= limit + _wmem_max() + 3 * size
    finally:
        stop_server(server)


@pytest.mark.parametrize("flavour", ["async", "threaded"])
def test_a_client_that_ends_its_side_while_its_requests_wait_for_it_gets_every_reply(flavour):
    # The end is seen while the server waits for the client to take its replies: the
    # requests received before it are all handled, then the connection closes.
    with _served_to_a_slow_reader(BlobServer, flavour) as (server, client):
        size = 100000
        count = _more_than_the_kernel_holds(size)
        client.send_raw(b"?blob %d\n" % size * count)
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_to_eof() == [b"!blob ok " + b"z" * size] * count
        assert server.disconnects.get(timeout=TIMEOUT)[1] == "Connection closed by client."


def _blob_to_a_client_that_ends_its_side(flavour, max_write_buffer_size):
    """Serve a ``?blob`` larger than the kernel takes at once to a client that ends its
    side right after asking; check it gets the reply and that asyncio logs no error.

    Checked once the server's loop has stopped: asyncio's error comes a turn or two after
    the close.
    """
    server = BlobServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[flavour])
    server._server.MAX_WRITE_BUFFER_SIZE = max_write_buffer_size
    size = 2 * _wmem_max()
    with no_logs("asyncio"):
        port = start_server(server)
        try:
            with LineClient(port) as client:
                client.greeting()
                client.send_raw(b"?blob %d\n" % size)
                client.sock.shutdown(socket.SHUT_WR)
                assert client.read_to_eof() == [b"!blob ok " + b"z" * size]
            assert server.disconnects.get(timeout=TIMEOUT)[1] == (
                "Connection closed by client.")
        finally:
            stop_server(server)


@pytest.mark.parametrize("flavour", sorted(CONCURRENCY))
def test_a_client_that_ends_its_side_while_its_reply_is_sent_is_forgotten_quietly(flavour):
    # The reply never makes the server wait for the client (the limit is far above it):
    # the close the end asks for waits for the transport to send the rest, and asyncio's
    # write callback then ends the connection. The server, told the client left, aborted
    # that ended transport, which asyncio failed ("Task exception was never retrieved").
    _blob_to_a_client_that_ends_its_side(flavour, 1 << 30)


@pytest.mark.parametrize("flavour", sorted(CONCURRENCY))
def test_a_client_that_ends_its_side_while_its_reply_waits_for_it_is_closed_once(flavour):
    # A limit of 4 bytes: the transport tells the server to go on (resume_writing())
    # only once it is empty, from inside its write callback, which then ends a closing
    # transport itself. The close the end asks for, made right there, had
    # connection_lost() called twice, the second call failing ("Exception in callback").
    # (The threaded server sees the end while its handler runs, so always waits here.)
    _blob_to_a_client_that_ends_its_side(flavour, 4)


def test_a_connection_closing_with_bytes_unsent_is_dropped_at_once():
    # The close of a client that does not read waits to send the rest: when the server
    # stops, or gives up flushing, that transport is aborted too (only one closing with
    # nothing unsent is left to end itself).
    async def drop():
        loop = asyncio.get_running_loop()
        lost = loop.create_future()

        class Protocol(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        listener = socket.create_server(("127.0.0.1", 0))
        with listener, socket.create_connection(listener.getsockname()) as peer:
            accepted, _ = listener.accept()
            transport, _ = await loop.connect_accepted_socket(Protocol, accepted)
            transport.write(b"z" * (2 * _wmem_max()))  # more than the kernel takes
            transport.close()
            assert transport.get_write_buffer_size() > 0
            _drop_unsent(transport)
            await asyncio.wait_for(lost, TIMEOUT)

    asyncio.run(drop())


class NotingBlobServer(BlobServer):
    def setup_sensors(self):
        super().setup_sensors()
        self.blob_made = threading.Event()

    def request_blob(self, req, msg):
        """Reply with as many bytes as asked for, noting it in `blob_made`."""
        self.blob_made.set()
        return super().request_blob(req, msg)


def _on_server_loop(server, function):
    """The result of `function()`, called on the server's loop (after what it is doing)."""
    result = concurrent.futures.Future()
    server.ioloop.add_callback(lambda: result.set_result(function()))
    return result.result(TIMEOUT)


def test_a_client_whose_replies_wait_for_it_is_no_longer_read_from():
    # Its further requests wait, and so does what it sends: TCP flow control holds the
    # client back rather than the server keeping all it sends, unhandled.
    with _served_to_a_slow_reader(NotingBlobServer) as (server, client):
        size = _wmem_max() + 1024 * 1024  # more than the kernel's buffers take
        client.send_raw(b"?blob %d\n?watchdog\n" % size)
        assert server.blob_made.wait(TIMEOUT)
        (conn,) = server._server._connections
        # Reading has paused once the chunk with the requests has been handled.
        assert _on_server_loop(server, conn.transport.is_reading) is False
        assert client.readline() == b"!blob ok " + b"z" * size
        assert client.readline() == b"!watchdog ok"
        assert _on_server_loop(server, conn.transport.is_reading) is True


def test_handling_stops_while_a_client_has_not_taken_its_replies(monkeypatch):
    # However long a pipeline is, and however little time it has taken so far: the rest
    # waits once the replies wait for the client (with no time budget to spend, it never
    # yields a turn: only the wait stops it).
    monkeypatch.setattr(katcp_server.stream, "_TURN_BUDGET", float("inf"))
    with _served_to_a_slow_reader(BlobServer) as (server, client):
        size = 100000
        count = 2 * _wmem_max() // size + 4 * katcp_server.stream._SLICE
        client.send_raw(b"?blob %d\n" % size * count)
        replies = [client.readline() for _ in range(count)]
        assert replies == [b"!blob ok " + b"z" * size] * count
        assert client.request("?watchdog") == ([], "!watchdog ok")


class MarkingServer(ExampleServer):
    def request_mark(self, req, msg):
        """Note in `order` when the loop next gets a turn."""
        self.ioloop.add_callback(self.order.append, "next turn")
        return req.make_reply("ok")


def test_a_long_pipeline_is_handled_in_turns(monkeypatch):
    # Past the time budget the rest of a client's pipeline waits a loop turn, so that
    # what else the loop has to do (other clients, sampling) is not held up.
    monkeypatch.setattr(katcp_server.stream, "_TURN_BUDGET", -1.0)
    server = MarkingServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY["async"])
    port = start_server(server)
    try:
        with connect(port) as client:
            client.send_raw(b"?mark\n" + b"?note\n" * 99)
            assert client.readline() == b"!mark ok"
            assert [client.readline() for _ in range(99)] == [b"!note ok"] * 99
            # Handled in slices of _SLICE lines, the first of them ?mark.
            assert server.order.index("next turn") == katcp_server.stream._SLICE - 1
            assert server.order.count("note") == 99
    finally:
        stop_server(server)


# -- interface changes, v4, loops ------------------------------------------------------------


def test_interface_changed_coalesced(example):
    server, client = example
    server.SEND_INTERFACE_CHANGED = True

    def add_two():
        server.add_sensor(Sensor.integer("new.one", "", ""))
        server.add_sensor(Sensor.integer("new.two", "", ""))
    server.ioloop.add_callback(add_two)
    assert client.readline() == b"#interface-changed sensor-list"
    # Only one #interface-changed for both additions: the next line is a reply inform.
    informs, reply = client.request("?sensor-list /new/")
    assert [line.split()[1] for line in informs] == ["new.one", "new.two"]
    assert reply == "!sensor-list ok 2"
    server.remove_sensor("new.one")
    assert client.readline() == b"#interface-changed sensor-list"
    assert client.request("?sensor-list /new/") == (
        [r"#sensor-list new.two \@ \@ integer"],
        "!sensor-list ok 1")


def test_sensors_changed_as_a_stop_closes_the_loop_log_nothing_and_hold_back_nothing():
    # A thread adds, replaces and removes sensors while the server stops: running() may
    # still say True when the loop has closed (simulated here, where the race leaves it).
    # The work for the loop is dropped quietly, and the server started again tells its
    # clients of the next change.
    server = ExampleServer("127.0.0.1", 0)
    server.SEND_INTERFACE_CHANGED = True
    start_server(server)
    stop_server(server)
    server.running = lambda: True
    with no_logs("katcp"):
        server.add_sensor(Sensor.integer("an.int", "A new integer.", ""))
        server.remove_sensor("a.float")
    del server.running
    port = start_server(server)
    try:
        with LineClient(port) as client:
            assert client.greeting() == GREETING
            server.add_sensor(Sensor.integer("new.one", "", ""))
            assert client.readline() == b"#interface-changed sensor-list"
    finally:
        stop_server(server)


class V4Server(DeviceServer):
    VERSION_INFO = ("v4-api", 0, 4)
    BUILD_INFO = ("v4-impl", 1, 2, "b3")
    PROTOCOL_INFO = ProtocolFlags(4, 0, set([ProtocolFlags.MULTI_CLIENT]))

    def setup_sensors(self):
        """A sensor with a fixed reading."""
        self.int_sensor = Sensor.integer("v4.int", "Integer.", "", [0, 100])
        self.add_sensor(self.int_sensor)
        self.int_sensor.set_value(10, timestamp=T0)

    @request(Float(), major=4)
    @return_reply(Float(), major=4)
    def request_half(self, req, x):
        """Halve a number."""
        return ("ok", x / 2)

    def request_log_it(self, req, msg):
        """Log a warning."""
        self.log.warn("careful")
        return req.make_reply("ok")


def test_v4_dialect():
    server = V4Server("127.0.0.1", 0)
    port = start_server(server)
    try:
        with LineClient(port) as client:
            assert client.readlines(2) == [b"#version v4-api-0.4", b"#build-state v4-impl-1.2b3"]
            with LineClient(port) as other:
                assert client.readline() == b"#client-connected " + other.local_address.encode()
            assert client.request("?sensor-value v4.int") == (
                ["#sensor-value 1234567890250 1 v4.int nominal 10"], "!sensor-value ok 1")
            assert client.request("?sensor-sampling v4.int period 250") == (
                ["#sensor-status 1234567890250 1 v4.int nominal 10"],
                "!sensor-sampling ok v4.int period 250")
            assert client.request("?sensor-sampling v4.int none")[1] == (
                "!sensor-sampling ok v4.int none")
            assert client.request("?half 3")[1] == "!half ok 1.5"
            informs, reply = client.request("?log-it")
            assert re.match(r"#log warn \d{13} root careful$", informs[-1])
            # ?version-list is a KATCP v5 request.
            assert client.request("?version-list")[1] == (
                r"!version-list invalid Unknown\_request.")
            assert client.request("?request-timeout-hint")[1] == (
                r"!request-timeout-hint invalid Unknown\_request.")
    finally:
        stop_server(server)


def test_async_server_on_users_ioloop():
    started = concurrent.futures.Future()
    stopped = concurrent.futures.Future()

    class Server(AsyncDeviceServer):
        def setup_sensors(self):
            """No sensors."""

    def run_loop():
        asyncio.set_event_loop(asyncio.new_event_loop())
        ioloop = tornado.ioloop.IOLoop.current()

        async def main():
            server = Server("127.0.0.1", 0)
            # Made on a running loop: known at once, for model code's add_callback.
            assert server.ioloop is ioloop
            server.start()
            assert server.ioloop is ioloop
            started.set_result(server)
            await asyncio.wrap_future(stopped)
            await asyncio.wrap_future(server.stop())
            ioloop.stop()
        ioloop.add_callback(main)
        ioloop.start()
        ioloop.close(all_fds=True)

    thread = threading.Thread(target=run_loop, daemon=True)
    thread.start()
    server = started.result(TIMEOUT)
    try:
        with LineClient(server.bind_address[1]) as client:
            assert client.readlines(3)[2] == (
                b"#version-connect katcp-device device_stub-0.1 name-0.1")
            assert client.request("?watchdog") == ([], "!watchdog ok")
            stopped.set_result(None)
            assert client.read_to_eof() == [rb"#disconnect Device\_server\_shutting\_down.", b""]
    finally:
        if not stopped.done():
            stopped.set_result(None)
        thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_an_async_server_made_off_any_loop_takes_the_loop_of_its_start():
    class Server(AsyncDeviceServer):
        def setup_sensors(self):
            """No sensors."""

    server = Server("127.0.0.1", 0)
    assert server.ioloop is None
    loop = asyncio.new_event_loop()
    try:
        async def start():
            server.start()
            assert server.ioloop is tornado.ioloop.IOLoop.current()
            await asyncio.wrap_future(server.stop())
        loop.run_until_complete(asyncio.wait_for(start(), TIMEOUT))
    finally:
        loop.close()


def test_set_ioloop_uses_the_users_loop_and_leaves_it_running():
    loop_ready = concurrent.futures.Future()

    def run_loop():
        asyncio.set_event_loop(asyncio.new_event_loop())
        ioloop = tornado.ioloop.IOLoop.current()
        ioloop.add_callback(loop_ready.set_result, ioloop)
        ioloop.start()
        ioloop.close(all_fds=True)

    thread = threading.Thread(target=run_loop, daemon=True)
    thread.start()
    ioloop = loop_ready.result(TIMEOUT)
    try:
        server = ExampleServer("127.0.0.1", 0)
        server.set_ioloop(ioloop)
        port = start_server(server)
        assert server.ioloop is ioloop
        with connect(port) as client:
            assert client.request("?native") == ([], "!native ok native")
            assert client.request("?block-free") == ([], r"!block-free invalid Unknown\_request.")
        stop_server(server)
        # The user's loop is not stopped with the server.
        alive = concurrent.futures.Future()
        ioloop.add_callback(alive.set_result, True)
        assert alive.result(TIMEOUT)
    finally:
        ioloop.add_callback(ioloop.stop)
        thread.join(TIMEOUT)


def test_restart_after_stop():
    server = ExampleServer("127.0.0.1", 0)
    for _ in range(2):
        port = start_server(server)
        with connect(port) as client:
            assert client.request("?watchdog") == ([], "!watchdog ok")
        stop_server(server)
        assert not server.running()


def test_sync_with_ioloop_and_wait_running():
    server = ExampleServer("127.0.0.1", 0)
    server.setDaemon(True)
    start_server(server)
    try:
        assert server.wait_running(TIMEOUT)
        assert server.running()
        server.sync_with_ioloop(timeout=TIMEOUT)
    finally:
        stop_server(server)
    assert not server.running()


@pytest.mark.parametrize("endless", [float("inf"), 1e300])
def test_lifecycle_waits_take_an_endless_timeout(endless):
    # As every katcp wait: more than a thread's wait can take means no bound (a thread's
    # own waits raise OverflowError for it).
    server = ExampleServer("127.0.0.1", 0)
    server.start(timeout=endless)
    assert server.wait_running(endless)
    server.sync_with_ioloop(timeout=endless)
    with connect(server.bind_address[1]) as client:
        assert client.request("?watchdog") == ([], "!watchdog ok")
    server.stop(timeout=endless).result(TIMEOUT)
    server.join(timeout=endless)
    assert not server.running()


# -- helpers -----------------------------------------------------------------------------------


def test_construct_name_filter():
    exact, f = construct_name_filter(None)
    assert not exact and f("anything")
    exact, f = construct_name_filter("a.b")
    assert exact and f("a.b") and not f("a.bc")
    exact, f = construct_name_filter(b"/^a/")
    assert not exact and f("abc") and not f("bac")
    exact, f = construct_name_filter("/")
    assert not exact and f("x")


def test_return_future():
    @return_future
    def ok(x):
        return x + 1

    @return_future
    def bad():
        raise KeyError("k")

    async def check():
        # Tornado futures belong to a loop, so the decorator is used on one.
        assert ok(1).result() == 2
        with pytest.raises(KeyError):
            bad().result()

    asyncio.run(check())


def test_return_future_refuses_an_async_def():
    # Its future resolved with the coroutine, which nobody awaited.
    async def coro():
        pass

    with pytest.raises(TypeError, match="fn .* is an async function"):
        return_future(coro)


def test_return_future_fails_when_fn_returns_a_coroutine():
    # It resolved with the coroutine, never run.
    async def coro():
        pass

    returned = []

    def fn():
        returned.append(coro())
        return returned[-1]

    async def check():
        with pytest.raises(TypeError, match="return_future's fn returned the coroutine"):
            await return_future(fn)()
        assert inspect.getcoroutinestate(returned[0]) == inspect.CORO_CLOSED

    asyncio.run(check())


def test_client_request_connection_unit():
    sent = []

    class FakeServer:
        def get_address(self, conn_id):
            return "fake:1"

        def send_message(self, conn_id, msg):
            sent.append(bytes(msg))

        def mass_send_message(self, msg):
            sent.append(b"mass " + bytes(msg))

    conn = ClientConnection(FakeServer(), "id")
    req = ClientRequestConnection(conn, Message.request("thing", mid=3))
    assert conn.address == "fake:1"
    req.inform("a b")
    assert req.make_reply("ok") == Message.reply("thing", "ok", mid=3)
    req.reply("ok", 1)
    with pytest.raises(RuntimeError):
        req.reply("ok")
    req.reply_again("fail", "again")
    with pytest.raises(ValueError):
        ClientRequestConnection(conn, Message.request("thing")).reply_with_message(
            Message.reply("other", "ok"))
    conn.mass_inform(Message.inform("hey"))
    assert sent == [rb"#thing[3] a\_b", b"!thing[3] ok 1", b"!thing[3] fail again",
                    b"mass #hey"]


class _OwnMessage(Message):
    """A Message of a class of its own: a sender checks its type all the same."""


@pytest.mark.parametrize("send, msg, error", [
    ("inform", Message.reply("thing", "ok"), ValueError),
    ("inform", _OwnMessage.request("thing"), ValueError),
    ("reply_inform", _OwnMessage.reply("thing", "ok"), ValueError),
    ("reply", _OwnMessage.inform("thing"), ValueError),
    ("inform", Message.request("thing"), ValueError),
    ("inform", "#thing", TypeError),
    ("mass_inform", Message.request("sneaky"), ValueError),
    ("mass_inform", Message.reply("bogus", "ok"), ValueError),
    ("mass_inform", None, TypeError),
    ("reply", Message.inform("thing"), ValueError),
    ("reply", Message.request("thing"), ValueError),
    ("reply", b"!thing ok", TypeError),
    ("reply_inform", Message.reply("thing", "ok"), ValueError),
    ("reply_inform", "#thing", TypeError),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_connection_refuses_a_message_of_the_wrong_type_and_sends_nothing(send, msg, error):
    sent = []

    class FakeServer:
        def send_message(self, conn_id, msg):
            sent.append(msg)

        mass_send_message = send_message_threadsafe = mass_send_message_threadsafe = (
            lambda self, *args: sent.append(args))

    for conn in (ClientConnection(FakeServer(), "id"),
                 ThreadsafeClientConnection(FakeServer(), "id")):
        args = (msg, Message.request("thing")) if send.startswith("reply") else (msg,)
        with pytest.raises(error, match=r"^%s\(\) (takes a katcp Message|sends )" % send):
            getattr(conn, send)(*args)
    assert sent == []


@pytest.mark.parametrize("send, mtype", [
    ("inform", Message.INFORM), ("mass_inform", Message.INFORM),
    ("reply", Message.REPLY), ("reply_inform", Message.INFORM)])
def test_a_connection_sends_a_message_of_a_class_of_its_own_of_the_right_type(send, mtype):
    sent = []

    class FakeServer:
        def send_message(self, conn_id, msg):
            sent.append(msg)

        mass_send_message = send_message_threadsafe = mass_send_message_threadsafe = (
            lambda self, *args: sent.append(args[-1]))

    msg = _OwnMessage(mtype, "thing")
    for conn in (ClientConnection(FakeServer(), "id"),
                 ThreadsafeClientConnection(FakeServer(), "id")):
        args = (msg, Message.request("thing")) if send.startswith("reply") else (msg,)
        getattr(conn, send)(*args)
    assert [(sent_msg.mtype, sent_msg.name) for sent_msg in sent] == [(mtype, "thing")] * 2


@pytest.mark.parametrize("msg, error, text", [
    (Message.request("sneaky"), ValueError, "sends inform messages only"),
    ("#sneaky", TypeError, "takes a katcp Message"),
])
def test_the_device_refuses_to_mass_inform_what_is_no_inform(msg, error, text):
    server = ExampleServer("127.0.0.1", 0)
    with pytest.raises(error, match=r"^mass_inform\(\) %s, not " % (text,)):
        server.mass_inform(msg)


@pytest.mark.parametrize("error", [KeyError, ValueError])
def test_remove_sensor_takes_a_sensor_or_its_name_and_refuses_an_unknown_one(error):
    # 0.9.3 popped the name from its dict of sensors (KeyError, which code written for it
    # catches); get_sensor() refuses an unknown name with ValueError and the same words.
    server = ExampleServer("127.0.0.1", 0)
    server.remove_sensor(server.int_sensor)
    assert not server.has_sensor("an.int")
    with pytest.raises(error, match=r"^Unknown sensor 'an\.int'\.$"):
        server.remove_sensor("an.int")
    with pytest.raises(error, match=r"^Unknown sensor 'an\.int'\.$"):
        server.remove_sensor(server.int_sensor)


def test_a_reply_named_otherwise_than_its_request_or_sent_twice_is_refused():
    sent = []

    class FakeServer:
        def send_message(self, conn_id, msg):
            sent.append(msg)

    conn = ClientConnection(FakeServer(), "id")
    with pytest.raises(ValueError) as error:
        conn.reply(Message.reply("other", "ok"), Message.request("thing"))
    assert str(error.value) == "Message name 'other' does not match request name 'thing'."
    req = ClientRequestConnection(conn, Message.request("thing", mid=3))
    with pytest.raises(ValueError) as error:
        req.reply_with_message(Message.reply("other", "ok"))
    assert str(error.value) == "Reply name 'other' does not match request name 'thing'."
    req.reply_with_message(Message.reply("thing", "ok"))
    with pytest.raises(RuntimeError) as error:
        req.reply_with_message(Message.reply("thing", "ok"))
    assert str(error.value) == "Reply to request 'thing' already sent."
    assert [str(msg) for msg in sent] == ["!thing[3] ok"]


def test_the_sensor_listing_follows_every_sensor_added_and_removed(example):
    # Between two listings, additions and removals that leave as many sensors as before.
    server, client = example

    def listed():
        informs, reply = client.request("?sensor-list")
        assert reply.startswith("!sensor-list ok")
        return [line.split()[1] for line in informs if line.startswith("#sensor-list ")]

    def sensor(name):
        return Sensor.integer(name, "Added.", "", [0, 1])

    assert listed() == ["a.float", "a.string", "an.int"]
    server.add_sensor(sensor("b.one"))
    assert listed() == ["a.float", "a.string", "an.int", "b.one"]
    server.remove_sensor("a.float")
    server.add_sensor(sensor("b.two"))
    assert listed() == ["a.string", "an.int", "b.one", "b.two"]
    server.remove_sensor("b.one")
    assert listed() == ["a.string", "an.int", "b.two"]
    server.add_sensor(sensor("b.three"))
    server.remove_sensor("b.two")
    assert listed() == ["a.string", "an.int", "b.three"]


class _AsyncExample(AsyncDeviceServer):
    setup_sensors = ExampleServer.setup_sensors


@pytest.mark.parametrize("server_class", [AsyncDeviceServer, DeviceServer,
                                          katcp_server.DeviceServerBase, KATCPServer])
def test_every_server_class_sends_twenty_traceback_frames_by_default(server_class):
    assert inspect.signature(server_class).parameters["tb_limit"].default == 20


@pytest.mark.parametrize("server_class", [ExampleServer, _AsyncExample])
@pytest.mark.parametrize("tb_limit", ["20", 2.5, b"3", [1]])
def test_a_tb_limit_that_is_no_int_is_refused_by_the_constructor(tb_limit, server_class):
    with pytest.raises(TypeError, match=r"^tb_limit must be an int or None, not %s\.$"
                       % re.escape(repr(tb_limit))):
        server_class("127.0.0.1", 0, tb_limit=tb_limit)


def test_an_async_device_server_logs_to_the_logger_it_is_given():
    logger = logging.getLogger("katcp.test.async_device_server")
    assert _AsyncExample("127.0.0.1", 0, logger=logger)._logger is logger


def _reply_of_a_started(server, request):
    """The reply of `server`, started for it and stopped after, to one `request` line."""
    port = start_server(server)
    try:
        with connect(port) as client:
            informs, reply = client.request(request)
    finally:
        stop_server(server)
    return reply


def test_a_tb_limit_of_none_sends_the_whole_traceback():
    reply = _reply_of_a_started(ExampleServer("127.0.0.1", 0, tb_limit=None), "?boom")
    assert reply.startswith("!boom fail Traceback") and reply.endswith("RuntimeError:\\_boom\\n")


@pytest.mark.parametrize("kind", sorted(CONCURRENCY))
@pytest.mark.parametrize("tb_limit", [None, 1])
def test_the_traceback_of_a_failure_is_cut_at_tb_limit_frames(kind, tb_limit, caplog):
    # A handler's failure, and one of the dispatch (which the server's transport
    # reports, or the handler thread).
    logger = logging.getLogger("katcp.test.given_logger")
    server = ExampleServer("127.0.0.1", 0, tb_limit=tb_limit, logger=logger)
    server.set_concurrency_options(**CONCURRENCY[kind])
    port = start_server(server)
    try:
        with connect(port) as client, caplog.at_level(logging.ERROR, logger=logger.name):
            informs, reply = client.request("?boom")
            client.send("?explode")
            error = client.readline()
            assert client.request("?watchdog") == ([], "!watchdog ok")
    finally:
        stop_server(server)
    assert error.startswith(b"#log error ")
    for text in (reply, error.decode()):
        frames = text.count("File\\_")
        assert frames == 1 if tb_limit == 1 else frames > 1
    # Logged to the logger given (not katcp.server's).
    assert [record.name for record in caplog.records
            if "Request boom FAIL" in record.getMessage()
            or "Error handling ?explode" in record.getMessage()] == [logger.name] * 2


class _Deep(ExampleServer):
    def request_deep(self, req, msg):
        """Fail thirty calls deep."""
        # Two functions in turn: Python shortens a run of one frame repeated.
        def down(depth):
            if depth == 0:
                raise RuntimeError("deep")
            return further(depth - 1)

        def further(depth):
            return down(depth)

        return down(30)


def test_a_device_server_sends_twenty_traceback_frames_by_default():
    reply = _reply_of_a_started(_Deep("127.0.0.1", 0), "?deep")
    assert reply.startswith("!deep fail Traceback") and reply.count("File\\_") == 20


def test_the_device_log_level_is_that_of_the_logger_given(restore_level):
    logger = logging.getLogger("katcp.test.given_device_logger")
    restore_level(logger)
    logger.setLevel(logging.WARNING)
    server = ExampleServer("127.0.0.1", 0, logger=logger)
    server.log.set_log_level_by_name("debug")
    assert logger.level == logging.DEBUG


def test_a_protocol_info_of_an_unsupported_major_version_is_refused():
    class Version3(ExampleServer):
        PROTOCOL_INFO = ProtocolFlags(3, 0, set())

    with pytest.raises(ValueError) as error:
        Version3("127.0.0.1", 0)
    assert str(error.value) == ("Unsupported KATCP major version 3 in PROTOCOL_INFO: "
                                "supported are [4, 5]")


class _NamedThing:
    name = "looks.like.a.sensor"


@pytest.mark.parametrize("thing", [None, "a.name", _NamedThing()])
def test_add_sensor_refuses_what_is_not_a_sensor(thing):
    server = ExampleServer("127.0.0.1", 0)
    before = sorted(server._sensors)
    with pytest.raises(TypeError, match=r"^add_sensor\(\) takes a Sensor, not %s\.$"
                       % re.escape(repr(thing))):
        server.add_sensor(thing)
    assert sorted(server._sensors) == before


class MisSendingServer(DeviceServer):
    """Handlers that hand the wrong kind of message to the server's senders."""

    def setup_sensors(self):
        self.refused = []

    def request_rwm(self, req, msg):
        """Reply with a request message."""
        req.reply_with_message(Message.request("rwm", "oops"))

    def request_mass(self, req, msg):
        """Mass-inform a request, a reply and things that are no messages."""
        for bad in (Message.request("sneaky"), Message.reply("bogus", "ok"), None, "#hello"):
            try:
                self.mass_inform(bad)
            except (TypeError, ValueError) as exc:
                self.refused.append(type(exc))
        return req.make_reply("ok")


@pytest.mark.parametrize("kind", sorted(CONCURRENCY))
def test_a_device_sends_no_request_nor_foreign_reply_and_fails_the_handler(kind):
    server = MisSendingServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[kind])
    port = start_server(server)
    try:
        with connect(port) as client:
            informs, reply = client.request("?rwm[1]")
            assert informs == []
            assert reply.startswith("!rwm[1] fail Traceback")
            # Refused by the connection's reply(), which reply_with_message() goes through.
            assert "reply()\\_sends\\_reply\\_messages\\_only" in reply
            assert client.request("?mass[2]") == ([], "!mass[2] ok")
    finally:
        stop_server(server)
    assert server.refused == [ValueError, ValueError, TypeError, TypeError]


def test_device_logger_levels_and_log_to_python(caplog):
    logger = DeviceLogger(None)
    assert logger.level_name() == "warn"
    assert logger.level_from_name(b"debug") == DeviceLogger.DEBUG
    with pytest.raises(ValueError):
        logger.level_from_name("WARN")
    logger.set_log_level_by_name("error")
    assert logger.level_name() == "error"
    py_logger = logging.getLogger("katcp.test.logtopython")
    py_logger.setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger="katcp.test.logtopython"):
        DeviceLogger.log_to_python(py_logger, Message.inform("log", "error", "123.0", "dev",
                                                             "bad thing"))
    assert any(r.levelno == logging.ERROR and "dev: bad thing" in r.getMessage()
               for r in caplog.records)


class _InformRecorder:
    """What a DeviceLogger needs of its device: the #log informs it would send."""

    def __init__(self):
        self.texts = []

    def create_log_inform(self, level_name, msg, name, timestamp=None):
        return Message.inform("log", level_name, "0", name, msg)

    def mass_inform(self, msg):
        self.texts.append(msg.arguments[3].decode())


@pytest.mark.parametrize("args, text", [
    (("pump %(name)s at %(rate)d", {"name": "p1", "rate": 3}), "pump p1 at 3"),
    (("at %H:%M was %s", "bad"), "at %H:%M was %s ('bad',)"),
    (("%(missing)s", {"name": "p1"}), "%(missing)s ({'name': 'p1'},)"),
    (("%d items", "x"), "%d items ('x',)"),
    (("no arguments %s",), "no arguments %s"),
    # Formatted without arguments too, as 0.9.3's msg % args was.
    (("load at 95%% of capacity",), "load at 95% of capacity"),
    (("load at 95% of capacity",), "load at 95% of capacity"),
    (("pump %(name)s",), "pump %(name)s")])
def test_device_logger_formats_as_python_logging_and_never_raises(args, text):
    device = _InformRecorder()
    DeviceLogger(device).error(*args)
    assert device.texts == [text]


@pytest.mark.parametrize("name, python_level", [
    ("all", 1), ("trace", 1), ("debug", logging.DEBUG), ("info", logging.INFO),
    ("warn", logging.WARNING), ("off", logging.FATAL + 10)])
def test_log_level_sets_the_python_loggers_level(name, python_level):
    # The most verbose levels let everything through, never NOTSET (the parent's level).
    py_logger = logging.getLogger("katcp.test.loglevels")
    logger = DeviceLogger(None, python_logger=py_logger)
    logger.set_log_level_by_name(name)
    assert py_logger.level == python_level
    assert py_logger.isEnabledFor(logging.DEBUG) is (python_level <= logging.DEBUG)


@pytest.mark.parametrize("name", ["trace", "all"])
def test_the_most_verbose_messages_reach_the_python_logger_set_to_let_them_through(name):
    # ?log-level trace (or all) sets the Python logger to let every level through: the
    # trace messages themselves too, and #log trace informs handed to log_to_python.
    with recording_logger("katcp.test.tracelevel") as (py_logger, handler):
        logger = DeviceLogger(_InformRecorder(), python_logger=py_logger)
        logger.set_log_level_by_name(name)
        logger.trace("a trace of %s", "pump")
        logger.log(DeviceLogger.ALL, "at the level all")
        for level in ("trace", "all"):
            DeviceLogger.log_to_python(py_logger, Message.inform("log", level, "1.5", "dev",
                                                                 "sent at " + level))
    assert [(r.levelno, r.getMessage()) for r in handler.records] == [
        (1, "a trace of pump"), (1, "at the level all"), (1, "1.5 dev: sent at trace"),
        (1, "1.5 dev: sent at all")]


@pytest.mark.parametrize("python_logger", [None, logging.getLogger("katcp.test.badlevel")])
@pytest.mark.parametrize("level", [10, -1, "info", None])
def test_a_level_that_is_no_constant_is_refused_and_changes_nothing(python_logger, level):
    device = _InformRecorder()
    logger = DeviceLogger(device, python_logger=python_logger)
    logger.set_log_level(DeviceLogger.INFO)
    with pytest.raises(KeyError):
        logger.set_log_level(level)
    assert logger.level_name() == "info"
    logger.info("still %s", "logging")
    assert device.texts == ["still logging"]
    if python_logger is not None:
        assert python_logger.level == logging.INFO


def test_katcp_server_constants():
    assert KATCPServer.MAX_MSG_SIZE == 2 * 1024 * 1024
    assert KATCPServer.MAX_WRITE_BUFFER_SIZE == 4 * 1024 * 1024
    assert "sensor-sampling" in katcp_server.BASE_REQUESTS


class _ConnectHookServer(ExampleServer):
    """on_client_connect returns what ``ready`` (a class attribute) makes of the greeting."""

    ready = staticmethod(lambda greeted: greeted)

    def on_client_connect(self, client_conn):
        return self.ready(super().on_client_connect(client_conn))

    def request_thread_name(self, req, msg):
        """The name of the thread handling this request."""
        return req.make_reply("ok", threading.current_thread().name)


@pytest.mark.parametrize("concurrency", sorted(CONCURRENCY))
@pytest.mark.parametrize("make_ready", ["executor_future", "plain_value"])
def test_what_on_client_connect_returns_lets_requests_run_where_they_belong(
        concurrency, make_ready, caplog):
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="connect-hook")
    ready = threading.Event()
    server = _ConnectHookServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[concurrency])
    server.ready = {
        # Resolved on the executor's thread (once the request waits for it): the
        # connection still resumes on the loop.
        "executor_future": lambda greeted: executor.submit(ready.wait, TIMEOUT),
        # Not a future (a mistake): taken as ready, not left waiting forever.
        "plain_value": lambda greeted: True}[make_ready]
    port = start_server(server)
    try:
        with caplog.at_level(logging.WARNING, logger=server._logger.name), \
                LineClient(port) as client:
            assert client.greeting() == GREETING
            address = client.local_address
            client.send("?thread-name")
            ready.set()
            reply = client.readline().decode()
            assert reply.startswith("!thread-name ok ") and "connect-hook" not in reply
    finally:
        stop_server(server)
        executor.shutdown()
    assert [m for m in caplog.messages if m.startswith("on_client_connect")] == (
        ["on_client_connect for %s returned True, not a future: the connection is taken "
         "as ready" % (address,)] if make_ready == "plain_value" else [])


class _PoolDispatchServer(_ConnectHookServer):
    """Its handle_message hands ?offload to a thread pool, whose future it returns."""

    def setup_sensors(self):
        super().setup_sensors()
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dispatch")

    def handle_message(self, client_conn, msg):
        if msg.name != "offload":
            return super().handle_message(client_conn, msg)
        return self.pool.submit(self._offloaded, client_conn, msg)

    def _offloaded(self, client_conn, msg):
        assert self.gate.wait(TIMEOUT)
        client_conn.reply(Message.reply("offload", "ok"), msg)


@pytest.mark.parametrize("concurrency", sorted(CONCURRENCY))
def test_a_handle_message_returning_a_thread_pools_future_lets_the_next_run_on_the_loop(
        concurrency):
    # On the loop, the connection resumed in the pool's thread when the future resolved:
    # the next message was handled there, and its reply written from there.
    server = _PoolDispatchServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[concurrency])
    port = start_server(server)
    try:
        with connect(port) as client:
            client.send("?offload")
            client.send("?thread-name")
            server.gate.set()
            assert client.readline() == b"!offload ok"
            reply = client.readline().decode()
            assert reply.startswith("!thread-name ok ") and "dispatch" not in reply
    finally:
        stop_server(server)
        server.pool.shutdown()


class _DisconnectHookServer(ExampleServer):
    """on_client_disconnect raises, or returns a future that resolves a moment later."""

    fails = False

    def on_client_disconnect(self, client_conn, msg, connection_valid):
        if self.fails:
            raise RuntimeError("no goodbye")
        done = self.ioloop.asyncio_loop.create_future()
        self.ioloop.call_later(0.05, done.set_result, None)
        return done


@pytest.mark.parametrize("fails", [False, True])
def test_a_disconnect_waits_for_the_device_and_logs_its_failure(fails, caplog):
    # The device's future is waited for up to DISCONNECT_TIMEOUT (not timed out at once),
    # and a failure is logged naming the client; the connection is closed either way.
    server = _DisconnectHookServer("127.0.0.1", 0)
    server.fails = fails
    port = start_server(server)
    try:
        with caplog.at_level(logging.ERROR, logger=server._logger.name), \
                connect(port) as client:
            address = client.local_address
            server._server.MAX_MSG_SIZE = 100
            client.send_raw(b"?plain " + b"x" * 200)
            assert client.read_to_eof() == []  # closed, without a goodbye here
    finally:
        stop_server(server)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    if fails:
        assert [r.getMessage() for r in errors] == [
            "Message from %s exceeds 100 bytes; disconnecting" % (address,),
            "Error in on_client_disconnect for %s" % (address,)]
        assert str(errors[1].exc_info[1]) == "no goodbye"
    else:
        assert len(errors) == 1


class _GoodbyeUnderWayServer(ExampleServer):
    """on_client_disconnect tells that it was called, and its future stays pending."""

    def setup_sensors(self):
        super().setup_sensors()
        self.saying_goodbye = threading.Event()

    def on_client_disconnect(self, client_conn, msg, connection_valid):
        self.saying_goodbye.set()
        return self.ioloop.asyncio_loop.create_future()


@pytest.mark.parametrize("concurrency", sorted(CONCURRENCY))
def test_a_stop_while_the_device_says_goodbye_to_a_client_closes_its_connection(
        concurrency):
    # The server's stop ends what it finds waiting, the goodbye of a client being
    # disconnected (for an over-long line here) among them: that connection was never
    # closed, the client left waiting on an open socket after the server had stopped.
    server = _GoodbyeUnderWayServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[concurrency])
    port = start_server(server)
    try:
        with connect(port) as client:
            server._server.MAX_MSG_SIZE = 100
            client.send_raw(b"?plain " + b"x" * 200)
            assert server.saying_goodbye.wait(TIMEOUT)
            stop_server(server)
            assert client.read_to_eof() == []
    finally:
        stop_server(server)


class _AsyncGoodbyeUnderWayServer(_GoodbyeUnderWayServer, AsyncDeviceServer):
    """As _GoodbyeUnderWayServer, on the loop of the thread that starts it."""


def _no_disconnect_timeout(server):
    # A goodbye that takes for ever is waited for as long as a test waits at most.
    server._server.DISCONNECT_TIMEOUT = 10 * TIMEOUT


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_a_stop_while_another_thread_disconnects_a_client_closes_its_connection(kind):
    # client_conn.disconnect() from another thread: a stop that found the device saying
    # goodbye left that connection open after it had stopped (on a loop that runs on,
    # for as long as the goodbye took; on one closed after the stop, for ever).
    server = started(kind, _GoodbyeUnderWayServer, _AsyncGoodbyeUnderWayServer,
                     _no_disconnect_timeout)
    try:
        with connect(server.bind_address[1]) as client:
            (client_conn,) = server._server._connections.values()
            client_conn.disconnect("Bye.")
            assert server.saying_goodbye.wait(TIMEOUT)
            server.stop().result(TIMEOUT)
            assert client.read_to_eof() == []
    finally:
        stop_server(server)


class _SlowGoodbyeServer(ExampleServer):
    """on_client_disconnect takes a moment, and says when it is done."""

    def setup_sensors(self):
        super().setup_sensors()
        self.goodbyes = []

    def on_client_disconnect(self, client_conn, msg, connection_valid):
        done = self.ioloop.asyncio_loop.create_future()
        self.ioloop.call_later(0.1, done.set_result, None)
        done.add_done_callback(lambda _: self.goodbyes.append(msg))
        return done


class _AsyncSlowGoodbyeServer(_SlowGoodbyeServer, AsyncDeviceServer):
    """As _SlowGoodbyeServer, on the loop of the thread that starts it."""


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_a_second_stop_resolves_once_the_first_has_stopped_the_server(kind):
    # On a loop the server does not run, a second stop() began a second shutdown, which
    # found nothing left to do: it (and join()) said the server had stopped while the
    # first was still saying goodbye to its clients, and a start then allowed ran while
    # the first went on (ending the new run's handlers at its end).
    server = started(kind, _SlowGoodbyeServer, _AsyncSlowGoodbyeServer)
    try:
        with connect(server.bind_address[1]):
            first = server.stop()
            second = server.stop(timeout=None)
            second.result(TIMEOUT)
            assert server.goodbyes == ["Device server shutting down."]
            server.join(timeout=TIMEOUT)
            first.result(TIMEOUT)
    finally:
        stop_server(server)


def _no_hardware():
    raise RuntimeError("no hardware")


async def _no_hardware_later():
    await asyncio.sleep(0)
    _no_hardware()


@pytest.mark.parametrize("concurrency", sorted(CONCURRENCY))
@pytest.mark.parametrize("make_ready", ["raises", "coroutine_fails", "executor_future_fails"])
def test_a_client_whose_on_client_connect_fails_is_told_and_disconnected_unread(
        concurrency, make_ready, caplog):
    # As 0.9.3: logged and sent as a #log, and nothing the client sends is handled; then
    # closed as the server closes any connection (on_client_disconnect: #disconnect, and
    # the device forgets the client).
    executor = concurrent.futures.ThreadPoolExecutor(1)
    server = _ConnectHookServer("127.0.0.1", 0, tb_limit=1)
    server.set_concurrency_options(**CONCURRENCY[concurrency])
    port = start_server(server)
    try:
        with connect(port) as other:
            server.ready = {
                "raises": lambda greeted: _no_hardware(),
                "coroutine_fails": lambda greeted: _no_hardware_later(),
                "executor_future_fails": lambda greeted: executor.submit(_no_hardware),
            }[make_ready]
            with caplog.at_level(logging.ERROR, logger="katcp.server"), \
                    LineClient(port) as client:
                address = client.local_address
                assert client.greeting() == GREETING
                client.send("?watchdog")
                lines = client.read_to_eof()
            assert [line.split()[:2] for line in lines] == [
                [b"#log", b"error"],
                [b"#disconnect", rb"Device\_error\_initialising\_connection."], []]
            text = MessageParser().parse(lines[0]).arguments[3].decode()
            # The traceback as Python formats it, cut at the server's tb_limit.
            traceback_lines = text.split("\n")
            assert traceback_lines[0] == (
                "Device error initialising connection Traceback (most recent call last):")
            assert traceback_lines[1].startswith('  File "') and text.count('  File "') == 1
            assert text.endswith("RuntimeError: no hardware\n")
            assert other.request("?client-list") == (
                ["#client-list " + other.local_address], "!client-list ok 1")
        records = [r.getMessage() for r in caplog.records if r.name == "katcp.server"]
        assert len(records) == 1
        assert records[0].startswith("Device error initialising connection %s: Traceback "
                                     % address)
        assert records[0].endswith("RuntimeError: no hardware\n")
    finally:
        stop_server(server)
        executor.shutdown()


@pytest.mark.parametrize("concurrency", sorted(CONCURRENCY))
def test_a_client_whose_connection_factory_fails_is_told_and_disconnected(concurrency,
                                                                           caplog):
    # A connection factory of one's own that raises is refused as on_client_connect that
    # raises (logged, and told to the client), and its connection closed: it was left
    # open and unread, unknown to the server, even after the server stopped.
    server = ExampleServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[concurrency])
    made = server._server.client_connection_factory

    def factory(transport, conn_id):
        if failing:
            raise RuntimeError("no connection object")
        return made(transport, conn_id)

    server._server.client_connection_factory = factory
    failing = True
    port = start_server(server)
    try:
        with caplog.at_level(logging.ERROR, logger="katcp.server"), \
                LineClient(port) as client:
            address = client.local_address
            lines = client.read_to_eof()
        assert [line.split()[:2] for line in lines] == [[b"#log", b"error"], []]
        assert lines[0].endswith(rb"RuntimeError:\_no\_connection\_object\n")
        (record,) = caplog.records
        assert record.getMessage().startswith(
            "Device error initialising connection %s: Traceback" % (address,))
        failing = False
        with connect(port) as other:
            assert other.request("?client-list") == (
                ["#client-list " + other.local_address], "!client-list ok 1")
    finally:
        stop_server(server)


class GatedSamplingServer(DeviceServer):
    """Its ?sensor-sampling waits for a gate before doing the work, as a handler that
    checks hardware first would."""

    def setup_sensors(self):
        self.sensor = Sensor.integer("x", "An integer.", "", default=0,
                                     initial_status=Sensor.NOMINAL)
        self.add_sensor(self.sensor)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.left = threading.Event()
        self.outcome = queue.Queue()

    def on_client_disconnect(self, client_conn, msg, connection_valid):
        done = super().on_client_disconnect(client_conn, msg, connection_valid)
        self.left.set()
        return done

    def _sample_after_gate(self, req, msg):
        self.outcome.put(super().request_sensor_sampling(req, msg))

    def request_sensor_sampling(self, req, msg):
        """Sampling, once the gate opens (in the handler thread)."""
        self.entered.set()
        self.gate.wait(TIMEOUT)
        self._sample_after_gate(req, msg)
        return req.make_reply("ok")


class GatedSamplingAsyncServer(GatedSamplingServer):
    """As GatedSamplingServer, awaiting the gate on the loop (no handler thread)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_concurrency_options(**CONCURRENCY["async"])

    async def request_sensor_sampling(self, req, msg):
        """Sampling, once the gate opens (awaited)."""
        self.entered.set()
        await tornado.ioloop.IOLoop.current().run_in_executor(None, self.gate.wait, TIMEOUT)
        self._sample_after_gate(req, msg)
        return req.make_reply("ok")


@pytest.mark.parametrize("server_class", [GatedSamplingServer, GatedSamplingAsyncServer])
def test_a_client_gone_while_its_sampling_request_waited_gets_no_strategies(server_class):
    server = server_class("127.0.0.1", 0)
    port = start_server(server)
    try:
        client = connect(port)
        client.send("?sensor-sampling x auto")
        assert server.entered.wait(TIMEOUT)
        # Reset rather than closed, as by a client that died: the server sees it at once
        # (a close is only seen once the request is handled).
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        assert server.left.wait(TIMEOUT)
        server.gate.set()
        outcome = server.outcome.get(timeout=TIMEOUT)
        if isinstance(outcome, concurrent.futures.Future):
            concurrent.futures.wait([outcome], TIMEOUT)  # from the handler thread: a hop
        assert isinstance(outcome.exception(), FailReply)
        assert server._strategies == {}
        assert server.sensor._observers == set()
    finally:
        stop_server(server)


class _AddressServer(ExampleServer):
    """An address sensor, and a request that echoes an address."""

    def setup_sensors(self):
        super().setup_sensors()
        self.address_sensor = Sensor.address("an.address", "An address.")
        self.add_sensor(self.address_sensor)

    @request(Address())
    @return_reply(Address())
    def request_echo_address(self, req, address):
        """Echo an address."""
        return ("ok", address)


def test_a_non_ascii_host_received_can_be_sent_back():
    server = _AddressServer("127.0.0.1", 0)
    port = start_server(server)
    try:
        with LineClient(port) as client:
            assert client.greeting() == GREETING
            assert client.request("?echo-address hôst:80") == ([], "!echo-address ok hôst:80")
            assert client.request("?sensor-sampling an.address event")[1] == \
                "!sensor-sampling ok an.address event"
            server.address_sensor.set_value(("hôst", 80), timestamp=T0)
            assert client.readline().decode() == \
                "#sensor-status 1234567890.250000 1 an.address nominal hôst:80"
            assert client.request("?sensor-value an.address") == (
                ["#sensor-value 1234567890.250000 1 an.address nominal hôst:80"],
                "!sensor-value ok 1")
    finally:
        stop_server(server)


@pytest.mark.parametrize("stop_in_teardown", [True, False])
def test_a_server_on_a_tornado_test_cases_loop_leaves_nothing_open(stop_in_teardown):
    # The test case's teardown cancels what is pending on its loop (a stop() just
    # begun, say) and closes the loop: the server's sockets must not outlive it.
    addresses = []

    class OnTheTestLoop(tornado.testing.AsyncTestCase):
        def setUp(self):
            super().setUp()
            self.server = ExampleServer("127.0.0.1", 0)
            self.server.set_concurrency_options(**CONCURRENCY["async"])
            self.server.set_ioloop(self.io_loop)
            self.server.start()
            addresses.append(self.server.bind_address)

        def tearDown(self):
            if stop_in_teardown:
                self.server.stop()
            super().tearDown()

        @tornado.testing.gen_test(timeout=TIMEOUT)
        def test_serve(self):
            yield tornado.gen.moment

    result, resource_warnings = run_case_for_leftovers(OnTheTestLoop)
    assert result.wasSuccessful()
    assert resource_warnings == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(addresses[0], timeout=TIMEOUT).close()


def test_a_server_stopped_in_a_tornado_test_cases_teardown_leaves_no_connection_open():
    # As above, with a client connected when the teardown cancels the server's goodbyes:
    # its connection is dropped (no #disconnect), and the server counts as stopped.
    servers, sockets = [], []

    class OnTheTestLoop(tornado.testing.AsyncTestCase):
        def setUp(self):
            super().setUp()
            self.server = ExampleServer("127.0.0.1", 0)
            self.server.set_concurrency_options(**CONCURRENCY["async"])
            self.server.set_ioloop(self.io_loop)
            self.server.start()
            servers.append(self.server)

        def tearDown(self):
            self.server.stop()
            super().tearDown()

        @tornado.testing.gen_test(timeout=TIMEOUT)
        def test_serve(self):
            sock = socket.create_connection(self.server.bind_address, timeout=TIMEOUT)
            sockets.append(sock)
            sock.setblocking(False)
            received = b""
            while received.count(b"\n") < len(GREETING):  # the server has the connection
                received += yield self.io_loop.asyncio_loop.sock_recv(sock, 4096)

    result, resource_warnings = run_case_for_leftovers(OnTheTestLoop)
    (sock,) = sockets
    with sock:
        assert result.wasSuccessful()
        assert resource_warnings == []
        sock.settimeout(TIMEOUT)
        try:
            assert sock.recv(4096) == b""
        except ConnectionResetError:
            pass
    (server,) = servers
    assert not server.running()
    server.join(timeout=TIMEOUT)  # at once: the server is stopped
    assert server._server._stopped.is_set()


def test_sampling_asked_through_a_mock_connection_is_set():
    # As the 0.9.3 tests ask it, with a unittest.mock connection (whose every attribute
    # is a true mock) on an unstarted server.
    server = ExampleServer("127.0.0.1", 0)
    req = ClientRequestConnection(mock.Mock(), Message.request("sensor-sampling", "an.int",
                                                               "event"))
    reply = server.request_sensor_sampling(req, req.msg).result(TIMEOUT)
    assert reply.arguments == [b"ok", b"an.int", b"event"]
    (strategies,) = server._strategies.values()
    assert list(strategies) == [server.int_sensor]
    server.clear_strategies(req.client_connection, remove_client=True)


# -- tornado coroutines started on the handler thread ------------------------------------

REPEATS = 200


def _plain_decorator(fn):
    """A user's decorator without functools.wraps (keeps only the docstring)."""
    def wrapper(self, req, msg):
        return fn(self, req, msg)
    wrapper.__doc__ = fn.__doc__
    return wrapper


class CoroutineOnHandlerThreadServer(DeviceServer):
    VERSION_INFO = ("coroutine-test", 1, 0)
    BUILD_INFO = ("coroutine-test", 1, 0, "")

    def setup_sensors(self):
        pass

    @tornado.gen.coroutine
    def _after_moment(self, req):
        yield tornado.gen.moment
        raise tornado.gen.Return(req.make_reply("ok", "moment"))

    @tornado.gen.coroutine
    def _after_loop_future(self, req):
        yield ResolvedWhileEntered(loop=self.ioloop.asyncio_loop)
        raise tornado.gen.Return(req.make_reply("ok", "future"))

    def request_helper(self, req, msg):
        """A plain handler returning a coroutine's future."""
        return self._after_moment(req)

    @request()
    @return_reply(Str())
    def request_typed(self, req):
        """A typed plain handler returning a coroutine's future."""
        return self._after_moment(req)

    @_plain_decorator
    @tornado.gen.coroutine
    def request_wrapped(self, req, msg):
        """A coroutine handler behind a decorator without functools.wraps."""
        yield tornado.gen.moment
        raise tornado.gen.Return(req.make_reply("ok", "wrapped"))

    def request_raced(self, req, msg):
        """A coroutine whose future the loop resolves before it left its context."""
        return self._after_loop_future(req)

    def request_asyncio_run(self, req, msg):
        """Runs an asyncio coroutine to its end, as a blocking handler may."""
        asyncio.run(asyncio.sleep(0))
        return req.make_reply("ok")

    def request_new_policy(self, req, msg):
        """Sets an event loop policy of its own, whose loop for the thread is none yet."""
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
        return req.make_reply("ok")

    def request_loop_work(self, req, msg):
        """Blocks on work it asked the loop for, sending an inform meanwhile."""
        done = threading.Event()
        req.inform("asked")
        self.ioloop.add_callback(done.set)
        assert done.wait(TIMEOUT)
        return req.make_reply("ok")


@pytest.fixture
def coroutine_server():
    server = CoroutineOnHandlerThreadServer("127.0.0.1", 0)
    port = start_server(server)
    yield server, port
    stop_server(server)


@pytest.mark.parametrize("name, repeats, reply", [
    ("helper", REPEATS, "ok moment"), ("typed", REPEATS, "ok moment"),
    ("wrapped", REPEATS, "ok wrapped"), ("raced", 5, "ok future")])
def test_coroutines_started_on_the_handler_thread_are_resumed_every_time(
        coroutine_server, caplog, name, repeats, reply):
    # The loop used to resume such a coroutine while the handler thread was still in
    # its context: "cannot enter context", and the request was never replied to.
    server, port = coroutine_server
    with connect(port) as client:
        for mid in range(1, repeats + 1):
            assert client.request("?%s[%d]" % (name, mid)) == (
                [], "!%s[%d] %s" % (name, mid, reply))
    assert "cannot enter context" not in caplog.text


def test_the_handler_thread_leaves_the_ioloop_as_it_found_it():
    server = CoroutineOnHandlerThreadServer("127.0.0.1", 0)
    start_server(server)
    try:
        assert server._handler_thread.wait_running(5)
        assert {"add_callback", "add_future"} <= set(vars(server.ioloop))
    finally:
        stop_server(server)
    server._handler_thread.join(5)
    assert not {"add_callback", "add_future"} & set(vars(server.ioloop))


def test_the_diversion_recognises_how_this_tornado_resumes_a_coroutine():
    # The diversion knows a coroutine's resumption after a yielded future by the code
    # of tornado's private callback; were it not found (or not the one tornado hands
    # over), the "raced" case above would only fail now and then, not every time.
    seen = []

    async def main():
        ioloop = tornado.ioloop.IOLoop.current()
        pending = ioloop.asyncio_loop.create_future()

        def add_future(future, callback):
            seen.append(getattr(callback, "__code__", None))
            return type(ioloop).add_future(ioloop, future, callback)

        @tornado.gen.coroutine
        def coroutine():
            yield pending

        with mock.patch.object(ioloop, "add_future", add_future):
            outcome = coroutine()
        pending.set_result(None)
        await asyncio.wait_for(outcome, TIMEOUT)

    asyncio.run(main())
    if tornado.version_info >= (6, 1):  # a coroutine resumes in its own context
        assert handler_thread._RUNNER_RESUME is not None
        assert seen == [handler_thread._RUNNER_RESUME]
    else:
        assert handler_thread._RUNNER_RESUME is None


def test_the_diversion_leaves_a_resumption_outside_any_context_alone():
    # Tornado 6.0's Runner resumes with self.run(): it has no ctx_run, and a diversion
    # that looked for one failed every request whose coroutine yielded a future
    # (AttributeError on the handler thread).
    def handle_yield(self):
        def inner(f):
            self.run()
        self.io_loop.add_future(self.future, inner)

    assert handler_thread._runner_resume_code(handle_yield) is None


def test_coroutines_started_on_the_handler_thread_after_asyncio_run_still_work(
        coroutine_server, caplog):
    # asyncio.run() leaves the thread without an event loop: the next coroutine started
    # there failed ("There is no current event loop"), for the rest of the server's life.
    _, port = coroutine_server
    with connect(port) as client:
        for mid in range(1, 4):
            assert client.request("?asyncio-run[%d]" % mid) == ([], "!asyncio-run[%d] ok" % mid)
            assert client.request("?helper[%d]" % mid) == ([], "!helper[%d] ok moment" % mid)
    assert "no current event loop" not in caplog.text


def test_coroutines_started_on_the_handler_thread_after_a_new_policy_still_work(
        coroutine_server, caplog):
    # The thread's event loop is set again only when its policy no longer has it: a
    # policy set by a handler has none for the thread.
    _, port = coroutine_server
    policy = asyncio.get_event_loop_policy()
    try:
        with connect(port) as client:
            for mid in range(1, 4):
                assert client.request("?new-policy[%d]" % mid) == ([], "!new-policy[%d] ok" % mid)
                assert client.request("?helper[%d]" % mid) == ([], "!helper[%d] ok moment" % mid)
    finally:
        asyncio.set_event_loop_policy(policy)
    assert "no current event loop" not in caplog.text


def test_a_handler_blocking_on_loop_work_it_asked_for_still_gets_it(coroutine_server):
    _, port = coroutine_server
    with connect(port) as client:
        for mid in range(1, 4):
            assert client.request("?loop-work[%d]" % mid) == (
                ["#loop-work[%d] asked" % mid], "!loop-work[%d] ok" % mid)


def test_a_partial_of_a_tornado_coroutine_is_an_async_handler():
    @tornado.gen.coroutine
    def handler(self, req, msg):
        yield tornado.gen.moment

    assert katcp_server.base._is_async_handler(functools.partial(handler))
    assert katcp_server.base._is_async_handler(functools.partial(functools.partial(handler)))
    assert not katcp_server.base._is_async_handler(functools.partial(_plain_decorator))


# -- KATCPServer's interface to the device server on it ------------------------------------


def test_start_with_enters_the_companion_under_the_start_and_raises_a_bind_failure_into_it():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    server = ExampleServer("127.0.0.1", taken.getsockname()[1])
    seen = []

    @contextlib.contextmanager
    def companion():
        seen.append("entered")
        try:
            yield
        except OSError as exc:
            seen.append(type(exc))
            raise

    try:
        with pytest.raises(OSError):
            server._server.start_with(companion())
    finally:
        taken.close()
    assert seen == ["entered", OSError]
    assert not server.running()
    # Refused once started: the companion is not entered.
    server = ExampleServer("127.0.0.1", 0)
    server._server.start_with(companion())
    try:
        with pytest.raises(RuntimeError):
            server._server.start_with(companion())
        assert seen[2:] == ["entered"]
        assert server.wait_running(TIMEOUT)
    finally:
        stop_server(server)


def test_manages_ioloop_and_connection_count():
    server = ExampleServer("127.0.0.1", 0)
    assert server._server.manages_ioloop
    port = start_server(server)
    try:
        assert server._server.connection_count == 0
        with connect(port):
            assert server._server.connection_count == 1
            assert "clients=1" in repr(server)
    finally:
        stop_server(server)
    server._server.use_current_ioloop()
    assert not server._server.manages_ioloop


def test_the_repr_of_a_server_tells_its_address_state_clients_and_protocol():
    server = ExampleServer("127.0.0.1", 0)
    assert server.bind_address is None
    assert "ExampleServer(address=None, running=False, clients=0, protocol=5.1-BIMT)" in (
        repr(server))
    port = start_server(server)
    try:
        with connect(port):
            expected = "ExampleServer(address=127.0.0.1:%d, running=True, clients=1, " \
                "protocol=5.1-BIMT)" % (port,)
            assert expected in repr(server)
    finally:
        stop_server(server)



@pytest.mark.parametrize("resolved_by", [None, "loop", "thread"])
def test_a_handler_thread_resolves_the_ready_future_of_a_stand_in_connection(
        loop_manager, resolved_by):
    """MessageHandlerThread.on_message()'s future resolves once the message is handled
    (the future a handler returned too, whichever thread resolves it), also for a
    connection that is no socket's (a stand-in of a test, or one of a connection factory
    of its own): only a socket's own wait is taken over (it reads on in the same loop
    turn), any other waiter is resolved as before, on the loop."""
    ioloop = loop_manager.get_ioloop()
    handled = []

    def handler(conn, msg):
        handled.append((conn, msg.name))
        if resolved_by is None:
            return None
        future = concurrent.futures.Future()
        if resolved_by == "loop":
            ioloop.add_callback(future.set_result, None)
        else:
            threading.Thread(target=future.set_result, args=(None,)).start()
        return future

    thread = MessageHandlerThread(handler, DeviceServer.create_log_inform)
    thread.set_ioloop(ioloop)
    thread.start(timeout=10)
    outcome = concurrent.futures.Future()

    def send():
        ready = thread.on_message("stand-in", Message.request("watchdog"))
        ready.add_done_callback(lambda done: outcome.set_result(done.result()))

    try:
        ioloop.add_callback(send)
        assert outcome.result(10) is None
        assert handled == [("stand-in", "watchdog")]
    finally:
        thread.stop()
        thread.join(timeout=10)


def test_a_handler_thread_leaves_a_ready_future_cancelled_by_its_waiter_alone(loop_manager):
    """A waiter that gave up on on_message()'s future (cancelled it, as a wait_for() that
    timed out does) gets no error when the message is handled after all; the next
    message's future resolves as usual."""
    ioloop = loop_manager.get_ioloop()
    release = threading.Event()
    thread = MessageHandlerThread(lambda conn, msg: release.wait(10) and None,
                                  DeviceServer.create_log_inform)
    thread.set_ioloop(ioloop)
    thread.start(timeout=10)
    outcome = concurrent.futures.Future()

    def give_up_then_send_again():
        thread.on_message("stand-in", Message.request("watchdog")).cancel()
        release.set()
        ready = thread.on_message("stand-in", Message.request("watchdog"))
        ready.add_done_callback(lambda done: outcome.set_result(done.result()))

    try:
        with no_logs("katcp"):
            ioloop.add_callback(give_up_then_send_again)
            assert outcome.result(10) is None
    finally:
        thread.stop()
        thread.join(timeout=10)


class _PresenceRules(DeviceServer):
    """Requests whose presence and hints the decorators' documented rules decide."""

    PROTOCOL_INFO = ProtocolFlags(5, 1, set("MIT"))

    def setup_sensors(self):
        pass

    @request_timeout_hint(None)
    def request_unhinted(self, req, msg):
        """Declared without a hint."""
        return req.make_reply("ok")

    @request_timeout_hint(15)
    def request_hinted(self, req, msg):
        """Hinted in whole seconds."""
        return req.make_reply("ok")

    @minimum_katcp_version(5, 1)
    def request_newer(self, req, msg):
        """Only on KATCP 5.1 or later."""
        return req.make_reply("ok")

    @has_katcp_protocol_flags([ProtocolFlags.BULK_SET_SENSOR_SAMPLING])
    def request_bulky(self, req, msg):
        """Only with the B flag."""
        return req.make_reply("ok")


class _PresenceRules50(_PresenceRules):
    PROTOCOL_INFO = ProtocolFlags(5, 0, set("MI"))


@pytest.mark.parametrize("kind", sorted(CONCURRENCY))
def test_decorated_requests_are_offered_and_hinted_as_documented(kind):
    # ?request-timeout-hint without a name lists only requests with a hint, one named
    # without one is 0.0; minimum_katcp_version() and has_katcp_protocol_flags() leave a
    # request out of a server without them, for ?help too.
    answers = {}
    for device in (_PresenceRules, _PresenceRules50):
        server = device("127.0.0.1", 0)
        server.set_concurrency_options(**CONCURRENCY[kind])
        port = start_server(server)
        try:
            with connect(port) as client:
                answers[device] = [client.request(line) for line in (
                    "?request-timeout-hint", "?request-timeout-hint unhinted", "?newer",
                    "?help newer", "?bulky", "?help bulky")]
        finally:
            stop_server(server)
    unknown = ([], "!bulky invalid Unknown\\_request.")
    assert answers[_PresenceRules] == [
        (["#request-timeout-hint hinted 15.0"], "!request-timeout-hint ok 1"),
        (["#request-timeout-hint unhinted 0.0"], "!request-timeout-hint ok 1"),
        ([], "!newer ok"),
        (["#help newer Only\\_on\\_KATCP\\_5.1\\_or\\_later."], "!help ok 1"),
        unknown,
        ([], "!help fail Unknown\\_request\\_method."),
    ]
    assert answers[_PresenceRules50] == [
        ([], "!request-timeout-hint invalid Unknown\\_request."),
        ([], "!request-timeout-hint invalid Unknown\\_request."),
        ([], "!newer invalid Unknown\\_request."),
        ([], "!help fail Unknown\\_request\\_method."),
        unknown,
        ([], "!help fail Unknown\\_request\\_method."),
    ]
