"""The server's fast paths keep katcp's behaviour: formatted-once readings, batched replies.

A reading's wire line is formatted once and shared by ``?sensor-value`` replies and
``#sensor-status`` informs; ``?sensor-list`` lines once per description. Bulk replies
leave in one write. Event strategies of many clients share one observer per sensor.
Real sockets on 127.0.0.1, for the threaded DeviceServer and AsyncDeviceServer.
"""

import asyncio
import queue
import threading
from unittest import mock

import pytest
import tornado.ioloop

from katcp.core import KatcpSyntaxError, Message, MessageParser, ProtocolFlags, Sensor
from katcp.sampling import wire_strategy
from katcp.server import (ClientConnection, ClientRequestConnection, DeviceServer,
                          ThreadsafeClientConnection)
from katcp.testutils import handle_mock_req, mock_req
from katcp.transport.buffers import loop_receive_view
from katcp.transport.framing import WriteBatcher
from katcp.wire import types as wire_types

from server_line_client import LineClient

TIMEOUT = 10
T0 = 1234567890.25


def make_server_class(major):
    class PerfServer(DeviceServer):
        VERSION_INFO = ("perf-api", 1, 0)
        BUILD_INFO = ("perf-build", 1, 0, "")
        PROTOCOL_INFO = ProtocolFlags(major, 0 if major == 4 else 1, set("M" if major == 4 else "MI"))

        def setup_sensors(self):
            self.level = Sensor.integer("level", "A level.", "m", [0, 100])
            self.note = Sensor.string("a.note", "Note with spaces.", "")
            self.temp = Sensor.float("temp", "Temperature.", "degC", [-10.0, 50.0])
            for sensor in (self.level, self.note, self.temp):
                self.add_sensor(sensor)
            self.level.set_value(7, timestamp=T0)
            self.note.set_value("two words", timestamp=T0)
            self.temp.set_value(21.5, status=Sensor.WARN, timestamp=T0)

    return PerfServer


FLAVOURS = {"threaded": dict(thread_safe=True, handler_thread=True),
            "async": dict(thread_safe=False, handler_thread=False)}


def start(major, flavour):
    server = make_server_class(major)("127.0.0.1", 0)
    server.set_concurrency_options(**FLAVOURS[flavour])
    assert server.start(timeout=TIMEOUT)
    return server


def stop(server):
    server.stop().result(TIMEOUT)
    server.join(timeout=TIMEOUT)


def connect(server):
    client = LineClient(server.bind_address[1])
    client.read_until(lambda line: line.startswith((b"#version-connect katcp-device",
                                                    b"#build-state")))
    return client


@pytest.fixture(params=[(5, "threaded"), (5, "async"), (4, "threaded"), (4, "async")],
                ids=lambda p: "v%d-%s" % p)
def served(request):
    server = start(*request.param)
    yield server
    stop(server)


def reply_lines(client, request):
    client.send(request)
    name = request.split()[0][1:].encode()
    return client.read_until(lambda line: line.startswith(b"!" + name + b" "))


def ts(server, seconds):
    return "%.6f" % seconds if server.PROTOCOL_INFO.major >= 5 else "%d" % int(seconds * 1000)


# -- the cached wire forms -------------------------------------------------------------


def test_status_line_is_formatted_again_after_each_update():
    sensor = Sensor.string("a b", "Desc.", "")
    sensor.set_value("x y", timestamp=T0)
    first = sensor.status_line(sensor.read(), 5)
    assert first == b"1234567890.250000 1 a\\_b nominal x\\_y"
    assert sensor.status_line(sensor.read(), 5) is first  # shared, not made again
    sensor.set_value("", status=Sensor.ERROR, timestamp=T0 + 1)
    assert sensor.status_line(sensor.read(), 5) == b"1234567891.250000 1 a\\_b error \\@"
    # An older reading (a strategy may hold one) still gets its own line.
    assert sensor.status_line((T0, Sensor.NOMINAL, "x y"), 5) == first


def test_status_line_v4_has_milliseconds_and_v5_seconds_for_the_same_reading():
    sensor = Sensor.float("t", params=[0.0, 10.0])
    sensor.set_value(2.5, timestamp=T0)
    reading = sensor.read()
    assert sensor.status_line(reading, 4) == b"1234567890250 1 t nominal 2.5"
    assert sensor.status_line(reading, 5) == b"1234567890.250000 1 t nominal 2.5"
    assert sensor.status_line(reading, 4) == b"1234567890250 1 t nominal 2.5"


def test_list_line_follows_changes_of_the_description():
    sensor = Sensor.integer("n", "Old text.", "m", [0, 5])
    assert sensor.list_line() == b"n Old\\_text. m integer 0 5"
    sensor.description = "New text."
    sensor.units = ""
    assert sensor.list_line() == b"n New\\_text. \\@ integer 0 5"


@pytest.mark.parametrize("change, line", [
    (lambda s: setattr(s, "name", "renamed"), b"renamed Old\\_text. m integer 0 5"),
    (lambda s: setattr(s, "description", "New."), b"n New. m integer 0 5"),
    (lambda s: setattr(s, "units", "km"), b"n Old\\_text. km integer 0 5"),
    (lambda s: setattr(s, "stype", "float"), b"n Old\\_text. m float 0 5"),
    (lambda s: s.formatted_params.__setitem__(1, b"9"), b"n Old\\_text. m integer 0 9"),
], ids=["name", "description", "units", "type", "params"])
def test_list_line_follows_a_change_of_any_one_field(change, line):
    sensor = Sensor.integer("n", "Old text.", "m", [0, 5])
    assert sensor.list_line() == b"n Old\\_text. m integer 0 5"
    change(sensor)
    assert sensor.list_line() == line


def test_a_sensor_class_with_its_own_notify_sees_every_set():
    class Counting(Sensor):
        def notify(self, reading):
            seen.append(reading)
            super().notify(reading)

    class Plain(Sensor):
        pass

    seen, observed = [], []
    for cls in (Counting, Plain):
        sensor = cls(Sensor.INTEGER, "n", params=[0, 10])
        sensor.attach(type("Observer", (), {
            "update": lambda self, s, r: observed.append((s.name, r.value))})())
        sensor.set(T0, Sensor.NOMINAL, 3)
    assert seen == [(T0, Sensor.NOMINAL, 3)]
    assert observed == [("n", 3), ("n", 3)]


# -- replies over sockets ----------------------------------------------------------------


def test_sensor_value_forms_match_the_protocol_version(served):
    with connect(served) as client:
        t = ts(served, T0)
        assert reply_lines(client, "?sensor-value") == [
            ("#sensor-value %s 1 a.note nominal two\\_words" % t).encode(),
            ("#sensor-value %s 1 level nominal 7" % t).encode(),
            ("#sensor-value %s 1 temp warn 21.5" % t).encode(),
            b"!sensor-value ok 3"]
        assert reply_lines(client, "?sensor-value[5] /^te/") == [
            ("#sensor-value[5] %s 1 temp warn 21.5" % t).encode(), b"!sensor-value[5] ok 1"]
        assert reply_lines(client, "?sensor-value level") == [
            ("#sensor-value %s 1 level nominal 7" % t).encode(), b"!sensor-value ok 1"]
        assert reply_lines(client, "?sensor-value nothing") == [
            b"!sensor-value fail Unknown\\_sensor\\_name."]
        served.level.set_value(9, timestamp=T0 + 2)
        assert reply_lines(client, "?sensor-value level") == [
            ("#sensor-value %s 1 level nominal 9" % ts(served, T0 + 2)).encode(),
            b"!sensor-value ok 1"]


def test_sensor_list_sees_added_and_removed_sensors(served):
    with connect(served) as client:
        assert reply_lines(client, "?sensor-list[2]") == [
            b"#sensor-list[2] a.note Note\\_with\\_spaces. \\@ string",
            b"#sensor-list[2] level A\\_level. m integer 0 100",
            b"#sensor-list[2] temp Temperature. degC float -10.0 50.0",
            b"!sensor-list[2] ok 3"]
        served.add_sensor(Sensor.boolean("b.flag", "Flag.", ""))
        served.remove_sensor("level")
        assert reply_lines(client, "?sensor-list") == [
            b"#sensor-list a.note Note\\_with\\_spaces. \\@ string",
            b"#sensor-list b.flag Flag. \\@ boolean",
            b"#sensor-list temp Temperature. degC float -10.0 50.0",
            b"!sensor-list ok 3"]


class CountingTransport:
    """Delegates to a real transport, recording every write."""

    def __init__(self, transport, writes):
        self._transport = transport
        self._writes = writes
        self._lock = threading.Lock()

    def write(self, data):
        with self._lock:
            self._writes.append(data)
        self._transport.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_a_bulk_reply_is_one_write(flavour):
    server = start(5, flavour)
    try:
        for i in range(200):
            server.add_sensor(Sensor.integer("bulk.%03d" % i, "Bulk.", ""))
        with connect(server) as client:
            assert reply_lines(client, "?watchdog") == [b"!watchdog ok"]
            (conn,) = list(server._server._connections)
            writes = []
            # A stand-in transport that counts writes: uvloop's transports do not let
            # their write method be replaced.
            conn.transport = CountingTransport(conn.transport, writes)
            for request in ("?sensor-value", "?sensor-list"):
                del writes[:]
                lines = reply_lines(client, request)
                assert len(lines) == 204 and lines[-1].endswith(b" ok 203")
                # The informs leave in one write; on the loop the reply joins them, from
                # the handler thread it may follow in the next loop turn's write.
                assert writes[0].count(b"\n") >= 203
                if flavour == "async":
                    assert len(writes) == 1
                assert len(writes) <= 2 and b"".join(writes).count(b"\n") == 204
    finally:
        stop(server)


def test_handlers_seeing_each_inform_still_get_messages():
    # A request connection whose inform() is overridden (testutils records informs) gets
    # each inform as a Message, not a batch of bytes.
    server = make_server_class(4)("127.0.0.1", 0)
    req = mock_req("sensor-value")
    reply = handle_mock_req(server, req)
    assert [str(msg) for msg in req.inform_msgs] == [
        "#sensor-value 1234567890250 1 a.note nominal two\\_words",
        "#sensor-value 1234567890250 1 level nominal 7",
        "#sensor-value 1234567890250 1 temp warn 21.5"]
    assert str(reply) == "!sensor-value ok 3"


class SpyingServer(make_server_class(5)):

    def request_spied(self, req, msg):
        """Send the sensor values through methods replaced on the request object."""
        req.started = 1.5
        with mock.patch.object(req, "inform", wraps=req.inform) as inform:
            self.request_sensor_value(req, msg)
        self.informs_seen = inform.call_count
        self.reply_seen = req.reply_with_message = mock.Mock(wraps=req.reply_with_message)
        return req.make_reply("ok", req.started)


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_a_request_object_takes_attributes_and_replacements_of_its_methods(flavour):
    # As 0.9.3's plain class: a handler's req keeps attributes, and methods replaced on
    # it (mock.patch.object) are used, by the bulk informs and by the server's reply.
    server = SpyingServer("127.0.0.1", 0)
    server.set_concurrency_options(**FLAVOURS[flavour])
    assert server.start(timeout=TIMEOUT)
    try:
        with connect(server) as client:
            lines = reply_lines(client, "?spied[4]")
        assert [line.split()[0] for line in lines] == [b"#spied[4]"] * 3 + [b"!spied[4]"]
        assert lines[-1] == b"!spied[4] ok 1.5"
        assert server.informs_seen == 3
        server.reply_seen.assert_called_once_with(Message.reply("spied", "ok", 1.5, mid=4))
    finally:
        stop(server)


class KeepsItsRequests(make_server_class(5)):

    def request_kept(self, req, msg):
        """Keep what the request object is like on arrival."""
        self.kept = (req, _state(req))
        return req.make_reply("ok")


def _state(req):
    slots = [name for name in ClientRequestConnection.__slots__ if name != "__dict__"]
    return type(req), {name: getattr(req, name, "<unset>") for name in slots}, dict(vars(req))


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_a_handlers_request_object_is_made_by_calling_its_class(flavour):
    # As katcp 0.9.3 does: code that wraps the class's __init__ (a test's patch) sees
    # each request's object made, and it comes out as the call makes it.
    server = KeepsItsRequests("127.0.0.1", 0)
    server.set_concurrency_options(**FLAVOURS[flavour])
    assert server.start(timeout=TIMEOUT)
    plain_init = ClientRequestConnection.__init__
    made = []

    def init(req, *args):
        made.append(args)
        plain_init(req, *args)

    try:
        with mock.patch.object(ClientRequestConnection, "__init__", init):
            with connect(server) as client:
                assert reply_lines(client, "?kept[7]") == [b"!kept[7] ok"]
        req, state = server.kept
        assert made == [(req.client_connection, req.msg)]
        assert state == _state(ClientRequestConnection(req.client_connection, req.msg))
        assert req.msg == Message.request("kept", mid=7)
    finally:
        stop(server)


def _request_echo(self, req, msg):
    """Echo the arguments."""
    return req.make_reply("ok", *msg.arguments)


class HasItsOwnTable(make_server_class(5)):

    def __init__(self, *args, **kwargs):
        self._request_handlers = dict(type(self)._request_handlers, echo=_request_echo)
        super().__init__(*args, **kwargs)


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_the_request_handler_tables_of_the_class_and_of_the_instance_are_both_heard(flavour):
    # The server keeps its handler table on the instance (read per request): the class's
    # own table, so a handler added to it after the server was made is heard, and a table
    # of the instance's own, given before the server's __init__, is not replaced.
    server = HasItsOwnTable("127.0.0.1", 0)
    server.set_concurrency_options(**FLAVOURS[flavour])
    assert server.start(timeout=TIMEOUT)
    server._request_handlers["late"] = _request_echo
    plain = make_server_class(5)("127.0.0.1", 0)
    type(plain)._request_handlers["late"] = _request_echo
    plain.set_concurrency_options(**FLAVOURS[flavour])
    assert plain.start(timeout=TIMEOUT)
    try:
        with connect(server) as client:
            assert reply_lines(client, "?echo[1] a b") == [b"!echo[1] ok a b"]
            assert reply_lines(client, "?late[2] c") == [b"!late[2] ok c"]
        with connect(plain) as client:
            assert reply_lines(client, "?late[3] d") == [b"!late[3] ok d"]
            assert reply_lines(client, "?echo[4]") == [b"!echo[4] invalid Unknown\\_request."]
    finally:
        stop(server)
        stop(plain)


class _ThreadsafeOfItsOwn(ClientConnection):
    _THREADSAFE = True


@pytest.mark.parametrize("cls, sender", [
    (ClientConnection, "send_message"),
    (ThreadsafeClientConnection, "send_message_threadsafe"),
    (_ThreadsafeOfItsOwn, "send_message_threadsafe")])
def test_a_connection_replies_through_the_sender_its_class_says(cls, sender):
    # reply() asks the connection, not its class, which sender it uses: the class's
    # _THREADSAFE as it was when the connection was made.
    transport = mock.Mock(spec=["send_message", "send_message_threadsafe"])
    conn = cls(transport, "conn-id")
    conn.reply(Message.reply("watchdog", "ok"), Message.request("watchdog", mid=3))
    getattr(transport, sender).assert_called_once_with(
        "conn-id", Message.reply("watchdog", "ok", mid=3))
    assert len(transport.method_calls) == 1


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_a_request_handler_table_replaced_on_the_class_of_a_running_server_is_heard(flavour):
    # As where the server read the table through itself from its class (0.9.3): a test
    # may patch the class's table once the server runs, and the patch ends the same way.
    server_class = make_server_class(5)
    server = server_class("127.0.0.1", 0)
    server.set_concurrency_options(**FLAVOURS[flavour])
    assert server.start(timeout=TIMEOUT)
    try:
        with connect(server) as client:
            with mock.patch.object(server_class, "_request_handlers",
                                   dict(server_class._request_handlers, late=_request_echo)):
                assert reply_lines(client, "?late[1] a") == [b"!late[1] ok a"]
            assert reply_lines(client, "?late[2] b") == [b"!late[2] invalid Unknown\\_request."]
            assert reply_lines(client, "?watchdog[3]") == [b"!watchdog[3] ok"]
    finally:
        stop(server)


def test_a_server_class_with_an_eq_of_its_own_makes_servers_whose_tables_follow_it():
    # Defining __eq__ alone makes its instances unhashable, which 0.9.3 never minded:
    # the record of the servers that copy their class's table refused them.
    class Compared(make_server_class(5)):
        def __eq__(self, other):
            return self is other

    server = Compared("127.0.0.1", 0)
    table = dict(Compared._request_handlers, late=_request_echo)
    with mock.patch.object(Compared, "_request_handlers", table):
        assert server._request_handlers is table
    assert "late" not in server._request_handlers


def test_a_connection_whose_inform_is_replaced_on_the_instance_takes_no_wire_bytes():
    server = make_server_class(5)("127.0.0.1", 0)
    conn = ClientConnection(server._server, object())
    assert conn.wire_sender(threadsafe=True) is not None
    with mock.patch.object(conn, "inform"):
        assert conn.wire_sender(threadsafe=True) is None


# -- event streaming ----------------------------------------------------------------------


def statuses(client, count):
    lines = []
    while len(lines) < count:
        line = client.readline()
        if not line.startswith(b"#client-connected "):  # v4 tells of newcomers
            lines.append(line)
    assert all(line.startswith(b"#sensor-status ") for line in lines), lines
    return [line.split()[4:] for line in lines]


def test_every_change_reaches_every_event_client_through_one_observer(served):
    clients = [connect(served) for _ in range(3)]
    try:
        for client in clients:
            assert reply_lines(client, "?sensor-sampling temp event")[-1].startswith(
                b"!sensor-sampling ok")
        assert len(served.temp._observers) == 1
        values = [22.0 + i for i in range(50)]

        def produce():
            for value in values:
                served.temp.set_value(value)
                served.temp.set_value(value)  # no change: not sent
        served.ioloop.add_callback(produce)
        for client in clients:
            assert statuses(client, len(values)) == [[b"nominal", repr(v).encode()]
                                                     for v in values]
        # A client joining now starts from the current value and then sees the changes.
        late = connect(served)
        clients.append(late)
        late.send("?sensor-sampling temp event")
        assert statuses(late, 1) == [[b"nominal", b"71.0"]]
        assert late.readline().startswith(b"!sensor-sampling ok")
        served.temp.set_value(5.0, status=Sensor.ERROR)
        for client in clients:
            assert statuses(client, 1) == [[b"error", b"5.0"]]
        # One client stopping leaves the others served.
        assert reply_lines(clients[0], "?sensor-sampling temp none")[-1] == \
            b"!sensor-sampling ok temp none"
        served.temp.set_value(6.0)
        for client in clients[1:]:
            assert statuses(client, 1) == [[b"nominal", b"6.0"]]
        assert reply_lines(clients[0], "?watchdog") == [b"!watchdog ok"]
    finally:
        for client in clients:
            client.close()
    assert wait_for(lambda: not served.temp._observers)


def test_updates_from_another_thread_still_reach_event_clients(served):
    with connect(served) as client:
        reply_lines(client, "?sensor-sampling level event")
        served.level.set_value(50)  # from this thread: hops to the loop
        assert statuses(client, 1) == [[b"nominal", b"50"]]


def wait_for(predicate, timeout=TIMEOUT):
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        done.wait(0.01)
    return predicate()


def test_messages_from_wire_lines_equal_messages_from_objects():
    # The bytes of the fast path are those of the Message a handler would have built.
    sensor = Sensor.string("odd\tname", "Tab\tand\nnewline.", "")
    sensor.set_value("", timestamp=T0)
    ts_, status, value = sensor.read_formatted(5)
    assert b"#sensor-value " + sensor.status_line(sensor.read(), 5) == bytes(
        Message.inform("sensor-value", ts_, b"1", sensor.name, status, value))
    assert b"#sensor-list " + sensor.list_line() == bytes(Message.inform(
        "sensor-list", sensor.name, sensor.description, sensor.units, sensor.stype))


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_a_streaming_client_that_does_not_read_is_dropped_with_a_log(flavour, caplog):
    server = start(5, flavour)
    server._server.MAX_WRITE_BUFFER_SIZE = 64 * 1024
    try:
        with LineClient(server.bind_address[1], rcvbuf=4096) as lazy:
            lazy.read_until(lambda line: line.startswith(b"#version-connect katcp-device"))
            # The limit is taken when a client connects: the keen client gets room for
            # the whole burst, so only the lazy one can fall behind, however the
            # scheduler runs the threads.
            server._server.MAX_WRITE_BUFFER_SIZE = 32 * 1024 * 1024
            with connect(server) as keen:
                for client in (lazy, keen):
                    client.send("?sensor-sampling a.note event")
                assert statuses(keen, 1) == [[b"nominal", b"two\\_words"]]
                assert keen.readline() == b"!sensor-sampling ok a.note event"
                # Far more than the kernel's socket buffers take in.
                values = ["%d %s" % (i, "x" * 4000) for i in range(2000)]

                def produce():
                    for value in values:
                        server.note.set_value(value)
                with caplog.at_level("WARNING", logger="katcp.server"):
                    server.ioloop.add_callback(produce)
                    # The keen client gets every update; the lazy one is cut off, loudly.
                    got = statuses(keen, len(values))
                    assert got == [[b"nominal", v.replace(" ", "\\_").encode()] for v in values]
                    assert wait_for(lambda: any("is not reading" in r.getMessage()
                                                for r in caplog.records))
                assert wait_for(lambda: len(server._server._connections) == 1)
    finally:
        stop(server)


def test_a_client_joining_while_an_update_waits_for_the_loop_gets_it_once():
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        ioloop = tornado.ioloop.IOLoop.current()
        sensor = Sensor.integer("n", params=[0, 10])
        sensor.set_value(1, timestamp=T0)
        first, second = [], []
        wire_strategy("event", first.append, 5, sensor, ioloop=ioloop).start()
        # An update from another thread waits for the loop (this thread runs it) ...
        setter = threading.Thread(target=sensor.set_value, args=(2,), kwargs={"timestamp": T0})
        setter.start()
        setter.join(TIMEOUT)
        # ... while a second client subscribes and is sent the current reading at once.
        wire_strategy("event", second.append, 5, sensor, ioloop=ioloop).start()
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        one, two = [b"#sensor-status 1234567890.250000 1 n nominal %d\n" % v for v in (1, 2)]
        assert first == [one, two]
        assert second == [two]  # not sent again when the loop handles the update
        sensor.set_value(3, timestamp=T0)
        assert first[-1] == second[-1] == b"#sensor-status 1234567890.250000 1 n nominal 3\n"
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# -- the request path's fast paths ----------------------------------------------------------


@pytest.mark.parametrize("args, wire", [
    (("ok",), b"!thing[7] ok"),
    ((b"fail",), b"!thing[7] fail"),
    (("invalid",), b"!thing[7] invalid"),
    (("ok now",), b"!thing[7] ok\\_now"),  # not a lone reply code: escaped as ever
    (("",), b"!thing[7] \\@"),
    ((), b"!thing[7]"),
])
def test_replies_made_for_a_request_have_its_name_and_id_and_the_usual_bytes(args, wire):
    request = MessageParser().parse(b"?thing[7] x")
    for reply in (Message.reply_to_request(request, *args),
                  ClientRequestConnection(None, request).make_reply(*args)):
        assert reply == Message.reply("thing", *args, mid=7)
        assert bytes(reply) == wire


def test_a_reply_checks_what_was_changed_on_its_request_since_it_was_made():
    request = Message.request("thing", mid=3)
    request.mid = 12  # an int set later is formatted for the reply
    assert bytes(Message.reply_to_request(request, "ok", 1.5, True)) == b"!thing[12] ok 1.5 1"
    request.name = "bad name"
    with pytest.raises(KatcpSyntaxError):
        Message.reply_to_request(request, "ok")


def test_arguments_that_are_not_plain_text_still_take_the_careful_path():
    # A lone surrogate cannot be UTF-8: the careful formatter replaces it (as before).
    msg = Message.reply("thing", "ok", "bad\udcff")
    assert msg.arguments[0] == b"ok" and msg.arguments[1].startswith(b"bad")
    assert Message.inform("thing", None, 3, b"raw").arguments == [b"", b"3", b"raw"]


def test_parsed_messages_are_complete_messages():
    msg = MessageParser().parse(b"?watchdog[42]")
    assert (msg.mtype, msg.name, msg.mid, msg.arguments) == (Message.REQUEST, "watchdog",
                                                             b"42", [])
    assert msg == Message.request("watchdog", mid=42) and bytes(msg) == b"?watchdog[42]"
    copy = msg.copy()
    copy.arguments.append(b"x")
    assert msg.arguments == []


# -- the sensor update path's fast paths ------------------------------------------------------


@pytest.mark.parametrize("rule, values", [
    (wire_types.INTEGER, [0, -7, 2 ** 70, True, False]),
    (wire_types.FLOAT, [0.0, -1.5, 1e22, 1e-300, float("inf"), float("nan"), 0.1 + 0.2]),
    (wire_types.BOOLEAN, [True, False]),
    (wire_types.STRING, ["", "two words", "\u00e9t\u00e9", b"raw\\bytes"]),
    (wire_types.DISCRETE, ["on", "off"]),
])
def test_the_exact_class_encoders_give_the_bytes_of_the_rule(rule, values):
    for value in values:
        assert rule.exact_encoders[type(value)](value) == rule.encode(value, 5)


def test_a_status_line_of_text_that_is_not_utf8_is_the_rules_replacement(caplog):
    sensor = Sensor.string("s")
    sensor.set_value("bad\udcff", timestamp=T0)
    assert sensor.status_line(sensor.read(), 5) == b"1234567890.250000 1 s nominal bad?"
    # A float sensor given an int: the rule's float form, not the int's.
    number = Sensor.float("f")
    number.set_value(3, timestamp=T0)
    assert number.status_line(number.read(), 5) == b"1234567890.250000 1 f nominal 3.0"


def test_set_value_goes_through_an_overridden_set_or_notify():
    calls = []

    class Recording(Sensor):
        def set(self, timestamp, status, value):
            calls.append(("set", value))
            super().set(timestamp, status, value)

    class Announcing(Sensor):
        def notify(self, reading):
            calls.append(("notify", reading.value))
            super().notify(reading)

    for cls in (Recording, Announcing, Sensor):
        sensor = cls(Sensor.INTEGER, "n")
        seen = []
        sensor.attach(type("Observer", (), {"update": lambda self, s, r: seen.append(r)})())
        sensor.set_value(4, timestamp=T0)
        assert seen == [(T0, Sensor.NOMINAL, 4)] and sensor.read() == seen[0]
    assert calls == [("set", 4), ("notify", 4)]


class _QuietBatcher(WriteBatcher):
    """A write batcher whose loop turn never ends: what it was sent stays in its batch."""

    def __init__(self):
        super().__init__(None, lambda flush: None, 1 << 20)

    def sent(self):
        return list(self._chunks)


class _LoudBatcher(_QuietBatcher):
    """Its own send(): the fan-out must call it for each line."""

    def send(self, data):
        super().send(data.upper())


def test_a_fan_out_hands_each_line_to_batchers_and_to_other_senders_alike():
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        ioloop = tornado.ioloop.IOLoop.current()
        sensor = Sensor.integer("n", params=[0, 10])
        sensor.set_value(1, timestamp=T0)
        quiet, loud, plain = _QuietBatcher(), _LoudBatcher(), []
        for send in (quiet.send, loud.send, plain.append, _QuietBatcher().send):
            wire_strategy("event", send, 5, sensor, ioloop=ioloop).start()
        sensor.set_value(2, timestamp=T0)  # on the loop thread: straight through
        setter = threading.Thread(target=sensor.set_value, args=(3,), kwargs={"timestamp": T0})
        setter.start()  # from another thread: through the loop
        setter.join(TIMEOUT)
        loop.run_until_complete(asyncio.sleep(0))
        lines = [b"#sensor-status 1234567890.250000 1 n nominal %d\n" % v for v in (1, 2, 3)]
        assert quiet.sent() == plain == lines
        assert loud.sent() == [line.upper() for line in lines]
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_senders_of_their_own_get_every_line_of_a_fan_out():
    # Two batchers whose class changed send() (a group sender would bypass it after the
    # first line of a batch) and a plain function (no bound method at all).
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        ioloop = tornado.ioloop.IOLoop.current()
        sensor = Sensor.integer("n", params=[0, 10])
        sensor.set_value(1, timestamp=T0)
        loud = _LoudBatcher(), _LoudBatcher()
        received = []

        def send(line):
            received.append(line)

        for each in (loud[0].send, loud[1].send, send):
            wire_strategy("event", each, 5, sensor, ioloop=ioloop).start()
        for value in (2, 3):
            sensor.set_value(value, timestamp=T0)
        lines = [b"#sensor-status 1234567890.250000 1 n nominal %d\n" % v for v in (1, 2, 3)]
        assert received == lines
        assert loud[0].sent() == loud[1].sent() == [line.upper() for line in lines]
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_a_group_sender_writes_a_batch_past_its_limit_before_the_loop_turn_ends():
    writes = [], []
    small, large = [WriteBatcher(out.append, lambda flush: None, limit)
                    for out, limit in zip(writes, (100, 10 ** 9))]
    send = WriteBatcher.group_sender([small, large])
    send(b"x" * 60)  # the first of a batch: as send()
    assert small.send is not send and writes == ([], [])
    line = b"y" * 1000
    for _ in range(200):
        send(line)
    # Within the group's accounting step of the limit, not at the end of the turn.
    assert writes[0] and all(len(data) <= 100 + 64 * 1024 + len(line) for data in writes[0])
    assert writes[1] == []
    small.flush()
    large.flush()
    assert [b"".join(out) for out in writes] == [b"x" * 60 + line * 200] * 2


def test_send_message_sends_what_the_message_class_says_it_is():
    class Shouting(Message):
        __slots__ = ()

        def __bytes__(self):
            return super().__bytes__().upper()

    sent = []
    stream = type("Stream", (), {"send": lambda self, data: sent.append(data)})()
    server = make_server_class(5)("127.0.0.1", 0)._server
    server.send_message(stream, Shouting(Message.REPLY, "thing", ["ok"], mid=4))
    server.send_message(stream, Message.reply("thing", "ok", "a b", mid=4))
    assert sent == [b"!THING[4] OK\n", b"!thing[4] ok a\\_b\n"]


class _Shouting(Message):
    __slots__ = ()


def _shout(msg):
    return b"!SHOUT " + msg.name.upper().encode()


@pytest.mark.parametrize("patched", [Message, _Shouting])
def test_send_message_sends_what_a_bytes_patched_on_a_message_class_gives(patched):
    # Senders write a message's line (Message._line(), the wire form with its newline):
    # a __bytes__ replaced on Message or a subclass, once they exist (as
    # mock.patch.object does), is what they write while it lasts, for that class and its
    # subclasses, as a __bytes__ of a subclass's own is.
    sent = []
    stream = type("Stream", (), {"send": lambda self, data: sent.append(data)})()
    server = make_server_class(5)("127.0.0.1", 0)._server
    plain, shouting = Message.reply("a", "ok", mid=2), _Shouting(Message.REPLY, "b", ["ok"])
    with mock.patch.object(patched, "__bytes__", _shout):
        server.send_message(stream, plain)
        server.send_message(stream, shouting)
    server.send_message(stream, plain)
    server.send_message(stream, shouting)
    assert sent == [b"!SHOUT A\n" if patched is Message else b"!a[2] ok\n", b"!SHOUT B\n",
                    b"!a[2] ok\n", b"!b ok\n"]


class _StandIn:
    mtype, name, mid = Message.INFORM, "thing", None

    def __bytes__(self):
        return b"#thing stood-in"


def _mock_message(make):
    msg = make()
    msg.mtype, msg.name, msg.mid = Message.INFORM, "thing", None
    msg.__bytes__.return_value = b"#thing stood-in"
    return msg


@pytest.mark.parametrize("make", [
    _StandIn,
    lambda: _mock_message(lambda: mock.MagicMock(spec=Message)),
    lambda: _mock_message(lambda: mock.create_autospec(Message, instance=True))],
    ids=["stand-in", "MagicMock(spec=Message)", "autospec"])
def test_a_stand_in_for_a_message_is_sent_as_its_bytes_say(make):
    # check_message() lets through a stand-in of the right type (no Message), such as a
    # mock made to the spec of Message (whose _line() would be a mock's, not bytes): the
    # senders write its bytes, on the loop or from another thread.
    server = make_server_class(5)("127.0.0.1", 0)
    assert server.start(timeout=TIMEOUT)
    try:
        with connect(server) as client:
            conn = next(iter(server._server._connections.values()))
            conn.inform(make())
            server._server.call_from_thread(lambda: conn.inform(make())).result(TIMEOUT)
            assert [client.readline() for _ in range(2)] == [b"#thing stood-in"] * 2
    finally:
        stop(server)


# -- the receive buffer ------------------------------------------------------------------


def test_servers_on_their_own_threads_each_read_only_their_own_clients_bytes():
    # A server's connections read into the receive buffer of its loop, kept when it was
    # installed: two servers, each on its loop's thread, flooded at once with more than a
    # buffer holds per read. Were the buffer shared between them, the bytes of one would
    # turn up in the other.
    count = 20000
    servers = [start(5, "async") for _ in range(2)]
    try:
        views = [server._server._host.receive_view for server in servers]
        assert views[0] is not views[1]
        for server, view in zip(servers, views):
            assert loop_receive_view(server.ioloop) is view
        clients = [connect(server) for server in servers]
        results = {}

        def flood(index, client):
            client.send_raw(b"".join(b"?watchdog[%d]\n" % (index * count + i)
                                     for i in range(count)))

        def read(index, client):
            results[index] = [line for line in client.read_until(
                lambda line: line.startswith(b"!watchdog[%d]" % (index * count + count - 1)))
                if line.startswith(b"!")]

        threads = [threading.Thread(target=job, args=(index, client), daemon=True)
                   for index, client in enumerate(clients) for job in (flood, read)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive()
        for index in range(2):
            assert results[index] == [b"!watchdog[%d] ok" % (index * count + i)
                                      for i in range(count)]
        for client in clients:
            client.sock.close()
    finally:
        for server in servers:
            stop(server)


def test_a_loop_run_by_another_thread_keeps_its_own_receive_buffer():
    # The buffer is the loop's, not that of the thread that ran the loop when its server
    # was installed: a server's loop later run by another thread, while the first thread
    # runs a second loop with servers of its own, shares no buffer with them (their reads
    # would overwrite each other's). The servers of one loop share one (256 KiB each).
    loops = queue.Queue()

    def run_loops_in_turn():
        for ioloop in iter(loops.get, None):
            ioloop.start()

    worker = threading.Thread(target=run_loops_in_turn, daemon=True)
    worker.start()
    first, second = (tornado.ioloop.IOLoop(make_current=False) for _ in range(2))
    servers = [make_server_class(5)("127.0.0.1", 0) for _ in range(3)]
    for server, ioloop in zip(servers, (first, second, second)):
        server.set_concurrency_options(**FLAVOURS["async"])
        server.set_ioloop(ioloop)
    mover = threading.Thread(target=first.start, daemon=True)
    try:
        loops.put(first)
        assert servers[0].start(timeout=TIMEOUT)
        first.add_callback(first.stop)
        loops.put(second)
        assert servers[1].start(timeout=TIMEOUT) and servers[2].start(timeout=TIMEOUT)
        mover.start()
        views = [server._server._host.receive_view for server in servers]
        assert views[0] is loop_receive_view(first)
        assert views[1] is views[2] is loop_receive_view(second)
        assert views[0] is not views[1]
        # Both loops serve at once, on their threads of now.
        clients = [connect(server) for server in servers[:2]]
        for index, client in enumerate(clients):
            client.send_raw(b"?watchdog[%d]\n" % (index + 1))
        for index, client in enumerate(clients):
            assert client.read_until(lambda line: line.startswith(b"!"))[-1] == (
                b"!watchdog[%d] ok" % (index + 1))
            client.sock.close()
    finally:
        for server in servers:
            stop(server)
        loops.put(None)
        for ioloop, thread in ((first, mover), (second, worker)):
            ioloop.add_callback(ioloop.stop)
            thread.join(TIMEOUT)
            assert not thread.is_alive()
            ioloop.close()
