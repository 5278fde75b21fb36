"""The one queue of calls handed to a loop from other threads (katcp.loop.call_queue).

Informs sent from other threads, the handler thread's "message handled" notes and sensor
updates made in other threads all travel through it, so they reach the loop in the order
they were made.
"""

import concurrent.futures
import gc
import logging
import threading
import weakref
from queue import Queue

import pytest
import tornado.ioloop

from katcp.core import AsyncReply, Message, Sensor
from katcp.ioloop_manager import IOLoopManager
from katcp.loop.call_queue import CallQueue
from katcp.sampling import _PeriodicScheduler
from katcp.server import AsyncDeviceServer, DeviceServer
from katcp.server.handler_thread import CoroutineResumptions

from server_kinds import started
from server_line_client import LineClient

TIMEOUT = 10


@pytest.fixture
def loop_thread():
    """An IOLoop run by a thread of its own; yields (ioloop, thread id)."""
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    started = threading.Event()
    ident = []

    def run():
        ident.append(threading.get_ident())
        ioloop.add_callback(started.set)
        ioloop.start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(TIMEOUT)
    yield ioloop, ident[0]
    ioloop.add_callback(ioloop.stop)
    thread.join(TIMEOUT)
    ioloop.close()


def _block(ioloop):
    """Keep `ioloop` busy until the returned event is set (so calls pile up)."""
    blocked, release = threading.Event(), threading.Event()

    def hold():
        blocked.set()
        release.wait(TIMEOUT)
    ioloop.add_callback(hold)
    assert blocked.wait(TIMEOUT)
    return release


def test_calls_run_on_the_loop_thread_in_the_order_queued(loop_thread):
    ioloop, loop_ident = loop_thread
    queue = CallQueue.of(ioloop)
    seen = []
    done = threading.Event()
    for number in range(500):
        queue.call(lambda n=number: seen.append((n, threading.get_ident())))
    queue.call(done.set)
    assert done.wait(TIMEOUT)
    assert [n for n, _ in seen] == list(range(500))
    assert {ident for _, ident in seen} == {loop_ident}


def test_a_burst_of_calls_wakes_the_loop_once(loop_thread):
    ioloop, _ = loop_thread
    loop = ioloop.asyncio_loop
    wakeups = []
    real_call_soon_threadsafe = loop.call_soon_threadsafe

    def counting_call_soon_threadsafe(*args, **kwargs):
        wakeups.append(args[0])
        return real_call_soon_threadsafe(*args, **kwargs)

    queue = CallQueue.of(ioloop)
    release = _block(ioloop)
    loop.call_soon_threadsafe = counting_call_soon_threadsafe
    try:
        ran = []
        done = threading.Event()
        for number in range(100):
            queue.call(ran.append, number)
        queue.call(done.set)
        release.set()
        assert done.wait(TIMEOUT)
    finally:
        del loop.call_soon_threadsafe
    assert ran == list(range(100))
    assert len(wakeups) == 1


def test_a_call_queued_on_the_loop_thread_does_not_wake_the_loop_through_its_self_pipe(
        loop_thread):
    # A concurrent future resolved on the loop calls back there (the handler thread's
    # "message handled" note): call_soon_threadsafe() would write to the loop's
    # self-pipe, one syscall and one more wake-up of the loop that it does not need.
    ioloop, loop_ident = loop_thread
    loop = ioloop.asyncio_loop
    queue = CallQueue.of(ioloop)
    wakers = []
    real_call_soon_threadsafe = loop.call_soon_threadsafe

    def counting_call_soon_threadsafe(*args, **kwargs):
        wakers.append(threading.get_ident())
        return real_call_soon_threadsafe(*args, **kwargs)

    ran = []
    done = threading.Event()

    def on_the_loop():
        queue.call(ran.append, 1)
        queue.call(ran.append, 2)
        queue.call(done.set)

    loop.call_soon_threadsafe = counting_call_soon_threadsafe
    try:
        ioloop.add_callback(on_the_loop)
        assert done.wait(TIMEOUT)
    finally:
        del loop.call_soon_threadsafe
    assert ran == [1, 2]
    assert loop_ident not in wakers


def test_a_failing_call_is_logged_and_the_next_ones_still_run(loop_thread, caplog):
    ioloop, _ = loop_thread
    queue = CallQueue.of(ioloop)
    done = threading.Event()

    def broken():
        raise ZeroDivisionError("broken call")

    release = _block(ioloop)
    with caplog.at_level(logging.ERROR, logger="katcp.loop"):
        queue.call(broken)
        queue.call(done.set)
        release.set()
        assert done.wait(TIMEOUT)
    assert any(record.exc_info and record.exc_info[0] is ZeroDivisionError
               for record in caplog.records)


def test_one_queue_per_loop(loop_thread):
    ioloop, _ = loop_thread
    other = tornado.ioloop.IOLoop(make_current=False)
    try:
        assert CallQueue.of(ioloop) is CallQueue.of(ioloop)
        assert CallQueue.of(other) is not CallQueue.of(ioloop)
    finally:
        other.close()


def test_the_objects_of_a_loop_go_with_it():
    # One per loop, kept on the loop: none keeps its loop alive once it is closed.
    kinds = [CallQueue.of, CoroutineResumptions.of, _PeriodicScheduler.for_ioloop]

    def make_and_close():
        ioloop = tornado.ioloop.IOLoop(make_current=False)
        made = [of(ioloop) for of in kinds]
        assert [of(ioloop) for of in kinds] == made
        ioloop.close()
        return weakref.ref(ioloop), [weakref.ref(one) for one in made]

    refs = [make_and_close() for _ in range(3)]
    gc.collect()
    assert [(ioloop(), [one() for one in made]) for ioloop, made in refs] == [
        (None, [None] * len(kinds))] * 3


def test_batched_items_share_a_call_until_another_call_is_queued(loop_thread):
    ioloop, _ = loop_thread
    queue = CallQueue.of(ioloop)
    ran = []
    record = ran.append  # one function: batches are of the same one
    done = threading.Event()
    release = _block(ioloop)
    try:
        for item in (1, 2, 3):
            queue.call_batched(record, item)
        queue.call(record, "call")
        for item in (4, 5):
            queue.call_batched(record, item)
        queue.call(done.set)
    finally:
        release.set()
    assert done.wait(TIMEOUT)
    assert ran == [[1, 2, 3], "call", [4, 5]]


def test_items_of_another_function_start_a_batch_of_their_own(loop_thread):
    ioloop, _ = loop_thread
    queue = CallQueue.of(ioloop)
    ran = []

    def f(items):
        ran.append(("f", items))

    def g(items):
        ran.append(("g", items))

    done = threading.Event()
    release = _block(ioloop)
    try:
        for fn, item in ((f, 1), (g, 2), (g, 3), (f, 4)):
            queue.call_batched(fn, item)
        queue.call(done.set)
    finally:
        release.set()
    assert done.wait(TIMEOUT)
    assert ran == [("f", [1]), ("g", [2, 3]), ("f", [4])]


def test_a_mark_stands_until_anything_else_is_queued(loop_thread):
    ioloop, _ = loop_thread
    queue = CallQueue.of(ioloop)
    release = _block(ioloop)
    try:
        mark = queue.call_batched(len, "a")
        assert queue.count == mark
        assert queue.call_batched(len, "b") == mark + 1 == queue.count
        queue.call(len, "")
        assert queue.count == mark + 2
        queue.hold()
        assert queue.call_batched(len, "c") is None  # others' calls may overtake it
        assert queue.count == mark + 2
        queue.release()
        assert queue.count == mark + 3
    finally:
        release.set()


class _Item:
    """A batched item, whose lifetime a weak reference tells."""


def test_calls_to_a_closed_loop_are_dropped():
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    queue = CallQueue.of(ioloop)
    ioloop.close()
    ran = []
    queue.call(ran.append, 1)  # nothing will ever run it, and the caller is not hurt
    queue.call(ran.append, 2)
    item = _Item()
    held = weakref.ref(item)
    queue.call_batched(ran.append, item)
    del item
    gc.collect()
    assert ran == []
    assert queue._calls == []  # nothing is kept for a loop that is gone
    assert held() is None  # nor what a dropped batch's items hold


def test_calls_left_queued_as_a_managed_loop_closes_are_dropped_and_their_outcomes_fail():
    # A server stopped while a thread sent to its clients: its loop stopped with the
    # queue's wake-up still to run, and closed. Nothing ran the calls queued, nor woke the
    # loop for later ones: each send after the stop was kept for ever (a list that grew
    # without end), and a call_from_thread() outcome never resolved.
    manager = IOLoopManager()
    ioloop = manager.get_ioloop()
    assert manager.start(timeout=TIMEOUT)
    queue = CallQueue.of(ioloop)
    blocked, release = threading.Event(), threading.Event()

    def hold_then_stop():
        blocked.set()
        assert release.wait(TIMEOUT)
        ioloop.stop()  # the wake-ups queued meanwhile are behind the stop
    ioloop.add_callback(hold_then_stop)
    assert blocked.wait(TIMEOUT)
    ran = []
    queue.call(ran.append, 1)
    outcome = queue.call_with_outcome(len, "ab")
    release.set()
    manager.join(TIMEOUT)
    assert ioloop.asyncio_loop.is_closed()
    # asyncio's loop stops first; uvloop's runs what was queued before its stop.
    assert concurrent.futures.wait([outcome], TIMEOUT).done == {outcome}
    if ran:
        assert ran == [1] and outcome.result() == 2
    else:
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            outcome.result()
    queue.call(ran.append, 2)
    assert 2 not in ran
    assert queue._calls == []


class _ClosedJustNow:
    """A loop closed by another thread just after the queue asked is_closed()."""

    def is_closed(self):
        return False

    def call_soon_threadsafe(self, fn, *args):
        raise RuntimeError("Event loop is closed")


def test_a_call_with_outcome_whose_wake_up_the_loop_refuses_fails():
    # Dropped with the queue's calls, its outcome was never resolved: the caller waited
    # for ever (or for its whole timeout).
    loop = _ClosedJustNow()
    queue = CallQueue(loop)
    outcome = queue.call_with_outcome(len, "ab")
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        outcome.result(0)
    assert queue._calls == []


def test_a_batch_that_ran_is_not_kept(loop_thread):
    ioloop, _ = loop_thread
    queue = CallQueue.of(ioloop)
    ran, done = threading.Event(), threading.Event()
    item = _Item()
    held = weakref.ref(item)
    queue.call_batched(lambda items: ran.set(), item)
    del item
    assert ran.wait(TIMEOUT)
    ioloop.add_callback(done.set)  # runs once the call that ran the batch has returned
    assert done.wait(TIMEOUT)
    gc.collect()
    assert held() is None


class _Device(DeviceServer):
    """A threaded server with one sensor."""

    def setup_sensors(self):
        """One integer sensor."""
        self.counter = Sensor.integer("counter", "A counter.", "", [0, 100])
        self.counter.set_value(0)
        self.add_sensor(self.counter)


def test_informs_and_sensor_updates_from_a_thread_arrive_in_order():
    server = _Device("127.0.0.1", 0)
    assert server.start(timeout=TIMEOUT)
    try:
        with LineClient(server.bind_address[1]) as client:
            client.greeting()
            informs, reply = client.request("?sensor-sampling counter auto")
            assert reply == "!sensor-sampling ok counter auto"
            assert [line.split()[-1] for line in informs] == ["0"]  # the first update
            # While the loop is busy, a thread sends an inform, updates the sensor and
            # sends another inform: the client must see them in that order.
            release = _block(server.ioloop)
            server.mass_inform(Message.inform("marker", "before"))
            server.counter.set_value(7)
            server.mass_inform(Message.inform("marker", "after"))
            release.set()
            lines = [client.readline() for _ in range(3)]
    finally:
        server.stop().result(TIMEOUT)
        server.join(timeout=TIMEOUT)
    assert lines[0] == b"#marker before"
    assert lines[1].startswith(b"#sensor-status ") and lines[1].endswith(b" counter nominal 7")
    assert lines[2] == b"#marker after"


class _OrderMixin:
    """Sensors A and B; ``?later`` is answered by the test, from another thread."""

    def setup_sensors(self):
        """Two integer sensors."""
        for name in "AB":
            self.add_sensor(Sensor.integer(name, "A sensor.", "", default=0,
                                           initial_status=Sensor.NOMINAL))
        self.later = Queue()

    def request_later(self, req, msg):
        """Reply later: the test does."""
        self.later.put(req)
        raise AsyncReply


class _ThreadedOrder(_OrderMixin, DeviceServer):
    pass


class _AsyncOrder(_OrderMixin, AsyncDeviceServer):
    pass


@pytest.fixture(params=["threaded", "async"])
def order_server(request):
    server = started(request.param, _ThreadedOrder, _AsyncOrder)
    yield server
    server.stop(timeout=TIMEOUT).result(TIMEOUT)
    server.join(timeout=TIMEOUT)


# What a thread sends between its sensor updates, and the line the client gets for it.
_SENDS = {
    "mass_inform": (lambda server, req: server.mass_inform(Message.inform("marker")),
                    "#marker"),
    "inform": (lambda server, req: req.client_connection.inform(Message.inform("marker")),
               "#marker"),
    "reply": (lambda server, req: req.reply("ok"), "!later ok"),
    "mass_send_message_from_thread": (
        lambda server, req: server._server.mass_send_message_from_thread(
            Message.inform("marker")), "#marker"),
    "send_message_from_thread": (
        lambda server, req: server._server.send_message_from_thread(
            req.client_connection._conn_id, Message.inform("marker")), "#marker"),
}


def _run_thread(server, work, busy_loop=True):
    """Run `work` in a thread of its own; with `busy_loop`, while the server's loop is
    kept busy, so that all the thread hands the loop waits there together."""
    release = _block(server.ioloop) if busy_loop else None
    try:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    finally:
        if release is not None:
            release.set()


@pytest.mark.parametrize("send", sorted(_SENDS))
def test_what_a_thread_does_reaches_the_client_in_its_order(order_server, send):
    # A hardware thread sets A, then B, sends a message, sets A again: as in katcp 0.9.3,
    # where each of them hopped to the loop on its own, the client gets them in that
    # order, though sensor updates cross to the loop in batches.
    send_message, sent_line = _SENDS[send]
    sensor_a, sensor_b = order_server.get_sensor("A"), order_server.get_sensor("B")
    with LineClient(order_server.bind_address[1]) as client:
        client.read_until(lambda line: line.startswith(b"#version-connect katcp-device"))
        for name in "AB":
            assert client.request("?sensor-sampling %s event" % name)[1] == (
                "!sensor-sampling ok %s event" % name)
        client.send("?later")
        req = order_server.later.get(timeout=TIMEOUT)

        def hardware():
            sensor_a.set_value(1)
            sensor_b.set_value(1)
            send_message(order_server, req)
            sensor_a.set_value(2)

        _run_thread(order_server, hardware)
        lines = [client.readline().decode() for _ in range(4)]
    got = ["%s=%s" % (line.split()[3], line.split()[5])
           if line.startswith("#sensor-status ") else line for line in lines]
    assert got == ["A=1", "B=1", sent_line, "A=2"]


@pytest.mark.parametrize("replaced", [False, True], ids=["removed", "replaced"])
@pytest.mark.parametrize("on_loop", [False, True], ids=["thread", "loop"])
def test_nothing_set_after_remove_sensor_returned_is_sent(order_server, on_loop, replaced):
    # remove_sensor() "also deregisters all clients observing the sensor": a reading the
    # thread set before it is sent, one it sets after it returned is not, though the loop
    # has not yet handled the earlier one (nor, the name taken by a new sensor, under
    # that name). Every other round the loop is busy while the thread works.
    rounds = 10
    sensors = [Sensor.integer("s%d" % n, "A sensor.", "", default=0,
                              initial_status=Sensor.NOMINAL) for n in range(rounds)]
    for sensor in sensors:
        order_server.add_sensor(sensor)
    order_server.SEND_INTERFACE_CHANGED = True
    with LineClient(order_server.bind_address[1]) as client:
        client.read_until(lambda line: line.startswith(b"#version-connect katcp-device"))
        got = []
        for number, sensor in enumerate(sensors):
            assert client.request("?sensor-sampling %s auto" % sensor.name)[1] == (
                "!sensor-sampling ok %s auto" % sensor.name)

            def hardware():
                sensor.set_value(1)
                order_server.remove_sensor(sensor)
                if replaced:
                    order_server.add_sensor(Sensor.integer(sensor.name, "New.", ""))
                sensor.set_value(2)
                order_server.mass_inform(Message.inform("marker"))

            if on_loop:
                done = threading.Event()
                order_server.ioloop.add_callback(lambda: (hardware(), done.set()))
                assert done.wait(TIMEOUT)
            else:
                _run_thread(order_server, hardware, busy_loop=number % 2 == 0)
            lines = client.read_until(lambda line: line == b"#marker")
            if b"#interface-changed sensor-list" not in lines:
                # Sent by the loop at the end of its turn: after the loop's own marker.
                assert on_loop
                lines += client.read_until(lambda line: line.startswith(b"#interface"))
            got.append([line.split()[-1].decode() for line in lines
                        if line.startswith(b"#sensor-status ")])
    assert got == [["1"]] * rounds


class _StallingSensor(Sensor):
    """A sensor whose next read(), once ``stall`` is set to (entered, release), sets
    `entered` and waits for `release`."""

    stall = None

    def read(self):
        stall, self.stall = self.stall, None
        if stall is not None:
            entered, release = stall
            entered.set()
            release.wait(TIMEOUT)
        return super().read()


@pytest.mark.parametrize("strategy", ["period 0.01", "event-rate 0 0.01",
                                      "differential-rate 1 0 0.01"])
def test_no_timed_sample_sends_a_value_set_after_remove_sensor_returned(order_server,
                                                                        strategy):
    # A timed sample reads the sensor when it runs: one that reads it after a thread's
    # remove_sensor() returned and the thread set it again sends nothing, though the
    # cancel of its strategy has not reached the loop yet.
    sensor = _StallingSensor(Sensor.INTEGER, "stalling", "A sensor.", "", [0, 10],
                             default=0, initial_status=Sensor.NOMINAL)
    order_server.add_sensor(sensor)
    with LineClient(order_server.bind_address[1]) as client:
        client.read_until(lambda line: line.startswith(b"#version-connect katcp-device"))
        assert client.request("?sensor-sampling stalling " + strategy)[1] == (
            "!sensor-sampling ok stalling " + strategy)
        entered, release = threading.Event(), threading.Event()
        sensor.stall = (entered, release)
        assert entered.wait(TIMEOUT)  # a timed sample is reading the sensor
        try:
            order_server.remove_sensor(sensor)
            sensor.set_value(2)
        finally:
            release.set()
        order_server.mass_inform(Message.inform("marker"))
        lines = client.read_until(lambda line: line == b"#marker")
    assert {line.split()[-1] for line in lines if line.startswith(b"#sensor-status ")} <= {
        b"0"}


def test_a_call_with_outcome_keeps_its_place_and_gives_its_outcome(loop_thread):
    ioloop, loop_ident = loop_thread
    queue = CallQueue.of(ioloop)
    ran = []

    def outcome(value):
        ran.append(value)
        return value, threading.get_ident()

    def broken():
        raise KeyError("broken")

    async def coroutine():
        return "awaited"

    release = _block(ioloop)
    try:
        queue.call_batched(ran.append, "before")
        first = queue.call_with_outcome(outcome, "outcome")
        queue.call_batched(ran.append, "after")
        failed = queue.call_with_outcome(broken)
        awaited = queue.call_with_outcome(coroutine)
    finally:
        release.set()
    assert first.result(TIMEOUT) == ("outcome", loop_ident)
    assert ran == [["before"], "outcome", ["after"]]
    with pytest.raises(KeyError):
        failed.result(TIMEOUT)
    assert awaited.result(TIMEOUT) == "awaited"


def test_a_holding_thread_may_wait_for_a_call_with_outcome(loop_thread):
    ioloop, _ = loop_thread
    queue = CallQueue.of(ioloop)
    ran = []
    queue.hold()
    try:
        queue.call(ran.append, "held")
        # Its held calls go first, rather than the wait waiting on itself.
        assert queue.call_with_outcome(ran.append, "outcome").result(TIMEOUT) is None
    finally:
        queue.release()
    assert ran == ["held", "outcome"]


def test_a_call_with_outcome_to_a_closed_loop_fails():
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    queue = CallQueue.of(ioloop)
    ioloop.close()
    with pytest.raises(RuntimeError):
        queue.call_with_outcome(len, "").result(TIMEOUT)
    # Also into a future of the caller's (the threaded server's loop work): it would
    # never resolve, and its request never be answered.
    mine = concurrent.futures.Future()
    assert queue.call_into(mine, len, "") is mine
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        mine.result(TIMEOUT)
