"""Sensors of every type over 127.0.0.1, KATCP v4 and v5, on both server kinds.

What ``?sensor-list``, ``?sensor-value`` and event sampling send must parse back (with
:class:`MessageParser` and the sensor's own ``parse_type``, ``parse_params`` and
``parse_reading``) to the sensor's metadata and readings: names, descriptions, units,
discrete values and string values holding every byte KATCP escapes, timestamps in
milliseconds for v4 and in seconds for v5.
"""

import pytest

from katcp import (AsyncDeviceServer, DeviceServer, Message, MessageParser, ProtocolFlags,
                   Sensor)

from server_kinds import started
from server_line_client import LineClient

TIMEOUT = 10
T0 = 1234567890.25
# Every byte with an escape of its own, and a space.
SPECIAL = " \\\t\n\r\x1b\0"


def _sensors():
    return [
        Sensor.string("s.str" + SPECIAL, "String" + SPECIAL, "u" + SPECIAL, default="v" + SPECIAL),
        Sensor.discrete("s.disc", "Discrete.", "", ["", "x" + SPECIAL, "y"], "x" + SPECIAL),
        Sensor.timestamp("s.ts", "Timestamp.", "", default=1234567800.125),
        Sensor.address("s.addr", "Address.", "", default=("::1", 80)),
        Sensor.float("s.float", "Float.", "V", [-1.5, 1e22], default=0.1),
        Sensor.integer("s.int", "Integer.", "", [-5, 5, -10, 10], default=-3),
        Sensor.boolean("s.bool", "Boolean.", "", default=True),
        Sensor.lru("s.lru", "Lru.", "", default=Sensor.LRU_ERROR),
    ]


class _SensorsMixin:
    VERSION_INFO = ("sensor-wire", 1, 0)
    BUILD_INFO = ("sensor-wire", 1, 0, "")

    def setup_sensors(self):
        """Sensors of every type, each with a reading of fixed timestamp and status."""
        for sensor in _sensors():
            sensor.set(T0, Sensor.WARN, sensor.value())
            self.add_sensor(sensor)


def _device(kind, major):
    attrs = {}
    if major == 4:
        attrs["PROTOCOL_INFO"] = ProtocolFlags(4, 0, [ProtocolFlags.MULTI_CLIENT])
    base = DeviceServer if kind == "threaded" else AsyncDeviceServer
    cls = type("SensorWire", (_SensorsMixin, base), attrs)
    return started(kind, cls, cls)


@pytest.fixture(params=[(kind, major) for kind in ("threaded", "async") for major in (4, 5)],
                ids=lambda p: "%s-v%d" % p)
def served(request):
    kind, major = request.param
    server = _device(kind, major)
    client = LineClient(server.bind_address[1], timeout=TIMEOUT)
    client.readlines(3 if major == 5 else 2)  # the greeting
    yield server, client, major
    client.close()
    server.stop(timeout=TIMEOUT).result(TIMEOUT)
    server.join(timeout=TIMEOUT)


def _wire(text):
    """`text` as one escaped KATCP argument."""
    return bytes(Message.inform("x", text))[3:]


def _request(client, *words):
    """Send a request of `words` (escaped); return its informs (Messages), checking
    that its reply is ok."""
    name = words[0]
    client.send(b" ".join([b"?" + name.encode("ascii")] + [_wire(w) for w in words[1:]]))
    parser = MessageParser()
    messages = [parser.parse(line) for line in client.read_until(
        lambda line: line.startswith(b"!" + name.encode("ascii")))]
    *informs, reply = messages
    assert reply.reply_ok(), reply
    return informs


def test_sensor_list_parses_back_to_each_sensors_metadata(served):
    server, client, major = served
    informs = _request(client, "sensor-list")
    assert len(informs) == len(_sensors())
    for inform in informs:
        name, description, units, stype, *params = inform.arguments
        sensor = server.get_sensor(name.decode("utf-8"))
        assert description.decode("utf-8") == sensor.description
        assert units.decode("utf-8") == sensor.units
        assert stype.decode("ascii") == sensor.stype
        assert Sensor.parse_params(Sensor.parse_type(stype), params, major) == sensor.params


def test_sensor_value_parses_back_to_each_sensors_reading(served):
    server, client, major = served
    informs = _request(client, "sensor-value")
    assert len(informs) == len(_sensors())
    for inform in informs:
        timestamp, count, name, status, value = inform.arguments
        assert count == b"1"
        assert timestamp == (b"1234567890250" if major == 4 else b"1234567890.250000")
        sensor = server.get_sensor(name.decode("utf-8"))
        assert sensor.parse_reading(timestamp, status, value, major) == sensor.read()


@pytest.mark.parametrize("name, value", [
    ("s.str" + SPECIAL, "w" + SPECIAL), ("s.disc", ""), ("s.ts", 1234567801.5),
    ("s.addr", ("10.0.0.1", None)), ("s.float", -0.0), ("s.int", 9), ("s.bool", False),
    ("s.lru", Sensor.LRU_NOMINAL)])
def test_event_sampling_sends_readings_that_parse_back(served, name, value):
    server, client, major = served
    sensor = server.get_sensor(name)
    informs = _request(client, "sensor-sampling", name, "event")
    assert [m.arguments[2] for m in informs] == [name.encode("utf-8")]
    sensor.set(T0 + 1, Sensor.ERROR, value)
    inform = MessageParser().parse(client.readline())
    assert (inform.name, inform.arguments[1:3]) == ("sensor-status", [b"1", name.encode()])
    timestamp, _, _, status, raw = inform.arguments
    assert sensor.parse_reading(timestamp, status, raw, major) == (T0 + 1, Sensor.ERROR, value)


def test_values_with_every_escape_are_sent_escaped(served):
    server, client, major = served
    client.send(b"?sensor-value s.disc")
    stamp = b"1234567890250" if major == 4 else b"1234567890.250000"
    assert client.readlines(2) == [
        b"#sensor-value %s 1 s.disc warn x\\_\\\\\\t\\n\\r\\e\\0" % stamp,
        b"!sensor-value ok 1"]


def test_infinite_times_are_sent_as_v5_sends_them_and_parse_back(served):
    # v4's whole milliseconds of an infinite time raised: ?sensor-value and
    # ?sensor-sampling of the sensor (and a bare ?sensor-value) failed with a traceback.
    server, client, major = served
    sensor = server.get_sensor("s.ts")
    sensor.set(float("inf"), Sensor.WARN, float("-inf"))
    informs = _request(client, "sensor-value", "s.ts")
    assert [m.arguments for m in informs] == [[b"inf", b"1", b"s.ts", b"warn", b"-inf"]]
    assert len(_request(client, "sensor-value")) == len(_sensors())
    _request(client, "sensor-sampling", "s.ts", "event")
    sensor.set(float("-inf"), Sensor.ERROR, float("inf"))
    timestamp, _, _, status, raw = MessageParser().parse(client.readline()).arguments
    assert sensor.parse_reading(timestamp, status, raw, major) == sensor.read()
