"""Sensor types: every factory argument, every value both ways, every refusal and its text.

Written against the mutants that survived the older tests (see docs/mutation.rst).
"""

import decimal
import fractions

import pytest

from katcp import Sensor
from katcp.kattypes import Float
from katcp.core import KatcpTypeError

FACTORIES = [
    # factory, extra arguments, a default to give, its wire form
    (Sensor.integer, {"params": [-5, 5]}, 3, b"3"),
    (Sensor.float, {"params": [-5.0, 5.0]}, 2.5, b"2.5"),
    (Sensor.boolean, {}, True, b"1"),
    (Sensor.lru, {}, Sensor.LRU_ERROR, b"error"),
    (Sensor.string, {}, "text", b"text"),
    (Sensor.discrete, {"params": ["on", "off"]}, "off", b"off"),
    (Sensor.timestamp, {}, 12.5, b"12.500000"),
    (Sensor.address, {}, ("10.0.0.1", 80), b"10.0.0.1:80"),
]
FACTORY_IDS = [f.__name__ for f, _, _, _ in FACTORIES]


@pytest.mark.parametrize("factory, extra, default, wire", FACTORIES, ids=FACTORY_IDS)
def test_factories_pass_every_argument_on(factory, extra, default, wire):
    sensor = factory("a.b", "Some description", "unit", default=default,
                     initial_status=Sensor.WARN, **extra)
    assert sensor.name == "a.b"
    assert sensor.description == "Some description"
    assert sensor.units == "unit"
    assert sensor.stype == factory.__name__
    assert sensor.params == extra.get("params", [])
    assert sensor.read()[1:] == (Sensor.WARN, default)
    assert sensor.read_formatted()[1:] == (b"warn", wire)


@pytest.mark.parametrize("factory, extra, default, wire", FACTORIES, ids=FACTORY_IDS)
def test_factory_defaults(factory, extra, default, wire):
    sensor = factory("a.b", **extra)
    assert sensor.units == ""
    assert sensor.status() == Sensor.UNKNOWN
    assert sensor.description == "%s sensor 'a.b' with no unit" % (
        factory.__name__.capitalize(),)
    with_unit = factory(b"a.c", unit="m", **extra)
    assert with_unit.name == "a.c"
    assert with_unit.description == "%s sensor 'a.c' in unit m" % (
        factory.__name__.capitalize(),)


@pytest.mark.parametrize("stype, params, value", [
    (Sensor.INTEGER, None, 0), (Sensor.INTEGER, [3, 9], 3), (Sensor.INTEGER, [-9, -3], -9),
    (Sensor.INTEGER, [-3, 9], 0), (Sensor.INTEGER, [-5, 0], 0), (Sensor.INTEGER, [0, 5], 0),
    (Sensor.FLOAT, [-1.0, 0.0], 0.0), (Sensor.FLOAT, [0, 5], 0.0), (Sensor.FLOAT, None, 0.0), (Sensor.FLOAT, [1.5, 2.0], 1.5),
    (Sensor.FLOAT, [-1.0, 1.0], 0.0), (Sensor.BOOLEAN, None, False),
    (Sensor.LRU, None, Sensor.LRU_NOMINAL), (Sensor.STRING, None, ""),
    (Sensor.DISCRETE, ["x", "y"], "x"), (Sensor.TIMESTAMP, None, 0.0),
    (Sensor.ADDRESS, None, ("0.0.0.0", None))])
def test_type_defaults(stype, params, value):
    sensor = Sensor(stype, "s", params=params)
    assert sensor.value() == value
    assert type(sensor.value()) is type(value)


@pytest.mark.parametrize("stype, value, v5, v4", [
    (Sensor.INTEGER, -7, b"-7", b"-7"),
    (Sensor.FLOAT, 1.25, b"1.25", b"1.25"),
    (Sensor.FLOAT, 3, b"3.0", b"3.0"),
    (Sensor.BOOLEAN, True, b"1", b"1"),
    (Sensor.BOOLEAN, False, b"0", b"0"),
    (Sensor.LRU, Sensor.LRU_NOMINAL, b"nominal", b"nominal"),
    (Sensor.LRU, Sensor.LRU_ERROR, b"error", b"error"),
    (Sensor.STRING, "caf\u00e9", "caf\u00e9".encode("utf-8"), "caf\u00e9".encode("utf-8")),
    (Sensor.STRING, b"raw\xff", b"raw\xff", b"raw\xff"),
    (Sensor.TIMESTAMP, 1234.5, b"1234.500000", b"1234500"),
    (Sensor.ADDRESS, ("1.2.3.4", 8080), b"1.2.3.4:8080", b"1.2.3.4:8080"),
    (Sensor.ADDRESS, ("host", None), b"host", b"host"),
    (Sensor.ADDRESS, ("::1", 7), b"[::1]:7", b"[::1]:7"),
    (Sensor.ADDRESS, (b"bytes.host", 1), b"bytes.host:1", b"bytes.host:1"),
])
def test_values_format_and_parse_back(stype, value, v5, v4):
    sensor = Sensor(stype, "s")
    sensor.set_value(value, timestamp=10.0)
    assert sensor.read_formatted(5)[2] == v5
    assert sensor.read_formatted(4)[2] == v4
    expected = value
    if stype == Sensor.STRING and isinstance(value, bytes):
        return  # not valid UTF-8: formatted as given, not parsed back
    if stype == Sensor.ADDRESS and isinstance(value[0], bytes):
        expected = (value[0].decode("ascii"), value[1])
    assert sensor.parse_value(v5, 5) == expected
    assert sensor.parse_value(v4, 4) == expected


@pytest.mark.parametrize("stype, params, raw, message", [
    (Sensor.INTEGER, None, b"1.5", "Could not parse value '1.5' as integer."),
    (Sensor.FLOAT, None, b"x", "Could not parse value 'x' as float."),
    (Sensor.BOOLEAN, None, b"2", "Could not parse value '2' as boolean."),
    (Sensor.BOOLEAN, None, b"true", "Could not parse value 'true' as boolean."),
    (Sensor.LRU, None, b"ok", "Lru value must be 'nominal' or 'error', not 'ok'."),
    (Sensor.DISCRETE, ["a", "b"], b"c", "Discrete value 'c' is not one of a, b."),
    (Sensor.TIMESTAMP, None, b"soon", "Could not parse value 'soon' as timestamp."),
    (Sensor.ADDRESS, None, b"", "Could not parse value '' as address."),
    (Sensor.ADDRESS, None, b":80", "Could not parse value ':80' as address."),
    (Sensor.ADDRESS, None, b"[::1", "Could not parse value '[::1' as address."),
    (Sensor.ADDRESS, None, b"h:p", "Could not parse value 'h:p' as address."),
    (Sensor.ADDRESS, None, b"[::1]:x", "Could not parse value '[::1]:x' as address."),
])
def test_unparsable_values_are_refused_with_a_reason(stype, params, raw, message):
    sensor = Sensor(stype, "s", params=params)
    with pytest.raises(ValueError) as error:
        sensor.parse_value(raw)
    assert str(error.value) == message


def test_invalid_utf8_string_values_are_refused():
    with pytest.raises(UnicodeDecodeError):
        Sensor.string("s").parse_value(b"\xff")


@pytest.mark.parametrize("raw, expected", [
    (b"[::1]:80", ("::1", 80)), (b"[fe80::1]", ("fe80::1", None)), (b"host:0", ("host", 0)),
    (b"1.2.3.4", ("1.2.3.4", None))])
def test_addresses_parse(raw, expected):
    assert Sensor.address("s").parse_value(raw) == expected


def test_parse_value_needs_bytes():
    with pytest.raises(KatcpTypeError, match="must be parsed from bytes"):
        Sensor.integer("s").parse_value("3")


@pytest.mark.parametrize("stype, params, value, message", [
    (Sensor.INTEGER, None, 1.5, "Integer sensor value must be an integer, not 1.5."),
    (Sensor.INTEGER, None, "1", "Integer sensor value must be an integer, not '1'."),
    (Sensor.INTEGER, None, float("inf"), "Integer sensor value must be an integer, not inf."),
    (Sensor.INTEGER, None, float("nan"), "Integer sensor value must be an integer, not nan."),
    (Sensor.INTEGER, None, fractions.Fraction(5, 2),
     "Integer sensor value must be an integer, not Fraction(5, 2)."),
    (Sensor.INTEGER, None, decimal.Decimal("3"),
     "Integer sensor value must be an integer, not Decimal('3')."),
    (Sensor.FLOAT, None, b"1.0", "Float sensor value must be a real number, not b'1.0'."),
    (Sensor.BOOLEAN, None, 2.0, "Boolean sensor value must be True or False, not 2.0."),
    (Sensor.BOOLEAN, None, 0.5, "Boolean sensor value must be True or False, not 0.5."),
    (Sensor.BOOLEAN, None, decimal.Decimal("1"),
     "Boolean sensor value must be True or False, not Decimal('1')."),
    (Sensor.FLOAT, None, "1.0", "Float sensor value must be a real number, not '1.0'."),
    (Sensor.FLOAT, None, 1j, "Float sensor value must be a real number, not 1j."),
    (Sensor.BOOLEAN, None, 2, "Boolean sensor value must be True or False, not 2."),
    (Sensor.BOOLEAN, None, "1", "Boolean sensor value must be True or False, not '1'."),
    (Sensor.LRU, None, 2,
     "Lru value must be Sensor.LRU_NOMINAL or Sensor.LRU_ERROR, not 2."),
    (Sensor.DISCRETE, ["a"], "b", "Discrete value 'b' is not one of a."),
    (Sensor.DISCRETE, ["a", "b"], b"c", "Discrete value 'c' is not one of a, b."),
    (Sensor.TIMESTAMP, None, "now",
     "Timestamp sensor value must be a number of seconds, not 'now'."),
    (Sensor.ADDRESS, None, "1.2.3.4",
     "Address sensor value must be a (host, port) tuple, not '1.2.3.4'."),
    (Sensor.ADDRESS, None, None,
     "Address sensor value must be a (host, port) tuple, not None."),
    (Sensor.ADDRESS, None, (1, 2), "Address host must be a string, not 1."),
    (Sensor.ADDRESS, None, ("h", 70000), "Address port must be None or 0-65535, not 70000."),
    (Sensor.ADDRESS, None, ("h", -1), "Address port must be None or 0-65535, not -1."),
    (Sensor.ADDRESS, None, ("h", 65536),
     "Address port must be None or 0-65535, not 65536."),
    (Sensor.ADDRESS, None, ("h", "80"), "Address port must be None or 0-65535, not '80'."),
])
def test_invalid_values_are_refused_with_a_reason(stype, params, value, message):
    sensor = Sensor(stype, "s", params=params)
    before = sensor.read()
    with pytest.raises(ValueError) as error:
        sensor.set_value(value)
    assert str(error.value) == message
    assert sensor.read() is before


class Float64(float):
    """What numpy.float64 is to katcp: a float subclass."""


@pytest.mark.parametrize("make, value, v5, v4", [
    (Sensor.integer, 3.0, b"3", b"3"),
    (Sensor.integer, Float64(7.0), b"7", b"7"),
    (Sensor.integer, -2.0, b"-2", b"-2"),
    (Sensor.integer, 1e20, b"100000000000000000000", b"100000000000000000000"),
    (Sensor.integer, fractions.Fraction(6, 2), b"3", b"3"),
    (Sensor.float, decimal.Decimal("0.1"), b"0.1", b"0.1"),
    (Sensor.timestamp, decimal.Decimal("1234567890.5"), b"1234567890.500000",
     b"1234567890500"),
    (Sensor.boolean, 1.0, b"1", b"1"),
    (Sensor.boolean, 0.0, b"0", b"0"),
    (Sensor.boolean, fractions.Fraction(1), b"1", b"1"),
])
def test_numbers_of_other_types_are_sent_as_0_9_3_sent_them(make, value, v5, v4):
    # 0.9.3 sent an integer sensor's value with %d, a float's as repr(float(value)), a
    # timestamp's as %.6f of its float and a boolean's by its truth: whole-valued reals,
    # Decimals and 0.0 or 1.0 went out as such.
    sensor = make("s")
    sensor.set_value(value, timestamp=12.5)
    assert sensor.value() is value
    for major, wire in ((5, v5), (4, v4)):
        timestamp, status, formatted = sensor.read_formatted(major)
        assert formatted == wire
        assert sensor.status_line(sensor.read(), major) == b"%s 1 s %s %s" % (
            timestamp, status, wire)


@pytest.mark.parametrize("value, wire", [
    (10 ** 400, b"inf"), (-10 ** 400, b"-inf"), (fractions.Fraction(10 ** 400, 3), b"inf")])
def test_numbers_beyond_the_float_range_are_sent_as_infinities(value, wire):
    # float() of them raised OverflowError: set_value() took them, and then every
    # ?sensor-value and sampling of the sensor failed.
    sensor = Sensor.float("s")
    sensor.set_value(value, timestamp=12.5)
    for major in (5, 4):
        assert sensor.read_formatted(major)[2] == wire
        assert sensor.status_line(sensor.read(), major).endswith(b" " + wire)
    assert Float().pack(value) == wire


class NumpyStyleBool:
    """What numpy's comparisons give (numpy.bool_): no Integral, a boolean dtype."""

    class dtype:
        kind = "b"

    def __init__(self, value):
        self.value = value

    def __bool__(self):
        return self.value

    def __eq__(self, other):
        return self.value == other

    __hash__ = None


@pytest.mark.parametrize("value, wire", [(NumpyStyleBool(True), b"1"),
                                         (NumpyStyleBool(False), b"0")])
def test_boolean_sensor_takes_numpy_style_booleans(value, wire):
    sensor = Sensor.boolean("s")
    sensor.set_value(value)
    assert sensor.read_formatted()[2] == wire


def test_a_dtype_of_another_kind_is_no_boolean():
    value = NumpyStyleBool(True)
    value.dtype = type("dtype", (), {"kind": "f"})
    with pytest.raises(ValueError, match="must be True or False"):
        Sensor.boolean("s").set_value(value)


@pytest.mark.parametrize("stype, params, value", [
    (Sensor.BOOLEAN, None, 1), (Sensor.BOOLEAN, None, 0), (Sensor.BOOLEAN, None, False),
    (Sensor.DISCRETE, ["a", "b"], b"b"), (Sensor.ADDRESS, None, ("h", 0)),
    (Sensor.ADDRESS, None, ("h", 65535)), (Sensor.ADDRESS, None, (b"h", None)),
    (Sensor.INTEGER, [0, 10], 11), (Sensor.FLOAT, [0.0, 1.0], -2.5),
    (Sensor.TIMESTAMP, None, 5), (Sensor.FLOAT, None, 2)])
def test_valid_edge_values_are_accepted(stype, params, value):
    sensor = Sensor(stype, "s", params=params)
    sensor.set_value(value)
    assert sensor.value() == value


@pytest.mark.parametrize("stype, params, message", [
    (Sensor.INTEGER, [1], "Integer sensor params must be [min, max] or "
     "[min, max, warn_min, warn_max], got [1]."),
    (Sensor.FLOAT, [1.0, 2.0, 3.0], "Float sensor params must be [min, max] or "
     "[min, max, warn_min, warn_max], got [1.0, 2.0, 3.0]."),
    (Sensor.INTEGER, [1, 2, 0, 3, 4], "Integer sensor params must be [min, max] or "
     "[min, max, warn_min, warn_max], got [1, 2, 0, 3, 4]."),
    (Sensor.FLOAT, [0.0, 1.0, 2.0, -1.0],
     "Float sensor warning minimum 2.0 is greater than warning maximum -1.0."),
    (Sensor.INTEGER, [0, 1, -1, 2.5],
     "Integer sensor warning maximum must be an integer, not 2.5."),
    (Sensor.INTEGER, [0, 1, float("nan"), 2],
     "Integer sensor warning minimum must be an integer, not nan."),
    (Sensor.INTEGER, [0.5, 3], "Integer sensor minimum must be an integer, not 0.5."),
    (Sensor.INTEGER, [0, float("inf")], "Integer sensor maximum must be an integer, not inf."),
    (Sensor.FLOAT, ["0", 1.0], "Float sensor minimum must be a real number, not '0'."),
    (Sensor.INTEGER, [5, 1], "Integer sensor minimum 5 is greater than maximum 1."),
    (Sensor.FLOAT, [2.0, 1.5], "Float sensor minimum 2.0 is greater than maximum 1.5."),
    (Sensor.INTEGER, [1, 2.5], "Integer sensor maximum must be an integer, not 2.5."),
    (Sensor.DISCRETE, None, "Discrete sensors need a non-empty list of values."),
    (Sensor.DISCRETE, [], "Discrete sensors need a non-empty list of values."),
    (Sensor.BOOLEAN, [0, 1], "Sensor type 'boolean' takes no parameters."),
    (Sensor.STRING, ["x"], "Sensor type 'string' takes no parameters."),
])
def test_invalid_params_are_refused_with_a_reason(stype, params, message):
    with pytest.raises(ValueError) as error:
        Sensor(stype, "s", params=params)
    assert str(error.value) == message


@pytest.mark.parametrize("params, formatted, default", [
    ([0.0, 100.0], [b"0", b"100"], 0),
    ([0, 1e6], [b"0", b"1000000"], 0),
    ([100.0, 200.0, 50.0, 250.0], [b"100", b"200", b"50", b"250"], 100),
    ([fractions.Fraction(-4), 4], [b"-4", b"4"], 0),
])
def test_integer_sensors_take_whole_valued_real_params(params, formatted, default):
    # katcp 0.9 documents params of int or float for integer sensors; 0.9.3 listed them
    # with %d. They are kept as given, listed as integers.
    sensor = Sensor.integer("s", "d", "", params)
    assert sensor.params == params
    assert [type(p) for p in sensor.params] == [type(p) for p in params]
    assert sensor.formatted_params == formatted
    assert sensor.list_line() == b"s d \\@ integer " + b" ".join(formatted)
    assert sensor.value() == default and type(sensor.value()) is int


def test_discrete_params_may_be_bytes_but_not_other_types():
    sensor = Sensor.discrete("s", params=[b"on", "off"])
    assert sensor.params == ["on", "off"]
    assert sensor.formatted_params == [b"on", b"off"]
    assert sensor.value() == "on"


@pytest.mark.parametrize("sensor, value", [
    (Sensor.discrete("s", params=["on", "off"]), bytearray(b"on")),
    (Sensor.string("s"), bytearray(b"on")), (Sensor.string("s"), memoryview(b"on"))])
def test_bytes_like_text_values_are_sent_as_their_bytes(sensor, value):
    # The value checks take a bytearray as its text, so the wire must carry that text
    # (not its repr), as message arguments do.
    sensor.set_value(value)
    assert sensor.read_formatted()[2] == b"on"
    assert sensor.status_line(sensor.read()).endswith(b" s nominal on")
    assert sensor.parse_value(b"on") == "on"


@pytest.mark.parametrize("make, params, formatted, default, line", [
    (Sensor.float, [0.0, 10.0, -5.0, 15.0], [b"0.0", b"10.0", b"-5.0", b"15.0"], 0.0,
     b"s d V float 0.0 10.0 -5.0 15.0"),
    (Sensor.integer, [2, 10, 0, 15], [b"2", b"10", b"0", b"15"], 2,
     b"s d V integer 2 10 0 15"),
])
def test_numbers_take_a_warning_range_after_the_nominal_range(make, params, formatted,
                                                              default, line):
    # KATCP 5.1 section 7.2: [nominal-min nominal-max [warn-min warn-max]]; the nominal
    # range gives the default, and all four are reported.
    sensor = make("s", "d", "V", params)
    assert sensor.params == params
    assert sensor.formatted_params == formatted
    assert sensor.value() == default
    assert sensor.list_line() == line
    stype = Sensor.parse_type(sensor.stype)
    parsed = Sensor.parse_params(stype, formatted)
    assert Sensor(stype, "s", params=parsed).params == params
    sensor.set_value(params[3] + 1)  # outside both ranges is still a value of the sensor
    assert sensor.value() == params[3] + 1


def test_equal_min_and_max_are_a_valid_range():
    sensor = Sensor.integer("s", params=[4, 4])
    assert sensor.value() == 4
    assert sensor.formatted_params == [b"4", b"4"]


def test_invalid_sensor_types_and_statuses():
    with pytest.raises(ValueError, match=r"^Invalid sensor type 99\.$"):
        Sensor(99, "s")
    with pytest.raises(ValueError, match=r"^Invalid initial status 9 for sensor 's'\.$"):
        Sensor.integer("s", initial_status=9)
    with pytest.raises(ValueError, match=r"^Invalid status 9 for sensor 's'\.$"):
        Sensor.integer("s").set_value(1, 9)


@pytest.mark.parametrize("python_type, stype", [
    (int, "integer"), (float, "float"), (bool, "boolean"), (str, "string"),
    (bytes, "string")])
def test_python_types_name_sensor_types(python_type, stype):
    assert Sensor(python_type, "s").stype == stype


@pytest.mark.parametrize("name", ["integer", "float", "boolean", "lru", "discrete",
                                  "string", "timestamp", "address"])
def test_parse_type_both_ways(name):
    stype = Sensor.parse_type(name)
    assert Sensor.parse_type(name.encode("ascii")) == stype
    assert Sensor(stype, "s", params=["a"] if name == "discrete" else None).stype == name


def test_parse_type_refuses_unknown_names():
    with pytest.raises(ValueError) as error:
        Sensor.parse_type(b"complex")
    assert str(error.value) == "Invalid sensor type string 'complex'."


@pytest.mark.parametrize("stype, raw, major, expected", [
    (Sensor.INTEGER, [b"-1", b"5"], 5, [-1, 5]),
    (Sensor.FLOAT, [b"0.5", b"1e3"], 5, [0.5, 1000.0]),
    (Sensor.DISCRETE, [b"a", b"b"], 5, ["a", "b"]),
    (Sensor.TIMESTAMP, [b"1500"], 4, [1.5]),
    (Sensor.TIMESTAMP, [b"1500"], 5, [1500.0]),
])
def test_parse_params(stype, raw, major, expected):
    assert Sensor.parse_params(stype, raw, major) == expected


@pytest.mark.parametrize("raw_timestamp, major, seconds", [
    (b"1234.5", 5, 1234.5), (b"1234500", 4, 1234.5), (b"0", 4, 0.0), (b"12", 5, 12.0)])
def test_set_formatted_timestamps_by_version(raw_timestamp, major, seconds):
    sensor = Sensor.integer("s")
    sensor.set_formatted(raw_timestamp, b"nominal", b"3", major=major)
    assert sensor.read() == (seconds, Sensor.NOMINAL, 3)


@pytest.mark.parametrize("raw_timestamp, text", [(b"x", "x"), (b"\xff", "\\xff")])
def test_set_formatted_refuses_bad_timestamps(raw_timestamp, text):
    sensor = Sensor.integer("s")
    with pytest.raises(ValueError) as error:
        sensor.set_formatted(raw_timestamp, b"nominal", b"3")
    assert str(error.value) == "Could not parse value '%s' as timestamp." % (text,)


def test_set_formatted_refuses_bad_statuses_and_values():
    sensor = Sensor.integer("s")
    with pytest.raises(ValueError) as error:
        sensor.set_formatted(b"1.0", b"\xffbad", b"3")
    assert str(error.value) == "Invalid sensor status '\\xffbad'."
    with pytest.raises(ValueError):
        sensor.set_formatted(b"1.0", b"nominal", b"three")
    assert sensor.status() == Sensor.UNKNOWN


def test_format_reading_of_any_reading():
    sensor = Sensor.float("s")
    assert sensor.format_reading((1.5, Sensor.ERROR, 2.0)) == (b"1.500000", b"error", b"2.0")
    assert sensor.format_reading((1.5, Sensor.ERROR, 2.0), major=4) == (
        b"1500", b"error", b"2.0")


def test_repr_names_the_sensor():
    sensor = Sensor.integer("my.sensor")
    assert repr(sensor) == "<katcp.core.Sensor object name='my.sensor' at 0x%x>" % id(sensor)


def test_observers_attach_and_detach():
    sensor = Sensor.integer("s")
    seen = []

    class Observer:
        def update(self, sensor, reading):
            seen.append((sensor, reading.value))

    observer = Observer()
    sensor.attach(observer)
    sensor.attach(observer)
    sensor.set_value(1)
    sensor.detach(observer)
    sensor.detach(observer)
    sensor.set_value(2)
    assert seen == [(sensor, 1)]


def test_discrete_params_must_be_text():
    with pytest.raises(ValueError) as error:
        Sensor.discrete("s", params=["a", 2])
    assert str(error.value) == "Discrete sensor values must be str or bytes, not 2."


def test_formatting_an_invalid_lru_reading_is_refused():
    with pytest.raises(ValueError) as error:
        Sensor.lru("s").format_reading((1.0, Sensor.NOMINAL, 5))
    assert str(error.value) == \
        "Lru value must be Sensor.LRU_NOMINAL or Sensor.LRU_ERROR, not 5."


def test_infinite_timestamps_format_in_lower_case():
    sensor = Sensor.timestamp("s")
    sensor.set_value(float("inf"), timestamp=float("inf"))
    assert sensor.read_formatted(5) == (b"inf", b"nominal", b"inf")


def test_parse_value_names_the_wrong_type():
    with pytest.raises(KatcpTypeError) as error:
        Sensor.integer("s").parse_value("3")
    assert str(error.value) == "Sensor values must be parsed from bytes, not <class 'str'>."
