"""How a client matches replies and informs to its requests in flight, over a socket.

A scripted server answers each request with chosen lines, so ids, names and order can be
anything a server might send. The rules: a message with an id belongs to the request with
that id; a message without one belongs to the oldest request of that name sent without
an id; anything else goes to the client's own inform/reply handlers.
"""

import concurrent.futures
import contextlib
import logging
import queue
import re

import pytest

from katcp.client import BlockingClient, KatcpClientError
from katcp.client.requests import FutureRequest
from katcp.core import KatcpSyntaxError, Message

from test_client import FakeServer, WAIT, _closed_port, _split_request, scripted_answer


def _answer(line):
    name, mid, rest = _split_request(line)
    if name == b"mixed":
        # A mid-less inform of the same name between the request's own informs.
        return [b"#mixed" + mid + b" own-1", b"#mixed stray", b"#mixed" + mid + b" own-2",
                b"!mixed" + mid + b" ok"]
    if name == b"other-id":
        # An inform and a reply for an id nobody used, then the real answer.
        return [b"#other-id[999] stray", b"!other-id[999] ok stray",
                b"#other-id" + mid + b" own", b"!other-id" + mid + b" ok own"]
    if name == b"pair":
        # Requests with an id wait; one without is answered, then the waiting ones.
        if mid:
            _answer.held.append(mid)
            return []
        lines = [b"#pair nomid", b"!pair ok nomid"]
        for held in _answer.held:
            lines += [b"#pair" + held + b" mid", b"!pair" + held + b" ok mid"]
        _answer.held = []
        return lines
    if name == b"hold":
        _answer.held.append(mid)
        if rest != b"release":
            return []
        # Answer every held ?hold, newest first, with informs and replies.
        lines = []
        for held in reversed(_answer.held):
            lines += [b"#hold" + held + b" for" + held, b"!hold" + held + b" ok" + held]
        _answer.held = []
        return lines
    return scripted_answer(line)


class RecordingClient(BlockingClient):
    """Records the informs and replies that no request claimed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unclaimed = queue.Queue()

    def unhandled_inform(self, msg):
        self.unclaimed.put(str(msg))

    def unhandled_reply(self, msg):
        self.unclaimed.put(str(msg))

    def inform_mixed(self, msg):
        self.unclaimed.put(str(msg))


@pytest.fixture
def fake():
    _answer.held = []
    server = FakeServer(answer=_answer).start()
    yield server
    server.close()


@pytest.fixture
def client(fake):
    with _running(RecordingClient("127.0.0.1", fake.port, timeout=WAIT)) as client:
        yield client


@contextlib.contextmanager
def _running(client):
    """`client` started and speaking to its server; stopped on leaving."""
    client.start(timeout=WAIT)
    try:
        assert client.wait_protocol(WAIT)
        yield client
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)


def test_midless_inform_is_not_part_of_a_request_with_an_id(client):
    reply, informs = client.blocking_request(Message.request("mixed"), timeout=WAIT)
    assert str(reply) == "!mixed[1] ok"
    assert [str(m) for m in informs] == ["#mixed[1] own-1", "#mixed[1] own-2"]
    assert client.unclaimed.get(timeout=WAIT) == "#mixed stray"


def test_midless_informs_belong_to_a_request_without_an_id(client):
    reply, informs = client.blocking_request(Message.request("mixed"), timeout=WAIT,
                                             use_mid=False)
    assert str(reply) == "!mixed ok"
    assert [str(m) for m in informs] == ["#mixed own-1", "#mixed stray", "#mixed own-2"]
    assert client.unclaimed.empty()


def test_messages_for_another_id_are_not_claimed(client):
    reply, informs = client.blocking_request(Message.request("other-id"), timeout=WAIT)
    assert str(reply) == "!other-id[1] ok own"
    assert [str(m) for m in informs] == ["#other-id[1] own"]
    unclaimed = {client.unclaimed.get(timeout=WAIT) for _ in range(2)}
    assert unclaimed == {"#other-id[999] stray", "!other-id[999] ok stray"}


def send(client, msg, use_mid=None):
    """Send a request without waiting; return a future of (reply, informs) as text."""
    future = concurrent.futures.Future()
    informs = []

    def on_reply(reply):
        future.set_result((str(reply), [str(m) for m in informs]))

    client.callback_request(msg, reply_cb=on_reply, inform_cb=informs.append,
                            timeout=WAIT, use_mid=use_mid)
    return future


def test_replies_with_ids_answer_their_own_request_in_any_order(client):
    futures = [send(client, Message.request("hold")), send(client, Message.request("hold")),
               send(client, Message.request("hold", "release"))]
    results = [future.result(WAIT) for future in futures]
    assert results == [
        ("!hold[1] ok[1]", ["#hold[1] for[1]"]),
        ("!hold[2] ok[2]", ["#hold[2] for[2]"]),
        ("!hold[3] ok[3]", ["#hold[3] for[3]"]),
    ]


def test_midless_replies_answer_requests_of_that_name_oldest_first(client):
    futures = [send(client, Message.request("hold", str(i)), use_mid=False)
               for i in range(2)]
    futures.append(send(client, Message.request("hold", "release"), use_mid=False))
    # The server answers newest first, but without ids only the order can match them.
    results = [future.result(WAIT) for future in futures]
    assert results == [("!hold ok", ["#hold for"])] * 3


def test_midless_messages_answer_the_request_without_an_id_not_an_older_one_with_one(
        client):
    # A server puts a request's id in its informs and reply (KATCP 5.1 section 2.2):
    # mid-less ones are not ?pair[1]'s, older as it is.
    with_id = send(client, Message.request("pair"))
    without = send(client, Message.request("pair"), use_mid=False)
    assert without.result(WAIT) == ("!pair ok nomid", ["#pair nomid"])
    assert with_id.result(WAIT) == ("!pair[1] ok mid", ["#pair[1] mid"])
    assert client.unclaimed.empty()
    assert client._requests.held()["requests"] == 0


def test_midless_requests_of_other_names_are_not_confused(client):
    hold = send(client, Message.request("hold"), use_mid=False)
    echo = send(client, Message.request("echo", "x"), use_mid=False)
    assert echo.result(WAIT) == ("!echo ok x", [])
    assert not hold.done()
    send(client, Message.request("hold", "release"), use_mid=False).result(WAIT)
    assert hold.result(WAIT) == ("!hold ok", ["#hold for"])


def test_a_request_id_given_by_the_caller_is_kept(client):
    reply, _ = client.blocking_request(Message.request("echo", "y", mid=77), timeout=WAIT)
    assert str(reply) == "!echo[77] ok y"
    # A caller's id takes no number from the client's own sequence.
    reply, _ = client.blocking_request(Message.request("echo", "z"), timeout=WAIT)
    assert reply.mid == b"1"


def test_an_id_in_flight_cannot_be_reused(client):
    held = send(client, Message.request("hold", mid=5))
    with pytest.raises(RuntimeError,
                       match=r"^Message id '5' already in use by a request in flight$"):
        client.blocking_request(Message.request("hold", mid=5), timeout=WAIT)
    send(client, Message.request("hold", "release")).result(WAIT)
    assert held.result(WAIT) == ("!hold[5] ok[5]", ["#hold[5] for[5]"])


def test_a_callback_request_with_an_id_in_flight_gets_a_fail_reply(client):
    # From the client's own thread or another: reply_cb always hears of it.
    held = send(client, Message.request("hold", mid=5))
    assert send(client, Message.request("echo", mid=5)).result(WAIT) == (
        "!echo[5] fail Message\\_id\\_'5'\\_already\\_in\\_use\\_by\\_a\\_request\\_in\\_flight", [])
    send(client, Message.request("hold", "release")).result(WAIT)
    assert held.result(WAIT)[0] == "!hold[5] ok[5]"


def test_drawn_ids_skip_an_id_a_caller_gave_a_request_in_flight(client):
    held = send(client, Message.request("hold", mid=2))
    replies = [client.blocking_request(Message.request("echo", n), timeout=WAIT)[0]
               for n in range(2)]
    assert [str(reply) for reply in replies] == ["!echo[1] ok 0", "!echo[3] ok 1"]
    send(client, Message.request("hold", "release")).result(WAIT)
    assert held.result(WAIT)[0] == "!hold[2] ok[2]"


def test_drawn_ids_start_again_at_one_after_the_largest(client):
    client._last_msg_id = 2 ** 31 - 2
    replies = [client.blocking_request(Message.request("echo"), timeout=WAIT)[0]
               for _ in range(2)]
    assert [reply.mid for reply in replies] == [b"2147483647", b"1"]


def test_a_request_without_an_id_redrawn_past_one_in_flight_still_goes_without(fake, client):
    # The drawn id is the table's key of a request sent without one; after the largest,
    # the count comes round to the key of one still in flight: the next is drawn, and
    # the request still goes out without an id (the server supports them).
    held = send(client, Message.request("hold"), use_mid=False)
    assert fake.received.get(timeout=WAIT) == b"?hold"
    client._last_msg_id = 2 ** 31 - 1
    assert send(client, Message.request("echo", "x"), use_mid=False).result(WAIT) == (
        "!echo ok x", [])
    assert fake.received.get(timeout=WAIT) == b"?echo x"
    send(client, Message.request("hold", "release")).result(WAIT)
    assert fake.received.get(timeout=WAIT) == b"?hold[3] release"
    assert held.result(WAIT) == ("!hold ok", ["#hold for"])


def _requesting(client, how, msg):
    """Send `msg` by the client's request method `how` and wait for its reply."""
    if how == "request":
        client.request(msg)
        client.unclaimed.get(timeout=WAIT)
    elif how == "blocking_request":
        client.blocking_request(msg, timeout=WAIT)
    elif how == "callback_request":
        send(client, msg).result(WAIT)
    else:  # from another thread, future_request waits for the reply itself
        client.future_request(msg, timeout=WAIT)


@pytest.mark.parametrize("how", ["request", "blocking_request", "callback_request",
                                 "future_request"])
def test_drawn_ids_come_from_next_id_replaced_on_the_instance(fake, client, how):
    # As 0.9.3's own tests do ("mock our mid generator"): every id the client draws
    # comes from _next_id, looked up on the instance, as text.
    ids = iter(["500", "501", "502"])
    client._next_id = lambda: next(ids)
    _requesting(client, how, Message.request("echo", "a"))
    assert fake.received.get(timeout=WAIT) == b"?echo[500] a"
    # A request sent without an id draws one too (its key in the request table).
    assert client.blocking_request(Message.request("echo", "b"), timeout=WAIT,
                                   use_mid=False)[0].mid is None
    assert fake.received.get(timeout=WAIT) == b"?echo b"
    _requesting(client, how, Message.request("echo", "c"))
    assert fake.received.get(timeout=WAIT) == b"?echo[502] c"


def test_a_replaced_next_id_stuck_on_an_id_in_flight_is_refused_not_spun_on(client):
    # A counter finds a free id within as many draws as there are requests in flight;
    # a replacement that keeps giving a used one made the loop spin for ever.
    held = send(client, Message.request("hold", mid=7))
    client._next_id = lambda: "7"
    with pytest.raises(RuntimeError, match=r"^Message id '7' drawn by _next_id\(\) already "
                                           r"in use by a request in flight$"):
        client.blocking_request(Message.request("echo"), timeout=WAIT)
    del client._next_id
    assert str(client.blocking_request(Message.request("echo", "x"), timeout=WAIT)[0]) == (
        "!echo[1] ok x")
    send(client, Message.request("hold", "release")).result(WAIT)
    assert held.result(WAIT)[0] == "!hold[7] ok[7]"


@pytest.mark.parametrize("drawn, wire", [("7", b"7"), (8, b"8"), (b"9", b"9")])
def test_a_replaced_next_id_may_give_text_int_or_bytes(drawn, wire):
    client = BlockingClient("127.0.0.1", 1)
    client._next_id = lambda: drawn
    msg = Message.request("echo")
    assert client._assign_mid(msg, True) == wire and msg.mid == wire
    # Sent without an id, the drawn one is the request's key as given.
    assert client._assign_mid(Message.request("echo"), False) == drawn


@pytest.mark.parametrize("drawn", ["x1", "\u0663", -1, None])
def test_a_replaced_next_id_giving_no_id_is_refused(drawn):
    client = BlockingClient("127.0.0.1", 1)
    client._next_id = lambda: drawn
    msg = Message.request("echo")
    with pytest.raises(KatcpSyntaxError):
        client._assign_mid(msg, True)
    assert msg.mid is None


def test_timed_out_request_ignores_its_late_reply(client):
    # The request times out first (ordering, not timing: the reply comes only after the
    # timeout reply was seen); its late reply then goes to the unhandled handler.
    reply, _ = client.blocking_request(Message.request("hold"), timeout=0.1)
    assert reply.arguments[0] == b"fail" and b"timed out" in reply.arguments[1]
    released, _ = client.blocking_request(Message.request("hold", "release"), timeout=WAIT)
    assert str(released) == "!hold[2] ok[2]"
    assert client.unclaimed.get(timeout=WAIT) == "#hold[1] for[1]"
    assert client.unclaimed.get(timeout=WAIT) == "!hold[1] ok[1]"


def test_many_requests_in_flight_keep_their_own_deadlines(client):
    # More requests in flight than the timeout heap keeps before compacting itself.
    held = [send(client, Message.request("hold")) for _ in range(1100)]
    reply, _ = client.blocking_request(Message.request("silent"), timeout=0.2)
    assert reply.arguments[0] == b"fail" and b"timed out" in reply.arguments[1]
    assert not any(future.done() for future in held)
    send(client, Message.request("hold", "release")).result(WAIT)
    replies = [future.result(WAIT)[0] for future in held]
    assert replies == ["!hold[%d] ok[%d]" % (i, i) for i in range(1, 1101)]


def _waited(reply_text):
    """Seconds a timeout reply says its request waited (timers never fire early)."""
    match = re.search(r"timed\\_out\\_after\\_(\d+\.\d+)\\_seconds", reply_text)
    assert match, reply_text
    return float(match.group(1))


def test_a_longer_timeout_is_not_expired_with_a_shorter_one(client):
    short = send_with_timeout(client, Message.request("silent"), 0.2)
    long = send_with_timeout(client, Message.request("silent"), 2.5)
    # Timers never fire early; the short one must not wait for the long one's timer.
    assert 0.2 - 0.001 <= _waited(short.result(WAIT)) < 2.5
    assert 2.5 - 0.001 <= _waited(long.result(WAIT)) < 60


def send_with_timeout(client, msg, timeout):
    future = concurrent.futures.Future()
    client.callback_request(msg, reply_cb=lambda reply: future.set_result(str(reply)),
                            timeout=timeout)
    return future


def test_informs_of_a_request_without_an_inform_callback_go_to_the_handlers(client):
    replies = queue.Queue()
    client.callback_request(Message.request("mixed"), reply_cb=replies.put)
    assert str(replies.get(timeout=WAIT)) == "!mixed[1] ok"
    assert [client.unclaimed.get(timeout=WAIT) for _ in range(3)] == [
        "#mixed[1] own-1", "#mixed stray", "#mixed[1] own-2"]


def test_failing_callbacks_are_logged_and_the_client_goes_on(fake, client, caplog):
    def broken(msg):
        raise ValueError("broken callback")

    with caplog.at_level(logging.ERROR, logger="katcp.client"):
        done = queue.Queue()
        client.callback_request(Message.request("informs", 1), inform_cb=broken,
                                reply_cb=lambda msg: (done.put(msg), broken(msg)))
        assert str(done.get(timeout=WAIT)) == "!informs[1] ok 1"
        client.callback_request(Message.request("silent"), timeout=0.1,
                                reply_cb=lambda msg: (done.put(msg), broken(msg)))
        assert done.get(timeout=WAIT).arguments[0] == b"fail"
        client.callback_request(Message.request("silent"), timeout=WAIT,
                                reply_cb=lambda msg: (done.put(msg), broken(msg)))
        reply, _ = client.blocking_request(Message.request("echo", "on"), timeout=WAIT)
        assert str(reply) == "!echo[4] ok on"
        # Requests still waiting when the connection drops fail, through the callback.
        fake.drop_connections()
        assert done.get(timeout=WAIT).arguments[0] == b"fail"
        # Once the client is back, the loop has long finished with the failed callback.
        assert client.wait_protocol(WAIT)
        reply, _ = client.blocking_request(Message.request("echo", "back"), timeout=WAIT)
        assert reply.arguments == [b"ok", b"back"]
    messages = [record.getMessage() for record in caplog.records]
    assert "Callback inform informs FAIL" in messages
    assert messages.count("Callback reply informs FAIL") == 1
    assert messages.count("Callback reply silent FAIL") == 2


def test_user_data_reaches_both_callbacks(client):
    got = queue.Queue()
    client.callback_request(Message.request("informs", 1),
                            inform_cb=lambda msg, *data: got.put(("inform", data)),
                            reply_cb=lambda msg, *data: got.put(("reply", data)),
                            user_data=("u", 2))
    assert [got.get(timeout=WAIT) for _ in range(2)] == [
        ("inform", ("u", 2)), ("reply", ("u", 2))]


class OverridingClient(RecordingClient):
    """Overrides send_request, so requests go through it (and may fail there)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent = []

    def send_request(self, msg):
        if msg.arguments and msg.arguments[0] == b"refuse":
            raise KatcpClientError("refused by the subclass")
        if msg.arguments and msg.arguments[0] == b"crash":
            raise ValueError("crashed in the subclass")
        self.sent.append(str(msg))
        super().send_request(msg)


def test_a_midless_reply_to_a_request_with_an_id_is_unclaimed(client):
    send(client, Message.request("nomid-reply"))
    assert client.unclaimed.get(timeout=WAIT) == "!nomid-reply ok"


def test_a_midless_reply_leaves_the_timeout_of_a_request_with_an_id_armed(client):
    # The reference client disarmed it: the request then waited until the connection
    # closed (blocking_request raised RuntimeError, a resource never synced).
    request = send_with_timeout(client, Message.request("nomid-reply"), 1.0)
    assert client.unclaimed.get(timeout=WAIT) == "!nomid-reply ok"
    assert not request.done()  # the reply came before the deadline: a second's margin
    reply = request.result(WAIT)
    assert reply.startswith("!nomid-reply[1] fail Request\\_nomid-reply\\_timed\\_out")
    assert _waited(reply) >= 1.0 - 0.001
    assert client._requests.held()["requests"] == 0


def test_requests_go_through_an_overridden_send_request(fake, caplog):
    client = OverridingClient("127.0.0.1", fake.port, timeout=WAIT)
    with _running(client):
        reply, informs = client.blocking_request(Message.request("informs", 1))
        assert str(reply) == "!informs[1] ok 1" and [str(m) for m in informs] == [
            "#informs[1] 0"]
        reply, _ = client.blocking_request(Message.request("echo", "refuse", mid=9))
        assert reply.arguments == [b"fail", b"refused by the subclass"]
        assert reply.mid == b"9"
        refused = queue.Queue()

        def broken(msg):
            refused.put(msg)
            raise ValueError("broken callback")

        with caplog.at_level(logging.ERROR, logger="katcp.client"):
            client.callback_request(Message.request("echo", "refuse"), reply_cb=broken)
            assert refused.get(timeout=WAIT).arguments == [
                b"fail", b"refused by the subclass"]
            client.blocking_request(Message.request("watchdog"))
        assert "Callback reply echo FAIL" in [r.getMessage() for r in caplog.records]
        # The refused id is free again.
        reply, _ = client.blocking_request(Message.request("echo", "x", mid=9))
        assert str(reply) == "!echo[9] ok x"
        reply, _ = client.blocking_request(Message.request("echo", "y"), use_mid=False)
        assert str(reply) == "!echo ok y"
        reply, _ = client.blocking_request(Message.request("silent"), timeout=0.2)
        assert _waited(str(reply)) >= 0.2 - 0.001
        assert client.sent == ["?informs[1] 1", "?watchdog[3]", "?echo[9] x", "?echo y",
                               "?silent[5]"]


def test_a_request_whose_send_raises_is_not_left_in_flight(fake):
    # Left registered, it took the reply of the next request of its name sent without
    # an id, which then timed out.
    client = OverridingClient("127.0.0.1", fake.port, timeout=WAIT)
    with _running(client):
        with pytest.raises(ValueError, match="crashed in the subclass"):
            client.blocking_request(Message.request("echo", "crash"), use_mid=False)
        assert client._requests.held()["requests"] == 0
        reply, _ = client.blocking_request(Message.request("echo", "y"), use_mid=False)
        assert str(reply) == "!echo ok y"


def test_requests_while_not_connected_fail_with_their_id(caplog):
    with _closed_port() as port, caplog.at_level(logging.ERROR, logger="katcp.client"):
        client = BlockingClient("127.0.0.1", port, timeout=WAIT)
        client.start(timeout=WAIT)
        try:
            assert client.wait_running(WAIT)
            reply, _ = client.blocking_request(Message.request("echo", mid=4))
            assert str(reply) == "!echo[4] fail Client\\_not\\_connected"
            got = queue.Queue()

            def broken(msg):
                got.put(msg)
                raise ValueError("broken callback")

            client.callback_request(Message.request("echo"), reply_cb=broken)
            assert got.get(timeout=WAIT).arguments == [b"fail", b"Client not connected"]
            # The failing callback was reported by the client, which went on.
            reply, _ = client.blocking_request(Message.request("echo"))
            assert reply.arguments == [b"fail", b"Client not connected"]
            assert "Callback reply echo FAIL" in [r.getMessage() for r in caplog.records]
        finally:
            client.stop(timeout=WAIT)
            client.join(timeout=WAIT)


def test_an_id_for_a_server_without_ids_fails_through_the_callback(caplog):
    from test_client import V4_GREETING

    server = FakeServer(greeting=V4_GREETING).start()
    client = BlockingClient("127.0.0.1", server.port, timeout=WAIT)
    client.start(timeout=WAIT)
    got = queue.Queue()

    def broken(msg):
        got.put(msg)
        raise ValueError("broken callback")

    try:
        assert client.wait_protocol(WAIT)
        with caplog.at_level(logging.ERROR, logger="katcp.client"):
            client.callback_request(Message.request("echo", mid=3), reply_cb=broken)
            reply = got.get(timeout=WAIT)
            client.blocking_request(Message.request("watchdog"))
        assert reply.arguments == [b"fail", b"Message IDs not supported by server"]
        assert "Callback reply echo FAIL" in [r.getMessage() for r in caplog.records]
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
        server.close()


def test_requests_in_flight_fail_when_the_connection_closes(fake, client):
    waiting = send(client, Message.request("silent"))
    fake.next_line()  # the server has the request
    fake.drop_connections()
    assert waiting.result(WAIT) == (
        "!silent[1] fail Connection\\_closed\\_before\\_reply\\_was\\_received", [])


def test_requests_in_flight_fail_when_the_client_stops(fake):
    client = RecordingClient("127.0.0.1", fake.port, timeout=WAIT)
    with _running(client):
        waiting = send(client, Message.request("silent"))
        fake.next_line()
    assert waiting.result(WAIT) == (
        "!silent[1] fail Client\\_stopped\\_before\\_reply\\_was\\_received", [])


def test_replies_without_a_reply_callback_go_to_the_handlers(client):
    client.callback_request(Message.request("echo", "x"))
    assert client.unclaimed.get(timeout=WAIT) == "!echo[1] ok x"
    # So does the fail reply the client makes when a request times out.
    client.callback_request(Message.request("silent"), timeout=0.1)
    assert client.unclaimed.get(timeout=WAIT).startswith(
        "!silent[2] fail Request\\_silent\\_timed\\_out\\_after\\_")


def test_requests_without_a_timeout_take_the_clients(fake):
    client = RecordingClient("127.0.0.1", fake.port, timeout=0.2)
    with _running(client):
        replies = queue.Queue()
        client.callback_request(Message.request("silent"), reply_cb=replies.put)
        reply = replies.get(timeout=WAIT)
    assert _waited(str(reply)) >= 0.2 - 0.001


class SendMessageClient(RecordingClient):
    """Overrides only send_message, the lower of the two sending hooks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent = []

    def send_message(self, msg):
        self.sent.append(str(msg))
        super().send_message(msg)


def test_requests_go_through_an_overridden_send_message(fake):
    client = SendMessageClient("127.0.0.1", fake.port, timeout=WAIT)
    with _running(client):
        reply, _ = client.blocking_request(Message.request("echo", "x"))
    assert str(reply) == "!echo[1] ok x"
    assert client.sent == ["?echo[1] x"]


def test_an_answered_request_lets_go_of_its_future_and_informs():
    future = concurrent.futures.Future()
    request = FutureRequest(Message.request("watch"), future)
    request.on_inform(Message.inform("watch", "a"))
    reply = Message.reply("watch", "ok")
    assert request.on_reply(reply) is True
    assert future.result(0) == (reply, [Message.inform("watch", "a")])
    assert request.future is None and request.informs is None
    # A second answer (a late duplicate) changes nothing.
    assert request.on_reply(Message.reply("watch", "fail")) is True
    assert future.result(0)[0] is reply


def test_a_reply_to_a_request_whose_future_was_cancelled_is_dropped_quietly():
    future = concurrent.futures.Future()
    future.cancel()
    request = FutureRequest(Message.request("watch"), future)
    assert request.on_reply(Message.reply("watch", "ok")) is True
    assert future.cancelled()


@pytest.mark.parametrize("hook", ["send_request", "send_message"])
def test_requests_go_through_a_sending_hook_replaced_on_the_instance(fake, hook):
    client = RecordingClient("127.0.0.1", fake.port, timeout=WAIT)
    sent = []
    original = getattr(client, hook)

    def recording(msg):
        sent.append(str(msg))
        original(msg)
    setattr(client, hook, recording)
    with _running(client):
        reply, _ = client.blocking_request(Message.request("echo", "x"))
    assert str(reply) == "!echo[1] ok x"
    assert sent == ["?echo[1] x"]


def test_midless_requests_through_an_overridden_send_request_are_found_by_name(fake):
    client = OverridingClient("127.0.0.1", fake.port, timeout=WAIT)
    with _running(client):
        hold = send(client, Message.request("hold"), use_mid=False)
        # The mid-less reply makes the client look requests up by name while ?hold waits.
        assert send(client, Message.request("echo", "x"), use_mid=False).result(
            WAIT) == ("!echo ok x", [])
        release = send(client, Message.request("hold", "release"), use_mid=False)
        assert release.result(WAIT) == ("!hold ok", ["#hold for"])
        assert hold.result(WAIT) == ("!hold ok", ["#hold for"])
    assert client.sent == ["?hold", "?echo x", "?hold release"]
