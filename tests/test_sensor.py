"""Tests for katcp.core.Sensor and Reading: types, defaults, checks, formats (v4 and
v5, as on the wire), parsing and observers."""

import datetime
import decimal
import fractions
import math
import re
import threading
import time
from unittest import mock

import pytest

from katcp.core import KatcpTypeError, Reading, Sensor
from katcp.wire.types import format_timestamp

T0 = 1234567890.25


# Values that set_value() refuses, and some it accepts, (constructor, params, value): a
# sensor's default is checked by the same rule.
REFUSED_VALUES = [
    (Sensor.integer, None, 1.5),
    (Sensor.integer, [0, 10], "1"),
    (Sensor.integer, None, None),
    (Sensor.float, None, "1.0"),
    (Sensor.float, [0.0, 1.0], None),
    (Sensor.discrete, ["on", "off"], "blah"),
    (Sensor.discrete, ["on", "off"], "ON"),
    (Sensor.boolean, None, 2),
    (Sensor.boolean, None, "true"),
    (Sensor.lru, None, 5),
    (Sensor.lru, None, "error"),
    (Sensor.timestamp, None, "now"),
    (Sensor.address, None, "1.2.3.4"),
    (Sensor.address, None, ("1.2.3.4", "80")),
    (Sensor.address, None, ("1.2.3.4", 70000)),
]
ACCEPTED_VALUES = [
    (Sensor.integer, [0, 10], 10),
    (Sensor.integer, [0, 10], 0),
    (Sensor.integer, None, 3.0),
    (Sensor.float, [0.0, 1.0], 1),
    (Sensor.float, None, float("nan")),
    # The range is advisory, as in the reference (sensor-float-format.txt).
    (Sensor.float, [-50.0, 150.0], 1e22),
    (Sensor.float, [-50.0, 150.0], float("-inf")),
    (Sensor.integer, [0, 10], 11),
    (Sensor.discrete, ["on", "off"], "off"),
    (Sensor.discrete, ["on", "off"], b"on"),
    (Sensor.boolean, None, True),
    (Sensor.boolean, None, 1),
    (Sensor.lru, None, Sensor.LRU_ERROR),
    (Sensor.string, None, "caf\u00e9"),
    (Sensor.string, None, b"\xff"),
    (Sensor.string, None, 5),
    (Sensor.timestamp, None, T0),
    (Sensor.timestamp, None, 123),
    (Sensor.address, None, ("::1", None)),
    (Sensor.address, None, ("192.168.101.1", 81)),
]


class Recorder:
    """Observer that records every update."""

    def __init__(self):
        self.updates = []

    def update(self, sensor, reading):
        self.updates.append((sensor, reading))


def test_constants():
    assert (Sensor.INTEGER, Sensor.FLOAT, Sensor.BOOLEAN, Sensor.LRU, Sensor.DISCRETE,
            Sensor.STRING, Sensor.TIMESTAMP, Sensor.ADDRESS) == tuple(range(8))
    assert (Sensor.UNKNOWN, Sensor.NOMINAL, Sensor.WARN, Sensor.ERROR, Sensor.FAILURE,
            Sensor.UNREACHABLE, Sensor.INACTIVE) == tuple(range(7))
    assert Sensor.STATUSES == {0: "unknown", 1: "nominal", 2: "warn", 3: "error",
                               4: "failure", 5: "unreachable", 6: "inactive"}
    assert Sensor.STATUS_NAMES == {v: k for k, v in Sensor.STATUSES.items()}
    assert (Sensor.LRU_NOMINAL, Sensor.LRU_ERROR) == (0, 1)
    # The tables 0.9.3 code looks types and lru values up in, as they go on the wire.
    assert Sensor.SENSOR_TYPE_LOOKUP == {
        "integer": Sensor.INTEGER, "float": Sensor.FLOAT, "boolean": Sensor.BOOLEAN,
        "lru": Sensor.LRU, "discrete": Sensor.DISCRETE, "string": Sensor.STRING,
        "timestamp": Sensor.TIMESTAMP, "address": Sensor.ADDRESS}
    assert Sensor.LRU_VALUES == {Sensor.LRU_NOMINAL: b"nominal", Sensor.LRU_ERROR: b"error"}
    assert Sensor.LRU_CONSTANTS == {b"nominal": Sensor.LRU_NOMINAL, b"error": Sensor.LRU_ERROR}
    assert Sensor.MILLISECOND == 1000


def test_sensor_types_come_apart_as_0_9_3s_kattype_and_default_pairs():
    from katcp import kattypes

    pairs = {stype: tuple(kind) for stype, kind in Sensor.SENSOR_TYPES.items()}
    assert pairs == {
        Sensor.INTEGER: (kattypes.Int, 0), Sensor.FLOAT: (kattypes.Float, 0.0),
        Sensor.BOOLEAN: (kattypes.Bool, False),
        Sensor.LRU: (kattypes.Lru, Sensor.LRU_NOMINAL),
        Sensor.DISCRETE: (kattypes.Discrete, "unknown"), Sensor.STRING: (kattypes.Str, ""),
        Sensor.TIMESTAMP: (kattypes.Timestamp, 0.0),
        Sensor.ADDRESS: (kattypes.Address, ("0.0.0.0", None))}
    kattype, default = Sensor.SENSOR_TYPES[Sensor.FLOAT]
    assert kattype().pack(default) == b"0.0"
    assert len(Sensor.SENSOR_TYPES[Sensor.STRING]) == 2
    assert Sensor.SENSOR_TYPES[Sensor.INTEGER][-1] == 0


@pytest.mark.parametrize("stype", sorted(Sensor.SENSOR_TYPE_LOOKUP.values()))
def test_each_type_name_is_the_stype_of_its_sensors(stype):
    params = ["a"] if stype == Sensor.DISCRETE else None
    name = Sensor(stype, "s", params=params).stype
    assert Sensor.SENSOR_TYPE_LOOKUP[name] == stype == Sensor.parse_type(name)


@pytest.mark.parametrize("lru", [Sensor.LRU_NOMINAL, Sensor.LRU_ERROR])
def test_lru_tables_are_what_lru_sensors_send_and_parse(lru):
    sensor = Sensor.lru("l", default=lru)
    assert sensor.read_formatted()[2] == Sensor.LRU_VALUES[lru]
    assert sensor.parse_value(Sensor.LRU_VALUES[lru]) == lru
    assert Sensor.LRU_CONSTANTS[Sensor.LRU_VALUES[lru]] == lru


def test_reading_namedtuple():
    reading = Reading(T0, Sensor.NOMINAL, 3)
    assert reading == (T0, 1, 3)
    assert (reading.timestamp, reading.status, reading.value) == (T0, 1, 3)
    ts, status, value = reading
    assert value == 3


class TestConstruction:

    @pytest.mark.parametrize("ctor, stype, default", [
        (Sensor.integer, "integer", 0),
        (Sensor.float, "float", 0.0),
        (Sensor.boolean, "boolean", False),
        (Sensor.lru, "lru", Sensor.LRU_NOMINAL),
        (Sensor.string, "string", ""),
        (Sensor.timestamp, "timestamp", 0.0),
        (Sensor.address, "address", ("0.0.0.0", None)),
    ])
    def test_typed_constructors_and_defaults(self, ctor, stype, default):
        before = time.time()
        sensor = ctor("a.b", "Desc.", "")
        assert sensor.stype == stype
        assert sensor.name == "a.b"
        assert sensor.description == "Desc."
        assert sensor.units == ""
        reading = sensor.read()
        assert isinstance(reading, Reading)
        assert reading.value == default and type(reading.value) is type(default)
        assert reading.status == Sensor.UNKNOWN
        assert before <= reading.timestamp <= time.time()
        assert sensor.params == [] and sensor.formatted_params == []

    def test_discrete(self):
        sensor = Sensor.discrete("mode", "Mode.", "", ["idle", "busy", "error"])
        assert sensor.stype == "discrete"
        assert sensor.params == ["idle", "busy", "error"]
        assert sensor.formatted_params == [b"idle", b"busy", b"error"]
        assert sensor.value() == "idle"

    def test_discrete_bytes_params_become_str(self):
        sensor = Sensor.discrete(b"mode", b"Mode.", b"", [b"on", "off"])
        assert sensor.params == ["on", "off"]
        assert (sensor.name, sensor.description, sensor.units) == ("mode", "Mode.", "")

    @pytest.mark.parametrize("params", [None, [], [1, 2]])
    def test_discrete_needs_str_params(self, params):
        with pytest.raises(ValueError):
            Sensor.discrete("d", "D.", "", params)

    def test_numeric_params_and_defaults(self):
        isensor = Sensor.integer("i", "I.", "count", [-5, 5])
        assert isensor.params == [-5, 5]
        assert isensor.formatted_params == [b"-5", b"5"]
        assert isensor.value() == 0
        fsensor = Sensor.float("f", "F.", "degC", [-50.0, 150])
        assert fsensor.formatted_params == [b"-50.0", b"150.0"]
        assert fsensor.read_formatted()[2] == b"0.0"
        # Integer params of a float sensor are formatted as floats (sensor-list-regex.txt).
        assert Sensor.float("add.result", params=[-10000, 10000]).formatted_params == [
            b"-10000.0", b"10000.0"]
        assert Sensor.float("f", params=[0.5, 5.0], default=1.5).value() == 1.5

    @pytest.mark.parametrize("ctor, params, default", [
        (Sensor.integer, [2, 10], 2), (Sensor.integer, [-10, -2], -10),
        (Sensor.float, [0.5, 5.0], 0.5), (Sensor.float, [-3.0, -1.0], -3.0),
        (Sensor.integer, [0, 100], 0)])
    def test_default_is_the_minimum_when_zero_is_out_of_range(self, ctor, params, default):
        assert ctor("x", params=params).value() == default

    def test_a_range_of_one_value_is_allowed(self):
        assert Sensor.integer("x", params=[0, 10, 5, 5]).params == [0, 10, 5, 5]
        assert Sensor.float("x", params=[2.0, 2.0]).value() == 2.0

    def test_a_range_from_negative_zero_gives_the_default_positive_zero(self):
        # The range allows the type's zero, so a never-set sensor reads it, not -0.0.
        assert Sensor.float("x", params=[-0.0, 1.0]).read_formatted()[2] == b"0.0"

    @pytest.mark.parametrize("ctor, params", [
        (Sensor.integer, [1]), (Sensor.integer, [1, 2, 3]), (Sensor.integer, [5, 1]),
        (Sensor.integer, [0.0, 5.5]), (Sensor.integer, ["0", "5"]),
        (Sensor.float, ["a", "b"]), (Sensor.float, [3.0, 1.0]),
    ])
    def test_bad_numeric_params(self, ctor, params):
        with pytest.raises(ValueError):
            ctor("x", "X.", "", params)

    def test_params_on_other_types_rejected(self):
        with pytest.raises(ValueError):
            Sensor(Sensor.STRING, "s", "S.", "", ["x"])

    def test_constructor_arguments(self):
        sensor = Sensor(Sensor.INTEGER, "int.ctor", "Made with the constructor.", "m s-1",
                        [-5, 5], default=2, initial_status=Sensor.WARN)
        assert sensor.units == "m s-1"
        assert sensor.read()[1:] == (Sensor.WARN, 2)

    def test_units_default(self):
        assert Sensor(Sensor.INTEGER, "x", "X.").units == ""

    @pytest.mark.parametrize("ptype, stype", [(int, "integer"), (float, "float"),
                                              (bool, "boolean"), (str, "string")])
    def test_python_type_shortcuts(self, ptype, stype):
        assert Sensor(ptype, "x", "X.").stype == stype

    def test_default_description(self):
        assert Sensor.integer("int.nodesc").description == \
            "Integer sensor 'int.nodesc' with no unit"
        assert Sensor.float("volts", unit="V").description == "Float sensor 'volts' in unit V"

    # An unhashable one (a list) too: a ValueError as documented, not "unhashable type".
    @pytest.mark.parametrize("bad", [99, "integer", [0], {}])
    def test_bad_type_and_status(self, bad):
        with pytest.raises(ValueError, match=r"^Invalid sensor type "):
            Sensor(bad, "x")
        with pytest.raises(ValueError, match=r"^Invalid initial status "):
            Sensor.integer("x", initial_status=bad)

    @pytest.mark.parametrize("status", list(range(7)))
    def test_initial_status(self, status):
        assert Sensor.boolean("b", initial_status=status).status() == status

    def test_repr_mentions_name(self):
        assert "'a.b'" in repr(Sensor.integer("a.b"))

    @pytest.mark.parametrize("ctor, params, value",
                             [case for case in REFUSED_VALUES if case[2] is not None])
    def test_a_default_that_set_value_refuses_is_refused_alike(self, ctor, params, value):
        sensor = ctor("x") if params is None else ctor("x", params=params)
        with pytest.raises(ValueError) as refused:
            sensor.set_value(value)
        with pytest.raises(ValueError, match="^%s$" % re.escape(str(refused.value))):
            ctor("x", default=value) if params is None else ctor("x", params=params,
                                                                  default=value)

    @pytest.mark.parametrize("ctor, params, value", ACCEPTED_VALUES)
    def test_a_default_that_set_value_accepts_is_the_value(self, ctor, params, value):
        sensor = ctor("x", default=value) if params is None else ctor("x", params=params,
                                                                      default=value)
        assert sensor.value() is value

    @pytest.mark.parametrize("name", [None, 5, ["a"], ("a", "b")])
    def test_a_name_that_is_not_text_is_refused(self, name):
        with pytest.raises(TypeError, match="Sensor name must be a str"):
            Sensor.integer(name)

    def test_a_bytes_name_is_decoded(self):
        assert Sensor.integer(b"an.int").name == "an.int"


class TestSetAndRead:

    def test_set_and_read(self):
        sensor = Sensor.integer("i", "I.", "", [0, 10])
        sensor.set(T0, Sensor.WARN, 7)
        assert sensor.read() == Reading(T0, Sensor.WARN, 7)
        assert sensor.status() == Sensor.WARN
        assert sensor.value() == 7

    def test_set_does_not_check(self):
        sensor = Sensor.integer("i", "I.", "", [0, 10])
        sensor.set(T0, Sensor.NOMINAL, 100)
        assert sensor.value() == 100

    def test_set_value_defaults(self):
        sensor = Sensor.float("f")
        before = time.time()
        sensor.set_value(2.5)
        ts, status, value = sensor.read()
        assert (status, value) == (Sensor.NOMINAL, 2.5)
        assert before <= ts <= time.time()
        sensor.set_value(3.5, Sensor.ERROR, T0)
        assert sensor.read() == (T0, Sensor.ERROR, 3.5)

    @pytest.mark.parametrize("target", ["katcp.core.time.time", "katcp.client.time.time",
                                        "katcp.server.time.time"])
    def test_set_value_takes_the_time_patched_where_0_9_3_code_patches_it(self, target):
        # 0.9.3's Sensor lived in katcp/core.py: tests pin its timestamps through the time
        # module that katcp.core (and katcp.client, katcp.server) import.
        with mock.patch(target, return_value=4321.0):
            sensor = Sensor.integer("an.int", "An int.", "", [0, 10])
            assert sensor.read()[0] == 4321.0
            sensor.set_value(3)
        assert sensor.read() == (4321.0, Sensor.NOMINAL, 3)

    @pytest.mark.parametrize("ctor, params, value", REFUSED_VALUES)
    def test_set_value_checks(self, ctor, params, value):
        if params is None:
            sensor = ctor("x")
        else:
            sensor = ctor("x", params=params)
        before = sensor.read()
        with pytest.raises(ValueError):
            sensor.set_value(value)
        assert sensor.read() == before

    @pytest.mark.parametrize("ctor, params, value", ACCEPTED_VALUES)
    def test_set_value_accepts(self, ctor, params, value):
        sensor = ctor("x") if params is None else ctor("x", params=params)
        sensor.set_value(value)
        assert sensor.value() is value or sensor.value() == value

    @pytest.mark.parametrize("timestamp", ["12:00", b"1.5", datetime.datetime(2020, 1, 1),
                                           [T0]])
    def test_a_timestamp_that_is_no_number_is_refused_and_nothing_set(self, timestamp):
        sensor = Sensor.integer("x")
        recorder = Recorder()
        sensor.attach(recorder)
        before = sensor.read()
        refusal = (r"^Sensor timestamp must be a number of seconds, not %s\.$"
                   % re.escape(repr(timestamp)))
        with pytest.raises(TypeError, match=refusal):
            sensor.set_value(5, timestamp=timestamp)
        with pytest.raises(TypeError, match=refusal):
            sensor.set(timestamp, Sensor.NOMINAL, 5)
        assert sensor.read() is before
        assert recorder.updates == []

    @pytest.mark.parametrize("timestamp", [T0, 1234, True, decimal.Decimal("1.5"),
                                           fractions.Fraction(3, 2), float("nan")])
    def test_real_timestamps_are_set(self, timestamp):
        sensor = Sensor.integer("x")
        sensor.set_value(5, timestamp=timestamp)
        assert sensor.read().timestamp is timestamp
        sensor.set(timestamp, Sensor.WARN, 6)
        assert sensor.read() == (timestamp, Sensor.WARN, 6) or timestamp != timestamp

    @pytest.mark.parametrize("major", [4, 5])
    def test_set_value_takes_python_values_whatever_the_major(self, major):
        # `major` is kept for 0.9 callers: a v4 timestamp value is seconds too (the wire
        # form alone is in milliseconds), and values are checked alike.
        sensor = Sensor.timestamp("t")
        sensor.set_value(1234.5, Sensor.WARN, T0, major=major)
        assert sensor.read() == (T0, Sensor.WARN, 1234.5)
        assert sensor.read_formatted(4)[2] == b"1234500"
        with pytest.raises(ValueError):
            Sensor.integer("i").set_value(1.5, major=major)

    @pytest.mark.parametrize("status", [42, "nominal", [1], {}])
    def test_set_value_bad_status(self, status):
        sensor = Sensor.integer("x")
        before = sensor.read()
        with pytest.raises(ValueError, match=r"^Invalid status "):
            sensor.set_value(1, status=status)
        assert sensor.read() is before


class TestFormatting:
    """Formats match the reference's wire transcripts byte for byte."""

    @pytest.mark.parametrize("ctor, params, value, formatted", [
        (Sensor.integer, [0, 1000], 42, b"42"),
        (Sensor.integer, [-5, 5], -3, b"-3"),
        (Sensor.float, None, 21.5, b"21.5"),
        (Sensor.float, None, 0.1, b"0.1"),
        (Sensor.float, None, 1e-7, b"1e-07"),
        (Sensor.float, None, 123456789012.5, b"123456789012.5"),
        (Sensor.float, None, 0.30000000000000004, b"0.30000000000000004"),
        (Sensor.float, None, 1e22, b"1e+22"),
        (Sensor.float, None, float("nan"), b"nan"),
        (Sensor.float, None, float("-inf"), b"-inf"),
        (Sensor.float, None, 3, b"3.0"),
        (Sensor.boolean, None, True, b"1"),
        (Sensor.boolean, None, False, b"0"),
        (Sensor.discrete, ["idle", "busy"], "busy", b"busy"),
        (Sensor.lru, None, Sensor.LRU_ERROR, b"error"),
        (Sensor.lru, None, Sensor.LRU_NOMINAL, b"nominal"),
        (Sensor.string, None, "hello world\twith\\specials", b"hello world\twith\\specials"),
        (Sensor.string, None, "caf\u00e9", b"caf\xc3\xa9"),
        (Sensor.string, None, "", b""),
        (Sensor.timestamp, None, 1234567800.125, b"1234567800.125000"),
        (Sensor.timestamp, None, 0, b"0.000000"),
        (Sensor.address, None, ("10.0.0.1", 7147), b"10.0.0.1:7147"),
        (Sensor.address, None, ("0.0.0.0", None), b"0.0.0.0"),
        (Sensor.address, None, ("::1", 80), b"[::1]:80"),
        (Sensor.address, None, ("2001:db8::7334", None), b"[2001:db8::7334]"),
    ])
    def test_v5_value_formats(self, ctor, params, value, formatted):
        sensor = ctor("x") if params is None else ctor("x", params=params)
        sensor.set_value(value, Sensor.NOMINAL, T0)
        assert sensor.read_formatted() == (b"1234567890.250000", b"nominal", formatted)
        assert sensor.read_formatted(5) == sensor.format_reading(sensor.read())
        assert sensor.format_reading(sensor.read(), major=5)[2] == formatted

    @pytest.mark.parametrize("status", list(range(7)))
    def test_status_formats(self, status):
        sensor = Sensor.integer("x")
        sensor.set(T0, status, 1)
        assert sensor.read_formatted()[1] == Sensor.STATUSES[status].encode()

    def test_v4_formats(self):
        # Matches transcripts/v4-sensors.txt: millisecond timestamps.
        ts_sensor = Sensor.timestamp("v4.ts", "Timestamp.")
        ts_sensor.set_value(1234567800.125, Sensor.NOMINAL, T0)
        assert ts_sensor.read_formatted(4) == (b"1234567890250", b"nominal",
                                               b"1234567800125")
        fsensor = Sensor.float("v4.float", "Float.", "V", [0.0, 5.0])
        fsensor.set_value(3.3, Sensor.WARN, T0)
        assert fsensor.read_formatted(major=4) == (b"1234567890250", b"warn", b"3.3")
        assert fsensor.formatted_params == [b"0.0", b"5.0"]
        bsensor = Sensor.boolean("v4.bool", "Boolean.", "")
        bsensor.set_value(False, Sensor.ERROR, T0)
        assert bsensor.read_formatted(4) == (b"1234567890250", b"error", b"0")
        isensor = Sensor.integer("v4.int", "Integer.", "", [0, 100])
        isensor.set_value(10, Sensor.NOMINAL, T0)
        assert isensor.read_formatted(4)[2] == b"10"

    def test_v4_timestamp_rounding(self):
        sensor = Sensor.integer("x")
        sensor.set(1.001, Sensor.NOMINAL, 0)
        assert sensor.read_formatted(4)[0] == b"1001"

    @pytest.mark.parametrize("timestamp, v4", [
        (float("inf"), b"inf"), (float("-inf"), b"-inf"), (float("nan"), b"nan")])
    def test_v4_non_finite_timestamps_are_written_as_v5_writes_them(self, timestamp, v4):
        sensor = Sensor.timestamp("x")
        sensor.set(timestamp, Sensor.NOMINAL, timestamp)
        assert sensor.read_formatted(4) == (v4, b"nominal", v4)
        assert sensor.status_line(sensor.read(), 4) == b"%s 1 x nominal %s" % (v4, v4)
        assert sensor.read_formatted(5) == (v4, b"nominal", v4)

    def test_format_reading_of_other_reading(self):
        sensor = Sensor.integer("x")
        reading = Reading(T0, Sensor.FAILURE, -3)
        assert sensor.format_reading(reading) == (b"1234567890.250000", b"failure", b"-3")


class TestParsing:

    @pytest.mark.parametrize("ctor, params, raw, value", [
        (Sensor.integer, None, b"42", 42),
        (Sensor.integer, None, b"-7", -7),
        (Sensor.integer, None, b"007", 7),
        (Sensor.float, None, b"1.5", 1.5),
        (Sensor.float, None, b"1e-07", 1e-7),
        (Sensor.float, None, b"-inf", -math.inf),
        (Sensor.float, [-50.0, 150.0], b"1e22", 1e22),
        (Sensor.integer, [0, 10], b"+11", 11),
        (Sensor.boolean, None, b"1", True),
        (Sensor.boolean, None, b"0", False),
        (Sensor.discrete, ["on", "off"], b"off", "off"),
        (Sensor.lru, None, b"error", Sensor.LRU_ERROR),
        (Sensor.lru, None, b"nominal", Sensor.LRU_NOMINAL),
        (Sensor.string, None, b"caf\xc3\xa9", "caf\u00e9"),
        (Sensor.string, None, b"", ""),
        (Sensor.timestamp, None, b"1234567800.125000", 1234567800.125),
        (Sensor.timestamp, None, b"1234567800", 1234567800.0),
        (Sensor.address, None, b"10.0.0.1:7147", ("10.0.0.1", 7147)),
        (Sensor.address, None, b"127.0.0.1", ("127.0.0.1", None)),
        (Sensor.address, None, b"[::1]", ("::1", None)),
        (Sensor.address, None, b"[::1]:80", ("::1", 80)),
        (Sensor.address, None, b"[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:4000",
         ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", 4000)),
        (Sensor.address, None, b"host.example:22", ("host.example", 22)),
    ])
    def test_parse_value(self, ctor, params, raw, value):
        sensor = ctor("x") if params is None else ctor("x", params=params)
        parsed = sensor.parse_value(raw)
        assert parsed == value and type(parsed) is type(value)

    @pytest.mark.parametrize("ctor, params, raw", [
        (Sensor.integer, None, b"abc"),
        (Sensor.integer, None, b"1.5"),
        (Sensor.integer, None, b""),
        (Sensor.float, None, b"x"),
        (Sensor.boolean, None, b"2"),
        (Sensor.boolean, None, b"true"),
        (Sensor.discrete, ["on", "off"], b"maybe"),
        (Sensor.lru, None, b"ok"),
        (Sensor.string, None, b"\xff"),
        (Sensor.timestamp, None, b"yesterday"),
        (Sensor.address, None, b""),
        (Sensor.address, None, b"1.2.3.4:http"),
        (Sensor.address, None, b"[::1"),
        (Sensor.address, None, b"1.2.3.4:99999"),
    ])
    def test_parse_bad_value(self, ctor, params, raw):
        sensor = ctor("x") if params is None else ctor("x", params=params)
        with pytest.raises(ValueError):
            sensor.parse_value(raw)

    def test_parse_value_only_accepts_bytes(self):
        # A type error (KatcpTypeError), as in katcp 0.9.3.
        with pytest.raises(KatcpTypeError):
            Sensor.integer("x").parse_value("42")

    @pytest.mark.parametrize("raw", [
        ("1.0", "nominal", b"3"), (b"1.0", "nominal", b"3"), (b"1.0", b"nominal", "3")])
    def test_a_status_or_value_that_is_str_is_a_type_error_saying_bytes(self, raw):
        sensor = Sensor.integer("i")
        before = sensor.read()
        with pytest.raises(KatcpTypeError, match=r"must be parsed from bytes, not <class 'str'>"):
            sensor.parse_reading(*raw)
        with pytest.raises(KatcpTypeError, match=r"must be parsed from bytes, not <class 'str'>"):
            sensor.set_formatted(*raw)
        assert sensor.read() is before

    @pytest.mark.parametrize("status", [bytearray(b"nominal"), [b"nominal"], None])
    def test_a_status_of_another_type_is_a_type_error_saying_bytes(self, status):
        sensor = Sensor.integer("i")
        before = sensor.read()
        for parse in (sensor.parse_reading, sensor.set_formatted):
            with pytest.raises(KatcpTypeError, match=r"must be parsed from bytes, not <class "):
                parse(b"1.0", status, b"3")
        assert sensor.read() is before

    def test_an_unknown_status_is_a_value_error(self):
        with pytest.raises(ValueError, match=r"^Invalid sensor status 'bogus'\.$"):
            Sensor.integer("i").parse_reading(b"1.0", b"bogus", b"3")

    def test_string_sensor_takes_any_value(self):
        # katcp 0.9.3 formats any value of a string sensor with str().
        sensor = Sensor.string("x")
        sensor.set_value([1, "two"])
        assert sensor.value() == [1, "two"]
        assert sensor.read_formatted()[2] == b"[1, 'two']"
        sensor.set_value(5)
        assert sensor.read_formatted()[2] == b"5"

    def test_parse_v4_timestamp_value(self):
        sensor = Sensor.timestamp("x")
        assert sensor.parse_value(b"1234567800125", 4) == 1234567800.125
        assert sensor.parse_value(b"1222195721660237.85", katcp_major=4) == \
            pytest.approx(1222195721660.23785)

    def test_set_formatted(self):
        sensor = Sensor.float("x", params=[0.0, 10.0])
        sensor.set_formatted(b"1234567890.250000", b"warn", b"3.5")
        assert sensor.read() == (T0, Sensor.WARN, 3.5)
        sensor.set_formatted(b"1234567999123", b"unreachable", b"4.5", major=4)
        assert sensor.read() == (1234567999.123, Sensor.UNREACHABLE, 4.5)
        with pytest.raises(ValueError):
            sensor.set_formatted(b"1", b"bogus", b"1.0")
        with pytest.raises(ValueError):
            sensor.set_formatted(b"now", b"nominal", b"1.0")
        with pytest.raises(ValueError):
            sensor.set_formatted(b"1", b"nominal", b"eleven")

    @pytest.mark.parametrize("raw, stype", [
        (b"integer", Sensor.INTEGER), ("float", Sensor.FLOAT), (b"boolean", Sensor.BOOLEAN),
        (b"lru", Sensor.LRU), (b"discrete", Sensor.DISCRETE), (b"string", Sensor.STRING),
        (b"timestamp", Sensor.TIMESTAMP), (b"address", Sensor.ADDRESS)])
    def test_parse_type(self, raw, stype):
        assert Sensor.parse_type(raw) == stype

    def test_parse_bad_type(self):
        with pytest.raises(ValueError):
            Sensor.parse_type(b"complex")

    def test_parse_params(self):
        assert Sensor.parse_params(Sensor.INTEGER, [b"0", b"1000"]) == [0, 1000]
        assert Sensor.parse_params(Sensor.FLOAT, [b"-50.0", b"150.0"]) == [-50.0, 150.0]
        assert Sensor.parse_params(Sensor.DISCRETE, [b"apple", b"kiwi"]) == ["apple", "kiwi"]
        assert Sensor.parse_params(Sensor.BOOLEAN, []) == []
        assert Sensor.parse_params(Sensor.FLOAT, [b"0.0", b"5.0"], major=4) == [0.0, 5.0]
        with pytest.raises(ValueError):
            Sensor.parse_params(Sensor.INTEGER, [b"a", b"b"])

    def test_format_parse_round_trip(self):
        sensors = [(Sensor.integer("i", params=[-10, 10]), 7),
                   (Sensor.float("f"), 0.1 + 0.2), (Sensor.boolean("b"), True),
                   (Sensor.lru("l"), Sensor.LRU_ERROR),
                   (Sensor.discrete("d", params=["a", "b"]), "b"),
                   (Sensor.string("s"), "x y\u00e9"), (Sensor.timestamp("t"), 1.5),
                   (Sensor.address("a"), ("::1", 7))]
        for major in (4, 5):
            for sensor, value in sensors:
                sensor.set_value(value, Sensor.WARN, T0)
                raw = sensor.read_formatted(major)
                copy = Sensor.parse_params(sensor._sensor_type, sensor.formatted_params)
                assert copy == sensor.params
                sensor.set_formatted(*raw, major=major)
                assert sensor.read() == (T0, Sensor.WARN, value)


class TestObservers:

    def test_attach_notify_detach(self):
        sensor = Sensor.integer("x")
        first, second = Recorder(), Recorder()
        sensor.attach(first)
        sensor.attach(second)
        sensor.attach(first)  # attaching twice notifies once
        sensor.set_value(3, timestamp=T0)
        assert first.updates == [(sensor, (T0, Sensor.NOMINAL, 3))]
        assert second.updates == first.updates
        assert isinstance(first.updates[0][1], Reading)
        sensor.detach(first)
        sensor.detach(first)  # detaching an unknown observer is harmless
        sensor.set(T0 + 1, Sensor.WARN, 4)
        assert len(first.updates) == 1
        assert second.updates[-1] == (sensor, (T0 + 1, Sensor.WARN, 4))

    def test_an_observer_with_an_async_def_update_is_refused(self):
        # Sensor.notify() calls update() and moves on: its coroutines would never run.
        class AsyncObserver:
            async def update(self, sensor, reading):
                pass

        sensor = Sensor.integer("x")
        with pytest.raises(TypeError, match="observer's update .* is an async function"):
            sensor.attach(AsyncObserver())
        assert not sensor._observers

    def test_notify_passes_given_reading(self):
        sensor = Sensor.integer("x")
        rec = Recorder()
        sensor.attach(rec)
        sensor.notify(Reading(1.0, Sensor.ERROR, 9))
        assert rec.updates == [(sensor, (1.0, Sensor.ERROR, 9))]

    def test_observer_may_detach_itself_during_update(self):
        sensor = Sensor.integer("x")

        class OneShot(Recorder):
            def update(self, sensor, reading):
                super().update(sensor, reading)
                sensor.detach(self)

        one_shot, rec = OneShot(), Recorder()
        sensor.attach(one_shot)
        sensor.attach(rec)
        sensor.set_value(1)
        sensor.set_value(2)
        assert len(one_shot.updates) == 1 and len(rec.updates) == 2

    def test_set_from_many_threads(self):
        sensor = Sensor.integer("x")
        lock = threading.Lock()
        seen = []

        class Checker:
            def update(self, sensor, reading):
                # Every reading is internally consistent: value encodes its timestamp.
                assert reading.value == int(reading.timestamp)
                with lock:
                    seen.append(reading)

        sensor.attach(Checker())
        start = threading.Event()

        def worker(offset):
            start.wait(5)
            for i in range(500):
                sensor.set_value(offset + i, timestamp=float(offset + i))
                ts, _status, value = sensor.read()
                assert value == int(ts)

        threads = [threading.Thread(target=worker, args=(k * 10000,)) for k in range(4)]
        for t in threads:
            t.start()
        start.set()
        for t in threads:
            t.join(10)
        assert len(seen) == 2000
        assert sensor.value() == int(sensor.read().timestamp)


class TestSubclassesThatReadOrFormatTheirOwnWay:
    """A subclass overriding read() or format_reading() is asked by everything that
    reads or formats its readings, as documented for those methods."""

    class Fixed(Sensor):
        def read(self):
            return Reading(1234567890.0, Sensor.NOMINAL, 42)

    class TwoDecimals(Sensor):
        def format_reading(self, reading, major=5):
            timestamp, status, value = super().format_reading(reading, major)
            return timestamp, status, b"%.2f" % reading.value

    def test_value_status_and_read_formatted_read_through_read(self):
        sensor = self.Fixed(Sensor.INTEGER, "fixed", "", "", [0, 100])
        assert (sensor.value(), sensor.status()) == (42, Sensor.NOMINAL)
        assert sensor.read_formatted() == (b"1234567890.000000", b"nominal", b"42")
        assert sensor.read_formatted(4) == (b"1234567890000", b"nominal", b"42")

    def test_status_lines_are_made_by_its_format_reading(self):
        sensor = self.TwoDecimals(Sensor.FLOAT, "pretty value", "", "", [0.0, 10.0])
        sensor.set_value(1.23456, timestamp=1234567890.0)
        reading = sensor.read()
        assert sensor.status_line(reading, 5) == (
            b"1234567890.000000 1 pretty\\_value nominal 1.23")
        assert sensor.status_line(reading, 4) == b"1234567890000 1 pretty\\_value nominal 1.23"
        sensor.set_value(2.5, timestamp=1234567891.0)
        assert sensor.status_line(sensor.read(), 5).endswith(b" nominal 2.50")

    def test_the_event_fan_outs_lines_are_made_by_its_format_reading(self):
        sensor = self.TwoDecimals(Sensor.FLOAT, "pretty value", "", "", [0.0, 10.0])
        sensor.set_value(1.23456, timestamp=1234567890.0)
        reading = sensor.read()
        assert sensor._status_inform(reading, 5) == (
            b"#sensor-status 1234567890.000000 1 pretty\\_value nominal 1.23\n")
        assert sensor._status_inform(reading, 4) == (
            b"#sensor-status 1234567890000 1 pretty\\_value nominal 1.23\n")


@pytest.mark.parametrize("major", [4, 5])
@pytest.mark.parametrize("sensor, value", [
    (Sensor.integer("an int"), -7),
    (Sensor.float("a.float"), 2.5e-300),
    (Sensor.boolean("a.bool"), True),
    (Sensor.string("a.string"), "tab\tspace \\ \0 and \u00e9"),
    (Sensor.string("a.string"), b"not utf-8: \xff"),
    (Sensor.discrete("a.discrete", params=["on", "off"]), "off"),
    (Sensor.address("an.address"), ("::1", 7147)),
], ids=lambda x: repr(x) if not isinstance(x, Sensor) else x.stype)
def test_the_event_fan_outs_lines_are_status_lines_as_informs(sensor, value, major):
    # _status_inform() makes the whole #sensor-status line in one formatting operation,
    # status_line() the inform's arguments: the two lay out the same bytes.
    sensor.set(1234567890.125, Sensor.WARN, value)
    reading = sensor.read()
    line = sensor._status_inform(reading, major)
    assert line == b"#sensor-status " + sensor.status_line(reading, major) + b"\n"
    assert line.count(b" ") == 5


@pytest.mark.parametrize("major", [4, 5])
def test_a_sensor_renamed_after_its_lines_were_made_has_its_new_name_in_them(major):
    # As 0.9.3's name, a plain attribute: the escaped name kept for the lines is of the
    # name it was made of.
    sensor = Sensor.integer("old name")
    sensor.set(1234567890.0, Sensor.NOMINAL, 3)
    reading = sensor.read()
    assert sensor.status_line(reading, major).split()[2] == b"old\\_name"
    sensor.name = "new.name"
    assert sensor.status_line(reading, major).split()[2] == b"new.name"
    assert sensor._status_inform(reading, major).split()[3] == b"new.name"


@pytest.mark.parametrize("timestamp", [
    0.0, 1234567890.25, 1234567890.1234567, 1e-7, 5e-7, 2.5e11, -1.5, 17, 2 ** 53 + 1])
def test_status_lines_format_timestamps_as_format_timestamp_does(timestamp):
    # status_line() formats a v5 timestamp itself, in one operation with the rest of the
    # line: a copy of wire.types.format_timestamp.
    sensor = Sensor.integer("stamped", "", "", [0, 10])
    sensor.set(timestamp, Sensor.NOMINAL, 3)
    for major in (4, 5):
        line = sensor.status_line(sensor.read(), major)
        assert line.split(b" ")[0] == format_timestamp(timestamp, major)


class TestMethodsReplacedAfterTheClassIsMade:
    """set(), set_value() and status_line() go through notify(), set() and
    format_reading() as 0.9.3 did, also where a test replaces one of them on the class or
    on the sensor (as ``mock.patch.object`` does) after the class was made."""

    @pytest.mark.parametrize("on_class", [False, True], ids=["on the sensor", "on the class"])
    @pytest.mark.parametrize("method", ["notify", "set"])
    def test_set_value_calls_the_replacement(self, method, on_class):
        sensor = Sensor.integer("patched")
        with mock.patch.object(Sensor if on_class else sensor, method) as replacement:
            sensor.set_value(3, timestamp=1234567890.0)
        assert replacement.call_count == 1
        if method == "set":
            replacement.assert_called_once_with(1234567890.0, Sensor.NOMINAL, 3)
        else:
            assert replacement.call_args[0][-1] == (1234567890.0, Sensor.NOMINAL, 3)

    @pytest.mark.parametrize("on_class", [False, True], ids=["on the sensor", "on the class"])
    def test_set_calls_a_replaced_notify(self, on_class):
        sensor = Sensor.integer("patched")
        with mock.patch.object(Sensor if on_class else sensor, "notify") as notify:
            sensor.set(1234567890.0, Sensor.WARN, 4)
        assert notify.call_args[0][-1] == (1234567890.0, Sensor.WARN, 4)

    def test_observers_are_notified_again_once_the_replacement_is_gone(self):
        sensor, seen = Sensor.integer("patched"), Recorder()
        sensor.attach(seen)
        with mock.patch.object(Sensor, "notify"):
            sensor.set_value(1)
        sensor.set_value(2)
        assert [reading.value for _, reading in seen.updates] == [2]

    def test_status_lines_come_from_a_format_reading_replaced_on_the_class(self):
        sensor = Sensor.integer("patched")
        sensor.set_value(7, timestamp=1234567890.0)
        with mock.patch.object(Sensor, "format_reading",
                               return_value=(b"1.000000", b"warn", b"seven")):
            assert sensor.status_line(sensor.read(), 5) == b"1.000000 1 patched warn seven"
        sensor.set_value(8, timestamp=1234567890.0)
        assert sensor.status_line(sensor.read(), 5) == b"1234567890.000000 1 patched nominal 8"

    def test_the_formatted_status_line_comes_from_read_formatted(self):
        class Formatted(Sensor):
            def read_formatted(self, major=5):
                return b"2000.000000", b"warn", b"seventy seven"

        sensor = Formatted(Sensor.INTEGER, "own format")
        assert sensor.formatted_status_line(5) == (
            b"2000.000000 1 own\\_format warn seventy\\_seven")
        plain = Sensor.integer("plain")
        plain.set_value(3, timestamp=1234567890.0)
        assert plain.formatted_status_line(4) == plain.status_line(plain.read(), 4)
