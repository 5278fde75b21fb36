"""katcp 0.9 client and ioloop-manager behaviours that existing code relies on.

Real servers on 127.0.0.1 throughout: a katcp DeviceServer, or a bare socket server that
sends a scripted greeting where a test needs a server katcp would not be.
"""

import gc
import logging
import queue
import re
import socket
import threading
import time
import weakref

import pytest
import tornado.gen
import tornado.ioloop

from katcp import AsyncClient, CallbackClient, DeviceClient, DeviceServer, Message, Sensor
from katcp.core import KatcpClientError, ProtocolFlags
from katcp.ioloop_manager import (
    IOLoopManager,
    IOLoopThreadWrapper,
    ThreadSafeMethodAttrWrapper,
)
from katcp.kattypes import Int, request, return_reply
from katcp.resource_client import (KATCPClientResource, KATCPClientResourceContainer,
                                   ThreadSafeKATCPClientResourceWrapper)
from katcp.testutils import DeviceTestServer

from log_helpers import recording_logger

WAIT = 5.0


class Adder(DeviceServer):
    VERSION_INFO = ("adder-api", 2, 1)
    BUILD_INFO = ("adder-impl", 0, 3, "")

    def setup_sensors(self):
        self.add_sensor(Sensor.integer("total", "Last sum.", "", [0, 1000], default=11))

    @request(Int(), Int())
    @return_reply(Int())
    def request_add(self, req, a, b):
        """Add two integers."""
        return ("ok", a + b)


@pytest.fixture
def adder():
    server = Adder("127.0.0.1", 0)
    server.start(timeout=WAIT)
    yield server
    server.stop(timeout=WAIT)
    server.join(timeout=WAIT)


@pytest.fixture
def clients():
    """Start clients with ``clients(client)``; stopped and joined after the test."""
    started = []

    def start(client):
        client.start(timeout=WAIT)
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)


class GreetingServer:
    """Accepts connections on 127.0.0.1, sends each one `greeting` and reads until EOF.

    ``events`` receives ``"connected"`` and ``"closed"`` for each connection, and every
    line received as bytes.
    """

    def __init__(self, greeting):
        self.greeting = b"".join(line + b"\n" for line in greeting)
        self.events = queue.Queue()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.events.put("connected")
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.sendall(self.greeting)
            pending = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.events.put(line)
        except OSError:
            pass
        self.events.put("closed")

    def next_event(self):
        return self.events.get(timeout=WAIT)

    def close(self):
        # Closing alone does not wake a thread blocked in accept(); shutting down does.
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in self._conns:
            conn.close()
        self._thread.join(WAIT)


V5_IDS = [b"#version-connect katcp-protocol 5.0-IM",
          b"#version-connect katcp-library greeting-lib-1.0",
          b"#version-connect katcp-device greeting-dev-1.0"]


def run_on_loop(ioloop, fn):
    """Run ``fn()`` on `ioloop`'s thread and return what it returned (or raise)."""
    return IOLoopThreadWrapper(ioloop).call_in_ioloop(fn, (), {}, timeout=WAIT)


@pytest.fixture
def client_log():
    with recording_logger("katcp.test_legacy_client") as logged:
        yield logged


# -- the IPython recipe: IOLoopManager runs its own loop by default ---------------------


@pytest.mark.parametrize("set_resource_ioloop", [True, False],
                         ids=["resource-on-managed-loop", "resource-takes-current-loop"])
def test_ipython_recipe_gives_a_running_loop_for_a_blocking_resource(adder,
                                                                     set_resource_ioloop):
    iom = IOLoopManager()
    ioloop = iom.get_ioloop()
    iom.start()
    try:
        assert iom.wait_running(WAIT)
        loop_thread = run_on_loop(ioloop, threading.get_ident)
        assert loop_thread != threading.get_ident()
        host, port = adder.bind_address
        resource = KATCPClientResource(dict(name="adder", address=(host, port),
                                            controlled=True))
        if set_resource_ioloop:
            resource.set_ioloop(ioloop)
        wrapped = ThreadSafeKATCPClientResourceWrapper(resource, IOLoopThreadWrapper(ioloop))
        wrapped.start()
        try:
            wrapped.until_synced(timeout=WAIT)
            assert wrapped.synced
            reply = wrapped.req.add(20, 22)
            assert reply.succeeded and reply.reply.arguments == [b"ok", b"42"]
            assert wrapped.sensor.total.get_value() == 11
        finally:
            wrapped.stop()
    finally:
        iom.stop().result(WAIT)
        iom.join(WAIT)


def test_manager_defaults_match_the_09_documentation():
    iom = IOLoopManager()
    assert iom.managed() is True
    assert iom.wait_running(0.01) is False  # not started yet
    iom.start()
    try:
        assert iom.wait_running(WAIT) is True
        assert iom._ioloop_thread.daemon
    finally:
        iom.stop().result(WAIT)
        iom.join(WAIT)

    # set_ioloop(loop) without `managed` follows the constructor's managed_default.
    for managed_default in (True, False):
        manager = IOLoopManager(managed_default=managed_default)
        loop = tornado.ioloop.IOLoop(make_current=False)
        manager.set_ioloop(loop)
        assert manager.managed() is managed_default
        assert manager.get_ioloop() is loop
        manager.set_ioloop(loop, managed=not managed_default)
        assert manager.managed() is (not managed_default)
        loop.close()


def test_managed_loop_thread_can_be_made_non_daemonic():
    iom = IOLoopManager()
    iom.setDaemon(False)
    iom.start(timeout=WAIT)
    try:
        assert not iom._ioloop_thread.daemon
    finally:
        iom.stop().result(WAIT)
        iom.join(WAIT)
    assert not iom._ioloop_thread.is_alive()


def test_wrapper_getattr_reads_on_the_loop_and_plain_attributes_in_the_caller(loop_manager):
    ioloop = loop_manager.get_ioloop()
    loop_thread = run_on_loop(ioloop, threading.get_ident)

    class Probe:
        @property
        def reader_thread(self):
            return threading.get_ident()

    class ProbeWrapper(ThreadSafeMethodAttrWrapper):
        @property
        def reader_thread_on_loop(self):
            return self._getattr("reader_thread")

    wrapped = ProbeWrapper(Probe(), IOLoopThreadWrapper(ioloop))
    assert wrapped.reader_thread_on_loop == loop_thread
    assert wrapped.reader_thread == threading.get_ident()


# -- clients without thread safety belong to their loop's thread ------------------------


def test_foreign_thread_calls_without_thread_safety_raise(clients):
    server = DeviceTestServer("127.0.0.1", 0)
    server.start(timeout=WAIT)
    try:
        check_foreign_thread_calls_raise(server, clients(AsyncClient(*server.bind_address)))
    finally:
        server.stop(timeout=WAIT)
        server.join(timeout=WAIT)


def check_foreign_thread_calls_raise(server, client):
    assert client.wait_protocol(WAIT)
    with pytest.raises(AssertionError, match="enable_thread_safety"):
        client.request(Message.request("watchdog"))
    with pytest.raises(AssertionError):
        client.send_message(Message.request("watchdog"))
    with pytest.raises(AssertionError):
        client.future_request(Message.request("watchdog"))
    with pytest.raises(AssertionError):
        client.callback_request(Message.request("watchdog"))
    # Nothing was sent: the only message the server sees is the one sent from the loop.
    reply, _ = run_on_loop(client.ioloop,
                           lambda: client.future_request(Message.request("watchdog")))
    assert reply.arguments == [b"ok"]
    assert [msg.name for msg in server.messages] == ["watchdog"]


def test_same_calls_work_from_the_loop_and_with_thread_safety(adder, clients):
    sent = queue.Queue()

    class Client(AsyncClient):
        def reply_add(self, msg):
            sent.put(msg)

    plain = clients(Client(*adder.bind_address))
    assert plain.wait_protocol(WAIT)
    run_on_loop(plain.ioloop, lambda: plain.request(Message.request("add", 2, 3)))
    assert sent.get(timeout=WAIT).arguments == [b"ok", b"5"]

    safe = Client(*adder.bind_address)
    safe.enable_thread_safety()
    clients(safe)
    assert safe.wait_protocol(WAIT)
    safe.request(Message.request("add", 3, 4))
    assert sent.get(timeout=WAIT).arguments == [b"ok", b"7"]
    reply, informs = safe.future_request(Message.request("add", 4, 5))
    assert reply.arguments == [b"ok", b"9"] and informs == []


def test_unstarted_client_says_so():
    client = AsyncClient("127.0.0.1", 1)
    with pytest.raises(KatcpClientError, match="not started"):
        client.future_request(Message.request("watchdog"))
    with pytest.raises(KatcpClientError, match="not started"):
        client.send_message(Message.inform("hello"))


def test_started_on_its_own_loop_the_client_is_usable_at_once(adder):
    host, port = adder.bind_address
    iom = IOLoopManager()
    ioloop = iom.get_ioloop()
    iom.start(timeout=WAIT)
    client = AsyncClient(host, port)
    try:
        def start_and_request():
            client.set_ioloop(ioloop)
            client.start()
            # Before _install() has run: still the loop's thread, so no AssertionError.
            return client.future_request(Message.request("add", 5, 6))

        reply, _ = run_on_loop(ioloop, start_and_request)
        assert reply.reply_ok() is False  # not yet connected, but answered
        assert reply.arguments[1] == b"Client not connected"
    finally:
        run_on_loop(ioloop, client.stop)
        iom.stop().result(WAIT)
        iom.join(WAIT)


# -- requests go through send_message when it is replaced --------------------------------


def test_replaced_send_message_sees_every_request_with_ids(adder, clients):
    client = clients(CallbackClient(*adder.bind_address))
    assert client.wait_protocol(WAIT)
    seen = queue.Queue()
    real_send = client.send_message

    def spy(msg):
        seen.put(bytes(msg))
        real_send(msg)

    client.send_message = spy
    replies = queue.Queue()
    client.callback_request(Message.request("add", 1, 1), reply_cb=replies.put)
    assert replies.get(timeout=WAIT).arguments == [b"ok", b"2"]
    assert client.blocking_request(Message.request("add", 2, 2))[0].arguments == [b"ok", b"4"]
    reply, _ = client.future_request(Message.request("add", 3, 3))
    assert reply.arguments == [b"ok", b"6"]
    assert [seen.get(timeout=WAIT) for _ in range(3)] == [
        b"?add[1] 1 1", b"?add[2] 2 2", b"?add[3] 3 3"]


def test_send_message_raising_client_error_gives_a_fail_reply(adder, clients):
    client = clients(CallbackClient(*adder.bind_address))
    assert client.wait_protocol(WAIT)

    def refuse(msg):
        raise KatcpClientError("Refused %s" % msg.name)

    client.send_message = refuse
    replies = queue.Queue()
    client.callback_request(Message.request("add", 1, 2), reply_cb=replies.put)
    reply = replies.get(timeout=WAIT)
    assert reply.name == "add"
    assert reply.arguments == [b"fail", b"Refused add"]
    assert client.blocking_request(Message.request("add", 1, 2))[0].arguments == [
        b"fail", b"Refused add"]


def test_reply_without_callback_goes_to_the_reply_handlers(adder, clients):
    handled = queue.Queue()

    class Client(CallbackClient):
        def reply_add(self, msg):
            handled.put(("reply_add", bytes(msg)))

        def unhandled_reply(self, msg):
            handled.put(("unhandled", bytes(msg)))

    client = clients(Client(*adder.bind_address))
    assert client.wait_protocol(WAIT)
    client.callback_request(Message.request("add", 6, 7))
    assert handled.get(timeout=WAIT) == ("reply_add", b"!add[1] ok 13")
    client.callback_request(Message.request("watchdog"))
    assert handled.get(timeout=WAIT) == ("unhandled", b"!watchdog[2] ok")


def test_timeout_handler_ignores_a_request_already_answered(adder, clients):
    client = clients(CallbackClient(*adder.bind_address))
    assert client.wait_protocol(WAIT)
    assert run_on_loop(client.ioloop,
                       lambda: client._handle_timeout(b"999", client.ioloop.time())) is None
    reply, _ = client.blocking_request(Message.request("add", 1, 1))
    assert reply.arguments == [b"ok", b"2"]


# -- connection state: last_connect_time, versions, retries, flags -----------------------


def test_last_connect_time_and_versions(adder, clients):
    client = CallbackClient(*adder.bind_address)
    assert client.last_connect_time is None
    assert client.versions == {}
    before = time.time()  # the clock of tornado 6's ioloop.time()
    clients(client)
    assert client.wait_protocol(WAIT)
    first = client.last_connect_time
    assert first is not None
    # The loop's clock, read when the connection was made.
    assert before <= first <= client.ioloop.time()
    assert client.versions["katcp-device"][0] == "adder-api-2.1"
    assert client.versions["katcp-library"][0].startswith("katcp-python")
    assert client.versions["katcp-protocol"][0].startswith("5.")

    reconnected = threading.Event()
    client.notify_connected = lambda connected: connected and reconnected.set()
    client.disconnect()
    assert reconnected.wait(WAIT)
    assert client.last_connect_time > first


def _started_client_of_a_closed_port(logger, reconnect_delay):
    """A started DeviceClient of a port nothing listens on, and the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    client = DeviceClient("127.0.0.1", port, logger=logger)
    client.auto_reconnect_delay = reconnect_delay
    client.start(timeout=WAIT)
    return client, port


def test_failed_attempts_warn_on_the_first_and_every_fifth_until_connected(client_log):
    # A device switched off for hours must not cost a warning per retry.
    logger, handler = client_log
    # Ten attempts in about half a second (the delays double from 1 ms).
    client, port = _started_client_of_a_closed_port(logger, reconnect_delay=0.001)
    try:
        failures = handler.wait_for("Failed to connect", 10)[:10]
        W, D = logging.WARNING, logging.DEBUG
        assert [r.levelno for r in failures] == [W, D, D, D, W, D, D, D, D, W]
        assert failures[0].getMessage().startswith("Failed to connect to 127.0.0.1:%d: " % port)
        assert "attempts so far" not in failures[0].getMessage()
        assert failures[4].getMessage().endswith(" (5 attempts so far)")
        assert failures[9].getMessage().endswith(" (10 attempts so far)")
        # A connection starts the count over: the next failure is a first one.
        listener = socket.create_server(("127.0.0.1", port))
        with listener:
            listener.settimeout(WAIT)
            connection, _ = listener.accept()
            assert client.wait_connected(WAIT)
            before = len(handler.wait_for("Failed to connect"))
        connection.close()
        after = handler.wait_for("Failed to connect", before + 1)[before]
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    assert after.levelno == W
    assert "attempts so far" not in after.getMessage()


def test_a_restarted_client_counts_its_failed_attempts_afresh(client_log):
    logger, handler = client_log
    client, port = _started_client_of_a_closed_port(logger, reconnect_delay=0.001)
    try:
        handler.wait_for("Failed to connect", 3)
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
        before = len(handler.wait_for("Failed to connect"))
        client.start(timeout=WAIT)
        first = handler.wait_for("Failed to connect", before + 1)[before]
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    assert first.levelno == logging.WARNING
    assert first.getMessage().startswith("Failed to connect to 127.0.0.1:%d: " % port)
    assert "attempts so far" not in first.getMessage()


def test_retry_waits_at_least_half_the_reconnect_delay(client_log):
    logger, handler = client_log
    client, port = _started_client_of_a_closed_port(logger, reconnect_delay=0.2)
    try:
        failures = handler.wait_for("Failed to connect", 2)
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    assert len(failures) >= 2
    assert failures[1].created - failures[0].created >= 0.1


def test_logger_none_is_the_default_logger_of_a_client():
    with recording_logger("katcp.client") as (_logger, handler):
        client, port = _started_client_of_a_closed_port(None, reconnect_delay=0.001)
        try:
            failures = handler.wait_for("Failed to connect", 2)
            assert len(failures) >= 2
            assert client.running()
        finally:
            client.stop(timeout=WAIT)
            client.join(timeout=WAIT)
    assert failures[0].getMessage().startswith("Failed to connect to 127.0.0.1:%d: " % port)


@pytest.mark.parametrize("make", [
    lambda: IOLoopManager(logger=None),
    lambda: KATCPClientResource(dict(name="dev", address=("127.0.0.1", 1)), logger=None),
    lambda: KATCPClientResourceContainer(dict(name="site", clients={}), logger=None),
], ids=["ioloop-manager", "resource", "container"])
def test_logger_none_is_the_default_logger_of_the_high_level_objects(make):
    assert isinstance(make()._logger, logging.Logger)


class _TransportFails(DeviceClient):
    """A client whose every connection attempt raises RuntimeError (a faulty override)."""

    async def connect_transport(self, protocol_factory):
        raise RuntimeError("no transport today")


@pytest.mark.parametrize("make, error", [
    # The resolver refuses these before any I/O: UnicodeError (an empty label) and
    # TypeError (a host that is no str), neither of them an OSError.
    # (UnicodeEncodeError from Python 3.13 on.)
    (lambda logger: DeviceClient("myhost..example.com", 7147, logger=logger),
     "Unicode(Encode)?Error"),
    (lambda logger: DeviceClient(5, 7147, logger=logger), "TypeError"),
    (lambda logger: _TransportFails("127.0.0.1", 7147, logger=logger), "RuntimeError"),
], ids=["empty-label", "host-not-str", "override-raises"])
def test_an_attempt_that_raises_any_error_is_a_failed_attempt_and_retried(client_log, make,
                                                                           error):
    logger, handler = client_log
    client = make(logger)
    client.auto_reconnect_delay = 0.001
    client.start(timeout=WAIT)
    try:
        failures = handler.wait_for("Failed to connect", 3)
        assert len(failures) >= 3
        assert client.running()
        assert re.search(": %s: " % error, failures[0].getMessage())
        assert not any(m.startswith("Client main coroutine failed") for m in handler.messages())
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    assert not client.running()


@pytest.mark.parametrize("port", [70000, -1, 7147.0, 7147.5, None, [7147]])
def test_a_port_that_can_never_be_connected_to_is_refused_by_the_constructor(port):
    with pytest.raises(ValueError, match=r"port %s" % re.escape(repr(port))):
        DeviceClient("127.0.0.1", port)


@pytest.mark.parametrize("tb_limit", ["20", 2.5])
def test_a_tb_limit_that_is_no_int_is_refused_by_a_clients_constructor(tb_limit):
    with pytest.raises(TypeError, match="tb_limit must be an int or None"):
        DeviceClient("127.0.0.1", 7147, tb_limit=tb_limit)
    with pytest.raises(TypeError, match="tb_limit must be an int or None"):
        AsyncClient("127.0.0.1", 7147, tb_limit=tb_limit)


@pytest.mark.parametrize("port", [0, 65535, "7147", b"7147", "http"])
def test_ports_the_resolver_takes_are_accepted(port):
    client = DeviceClient("127.0.0.1", port)
    assert client.bind_address == ("127.0.0.1", port)


def test_first_attempt_is_made_before_until_running_resumes(loop_manager, client_log):
    logger, handler = client_log
    ioloop = loop_manager.get_ioloop()
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    client = DeviceClient("127.0.0.1", port, logger=logger)
    listener = []

    async def start_then_listen():
        client.set_ioloop(ioloop)
        client.start()
        await client.until_running()
        # The first connection attempt has been made, so it fails even though the
        # server is there now; the client then waits to retry.
        listener.append(socket.create_server(("127.0.0.1", port)))
        await client._waiting_to_retry.until_set(timeout=WAIT)
        await client.until_connected(timeout=WAIT)

    try:
        run_on_loop(ioloop, start_then_listen)
        assert any(m.startswith("Failed to connect") for m in handler.messages())
    finally:
        run_on_loop(ioloop, client.stop)
        for sock in listener:
            sock.close()


def test_state_flags_use_the_09_event_api_on_the_client_loop(adder, clients):
    client = DeviceClient(*adder.bind_address)
    assert not client._received_protocol_info.isSet()
    clients(client)
    assert client.wait_protocol(WAIT)
    assert client._received_protocol_info.isSet()
    assert client._running.isSet()
    for flag in (client._running, client._connected, client._disconnected,
                 client._received_protocol_info, client._stopped,
                 client._waiting_to_retry):
        assert flag._ioloop is client.ioloop
    # A waiter made from this (loop-less) thread belongs to the client's loop.
    waiter = client.until_connected()
    assert waiter.get_loop() is client.ioloop.asyncio_loop


def test_stream_is_the_connection_and_is_replaced_on_reconnect(adder, clients):
    client = DeviceClient(*adder.bind_address)
    reconnected = threading.Event()
    client.notify_connected = lambda connected: connected and reconnected.set()
    clients(client)
    assert client.wait_connected(WAIT)
    reconnected.clear()
    stream = client._stream
    peer = stream.socket.getpeername()
    client.ioloop.add_callback(stream.close)
    assert reconnected.wait(WAIT)
    assert client._stream is not stream
    assert client._stream.socket.getpeername() == peer


# -- KATCP version informs that contradict each other -----------------------------------


def test_contradicting_version_informs_end_the_client(client_log):
    logger, handler = client_log
    server = GreetingServer(V5_IDS + [b"#build-state old-style-1.0"])
    client = DeviceClient("127.0.0.1", server.port, logger=logger)
    client.auto_reconnect_delay = 0.01
    try:
        client.start(timeout=WAIT)
        assert server.next_event() == "connected"
        assert server.next_event() == "closed"
        assert client._stopped.wait(WAIT)  # the main coroutine ends: no reconnection
        assert client.auto_reconnect is False
        assert not client.is_connected()
        assert server.events.empty()
        errors = [r.getMessage() for r in handler.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and errors[0].startswith("Protocol Version Error")
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
        server.close()


def test_informs_contradicting_preset_flags_are_warned_about(client_log):
    logger, handler = client_log
    greeted = threading.Event()

    class Client(DeviceClient):
        def inform_greeted(self, msg):
            greeted.set()

    # Informs are handled in order: once #greeted is, the version informs have been.
    server = GreetingServer(V5_IDS + [b"#greeted"])
    client = Client("127.0.0.1", server.port, logger=logger)
    preset = ProtocolFlags(4, 0, "")
    client.preset_protocol_flags(preset)
    try:
        client.start(timeout=WAIT)
        assert server.next_event() == "connected"
        assert greeted.wait(WAIT)
        warnings = [r.getMessage() for r in handler.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and warnings[0].startswith("Protocol Version Warning")
        assert client.protocol_flags == preset
        assert client.is_connected() and client.auto_reconnect is True
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
        server.close()


# -- a client that failed to connect can be garbage collected ----------------------------


@pytest.mark.parametrize("auto_reconnect", [False, True])
def test_client_that_never_connected_is_collected(client_log, auto_reconnect):
    logger, handler = client_log
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    client = DeviceClient("127.0.0.1", port, logger=logger, auto_reconnect=auto_reconnect)
    client.auto_reconnect_delay = 0.01
    client.start(timeout=WAIT)
    if auto_reconnect:
        assert client._waiting_to_retry.wait(WAIT)
    else:
        assert client._stopped.wait(WAIT)
    client.stop(timeout=WAIT)
    client.join(timeout=WAIT)
    assert any(m.startswith("Failed to connect") for m in handler.messages())
    ref = weakref.ref(client)
    del client
    gc.collect()
    # The kept log records must not hold the client alive.
    assert ref() is None


# -- DeviceTestServer.until_messages -----------------------------------------------------


def test_until_messages_is_a_thread_safe_future_of_the_messages(clients):
    server = DeviceTestServer("127.0.0.1", 0)
    server.start(timeout=WAIT)
    try:
        client = DeviceClient(*server.bind_address)
        client.enable_thread_safety()
        clients(client)
        assert client.wait_connected(WAIT)
        waiting = server.until_messages(2)
        client.send_message(Message.inform("first"))
        client.send_message(Message.request("watchdog"))
        messages = waiting.result(timeout=WAIT)
        assert [bytes(m) for m in messages] == [b"#first", b"?watchdog"]
        assert [bytes(m) for m in server.until_messages(1).result(timeout=0)] == [
            b"#first", b"?watchdog"]
    finally:
        server.stop(timeout=WAIT)
        server.join(timeout=WAIT)
