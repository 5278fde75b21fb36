"""A server restarted after stop() answers again, whatever was sent while it was down."""

import asyncio
import concurrent.futures
import queue
import threading
from unittest import mock

import pytest

from katcp import Message

from test_reliability_server import fd_count
from test_server import (CONCURRENCY, TIMEOUT, ExampleServer, connect, start_server,
                         stop_server)


def test_restarted_server_answers_after_an_inform_sent_while_stopped():
    server = ExampleServer("127.0.0.1", 0)
    port = start_server(server)
    with connect(port) as client:
        assert client.request("?watchdog") == ([], "!watchdog ok")
    stop_server(server)
    # Queued for a loop that is gone (nobody can receive it); it must not block
    # what the restarted server sends.
    server.mass_inform(Message.inform("late", "news"))
    port = start_server(server)
    try:
        with connect(port) as client:
            assert client.request("?watchdog") == ([], "!watchdog ok")
            server.mass_inform(Message.inform("fresh", "news"))
            assert client.readline() == b"#fresh news"
    finally:
        stop_server(server)


def test_many_restarts_with_requests_in_between():
    server = ExampleServer("127.0.0.1", 0)
    for _ in range(10):
        port = start_server(server)
        with connect(port) as client:
            assert client.request("?watchdog") == ([], "!watchdog ok")
        stop_server(server)
        assert not server.running()


def test_a_server_stopped_twice_starts_again_with_its_handler_thread():
    # halt then the usual cleanup, say: the second stop must not end the next thread.
    server = ExampleServer("127.0.0.1", 0)
    start_server(server)
    stop_server(server)
    server.stop(timeout=None).result(TIMEOUT)
    port = start_server(server)
    try:
        with connect(port) as client:
            assert client.request("?watchdog") == ([], "!watchdog ok")
    finally:
        stop_server(server)


@pytest.mark.parametrize("handler_thread", [True, False])
def test_a_server_starts_again_once_its_stop_resolved_without_a_join(handler_thread):
    server = ExampleServer("127.0.0.1", 0)
    server.set_concurrency_options(thread_safe=True, handler_thread=handler_thread)
    try:
        for _ in range(5):
            assert server.start(timeout=TIMEOUT)
            with connect(server.bind_address[1]) as client:
                assert client.request("?watchdog") == ([], "!watchdog ok")
            server.stop(timeout=TIMEOUT).result(TIMEOUT)
    finally:
        server.stop(timeout=None).result(TIMEOUT)
        server.join(timeout=TIMEOUT)


def test_a_failed_start_leaves_nothing_running_and_can_be_retried():
    blocker = ExampleServer("127.0.0.1", 0)
    port = start_server(blocker)
    server = ExampleServer("127.0.0.1", port)
    threads_before = set(threading.enumerate())
    with pytest.raises(OSError):
        server.start(timeout=TIMEOUT)
    assert set(threading.enumerate()) == threads_before
    # A stop now has nothing to stop, and says so at once.
    assert server.stop(timeout=None).result(TIMEOUT) is None
    stop_server(blocker)
    assert start_server(server) == port
    try:
        with connect(port) as client:
            assert client.request("?watchdog") == ([], "!watchdog ok")
    finally:
        stop_server(server)


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_failed_starts_leave_no_descriptor_open(kind):
    # Each server whose start failed (its port taken) kept the loop made for the start
    # open for ever (an epoll and a self-pipe: three descriptors), found by a program
    # that retries with a new server until the port is free.
    blocker = ExampleServer("127.0.0.1", 0)
    port = start_server(blocker)
    try:
        before = fd_count()
        for _ in range(3):
            server = ExampleServer("127.0.0.1", port)
            server.set_concurrency_options(**CONCURRENCY[kind])
            with pytest.raises(OSError):
                server.start(timeout=TIMEOUT)
        assert fd_count() == before
    finally:
        stop_server(blocker)


def _handler_threads():
    return {thread for thread in threading.enumerate() if thread.name == "katcp-request-handler"}


def test_of_threads_starting_a_server_at_once_one_starts_it():
    server = ExampleServer("127.0.0.1", 0)
    handler_thread = server._handler_thread
    set_ioloop = handler_thread.set_ioloop
    inside, go_on = threading.Event(), threading.Event()

    def set_ioloop_held(ioloop):
        # The first start() waits here, well into its start, until the second has tried.
        if not inside.is_set():
            inside.set()
            go_on.wait(TIMEOUT)
        set_ioloop(ioloop)

    outcome = []

    def first_start():
        try:
            outcome.append(server.start(timeout=TIMEOUT))
        except Exception as exc:
            outcome.append(exc)

    handlers_before = _handler_threads()
    first = threading.Thread(target=first_start)
    try:
        with mock.patch.object(handler_thread, "set_ioloop", set_ioloop_held):
            first.start()
            assert inside.wait(TIMEOUT)
            with pytest.raises(RuntimeError, match="already starting"):
                server.start(timeout=TIMEOUT)
            go_on.set()
            first.join(TIMEOUT)
        assert outcome == [True]
        assert len(_handler_threads() - handlers_before) == 1
        with connect(server.bind_address[1]) as client:
            assert client.request("?watchdog") == ([], "!watchdog ok")
        with pytest.raises(RuntimeError, match="already started"):
            server.start(timeout=TIMEOUT)
    finally:
        go_on.set()
        first.join(TIMEOUT)
        stop_server(server)
    assert not (_handler_threads() - handlers_before)


class StoppingServer(ExampleServer):
    """Says when ?block is being handled; each client's goodbye waits for `goodbye`."""

    def __init__(self, host, port):
        super().__init__(host, port)
        self.blocking = threading.Event()
        self.disconnecting = threading.Event()
        self.goodbye = concurrent.futures.Future()
        self._server.DISCONNECT_TIMEOUT = TIMEOUT
        # The names of the messages the loop has handed to the handler thread, in order.
        self.queued = queue.Queue()
        hand_on = self.on_message

        def on_message(client_conn, msg):
            ready = hand_on(client_conn, msg)
            self.queued.put(msg.name)
            return ready

        self.on_message = on_message

    def request_block(self, req, msg):
        """Block the handling thread until the gate opens (saying so first)."""
        self.blocking.set()
        return super().request_block(req, msg)

    def on_client_disconnect(self, client_conn, msg, connection_valid):
        super().on_client_disconnect(client_conn, msg, connection_valid)
        self.disconnecting.set()
        return asyncio.wrap_future(self.goodbye)


def test_requests_read_while_a_threaded_server_stops_are_not_handled_after_a_restart():
    server = StoppingServer("127.0.0.1", 0)
    port = start_server(server)
    try:
        with connect(port) as client:
            stopped = server.stop()
            # The server says goodbye to the client, which is still read from: stop()
            # has already told the handler thread to stop.
            assert server.disconnecting.wait(TIMEOUT)
            client.send("?note")
            assert server.queued.get(timeout=TIMEOUT) == "note"
            server.goodbye.set_result(None)
            stopped.result(TIMEOUT)
            server.join(timeout=TIMEOUT)
            assert not [line for line in client.read_to_eof() if line.startswith(b"!note")]
        port = start_server(server)
        with connect(port) as fresh:
            assert fresh.request("?watchdog") == ([], "!watchdog ok")
        assert server.order == []
    finally:
        stop_server(server)


def test_a_stopping_threaded_server_ends_the_request_in_hand_and_drops_those_queued():
    server = StoppingServer("127.0.0.1", 0)
    server.goodbye.set_result(None)
    port = start_server(server)
    try:
        with connect(port) as client, connect(port) as other:
            client.send("?block")
            assert server.blocking.wait(TIMEOUT)
            other.send("?note")
            assert [server.queued.get(timeout=TIMEOUT) for _ in range(2)] == ["block", "note"]
            stopped = server.stop()
            server.gate.set()
            stopped.result(TIMEOUT)
            server.join(timeout=TIMEOUT)
        assert server.order == ["block-start", "block-end"]
    finally:
        stop_server(server)
