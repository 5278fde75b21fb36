"""What a client's request costs the loop: no timer for a blocking request, no by-name index
until one is needed.

* A thread blocked in ``blocking_request`` watches the deadline itself; the loop arms no
  timer for the request, and serves the deadline (with the usual timeout reply, never
  early) only once that wait runs out.
* The request table makes its by-name index (of the requests sent without an id) only
  when a message without an id asks for it while requests are in flight, and answers as
  if it had been kept all along.
* Deadlines take one timer, armed for the earliest and for none once all are served;
  only those given out of order take a heap entry, and answered ones do not pile up.
* A request made where the client's loop runs asks for no recorded thread id: the
  running loop says it is on the loop's thread.
* An inform of a request with an inform callback (each line of a device's sensor list,
  as an inspection streams it) reaches the callback straight from the request.
"""

import asyncio
import concurrent.futures
import logging
import signal
import sys
import threading
from unittest import mock

import pytest

from katcp.client import AsyncClient, BlockingClient
from katcp.client.requests import CallbackRequest, FutureRequest, ThreadRequest
from katcp.core import Message, MessageParser
from katcp.loop.crossing import call_on_loop
from katcp.loop.timer_heap import MIN_COMPACT_SIZE

from test_client import FakeServer, _timed_out_after
from test_client_package import _pending, _table

WAIT = 5.0


# -- blocking requests on a real socket -------------------------------------------------


@pytest.fixture
def server():
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture
def client(server):
    client = BlockingClient("127.0.0.1", server.port, timeout=WAIT)
    client.start()
    assert client.wait_protocol(WAIT)
    yield client
    client.stop(timeout=WAIT)
    client.join(timeout=WAIT)


def _on_loop(client, fn):
    return call_on_loop(client.ioloop, client.ioloop_thread_id, fn).result(WAIT)


def test_a_blocking_request_in_flight_holds_no_deadline_on_the_loop(server, client):
    replies = concurrent.futures.Future()

    def ask():
        replies.set_result(client.blocking_request(Message.request("silent"), timeout=0.5))

    threading.Thread(target=ask, daemon=True).start()
    assert server.next_line() == b"?silent[1]"
    # Sent and registered (the line went out first), yet no timer armed on the loop.
    assert _on_loop(client, lambda: (len(client._requests.by_id),
                                     client._requests._timeouts.armed)) == (1, False)
    reply, informs = replies.result(WAIT)
    # The thread's wait ran out; the loop's timer then answered, not before the deadline.
    assert reply.mid == b"1"
    assert _timed_out_after(reply) >= 0.5 - 0.001
    assert informs == []
    assert _on_loop(client, client._requests.held)["requests"] == 0


def test_a_blocking_request_answered_in_time_leaves_nothing_to_time(server, client):
    reply, _ = client.blocking_request(Message.request("echo", "a"), timeout=WAIT)
    assert str(reply) == "!echo[1] ok a"
    assert not _on_loop(client, lambda: client._requests._timeouts.armed)


class _TimeoutRecorder(BlockingClient):
    """Records the requests its loop timed out."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timed_out = concurrent.futures.Future()

    def _handle_timeout(self, msg_id, start_time):
        super()._handle_timeout(msg_id, start_time)
        if not self.timed_out.done():
            self.timed_out.set_result(msg_id)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def test_an_abandoned_blocking_request_still_times_out_on_the_loop(server):
    client = _TimeoutRecorder("127.0.0.1", server.port, timeout=WAIT)
    client.start()
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        assert client.wait_protocol(WAIT)
        # Ctrl-C while blocked: the thread stops waiting long before the deadline.
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            client.blocking_request(Message.request("silent"), timeout=1.0)
        assert client.timed_out.result(WAIT) == b"1"
        assert _on_loop(client, client._requests.held)["requests"] == 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)


# -- the table: deadlines watched by the waiting thread ---------------------------------


def _thread_request(name):
    return ThreadRequest(Message.request(name), concurrent.futures.Future())


def test_a_thread_watched_deadline_waits_until_the_thread_asks():
    table, clock, expired = _table()
    pending = _thread_request("a")
    table.add(7, "a", pending, 1.0)
    assert (pending.msg_id, pending.started, pending.deadline) == (7, 100.0, 101.0)
    clock.advance(5.0)
    assert expired == []
    table.watch(pending)
    clock.advance(0.0)
    assert expired == [(7, 100.0)]


def test_a_deadline_watched_early_is_served_when_due_not_before():
    table, clock, expired = _table()
    pending = _thread_request("a")
    table.add(1, "a", pending, 1.0)
    clock.advance(0.5)  # the thread's clock ran ahead of the loop's
    table.watch(pending)
    clock.advance(0.4)
    assert expired == []
    clock.advance(0.2)
    assert expired == [(1, 100.0)]


def test_watching_an_answered_or_disarmed_request_does_nothing():
    table, clock, expired = _table()
    answered, disarmed = _thread_request("a"), _thread_request("b")
    table.add(1, "a", answered, 1.0)
    table.add(2, "b", disarmed, 1.0)
    del table.by_id[1]
    disarmed.deadline = None
    clock.advance(2.0)
    table.watch(answered)
    table.watch(disarmed)
    clock.advance(1.0)
    assert expired == []
    assert table.held()["deadlines"] == 0


def test_a_thread_request_that_never_started_is_not_timed():
    table, clock, expired = _table()
    pending = _thread_request("a")  # e.g. refused before it reached the table
    table.watch(pending)
    clock.advance(5.0)
    assert expired == [] and table.held()["deadlines"] == 0


# -- the table: the by-name index, made when asked ---------------------------------------


def test_the_by_name_index_is_made_when_asked_and_kept_while_requests_are_in_flight():
    table, _clock, _expired = _table()
    first, other, second = _pending("a"), _pending("b"), _pending("a")
    table.add(1, "a", first, None)
    table.add(2, "b", other, None)
    assert table.held()["names"] == 0
    assert table.peek_by_name("a") == (1, first)
    assert table.held()["names"] == 2
    table.add(3, "a", second, None)  # kept up to date from now on
    del table.by_id[1]
    assert table.peek_by_name("a") == (3, second)
    assert table.peek_by_name("b") == (2, other)
    assert table.peek_by_name("c") == (None, None)


def test_answered_requests_behind_one_that_waits_do_not_pile_up_in_the_by_name_index():
    # One request that is never answered (no timeout) stays at the front of its name's
    # index; the thousands answered behind it must not stay with it.
    table, _clock, _expired = _table()
    waiting = _pending("a")
    table.add(0, "a", waiting, None)
    assert table.peek_by_name("a") == (0, waiting)
    for msg_id in range(1, 2001):
        table.add(msg_id, "a", _pending("a"), None)
        # Also the request whose arrival has the index rebuilt.
        assert msg_id in table._by_name["a"]
        del table.by_id[msg_id]  # answered by id
    assert table.held()["names"] <= 2 * 1 + 16 + 1
    last = _pending("a")
    table.add(2001, "a", last, None)
    assert table.peek_by_name("a") == (0, waiting)
    del table.by_id[0]
    assert table.peek_by_name("a") == (2001, last)


def _with_id(name, mid):
    return FutureRequest(Message.request(name, mid=mid), concurrent.futures.Future())


def test_the_by_name_index_holds_only_requests_sent_without_an_id():
    table, _clock, _expired = _table()
    older, without = _with_id("a", 1), _pending("a")
    table.add(b"1", "a", older, None)
    table.add(2, "a", without, None)
    assert table.peek_by_name("a") == (2, without)  # made now: the older one is left out
    assert table.held()["names"] == 1
    for mid in range(3, 1003):  # kept up to date, and bounded: those with ids stay out
        table.add(b"%d" % mid, "a", _with_id("a", mid), None)
    assert table.held()["names"] == 1
    del table.by_id[2]
    assert table.peek_by_name("a") == (None, None)
    assert table.held()["names"] == 0
    later = _pending("a")
    table.add(1003, "a", later, None)
    assert table.peek_by_name("a") == (1003, later)


def test_a_by_name_entry_whose_id_another_request_took_is_stale():
    # A _next_id replaced to repeat ids gives a later request of another name the id of
    # an answered one: a stray reply to the first name is not that request's.
    table, _clock, _expired = _table()
    first, keep = _pending("x"), _pending("z")
    table.add("1", "x", first, None)
    table.add("2", "z", keep, None)
    assert table.peek_by_name("x") == ("1", first)  # the index is made
    del table.by_id["1"]  # answered
    other = _pending("y")
    table.add("1", "y", other, None)
    assert table.peek_by_name("x") == (None, None)
    assert table.peek_by_name("y") == ("1", other)


def test_the_by_name_index_goes_once_nothing_is_in_flight():
    table, _clock, _expired = _table()
    first, later = _pending("a"), _pending("a")
    table.add(1, "a", first, None)
    assert table.peek_by_name("a") == (1, first)
    del table.by_id[1]
    assert table.peek_by_name("a") == (None, None)
    table.add(2, "a", later, None)
    assert table.held()["names"] == 0
    assert table.peek_by_name("a") == (2, later)


def test_the_index_follows_the_order_sent_across_names():
    table, _clock, _expired = _table()
    pendings = [_pending(name) for name in "abab"]
    for msg_id, pending in enumerate(pendings):
        table.add(msg_id, pending.msg.name, pending, None)
    del table.by_id[0]
    assert table.peek_by_name("a") == (2, pendings[2])
    assert table.peek_by_name("b") == (1, pendings[1])


# -- the table: deadlines in the order sent, and out of it -------------------------------


def test_deadlines_out_of_the_order_sent_expire_on_time():
    table, clock, expired = _table()
    table.add(0, "none", _pending("none"), None)  # never timed out, first in flight
    table.add(1, "long", _pending("long"), 5.0)
    table.add(2, "short", _pending("short"), 1.0)  # earlier than the one before it
    table.add(3, "mid", _pending("mid"), 3.0)
    table.add(4, "last", _pending("last"), 6.0)
    for step, expected in [(0.5, []), (1.0, [2]), (2.0, [2, 3]), (2.0, [2, 3, 1]),
                           (1.0, [2, 3, 1, 4])]:
        clock.advance(step)
        assert [msg_id for msg_id, _ in expired] == expected
    assert table.held()["deadlines"] == 0


def test_requests_due_together_expire_in_deadline_order():
    table, clock, expired = _table()
    table.add(1, "a", _pending("a"), 2.0)
    table.add(2, "a", _pending("a"), 1.0)
    table.add(3, "a", _pending("a"), 1.5)
    clock.advance(3.0)
    assert [msg_id for msg_id, _ in expired] == [2, 3, 1]


def test_a_served_deadline_is_not_served_twice():
    table, clock, expired = _table()
    table.add(1, "a", _pending("a"), 1.0)  # the expire callback here leaves it in the table
    table.add(2, "a", _pending("a"), 2.0)
    clock.advance(1.5)
    clock.advance(1.0)
    assert expired == [(1, 100.0), (2, 100.0)]


def test_a_thread_request_due_when_the_timer_fires_for_another_is_served_too():
    table, clock, expired = _table()
    watched = _thread_request("a")
    table.add(1, "a", watched, 1.0)
    table.add(2, "a", _pending("a"), 1.0)
    clock.advance(1.5)
    assert expired == [(1, 100.0), (2, 100.0)]


def _timer_at(clock):
    """When the timers still armed on `clock` are due."""
    return [timer.when for timer in clock.timers if not timer.cancelled]


def test_one_timer_is_armed_for_the_earliest_deadline_and_none_once_all_are_served():
    table, clock, expired = _table()
    table.add(1, "a", _pending("a"), 2.0)
    table.add(2, "b", _pending("b"), 5.0)
    table.add(3, "c", _pending("c"), 4.0)  # earlier than the one before it
    table.add(4, "d", _pending("d"), 1.0)  # and earlier still
    # Four deadlines in flight, the two given out of order also held in the heap.
    assert table.held()["deadlines"] == 6
    assert _timer_at(clock) == [101.0]
    for step, served, next_timer in [(1.5, [4], [102.0]), (1.0, [4, 1], [104.0]),
                                     (2.0, [4, 1, 3], [105.0]), (1.0, [4, 1, 3, 2], [])]:
        clock.advance(step)
        assert [msg_id for msg_id, _ in expired] == served
        assert _timer_at(clock) == next_timer
    assert not table._timeouts.armed


def test_requests_due_at_the_same_instant_expire_in_the_order_sent():
    table, clock, expired = _table()
    table.add(b"8", "a", _pending("a"), 2.0)
    table.add(b"9", "a", _pending("a"), 1.0)
    table.add(b"10", "a", _pending("a"), 1.0)
    clock.advance(3.0)
    assert [msg_id for msg_id, _ in expired] == [b"9", b"10", b"8"]


def test_deadlines_of_answered_requests_do_not_pile_up_out_of_order():
    table, clock, expired = _table()
    table.add(0, "long", _pending("long"), 1000.0)
    # Out of order too, and unanswered: in the heap through every compaction.
    table.add("early", "early", _pending("early"), 1.5)
    # Each short request is answered before its deadline, which was given out of order.
    for msg_id in range(1, 3 * MIN_COMPACT_SIZE):
        table.add(msg_id, "short", _pending("short"), 1.0)
        del table.by_id[msg_id]
    live = _pending("live")
    table.add("live", "live", live, 2.0)
    held = table.held()["deadlines"]
    # Those of the three in flight, the heap entries of two and at most a heap's worth.
    assert 5 <= held <= 3 + MIN_COMPACT_SIZE
    clock.advance(2.5)
    assert expired == [("early", 100.0), ("live", 100.0)]


def _sent_with_id(name, msg_id):
    return FutureRequest(Message.request(name, mid=str(msg_id)), concurrent.futures.Future())


def test_requests_whose_futures_were_cancelled_do_not_pile_up():
    # Without a deadline nothing else would ever drop one: a program that gives up its
    # waits (asyncio.wait_for) on a device that does not answer grew the table for ever.
    table, _clock, _expired = _table()
    waiting = [_pending("waiting") for _ in range(3)]
    for msg_id, pending in enumerate(waiting):
        table.add(("waiting", msg_id), "waiting", pending, None)
    called_back = CallbackRequest(Message.request("cb"), None, None, None, logging.getLogger())
    table.add("cb", "cb", called_back, None)
    for msg_id in range(4 * MIN_COMPACT_SIZE):
        abandoned = _sent_with_id("abandoned", msg_id)
        table.add(msg_id, "abandoned", abandoned, None)
        abandoned.future.cancel()
    assert table.held()["requests"] <= 4 + MIN_COMPACT_SIZE + 1
    # Those still waited for are kept, in the order sent.
    kept = [pending for pending in table.by_id.values() if pending.msg.name != "abandoned"]
    assert kept == waiting + [called_back]
    assert table.peek_by_name("waiting") == (("waiting", 0), waiting[0])
    # One sent without an id is kept: replies are matched to those in the order sent.
    unnumbered = _pending("unnumbered")
    table.add("unnumbered", "unnumbered", unnumbered, None)
    unnumbered.future.cancel()
    for msg_id in range(4 * MIN_COMPACT_SIZE):
        abandoned = _sent_with_id("abandoned", msg_id)
        table.add(msg_id, "abandoned", abandoned, None)
        abandoned.future.cancel()
    assert table.peek_by_name("unnumbered") == ("unnumbered", unnumbered)
    # Many in flight put the next sweep off; once they are drained (a closed
    # connection), abandoned ones are dropped as soon again.
    for msg_id in range(4 * MIN_COMPACT_SIZE):
        table.add(("many", msg_id), "many", _pending("many"), None)
    table.drain()
    for msg_id in range(2 * MIN_COMPACT_SIZE):
        abandoned = _sent_with_id("abandoned", msg_id)
        table.add(msg_id, "abandoned", abandoned, None)
        abandoned.future.cancel()
    assert table.held()["requests"] <= MIN_COMPACT_SIZE + 1


def test_an_abandoned_future_request_is_forgotten_over_a_socket(server):
    # The server never answers ?silent; the client has no timeout.
    async def abandon():
        client = AsyncClient("127.0.0.1", server.port, timeout=None)
        client.set_ioloop()
        client.start()
        try:
            await client.until_protocol(WAIT)
            for _ in range(2 * MIN_COMPACT_SIZE + 2):
                client.future_request(Message.request("silent")).cancel()
            held = client._requests.held()["requests"]
            reply, _ = await client.future_request(Message.request("echo", "x"))
            return held, str(reply)
        finally:
            client.stop()
            await client.until_stopped(WAIT)

    held, reply = asyncio.run(asyncio.wait_for(abandon(), WAIT))
    assert held <= MIN_COMPACT_SIZE + 1
    assert reply == "!echo[%d] ok x" % (2 * MIN_COMPACT_SIZE + 3)


def test_a_table_drained_by_a_closed_connection_times_new_requests_afresh():
    table, clock, expired = _table()
    table.add(0, "untimed", _pending("untimed"), None)
    table.add(1, "a", _pending("a"), 5.0)  # in order: nothing before it was timed
    assert table.held()["deadlines"] == 1
    table.add(2, "b", _pending("b"), 1.0)
    assert len(table.drain()) == 3
    assert table.held() == {"requests": 0, "names": 0, "deadlines": 0}
    assert not table._timeouts.armed and _timer_at(clock) == []
    # The same loop after a reconnection: the same deadlines' bookkeeping, emptied.
    table.add(3, "untimed", _pending("untimed"), None)
    table.add(4, "a", _pending("a"), 2.0)
    assert table.held()["deadlines"] == 1
    table.add(5, "b", _pending("b"), 1.0)
    clock.advance(1.5)
    assert expired == [(5, 100.0)]
    clock.advance(1.0)
    assert [msg_id for msg_id, _ in expired] == [5, 4]


def test_a_deadline_out_of_order_after_many_others_is_served_on_time():
    table, clock, expired = _table()
    table.add(0, "long", _pending("long"), 1000.0)
    # More deadlines given out of order (and answered) than the clock's seconds.
    for msg_id in range(1, 200):
        table.add(msg_id, "short", _pending("short"), 50.0)
        del table.by_id[msg_id]
    table.add("live", "live", _pending("live"), 1.0)
    clock.advance(1.5)
    assert expired == [("live", 100.0)]


# -- the request fast path and the sending hooks ------------------------------------------


def _echo_x_is_sent_as_recorded(client, sent):
    """Start `client`, make ?echo x and check that the hook recorded it in `sent`."""
    client.start()
    try:
        assert client.wait_protocol(WAIT)
        reply, _ = client.blocking_request(Message.request("echo", "x"))
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    assert str(reply) == "!echo[1] ok x"
    assert sent == ["?echo[1] x"]


@pytest.mark.parametrize("hook", ["send_request", "send_message"])
def test_a_sending_hook_patched_on_the_base_class_is_not_bypassed(server, hook, monkeypatch):
    from katcp.client import DeviceClient
    sent = []
    original = getattr(DeviceClient, hook)

    def recording(self, msg):
        sent.append(str(msg))
        original(self, msg)
    # Patched where the fast path's own methods live, after the client module was loaded.
    monkeypatch.setattr(DeviceClient, hook, recording)
    _echo_x_is_sent_as_recorded(BlockingClient("127.0.0.1", server.port, timeout=WAIT),
                                sent)


@pytest.mark.parametrize("hook", ["send_request", "send_message"])
def test_a_sending_hook_replaced_by_a_plain_function_on_the_instance_is_not_bypassed(
        server, hook):
    from katcp.client import DeviceClient
    sent = []
    client = BlockingClient("127.0.0.1", server.port, timeout=WAIT)
    original = getattr(DeviceClient, hook)

    def recording(msg):  # a function, not a method: it has no __func__
        sent.append(str(msg))
        original(client, msg)
    setattr(client, hook, recording)
    _echo_x_is_sent_as_recorded(client, sent)


def test_a_connected_async_client_has_no_more_attributes_than_cpython_keeps_in_place(server):
    # CPython 3.11 keeps at most 29 attributes of an instance in the object itself, where
    # the specialised bytecode reads them fastest; one more gives the instance a dict of
    # them, and every attribute read and method call of a request slows (1.7k of about
    # 92k instructions per future_request).
    client = AsyncClient("127.0.0.1", server.port, timeout=WAIT)
    client.start()
    try:
        assert client.wait_protocol(WAIT)
        reply, _ = _on_loop(client, lambda: client.future_request(Message.request("echo")))
        assert reply.reply_ok()
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    assert len(vars(client)) <= 29, sorted(vars(client))


def test_clients_read_into_the_receive_buffer_of_their_loop(server, loop_manager):
    # One buffer per loop (256 KiB), shared by the connections it reads, as the server's
    # are: not one per connection, nor one per thread (a loop may move to another one).
    from katcp.transport.buffers import loop_receive_view
    shared = [AsyncClient("127.0.0.1", server.port, timeout=WAIT) for _ in range(2)]
    own = BlockingClient("127.0.0.1", server.port, timeout=WAIT)
    for client in shared:
        client.set_ioloop(loop_manager.get_ioloop())
    clients = shared + [own]
    for client in clients:
        client.start()
    try:
        for client in clients:
            assert client.wait_protocol(WAIT)  # its greeting read through the buffer
        views = [client._protocol._receive_view for client in clients]
        assert views[0] is views[1] is loop_receive_view(loop_manager.get_ioloop())
        assert views[2] is loop_receive_view(own.ioloop) and views[2] is not views[0]
    finally:
        for client in clients:
            client.stop(timeout=WAIT)
            client.join(timeout=WAIT)


@pytest.mark.parametrize("special", [b"\x0b", b"\x0c", b"\x00", b"\x1b"])
@pytest.mark.parametrize("split", [False, True])
def test_a_byte_that_parse_searches_lines_for_is_found_after_chunks_without_one(
        server, special, split, caplog):
    # A client searches each chunk for these bytes and parses the lines of chunks without
    # one unsearched: the first chunk that holds one, even in an unended line that a later
    # chunk ends, must have its lines searched (and so must those of the chunks after it).
    seen = []
    client = AsyncClient("127.0.0.1", server.port, timeout=WAIT)
    client.unhandled_inform = seen.append
    client.start()

    def feed():
        protocol = client._protocol
        for arg in (b"a", b"b"):
            data = b"#note " + arg + special + b"x y\n#later\n"
            if split:
                protocol.data_received(data[:8])  # ends just after the byte
                data = data[8:]
            protocol.data_received(data)

    try:
        assert client.wait_protocol(WAIT)
        with caplog.at_level(logging.ERROR):
            _on_loop(client, feed)
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    got = [(msg.name, msg.arguments) for msg in seen if msg.name in ("note", "later")]
    errors = [record.getMessage() for record in caplog.records
              if record.levelno >= logging.ERROR]
    if special in b"\x0b\x0c":
        # Not separators in KATCP (bytes.split() would take them for ones).
        assert got == [("note", [b"a" + special + b"x", b"y"]), ("later", []),
                       ("note", [b"b" + special + b"x", b"y"]), ("later", [])]
        assert errors == []
    else:
        assert got == [("later", []), ("later", [])]
        assert len(errors) == 2 and all("Unescaped special character" in error
                                        for error in errors)


def _echo_on_a_new_client(server):
    """The reply to ?echo of a new AsyncClient of `server`, stopped after it."""
    client = AsyncClient("127.0.0.1", server.port, timeout=WAIT)
    client.start()
    try:
        assert client.wait_protocol(WAIT)
        reply, _ = _on_loop(client, lambda: client.future_request(Message.request("echo")))
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    return reply

def test_a_parser_whose_parse_takes_the_line_alone_is_given_the_line_alone(server):
    # 0.9.3's MessageParser.parse(line): a subclass of that signature put in place of the
    # client's parser still parses every line.
    import katcp.client.protocol
    parsed = []

    class RecordingParser(katcp.client.protocol.MessageParser):
        def parse(self, line):
            parsed.append(line)
            return super().parse(line)

    with mock.patch.object(katcp.client.protocol, "MessageParser", RecordingParser):
        reply = _echo_on_a_new_client(server)
    assert reply.reply_ok()
    assert parsed[0].startswith(b"#version-connect") and parsed[-1] == b"!echo[1] ok"


def test_a_mock_put_in_place_of_the_parser_class_is_given_each_line(server):
    # mock.patch("katcp.client.MessageParser"): the instance's class, a MagicMock's, has
    # no parse of its own to compare (AttributeError made every connection fail).
    import katcp.client
    with mock.patch("katcp.client.MessageParser") as parser_class:
        parse = parser_class.return_value.parse
        parse.side_effect = MessageParser().parse
        reply = _echo_on_a_new_client(server)
    assert katcp.client.MessageParser is MessageParser
    assert reply.reply_ok()
    assert parse.call_args_list[-1] == mock.call(b"!echo[1] ok")


def test_a_chunk_that_is_no_bytes_is_parsed_as_bytes_would_be(server):
    # A transport of connect_transport()'s own may hand the protocol a bytearray: its
    # lines are parsed with every check (an unchecked one would meet a bytearray header).
    seen = []
    client = AsyncClient("127.0.0.1", server.port, timeout=WAIT)
    client.unhandled_inform = seen.append
    client.start()
    try:
        assert client.wait_protocol(WAIT)
        _on_loop(client, lambda: client._protocol.data_received(bytearray(b"#note a b\n")))
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    assert [(msg.name, msg.arguments) for msg in seen if msg.name == "note"] == [
        ("note", [b"a", b"b"])]
    assert type(seen[-1].arguments[0]) is bytes


@pytest.mark.parametrize("method", ["future_request", "callback_request", "send_message"])
def test_a_request_made_on_the_running_loop_asks_for_no_thread_id(server, method):
    client = AsyncClient("127.0.0.1", server.port, timeout=WAIT)
    client.start()
    called = []
    replies = concurrent.futures.Future()

    def profile(frame, event, arg):
        if event == "call":
            called.append(frame.f_code.co_name)

    def request():
        sys.setprofile(profile)
        try:
            if method == "future_request":
                client.future_request(Message.request("echo", "x")).add_done_callback(
                    lambda future: replies.set_result(future.result()[0]))
            elif method == "callback_request":
                client.callback_request(Message.request("echo", "x"),
                                        reply_cb=replies.set_result)
            else:
                client.send_message(Message.request("echo", "x", mid=1))
        finally:
            sys.setprofile(None)

    try:
        assert client.wait_protocol(WAIT)
        _on_loop(client, request)
        assert server.next_line() == b"?echo[1] x"
        if method != "send_message":
            assert str(replies.result(WAIT)) == "!echo[1] ok x"
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
    assert method in called  # the profile saw the call
    assert not {"on_thread", "ioloop_thread_id", "loop_thread_id"} & set(called)


# -- informs streamed to a callback -----------------------------------------------------


@pytest.mark.parametrize("user_data", [None, (), ("u", 2)])
def test_a_streamed_inform_reaches_its_callback_without_a_call_in_between(user_data):
    callers = []

    def inform_cb(msg, *args):
        callers.append((sys._getframe(1).f_code.co_name, msg.arguments, args))

    pending = CallbackRequest(Message.request("sensor-list"), None, inform_cb, user_data,
                              logging.getLogger("katcp.test"))
    assert pending.on_inform(Message.inform("sensor-list", "a.b")) is True
    [(caller, arguments, args)] = callers
    # "in": a mutation tool runs the method under a longer name of its own.
    assert "on_inform" in caller
    assert (arguments, args) == ([b"a.b"], tuple(user_data or ()))


def test_a_failing_streamed_inform_callback_is_logged_and_delivered(caplog):
    def inform_cb(msg):
        raise RuntimeError("boom")

    pending = CallbackRequest(Message.request("sensor-list"), None, inform_cb, None,
                              logging.getLogger("katcp.test"))
    with caplog.at_level(logging.ERROR, "katcp.test"):
        assert pending.on_inform(Message.inform("sensor-list", "a.b")) is True
    assert [r.getMessage() for r in caplog.records] == ["Callback inform sensor-list FAIL"]
    assert CallbackRequest(Message.request("x"), None, None, None,
                           logging.getLogger("katcp.test")).on_inform(
        Message.inform("x")) is False


def test_a_request_without_an_id_abandoned_among_many_still_takes_its_own_reply(server):
    # Sent without ids, replies are matched in the order sent: a cancelled request dropped
    # from the table let its reply answer the next request of its name.
    async def abandon_then_ask():
        client = AsyncClient("127.0.0.1", server.port, timeout=None)
        client.set_ioloop()
        client.start()
        try:
            await client.until_protocol(WAIT)
            for _ in range(MIN_COMPACT_SIZE + 2):
                client.future_request(Message.request("echo", "abandoned"),
                                      use_mid=False).cancel()
            reply, _ = await client.future_request(Message.request("echo", "asked"),
                                                   use_mid=False)
            return str(reply)
        finally:
            client.stop()
            await client.until_stopped(WAIT)

    assert asyncio.run(asyncio.wait_for(abandon_then_ask(), WAIT)) == "!echo ok asked"
