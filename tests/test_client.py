"""Tests for katcp.client against a scripted fake KATCP server on 127.0.0.1."""

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import functools
import logging
import logging.handlers
import queue
import re
import select
import socket
import struct
import threading
from unittest import mock

import pytest
import tornado.concurrent
import tornado.gen
import tornado.ioloop
import tornado.testing
import tornado.util

from katcp.client import (
    AsyncClient,
    BlockingClient,
    CallbackClient,
    DeviceClient,
    address_to_string,
    make_threadsafe,
    request_check,
)
from katcp.client import lifecycle
from katcp.core import (KatcpClientDisconnected, KatcpClientError, KatcpVersionError, Message,
                        ProtocolFlags)
from katcp.ioloop_manager import IOLoopManager
from katcp.loop import crossing
from katcp.loop.backoff import ExponentialRandomBackoff
from katcp.testutils import call_in_ioloop
from accepting import Acceptor, closed
from log_helpers import recording_logger
from wait_helpers import (as_if_given_the_ident_of, outcome_in_thread, run_case_for_leftovers,
                          waits_left_by)

WAIT = 5.0

V5_GREETING = [
    b"#version-connect katcp-protocol 5.0-IM",
    b"#version-connect katcp-library fake-katcp-1.0",
    b"#version-connect katcp-device fake-device-1.0 fake-build-1.0",
]
V4_GREETING = [b"#version v4-api-0.4", b"#build-state v4-impl-1.2b3"]


def _split_request(line):
    """Return (name, mid_suffix, args) of a request line such as b'?echo[3] a b'."""
    head, _, rest = line[1:].partition(b" ")
    mid = b""
    if head.endswith(b"]"):
        head, mid = head[:-1].split(b"[")
        mid = b"[" + mid + b"]"
    return head, mid, rest


def scripted_answer(line):
    """The fake server's replies to one request line."""
    name, mid, rest = _split_request(line)
    if name == b"silent":
        return []
    if name == b"nomid-reply":
        return [b"!nomid-reply ok"]
    if name == b"fail":
        return [b"!fail" + mid + b" fail Because\\_reasons."]
    if name == b"informs":
        count = int(rest)
        return [b"#informs%s %d" % (mid, i) for i in range(count)] + [
            b"!informs%s ok %d" % (mid, count)]
    if name == b"help":
        return [b"#help" + mid + b" alpha First\\_request.",
                b"#help" + mid + b" beta Second\\_request.",
                b"!help" + mid + b" ok 2"]
    if name == b"stray":
        # An unrelated inform in the middle of a reply.
        return [b"#log info 0 root stray", b"!stray" + mid + b" ok"]
    if name == b"echo" or name == b"watchdog":
        return [b"!" + name + mid + b" ok" + (b" " + rest if rest else b"")]
    return [b"!" + name + mid + b" invalid Unknown\\_request."]


class FakeServer:
    """A line-based KATCP server on its own asyncio loop thread, recording what it hears.

    Parameters
    ----------
    greeting : list of bytes
        Lines sent to each new connection.
    answer : callable
        Maps a received request line to the list of lines to send back.

    """

    def __init__(self, greeting=V5_GREETING, answer=scripted_answer):
        self.greeting = list(greeting)
        self.answer = answer
        self.received = queue.Queue()
        self.connections = queue.Queue()
        self._writers = []
        self._acceptor = Acceptor(self._handle)
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    async def _handle(self, reader, writer):
        self._writers.append(writer)
        self.connections.put(writer)
        writer.write(b"".join(line + b"\n" for line in self.greeting))
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                line = line.rstrip(b"\r\n")
                self.received.put(line)
                out = self.answer(line)
                if out:
                    writer.write(b"".join(reply + b"\n" for reply in out))
        except ConnectionError:
            pass
        finally:
            writer.close()
            await closed(writer)

    async def _start(self):
        self.port = await self._acceptor.start(self.port)

    async def _stop(self):
        self._writers = []
        await self._acceptor.stop()

    def start(self):
        self._run(self._start())
        return self

    def stop(self):
        self._run(self._stop())

    def send(self, line):
        """Send a line to every open connection."""

        def write():
            for writer in self._writers:
                writer.write(line + b"\n")

        self.loop.call_soon_threadsafe(write)

    def drop_connections(self):
        async def drop():
            writers, self._writers = self._writers, []
            for writer in writers:
                writer.close()
            for writer in writers:
                await closed(writer)

        self._run(drop())

    def next_line(self):
        return self.received.get(timeout=WAIT)

    def close(self):
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()


@pytest.fixture
def server():
    fake = FakeServer().start()
    yield fake
    fake.close()


@pytest.fixture
def v4_server():
    fake = FakeServer(greeting=V4_GREETING).start()
    yield fake
    fake.close()


@pytest.fixture
def make_client():
    clients = []

    def make(cls, port, **kwargs):
        client = cls("127.0.0.1", port, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        if client.ioloop is not None and client._ioloop_manager.managed():
            client.stop(timeout=WAIT)
            client.join(timeout=WAIT)


@pytest.fixture
def blocking(server, make_client):
    # A default timeout no real reply comes near on a loaded machine: tests that want a
    # request to time out say so.
    client = make_client(BlockingClient, server.port, timeout=WAIT)
    client.start()
    assert client.wait_protocol(WAIT)
    return client


def _timed_out_after(reply):
    """The seconds a timeout fail reply says the request waited."""
    assert reply.arguments[0] == b"fail"
    match = re.match(rb"^Request \S+ timed out after (\d+\.\d+) seconds\.$",
                     reply.arguments[1])
    assert match, reply.arguments[1]
    return float(match.group(1))


# -- BlockingClient against a v5 server ----------------------------------------------


def test_v5_detection_and_versions(blocking):
    flags = blocking.protocol_flags
    assert str(flags) == "5.0-IM"
    assert flags.multi_client and flags.message_ids
    assert sorted(blocking.versions.items()) == [
        ("katcp-device", ("fake-device-1.0", "fake-build-1.0")),
        ("katcp-library", ("fake-katcp-1.0",)),
        ("katcp-protocol", ("5.0-IM",)),
    ]
    assert blocking.is_connected()
    assert blocking.running()
    assert blocking.bind_address == ("127.0.0.1", blocking.bind_address[1])
    assert blocking.convert_seconds(1.5) == 1.5


def test_v5_requests_match_reference_wire_and_replies(server, blocking):
    reply, informs = blocking.blocking_request(Message.request("help"))
    assert str(reply) == "!help[1] ok 2"
    assert [str(m) for m in informs] == ["#help[1] alpha First\\_request.",
                                         "#help[1] beta Second\\_request."]
    assert server.next_line() == b"?help[1]"

    reply, _ = blocking.blocking_request(
        Message.request("echo", "text", b"bytes", 1, -2, 2.5, 1e100, True, False))
    assert str(reply) == "!echo[2] ok text bytes 1 -2 2.5 1e+100 1 0"
    assert server.next_line() == b"?echo[2] text bytes 1 -2 2.5 1e+100 1 0"

    reply, _ = blocking.blocking_request(Message.request("echo", "x", mid=42))
    assert str(reply) == "!echo[42] ok x"
    reply, _ = blocking.blocking_request(Message.request("echo", "y"), use_mid=False)
    assert str(reply) == "!echo ok y"
    reply, _ = blocking.blocking_request(Message.request("echo", "z"), use_mid=True)
    assert str(reply) == "!echo[4] ok z"
    reply, _ = blocking.blocking_request(Message.request("fail"))
    assert str(reply) == "!fail[5] fail Because\\_reasons."
    assert not reply.reply_ok()
    reply, _ = blocking.blocking_request(Message.request("nosuch"))
    assert str(reply) == "!nosuch[6] invalid Unknown\\_request."
    assert [server.next_line() for _ in range(5)] == [
        b"?echo[42] x", b"?echo y", b"?echo[4] z", b"?fail[5]", b"?nosuch[6]"]


def test_request_timeout_gives_fail_reply_and_client_keeps_working(server, make_client):
    # Timers never fire early, but may fire late on a busy machine: only lower bounds
    # on the reported wait are asserted.
    client = make_client(BlockingClient, server.port, timeout=0.3)
    client.start()
    assert client.wait_protocol(WAIT)
    reply, informs = client.blocking_request(Message.request("silent"), timeout=0.05)
    assert reply.name == "silent" and reply.mid == b"1"
    assert reply.arguments[1].startswith(b"Request silent timed out after ")
    assert _timed_out_after(reply) >= 0.05 - 0.001
    assert informs == []
    # The per-client default timeout (0.3 s) applies when none is given.
    reply, _ = client.blocking_request(Message.request("silent"))
    assert _timed_out_after(reply) >= 0.3 - 0.001
    reply, _ = client.blocking_request(Message.request("watchdog"), timeout=WAIT)
    assert str(reply) == "!watchdog[3] ok"


def test_an_endless_request_timeout_is_none_and_a_nan_one_times_out_at_once(server,
                                                                           make_client):
    # A default timeout that would end the endless requests' waits, were they given it.
    client = make_client(BlockingClient, server.port, timeout=0.05)
    client.start()
    assert client.wait_protocol(WAIT)
    for endless in (float("inf"), 1e300):
        reply, _ = client.blocking_request(Message.request("echo", endless), timeout=endless)
        assert reply.reply_ok() and reply.arguments[1:] == [str(endless).encode()]
    endless = outcome_in_thread(client.blocking_request, Message.request("silent"),
                                float("inf"))
    assert [server.next_line() for _ in range(3)][-1] == b"?silent[3]"
    # Deadlines are served in order: the endless request would have been timed out first.
    reply, _ = client.blocking_request(Message.request("silent"), timeout=0.05)
    assert _timed_out_after(reply) >= 0.05 - 0.001
    nan = float("nan")
    # NaN: a timeout fail reply at once, from a thread and on the loop.
    reply, _ = client.blocking_request(Message.request("silent"), timeout=nan)
    assert _timed_out_after(reply) < WAIT
    reply, _ = crossing.call_on_loop(
        client.ioloop, None, lambda: client.future_request(Message.request("silent"),
                                                           timeout=nan)).result(WAIT)
    assert _timed_out_after(reply) < WAIT
    # The client's own waits, from a thread and on the loop, are endless too.
    disconnected = [outcome_in_thread(client.wait_disconnected, float("inf")),
                    crossing.call_on_loop(client.ioloop, None, client.until_disconnected,
                                          timeout=float("inf"))]
    client.stop(timeout=WAIT)
    assert [wait.result(WAIT) for wait in disconnected] == [True, True]
    reply, _ = endless.result(WAIT)
    assert str(reply) == "!silent[3] fail Client\\_stopped\\_before\\_reply\\_was\\_received"


def test_a_nan_default_request_timeout_times_out_at_once(server, make_client):
    client = make_client(AsyncClient, server.port, timeout=float("nan"))
    client.start()
    assert client.wait_protocol(WAIT)
    reply, _ = crossing.call_on_loop(
        client.ioloop, None, lambda: client.future_request(Message.request("silent"))
    ).result(WAIT)
    assert _timed_out_after(reply) < WAIT


@pytest.mark.parametrize("endless", [float("inf"), 1e300])
def test_start_stop_and_join_take_an_endless_timeout(server, make_client, endless):
    client = make_client(BlockingClient, server.port)
    client.start(timeout=endless)
    assert client.wait_running(endless) and client.wait_protocol(WAIT)
    client.stop(timeout=endless)
    client.join(timeout=endless)
    assert not client.is_connected() and not client.running()


def test_midless_reply_to_mid_request_is_not_its_answer_and_it_times_out(server, blocking):
    # As in the reference (wire transcript client-blocking-v5) the mid-less reply is not
    # the answer to ?nomid-reply[1]; unlike there it leaves the request's timeout armed
    # (the reference raised RuntimeError, its request waiting for ever).
    reply, _ = blocking.blocking_request(Message.request("nomid-reply"), timeout=0.1)
    assert reply.mid == b"1" and _timed_out_after(reply) >= 0.1 - 0.001
    assert blocking._requests.held()["requests"] == 0
    reply, _ = blocking.blocking_request(Message.request("nomid-reply"), use_mid=False)
    assert str(reply) == "!nomid-reply ok"


def test_answered_requests_leave_no_bookkeeping_behind(blocking):
    # Answering a reply with an id leaves its by-name entry and its timeout entry to
    # be dropped later; they must not pile up, nor confuse matching by name.
    for i in range(300):
        reply, _ = blocking.blocking_request(Message.request("echo", i))
        assert reply.arguments == [b"ok", b"%d" % i]
    reply, _ = blocking.blocking_request(Message.request("echo", "plain"), use_mid=False)
    assert str(reply) == "!echo ok plain"
    reply, _ = blocking.blocking_request(Message.request("silent"), timeout=0.05)
    assert b"timed out" in reply.arguments[1]
    reply, _ = blocking.blocking_request(Message.request("echo", "last"))
    assert reply.arguments == [b"ok", b"last"]
    held = blocking._requests.held()
    assert held["requests"] == 0
    assert held["names"] <= 2  # at most the last "echo" and the "silent" one
    assert held["deadlines"] <= 2


def test_inform_message_is_not_a_request(blocking):
    with pytest.raises(AssertionError):
        blocking.blocking_request(Message.inform("echo"))


def test_unrelated_informs_go_to_handle_inform(server, make_client):
    seen = queue.Queue()

    class Client(BlockingClient):
        def inform_log(self, msg):
            seen.put(msg)

    client = make_client(Client, server.port)
    client.start()
    assert client.wait_protocol(WAIT)
    reply, informs = client.blocking_request(Message.request("stray"))
    assert reply.reply_ok() and informs == []
    assert seen.get(timeout=WAIT).arguments[-1] == b"stray"


def test_many_threads_share_one_blocking_client(blocking):
    errors = []

    def worker(n):
        try:
            for i in range(30):
                reply, _ = blocking.blocking_request(Message.request("echo", n, i))
                assert reply.arguments == [b"ok", b"%d" % n, b"%d" % i], reply
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert errors == []


def test_blocking_client_future_request_from_thread_blocks_for_result(blocking):
    reply, informs = blocking.future_request(Message.request("informs", 2))
    assert str(reply) == "!informs[1] ok 2"
    assert len(informs) == 2


@pytest.mark.parametrize("timeout", [0.05, 0.0, -1.0, float("nan")])
def test_future_request_from_a_thread_returns_its_timeout_reply(blocking, timeout):
    # The thread's wait starts before the request's own timeout does, on the loop: it
    # must last long enough for the timeout reply, as that of every other flavour.
    reply, informs = blocking.future_request(Message.request("silent"), timeout=timeout)
    assert reply.name == "silent" and reply.mid == b"1"
    assert _timed_out_after(reply) < WAIT
    assert informs == []
    assert blocking._requests.held()["requests"] == 0


def test_request_check(blocking, server):
    reply, _ = request_check(blocking, ValueError, "echo", "a")
    assert reply.arguments == [b"ok", b"a"]
    with pytest.raises(ValueError, match="Unexpected failure reply"):
        request_check(blocking, ValueError, "fail")


def test_request_check_forwards_mid_and_timeout_and_names_device_request_and_reply(
        blocking, server):
    reply, informs = request_check(blocking, KeyError, "informs", 2, mid=41)
    assert str(reply) == "!informs[41] ok 2" and [str(m) for m in informs] == [
        "#informs[41] 0", "#informs[41] 1"]
    address = blocking.bind_address_string
    assert address == "127.0.0.1:%d" % server.port
    with pytest.raises(KeyError) as failed:
        request_check(blocking, KeyError, "fail", "x", mid=42)
    assert failed.value.args == (
        # The reply readable (docs/migrating.rst), the request as sent.
        'Unexpected failure reply "!fail fail Because reasons."\n with device at %s, '
        'request \n"?fail[42] x"' % address,)
    with pytest.raises(ValueError, match=r"!silent fail Request silent timed out after 0\.0"):
        request_check(blocking, ValueError, "silent", timeout=0.05)


def test_blocking_calls_on_the_clients_own_loop_thread_raise_naming_the_future_form(
        blocking):
    # 0.9.3's docs: "Do not call this from the ioloop, use until_*()"; it deadlocked or
    # timed out there, this says so at once (docs/migrating.rst). A state already
    # reached needs no wait, and is reported.
    def on_loop():
        outcome = {}
        calls = [("blocking_request", lambda: blocking.blocking_request(
                      Message.request("echo"), timeout=WAIT)),
                 ("stop", lambda: blocking.stop(timeout=WAIT))]
        calls += [("wait_" + state, functools.partial(getattr(blocking, "wait_" + state), WAIT))
                  for state in ("running", "connected", "disconnected", "protocol")]
        for name, call in calls:
            try:
                outcome[name] = call()
            except RuntimeError as exc:
                outcome[name] = str(exc)
        return outcome

    assert call_in_ioloop(blocking.ioloop, on_loop) == {
        "blocking_request": "blocking_request() cannot be called from the client's ioloop "
                            "thread; use future_request() instead",
        "stop": "Cannot stop a client with a managed ioloop from its own ioloop thread; "
                "call stop() from another thread",
        "wait_disconnected": "wait_disconnected() would block the client's own ioloop; use "
                             "until_disconnected() instead",
        "wait_running": True, "wait_connected": True, "wait_protocol": True}
    # Nothing was stopped or sent on the way.
    assert blocking.running() and blocking.is_connected()
    assert str(blocking.blocking_request(Message.request("echo", "on"))[0]) == "!echo[1] ok on"


def test_documented_limits_and_defaults_of_the_clients():
    import inspect

    for cls in (DeviceClient, AsyncClient, CallbackClient, BlockingClient):
        assert (cls.MAX_MSG_SIZE, cls.MAX_WRITE_BUFFER_SIZE, cls.MAX_LOOP_LATENCY) == (
            2097152, 4194304, 0.03)
        defaults = {name: parameter.default for name, parameter
                    in inspect.signature(cls).parameters.items()
                    if parameter.default is not parameter.empty}
        assert defaults.pop("timeout", 5.0) == 5.0
        assert isinstance(defaults.pop("logger"), logging.Logger)
        assert defaults == {"tb_limit": 20, "auto_reconnect": True}
    assert "timeout" not in inspect.signature(DeviceClient).parameters
    assert BlockingClient("127.0.0.1", 1)._request_timeout == 5.0


def test_address_to_string():
    assert address_to_string(("127.0.0.1", 7147)) == "127.0.0.1:7147"
    assert address_to_string(("::1", 7147)) == "::1:7147"  # as 0.9.3 wrote it


# -- v4 servers and protocol detection ------------------------------------------------


def test_v4_detection_and_requests_without_mids(v4_server, make_client):
    client = make_client(BlockingClient, v4_server.port)
    client.start()
    assert client.wait_protocol(WAIT)
    flags = client.protocol_flags
    assert (str(flags), flags.major, flags.minor) == ("4.0", 4, 0)
    assert not flags.message_ids
    assert client.convert_seconds(1.5) == 1500.0
    reply, informs = client.blocking_request(Message.request("help"))
    assert str(reply) == "!help ok 2" and len(informs) == 2
    reply, _ = client.blocking_request(Message.request("echo", "a", 1))
    assert str(reply) == "!echo ok a 1"
    reply, _ = client.blocking_request(Message.request("echo", "x", mid=7))
    assert str(reply) == "?echo[7] fail Message\\_IDs\\_not\\_supported\\_by\\_server"
    reply, _ = client.blocking_request(Message.request("echo", "z"), use_mid=True)
    assert str(reply) == "?echo[3] fail Message\\_IDs\\_not\\_supported\\_by\\_server"
    reply, informs = client.blocking_request(Message.request("informs", 2))
    assert str(reply) == "!informs ok 2"
    assert [str(m) for m in informs] == ["#informs 0", "#informs 1"]
    assert [v4_server.next_line() for _ in range(3)] == [b"?help", b"?echo a 1", b"?informs 2"]
    with pytest.raises(KatcpVersionError):
        client.request(Message.request("echo", mid=9))


def test_flags_too_new_for_the_announced_version_are_left_out(make_client):
    # A device announcing 5.0 with the 5.1 bulk-sampling flag: its greeting is still
    # taken (version 5.0, ids, multi-client), without the flag its version lacks.
    fake = FakeServer(greeting=[b"#version-connect katcp-protocol 5.0-BIM"]).start()
    try:
        client = make_client(BlockingClient, fake.port)
        client.start()
        assert client.wait_protocol(WAIT)
        assert client.protocol_flags == ProtocolFlags(5, 0, "IM")
        reply, _ = client.blocking_request(Message.request("echo", "z"))
        assert str(reply) == "!echo[1] ok z"
    finally:
        fake.close()


V5_NO_IDS_GREETING = [
    b"#version-connect katcp-protocol 5.0-M",
    b"#version-connect katcp-library fake-katcp-1.0",
    b"#version-connect katcp-device fake-device-1.0 fake-build-1.0",
]


def test_v5_server_without_message_ids(make_client):
    fake = FakeServer(greeting=V5_NO_IDS_GREETING).start()
    try:
        client = make_client(BlockingClient, fake.port)
        client.start()
        assert client.wait_protocol(WAIT)
        flags = client.protocol_flags
        assert (flags.major, flags.minor, flags.message_ids) == (5, 0, False)
        # v5 timestamps are in seconds, ids or not.
        assert client.convert_seconds(1.5) == 1.5
        reply, informs = client.blocking_request(Message.request("informs", 2))
        assert str(reply) == "!informs ok 2"
        assert [str(m) for m in informs] == ["#informs 0", "#informs 1"]
        reply, _ = client.blocking_request(Message.request("echo", "z"), use_mid=True)
        assert str(reply) == "?echo[2] fail Message\\_IDs\\_not\\_supported\\_by\\_server"
        assert fake.next_line() == b"?informs 2"
        with pytest.raises(KatcpVersionError):
            client.request(Message.request("echo", mid=9))
    finally:
        fake.close()


def _interleaving_answer(line):
    """Hold the first ?pair request; answer both when the second arrives, interleaved."""
    name, mid, _ = _split_request(line)
    if name != b"pair":
        return scripted_answer(line)
    _interleaving_answer.held.append(mid)
    if len(_interleaving_answer.held) < 2:
        return []
    first, second = _interleaving_answer.held
    _interleaving_answer.held = []
    return [b"#pair%s a" % first, b"#pair%s b" % second, b"#log info 0 root between",
            b"#pair%s c" % first, b"!pair%s ok 1" % second, b"#pair%s d" % first,
            b"!pair%s ok 3" % first]


def test_interleaved_informs_and_replies_of_concurrent_requests():
    _interleaving_answer.held = []
    fake = FakeServer(answer=_interleaving_answer).start()
    logs = []

    class Client(AsyncClient):
        def inform_log(self, msg):
            logs.append(msg.arguments[-1])

    async def main(ioloop):
        client = Client("127.0.0.1", fake.port)
        client.set_ioloop(ioloop)
        client.start()
        await client.until_protocol(timeout=WAIT)
        first = client.future_request(Message.request("pair"))
        second = client.future_request(Message.request("pair"))
        results = await asyncio.gather(first, second)
        client.stop()
        await client.until_stopped(timeout=WAIT)
        return [(str(reply), [str(m) for m in informs]) for reply, informs in results]

    try:
        assert run_on_user_loop(main) == [
            ("!pair[1] ok 3", ["#pair[1] a", "#pair[1] c", "#pair[1] d"]),
            ("!pair[2] ok 1", ["#pair[2] b"]),
        ]
        assert logs == [b"between"]
    finally:
        fake.close()


def test_convert_seconds_before_v4_truncates_to_ms(make_client):
    client = make_client(DeviceClient, 1)
    client.preset_protocol_flags(ProtocolFlags(3, 0, set()))
    assert client.convert_seconds(1.0005) == 1000


@pytest.mark.parametrize("greeting", [
    V5_GREETING + [b"#version v4-api-0.4"],
    V4_GREETING[:1] + V5_GREETING,
])
def test_mixed_version_informs_give_up_and_disconnect(greeting, make_client):
    # The connection may be gone before a wait_connected() could see it: the client
    # reports each change instead.
    connected = queue.Queue()

    class Client(DeviceClient):
        def notify_connected(self, is_connected):
            connected.put(is_connected)

    fake = FakeServer(greeting=greeting).start()
    try:
        client = make_client(Client, fake.port, auto_reconnect=False)
        client.start()
        assert connected.get(timeout=WAIT) is True
        assert connected.get(timeout=WAIT) is False
        assert client.wait_disconnected(WAIT)
        assert client.protocol_flags is None
        assert not client.wait_protocol(0.05)
    finally:
        fake.close()


def test_an_async_def_notify_connected_runs_and_its_error_is_logged(server, make_client):
    # Its coroutine was dropped (Python warned it was never awaited).
    connected = queue.Queue()

    class Client(DeviceClient):
        async def notify_connected(self, is_connected):
            await asyncio.sleep(0)
            connected.put(is_connected)
            if not is_connected:
                raise ValueError("async notify bug")

    client = make_client(Client, server.port, auto_reconnect=False)
    records = queue.Queue()
    handler = logging.handlers.QueueHandler(records)
    logging.getLogger("katcp.client").addHandler(handler)
    try:
        client.start()
        assert connected.get(timeout=WAIT) is True
        client.disconnect()
        assert connected.get(timeout=WAIT) is False
        record = records.get(timeout=WAIT)
    finally:
        logging.getLogger("katcp.client").removeHandler(handler)
    # A QueueHandler formats the message (and the traceback) into the record's msg.
    assert record.msg.splitlines()[0] == "notify_connected(False) failed"
    assert "async notify bug" in record.msg


def test_preset_protocol_flags_disables_detection(v4_server, make_client):
    client = make_client(BlockingClient, v4_server.port)
    client.preset_protocol_flags(ProtocolFlags(5, 0, "IM"))
    client.start()
    assert client.wait_connected(WAIT)
    reply, _ = client.blocking_request(Message.request("echo", "a"))
    assert str(reply) == "!echo[1] ok a"
    assert str(client.protocol_flags) == "5.0-IM"
    assert client.is_connected()


# -- connection life cycle ------------------------------------------------------------


def test_pending_requests_fail_when_connection_drops(server, make_client):
    client = make_client(CallbackClient, server.port, timeout=None)
    client.start()
    assert client.wait_protocol(WAIT)
    replies = queue.Queue()
    client.callback_request(Message.request("silent"), reply_cb=replies.put)
    assert server.next_line() == b"?silent[1]"
    server.drop_connections()
    reply = replies.get(timeout=WAIT)
    assert reply.mid == b"1" and reply.arguments[0] == b"fail"
    assert b"closed before reply" in reply.arguments[1]


def test_reconnects_after_server_restarts_on_same_port(server, make_client):
    connected = queue.Queue()

    class Client(BlockingClient):
        def notify_connected(self, is_connected):
            connected.put(is_connected)

    client = make_client(Client, server.port)
    client.start()
    assert connected.get(timeout=WAIT) is True
    assert client.wait_protocol(WAIT)
    server.stop()
    assert connected.get(timeout=WAIT) is False
    assert client.wait_disconnected(WAIT)
    server.start()
    assert connected.get(timeout=WAIT) is True
    assert client.wait_protocol(WAIT)
    reply, _ = client.blocking_request(Message.request("echo", "again"))
    assert reply.arguments == [b"ok", b"again"]


def test_disconnect_reconnects_with_auto_reconnect(server, make_client):
    client = make_client(BlockingClient, server.port)
    client.start()
    assert client.wait_protocol(WAIT)
    first = server.connections.get(timeout=WAIT)
    client.disconnect()
    second = server.connections.get(timeout=WAIT)
    assert second is not first
    assert client.wait_connected(WAIT)


def test_requests_right_after_disconnect_fail_as_not_connected_writing_nothing(
        server, make_client, caplog):
    client = make_client(CallbackClient, server.port, timeout=WAIT, auto_reconnect=False)
    client.start()
    assert client.wait_protocol(WAIT)
    replies = queue.Queue()
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        client.disconnect()
        # Queued behind the close: the loop takes them before the connection is lost.
        for i in range(20):
            client.callback_request(Message.request("echo", str(i)), reply_cb=replies.put)
        got = [replies.get(timeout=WAIT) for _ in range(20)]
    # Nothing was written to the closing transport (asyncio warns of such writes).
    assert not any("socket.send() raised" in message for message in caplog.messages)
    assert all(reply.arguments == [b"fail", b"Client not connected"] for reply in got)


def test_sending_on_the_loop_right_after_disconnect_raises_client_disconnected(
        server, make_client):
    client = make_client(CallbackClient, server.port, auto_reconnect=False)
    client.start()
    assert client.wait_protocol(WAIT)

    def disconnect_and_send():
        client.disconnect()
        try:
            client.send_message(Message.inform("note"))
        except KatcpClientDisconnected as exc:
            return exc

    raised = call_in_ioloop(client.ioloop, disconnect_and_send)
    assert str(raised) == "Not connected to device 127.0.0.1:%d" % server.port


def _wait_until_stopped(client):
    """Wait (from this thread, up to WAIT) until the client's main coroutine has ended."""
    stopped = concurrent.futures.Future()
    client.ioloop.add_callback(
        lambda: tornado.concurrent.chain_future(client.until_stopped(), stopped))
    stopped.result(WAIT)


def test_no_auto_reconnect_stops_running_after_disconnect(server, make_client):
    client = make_client(BlockingClient, server.port, auto_reconnect=False)
    client.start()
    server.connections.get(timeout=WAIT)
    server.drop_connections()
    assert client.wait_disconnected(WAIT)
    client.join(0)
    _wait_until_stopped(client)
    assert not client.running()


def test_auto_reconnect_cleared_while_waiting_to_retry_stops_the_client(
        server, make_client, monkeypatch):
    # Asked only before the wait: the client reconnected once more, and stayed.
    client = make_client(BlockingClient, server.port)
    client.auto_reconnect_delay = 0.01
    wait = lifecycle.Reconnection.wait

    async def wait_changing_its_mind(reconnection):
        client.auto_reconnect = False  # as the user does meanwhile
        await wait(reconnection)

    monkeypatch.setattr(lifecycle.Reconnection, "wait", wait_changing_its_mind)
    client.start()
    server.connections.get(timeout=WAIT)
    server.drop_connections()
    _wait_until_stopped(client)
    assert not client.running() and not client.is_connected()
    assert server.connections.empty()


@pytest.mark.parametrize("client_class", [DeviceClient, AsyncClient, CallbackClient,
                                          BlockingClient])
def test_stop_before_start_says_so_as_in_0_9_3(client_class):
    client = client_class("127.0.0.1", 7147)
    with pytest.raises(RuntimeError, match=r"^Call start\(\) before stop\(\)$"):
        client.stop()
    assert client.stopped() and not client.running()


def test_stopped_says_whether_the_main_coroutine_has_ended_or_never_started(
        server, make_client):
    client = make_client(BlockingClient, server.port, auto_reconnect=False)
    assert client.stopped()
    client.start()
    assert not client.stopped()
    assert client.wait_protocol(WAIT)
    server.connections.get(timeout=WAIT)
    server.drop_connections()
    _wait_until_stopped(client)
    assert client.stopped()  # on its own, without auto_reconnect


def test_request_while_not_connected_fails_at_once(make_client):
    with _closed_port() as port:
        client = make_client(BlockingClient, port, timeout=WAIT)
        client.start()
        assert client.wait_running(WAIT)
        reply, informs = client.blocking_request(Message.request("echo"))
        assert reply.arguments == [b"fail", b"Client not connected"] and informs == []


def test_sending_on_the_loop_while_not_connected_raises_client_disconnected(make_client,
                                                                           caplog):
    with _closed_port() as port:
        client = make_client(CallbackClient, port, timeout=WAIT)
        client.start()
        assert client.wait_running(WAIT)

        def send(method, msg):
            try:
                method(msg)
            except Exception as exc:
                return exc

        raised = [call_in_ioloop(client.ioloop, send, method, msg) for method, msg in [
            (client.send_message, Message.inform("note")),
            (client.send_request, Message.request("echo")),
            (client.request, Message.request("echo"))]]
        for exc in raised:
            assert isinstance(exc, KatcpClientDisconnected)
            assert str(exc) == "Not connected to device 127.0.0.1:%d" % port
        # From another thread (thread safe) the send is the loop's: logged there.
        with caplog.at_level(logging.WARNING, logger="katcp.client"):
            client.send_message(Message.inform("note"))
            call_in_ioloop(client.ioloop, lambda: None)  # the loop has had it
        assert "Cannot send message: client not connected" in caplog.text


def test_a_send_from_a_thread_that_reaches_a_closing_connection_is_logged_as_not_sent(
        server, make_client, caplog):
    client = make_client(CallbackClient, server.port, auto_reconnect=False)
    client.start()
    assert client.wait_protocol(WAIT)
    queued = threading.Event()

    def disconnect_once_the_send_is_queued():
        assert queued.wait(WAIT)
        client.disconnect()  # closing: the connection is lost a loop turn later

    with caplog.at_level(logging.WARNING, logger="katcp.client"):
        # Both handed to the loop from this thread, so the send runs after the close.
        closed = crossing.call_on_loop(client.ioloop, None,
                                       disconnect_once_the_send_is_queued)
        client.send_message(Message.inform("note"))
        queued.set()
        closed.result(WAIT)
        call_in_ioloop(client.ioloop, lambda: None)  # the loop has had the send
    assert ("Cannot send message: client not connected to 127.0.0.1:%d" % server.port
            in caplog.text)


def test_oversized_message_closes_connection(server, make_client, caplog):
    class Client(BlockingClient):
        MAX_MSG_SIZE = 1000

    client = make_client(Client, server.port, auto_reconnect=False)
    client.start()
    assert client.wait_protocol(WAIT)
    with caplog.at_level(logging.ERROR, logger="katcp.client"):
        server.send(b"#junk " + b"x" * 5000)
        assert client.wait_disconnected(WAIT)
    assert ("Message from server exceeds MAX_MSG_SIZE (1000 bytes); closing the connection "
            "to 127.0.0.1:%d" % server.port) in caplog.messages


@contextlib.contextmanager
def connected_to_a_server_that_does_not_read(make_client, client_class):
    """A started `client_class` client, synced with a server that greets, then never reads."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client = make_client(client_class, listener.getsockname()[1], auto_reconnect=False)
        client.start()
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"".join(line + b"\n" for line in V5_GREETING))
            assert client.wait_protocol(WAIT)
            yield client


def test_unsent_bytes_over_max_write_buffer_size_close_connection(make_client, caplog):
    class Client(BlockingClient):
        MAX_WRITE_BUFFER_SIZE = 64 * 1024

    # Everything sent piles up.
    with connected_to_a_server_that_does_not_read(make_client, Client) as client:
        chunk = Message.request("fill", b"x" * (256 * 1024))

        def fill():
            for _ in range(256):  # far more than socket buffers hold
                client.send_message(chunk)
        # In one loop callback: sends after the close come before the loop sees it.
        client.ioloop.add_callback(fill)
        assert client.wait_disconnected(WAIT)
    messages = [record.getMessage() for record in caplog.records]
    assert any("MAX_WRITE_BUFFER_SIZE" in message for message in messages)
    # What was sent after the close was dropped, not written to the closed transport.
    assert not any("socket.send() raised" in message for message in messages)


def test_disconnect_and_stop_do_not_wait_for_a_server_that_stopped_reading(make_client):
    class Client(BlockingClient):
        MAX_WRITE_BUFFER_SIZE = 64 * 1024 * 1024

    # The server is frozen, say: what the socket buffers cannot take waits in the client,
    # which must still be able to let go.
    with connected_to_a_server_that_does_not_read(make_client, Client) as client:
        chunk = Message.request("fill", b"x" * (256 * 1024))
        for _ in range(64):  # 16 MB: more than the socket buffers hold
            client.send_message(chunk)
        client.disconnect()
        assert client.wait_disconnected(WAIT)
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
        assert not client.running()
        assert client._ioloop_manager.thread_id() is None


def test_start_stop_join_managed_loop(server):
    client = BlockingClient("127.0.0.1", server.port)
    assert client.start(timeout=WAIT)
    assert client.wait_connected(WAIT)
    thread = client._ioloop_manager._ioloop_thread
    assert thread.daemon
    client.stop(timeout=WAIT)
    client.join(timeout=WAIT)
    assert not thread.is_alive()
    assert not client.running() and not client.is_connected()


def test_calls_from_other_threads_after_stop_are_refused_at_once(server, caplog):
    # Never left on a loop that has stopped and not yet closed, where nothing runs them.
    client = CallbackClient("127.0.0.1", server.port, timeout=WAIT)
    client.start()
    assert client.wait_protocol(WAIT)
    client.stop(timeout=WAIT)
    calls = [lambda: client.blocking_request(Message.request("echo")),
             lambda: client.future_request(Message.request("echo")),
             lambda: client.callback_request(Message.request("echo"), reply_cb=print)]
    for call in calls:
        with pytest.raises(RuntimeError, match="^Client stopped"):
            call()
    # send_message logs what it cannot send rather than raise, stopped as disconnected.
    with caplog.at_level(logging.WARNING, logger="katcp.client"):
        client.send_message(Message.inform("note"))
    assert "client to 127.0.0.1:%d is stopped" % server.port in caplog.text
    client.join(timeout=WAIT)
    # Started again, it takes calls from other threads again.
    client.start()
    assert client.wait_protocol(WAIT)
    reply, _ = client.blocking_request(Message.request("echo", "again"))
    assert str(reply) == "!echo[1] ok again"
    client.stop(timeout=WAIT)
    client.join(timeout=WAIT)


def test_requests_racing_stop_from_other_threads_all_end(server):
    client = BlockingClient("127.0.0.1", server.port, timeout=WAIT)
    client.start()
    assert client.wait_protocol(WAIT)
    started = threading.Barrier(5)
    outcomes = queue.Queue()

    def worker():
        started.wait(WAIT)
        while True:
            try:
                reply, _ = client.blocking_request(Message.request("echo"))
            except RuntimeError as exc:
                outcomes.put(str(exc))
                return
            if not reply.reply_ok():
                outcomes.put(str(reply))
                return

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
    for thread in workers:
        thread.start()
    started.wait(WAIT)
    client.stop(timeout=WAIT)
    for thread in workers:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in workers)
    endings = [outcomes.get_nowait() for _ in workers]
    assert all(ending.startswith("Client stopped") or "fail" in ending for ending in endings)
    client.join(timeout=WAIT)


def test_after_join_no_thread_is_taken_for_the_ended_loop_thread(server):
    client = BlockingClient("127.0.0.1", server.port)
    client.start()
    assert client.wait_connected(WAIT)
    client.stop(timeout=WAIT)
    client.join(timeout=WAIT)
    assert client.ioloop_thread_id is None
    # A new thread (which may be given the ended thread's id) waits as any other does.
    waited = concurrent.futures.Future()
    thread = threading.Thread(target=lambda: waited.set_result(client.wait_connected(0.01)))
    thread.start()
    thread.join(WAIT)
    assert waited.result(0) is False


def test_a_thread_given_the_ended_loop_threads_id_is_a_thread_like_any_other(
        server, monkeypatch):
    client = BlockingClient("127.0.0.1", server.port, timeout=WAIT)
    client.start()
    assert client.wait_protocol(WAIT)
    loop_thread = client._ioloop_manager._ioloop_thread
    client.stop(timeout=WAIT)
    loop_thread.join(WAIT)  # ended, and the client not joined
    assert not loop_thread.is_alive()
    # Thread ids are reused: this thread stands for a new one given the ended thread's id.
    as_if_given_the_ident_of(monkeypatch, loop_thread)
    assert crossing.on_thread(loop_thread.ident)
    client.stop(timeout=WAIT)  # nothing to stop
    assert client.wait_running(0.01) is False
    with pytest.raises(RuntimeError, match="Client stopped"):
        client.blocking_request(Message.request("echo", "x"))
    with pytest.raises(RuntimeError, match="Client stopped"):
        client.future_request(Message.request("echo", "x"))
    assert client.ioloop_thread_id is None
    client.join(timeout=WAIT)


def test_a_thread_given_the_ident_of_a_shared_loops_ended_thread_is_not_on_the_loop(
        server, monkeypatch):
    # A client on a loop it shares (an IOLoopManager's), stopped under it: a new thread
    # given the ended loop thread's ident was taken for the loop's. future_request()
    # gave it a loop future that nothing would resolve, and blocking_request() and
    # wait_protocol() said they were called on the client's ioloop thread.
    manager = IOLoopManager()
    ioloop = manager.get_ioloop()
    assert manager.start(timeout=WAIT)
    client = CallbackClient("127.0.0.1", server.port, timeout=WAIT)
    client.set_ioloop(ioloop)
    client.start()
    try:
        assert client.wait_protocol(WAIT)
        loop_thread = manager._ioloop_thread
        manager.stop().result(WAIT)
        manager.join(WAIT)
        as_if_given_the_ident_of(monkeypatch, loop_thread)
        # As from any other thread: the loop is closed.
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            client.future_request(Message.request("echo", "x"), timeout=WAIT)
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            client.blocking_request(Message.request("echo", "x"), timeout=WAIT)
        assert client.wait_protocol(0.01) is False
    finally:
        client.stop()
        client.join(WAIT)


def test_a_call_queued_on_the_loop_right_after_start_runs_as_on_the_loop(server):
    # As the AsyncClient docstring does: start(), then add_callback(callback_request, ...).
    for _ in range(3):
        client = AsyncClient("127.0.0.1", server.port, timeout=WAIT)
        client.start()
        replies = queue.Queue()
        client.ioloop.add_callback(client.callback_request, Message.request("echo", "x"),
                                   reply_cb=replies.put)
        reply = replies.get(timeout=WAIT)
        assert str(reply) in ("!echo ok x", "!echo[1] ok x", "!echo fail Client\\_not\\_connected")
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)


def test_of_threads_starting_a_client_at_once_one_starts_it(server):
    loops_before = {t for t in threading.enumerate() if t.name == "katcp-ioloop"}
    client = BlockingClient("127.0.0.1", server.port)
    barrier = threading.Barrier(6)
    outcomes = queue.Queue()

    def start():
        barrier.wait(WAIT)
        try:
            client.start()
            outcomes.put("started")
        except RuntimeError as exc:
            outcomes.put(str(exc))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    results = sorted(outcomes.get_nowait() for _ in threads)
    assert results == ["Device client already started."] * 5 + ["started"]
    client.stop(timeout=WAIT)
    client.join(timeout=WAIT)
    assert {t for t in threading.enumerate() if t.name == "katcp-ioloop"} <= loops_before


def test_the_loop_of_a_started_client_cannot_be_changed(server):
    async def main():
        client = DeviceClient("127.0.0.1", server.port)
        client.set_ioloop()
        client.start()
        with pytest.raises(RuntimeError, match="^Cannot set the ioloop once started$"):
            client.set_ioloop(tornado.ioloop.IOLoop.current())
        client.stop()
        await client.until_stopped(timeout=WAIT)

    asyncio.run(main())


def test_set_daemon_false(server):
    client = DeviceClient("127.0.0.1", server.port)
    client.setDaemon(False)
    client.start(timeout=WAIT)
    thread = client._ioloop_manager._ioloop_thread
    assert not thread.daemon
    client.stop(timeout=WAIT)
    client.join(timeout=WAIT)
    assert not thread.is_alive()


def test_blocking_calls_from_the_loop_thread_raise(blocking):
    outcome = concurrent.futures.Future()

    def on_loop():
        errors = []
        for call in (lambda: blocking.blocking_request(Message.request("echo")),
                     lambda: blocking.wait_disconnected(1)):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))
        outcome.set_result(errors)

    blocking.ioloop.add_callback(on_loop)
    errors = outcome.result(WAIT)
    assert len(errors) == 2
    assert "future_request" in errors[0] and "until_disconnected" in errors[1]


def test_stop_managed_client_fails_pending_requests(server):
    client = CallbackClient("127.0.0.1", server.port, timeout=None)
    client.start()
    assert client.wait_protocol(WAIT)
    replies = queue.Queue()
    client.callback_request(Message.request("silent"), reply_cb=replies.put)
    assert server.next_line() == b"?silent[1]"
    client.stop(timeout=WAIT)
    client.join(timeout=WAIT)
    reply = replies.get(timeout=WAIT)
    assert b"stopped before reply" in reply.arguments[1]


# -- callback requests ----------------------------------------------------------------


def test_callback_request_with_user_data(server, make_client):
    client = make_client(CallbackClient, server.port)
    client.start()
    assert client.wait_protocol(WAIT)
    got = queue.Queue()
    client.callback_request(
        Message.request("informs", 2),
        reply_cb=lambda msg, *data: got.put(("reply", str(msg), data)),
        inform_cb=lambda msg, *data: got.put(("inform", str(msg), data)),
        user_data=("u", 1),
    )
    assert [got.get(timeout=WAIT) for _ in range(3)] == [
        ("inform", "#informs[1] 0", ("u", 1)),
        ("inform", "#informs[1] 1", ("u", 1)),
        ("reply", "!informs[1] ok 2", ("u", 1)),
    ]
    # The timeout's fail reply gets them too; a list serves as well as a tuple.
    client.callback_request(
        Message.request("silent"), timeout=0.01, user_data=["v"],
        reply_cb=lambda msg, *data: got.put((msg.arguments[0], data)))
    assert got.get(timeout=WAIT) == (b"fail", ("v",))
    # Without user_data a callback is given the message alone.
    client.callback_request(Message.request("echo"), reply_cb=lambda msg: got.put(str(msg)))
    assert got.get(timeout=WAIT) == "!echo[3] ok"


@pytest.mark.parametrize("cls", [CallbackClient, BlockingClient])
def test_async_def_callbacks_of_a_callback_request_run(server, make_client, cls, caplog):
    # Their coroutines were dropped (Python warned they were never awaited).
    client = make_client(cls, server.port)
    client.start()
    assert client.wait_protocol(WAIT)
    got = queue.Queue()

    async def inform_cb(msg, *data):
        await asyncio.sleep(0)
        got.put(("inform", str(msg), data))

    async def reply_cb(msg, *data):
        await asyncio.sleep(0)
        got.put(("reply", str(msg), data))
        raise ValueError("async callback bug")

    with caplog.at_level(logging.ERROR, logger="katcp.client"):
        client.callback_request(Message.request("informs", 2), reply_cb=reply_cb,
                                inform_cb=inform_cb, user_data=("u",))
        assert [got.get(timeout=WAIT) for _ in range(3)] == [
            ("inform", "#informs[1] 0", ("u",)),
            ("inform", "#informs[1] 1", ("u",)),
            ("reply", "!informs[1] ok 2", ("u",)),
        ]
        client.callback_request(Message.request("informs", 1), inform_cb=inform_cb)
        assert got.get(timeout=WAIT) == ("inform", "#informs[2] 0", ())
        # The reply callback's failure is logged before the later inform's coroutine,
        # begun after it, is done.
    failures = [r for r in caplog.records if r.getMessage() == "Callback reply informs FAIL"]
    assert len(failures) == 1
    assert str(failures[0].exc_info[1]) == "async callback bug"


def test_an_async_generator_callback_of_a_callback_request_is_reported(server, make_client):
    # Its body never ran, and nothing said so.
    client = make_client(CallbackClient, server.port)
    client.start()
    assert client.wait_protocol(WAIT)

    async def reply_cb(msg):
        yield msg

    records = queue.Queue()
    handler = logging.handlers.QueueHandler(records)
    logging.getLogger("katcp.client").addHandler(handler)
    try:
        client.callback_request(Message.request("echo", "x"), reply_cb=reply_cb)
        record = records.get(timeout=WAIT)
    finally:
        logging.getLogger("katcp.client").removeHandler(handler)
    # A QueueHandler formats the message (and the traceback) into the record's msg.
    assert record.msg.splitlines()[0] == "Callback reply echo FAIL"
    assert "returned the async generator" in record.msg


_BAD_TIMEOUT_CALLS = {
    "callback_request": lambda c, m: c.callback_request(m, reply_cb=print, timeout="5"),
    "callback_request-positional": lambda c, m: c.callback_request(m, None, None, None, "5"),
    "future_request": lambda c, m: c.future_request(m, timeout="5"),
    "blocking_request": lambda c, m: c.blocking_request(m, timeout="5"),
    "callback_request-on-loop": lambda c, m: call_in_ioloop(
        c.ioloop, lambda: c.callback_request(m, timeout="5")),
    "future_request-on-loop": lambda c, m: call_in_ioloop(
        c.ioloop, lambda: c.future_request(m, timeout="5")),
}


@pytest.mark.parametrize("call", sorted(_BAD_TIMEOUT_CALLS))
def test_a_timeout_that_is_no_number_is_refused_at_the_call_and_nothing_sent(
        server, make_client, call):
    client = make_client(CallbackClient, server.port, timeout=WAIT)
    client.start()
    assert client.wait_protocol(WAIT)
    with pytest.raises(TypeError,
                       match=r"^timeout must be a number of seconds or None, not '5'\.$"):
        _BAD_TIMEOUT_CALLS[call](client, Message.request("echo", "refused"))
    reply, _ = client.blocking_request(Message.request("echo", "sent"), timeout=WAIT)
    assert reply.arguments == [b"ok", b"sent"]
    # The first request the server heard is the one after the refused call.
    assert server.next_line().endswith(b" sent")
    assert client._requests.held()["requests"] == 0


class _OwnTimeouts(CallbackClient):
    """Methods of a user's own, whose ``timeout`` is no request timeout of katcp's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handled = queue.Queue()

    @make_threadsafe
    def send_words(self, name, *words, timeout=5.0):
        self.handled.put((name, words, timeout))

    @make_threadsafe
    def wait_for(self, what, timeout):
        self.handled.put((what, timeout))


def test_a_users_threadsafe_methods_timeout_is_not_checked_as_a_request_timeout(
        server, make_client):
    # Only katcp's request methods have their timeout checked in the calling thread:
    # "b" is one of the words here, and "5s" the user's own kind of timeout.
    client = make_client(_OwnTimeouts, server.port, timeout=WAIT)
    client.start()
    assert client.wait_protocol(WAIT)
    client.send_words("set", "a", "b")
    client.wait_for("x", "5s")
    assert client.handled.get(timeout=WAIT) == ("set", ("a", "b"), 5.0)
    assert client.handled.get(timeout=WAIT) == ("x", "5s")


def test_callback_request_timeout_and_failing_callback(server, make_client, caplog):
    client = make_client(CallbackClient, server.port, timeout=WAIT)
    client.start()
    assert client.wait_protocol(WAIT)
    got = queue.Queue()

    def bad_cb(msg):
        got.put(msg)
        raise ValueError("callback bug")

    with caplog.at_level(logging.ERROR, logger="katcp.client"):
        client.callback_request(Message.request("silent"), reply_cb=bad_cb, timeout=0.05)
        reply = got.get(timeout=WAIT)
        assert b"timed out" in reply.arguments[1]
        reply, _ = client.blocking_request(Message.request("echo", "still ok"))
    assert reply.arguments == [b"ok", b"still ok"]
    assert "callback bug" in caplog.text


# -- DeviceClient dispatch ------------------------------------------------------------


class RecordingClient(DeviceClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = queue.Queue()

    def reply_echo(self, msg):
        self.seen.put(("reply_echo", str(msg)))

    def inform_log(self, msg):
        self.seen.put(("inform_log", str(msg)))

    def request_ping(self, msg):
        """Answer pings from the server."""
        return Message.reply_to_request(msg, "ok", "pong")

    def request_plain(self, msg):
        """Answer with a reply made without the request's id."""
        return Message.reply("plain", "ok")

    async def request_native(self, msg):
        """Answer once something awaited is done."""
        await asyncio.sleep(0)
        return Message.reply("native", "ok", "awaited")

    @tornado.gen.coroutine
    def request_tornado(self, msg):
        """Fail once something yielded is done."""
        yield tornado.gen.moment
        raise ValueError("no luck")

    def request_threaded(self, msg):
        """Answer from another thread, through a concurrent.futures.Future."""
        answer = concurrent.futures.Future()
        threading.Thread(target=lambda: answer.set_result(
            Message.reply("threaded", "ok", "from", "a", "thread"))).start()
        return answer

    def unhandled_reply(self, msg):
        self.seen.put(("unhandled_reply", str(msg)))

    def unhandled_inform(self, msg):
        self.seen.put(("unhandled_inform", msg.name))

    def unhandled_request(self, msg):
        self.seen.put(("unhandled_request", str(msg)))


def test_device_client_dispatches_to_handlers(server, make_client):
    client = make_client(RecordingClient, server.port)
    client.enable_thread_safety()  # requests come from this (test) thread
    client.start()
    assert client.wait_protocol(WAIT)
    assert client.request(Message.request("echo", "a")) == b"1"
    assert client.seen.get(timeout=WAIT) == ("reply_echo", "!echo[1] ok a")
    assert client.request(Message.request("nosuch"), use_mid=False) is None
    assert client.seen.get(timeout=WAIT) == ("unhandled_reply", "!nosuch invalid Unknown\\_request.")
    server.send(b"#log warn 0 x hello")
    assert client.seen.get(timeout=WAIT) == ("inform_log", "#log warn 0 x hello")
    server.send(b"#sensor-status 1 1 a nominal 1")
    assert client.seen.get(timeout=WAIT) == ("unhandled_inform", "sensor-status")
    server.send(b"?other[3]")
    assert client.seen.get(timeout=WAIT) == ("unhandled_request", "?other[3]")
    assert [server.next_line() for _ in range(2)] == [b"?echo[1] a", b"?nosuch"]
    server.send(b"?ping[4]")
    assert server.next_line() == b"!ping[4] ok pong"
    server.send(b"?plain[5]")
    assert server.next_line() == b"!plain[5] ok"
    server.send(b"?native[6]")
    assert server.next_line() == b"!native[6] ok awaited"
    server.send(b"?tornado[7]")
    reply = server.next_line()
    assert reply.startswith(b"!tornado[7] fail ") and b"ValueError:\\_no\\_luck" in reply
    server.send(b"?threaded[8]")  # its future was no reply: none was sent
    assert server.next_line() == b"!threaded[8] ok from a thread"
    client.send_message(Message.inform("hello", "world"))
    assert server.next_line() == b"#hello world"


class InformFailingClient(RecordingClient):
    def inform_boom(self, msg):
        raise ValueError("inform handler bug")

    async def inform_later(self, msg):
        raise ValueError("coroutine handler bug")

    async def inform_stream(self, msg):
        yield msg  # an async generator: a mistake, reported (its body never runs)


def test_an_async_generator_request_handler_fails_its_request(server, make_client):
    # Its body never ran and the request was never answered.
    class Client(DeviceClient):
        async def request_stream(self, msg):
            """An async generator: a mistake, reported."""
            yield msg.make_reply("ok")

    client = make_client(Client, server.port)
    client.start()
    assert client.wait_protocol(WAIT)
    server.send(b"?stream[9]")
    reply = server.next_line()
    assert reply.startswith(b"!stream[9] fail ") and b"returned\\_the\\_async\\_generator" in reply


def test_log_records_of_bad_lines_and_failing_handlers_name_the_server(server, make_client):
    # Clients share the katcp.client logger (a container's all share its own): the
    # records must say which server, and which line did not parse.
    client = make_client(InformFailingClient, server.port)
    client.start()
    assert client.wait_protocol(WAIT)
    address = "127.0.0.1:%d" % server.port
    records = queue.Queue()
    handler = logging.handlers.QueueHandler(records)
    logging.getLogger("katcp.client").addHandler(handler)
    try:
        server.send(b"garbage from the device")
        server.send(b"#boom")
        server.send(b"#stream")
        server.send(b"#later")
        got = [records.get(timeout=WAIT) for _ in range(4)]
    finally:
        logging.getLogger("katcp.client").removeHandler(handler)
    # A QueueHandler formats the message (and the traceback) into the record's msg.
    assert [r.msg.splitlines()[0] for r in got] == [
        "Bad message from server %s: b'garbage from the device': Bad type character 'g'."
        % address,
        "Inform boom FAIL (server %s): Traceback (most recent call last):" % address,
        "Message handler failed (server %s)" % address,
        "Message handler failed (server %s)" % address]
    assert "inform handler bug" in got[1].msg and "coroutine handler bug" in got[3].msg
    assert "returned the async generator" in got[2].msg


class _SeesUnhandledInforms:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unhandled = queue.Queue()

    def unhandled_inform(self, msg):
        self.unhandled.put(str(msg))


@pytest.mark.parametrize("base", [DeviceClient, CallbackClient])
def test_handle_message_replaced_on_a_connected_client_is_used_at_once(
        server, make_client, base):
    # As 0.9.3, which looked it up at each message (mock.patch.object(client, ...)).
    client = make_client(type("Seeing", (_SeesUnhandledInforms, base), {}), server.port)
    client.start()
    assert client.wait_protocol(WAIT)
    got = queue.Queue()
    with mock.patch.object(client, "handle_message", side_effect=got.put):
        server.send(b"#hello 1")
        assert str(got.get(timeout=WAIT)) == "#hello 1"
    # Restored: dispatched as before.
    server.send(b"#hello 2")
    assert client.unhandled.get(timeout=WAIT) == "#hello 2"
    assert got.empty() and client.unhandled.empty()


class GoesOnClient(DeviceClient):
    """Overrides handle_inform / handle_reply, calling super() and then recording."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.after = queue.Queue()

    def handle_inform(self, msg):
        super().handle_inform(msg)
        self.after.put(str(msg))

    def handle_reply(self, msg):
        super().handle_reply(msg)
        self.after.put(str(msg))

    def inform_boom(self, msg):
        self._deeper(msg)

    def reply_boom(self, msg):
        self._deeper(msg)

    def request_ask(self, msg):
        """Fail two calls down."""
        self._deeper(msg)

    def _deeper(self, msg):
        raise ValueError("%s handler bug" % Message.TYPE_NAMES[msg.mtype].lower())

    def unhandled_inform(self, msg):
        raise ValueError("fallback bug")


def test_a_failing_handler_is_logged_and_an_override_calling_it_goes_on(
        server, make_client, caplog):
    # As katcp 0.9.3: handle_inform and handle_reply catch and log ("Inform name FAIL"),
    # the fallback for messages without a handler too; a failing request handler is
    # logged as well, and still answered with fail. Tracebacks up to tb_limit frames.
    client = make_client(GoesOnClient, server.port, tb_limit=2)
    client.start()
    assert client.wait_protocol(WAIT)
    address = "127.0.0.1:%d" % server.port
    with caplog.at_level(logging.ERROR, logger="katcp.client"):
        server.send(b"#boom 1")
        server.send(b"!boom ok")
        server.send(b"#nohandler")
        after = [client.after.get(timeout=WAIT) for _ in range(3 + len(V5_GREETING))]
        assert after[-3:] == ["#boom 1", "!boom ok", "#nohandler"]
        server.send(b"?ask[3]")
        reply = server.next_line()
    assert reply.startswith(b"!ask[3] fail Traceback") and rb"request\_handler\_bug" in reply
    # (The fake server answers the client's reply too: "!ask[3] invalid", not an error.)
    records = [(r.levelname, r.getMessage().splitlines()) for r in caplog.records
               if r.levelno >= logging.ERROR]
    assert [(level, lines[0], lines[-1]) for level, lines in records] == [
        ("ERROR", "%s boom FAIL (server %s): Traceback (most recent call last):"
         % (kind, address), "ValueError: %s handler bug" % kind.lower())
        for kind in ("Inform", "Reply")] + [
        ("ERROR", "Inform nohandler FAIL (server %s): Traceback (most recent call last):"
         % address, "ValueError: fallback bug"),
        ("ERROR", "Request ask FAIL (server %s): Traceback (most recent call last):"
         % address, "ValueError: request handler bug")]
    # tb_limit=2: the dispatch and the handler, not the frame that raised. (Names are
    # matched as parts of the frames' names, which a mutation tool's trampolines extend.)
    frames = [re.findall(r", in (\S+)", "\n".join(lines)) for _, lines in records]
    expected = [["handle_inform", "inform_boom"], ["handle_reply", "reply_boom"],
                ["handle_inform", "unhandled_inform"], ["handle_request", "request_ask"]]
    assert [len(names) for names in frames] == [len(names) for names in expected], frames
    assert all(part in name for names, parts in zip(frames, expected)
               for name, part in zip(names, parts)), frames


class FailingClient(DeviceClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending = queue.Queue()

    def request_deep(self, msg):
        """Fail two calls down."""
        return self._deeper(msg)

    def _deeper(self, msg):
        raise ValueError("too deep")

    def request_later(self, msg):
        """Answer when the test resolves the future handed to it in `pending`."""
        later = tornado.concurrent.Future()
        self.pending.put(later)
        return later


def test_a_failing_request_handler_is_answered_with_its_traceback_up_to_tb_limit(
        server, make_client):
    client = make_client(FailingClient, server.port, tb_limit=2)
    client.start()
    assert client.wait_protocol(WAIT)
    server.send(b"?deep[2]")
    reply = server.next_line()
    # The frames of the dispatch and of the handler; not the third, the one that raised.
    assert reply.startswith(b"!deep[2] fail Traceback")
    # The frames' names (up to the escape that ends each line), matched as parts, which a
    # mutation tool's trampolines extend.
    frames = re.findall(rb",\\_in\\_([^\\]+)", reply)
    assert len(frames) == 2 and b"handle_request" in frames[0] and b"request_deep" in frames[1]
    assert b"ValueError:\\_too\\_deep" in reply


class FailingFallbackClient(DeviceClient):
    def unhandled_request(self, msg):
        raise ValueError("fallback bug")


def test_a_failing_unhandled_request_is_answered_with_fail_and_logged(
        server, make_client, caplog):
    # As any request handler that raises: every request gets a reply (spec 5.1 section
    # 2.2), and the device's operator is told too.
    client = make_client(FailingFallbackClient, server.port)
    client.start()
    assert client.wait_protocol(WAIT)
    with caplog.at_level(logging.ERROR, logger="katcp.client"):
        server.send(b"?frobnicate[7]")
        reply = server.next_line()
    assert reply.startswith(b"!frobnicate[7] fail Traceback")
    assert b"ValueError:\\_fallback\\_bug" in reply
    assert [r.getMessage().splitlines()[0] for r in caplog.records
            if r.levelno >= logging.ERROR] == [
        "Request frobnicate FAIL (server 127.0.0.1:%d): Traceback (most recent call last):"
        % server.port]


def test_a_reply_ready_after_the_server_went_is_logged_as_not_sent(
        server, make_client, caplog):
    client = make_client(FailingClient, server.port, auto_reconnect=False)
    client.start()
    assert client.wait_protocol(WAIT)
    server.send(b"?later[3]")
    later = client.pending.get(timeout=WAIT)
    server.drop_connections()
    assert client.wait_disconnected(WAIT)
    with caplog.at_level(logging.WARNING):
        call_in_ioloop(client.ioloop, later.set_result, Message.reply("later", "ok"))
        call_in_ioloop(client.ioloop, lambda: None)  # callbacks of the result have run
    assert "Cannot reply to later: client not connected to 127.0.0.1:%d" % server.port \
        in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_request_handlers_future_cancelled_is_answered_with_fail(
        server, make_client, caplog):
    client = make_client(FailingClient, server.port)
    client.start()
    assert client.wait_protocol(WAIT)
    server.send(b"?later[3]")
    client.ioloop.add_callback(client.pending.get(timeout=WAIT).cancel)
    assert server.next_line() == b"!later[3] fail Request\\_cancelled."
    server.send(b"?later[4]")
    client.ioloop.add_callback(client.pending.get(timeout=WAIT).set_result,
                               Message.reply("later", "ok"))
    # The second is answered as usual, and nothing is logged of the first.
    assert server.next_line() == b"!later[4] ok"
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]

# -- unmanaged (user) loops -----------------------------------------------------------


def run_on_user_loop(coro_fn):
    """Run `coro_fn(ioloop)` on a fresh IOLoop in a new thread; return its result."""
    outcome = concurrent.futures.Future()

    def target():
        ioloop = tornado.ioloop.IOLoop(make_current=False)

        async def main():
            try:
                outcome.set_result(await coro_fn(ioloop))
            except BaseException as exc:
                outcome.set_exception(exc)
            finally:
                ioloop.stop()

        ioloop.add_callback(main)
        ioloop.start()
        ioloop.close(all_fds=True)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        return outcome.result(WAIT * 2)
    finally:
        thread.join(WAIT)


def test_polled_waits_leave_nothing_behind(server):
    # A watchdog asking "disconnected yet?" with a timeout while the link stays up.
    async def main(ioloop):
        client = AsyncClient("127.0.0.1", server.port)
        client.set_ioloop(ioloop)
        client.start()
        await client.until_protocol(timeout=WAIT)

        async def poll():
            for flag_wait in (client.until_disconnected, client.until_stopped):
                with pytest.raises(tornado.gen.TimeoutError):
                    await flag_wait(timeout=0.001)
            await asyncio.sleep(0)  # what the timeouts leave to do runs a turn later

        left = await waits_left_by(poll, 30)
        client.stop()
        await client.until_stopped(timeout=WAIT)
        return left

    assert run_on_user_loop(main) <= 0


def test_a_client_left_running_in_a_tornado_test_case_closes_its_connection(server):
    # Its teardown cancels the loop's tasks and closes the loop: the client's connection
    # must not be left open (a ResourceWarning in a test suite that passes).
    class LeftRunning(tornado.testing.AsyncTestCase):
        @tornado.testing.gen_test(timeout=WAIT)
        def test_connect(self):
            client = AsyncClient("127.0.0.1", server.port)
            client.set_ioloop(self.io_loop)
            client.start()
            yield client.until_protocol(timeout=WAIT)

    result, resource_warnings = run_case_for_leftovers(LeftRunning)
    assert result.wasSuccessful()
    assert resource_warnings == []
    assert server.connections.get(timeout=WAIT) is not None


def test_async_client_on_user_loop_with_native_coroutines(server):
    async def main(ioloop):
        client = AsyncClient("127.0.0.1", server.port, timeout=None)
        client.set_ioloop(ioloop)
        client.start()
        await client.until_running(timeout=WAIT)
        await client.until_connected(timeout=WAIT)
        await client.until_protocol(timeout=WAIT)
        results = await asyncio.gather(*[
            client.future_request(Message.request("echo", i)) for i in range(20)])
        reply, informs = await client.future_request(Message.request("informs", 1))
        client.stop()
        client.join()
        await client.until_stopped(timeout=WAIT)
        return [r.arguments[1] for r, _ in results], str(reply), len(informs), client

    echoes, reply, n_informs, client = run_on_user_loop(main)
    assert echoes == [b"%d" % i for i in range(20)]
    assert reply == "!informs[21] ok 1" and n_informs == 1
    assert not client.running()


def test_async_client_on_user_loop_with_tornado_coroutines(server):
    @tornado.gen.coroutine
    def main(ioloop):
        client = AsyncClient("127.0.0.1", server.port)
        client.set_ioloop(ioloop)
        client.start()
        yield client.until_protocol(timeout=WAIT)
        reply, _ = yield client.future_request(Message.request("echo", "t"), use_mid=False)
        timed_out, _ = yield client.future_request(Message.request("silent"), timeout=0.01)
        client.stop()
        yield client.until_stopped(timeout=WAIT)
        return str(reply), timed_out.arguments[0]

    assert run_on_user_loop(main) == ("!echo ok t", b"fail")


def test_until_stopped_resolves_when_never_started():
    async def main(ioloop):
        client = DeviceClient("127.0.0.1", 1)
        client.set_ioloop(ioloop)
        await client.until_stopped(timeout=WAIT)
        return client.running()

    assert run_on_user_loop(main) is False


# -- the tutorial examples (Python 3 print) -------------------------------------------


def test_tutorial_blocking_client(server, capsys):
    from katcp import BlockingClient, Message

    client = BlockingClient("127.0.0.1", server.port)
    client.start()
    client.wait_protocol()  # Optional
    reply, informs = client.blocking_request(Message.request("help"))
    print(reply)
    for msg in informs:
        print(msg)
    client.stop()
    client.join()
    assert capsys.readouterr().out.splitlines() == [
        "!help[1] ok 2", "#help[1] alpha First\\_request.", "#help[1] beta Second\\_request."]


def test_tutorial_callback_client(server, capsys):
    from katcp import CallbackClient, Message

    done = threading.Event()

    def reply_cb(msg):
        print("Reply:", msg)
        done.set()

    def inform_cb(msg):
        print("Inform:", msg)

    client = CallbackClient("127.0.0.1", server.port)
    client.start()
    client.wait_protocol(WAIT)
    client.callback_request(Message.request("help"), reply_cb=reply_cb, inform_cb=inform_cb)
    assert done.wait(WAIT)
    client.stop()
    client.join()
    assert capsys.readouterr().out.splitlines() == [
        "Inform: #help[1] alpha First\\_request.",
        "Inform: #help[1] beta Second\\_request.",
        "Reply: !help[1] ok 2",
    ]


def test_tutorial_own_client(server, capsys):
    from katcp import DeviceClient, Message

    done = threading.Event()

    class MyClient(DeviceClient):
        def reply_help(self, msg):
            """Print out help replies."""
            print(msg.name, msg.arguments)

        def inform_help(self, msg):
            """Print out help inform messages."""
            meth, desc = msg.arguments[:2]
            print("---------", meth, "---------")
            print()
            print(desc)
            print("----------------------------")

        def unhandled_reply(self, msg):
            """Print out unhandled replies."""
            print("Unhandled reply", msg.name)
            done.set()

        def unhandled_inform(self, msg):
            """Print out unhandled informs."""
            print("Unhandled inform", msg.name)

    client = MyClient("127.0.0.1", server.port)
    client.enable_thread_safety()  # as katcp 0.9, requests from this thread need it
    client.start()
    client.wait_protocol(WAIT)
    client.request(Message.request("help"))
    client.request(Message.request("watchdog"))
    assert done.wait(WAIT)
    client.stop()
    client.join()
    assert capsys.readouterr().out.splitlines() == [
        "--------- b'alpha' ---------", "", "b'First request.'", "----------------------------",
        "--------- b'beta' ---------", "", "b'Second request.'", "----------------------------",
        "help [b'ok', b'2']",
        "Unhandled reply watchdog",
    ]


class _closed_port:
    """Context manager yielding a local port with nothing listening on it."""

    def __enter__(self):
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc):
        self._sock.close()


def test_enable_thread_safety_wraps_marked_methods(server, make_client, monkeypatch):
    from katcp.client import make_threadsafe, make_threadsafe_blocking

    class Client(AsyncClient):
        @make_threadsafe
        def note_thread(self, sink):
            sink.put(threading.get_ident())

        @make_threadsafe_blocking
        def echo_later(self, text, timeout=None):
            future = self._loop.create_future()
            self._loop.call_later(0.01, future.set_result, (text, threading.get_ident()))
            return future

        @make_threadsafe_blocking
        def never_ends(self, timeout=None):
            return self._loop.create_future()

    client = make_client(Client, server.port)
    client.enable_thread_safety()
    client.start()
    assert client.wait_protocol(WAIT)
    sink = queue.Queue()
    client.note_thread(sink)
    loop_thread = sink.get(timeout=WAIT)
    assert loop_thread != threading.get_ident()
    assert client.echo_later("hi", timeout=WAIT) == ("hi", loop_thread)
    # A timeout is the method's own: the caller waits TIMEOUT_GRACE seconds more for
    # the outcome, and then gives up saying so.
    assert client.echo_later("slow", timeout=0.001) == ("slow", loop_thread)
    monkeypatch.setattr(crossing, "TIMEOUT_GRACE", 0.05)
    with pytest.raises(tornado.util.TimeoutError,
                       match=r"^No outcome of never_ends from its ioloop within 0.001 s"):
        client.never_ends(timeout=0.001)
    # Thread-safe future_request blocks for its result when called from another thread.
    reply, informs = client.future_request(Message.request("informs", 1))
    assert str(reply) == "!informs[1] ok 1" and len(informs) == 1
    other = make_client(AsyncClient, server.port)
    other.start()
    assert other.wait_running(WAIT)
    with pytest.raises(RuntimeError, match="after start"):
        other.enable_thread_safety()


def test_enable_thread_safety_leaves_mocks_on_the_class_alone():
    # A Mock answers every attribute with a truthy Mock, make_threadsafe's marks too: only
    # a mark that is True makes a method cross threads (0.9.3 asked "is True" for this).
    with mock.patch.object(BlockingClient, "is_connected", return_value=True), \
            mock.patch.object(BlockingClient, "disconnect") as disconnect:
        client = BlockingClient("127.0.0.1", 1)
        assert client.is_connected() is True
        client.disconnect()
        disconnect.assert_called_once_with()
        assert "is_connected" not in vars(client) and "disconnect" not in vars(client)
    assert "future_request" in vars(client) and "callback_request" in vars(client)


def test_a_thread_safe_client_with_a_property_that_fails_before_it_runs_can_be_made():
    # Each attribute is read to find the marked methods: a property that raises (here,
    # until the client is connected) made the client's constructor raise.
    class Station(BlockingClient):
        @property
        def station_version(self):
            if "katcp-device" not in self.versions:
                raise KeyError("not connected yet")
            return self.versions["katcp-device"]

    client = Station("127.0.0.1", 1)
    assert "future_request" in vars(client) and "station_version" not in vars(client)


def test_reconnect_backoff_is_randomised_exponential_and_bounded():
    from katcp.client.lifecycle import RECONNECT_DELAY, RECONNECT_DELAY_MAX, reconnect_backoff

    backoff = reconnect_backoff(RECONNECT_DELAY)
    delays = []
    for _ in range(40):
        delays.append(backoff.delay)
        backoff.failed()
    for attempt, delay in enumerate(delays[:6]):
        nominal = RECONNECT_DELAY * 2 ** attempt
        assert nominal / 2 <= delay <= nominal
    assert max(delays) <= RECONNECT_DELAY_MAX
    assert min(delays[-10:]) >= RECONNECT_DELAY_MAX / 2
    assert len(set(delays)) == len(delays)
    backoff.success()
    assert backoff.delay <= RECONNECT_DELAY


def test_reconnect_backoff_from_zero_retries_at_once_then_backs_off():
    for delay_initial in (0, -1.0):
        backoff = lifecycle.reconnect_backoff(delay_initial)
        delays = []
        for _ in range(4):
            delays.append(backoff.delay)
            backoff.failed()
        assert delays[0] == 0
        floor = ExponentialRandomBackoff.delay_floor
        for attempt, delay in enumerate(delays[1:]):
            nominal = floor * 2 ** attempt
            assert nominal / 2 <= delay <= nominal


class _RecordingBackoff(ExponentialRandomBackoff):
    """Puts each delay read (the wait before a reconnection attempt) in `waited`."""

    def __init__(self, waited, *args, **kwargs):
        self.waited = waited
        super().__init__(*args, **kwargs)

    @property
    def delay(self):
        self.waited.put(self._delay)
        return self._delay

    @delay.setter
    def delay(self, value):
        self._delay = value


@pytest.fixture
def reconnect_waits(monkeypatch):
    """A queue of the delays clients wait before their reconnection attempts."""
    waited = queue.Queue()
    # Each client's backoff keeps the queue: a read after the test is no error.
    monkeypatch.setattr(lifecycle, "ExponentialRandomBackoff",
                        functools.partial(_RecordingBackoff, waited))
    return waited


def test_zero_reconnect_delay_backs_off_after_the_first_retry(make_client, reconnect_waits):
    with _closed_port() as port:
        client = make_client(BlockingClient, port)
        client.auto_reconnect_delay = 0
        client.start()
        waits = [reconnect_waits.get(timeout=WAIT) for _ in range(4)]
    assert waits[0] == 0
    assert 0 < waits[1] < waits[3]


class _ConnectionsNoted(BlockingClient):
    """Puts True in `connections` on each connection made, False on each one lost."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections = queue.Queue()

    def notify_connected(self, connected):
        self.connections.put(connected)


def test_disconnect_is_no_failed_attempt_but_the_server_dropping_us_is(
        server, make_client, reconnect_waits, monkeypatch):
    # However quick the connections: none lasts long enough to reset the backoff.
    monkeypatch.setattr(lifecycle, "STABLE_CONNECTION", 3600.0)
    client = make_client(_ConnectionsNoted, server.port)
    client.auto_reconnect_delay = delay = 0.05
    client.start()
    for _ in range(5):
        server.connections.get(timeout=WAIT)
        assert client.connections.get(timeout=WAIT) is True
        client.disconnect()
        assert client.connections.get(timeout=WAIT) is False
        assert reconnect_waits.get(timeout=WAIT) <= delay
    # A server that hangs up on us at once is a run of failed attempts: the delay grows
    # (from the nominal 2 * delay that follows the reconnection's own wait).
    waits = []
    for _ in range(3):
        server.connections.get(timeout=WAIT)  # seen by both sides, then dropped
        assert client.connections.get(timeout=WAIT) is True
        server.drop_connections()
        assert client.connections.get(timeout=WAIT) is False
        waits.append(reconnect_waits.get(timeout=WAIT))
    assert waits[0] <= 2 * delay <= waits[1] <= 4 * delay <= waits[2]
    assert client.connections.get(timeout=WAIT) is True


def test_a_reconnect_delay_changed_while_running_restarts_the_backoff_after_a_disconnect(
        server, make_client, reconnect_waits):
    client = make_client(_ConnectionsNoted, server.port)
    client.auto_reconnect_delay = 3600.0
    client.start()
    server.connections.get(timeout=WAIT)
    assert client.connections.get(timeout=WAIT) is True
    client.auto_reconnect_delay = delay = 0.05
    client.disconnect()
    assert client.connections.get(timeout=WAIT) is False
    assert reconnect_waits.get(timeout=WAIT) <= delay
    server.connections.get(timeout=WAIT)
    assert client.connections.get(timeout=WAIT) is True


def test_versions_are_those_of_the_server_now_connected(server, make_client):
    client = make_client(_ConnectionsNoted, server.port)
    client.start()
    server.connections.get(timeout=WAIT)
    assert client.connections.get(timeout=WAIT) is True
    assert client.wait_protocol(WAIT)
    assert "katcp-protocol" in client.versions
    # The server is replaced by a KATCP v4 device.
    server.greeting = V4_GREETING
    server.drop_connections()
    assert client.connections.get(timeout=WAIT) is False
    assert client.connections.get(timeout=WAIT) is True
    # Informs are handled in order: the reply comes after the greeting's.
    reply, _ = client.blocking_request(Message.request("echo", "v4"))
    assert reply.arguments == [b"ok", b"v4"]
    assert client.versions == {"katcp-device-version": ("v4-api-0.4",),
                               "katcp-device-build-state": ("v4-impl-1.2b3",)}


def test_last_connect_time_is_on_the_ioloop_clock(server):
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    # A clock of its own, unlike the asyncio loop's and the wall clock.
    ioloop.time = lambda: 1234.5
    client = CallbackClient("127.0.0.1", server.port)
    client.set_ioloop(ioloop)
    thread = threading.Thread(target=ioloop.start, daemon=True)
    thread.start()
    try:
        ioloop.add_callback(client.start)
        assert client.wait_connected(WAIT)
        assert client.last_connect_time == 1234.5
    finally:
        ioloop.add_callback(client.stop)
        assert client._stopped.wait(WAIT)
        ioloop.add_callback(ioloop.stop)
        thread.join(WAIT)
        ioloop.close()


def test_waits_with_a_nan_timeout_return_at_once(blocking):
    nan = float("nan")
    assert outcome_in_thread(blocking.wait_disconnected, nan).result(WAIT) is False
    for wait in (blocking.wait_connected, blocking.wait_protocol, blocking.wait_running):
        assert outcome_in_thread(wait, nan).result(WAIT) is True


def test_coroutine_handlers_run_on_the_loop(server, make_client):
    seen = queue.Queue()

    class Client(DeviceClient):
        async def inform_log(self, msg):
            await asyncio.sleep(0)
            seen.put(("native", msg.arguments[-1]))

        @tornado.gen.coroutine
        def reply_echo(self, msg):
            yield tornado.gen.moment
            seen.put(("tornado", msg.arguments[-1]))

    client = make_client(Client, server.port)
    client.enable_thread_safety()
    client.start()
    assert client.wait_protocol(WAIT)
    server.send(b"#log info 0 x from-server")
    assert seen.get(timeout=WAIT) == ("native", b"from-server")
    client.request(Message.request("echo", "back"))
    assert seen.get(timeout=WAIT) == ("tornado", b"back")


def test_server_without_greeting_is_used_without_message_ids(make_client):
    fake = FakeServer(greeting=[]).start()
    try:
        client = make_client(BlockingClient, fake.port)
        client.start()
        assert client.wait_connected(WAIT)
        # No #version-connect: protocol information never arrives ...
        assert not client.wait_protocol(0.2)
        assert client.protocol_flags is None
        # ... and requests go out without ids, matched by name.
        reply, informs = client.blocking_request(Message.request("help"))
        assert fake.next_line() == b"?help"
        assert reply.arguments == [b"ok", b"2"]
        assert [m.arguments[0] for m in informs] == [b"alpha", b"beta"]
    finally:
        fake.close()


def _reset_connections(server):
    """Close the server's end of each connection with a reset (RST), as a crashed peer."""
    async def reset():
        writers, server._writers = server._writers, []
        for writer in writers:
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    server._run(reset())


def test_nothing_is_written_to_a_connection_asyncio_closed(server, make_client, caplog):
    # The server resets the connection while the client's loop is busy: the client's
    # first write fails and asyncio closes the transport, connection_lost() to come on a
    # later loop turn. The writes after it used to go to the closed transport, each
    # dropped, and asyncio logged "socket.send() raised exception." for each from the
    # fifth on; the requests now fail at once as not connected.
    client = make_client(AsyncClient, server.port, timeout=WAIT)
    client.start()
    assert client.wait_protocol(WAIT)

    async def burst():
        sock = client._protocol.socket
        _reset_connections(server)
        assert select.select([sock], [], [], WAIT)[0]  # the reset has arrived
        sent = [client.future_request(Message.request("watchdog")) for _ in range(40)]
        replies = await asyncio.gather(*sent)
        return collections.Counter(reply.arguments[1] for reply, _ in replies)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        replies = call_in_ioloop(client.ioloop, burst)
    assert "socket.send() raised exception." not in caplog.text
    assert replies == {b"Connection closed before reply was received": 1,
                       b"Client not connected": 39}


@pytest.mark.parametrize("port", [70000, -1, 7147.5, None])
def test_a_client_refuses_a_port_it_could_never_connect_to(port):
    with pytest.raises(ValueError) as refused:
        DeviceClient("127.0.0.1", port)
    assert str(refused.value) == ("Cannot connect to port %r: a port is an integer from 0 "
                                  "to 65535 (or a service name)" % (port,))


def test_a_new_client_has_not_connected_nor_a_loop_thread():
    client = AsyncClient("127.0.0.1", 7147)
    assert client.last_connect_time is None
    with pytest.raises(KatcpClientError, match="^Client not started$"):
        client.future_request(Message.request("watchdog"))
    # Given a loop of its own, but not started: no thread is known to run it yet.
    client.set_ioloop(tornado.ioloop.IOLoop(make_current=False))
    try:
        assert client.ioloop_thread_id is None
    finally:
        client.ioloop.close()


def test_calls_from_other_threads_to_a_client_never_started_say_so():
    # Not "stopped": the gate that refuses them tells a client never started apart.
    client = CallbackClient("127.0.0.1", 7147)
    calls = [lambda: client.blocking_request(Message.request("echo")),
             lambda: client.future_request(Message.request("echo")),
             lambda: client.callback_request(Message.request("echo"), reply_cb=print),
             lambda: client.send_message(Message.inform("note"))]
    for call in calls:
        with pytest.raises(KatcpClientError, match="^Client not started$"):
            call()


def _refused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("logger_name", ["katcp.test.own", None])
def test_a_client_logs_to_its_logger_or_else_to_katcp_client(make_client, logger_name):
    # None, as katcp 0.9 allowed, means the clients' shared logger.
    records = queue.Queue()
    handler = logging.handlers.QueueHandler(records)
    logger = logging.getLogger(logger_name or "katcp.client")
    logger.addHandler(handler)
    try:
        client = make_client(DeviceClient, _refused_port(),
                             logger=logger_name and logging.getLogger(logger_name))
        client.start()
        record = records.get(timeout=WAIT)
    finally:
        logger.removeHandler(handler)
    port = client.bind_address[1]
    # The reason is the error of the attempt (its text is the event loop's: asyncio's
    # "Connect call failed (...)", uvloop's "Connection refused").
    assert record.msg.startswith("Failed to connect to 127.0.0.1:%d: [Errno %d] "
                                 % (port, errno.ECONNREFUSED))


class _AttemptNeverEnds(DeviceClient):
    """A client whose connection attempts never end (an override of connect_transport()
    waiting for a peer that never answers)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attempting = threading.Event()

    async def connect_transport(self, protocol_factory):
        self.attempting.set()
        await asyncio.get_running_loop().create_future()


@pytest.mark.parametrize("held_in", ["attempt", "retry_wait"])
def test_stop_ends_a_connection_attempt_or_a_wait_to_retry_at_once(held_in):
    if held_in == "attempt":
        client = _AttemptNeverEnds("127.0.0.1", 7147)
        held = client.attempting
    else:
        client = DeviceClient("127.0.0.1", _refused_port())
        client.auto_reconnect_delay = 3600
        held = client._waiting_to_retry
    client.start(timeout=WAIT)
    try:
        assert held.wait(WAIT)
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    assert client._stopped.is_set() and not client.running()


def test_failed_attempts_warn_on_the_first_and_every_fifth_with_their_reasons():
    # The rule alone, its texts whole (test_legacy_client.py makes the attempts on a port
    # nothing listens on). A failure that is no OSError is named with its class.
    loop = asyncio.new_event_loop()
    try:
        reconnection = lifecycle.Reconnection(loop, lambda: 0.001)
        refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        with recording_logger("katcp.test.reconnection") as (logger, handler):
            for _ in range(10):
                reconnection.attempt_failed(logger, "127.0.0.1:7147", refused)
            reconnection.connected()
            reconnection.attempt_failed(logger, "127.0.0.1:7147", ValueError("odd"))
    finally:
        loop.close()
    W, D = logging.WARNING, logging.DEBUG
    assert [r.levelno for r in handler.records] == [W, D, D, D, W, D, D, D, D, W, W]
    messages = handler.messages()
    assert messages[0] == "Failed to connect to 127.0.0.1:7147: %s" % (refused,)
    assert messages[1] == "Failed to connect to 127.0.0.1:7147: %s (2 attempts so far)" % (
        refused,)
    assert messages[9].endswith(": %s (10 attempts so far)" % (refused,))
    assert messages[10] == "Failed to connect to 127.0.0.1:7147: ValueError: odd"


@pytest.mark.parametrize("tb_limit", ["20", 2.5, b"3", [1]])
def test_a_tb_limit_that_is_no_int_is_refused_by_the_client(tb_limit):
    with pytest.raises(TypeError, match=r"^tb_limit must be an int or None, not %s\.$"
                       % re.escape(repr(tb_limit))):
        DeviceClient("127.0.0.1", 7147, tb_limit=tb_limit)


@pytest.mark.parametrize("tb_limit", [None, 0, 1])
def test_a_client_takes_a_tb_limit_of_none_or_an_int(tb_limit):
    assert DeviceClient("127.0.0.1", 7147, tb_limit=tb_limit)._tb_limit == tb_limit


def test_a_request_on_the_loop_just_after_start_is_taken_as_on_the_loop_thread(server):
    # Before the client's first callback has run: the loop's own thread still counts.
    async def request_at_once():
        client = AsyncClient("127.0.0.1", server.port, timeout=WAIT)
        client.set_ioloop(tornado.ioloop.IOLoop.current())
        client.start()
        try:
            reply, _ = await client.future_request(Message.request("echo", "early"))
        finally:
            client.stop()
            await client.until_stopped(timeout=WAIT)
        return reply

    reply = asyncio.run(asyncio.wait_for(request_at_once(), WAIT))
    assert reply.name == "echo"


def test_a_second_start_before_the_first_has_run_is_refused(server):
    # On the loop, before the first start's callback has run: not running yet, but not
    # stopped either.
    async def start_twice():
        client = AsyncClient("127.0.0.1", server.port)
        client.set_ioloop(tornado.ioloop.IOLoop.current())
        client.start()
        try:
            with pytest.raises(RuntimeError, match=r"^Device client already started\.$"):
                client.start()
        finally:
            client.stop()
            await client.until_stopped(timeout=WAIT)

    asyncio.run(asyncio.wait_for(start_twice(), WAIT))


def test_async_with_in_each_asyncio_run_runs_the_client_on_that_runs_loop(server):
    # The first run's loop, closed by asyncio.run, was taken for the one set: the second
    # entry waited its whole ENTER_TIMEOUT on a loop that ran nothing, then said "not
    # connected".
    client = AsyncClient("127.0.0.1", server.port, timeout=WAIT)
    client.ENTER_TIMEOUT = WAIT

    async def talk():
        async with client:
            assert client.ioloop.asyncio_loop is asyncio.get_running_loop()
            reply, _ = await client.future_request(Message.request("echo", "a"))
        assert client.stopped()
        return str(reply)

    assert asyncio.run(talk()) == "!echo[1] ok a"
    assert asyncio.run(talk()) == "!echo[2] ok a"


def test_a_client_refuses_to_start_on_a_closed_loop():
    # The start's first step was dropped there (tornado swallows "Event loop is closed"):
    # the client was neither running nor stopped, and waits for it ran out their time.
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    ioloop.close()
    client = AsyncClient("127.0.0.1", 7147)
    client.set_ioloop(ioloop)
    with pytest.raises(RuntimeError, match="^Cannot start the client on a closed ioloop"):
        client.start()
    assert client.stopped() and not client.running()
