"""What katcp 0.9.3 code meets on the wire and in the core API, kept as 0.9.3 had it.

Message ids of any digits are echoed as sent, every non-empty bad line is answered with
its own ``#log error``, KATCP v4 millisecond timestamps follow one truncating rule, and
the public constants that touch the wire (reply codes, type symbols, protocol flags,
sensor statuses) are bytes. Behaviour is checked over real sockets where a user meets it.
"""

import asyncio
from decimal import Decimal
from unittest import mock

import pytest
import tornado.gen

import katcp
from katcp.wire.types import format_timestamp
from katcp.client import BlockingClient, DeviceClient
from katcp.core import (AsyncEvent, KatcpTypeError, Message, MessageParser, ProtocolFlags,
                        Sensor)
from katcp.kattypes import (DiscreteMulti, Int, Lru, StrictTimestamp, Timestamp, request,
                            return_reply, send_reply)
from katcp.sensortree import AggregateSensorTree
from katcp.server import DeviceServer

from server_line_client import LineClient

TIMEOUT = 10


class Device(DeviceServer):
    """A v5 device with a failing request and a sensor."""

    VERSION_INFO = ("legacy-api", 1, 0)
    BUILD_INFO = ("legacy-build", 1, 0, "")

    def setup_sensors(self):
        """One integer sensor."""
        self.add_sensor(Sensor.integer("an.int", "An integer.", "", [0, 10]))

    def request_broken(self, req, msg):
        """Always fail."""
        return req.make_reply("fail", "broken on purpose")


class V4Device(DeviceServer):
    """A KATCP v4 device (timestamps in milliseconds) echoing a Timestamp argument."""

    VERSION_INFO = ("legacy-v4-api", 1, 0)
    BUILD_INFO = ("legacy-v4-build", 1, 0, "")
    PROTOCOL_INFO = ProtocolFlags(4, 0, [ProtocolFlags.MULTI_CLIENT])

    def setup_sensors(self):
        """No sensors."""

    @request(Timestamp(), major=4)
    @return_reply(Timestamp(), major=4)
    def request_echo_time(self, req, when):
        """Echo a time (milliseconds on a v4 wire, seconds in the handler)."""
        return ("ok", when)


def _serve(server):
    assert server.start(timeout=TIMEOUT)
    return server


def _stop(server):
    server.stop().result(TIMEOUT)
    server.join(timeout=TIMEOUT)


@pytest.fixture
def device():
    server = _serve(Device("127.0.0.1", 0))
    yield server
    _stop(server)


@pytest.fixture
def v4_device():
    server = _serve(V4Device("127.0.0.1", 0))
    yield server
    _stop(server)


def _line_client(server, greeting_lines):
    client = LineClient(server.bind_address[1], timeout=TIMEOUT)
    client.readlines(greeting_lines)
    return client


# -- message ids --------------------------------------------------------------------------

@pytest.mark.parametrize("mid", [b"0", b"00012", b"2147483648", b"99999999999999999999"])
def test_ids_outside_the_spec_are_echoed_as_sent(device, mid):
    with _line_client(device, 3) as client:
        client.send(b"?watchdog[%s]" % mid)
        assert client.readline() == b"!watchdog[%s] ok" % mid
        # Reply informs carry it too, and so does the reply to an unknown request.
        client.send(b"?help[%s] watchdog" % mid)
        assert client.readline().startswith(b"#help[%s] watchdog " % mid)
        assert client.readline() == b"!help[%s] ok 1" % mid
        client.send(b"?no-such[%s]" % mid)
        assert client.readline() == b"!no-such[%s] invalid Unknown\\_request." % mid


def test_ids_are_kept_verbatim_by_the_parser_and_message():
    msg = MessageParser().parse(b"?watchdog[007]")
    assert msg.mid == b"007"
    assert bytes(Message.reply_to_request(msg, "ok")) == b"!watchdog[007] ok"
    assert Message.request("x", mid="0012").mid == b"0012"
    with pytest.raises(katcp.KatcpSyntaxError):
        Message.request("x", mid=-3)


# -- bad lines ----------------------------------------------------------------------------

def test_every_non_empty_bad_line_gets_its_own_log_error(device):
    with _line_client(device, 3) as client:
        # Two truly empty lines (skipped silently), then four bad lines, then a request.
        client.send_raw(b"\n\n   \n\t\t\n \t \n ?watchdog\n?watchdog[3]\n")
        lines = client.read_until(lambda line: line.startswith(b"!"))
        errors = [line for line in lines if line.startswith(b"#log error ")]
        assert lines[-1] == b"!watchdog[3] ok"
        assert len(errors) == 4 and len(lines) == 5
        assert b"Empty\\_message\\_received." in errors[0]
        assert b"Bad\\_type\\_character\\_'\\_'." in errors[3]


def test_parser_refuses_blank_and_indented_lines():
    parser = MessageParser()
    for line in [b" ", b"\t", b" ?watchdog", b"\t!ok"]:
        with pytest.raises(katcp.KatcpSyntaxError):
            parser.parse(line)


# -- milliseconds on a v4 wire: one truncating rule ----------------------------------------

def test_v4_timestamp_argument_is_echoed_truncated(v4_device):
    with _line_client(v4_device, 2) as client:
        client.send(b"?echo-time 1234567890500.7")
        assert client.readline() == b"!echo-time ok 1234567890500"
        client.send(b"?echo-time 12345")
        assert client.readline() == b"!echo-time ok 12345"


def test_v4_log_timestamps_are_whole_milliseconds(v4_device):
    with _line_client(v4_device, 2) as client:
        client.send(b"*bad")
        level, timestamp = client.readline().split()[1:3]
        assert level == b"error" and timestamp.isdigit() and len(timestamp) >= 13
    inform = v4_device.create_log_inform("warn", "x", "root", timestamp=1234567890.5007)
    assert inform.arguments[1] == b"1234567890500"


@pytest.mark.parametrize("seconds, ms", [
    (1234567890.5007, b"1234567890500"), (1234567890.5, b"1234567890500"),
    (1.001, b"1001"), (1001.9, b"1001900"), (0.0009, b"0"), (-1.5007, b"-1500")])
def test_one_rule_for_whole_milliseconds(seconds, ms):
    # Truncated like 0.9.3, but 1.001 s (1000.9999999999999 ms in floats) is 1001 ms.
    sensor = Sensor.timestamp("t", default=seconds)
    sensor.set(seconds, Sensor.NOMINAL, seconds)
    assert sensor.read_formatted(major=4) == (ms, b"nominal", ms)
    assert Timestamp().pack(seconds, major=4) == ms
    assert format_timestamp(seconds, 4) == ms


def test_v4_sampling_periods_round_trip(v4_device):
    # A v4 period (ms) is held in seconds and echoed in ms by the same rule.
    v4_device.add_sensor(Sensor.integer("an.int"))
    with _line_client(v4_device, 2) as client:
        client.send(b"?sensor-sampling an.int period 1001")
        lines = client.read_until(lambda line: line.startswith(b"!"))
        assert lines[-1] == b"!sensor-sampling ok an.int period 1001"


def test_milliseconds_parse_by_division():
    # 12347100 ms is exactly 12347.1 s (a multiplication by 0.001 is not).
    assert Timestamp().unpack(b"12347100", major=4) == 12347.1
    assert StrictTimestamp().unpack(b"12347100", major=4) == 12347.1
    sensor = Sensor.integer("i")
    sensor.set_formatted(b"12347100", b"warn", b"3", major=4)
    assert sensor.read() == (12347.1, Sensor.WARN, 3)


def test_v3_client_time_conversion_uses_the_same_rule():
    client = DeviceClient("127.0.0.1", 1)
    client.preset_protocol_flags(ProtocolFlags(3, 0, []))
    assert client.convert_seconds(1.001) == 1001
    client.preset_protocol_flags(ProtocolFlags(4, 0, []))
    assert client.convert_seconds(1.5) == 1500.0


# -- numbers of other Python types, as 0.9.3 sent them ------------------------------------

@pytest.fixture(params=[5, 4], ids=["v5", "v4"])
def either_device(request):
    """A v5 or a v4 device, its KATCP major version and its number of greeting lines."""
    major = request.param
    server = _serve((Device if major == 5 else V4Device)("127.0.0.1", 0))
    yield server, major, 3 if major == 5 else 2
    _stop(server)


class _Float64(float):
    """What numpy.float64 is to katcp: a float subclass."""


def test_integer_sensors_with_whole_float_params_are_listed_as_integers(either_device):
    # The 0.9 docs allow params of int or float; 0.9.3 listed an integer sensor's with %d.
    server, _, greeting = either_device
    server.add_sensor(Sensor.integer("x.count", "A count.", "", [0.0, 1e6]))
    with _line_client(server, greeting) as client:
        assert client.request("?sensor-list x.count") == (
            [r"#sensor-list x.count A\_count. \@ integer 0 1000000"], "!sensor-list ok 1")


def test_sensor_values_of_other_number_types_are_sent_as_0_9_3_sent_them(either_device):
    server, major, greeting = either_device
    t0, t1 = (("1234567890.250000", "1234567891.250000") if major == 5
              else ("1234567890250", "1234567891250"))
    # sensor, a first and a second value, and their wire forms.
    cases = [
        (Sensor.integer("n.int"), 3.0, _Float64(7.0), "3", "7"),
        (Sensor.float("n.float"), Decimal("0.1"), Decimal("2.5"), "0.1", "2.5"),
        (Sensor.timestamp("n.ts"), Decimal("1234567890.5"), Decimal("12.25"))
        + (("1234567890.500000", "12.250000") if major == 5 else ("1234567890500", "12250")),
        (Sensor.boolean("n.bool"), 1.0, 0.0, "1", "0"),
    ]
    for sensor, first, _, _, _ in cases:
        sensor.set_value(first, timestamp=1234567890.25)
        server.add_sensor(sensor)
    with _line_client(server, greeting) as client:
        for sensor, _, second, first_wire, second_wire in cases:
            name = sensor.name
            assert client.request("?sensor-value " + name) == (
                ["#sensor-value %s 1 %s nominal %s" % (t0, name, first_wire)],
                "!sensor-value ok 1")
            assert client.request("?sensor-sampling %s event" % (name,)) == (
                ["#sensor-status %s 1 %s nominal %s" % (t0, name, first_wire)],
                "!sensor-sampling ok %s event" % (name,))
            sensor.set_value(second, timestamp=1234567891.25)  # hops to the loop
            assert client.readline().decode() == "#sensor-status %s 1 %s nominal %s" % (
                t1, name, second_wire)


# -- constants that touch the wire ---------------------------------------------------------

def test_reply_codes_compare_with_reply_arguments(device):
    client = BlockingClient("127.0.0.1", device.bind_address[1])
    client.start()
    try:
        assert client.wait_protocol(TIMEOUT)
        reply, _ = client.blocking_request(Message.request("watchdog"), timeout=TIMEOUT)
        assert reply.arguments[0] == katcp.Message.OK
        reply, _ = client.blocking_request(Message.request("broken"), timeout=TIMEOUT)
        assert reply.arguments[0] == katcp.Message.FAIL
        reply, _ = client.blocking_request(Message.request("no-such"), timeout=TIMEOUT)
        assert reply.arguments[0] == katcp.Message.INVALID
        flags = client.protocol_flags
        assert flags.supports(ProtocolFlags.MESSAGE_IDS) and b"M" in flags.flags
        assert str(flags) == "5.0-IM"
    finally:
        client.stop(timeout=TIMEOUT)
        client.join(timeout=TIMEOUT)


def test_type_symbols_and_escapes_are_bytes():
    assert Message.TYPE_SYMBOLS[Message.REQUEST] == b"?"
    assert Message.TYPE_SYMBOL_LOOKUP[b"!"] == Message.REPLY
    assert MessageParser.ESCAPE_LOOKUP[b"e"] == b"\x1b"


def test_protocol_flags_are_bytes_and_checked_against_the_version():
    flags = ProtocolFlags.parse_version(b"5.1-MIU")
    assert flags == ProtocolFlags(5, 1, {b"M", b"I", b"U"}) == ProtocolFlags(5, 1, "MIU")
    assert str(ProtocolFlags(5, 1, {b"I", b"M", b"B"})) == "5.1-BIM"
    for major, minor, flag in [(4, 0, b"I"), (5, 0, b"T"), (5, 0, b"B")]:
        with pytest.raises(ValueError):
            ProtocolFlags(major, minor, [flag])


def test_sensor_status_tables():
    assert Sensor.STATUSES_RAW[Sensor.WARN] == b"warn"
    assert Sensor.STATUS_NAMES_RAW[b"failure"] == Sensor.FAILURE
    assert Sensor.STATUSES[Sensor.WARN] == "warn"


# -- smaller legacy API points -------------------------------------------------------------

def test_sensor_legacy_value_attribute_and_description():
    sensor = Sensor.float("volts", unit="V", default=1.5)
    assert sensor._value == 1.5
    sensor.set_value(2.5, Sensor.WARN, 1234.5)
    assert (sensor._timestamp, sensor._status, sensor._value) == (1234.5, Sensor.WARN, 2.5)
    assert sensor.description == "Float sensor 'volts' in unit V"
    with pytest.raises(KatcpTypeError):
        sensor.parse_value("2.5")


def test_lru_constants_and_discrete_multi_packing():
    assert Lru().pack(Lru.LRU_ERROR) == b"error"
    assert Lru().unpack(b"nominal") == Lru.LRU_NOMINAL
    assert DiscreteMulti(["a", "b"]).pack(["b", "a"]) == b"b,a"
    with pytest.raises(ValueError):
        StrictTimestamp().pack("soon")


def test_return_reply_with_a_stand_in_request():
    class Handlers:
        @return_reply()
        def request_ping(self, req):
            """Ping."""
            return ("ok",)

    stand_in = mock.Mock()  # a 0.9.3 test's req: msg.name and msg.mid are mocks
    assert bytes(Handlers().request_ping(stand_in)) == b"!ping ok"


def test_send_reply_with_a_stand_in_request():
    class Handlers:
        @send_reply(Int())
        def finish(self, req, value):
            return (req, "ok", value)

    stand_in = mock.Mock()
    stand_in.msg.name = "count"
    Handlers().finish(stand_in, 3)
    stand_in.reply_with_message.assert_called_once_with(Message.reply("count", "ok", 3))


def test_until_set_timeout():
    async def main():
        event = AsyncEvent()
        with pytest.raises(tornado.gen.TimeoutError):
            await event.until_set(timeout=0.01)
        asyncio.get_running_loop().call_soon(event.set)
        assert await event.until_set(timeout=TIMEOUT) is True
    asyncio.run(main())


def test_sensor_trees_are_exported_and_deregistering_suspends_an_aggregate():
    assert katcp.AggregateSensorTree is AggregateSensorTree
    assert katcp.GenericSensorTree and katcp.BooleanSensorTree
    tree = AggregateSensorTree()
    total, a, b = (Sensor.integer(name) for name in ("total", "a", "b"))

    def add(parent, children):
        parent.set_value(sum(child.value() for child in children))

    tree.add_delayed(total, add, ["a", "b"])
    tree.register_sensor(a)
    tree.register_sensor(b)
    a.set_value(2)
    b.set_value(3)
    assert total.value() == 5
    tree.deregister_sensor(a)
    assert total.value() == 3       # recalculated once without a
    b.set_value(4)
    assert total.value() == 3       # then waits for a sensor named a again
    tree.register_sensor(a)
    assert total.value() == 6
