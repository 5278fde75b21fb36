"""The request path's crossings keep their rules while doing less per request.

A connection pauses reading only once more arrives while a message is being handled;
a client that ends its side meanwhile still gets the reply. The handler thread hands
a reply and the end of its message to the loop together (CallQueue.hold / release),
and the loop writes such a reply at once (WriteBatcher.send_now). Real sockets on
127.0.0.1 for the servers.
"""

import asyncio
import concurrent.futures
import dataclasses
import queue
import socket
import threading

import pytest
import tornado.ioloop

from katcp.core import AsyncReply, Message, ProtocolFlags, Sensor
from katcp.kattypes import Int, request, return_reply, send_reply
from katcp.loop.call_queue import CallQueue
from katcp.server import AsyncDeviceServer, DeviceServer, stream
from katcp.transport.framing import WriteBatcher

from log_helpers import recording_logger
from server_kinds import start_async, started
from server_line_client import LineClient

TIMEOUT = 10


class _GatedMixin:
    """``?gated`` waits for `gate` (set by the test) and replies; ``?quick`` replies at once."""

    VERSION_INFO = ("gated-api", 1, 0)
    BUILD_INFO = ("gated-build", 1, 0, "")
    PROTOCOL_INFO = ProtocolFlags(5, 0, set("MI"))

    def setup_sensors(self):
        self.gate = threading.Event()
        self.entered = threading.Event()

    def request_quick(self, req, msg):
        """Reply at once."""
        return req.make_reply("ok", "quick")


class _ThreadedGated(_GatedMixin, DeviceServer):
    def request_gated(self, req, msg):
        """Reply once the test opens the gate."""
        self.entered.set()
        assert self.gate.wait(TIMEOUT)
        return req.make_reply("ok", "gated")


class _AsyncGated(_GatedMixin, AsyncDeviceServer):
    async def request_gated(self, req, msg):
        """Reply once the test opens the gate."""
        self.entered.set()
        while not self.gate.is_set():
            await asyncio.sleep(0.001)
        return req.make_reply("ok", "gated")


@pytest.fixture(params=["threaded", "async"])
def gated(request):
    server = started(request.param, _ThreadedGated, _AsyncGated)
    yield server
    server.gate.set()
    server.stop(timeout=TIMEOUT).result(TIMEOUT)
    server.join(timeout=TIMEOUT)


def _connect(server):
    client = LineClient(server.bind_address[1])
    client.read_until(lambda line: line.startswith(b"#version-connect katcp-device"))
    return client


def test_a_client_that_ends_its_side_during_a_request_still_gets_the_reply(gated):
    with _connect(gated) as client:
        client.send("?gated")
        assert gated.entered.wait(TIMEOUT)
        client.sock.shutdown(socket.SHUT_WR)  # the server reads the end meanwhile
        gated.gate.set()
        # The reply, then the close (no #disconnect: the client left).
        assert client.read_to_eof() == [b"!gated ok gated"]


def test_a_client_that_ends_its_side_after_queued_requests_gets_every_reply(gated):
    with _connect(gated) as client:
        client.send_raw(b"?gated\n?quick\n?quick\n")
        assert gated.entered.wait(TIMEOUT)
        client.sock.shutdown(socket.SHUT_WR)
        gated.gate.set()
        assert client.read_to_eof() == [b"!gated ok gated", b"!quick ok quick",
                                         b"!quick ok quick"]


def test_a_client_that_ends_its_side_during_a_long_pipeline_gets_every_reply(gated,
                                                                           monkeypatch):
    # The pipeline after the request is handled in turns (each past the time budget):
    # the end, seen meanwhile, closes the connection only once all of it is handled.
    monkeypatch.setattr(stream, "_TURN_BUDGET", -1.0)
    count = 4 * stream._SLICE
    with _connect(gated) as client:
        client.send_raw(b"?gated\n" + b"?quick\n" * count)
        assert gated.entered.wait(TIMEOUT)
        client.sock.shutdown(socket.SHUT_WR)
        gated.gate.set()
        assert client.read_to_eof() == [b"!gated ok gated"] + [b"!quick ok quick"] * count


def test_requests_arriving_during_a_request_wait_for_it(gated):
    with _connect(gated) as client:
        client.send("?gated")
        assert gated.entered.wait(TIMEOUT)
        # Arrives while the first is handled (the server then stops reading): answered
        # only after the first, in order.
        client.send("?quick")
        gated.gate.set()
        assert client.readlines(2) == [b"!gated ok gated", b"!quick ok quick"]
        client.send("?quick")
        assert client.readline() == b"!quick ok quick"


# -- which method receives each message ----------------------------------------------


class _ReceivingMixin:
    """Records the informs and replies clients send it, and the requests it sees."""

    VERSION_INFO = ("receiving-api", 1, 0)
    BUILD_INFO = ("receiving-build", 1, 0, "")

    def setup_sensors(self):
        self.received = queue.Queue()

    def inform_note(self, connection, msg):
        """Record the inform."""
        self.received.put(("inform", msg.arguments))

    def reply_note(self, connection, msg):
        """Record the reply."""
        self.received.put(("reply", msg.arguments))


class _CountsRequests:
    def handle_request(self, connection, msg):
        self.received.put(("request", msg.name))
        return super().handle_request(connection, msg)


class _CountsMessages:
    def handle_message(self, client_conn, msg):
        self.received.put(("message", msg.name))
        return super().handle_message(client_conn, msg)


def _receiving_server(kind, *mixins, prepare=None):
    bases = mixins + (_ReceivingMixin,
                      DeviceServer if kind == "threaded" else AsyncDeviceServer)
    cls = type("Receiving", bases, {})
    return started(kind, cls, cls, prepare=prepare)


def _stopped(server):
    server.stop(timeout=TIMEOUT).result(TIMEOUT)
    server.join(timeout=TIMEOUT)


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_informs_and_replies_from_clients_reach_their_handlers(kind):
    # With neither handle_message nor handle_request overridden, handle_request takes
    # every message: the others must still reach inform_* and reply_*.
    server = _receiving_server(kind)
    try:
        with _connect(server) as client:
            client.send_raw(b"#note a\\_b\n!note ok 2\n?watchdog\n")
            assert client.readline() == b"!watchdog ok"
        assert server.received.get(timeout=TIMEOUT) == ("inform", [b"a b"])
        assert server.received.get(timeout=TIMEOUT) == ("reply", [b"ok", b"2"])
        assert server.received.empty()
    finally:
        _stopped(server)


@pytest.mark.parametrize("kind", ["threaded", "async"])
@pytest.mark.parametrize("special", [b"\x0b", b"\x0c", b"\x00", b"\x1b"])
@pytest.mark.parametrize("split", [False, True])
def test_a_byte_that_parse_searches_lines_for_is_found_after_chunks_without_one(kind, special,
                                                                             split):
    # A connection searches each chunk for these bytes (needs_byte_checks()) and parses
    # the lines of chunks without one unsearched: the first chunk that holds one, even in
    # an unended line that a later chunk ends, must have its lines searched (and so must
    # those of the chunks after it).
    server = _receiving_server(kind)
    try:
        with _connect(server) as client:
            client.send("?watchdog")
            assert client.readline() == b"!watchdog ok"
            for arg in (b"a", b"b"):
                data = b"#note " + arg + special + b"x y\n?watchdog\n"
                if split:
                    client.send_raw(data[:8])  # ends just after the byte
                    data = data[8:]
                client.send_raw(data)
                lines = client.read_until(lambda line: line == b"!watchdog ok")
                if special in b"\x0b\x0c":
                    # Not separators in KATCP (bytes.split() would take them for ones).
                    assert lines == [b"!watchdog ok"]
                    assert server.received.get(timeout=TIMEOUT) == (
                        "inform", [arg + special + b"x", b"y"])
                else:
                    assert len(lines) == 2 and lines[0].startswith(b"#log error ")
                    assert b"Unescaped\\_special\\_character" in lines[0]
        assert server.received.empty()
    finally:
        _stopped(server)


@pytest.mark.parametrize("kind", ["threaded", "async"])
@pytest.mark.parametrize("mixin, seen", [
    (_CountsRequests, [("request", "watchdog"), ("inform", [b"x"]), ("request", "watchdog")]),
    (_CountsMessages, [("message", "watchdog"), ("message", "note"), ("inform", [b"x"]),
                       ("message", "watchdog")]),
])
def test_an_overridden_handle_request_or_handle_message_sees_its_messages(kind, mixin, seen):
    server = _receiving_server(kind, mixin)
    try:
        with _connect(server) as client:
            client.send("?watchdog")
            assert client.readline() == b"!watchdog ok"
            client.send_raw(b"#note x\n?watchdog\n")
            assert client.readline() == b"!watchdog ok"
        assert [server.received.get(timeout=TIMEOUT) for _ in seen] == seen
        assert server.received.empty()
    finally:
        _stopped(server)


def _replace_handle_methods(server):
    """Replace handle_request, handle_inform and handle_reply on the instance (as
    ``mock.patch.object(server, ...)`` does), recording what each gets."""
    hand_on = server.handle_request

    def handle_request(connection, msg):
        server.received.put(("replaced request", msg.name))
        return hand_on(connection, msg)

    server.handle_request = handle_request
    _replace_handle_inform_and_reply(server)


def _replace_handle_inform_and_reply(server):
    server.handle_inform = lambda connection, msg: server.received.put(
        ("replaced inform", msg.name))
    server.handle_reply = lambda connection, msg: server.received.put(
        ("replaced reply", msg.name))


def _replace_handle_message(server):
    """Replace handle_message on the instance, then set the concurrency options again
    (as 0.9.3's set_concurrency_options(), which bound self.handle_message)."""
    hand_on = server.handle_message

    def handle_message(connection, msg):
        server.received.put(("replaced message", msg.name))
        return hand_on(connection, msg)

    server.handle_message = handle_message
    threaded = isinstance(server, DeviceServer) and not isinstance(server, AsyncDeviceServer)
    server.set_concurrency_options(thread_safe=threaded, handler_thread=threaded)


@pytest.mark.parametrize("kind", ["threaded", "async"])
@pytest.mark.parametrize("prepare, seen", [
    (_replace_handle_methods, [("replaced inform", "note"), ("replaced reply", "note"),
                               ("replaced request", "watchdog")]),
    (_replace_handle_message, [("replaced message", "note"), ("inform", [b"x"]),
                               ("replaced message", "note"), ("reply", [b"ok"]),
                               ("replaced message", "watchdog")]),
])
def test_handle_methods_replaced_on_the_instance_before_start_are_used(kind, prepare, seen):
    # As 0.9.3, which looked them up at each message.
    server = _receiving_server(kind, prepare=prepare)
    try:
        with _connect(server) as client:
            client.send_raw(b"#note x\n!note ok\n?watchdog\n")
            assert client.readline() == b"!watchdog ok"
        assert [server.received.get(timeout=TIMEOUT) for _ in seen] == seen
        assert server.received.empty()
    finally:
        _stopped(server)


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_handle_inform_and_handle_reply_replaced_on_a_running_server_are_used(kind):
    server = _receiving_server(kind)
    try:
        with _connect(server) as client:
            client.send_raw(b"#note x\n!note ok\n?watchdog\n")
            assert client.readline() == b"!watchdog ok"
            _replace_handle_inform_and_reply(server)
            client.send_raw(b"#note y\n!note ok\n?watchdog\n")
            assert client.readline() == b"!watchdog ok"
        seen = [server.received.get(timeout=TIMEOUT) for _ in range(4)]
        assert seen == [("inform", [b"x"]), ("reply", [b"ok"]), ("replaced inform", "note"),
                        ("replaced reply", "note")]
        assert server.received.empty()
    finally:
        _stopped(server)


# -- CallQueue.hold / release ------------------------------------------------------------


@pytest.fixture
def loop():
    """An asyncio loop run by this thread (turn it with turns())."""
    asyncio_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(asyncio_loop)
    yield asyncio_loop
    asyncio.set_event_loop(None)
    asyncio_loop.close()


def turns(loop, count=5):
    for _ in range(count):
        loop.run_until_complete(asyncio.sleep(0))


def in_thread(fn):
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_calls_held_by_a_thread_reach_the_loop_together_when_released(loop):
    queue = CallQueue.of(tornado.ioloop.IOLoop.current())
    seen = []
    go_on = threading.Event()
    released = threading.Event()

    def holder():
        queue.call(seen.append, "before")
        queue.hold()
        queue.hold()  # again: still one hold
        queue.call(seen.append, "held 1")
        queue.call(seen.append, "held 2")
        go_on.wait(TIMEOUT)
        queue.release()
        released.set()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        for _ in range(200):
            turns(loop, 1)
            if seen:
                break
        turns(loop)
        assert seen == ["before"]  # the held ones wait for release()
        in_thread(lambda: queue.call(seen.append, "other thread"))  # not held
        turns(loop)
        assert seen == ["before", "other thread"]
    finally:
        go_on.set()
        thread.join(TIMEOUT)
    assert released.is_set()
    turns(loop)
    assert seen == ["before", "other thread", "held 1", "held 2"]
    # Released: the thread's calls go straight through again.
    in_thread(lambda: (queue.call(seen.append, "after"), queue.release()))
    turns(loop)
    assert seen[-1] == "after"


def test_releasing_nothing_changes_nothing(loop):
    queue = CallQueue.of(tornado.ioloop.IOLoop.current())
    seen = []
    in_thread(lambda: (queue.release(), queue.hold(), queue.release(),
                       queue.call(seen.append, 1)))
    turns(loop)
    assert seen == [1]


def test_a_threaded_servers_replies_and_informs_keep_their_order():
    # The reply waits for the end of the message; what the handler sent before it does
    # not, and a subclass's inform after the reply follows it.
    class Talkative(DeviceServer):
        def setup_sensors(self):
            pass

        def request_talk(self, req, msg):
            """Inform, inform everyone, reply."""
            req.inform("first")
            self.mass_inform(Message.inform("everyone"))
            return req.make_reply("ok")

        def handle_message(self, client_conn, msg):
            done = super().handle_message(client_conn, msg)
            if msg.name == "talk":
                client_conn.inform(Message.inform("after"))
            return done

    server = Talkative("127.0.0.1", 0)
    server.start()
    assert server.wait_running(TIMEOUT)
    try:
        with _connect(server) as client:
            for _ in range(3):
                client.send("?talk")
                assert client.readlines(4) == [b"#talk first", b"#everyone", b"!talk ok",
                                               b"#after"]
    finally:
        server.stop(timeout=TIMEOUT).result(TIMEOUT)
        server.join(timeout=TIMEOUT)


def test_a_threaded_servers_connection_reads_on_in_the_loop_turn_its_reply_goes_out(
        monkeypatch):
    # The end of a message (with its reply) reaches the loop in one call; the connection
    # takes its next request in that same loop turn rather than in a turn of its own.
    class Quick(DeviceServer):
        def setup_sensors(self):
            pass

        def request_quick(self, req, msg):
            """Reply at once."""
            return req.make_reply("ok")

    server = Quick("127.0.0.1", 0)
    server.start()
    assert server.wait_running(TIMEOUT)
    turn = [0]
    ticking = [True]
    seen = []

    def tick():
        # Once per loop turn.
        turn[0] += 1
        if ticking[0]:
            server.ioloop.asyncio_loop.call_soon(tick)

    def send_now(conn, data):
        seen.append((data, turn[0]))
        own_send_now(conn, data)

    def on_message(client_conn, msg):
        seen.append((bytes(msg), turn[0]))
        return handler_on_message(client_conn, msg)

    handler_on_message = server.on_message
    server.on_message = on_message
    own_send_now = stream._Connection.send_now
    monkeypatch.setattr(stream._Connection, "send_now", send_now)
    server.ioloop.add_callback(tick)
    try:
        with _connect(server) as client:
            client.send_raw(b"?quick[1]\n?quick[2]\n")
            assert client.readlines(2) == [b"!quick[1] ok", b"!quick[2] ok"]
        assert [line for line, _ in seen] == [b"?quick[1]", b"!quick[1] ok\n", b"?quick[2]",
                                              b"!quick[2] ok\n"]
        assert seen[1][1] == seen[2][1]
    finally:
        server.ioloop.add_callback(ticking.clear)
        server.stop(timeout=TIMEOUT).result(TIMEOUT)
        server.join(timeout=TIMEOUT)


def test_a_worker_threads_sends_keep_their_order_while_the_loop_is_in_the_handler():
    # AsyncDeviceServer (connections not thread-safe): the worker's reply is made while
    # the loop still handles the request's input, and must go through the loop after
    # the inform the worker handed it first, not straight into the connection's batch.
    class Delegating(AsyncDeviceServer):
        def setup_sensors(self):
            pass

        def request_talk(self, req, msg):
            """Inform everyone and reply, from a worker thread the handler waits for."""
            def work():
                self.mass_inform(Message.inform("everyone"))
                req.reply("ok")

            worker = threading.Thread(target=work)
            worker.start()
            worker.join(TIMEOUT)
            raise AsyncReply()

    server = start_async(Delegating)
    try:
        with _connect(server) as client:
            for mid in range(1, 4):
                client.send("?talk[%d]" % mid)
                assert client.readlines(2) == [b"#everyone", b"!talk[%d] ok" % mid]
    finally:
        _stopped(server)


class _Sampled(DeviceServer):
    """A threaded server with one sensor."""

    def setup_sensors(self):
        """One integer sensor."""
        self.add_sensor(Sensor.integer("level", "A level.", "", [0, 100], default=7))


def test_a_threaded_servers_sensor_sampling_crosses_to_the_loop_once():
    # Strategies live on the loop, so ?sensor-sampling hops there from the handler
    # thread; the reply is sent where that work is done, not awaited by a task after a
    # second hop, and the loop never wakes itself through its self-pipe (a syscall and
    # a wake-up of epoll_wait each).
    server = _Sampled("127.0.0.1", 0)
    server.start()
    assert server.wait_running(TIMEOUT)
    loop = server.ioloop.asyncio_loop
    loop_thread = concurrent.futures.Future()
    server.ioloop.add_callback(lambda: loop_thread.set_result(threading.get_ident()))
    wakers = []
    real_call_soon_threadsafe = loop.call_soon_threadsafe

    def counting_call_soon_threadsafe(*args, **kwargs):
        wakers.append(threading.get_ident())
        return real_call_soon_threadsafe(*args, **kwargs)

    requests = [("event", [b"#sensor-status", b"!sensor-sampling ok level event"]),
                ("none", [b"!sensor-sampling ok level none"]),
                ("period 10", [b"#sensor-status", b"!sensor-sampling ok level period 10"]),
                ("", [b"!sensor-sampling ok level period 10"]),
                ("bogus", [b"!sensor-sampling fail Unknown\\_strategy\\_name:\\_bogus."]),
                ("none", [b"!sensor-sampling ok level none"])] * 5
    try:
        with _connect(server) as client:
            assert client.request("?watchdog") == ([], "!watchdog ok")
            loop.call_soon_threadsafe = counting_call_soon_threadsafe
            try:
                for strategy, expected in requests:
                    client.send(("?sensor-sampling level " + strategy).strip())
                    lines = client.read_until(lambda line: line.startswith(b"!"))
                    # The #sensor-status of a new strategy comes before its reply.
                    assert [line.split(b" ")[0] if line.startswith(b"#") else line
                            for line in lines] == expected
                # Reading resumes once the last request is handled: its end is counted.
                assert client.request("?watchdog") == ([], "!watchdog ok")
            finally:
                del loop.call_soon_threadsafe
    finally:
        _stopped(server)
    assert loop_thread.result(TIMEOUT) not in wakers
    # One wake-up of the loop a request, with the last ?watchdog's (it was two, and two
    # more that the loop gave itself).
    assert len(wakers) <= len(requests) + 1


def test_what_a_sensor_sampling_override_does_around_the_loops_work_keeps_its_order():
    # The loop sends the reply, yet after what the handler sent once it handed the work
    # over; and a handler may wait for that work on the handler thread.
    class Overriding(_Sampled):
        def request_sensor_sampling(self, req, msg):
            """Sampling, with an inform after it and a look at the outcome first."""
            if msg.arguments[1:] == [b"wait"]:
                first = super().request_sensor_sampling(req, Message.request(
                    "sensor-sampling", "level", "none")).result(TIMEOUT)
                req.inform("waited", *first.arguments)
                return super().request_sensor_sampling(req, Message.request(
                    "sensor-sampling", "level", "event"))
            done = super().request_sensor_sampling(req, msg)
            req.inform("after")
            return done

    server = Overriding("127.0.0.1", 0)
    server.start()
    assert server.wait_running(TIMEOUT)
    try:
        with _connect(server) as client:
            for _ in range(3):
                assert client.request("?sensor-sampling level none") == (
                    ["#sensor-sampling after"], "!sensor-sampling ok level none")
                informs, reply = client.request("?sensor-sampling level wait")
                assert [line.split(" ")[0] for line in informs] == [
                    "#sensor-sampling", "#sensor-status"]
                assert informs[0] == "#sensor-sampling waited ok level none"
                assert reply == "!sensor-sampling ok level event"
    finally:
        _stopped(server)


# -- WriteBatcher.send_now ---------------------------------------------------------------


def test_send_now_writes_at_once_with_what_waits_unless_held():
    writes, turn_ends = [], []
    batcher = WriteBatcher(writes.append, turn_ends.append, 1 << 20)
    batcher.send(b"inform\n")  # waits for the end of the turn
    assert writes == [] and len(turn_ends) == 1
    batcher.send_now(b"reply\n")  # goes now, after what waited
    assert writes == [b"inform\nreply\n"]
    batcher.hold()  # a chunk being handled: collected until release()
    batcher.send_now(b"held\n")
    assert writes == [b"inform\nreply\n"]
    batcher.send(b"more\n")
    batcher.release()
    assert writes[-1] == b"held\nmore\n"
    turn_ends[0]()  # the end of the turn finds nothing left
    assert len(writes) == 2


class _CancellableMixin:
    """``?job`` returns a future that ``?cancel-job`` (on another connection) cancels."""

    VERSION_INFO = ("cancel-api", 1, 0)
    BUILD_INFO = ("cancel-build", 1, 0, "")
    PROTOCOL_INFO = ProtocolFlags(5, 0, set("MI"))

    def setup_sensors(self):
        self.job = concurrent.futures.Future()
        self.job_started = threading.Event()

    def request_job(self, req, msg):
        """A job that runs until it is cancelled."""
        self.job_started.set()
        return self.job

    def request_cancel_job(self, req, msg):
        """Cancel the job."""
        self.job.cancel()
        return req.make_reply("ok")


class _ThreadedCancellable(_CancellableMixin, DeviceServer):
    pass


class _AsyncCancellable(_CancellableMixin, AsyncDeviceServer):
    pass


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_a_request_whose_handler_is_cancelled_is_answered(kind):
    server = started(kind, _ThreadedCancellable, _AsyncCancellable)
    try:
        with _connect(server) as client, _connect(server) as other:
            client.send("?job[1]")
            assert server.job_started.wait(TIMEOUT)
            other.send("?cancel-job[2]")
            assert other.read_until(lambda line: line.startswith(b"!cancel-job"))
            lines = client.read_until(lambda line: line.startswith(b"!job"))
            assert lines[-1] == b"!job[1] fail Request\\_cancelled."
    finally:
        server.stop(timeout=TIMEOUT).result(TIMEOUT)
        server.join(timeout=TIMEOUT)


class _CancelledWorkMixin:
    """Handlers whose own work (a loop they ran) was cancelled: they raise
    asyncio.CancelledError, which is no Exception."""

    VERSION_INFO = ("cancelled-work-api", 1, 0)
    BUILD_INFO = ("cancelled-work-build", 1, 0, "")
    PROTOCOL_INFO = ProtocolFlags(5, 0, set("MI"))

    def setup_sensors(self):
        self.informed = threading.Event()

    def request_cancelled_work(self, req, msg):
        """Raise asyncio.CancelledError."""
        raise asyncio.CancelledError()

    def inform_cancelled_work(self, conn, msg):
        """Raise asyncio.CancelledError, once told so."""
        self.informed.set()
        raise asyncio.CancelledError()

    def request_quick(self, req, msg):
        """Reply at once."""
        return req.make_reply("ok", "quick")


class _ThreadedCancelledWork(_CancelledWorkMixin, DeviceServer):
    pass


class _AsyncCancelledWork(_CancelledWorkMixin, AsyncDeviceServer):
    pass


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_a_handler_that_raises_cancelled_error_is_answered_and_the_server_goes_on(kind):
    server = started(kind, _ThreadedCancelledWork, _AsyncCancelledWork)
    try:
        with _connect(server) as client:
            with recording_logger("katcp.server") as (_, handler):
                client.send("#cancelled-work")
                assert server.informed.wait(TIMEOUT)
                client.send("?cancelled-work[1]")
                lines = client.read_until(lambda line: line.startswith(b"!cancelled-work"))
                assert lines[-1].startswith(b"!cancelled-work[1] fail Traceback")
                assert b"CancelledError" in lines[-1]
                client.send("?quick[2]")
                assert client.read_until(lambda line: line.startswith(b"!quick")) == [
                    b"!quick[2] ok quick"]
            assert [record.getMessage().split(":")[0] for record in handler.records] == [
                "Error handling INFORM 'cancelled-work'", "Request cancelled-work FAIL"]
    finally:
        server.stop(timeout=TIMEOUT).result(TIMEOUT)
        server.join(timeout=TIMEOUT)


@dataclasses.dataclass
class _HandlerObject:
    """A callable dataclass: unhashable (eq=True sets __hash__ to None)."""

    text: str

    def __call__(self, server, req, msg):
        """Answer with the object's text."""
        return req.make_reply("ok", self.text)


def test_an_unhashable_handler_object_is_answered_by_a_threaded_server():
    server = _ThreadedGated("127.0.0.1", 0)
    server._request_handlers = dict(server._request_handlers, hello=_HandlerObject("hi"))
    server.start()
    assert server.wait_running(TIMEOUT)
    try:
        with _connect(server) as client:
            client.send("?hello[1]")
            lines = client.read_until(lambda line: line.startswith(b"!hello"))
            assert lines[-1] == b"!hello[1] ok hi"
    finally:
        server.stop(timeout=TIMEOUT).result(TIMEOUT)
        server.join(timeout=TIMEOUT)


class _DoublingMixin:
    """``?double`` and kin: decorated handlers replying by every path a server has."""

    VERSION_INFO = ("doubling-api", 1, 0)
    BUILD_INFO = ("doubling-build", 1, 0, "")
    PROTOCOL_INFO = ProtocolFlags(5, 0, set("MI"))

    def setup_sensors(self):
        pass

    @request(Int())
    @return_reply(Int())
    def request_double(self, req, x):
        """Double x."""
        return ("ok", 2 * x)

    @request(Int())
    @return_reply(Int())
    async def request_double_later(self, req, x):
        """Double x in a coroutine."""
        await asyncio.sleep(0)
        return ("ok", 2 * x)

    @request(Int())
    @return_reply(Int())
    def request_double_future(self, req, x):
        """Double x in a future resolved by another thread."""
        future = concurrent.futures.Future()
        threading.Thread(target=future.set_result, args=(("ok", 2 * x),)).start()
        return future

    @request(Int())
    def request_double_async_reply(self, req, x):
        """Double x, replying later (AsyncReply) through send_reply."""
        self.ioloop.add_callback(self._send_double, req, x)
        raise AsyncReply()

    @send_reply(Int())
    def _send_double(self, req, x):
        return (req, "ok", 2 * x)


class _ThreadedDoubling(_DoublingMixin, DeviceServer):
    pass


class _AsyncDoubling(_DoublingMixin, AsyncDeviceServer):
    pass


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_decorated_replies_carry_the_request_id_by_every_reply_path(kind):
    # The decorators name replies after the handler or the request and give them no
    # id (as katcp 0.9.3's); the server gives each its request's id as it sends it.
    server = started(kind, _ThreadedDoubling, _AsyncDoubling)
    try:
        with _connect(server) as client:
            for mid, name in enumerate(["double", "double-later", "double-future",
                                        "double-async-reply"], 7):
                client.send("?%s[%d] 3" % (name, mid))
                lines = client.read_until(lambda line: line.startswith(b"!"))
                assert lines == [b"!%s[%d] ok 6" % (name.encode(), mid)]
                client.send("?%s 4" % name)
                assert client.read_until(lambda line: line.startswith(b"!")) == [
                    b"!%s ok 8" % name.encode()]
    finally:
        server.stop(timeout=TIMEOUT).result(TIMEOUT)
        server.join(timeout=TIMEOUT)
