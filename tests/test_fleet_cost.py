"""What the cheaper fleet sync must keep exactly as it was.

The parser unescapes all the arguments of a line together where it can, and a client
resource escapes the names of a whole sync at once: neither may change a single byte of
what comes out, whatever the arguments or names hold. An inspecting client reads a
device's ``#sensor-list`` informs as they arrive rather than keeping them all until the
reply: a malformed one still fails the inspection, and an unanswered list still times
out as a sync error. Sensors of one shape (units, type, params) share what was decoded
of it, but each gets an entry of its own, as if read alone. A container names a child's
sensors with the child's prefix, except aggregate ones, however the names are looked
at. A client's state flags share one condition, yet each waits for its own flag.
"""

import asyncio
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katcp.core import KatcpSyntaxError, Message, MessageParser, Sensor
from katcp.client.lifecycle import StateFlag
from katcp.inspecting_client import InspectingClientAsync, SyncError
from katcp.inspecting_client.parts import _sensor_list_collector
from katcp.resource import escape_name
from katcp.resource_client.inspecting import KATCPClientResourceSensorsManager
from katcp.resource_client.resources import _child_keys, _escape_names
from katcp.wire.text import readable

WAIT = 10.0

# Wire tokens and what each stands for: every escape, plus plain bytes that look like
# parts of one.
_TOKENS = {b"\\\\": b"\\", b"\\_": b" ", b"\\@": b"", b"\\0": b"\0", b"\\n": b"\n",
           b"\\r": b"\r", b"\\e": b"\x1b", b"\\t": b"\t", b"x": b"x", b"_": b"_",
           b"@": b"@", b"0": b"0", b"n": b"n"}

_argument = st.lists(st.sampled_from(sorted(_TOKENS)), min_size=1, max_size=8)


@given(st.lists(_argument, min_size=1, max_size=6))
def test_each_argument_of_a_line_is_unescaped_on_its_own(arguments):
    wire = b"#sensor-list[7] " + b" ".join(b"".join(tokens) for tokens in arguments)
    msg = MessageParser().parse(wire)
    assert msg.arguments == [b"".join(_TOKENS[token] for token in tokens)
                             for tokens in arguments]
    assert msg.name == "sensor-list" and msg.mid == b"7"


@given(st.lists(st.binary(max_size=20), min_size=1, max_size=6))
def test_raw_arguments_survive_a_trip_over_the_wire(arguments):
    msg = Message.inform("sensor-list", *arguments)
    assert MessageParser().parse(bytes(msg)).arguments == arguments


@given(st.lists(st.sampled_from([b"a", b"\\_", b"\\@", b"\\n", b"\\0"]), max_size=6),
       st.sampled_from([b"\\", b"\\q", b"\\\\\\"]))
def test_an_invalid_escape_anywhere_in_the_line_is_refused(tokens, bad):
    wire = b"#x ok " + b"".join(tokens) + bad
    try:
        MessageParser().parse(wire)
    except KatcpSyntaxError as exc:
        assert "Invalid escape sequence" in str(exc)
    else:
        raise AssertionError("parsed %r" % (wire,))


@given(st.lists(st.tuples(st.sampled_from(["help", "sensor-list", "x"]),
                          st.sampled_from([None, 1, 2, 12])), max_size=8))
def test_one_parser_reads_each_header_as_a_fresh_one_would(headers):
    # A reply's informs share one header, which the parser remembers between lines.
    parser = MessageParser()
    for name, mid in headers:
        wire = bytes(Message.inform(name, "a", mid=mid))
        assert (parser.parse(wire).name, parser.parse(wire).mid) == (
            MessageParser().parse(wire).name, MessageParser().parse(wire).mid)
        assert parser.parse(wire).mid == (None if mid is None else b"%d" % mid)


@given(st.lists(st.text(alphabet="ab.-_\n\u00e9", max_size=6), max_size=8))
def test_names_escaped_together_as_one_by_one(names):
    assert _escape_names(names) == [escape_name(name) for name in names]


def test_escapes_stay_inside_their_own_argument():
    # Unescaped together, an argument's escape must not reach into the next.
    parse = MessageParser().parse
    msg = parse(rb"#sensor-list a.b Temp\_of\_a \@ float -1 1")
    assert msg.arguments == [b"a.b", b"Temp of a", b"", b"float", b"-1", b"1"]
    msg = parse(rb"#sensor-list a\0b x\\ \\_ \_\@")
    assert msg.arguments == [b"a\0b", b"x\\", b"\\_", b" "]
    # An escaped backslash before what an empty argument's removal brings next to it.
    msg = parse(rb"#sensor-list \\@n \_\\@\@n")
    assert msg.arguments == [b"\\@n", b" \\@n"]


class _SensorListDevice(asyncio.Protocol):
    """A device answering ``?sensor-list`` with the informs it is given (no other)."""

    def __init__(self, informs, answer=True):
        self.informs = informs
        self.answer = answer

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"#version-connect katcp-protocol 5.0-IM\n")

    def data_received(self, data):
        for line in data.splitlines():
            name, _, mid = line.split()[0].partition(b"[")
            mid = b"[" + mid if mid else b""
            if name == b"?sensor-list" and not self.answer:
                continue
            if name == b"?sensor-list":
                self.transport.write(b"".join(b"#sensor-list" + mid + b" " + inform + b"\n"
                                              for inform in self.informs))
            self.transport.write(b"!" + name[1:] + mid + b" ok %d\n" % len(self.informs))


async def _inspected(device, **kwargs):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: device, "127.0.0.1", 0)
    client = InspectingClientAsync("127.0.0.1", server.sockets[0].getsockname()[1])
    client._state_loop = lambda: None  # inspected by hand below
    try:
        await client.connect(timeout=WAIT)
        await client.katcp_client.until_protocol(timeout=WAIT)
        return await client.inspect_sensors(**kwargs), client.sensors
    finally:
        client.stop()
        server.close()


def test_sensor_list_informs_become_the_index_as_they_arrive():
    device = _SensorListDevice([rb"a.b Temp\_of\_a degC float -1 1", rb"c.d On \@ boolean"])
    changes, sensors = asyncio.run(_inspected(device))
    assert changes.added == {"a.b", "c.d"} and not changes.removed
    assert sorted(sensors) == ["a.b", "c.d"]


def test_a_malformed_sensor_list_inform_fails_the_inspection():
    device = _SensorListDevice([rb"a.b Temp degC float", rb"c.d Truncated"])
    with pytest.raises(ValueError):
        asyncio.run(_inspected(device))


def test_an_unanswered_sensor_list_times_out_as_a_sync_error():
    device = _SensorListDevice([rb"a.b Temp degC float"], answer=False)
    with pytest.raises(SyncError, match="timed out|Timed out|timeout"):
        asyncio.run(_inspected(device, timeout=0.2))


def test_a_replaced_future_request_still_carries_the_sensor_list():
    # Code written for 0.9 fakes or wraps future_request to feed inspections: the
    # streamed path must not bypass it.
    device = _SensorListDevice([rb"a.b Temp\_of\_a degC float -1 1", rb"c.d On \@ boolean"])
    asked = []

    async def inspect():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: device, "127.0.0.1", 0)
        client = InspectingClientAsync("127.0.0.1", server.sockets[0].getsockname()[1])
        client._state_loop = lambda: None
        real = client.katcp_client.future_request

        def future_request(msg, *args, **kwargs):
            asked.append(msg.name)
            return real(msg, *args, **kwargs)

        client.katcp_client.future_request = future_request
        try:
            await client.connect(timeout=WAIT)
            await client.katcp_client.until_protocol(timeout=WAIT)
            return await client.inspect_sensors(), client.sensors
        finally:
            client.stop()
            server.close()

    changes, sensors = asyncio.run(inspect())
    assert asked == ["sensor-list"]
    assert changes.added == {"a.b", "c.d"} and sorted(sensors) == ["a.b", "c.d"]


def test_a_maker_mirrors_sensors_as_one_by_one_mirroring_does():
    manager = KATCPClientResourceSensorsManager(None, "dish")
    described = []

    def describe(name, info):
        described.append(name)
        return dict(name=name, sensor_type=Sensor.INTEGER, description=info["description"],
                    units="deg", params=[0, 90])

    info = {"description": "Elevation"}
    made = manager.mirror_maker(describe)("pos.el", info)
    alone = manager.mirror_sensor("pos.el", info, describe)
    for sensor in (made, alone):
        assert (sensor.name, sensor.description, sensor.parent_name) == (
            "pos.el", "Elevation", "dish")
    assert described == []  # nothing parsed until first used
    assert (made.type, made.units, made.params) == ("integer", "deg", [0, 90])
    assert described == ["pos.el"]


# Sensor-list arguments: plain text, text that is not UTF-8, and repeats (shapes shared).
_wire_text = st.sampled_from([b"deg", b"count", b"", b"\xff\xfe", b"caf\xc3\xa9", b"s.a"])


@given(st.lists(st.tuples(_wire_text, _wire_text, _wire_text,
                          st.sampled_from([b"integer", b"float", b"discrete"]),
                          st.lists(_wire_text, max_size=3)), max_size=12))
def test_sensor_list_entries_are_those_of_sensors_read_one_by_one(informs):
    found = {}
    collect, failures = _sensor_list_collector(found)
    expected = {}
    for name, description, units, sensor_type, params in informs:
        collect(Message.inform("sensor-list", name, description, units, sensor_type, *params))
        expected[readable(name)] = {"description": readable(description),
                                    "units": readable(units),
                                    "sensor_type": readable(sensor_type),
                                    "params": tuple(params)}
    assert not failures
    assert found == expected
    # Each its own entry: marking one (as a resource's mirror does) marks no other.
    for entry in found.values():
        entry["obj"] = object()
    assert len({id(entry["obj"]) for entry in found.values()}) == len(found)
    assert [list(entry) for entry in found.values()] == [
        ["description", "units", "sensor_type", "params", "obj"]] * len(found)


def test_a_sensor_list_inform_short_of_its_type_fails_as_before():
    found = {}
    collect, failures = _sensor_list_collector(found)
    collect(Message.inform("sensor-list", "a.b", "Temp", "degC", "float"))
    collect(Message.inform("sensor-list", "c.d", "Temp", "degC"))
    collect(Message.inform("sensor-list", "e.f", "Temp", "degC", "float", "-1", "1"))
    assert [type(exc) for exc in failures] == [ValueError]
    assert sorted(found) == ["a.b", "e.f"]


@given(st.lists(st.text(alphabet="ag_s.\n", max_size=7), max_size=8),
       st.sampled_from(["sensor", "req"]))
def test_a_childs_keys_are_prefixed_except_aggregate_sensors(names, kind):
    keys = _child_keys("dish_", kind, names)
    assert keys == [name if kind == "sensor" and name.startswith("agg_") else "dish_" + name
                    for name in names]


def test_a_flag_sharing_a_condition_waits_for_its_own_setting():
    condition = threading.Condition(threading.Lock())
    mine, other = StateFlag(condition), StateFlag(condition)
    outcome = []

    def wait_for_mine():
        started = time.monotonic()
        outcome.append((mine.wait(0.3), time.monotonic() - started))

    waiter = threading.Thread(target=wait_for_mine)
    waiter.start()
    # Every setting of the other flag wakes the waiter, which must wait on.
    while waiter.is_alive():
        other.set()
        other.clear()
        waiter.join(0.01)
    (result, waited), = outcome
    assert result is False and waited >= 0.3
    waiter = threading.Thread(target=lambda: outcome.append((mine.wait(WAIT), None)))
    waiter.start()
    mine.set()
    waiter.join(WAIT)
    assert outcome[-1] == (True, None) and mine.is_set() and not other.is_set()


def test_a_flag_set_and_cleared_while_waited_for_releases_its_waiter():
    # As threading.Event: the setting counts, even if cleared before the waiter woke.
    condition = threading.Condition(threading.RLock())
    flag = StateFlag(condition)
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(flag.wait(WAIT)))
    waiter.start()
    while waiter.is_alive():
        with condition:  # the waiter never sees the flag set
            flag.set()
            flag.clear()
        waiter.join(0.01)
    assert outcome == [True] and not flag.is_set()
