"""A client started, stopped, joined and called from several threads at once.

Each race is made to happen: a step of one thread is held on an event until the other
thread has done (or is blocked in) what the race is about. Servers are the scripted fake
of test_client.py on 127.0.0.1.
"""

import asyncio
import concurrent.futures
import os
import re
import socket
import threading
import types

import pytest
from tornado.ioloop import IOLoop

from katcp.client import BlockingClient, CallbackClient, DeviceClient, lifecycle
from katcp.client.flags import StateFlag
from katcp.core import Message
from katcp.ioloop_manager import IOLoopManager
from katcp.loop import crossing

from test_client import FakeServer
from subprocess_helpers import outcome_in_forked_child
from wait_helpers import announced_joins, outcome_in_thread

WAIT = 5.0


@pytest.fixture
def server():
    fake = FakeServer().start()
    yield fake
    fake.close()




class WaitedForLock:
    """A lock that sets `waiting` when a thread finds it held and has to wait for it."""

    def __init__(self, waiting):
        self._lock = threading.Lock()
        self._waiting = waiting

    def __enter__(self):
        if not self._lock.acquire(blocking=False):
            self._waiting.set()
            self._lock.acquire()
        return self

    def __exit__(self, *exc_info):
        self._lock.release()


def started(client):
    client.start()
    assert client.wait_protocol(WAIT)
    return client


def stopped(client):
    client.stop(timeout=WAIT)
    client.join(timeout=WAIT)


def echo_works(client):
    reply, _ = client.blocking_request(Message.request("echo", "ok"), timeout=WAIT)
    return reply.arguments == [b"ok", b"ok"]


# -- start() while stop() is under way --------------------------------------------------


def test_a_start_while_the_loop_closes_waits_for_it_and_runs_on_a_new_loop(server):
    client = started(BlockingClient("127.0.0.1", server.port, timeout=WAIT))
    old_loop = client.ioloop
    # The stop is asked for and the client's coroutine has ended, but the loop has not
    # stopped yet: its thread is held at the end of the stop callback.
    held, release = threading.Event(), threading.Event()
    uninstall = client._uninstall

    async def held_uninstall():
        await uninstall()
        held.set()
        release.wait(WAIT)

    client._uninstall = held_uninstall
    stopping = outcome_in_thread(client.stop, WAIT)
    assert held.wait(WAIT)
    # start() either fails at once or waits for the closing loop's thread: released then.
    loop_thread = client._ioloop_manager._ioloop_thread
    progressed = announced_joins(loop_thread)
    starting = outcome_in_thread(client.start)
    starting.add_done_callback(lambda _: progressed.set())
    assert progressed.wait(WAIT)
    release.set()
    # Never on the closing loop (where it raised 'IOLoop already started' and could never
    # be stopped or started again): on a loop of its own, once the old one closed.
    assert starting.result(WAIT) is None
    stopping.result(WAIT)
    del client._uninstall
    assert client.wait_protocol(WAIT)
    assert client.ioloop is not old_loop and echo_works(client)
    stopped(client)
    assert not client.running()
    started(client)
    assert echo_works(client)
    stopped(client)


def test_a_start_while_a_stop_tells_the_loop_runs_the_client_after_it(server):
    # stop() refuses calls from other threads, then asks the loop manager to stop: a
    # start() in between ran first and was then stopped, leaving a stopped client that
    # took calls from other threads (to a closed loop: 'Event loop is closed').
    client = started(CallbackClient("127.0.0.1", server.port, timeout=WAIT))
    stopped(client)
    at_manager, release = threading.Event(), threading.Event()
    manager = client._ioloop_manager
    manager_stop = manager.stop

    def held_manager_stop(*args, **kwargs):
        at_manager.set()
        release.wait(WAIT)
        return manager_stop(*args, **kwargs)

    manager.stop = held_manager_stop
    progressed = threading.Event()
    client._start_lock = WaitedForLock(progressed)
    stopping = outcome_in_thread(client.stop, WAIT)
    assert at_manager.wait(WAIT)
    starting = outcome_in_thread(client.start)
    starting.add_done_callback(lambda _: progressed.set())
    assert progressed.wait(WAIT)
    release.set()
    stopping.result(WAIT)
    starting.result(WAIT)
    del manager.stop
    # The stop came first: the start after it runs the client, which takes calls.
    assert client.wait_protocol(WAIT) and echo_works(client)
    stopped(client)
    with pytest.raises(RuntimeError, match="^Client stopped"):
        client.blocking_request(Message.request("echo"))
    started(client)
    assert echo_works(client)
    stopped(client)


def test_a_client_that_ended_on_its_own_starts_again_on_its_running_loop(server):
    client = started(BlockingClient("127.0.0.1", server.port, timeout=WAIT,
                                    auto_reconnect=False))
    server.drop_connections()
    assert client._stopped.wait(WAIT) and not client.running()
    # Its managed loop still runs: started again, it runs the client (it raised
    # 'IOLoop already started' and could then not be stopped).
    started(client)
    assert echo_works(client)
    stopping = outcome_in_thread(client.stop, WAIT)
    assert stopping.result(WAIT) is None
    client.join(timeout=WAIT)
    assert not client._ioloop_manager._ioloop_thread.is_alive()


# -- calls from other threads while start() runs ------------------------------------------


def test_a_call_from_another_thread_goes_to_the_loop_of_the_run_that_took_it(server):
    # The caller reads the client's loop while the client is stopped, and is held there
    # until a restart has run the client on a new loop: its call, taken by the restarted
    # client (or refused, had it come first), must not go to the last run's closed loop.
    read_loop, release = threading.Event(), threading.Event()
    held_thread = []

    class HeldClient(BlockingClient):
        @property
        def ioloop(self):
            ioloop = self.__dict__.get("_held_ioloop")
            if held_thread == [threading.get_ident()]:
                del held_thread[:]
                read_loop.set()
                release.wait(WAIT)
            return ioloop

        @ioloop.setter
        def ioloop(self, ioloop):
            self.__dict__["_held_ioloop"] = ioloop

    client = started(HeldClient("127.0.0.1", server.port, timeout=WAIT))
    stopped(client)
    last_loop = client.ioloop

    def echo():
        held_thread.append(threading.get_ident())
        try:
            return client.blocking_request(Message.request("echo", "held"))
        finally:
            # Also when nothing held it; and a thread given its id later is not held.
            del held_thread[:]
            read_loop.set()

    calling = outcome_in_thread(echo)
    assert read_loop.wait(WAIT)
    started(client)
    assert client.ioloop is not last_loop
    release.set()
    with pytest.raises(RuntimeError, match="^Client stopped"):
        calling.result(WAIT)
    assert echo_works(client)
    stopped(client)


@pytest.mark.parametrize("restart", [False, True], ids=["first-start", "restart"])
def test_calls_from_other_threads_during_start_work_or_are_refused(server, restart):
    client = CallbackClient("127.0.0.1", server.port, timeout=WAIT)
    if restart:
        stopped(started(client))
    manager = client._ioloop_manager
    manager_start = manager.start
    during_start = []

    def start_and_call(*args, **kwargs):
        # The loop runs now, and _begin() (which tells the client its thread) has not
        # been queued yet: a call taken now would run on the loop before it.
        result = manager_start(*args, **kwargs)
        replies = concurrent.futures.Future()
        for call in (lambda: client.future_request(Message.request("echo", "f")),
                     lambda: client.callback_request(Message.request("echo", "c"),
                                                     reply_cb=replies.set_result)):
            try:
                call()
                during_start.append("taken")
            except RuntimeError as exc:
                during_start.append(str(exc))
        if "taken" in during_start[1:]:
            during_start.append(str(replies.result(WAIT)))
        return result

    manager.start = start_and_call
    client.start()
    del manager.start
    # Refused as for a stopped client, rather than run on the loop as if from another
    # thread (AssertionError: 'call enable_thread_safety()', and a lost reply_cb).
    assert len(during_start) == 2
    assert all(outcome.startswith("Client stopped") for outcome in during_start)
    # Once start() has returned, calls from other threads are taken and run on the loop.
    reply, _ = client.future_request(Message.request("echo", "after"))
    assert reply.arguments[0] in (b"ok", b"fail")
    replies = concurrent.futures.Future()
    client.callback_request(Message.request("echo", "after"), reply_cb=replies.set_result)
    assert replies.result(WAIT).arguments[0] in (b"ok", b"fail")
    stopped(client)


def test_a_closed_thread_gate_still_runs_a_call_made_on_the_loops_thread():
    # While a client is stopped, calls from its loop's own thread (a callback there
    # calling disconnect(), say) run as ever: only other threads' calls are refused.
    ioloop = IOLoop(make_current=False)
    try:
        gate = lifecycle.ThreadGate(types.SimpleNamespace(ioloop=ioloop))
        gate.close()
        ran = []
        assert gate.call(crossing.thread_ident(), ran.append, "on the loop's thread"
                         ).result(0) is None
        assert ran == ["on the loop's thread"]
        with pytest.raises(RuntimeError, match="^Client stopped"):
            gate.call(None, ran.append, "from another thread").result(0)
        assert ran == ["on the loop's thread"]
    finally:
        ioloop.close()


class _WaitSignallingCondition(threading.Condition):
    """Sets `waiting` whenever a thread waits on it (having released its lock)."""

    def __init__(self, waiting):
        super().__init__(threading.Lock())
        self._waiting = waiting

    def wait(self, timeout=None):
        self._waiting.set()
        return super().wait(timeout)


def test_a_state_flag_set_and_cleared_while_a_thread_waits_releases_it():
    # As threading.Event.wait(): the waiter returns True though the flag was cleared
    # again before it woke, also after earlier settings.
    waiting = threading.Event()
    flag = StateFlag(_WaitSignallingCondition(waiting))
    flag.set()
    flag.clear()
    waiter = outcome_in_thread(flag.wait, WAIT)
    assert waiting.wait(WAIT)
    flag.set()
    flag.clear()
    assert waiter.result(2 * WAIT) is True


def test_a_state_wait_asked_for_from_another_thread_is_a_future_of_the_clients_loop():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = DeviceClient("127.0.0.1", port)
    client.start(timeout=WAIT)
    try:
        assert client.until_connected().get_loop() is client.ioloop.asyncio_loop
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)

# -- a shared loop stopped under a client -------------------------------------------------


def _loop_of_a_user_thread():
    """An unmanaged loop that a thread of the user's runs; stopped, it is left as it is
    (nothing finishes its tasks), and the caller closes it."""
    ready = concurrent.futures.Future()

    def run():
        ioloop = IOLoop(make_current=False)
        ready.set_result(ioloop)
        ioloop.start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return ready.result(WAIT), thread


def _silent_requests_from_threads(client, server):
    # Requests the server never answers: their timeouts, if any, are served by the loop.
    waits = [outcome_in_thread(lambda: client.future_request(Message.request("silent"))),
             outcome_in_thread(lambda: client.blocking_request(Message.request("silent")))]
    assert sorted([server.next_line(), server.next_line()]) == [b"?silent[1]", b"?silent[2]"]
    return waits


@pytest.mark.parametrize("default_timeout", [None, 1.0])
def test_waits_of_other_threads_end_when_a_loop_stops_under_the_client(
        server, monkeypatch, default_timeout):
    monkeypatch.setattr(crossing, "NOT_RUNNING_GRACE", 0.05)
    ioloop, thread = _loop_of_a_user_thread()
    try:
        client = CallbackClient("127.0.0.1", server.port, timeout=default_timeout)
        client.set_ioloop(ioloop)
        started(client)
        waits = _silent_requests_from_threads(client, server)
        ioloop.add_callback(ioloop.stop)
        thread.join(WAIT)
        assert not thread.is_alive()
        with pytest.raises(RuntimeError, match="^future_request of the client for .*: no "
                                               "thread runs the client's ioloop any more"):
            waits[0].result(WAIT)
        # Unbounded, it ends as the future request does; bounded, a second after its deadline.
        ending = ("^blocking_request of the client for .*: no thread runs the client's ioloop"
                  if default_timeout is None else "^Unexpected error: Async request handler")
        with pytest.raises(RuntimeError, match=ending):
            waits[1].result(WAIT)
    finally:
        ioloop.close(all_fds=True)


def test_a_client_collected_after_its_loop_closed_under_it_shuts_its_connection_down():
    # Nothing runs the connection coroutine of a client whose loop was stopped and closed
    # while it was connected; closed when it is collected (at once on tornado < 6.4), it
    # asked the closed loop to abort the transport: "Exception ignored ... RuntimeError:
    # Event loop is closed", and the connection stayed open until the transport went too.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ioloop, thread = _loop_of_a_user_thread()
        try:
            client = CallbackClient("127.0.0.1", listener.getsockname()[1])
            client.set_ioloop(ioloop)
            client.start()
            listener.settimeout(WAIT)
            peer, _ = listener.accept()
            with peer:
                peer.sendall(b"#version-connect katcp-protocol 5.0-IM\n")
                assert client.wait_protocol(WAIT)
                ioloop.add_callback(ioloop.stop)
                thread.join(WAIT)
                assert not thread.is_alive()
                ioloop.close(all_fds=True)
                [connection] = [task.get_coro()
                                for task in asyncio.all_tasks(ioloop.asyncio_loop)
                                if task.get_coro().__name__ == "_install"]
                connection.close()  # what its collection does
                peer.settimeout(WAIT)
                assert peer.recv(1) == b""
        finally:
            if not ioloop.asyncio_loop.is_closed():
                ioloop.close(all_fds=True)


def test_a_client_whose_loop_was_closed_under_it_stops_at_once_and_runs_again_elsewhere():
    # Nothing runs _uninstall() on a closed loop: stop() did nothing, the client said it
    # ran and was connected for ever, and set_ioloop() refused a new loop.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)
        ioloop, thread = _loop_of_a_user_thread()
        try:
            client = CallbackClient("127.0.0.1", listener.getsockname()[1], timeout=None)
            client.set_ioloop(ioloop)
            client.start()
            peer, _ = listener.accept()
            with peer:
                peer.sendall(b"#version-connect katcp-protocol 5.0-IM\n")
                assert client.wait_protocol(WAIT)
                blocked = outcome_in_thread(
                    lambda: client.blocking_request(Message.request("silent")))
                peer.settimeout(WAIT)
                assert peer.recv(100) == b"?silent[1]\n"
                # A request whose future is awaited on the loop: it can be resolved no more.
                crossing.call_on_loop(ioloop, None, client.future_request,
                                      Message.request("silent"))
                assert peer.recv(100) == b"?silent[2]\n"
                ioloop.add_callback(ioloop.stop)
                thread.join(WAIT)
                assert not thread.is_alive()
                ioloop.close(all_fds=True)
                heard = []
                # Told in this thread, it may stop the client again (no lock is held).
                client.notify_connected = lambda connected: heard.append(connected) or (
                    client.stop())
                outcome_in_thread(client.stop).result(WAIT)
                del client.notify_connected
                assert heard == [False]
                assert client.stopped() and not client.running()
                assert not client.is_connected() and not client.wait_protocol(0)
                assert peer.recv(1) == b""  # its connection is shut down
                reply, _ = blocked.result(WAIT)
                assert str(reply) == ("!silent[1] fail Client\\_stopped\\_before\\_reply"
                                      "\\_was\\_received")
        finally:
            if not ioloop.asyncio_loop.is_closed():
                ioloop.close(all_fds=True)
        new_ioloop, new_thread = _loop_of_a_user_thread()
        try:
            client.set_ioloop(new_ioloop)
            client.start()
            peer, _ = listener.accept()
            with peer:
                peer.sendall(b"#version-connect katcp-protocol 5.0-IM\n")
                assert client.wait_protocol(WAIT)
                # The last run's connection coroutine, closed as its collection does,
                # leaves this run alone.
                [last_run] = [task.get_coro() for task in asyncio.all_tasks(ioloop.asyncio_loop)
                              if task.get_coro().__name__ == "_install"]
                last_run.close()
                assert client.running() and client.is_connected() and not client.stopped()
                replying = outcome_in_thread(
                    lambda: client.blocking_request(Message.request("echo"), timeout=WAIT))
                peer.settimeout(WAIT)
                assert peer.recv(100) == b"?echo[3]\n"
                peer.sendall(b"!echo[3] ok\n")
                assert str(replying.result(WAIT)[0]) == "!echo[3] ok"
            client.stop()
            crossing.call_on_loop(new_ioloop, None, client.until_stopped).result(WAIT)
        finally:
            new_ioloop.add_callback(new_ioloop.stop)
            new_thread.join(WAIT)
            new_ioloop.close(all_fds=True)


def test_an_async_notify_connected_told_of_a_stop_on_a_closed_loop_is_not_run(caplog):
    # Told in the thread that stops the client, whose event loop is the closed loop (a
    # test case's cleanup): its coroutine was handed to that loop, and stop() raised
    # "Event loop is closed". Another thread's loop is not its own either: not run.
    told = []

    class Client(CallbackClient):
        async def notify_connected(self, connected):
            told.append(connected)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)
        ioloop, thread = _loop_of_a_user_thread()
        try:
            client = Client("127.0.0.1", listener.getsockname()[1])
            client.set_ioloop(ioloop)
            client.start()
            peer, _ = listener.accept()
            with peer:
                assert client.wait_connected(WAIT)
                ioloop.add_callback(ioloop.stop)
                thread.join(WAIT)
                ioloop.close(all_fds=True)

                def stop_where_the_closed_loop_is_current():
                    asyncio.set_event_loop(ioloop.asyncio_loop)
                    client.stop()

                outcome_in_thread(stop_where_the_closed_loop_is_current).result(WAIT)
                assert client.stopped()
        finally:
            if not ioloop.asyncio_loop.is_closed():
                ioloop.close(all_fds=True)
    assert told == [True]
    [record] = [r for r in caplog.records if r.getMessage() == "notify_connected(False) failed"]
    assert "no loop could run the coroutine" in str(record.exc_info[1])


if hasattr(os, "fork"):
    def test_waits_in_a_forked_child_end_as_no_thread_runs_the_loop_there(server, monkeypatch):
        monkeypatch.setattr(crossing, "NOT_RUNNING_GRACE", 0.05)
        client = started(BlockingClient("127.0.0.1", server.port, timeout=None))
        try:
            for call in (lambda: client.blocking_request(Message.request("silent")),
                         lambda: client.future_request(Message.request("silent"))):
                assert re.match("RuntimeError: (blocking|future)_request of the client for "
                                ".*: no thread runs the client's ioloop any more",
                                outcome_in_forked_child(call, WAIT))
            assert echo_works(client)  # the parent's loop runs on
        finally:
            stopped(client)


def test_waits_of_other_threads_end_when_a_shared_managed_loop_stops_under_the_client(server):
    # A managed loop that stops finishes its tasks: the client's connection closes, and
    # with it the requests in flight.
    shared = IOLoopManager()
    shared.start(timeout=WAIT)
    client = CallbackClient("127.0.0.1", server.port, timeout=None)
    client.set_ioloop(shared.get_ioloop())
    started(client)
    waits = _silent_requests_from_threads(client, server)
    shared.stop().result(WAIT)
    shared.join(WAIT)
    for wait in waits:
        reply, informs = wait.result(WAIT)
        assert (reply.arguments, informs) == (
            [b"fail", b"Connection closed before reply was received"], [])
