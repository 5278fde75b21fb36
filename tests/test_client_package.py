"""The katcp.client package: its modules, hooks, request table and thread crossings."""

import asyncio
import concurrent.futures
import importlib
import logging
import socket
import threading
import time
from unittest import mock

import pytest
import tornado.ioloop

import katcp.client
from katcp.client import AsyncClient, BlockingClient, DeviceClient, request_check
from katcp.client.requests import CallbackRequest, FutureRequest, RequestTable
import katcp.core
import katcp.wire.sensor
from katcp.core import Message, Sensor
from katcp.ioloop_manager import IOLoopManager

from wait_helpers import outcome_in_thread

WAIT = 5.0


# -- a tiny line server on 127.0.0.1 ------------------------------------------------------


class LineServer:
    """Sends `greeting`, then answers ``?name[mid] ...`` with ``!name[mid] ok``."""

    def __init__(self, greeting=(b"#version-connect katcp-protocol 5.0-IM",)):
        self.greeting = b"".join(line + b"\n" for line in greeting)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.connections = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        conn.sendall(self.greeting)
        pending = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            *lines, pending = (pending + data).split(b"\n")
            replies = [b"!" + line[1:].split(b" ")[0] + b" ok\n"
                       for line in lines if line.startswith(b"?")]
            if replies:
                conn.sendall(b"".join(replies))

    def close(self):
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def line_server():
    server = LineServer()
    yield server
    server.close()


@pytest.fixture
def started():
    clients = []

    def start(client):
        client.start(timeout=WAIT)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)


# -- the package keeps its documented names ---------------------------------------------


@pytest.mark.parametrize("name", ["DeviceClient", "AsyncClient", "CallbackClient",
                                  "BlockingClient", "address_to_string", "request_check",
                                  "make_threadsafe", "make_threadsafe_blocking"])
def test_documented_names_keep_their_home(name):
    obj = getattr(katcp.client, name)
    assert obj.__module__ == "katcp.client"
    # What reprs and pickles name must lead back to the object.
    assert getattr(importlib.import_module(obj.__module__), obj.__qualname__) is obj


# -- documented keywords are real keyword parameters ------------------------------------


@pytest.mark.parametrize("method", ["until_running", "until_connected", "until_disconnected",
                                    "until_protocol", "until_stopped"])
def test_a_misspelt_timeout_keyword_is_refused(method):
    client = DeviceClient("127.0.0.1", 1)
    with pytest.raises(TypeError):
        getattr(client, method)(timout=5)


def test_request_check_refuses_unknown_keywords():
    with pytest.raises(TypeError):
        request_check(BlockingClient("127.0.0.1", 1), RuntimeError, "watchdog", timout=1)


def test_request_check_passes_timeout_and_mid_on(line_server, started):
    client = started(BlockingClient(*line_server.address))
    assert client.wait_protocol(WAIT)
    reply, informs = request_check(client, RuntimeError, "watchdog", timeout=WAIT, mid=b"55")
    assert str(reply) == "!watchdog[55] ok"
    assert informs == []


# -- the request table, without I/O -----------------------------------------------------


class FakeClock:
    """time() and call_at() driven by the test."""

    def __init__(self):
        self.now = 100.0
        self.timers = []

    def time(self):
        return self.now

    def call_at(self, when, callback):
        timer = FakeTimer(when, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds):
        self.now += seconds
        due = [t for t in self.timers if not t.cancelled and t.when <= self.now]
        self.timers = [t for t in self.timers if t not in due]
        for timer in due:
            timer.callback()


class FakeTimer:
    def __init__(self, when, callback):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


def _table():
    expired = []
    table = RequestTable(lambda msg_id, start: expired.append((msg_id, start)))
    clock = FakeClock()
    table.use_clock(clock)
    return table, clock, expired


def _pending(name):
    return FutureRequest(Message.request(name), concurrent.futures.Future())


def test_table_finds_requests_by_id_and_oldest_first_by_name():
    table, _clock, _expired = _table()
    first, second, other = _pending("a"), _pending("a"), _pending("b")
    table.add(1, "a", first, None)
    table.add(2, "a", second, None)
    table.add(b"7", "b", other, None)
    assert table.by_id[b"7"] is other
    assert table.peek_by_name("a") == (1, first)
    del table.by_id[1]  # answered
    # The answered one is skipped (and dropped) when looking by name.
    assert table.peek_by_name("a") == (2, second)
    assert table.peek_by_name("c") == (None, None)
    assert table.held() == {"requests": 2, "names": 2, "deadlines": 0}


def test_a_deadline_just_after_the_one_that_fired_waits_its_turn():
    table, clock, expired = _table()
    table.add(1, "a", _pending("a"), 1.0)
    table.add(2, "a", _pending("a"), 1.0005)
    clock.advance(1.0)
    assert expired == [(1, 100.0)]
    clock.advance(0.0005)
    assert expired == [(1, 100.0), (2, 100.0)]


def test_table_expires_only_requests_still_waiting():
    table, clock, expired = _table()
    table.add(1, "a", _pending("a"), 1.0)
    table.add(2, "a", _pending("a"), 2.0)
    table.add(3, "a", _pending("a"), 3.0)
    del table.by_id[2]  # answered: its deadline no longer counts
    clock.advance(2.5)
    assert expired == [(1, 100.0)]
    clock.advance(1.0)
    assert expired == [(1, 100.0), (3, 100.0)]


def test_a_disarmed_deadline_never_fires():
    table, clock, expired = _table()
    pending = _pending("a")
    table.add(1, "a", pending, 1.0)
    pending.deadline = None
    clock.advance(5.0)
    assert expired == []


def test_answered_entries_do_not_pile_up():
    table, _clock, _expired = _table()
    for msg_id in range(5000):
        table.add(msg_id, "a", _pending("a"), 10.0)
        del table.by_id[msg_id]
    held = table.held()
    assert held["requests"] == 0
    assert held["names"] <= 1
    assert held["deadlines"] <= 2


def test_drain_hands_back_every_request_and_stops_the_timer():
    table, clock, expired = _table()
    pendings = [_pending("a"), _pending("b")]
    table.add(1, "a", pendings[0], 1.0)
    table.add(2, "b", pendings[1], None)
    assert table.drain() == pendings
    assert table.held() == {"requests": 0, "names": 0, "deadlines": 0}
    assert all(timer.cancelled for timer in clock.timers)
    clock.advance(5.0)
    assert expired == []


def test_a_new_table_holds_nothing():
    table = RequestTable(lambda msg_id, start: None)
    assert table.held() == {"requests": 0, "names": 0, "deadlines": 0}


def test_a_table_without_a_clock_refuses_deadlines():
    table = RequestTable(lambda msg_id, start: None)
    with pytest.raises(RuntimeError, match=r"^RequestTable\.use_clock\(\) was not called$"):
        table.add(1, "a", _pending("a"), 1.0)


def test_held_counts_deadlines_still_pending():
    table, _clock, _expired = _table()
    table.add(1, "a", _pending("a"), 1.0)
    table.add(2, "b", _pending("b"), None)
    # No by-name entries: that index is made only when first asked.
    assert table.held() == {"requests": 2, "names": 0, "deadlines": 1}


def test_reconnecting_on_the_same_loop_keeps_the_deadlines():
    table, clock, expired = _table()
    table.add(1, "a", _pending("a"), 1.0)
    table.use_clock(clock)
    clock.advance(1.5)
    assert expired == [(1, 100.0)]


def test_a_new_loop_times_the_requests_made_after_it():
    table, first, expired = _table()
    second = FakeClock()
    second.now = 500.0
    table.use_clock(second)
    table.add(2, "a", _pending("a"), 1.0)
    first.advance(5.0)
    assert expired == []
    second.advance(1.5)
    assert expired == [(2, 500.0)]


def test_callback_request_reports_undelivered_without_a_callback():
    got = []
    with_cbs = CallbackRequest(Message.request("a"), got.append, got.append, None,
                               logging.getLogger("test"))
    without = CallbackRequest(Message.request("a"), None, None, None,
                              logging.getLogger("test"))
    reply = Message.reply("a", "ok")
    assert with_cbs.on_reply(reply) is True and got == [reply]
    assert without.on_reply(reply) is False and without.on_inform(reply) is False


def test_a_raising_callback_is_logged_not_raised(caplog):
    def broken(msg):
        raise ValueError("boom")

    pending = CallbackRequest(Message.request("a"), broken, None, None,
                              logging.getLogger("test.callbacks"))
    with caplog.at_level(logging.ERROR, logger="test.callbacks"):
        assert pending.on_reply(Message.reply("a", "ok")) is True
    assert "Callback reply a FAIL" in caplog.text


# -- the transport hook -----------------------------------------------------------------


class RecordingTransport:
    """An in-memory transport: records writes, feeds the protocol what the test says."""

    def __init__(self, protocol, loop):
        self.protocol = protocol
        self.loop = loop
        self.writes = []
        self.closed = False
        self.ended_by = None  # "close" or "abort"

    def write(self, data):
        self.writes.append(data)

    def close(self):
        self._end("close")

    def abort(self):
        self._end("abort")

    def _end(self, how):
        if not self.closed:
            self.closed = True
            self.ended_by = how
            self.loop.call_soon(self.protocol.connection_lost, None)

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_extra_info(self, name, default=None):
        return default


class AsyncioRecordingTransport(RecordingTransport, asyncio.Transport):
    """A RecordingTransport that is an asyncio.Transport, its is_closing() not overridden
    (asyncio's raises NotImplementedError)."""


class ClosingRecordingTransport(RecordingTransport):
    """A RecordingTransport that says when it is closing, as asyncio's do."""

    closing = False

    def is_closing(self):
        return self.closing


class InMemoryClient(AsyncClient):
    """Connected through connect_transport() to a RecordingTransport."""

    transport = None
    transport_class = RecordingTransport

    async def connect_transport(self, protocol_factory):
        protocol = protocol_factory()
        self.transport = self.transport_class(protocol, asyncio.get_running_loop())
        protocol.connection_made(self.transport)
        return self.transport, protocol

    def request_ping(self, msg):
        """Answer ok."""
        return Message.reply_to_request(msg, "ok")


async def _in_memory_client(transport_class=RecordingTransport):
    client = InMemoryClient("in-memory", 0)
    client.transport_class = transport_class
    client.set_ioloop(tornado.ioloop.IOLoop.current())
    client.start()
    await client.until_connected(timeout=WAIT)
    client.transport.protocol.data_received(b"#version-connect katcp-protocol 5.0-IM\n")
    await client.until_protocol(timeout=WAIT)
    return client


@pytest.mark.parametrize("transport_class", [
    RecordingTransport, AsyncioRecordingTransport, ClosingRecordingTransport])
def test_connect_transport_lets_a_client_talk_without_a_socket(transport_class):
    # With is_closing() or without (it is not required of such a transport).
    asyncio.run(_talk_without_a_socket(transport_class))


async def _talk_without_a_socket(transport_class):
    client = await _in_memory_client(transport_class)
    try:
        reply_future = client.future_request(Message.request("watchdog"))
        # A request outside a received chunk is written at once.
        assert client.transport.writes == [b"?watchdog[1]\n"]
        client.transport.protocol.data_received(b"!watchdog[1] ok\n")
        reply, informs = await asyncio.wait_for(reply_future, WAIT)
        assert str(reply) == "!watchdog[1] ok" and informs == []
    finally:
        client.stop()
        await client.until_stopped(timeout=WAIT)


def test_a_transport_that_does_not_say_what_is_unsent_is_closed_not_aborted():
    asyncio.run(_disconnect_without_a_socket())


async def _disconnect_without_a_socket():
    # It has no get_write_buffer_size(): nothing is taken to be waiting in it, and the
    # close lets it send what it holds.
    client = await _in_memory_client()
    transport = client.transport
    try:
        client.disconnect()
        assert transport.ended_by == "close"
    finally:
        client.stop()
        await client.until_stopped(timeout=WAIT)

class AtOnceEndingTransport(RecordingTransport):
    """A RecordingTransport whose close() ends the connection before it returns."""

    def _end(self, how):
        if not self.closed:
            self.closed = True
            self.ended_by = how
            self.protocol.connection_lost(None)


def test_a_disconnect_whose_connection_ends_at_once_may_call_back_into_the_client():
    # In a thread of its own: a loop thread that hangs is given up (a daemon thread).
    outcome_in_thread(asyncio.run, _disconnect_calling_back()).result(WAIT)


async def _disconnect_calling_back():
    # The disconnect ran under the lock of the client's gate for other threads: a request
    # callback or notify_connected() that disconnected or stopped the client (taking it
    # again) hung the loop's thread for ever.
    client = await _in_memory_client(AtOnceEndingTransport)
    called_back = []

    def disconnect_again(reply):
        called_back.append(str(reply))
        client.disconnect()

    client.notify_connected = lambda connected: connected or client.stop()
    client.callback_request(Message.request("watchdog"), reply_cb=disconnect_again)
    client.disconnect()
    assert called_back == ["!watchdog[1] fail Connection\\_closed\\_before\\_reply\\_was"
                           "\\_received"]
    await client.until_stopped(timeout=WAIT)


def test_replies_made_while_a_chunk_is_handled_go_in_one_write():
    asyncio.run(_replies_in_one_write())


async def _replies_in_one_write():
    client = await _in_memory_client()
    try:
        client.transport.writes.clear()
        client.transport.protocol.data_received(b"?ping[1]\n?ping[2]\r\n?ping[3]\n")
        assert client.transport.writes == [b"!ping[1] ok\n!ping[2] ok\n!ping[3] ok\n"]
    finally:
        client.stop()
        await client.until_stopped(timeout=WAIT)


# -- the protocol on a real socket ------------------------------------------------------


class SmallClient(DeviceClient):
    MAX_MSG_SIZE = 1000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.informs = []
        self.disconnected = threading.Event()

    def inform_before(self, msg):
        """Record it."""
        self.informs.append(msg)

    def notify_connected(self, connected):
        if not connected:
            self.disconnected.set()


def test_a_line_over_max_msg_size_closes_the_connection_after_the_lines_before_it(started):
    server = LineServer(greeting=[b"#before 1", b"#before 2", b"#huge " + b"x" * 2000,
                                  b"#before 3"])
    try:
        client = SmallClient(*server.address, auto_reconnect=False)
        started(client)
        assert client.disconnected.wait(WAIT)
        assert [msg.arguments for msg in client.informs] == [[b"1"], [b"2"]]
    finally:
        server.close()


# -- thread crossings -------------------------------------------------------------------


def test_blocking_request_crosses_to_the_loop_once(line_server, started):
    client = started(BlockingClient(*line_server.address))
    assert client.wait_protocol(WAIT)
    loop = client.ioloop.asyncio_loop
    crossings = []
    real = loop.call_soon_threadsafe

    def counting(*args, **kwargs):
        crossings.append(args[0])
        return real(*args, **kwargs)

    loop.call_soon_threadsafe = counting
    try:
        reply, _ = client.blocking_request(Message.request("watchdog"))
    finally:
        del loop.call_soon_threadsafe
    assert reply.reply_ok()
    assert len(crossings) == 1


def test_thread_safe_methods_from_another_thread_run_on_the_loop(line_server, started):
    client = started(BlockingClient(*line_server.address))
    assert client.wait_protocol(WAIT)
    replied = concurrent.futures.Future()
    client.callback_request(Message.request("watchdog"),
                            reply_cb=lambda msg: replied.set_result(
                                (str(msg), threading.get_ident())))
    text, thread_id = replied.result(WAIT)
    assert text.startswith("!watchdog") and text.endswith(" ok")
    assert thread_id == client.ioloop_thread_id != threading.get_ident()
    # The blocking flavour returns what the future resolved to.
    reply, informs = client.future_request(Message.request("watchdog"), timeout=WAIT)
    assert reply.reply_ok() and informs == []


def test_manager_stop_resolves_after_its_callback_and_the_thread_ends():
    manager = IOLoopManager()
    manager.get_ioloop()
    manager.start(timeout=WAIT)
    order = []

    async def callback():
        await asyncio.sleep(0.01)
        order.append(threading.get_ident())

    loop_thread = manager.thread_id()
    assert loop_thread is not None and loop_thread != threading.get_ident()
    manager.stop(callback=callback).result(WAIT)
    assert order == [loop_thread]
    manager.join(timeout=WAIT)
    assert manager.thread_id() is None
    assert not manager.wait_running(0)


def test_manager_stop_still_stops_when_its_callback_raises(caplog):
    manager = IOLoopManager()
    manager.get_ioloop()
    manager.start(timeout=WAIT)

    def callback():
        raise ValueError("broken stop callback")

    with caplog.at_level(logging.ERROR):
        assert manager.stop(callback=callback).result(WAIT) is None
    manager.join(timeout=WAIT)
    assert "Error in ioloop stop callback" in caplog.text


def test_nothing_more_is_written_to_a_transport_closing_on_its_own():
    asyncio.run(_write_to_a_closing_transport())


async def _write_to_a_closing_transport():
    # As asyncio's transports do when the peer resets the connection: closing, with
    # connection_lost() still to come. The write that found it so is the last.
    client = await _in_memory_client(ClosingRecordingTransport)
    transport = client.transport
    try:
        transport.closing = True
        first = client.future_request(Message.request("watchdog"))
        second = client.future_request(Message.request("watchdog"))
        assert transport.writes == [b"?watchdog[1]\n"]
        reply, _ = await asyncio.wait_for(second, WAIT)
        assert str(reply) == "!watchdog[2] fail Client\\_not\\_connected"
        # Aborted: what it still holds (a server that stopped reading) must not hold up
        # connection_lost(), nor so the client's stop.
        assert transport.ended_by == "abort"
        reply, _ = await asyncio.wait_for(first, WAIT)
        assert reply.arguments[1] == b"Connection closed before reply was received"
    finally:
        client.stop()
        await client.until_stopped(timeout=WAIT)


def test_the_servers_end_of_the_connection_is_the_end_of_writing():
    asyncio.run(_write_after_the_servers_end())


async def _write_after_the_servers_end():
    # asyncio closes the transport once eof_received() returns; connection_lost() comes
    # a loop turn later (or never, while a server that stopped reading holds unsent
    # data). Nothing is written meanwhile.
    client = await _in_memory_client()
    transport = client.transport
    try:
        transport.protocol.eof_received()
        reply, _ = await asyncio.wait_for(
            client.future_request(Message.request("watchdog")), WAIT)
        assert str(reply) == "!watchdog[1] fail Client\\_not\\_connected"
        assert transport.writes == [] and transport.ended_by == "abort"
    finally:
        client.stop()
        await client.until_stopped(timeout=WAIT)


def test_names_patched_on_katcp_client_and_core_are_heard_where_they_were_looked_up(
        line_server, started):
    # 0.9.3's single modules looked these up at call time: a client made its parser at
    # each connection, a Sensor read the time module's clock at each value set.
    parsed = []

    class RecordingParser(katcp.client.MessageParser):
        def parse(self, line):
            parsed.append(line)
            return super().parse(line)

    with mock.patch("katcp.client.MessageParser", RecordingParser):
        client = started(BlockingClient(*line_server.address))
        assert client.wait_protocol(WAIT)
    assert parsed and parsed[0].startswith(b"#version-connect")

    sensor = Sensor.integer("counter")
    with mock.patch("katcp.core.time") as fake_time:
        fake_time.time.return_value = 1234.5
        sensor.set_value(3)
    assert sensor.read() == (1234.5, Sensor.NOMINAL, 3)
    assert katcp.core.time is time and katcp.wire.sensor.time is time
