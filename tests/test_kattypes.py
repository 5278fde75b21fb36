"""Tests for katcp.kattypes: the KATCP types and the handler decorators."""

import asyncio
import copy
import itertools
import inspect
import math
import pickle
import re
from unittest import mock

import pytest
import tornado.concurrent
import tornado.gen
import tornado.testing
from tornado.ioloop import IOLoop

import katcp
import katcp.kattypes.decorators
from katcp import DeviceServer
from katcp.core import (DeviceMetaclass, DeviceServerMetaclass, FailReply, Message,
                        ProtocolFlags, Sensor)
from katcp.kattypes import (Address, Bool, Discrete, DiscreteMulti, Float, Int, KatcpType,
                            Lru, Parameter, Regex, StrictTimestamp, Str, Struct, Timestamp,
                            TimestampOrNow, async_make_reply, concurrent_reply,
                            has_katcp_protocol_flags, inform, make_reply,
                            minimum_katcp_version, pack_types, request, request_timeout_hint,
                            return_reply, send_reply, unpack_message, unpack_types)
from katcp.testutils import mock_req


class FakeReq:
    """Stands in for a server's ClientRequestConnection."""

    def __init__(self, msg):
        self.msg = msg
        self.sent = []
        self.informs = []

    def reply_with_message(self, reply):
        self.sent.append(reply)

    def inform(self, *args):
        self.informs.append(args)


def call(handler, name, *args, mid=None, obj=None):
    """Call a raw request handler the way the server does: handler(self, req, msg)."""
    msg = Message.request(name, *args, mid=mid)
    return handler(obj, FakeReq(msg), msg)


def run_async(awaitable, timeout=5):
    """Drive a future or coroutine to completion on a fresh loop."""
    async def waiter():
        return await asyncio.wait_for(awaitable, timeout)
    return asyncio.run(waiter())


# ---------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------

class TestKatcpType:

    def test_default_and_optional(self):
        assert Int(default=3).get_default() == 3
        assert Int(optional=True).get_default() is None
        with pytest.raises(ValueError, match="No value given and no default"):
            Int().get_default()

    def test_unpack_none_uses_default_and_checks_it(self):
        assert Int(default=4).unpack(None) == 4
        assert Str(optional=True).unpack(None) is None
        with pytest.raises(ValueError, match="higher than maximum"):
            Int(max=2, default=4).unpack(None)

    def test_pack_none_uses_default(self):
        assert Int(default=4).pack(None) == b"4"
        with pytest.raises(ValueError):
            Int().pack(None)
        with pytest.raises(ValueError, match="Cannot pack a None value"):
            Int(optional=True).pack(None)

    def test_nocheck_skips_check(self):
        assert Int(max=1).pack(5, nocheck=True) == b"5"
        with pytest.raises(ValueError):
            Int(max=1).pack(5)

    def test_base_class_encode_decode_not_implemented(self):
        with pytest.raises(NotImplementedError):
            KatcpType().pack(1)
        with pytest.raises(NotImplementedError):
            KatcpType().unpack(b"1")


class TestInt:

    @pytest.mark.parametrize("raw,value", [
        (b"0", 0), (b"-546", -546), (b"007", 7), (b"+3", 3), (b" 4", 4),
        (b"123456789012345678901234567890", 123456789012345678901234567890)])
    def test_decode(self, raw, value):
        assert Int().unpack(raw) == value

    @pytest.mark.parametrize("raw", [b"abc", b"1.5", b"0x10", b"", b"1e3"])
    def test_decode_errors_show_plain_text(self, raw):
        with pytest.raises(ValueError) as info:
            Int().unpack(raw)
        assert str(info.value) == "Could not parse value '%s' as integer." % raw.decode()

    def test_encode(self):
        assert Int().pack(-12) == b"-12"
        assert Int().pack(True) == b"1"
        assert Int().pack(7, major=4) == b"7"

    def test_encode_non_number_is_type_error(self):
        # The reference reports a bad return value with this TypeError text.
        with pytest.raises(TypeError, match="%d format: a (real )?number is required, not str"):
            Int().pack("not-an-int")

    def test_min_max(self):
        kt = Int(min=0, max=10)
        assert kt.unpack(b"0") == 0
        assert kt.unpack(b"10") == 10
        with pytest.raises(ValueError, match=r"^Integer 11 is higher than maximum 10\.$"):
            kt.unpack(b"11")
        with pytest.raises(ValueError, match=r"^Integer -1 is lower than minimum 0\.$"):
            kt.unpack(b"-1")
        with pytest.raises(ValueError):
            kt.pack(11)


class TestFloat:

    @pytest.mark.parametrize("value,raw", [
        (0.1 + 0.2, b"0.30000000000000004"), (1e10, b"10000000000.0"), (-0.0, b"-0.0"),
        (7, b"7.0"), (float("inf"), b"inf"), (1.7, b"1.7"), (-1.234e-05, b"-1.234e-05")])
    def test_encode_uses_repr(self, value, raw):
        assert Float().pack(value) == raw
        assert Float().pack(value, major=4) == raw

    def test_encode_round_trips_exactly(self):
        for value in (0.1, 1 / 3.0, 1e-300, 12345.678901234567):
            assert Float().unpack(Float().pack(value)) == value

    def test_decode(self):
        assert Float().unpack(b"2.5") == 2.5
        assert Float().unpack(b"1e400") == float("inf")
        assert math.isnan(Float().unpack(b"nan"))
        assert Float().unpack(b"3", major=4) == 3.0

    def test_decode_error(self):
        with pytest.raises(ValueError, match=r"^Could not parse value 'x' as float\.$"):
            Float().unpack(b"x")

    def test_min_max(self):
        kt = Float(min=-1.5, max=2.5)
        assert kt.unpack(b"2.5") == 2.5
        with pytest.raises(ValueError, match=r"^Float 3 is higher than maximum 2.5\.$"):
            kt.unpack(b"3")
        with pytest.raises(ValueError, match=r"^Float -2 is lower than minimum -1.5\.$"):
            kt.pack(-2.0)

    @pytest.mark.parametrize("kt, raw, message", [
        (Float(max=1.0), b"1.0000001", "Float 1.0000001 is higher than maximum 1.0."),
        (Float(min=1e9), b"999999999.5", "Float 999999999.5 is lower than minimum 1000000000.0."),
        (Float(min=0, max=1), b"-1e-9", "Float -1e-09 is lower than minimum 0."),
    ])
    def test_a_value_too_close_to_its_bound_for_six_digits_is_shown_whole(self, kt, raw, message):
        with pytest.raises(ValueError) as raised:
            kt.unpack(raw)
        assert str(raised.value) == message

    def test_an_integer_beyond_the_floats_is_refused_by_a_bound(self):
        # %g of it raised OverflowError in place of the refusal.
        with pytest.raises(ValueError, match=r"^Float 1(0{400}) is higher than maximum 10\.$"):
            Float(max=10).pack(10 ** 400)

    @pytest.mark.parametrize("kt", [Float(min=0, max=10), Float(min=0), Float(max=10)],
                             ids=["min-max", "min", "max"])
    def test_nan_is_within_no_range(self, kt):
        refused = r"^Float nan is not a number, which no minimum or maximum allows\.$"
        with pytest.raises(ValueError, match=refused):
            kt.pack(float("nan"))
        with pytest.raises(ValueError, match=refused):
            kt.unpack(b"nan")
        assert math.isnan(Float().unpack(b"nan"))  # no range: NaN is a float like others

    def test_a_request_of_nan_to_a_ranged_float_gets_a_fail_reply(self):
        class Setter(DeviceServer):
            def setup_sensors(self):
                self.got = []

            @request(Float(min=0, max=10))
            @return_reply()
            def request_setf(self, req, value):
                """Set a value from 0 to 10."""
                self.got.append(value)
                return ("ok",)

        server = Setter("127.0.0.1", 0)
        server.start(timeout=5)
        try:
            with katcp.BlockingClient(*server.bind_address) as client:
                assert client.wait_protocol(5)
                replies = [client.blocking_request(Message.request("setf", raw), timeout=5)[0]
                           for raw in (b"nan", b"11", b"5")]
        finally:
            server.stop(timeout=5)
            server.join(timeout=5)
        assert [reply.arguments[0] for reply in replies] == [b"fail", b"fail", b"ok"]
        assert replies[0].arguments[1] == (b"Error in parameter 1 (value): Float nan is not a "
                                           b"number, which no minimum or maximum allows.")
        assert server.got == [5.0]


class TestBool:

    def test_round_trip(self):
        assert Bool().pack(True) == b"1"
        assert Bool().pack(False) == b"0"
        assert Bool().pack(0, major=4) == b"0"
        assert Bool().unpack(b"1") is True
        assert Bool().unpack(b"0", major=4) is False

    @pytest.mark.parametrize("raw", [b"true", b"2", b"", b"01"])
    def test_invalid(self, raw):
        with pytest.raises(ValueError, match="Could not parse value '%s' as boolean"
                           % raw.decode()):
            Bool().unpack(raw)


class TestStr:

    def test_decode_gives_native_str(self):
        value = Str().unpack(b"caf\xc3\xa9")
        assert value == "café" and isinstance(value, str)

    def test_encode(self):
        assert Str().pack("café") == b"caf\xc3\xa9"
        assert Str().pack(b"\xff raw") == b"\xff raw"
        # Non-text values are converted one way via str().
        assert Str().pack(12) == b"12"
        assert Str().pack(1.5) == b"1.5"

    def test_invalid_utf8(self):
        with pytest.raises(ValueError, match="Could not decode value"):
            Str().unpack(b"\xff")

    def test_empty(self):
        assert Str().unpack(b"") == ""
        assert Str().pack("") == b""


class TestDiscrete:

    def test_values(self):
        kt = Discrete(["apple", "pear"])
        assert kt.unpack(b"apple") == "apple"
        assert kt.pack("pear") == b"pear"
        assert kt.pack(b"pear") == b"pear"
        with pytest.raises(ValueError) as info:
            kt.unpack(b"kiwi")
        assert str(info.value) == "Discrete value 'kiwi' is not one of apple, pear."
        with pytest.raises(ValueError):
            kt.pack("kiwi")

    def test_values_that_are_not_text_are_refused_with_a_value_error(self):
        # Unpacked values are text, so they never equal int values (as in 0.9.3); the
        # refusal lists the values rather than failing to.
        kt = Discrete([1, 2])
        for raw in (b"1", b"3"):
            with pytest.raises(ValueError) as info:
                kt.unpack(raw)
            assert str(info.value) == "Discrete value '%s' is not one of 1, 2." % raw.decode()
        assert kt.pack(2) == b"2"

        @request(Discrete([1, 2]))
        def request_pick(self, req, choice):
            """Doc."""

        with pytest.raises(FailReply, match=re.escape(
                "Error in parameter 1 (choice): Discrete value '3' is not one of 1, 2.")):
            call(request_pick, "pick", b"3")

    def test_generator_and_bytes_values(self):
        kt = Discrete(v for v in (b"on", "off"))
        assert kt.unpack(b"on") == "on"
        assert kt.unpack(b"off") == "off"
        # A generator is consumed once; the type must still work afterwards.
        assert kt.unpack(b"on") == "on"

    def test_bytes_like_values_pack_as_their_bytes(self):
        assert Discrete(["on", "off"]).pack(bytearray(b"on")) == b"on"
        assert Str().pack(bytearray(b"on")) == b"on"
        assert Str().pack(memoryview(b"on")) == b"on"

    def test_case_insensitive(self):
        kt = Discrete(["Idle", "busy"], case_insensitive=True)
        assert kt.unpack(b"IDLE") == "IDLE"
        assert kt.unpack(b"Busy") == "Busy"
        with pytest.raises(ValueError):
            kt.unpack(b"gone")
        with pytest.raises(ValueError):
            Discrete(["Idle"]).unpack(b"idle")


class TestDiscreteMulti:

    def test_decode(self):
        kt = DiscreteMulti(["x", "y", "z"])
        assert kt.unpack(b"x,y") == ["x", "y"]
        assert kt.unpack(b"x, z") == ["x", "z"]
        assert kt.unpack(b"all") == ["x", "y", "z"]
        with pytest.raises(ValueError, match="Discrete value 'w' is not one of x, y, z"):
            kt.unpack(b"x,w")

    def test_encode(self):
        kt = DiscreteMulti(["x", "y", "z"])
        # Joined without the separator's space, as katcp 0.9.3 packs.
        assert kt.pack(["x", "z"]) == b"x,z"
        assert DiscreteMulti(["x", "y"], separator="; ").pack(["y", "x"]) == b"y;x"
        with pytest.raises(ValueError):
            kt.pack(["q"])

    def test_custom_keyword_and_separator(self):
        kt = DiscreteMulti(["a", "b"], all_keyword="every", separator="|",
                           case_insensitive=True)
        assert kt.unpack(b"every") == ["a", "b"]
        assert kt.unpack(b"A|b") == ["A", "b"]
        assert kt.pack(["a", "b"]) == b"a|b"


class TestLru:

    def test_round_trip(self):
        assert Lru().pack(Sensor.LRU_NOMINAL) == b"nominal"
        assert Lru().pack(Sensor.LRU_ERROR) == b"error"
        assert Lru().unpack(b"nominal") == Sensor.LRU_NOMINAL
        assert Lru().unpack(b"error") == Sensor.LRU_ERROR

    def test_invalid(self):
        with pytest.raises(ValueError, match="Lru value must be 'nominal' or 'error', not 'ok'"):
            Lru().unpack(b"ok")
        with pytest.raises(ValueError):
            Lru().pack(7)


class TestTimestamp:

    def test_v5_seconds(self):
        assert Timestamp().pack(1234567890.5) == b"1234567890.500000"
        assert Timestamp().pack(0) == b"0.000000"
        assert Timestamp().unpack(b"1234567890.5") == 1234567890.5

    def test_v4_milliseconds(self):
        assert Timestamp().pack(1234567800.125, major=4) == b"1234567800125"
        # Rounding, not truncation, of float error.
        assert Timestamp().pack(1.005, major=4) == b"1005"
        assert Timestamp().unpack(b"1234567999123", major=4) == pytest.approx(1234567999.123)
        assert Timestamp().unpack(b"1222195721660237.85", major=4) == pytest.approx(
            1222195721660.23785)

    def test_invalid(self):
        with pytest.raises(ValueError, match=r"^Could not parse value 'now' as timestamp\.$"):
            Timestamp().unpack(b"now")


class TestTimestampOrNow:

    def test_now(self):
        kt = TimestampOrNow()
        assert kt.unpack(b"now") is TimestampOrNow.NOW
        assert kt.pack(TimestampOrNow.NOW) == b"now"
        assert kt.pack(TimestampOrNow.NOW, major=4) == b"now"

    def test_timestamps(self):
        kt = TimestampOrNow()
        assert kt.unpack(b"12.5") == 12.5
        assert kt.pack(12.5) == b"12.500000"
        assert kt.pack(12.5, major=4) == b"12500"
        assert kt.unpack(b"12500", major=4) == 12.5
        with pytest.raises(ValueError):
            kt.unpack(b"later")


class TestStrictTimestamp:

    def test_round_trip(self):
        kt = StrictTimestamp()
        assert kt.unpack(b"1234.5") == 1234.5
        assert kt.unpack(b"1234") == 1234.0
        assert kt.pack(1234.5) == b"1234.5"
        assert kt.unpack(kt.pack(1234567890.123456)) == 1234567890.123456

    def test_v4_milliseconds(self):
        kt = StrictTimestamp()
        assert kt.pack(1234.5, major=4) == b"1234500.0"
        assert kt.unpack(b"1234500", major=4) == 1234.5

    @pytest.mark.parametrize("raw", [b"1e5", b"-1.0", b".5", b"abc", b"1.2.3", b""])
    def test_format_enforced(self, raw):
        with pytest.raises(ValueError, match="strict timestamp"):
            StrictTimestamp().unpack(raw)

    def test_negative_rejected(self):
        with pytest.raises(ValueError, match="may not be negative"):
            StrictTimestamp().pack(-1.0)

    @pytest.mark.parametrize("value", [float("nan"), float("inf")])
    def test_what_is_not_finite_is_refused(self, value):
        with pytest.raises(ValueError, match=r"^Strict timestamp %s is not finite\.$" % value):
            StrictTimestamp().pack(value)

    @pytest.mark.parametrize("value, raw", [(1e20, b"100000000000000000000"),
                                            (1e-07, b"0.0000001"), (1.5e16, b"15000000000000000")])
    def test_large_and_small_values_are_packed_without_exponent(self, value, raw):
        assert StrictTimestamp().pack(value) == raw
        assert StrictTimestamp().unpack(raw) == value


class TestStruct:

    def test_round_trip(self):
        kt = Struct(">hh")
        assert kt.pack((1, -2)) == b"\x00\x01\xff\xfe"
        assert kt.unpack(b"\x00\x01\xff\xfe") == (1, -2)

    def test_errors(self):
        with pytest.raises(ValueError, match="Could not unpack 'abc' with format '>hh'"):
            Struct(">hh").unpack(b"abc")
        with pytest.raises(ValueError, match="Could not pack"):
            Struct(">hh").pack((1,))

    @pytest.mark.parametrize("duplicate", [
        copy.copy, copy.deepcopy, lambda kt: pickle.loads(pickle.dumps(kt))],
        ids=["copy", "deepcopy", "pickle"])
    def test_copies_work_like_the_original(self, duplicate):
        kt = Struct(">hh", default=(3, 4), multiple=True)
        twin = duplicate(kt)
        assert twin.pack((1, -2)) == b"\x00\x01\xff\xfe"
        assert twin.unpack(b"\x00\x01\xff\xfe") == (1, -2)
        assert twin.unpack(None) == (3, 4) and twin._multiple
        with pytest.raises(ValueError, match="with format '>hh'"):
            twin.unpack(b"abc")
        assert kt.pack((1, -2)) == b"\x00\x01\xff\xfe"


class TestRegex:

    def test_str_pattern(self):
        kt = Regex("^[a-z]+$")
        assert kt.unpack(b"word") == "word"
        assert kt.pack("word") == b"word"
        with pytest.raises(ValueError) as info:
            kt.unpack(b"Word1")
        assert str(info.value) == "Value 'Word1' does not match regex '^[a-z]+$'."
        with pytest.raises(ValueError):
            kt.pack("UP")

    def test_compiled_pattern(self):
        kt = Regex(re.compile(r"\d+", re.ASCII))
        assert kt.unpack(b"123") == "123"
        with pytest.raises(ValueError, match=re.escape("does not match regex '\\d+'")):
            kt.unpack(b"x")

    @pytest.mark.parametrize("pattern", [re.compile("ab+", re.IGNORECASE), "(?i)ab+"],
                             ids=["compiled-flag", "inline-flag"])
    def test_the_flags_of_the_pattern_are_kept_and_it_matches_from_the_start(self, pattern):
        kt = Regex(pattern)
        assert kt.unpack(b"ABbc") == "ABbc"
        assert kt.pack("aB") == b"aB"
        with pytest.raises(ValueError, match="^Value 'cab' does not match regex"):
            kt.unpack(b"cab")

    @pytest.mark.parametrize("pattern", [b"^a+$", re.compile(b"^a+$")], ids=["bytes", "compiled"])
    def test_a_bytes_pattern_is_refused_at_construction(self, pattern):
        with pytest.raises(TypeError, match=r"^Regex pattern must be str, not bytes: b'\^a\+\$'\.$"):
            Regex(pattern)


class TestAddress:

    @pytest.mark.parametrize("raw,value", [
        (b"10.0.0.1:7147", ("10.0.0.1", 7147)),
        (b"localhost", ("localhost", None)),
        (b"[::1]:80", ("::1", 80)),
        (b"[fe80::1]", ("fe80::1", None)),
        ("hôst:80".encode(), ("hôst", 80)),
        ("[fe80::1%état]".encode(), ("fe80::1%état", None))])
    def test_round_trip(self, raw, value):
        assert Address().unpack(raw) == value
        assert Address().pack(value) == raw

    def test_null(self):
        assert Address.NULL == ("0.0.0.0", None)
        assert Address().pack(Address.NULL) == b"0.0.0.0"

    @pytest.mark.parametrize("raw", [b"", b"host:port", b"::1", b"[::1]:x", b"a:1:2"])
    def test_invalid(self, raw):
        with pytest.raises(ValueError, match="as address"):
            Address().unpack(raw)

    def test_pack_invalid(self):
        with pytest.raises(ValueError, match="must be a"):
            Address().pack("10.0.0.1")

    @pytest.mark.parametrize("port", [-1, 65536, 99999, 1.5, 80.0, "80"])
    def test_a_port_that_is_no_port_number_is_refused_as_by_an_address_sensor(self, port):
        refused = r"^Address port must be None or 0-65535, not %s\.$" % re.escape(repr(port))
        with pytest.raises(ValueError, match=refused):
            Address().pack(("h", port))
        with pytest.raises(ValueError, match=refused):
            Sensor.address("a").set_value(("h", port))

    @pytest.mark.parametrize("raw", [b"h:65536", b"h:99999", b"[::1]:70000"])
    def test_unpacking_a_port_out_of_range_is_refused(self, raw):
        with pytest.raises(ValueError, match="Address port must be None or 0-65535"):
            Address().unpack(raw)

    @pytest.mark.parametrize("port", [0, 65535, None])
    def test_ports_at_the_ends_of_the_range_and_none_pack(self, port):
        assert Address().unpack(Address().pack(("h", port))) == ("h", port)


class TestParameter:

    def test_pack_unpack(self):
        param = Parameter(2, "count", Int(), 5)
        assert param.unpack(b"5") == 5
        assert param.pack(5) == b"5"
        assert Parameter(1, "when", Timestamp(), 4).pack(1.5) == b"1500"

    def test_unpack_error_names_parameter(self):
        with pytest.raises(FailReply) as info:
            Parameter(2, "count", Int(), 5).unpack(b"x")
        assert str(info.value) == ("Error in parameter 2 (count): "
                                   "Could not parse value 'x' as integer.")


# ---------------------------------------------------------------------------
# Packing helpers
# ---------------------------------------------------------------------------

class TestPackUnpackTypes:

    def test_unpack_types(self):
        assert unpack_types([Int(), Str()], [b"1", b"a"], ["x", "y"], 5) == [1, "a"]
        assert unpack_types([Int(), Int(default=7)], [b"1"], ["x", "y"], 5) == [1, 7]
        assert unpack_types([Int(multiple=True)], [b"1", b"2", b"3"], ["v"], 5) == [1, 2, 3]
        assert unpack_types([Timestamp()], [b"1500"], ["t"], 4) == [1.5]

    def test_unpack_types_errors(self):
        with pytest.raises(FailReply, match=r"^Too many parameters given\.$"):
            unpack_types([Int()], [b"1", b"2"], ["x"], 5)
        with pytest.raises(FailReply, match=r"^Error in parameter 2 \(y\): No value given"):
            unpack_types([Int(), Int()], [b"1"], ["x", "y"], 5)
        with pytest.raises(FailReply, match=r"^Error in parameter 3 \(v\): Could not parse"):
            unpack_types([Int(multiple=True)], [b"1", b"2", b"z"], ["v"], 5)
        # Missing names are allowed and shown empty.
        with pytest.raises(FailReply, match=r"^Error in parameter 1 \(\): "):
            unpack_types([Int()], [b"z"], [], 5)

    def test_multiple_must_be_last(self):
        with pytest.raises(TypeError, match="last parameter"):
            unpack_types([Int(multiple=True), Int()], [b"1"], [], 5)

    def test_pack_types(self):
        assert pack_types([Int(), Float(), Bool()], [1, 2.5, True], 5) == [b"1", b"2.5", b"1"]
        assert pack_types([Int(), Int(default=3)], [1], 5) == [b"1", b"3"]
        assert pack_types([Str(), Int(multiple=True)], ["a", 1, 2], 5) == [b"a", b"1", b"2"]
        assert pack_types([Timestamp()], [1.5], 4) == [b"1500"]
        with pytest.raises(ValueError, match="Too many arguments"):
            pack_types([Int()], [1, 2], 5)

    def test_optional_multiple_last_type_packs_nothing_when_values_run_out(self):
        # Earlier missing types still pack their defaults, or refuse.
        types = [Int(default=1), Str(optional=True, multiple=True)]
        assert pack_types(types, [], 5) == [b"1"]
        assert pack_types(types, [2], 5) == [b"2"]
        assert pack_types(types, [2, "a", "b"], 5) == [b"2", b"a", b"b"]
        assert pack_types([Str(optional=True, multiple=True)], [], 5) == []
        assert pack_types([Int(default=1), Str(default="x", multiple=True)], [], 5) == [
            b"1", b"x"]
        with pytest.raises(ValueError, match="No value given"):
            pack_types([Int(), Str(optional=True, multiple=True)], [], 5)

    def test_optional_multiple_last_type_unpacks_as_its_default_when_missing(self):
        types = [Int(optional=True), Str(optional=True, multiple=True)]
        assert unpack_types(types, [], ["a", "words"], 5) == [None, None]
        assert unpack_types(types, [b"1"], ["a", "words"], 5) == [1, None]
        assert unpack_types([Int(optional=True), Str(default="x", multiple=True)], [],
                            ["a", "words"], 5) == [None, "x"]


class TestMakeReply:

    def test_ok(self):
        reply = make_reply("myreq", [Int(), Float()], ["ok", 3, 1.5], 5)
        assert reply == Message.reply("myreq", b"ok", b"3", b"1.5")

    def test_fail(self):
        reply = make_reply("myreq", [Int()], ("fail", "it broke"), 5)
        assert reply == Message.reply("myreq", b"fail", b"it broke")

    def test_v4_packing(self):
        reply = make_reply("when", [Timestamp()], ("ok", 2.0), 4)
        assert reply.arguments == [b"ok", b"2000"]

    def test_bad_status(self):
        with pytest.raises(ValueError, match=r"^First returned value must be 'ok' or 'fail'\.$"):
            make_reply("myreq", [], ("error", "x"), 5)

    def test_bad_value_is_not_fail_reply(self):
        with pytest.raises(TypeError):
            make_reply("myreq", [Int()], ("ok", "not-an-int"), 5)
        with pytest.raises(ValueError):
            make_reply("myreq", [Int(max=1)], ("ok", 2), 5)

    def test_async_make_reply(self):
        async def main():
            future = tornado.concurrent.Future()
            reply_future = async_make_reply("myreq", [Int()], future, 5)
            IOLoop.current().add_callback(future.set_result, ("ok", 4))
            return await reply_future
        assert asyncio.run(main()) == Message.reply("myreq", b"ok", b"4")


class TestPlainPackingAndUnpacking:
    """The decorators pack and unpack the common types without calling their methods
    (an exact decoder or encoder of the wire rule, the check only where it checks):
    what a subclass or an instance replaces is still called, and every value and error
    is as the methods give it."""

    @staticmethod
    def _recording(method):
        """An Int subclass whose `method` records its calls and then does its job."""
        calls = []

        class Recording(Int):
            pass

        original = getattr(Int, method)

        def recorded(self, *args, **kwargs):
            calls.append(args[0])
            return original(self, *args, **kwargs)

        setattr(Recording, method, recorded)
        return Recording(), calls

    @pytest.mark.parametrize("method", ["unpack", "decode", "check"])
    def test_a_subclass_unpacking_its_own_way_is_heard(self, method):
        kattype, calls = self._recording(method)

        @request(kattype)
        @return_reply()
        def request_myreq(self, req, x):
            """Doc."""
            return ("ok",)

        assert call(request_myreq, "myreq", 5) == Message.reply("myreq", b"ok")
        assert calls == [b"5" if method != "check" else 5]

    @pytest.mark.parametrize("method", ["pack", "encode", "check"])
    def test_a_subclass_packing_its_own_way_is_heard(self, method):
        kattype, calls = self._recording(method)

        @return_reply(kattype)
        def request_myreq(self, req, msg):
            """Doc."""
            return ("ok", 5)

        assert call(request_myreq, "myreq") == Message.reply("myreq", b"ok", b"5")
        assert calls == [5]

    def test_a_bounded_number_is_checked_both_ways(self):
        @request(Int(max=10))
        @return_reply(Float(min=0))
        def request_myreq(self, req, x):
            """Doc."""
            return ("ok", x - 5.0)

        assert call(request_myreq, "myreq", 7) == Message.reply("myreq", b"ok", b"2.0")
        with pytest.raises(FailReply, match=r"Integer 11 is higher than maximum 10\."):
            call(request_myreq, "myreq", 11)
        with pytest.raises(ValueError, match=r"Float -1 is lower than minimum 0\."):
            call(request_myreq, "myreq", 4)

    def test_what_the_exact_decoders_refuse_is_unpacked_as_unpack_does(self):
        # A KeyError of the boolean's table, a TypeError of int(None): unpack() says.
        with pytest.raises(FailReply, match=r"^Error in parameter 1 \(b\): Could not parse "
                                            r"value '2' as boolean\.$"):
            unpack_types([Bool()], [b"2"], ["b"], 5)
        assert unpack_types([Int(default=3), Str()], [None, b"x"], [], 5) == [3, "x"]

    def test_a_value_of_a_subclass_is_packed_as_pack_does(self):
        # Only values of the encoders' own classes take them: a float subclass (as
        # numpy's float64 is) whose repr is its own is sent as its float's repr.
        class Celsius(float):
            def __repr__(self):
                return "Celsius(%s)" % (float.__repr__(self),)

        @return_reply(Float())
        def request_myreq(self, req, msg):
            """Doc."""
            return ("ok", Celsius(1.5))

        assert call(request_myreq, "myreq") == Message.reply("myreq", b"ok", b"1.5")

    def test_text_that_strict_utf8_refuses_is_replaced_and_logged(self, caplog):
        @return_reply(Str())
        def request_myreq(self, req, msg):
            """Doc."""
            return ("ok", "a\udcff")

        with caplog.at_level("ERROR"):
            assert call(request_myreq, "myreq") == Message.reply("myreq", b"ok", b"a?")
        assert "Error encoding message argument to UTF-8" in caplog.text

    def test_a_reply_given_a_name_is_named_so(self):
        # send_reply names each reply after its request.
        maker = katcp.kattypes.decorators._ReplyMaker("myreq", [Int()], 5)
        assert maker(("ok", 1)) == Message.reply("myreq", b"ok", b"1")
        assert maker(("ok", 1), "other") == Message.reply("other", b"ok", b"1")

    def test_a_format_argument_patched_on_message_formats_the_packed_reply(self):
        # 0.9.3 made the reply with Message.reply(), whose constructor called the class's
        # format_argument for each packed argument (see test_core's patch test).
        @return_reply(Int(), Str())
        def request_myreq(self, req, msg):
            """Doc."""
            return ("ok", 5, "b")

        original = Message.format_argument
        seen = []

        def recording(self, arg):
            seen.append(arg)
            return original(self, arg).upper()

        with mock.patch.object(Message, "format_argument", recording):
            assert call(request_myreq, "myreq") == Message.reply("myreq", b"OK", b"5", b"B")
        assert seen[:3] == [b"ok", b"5", b"b"]
        assert call(request_myreq, "myreq") == Message.reply("myreq", b"ok", b"5", b"b")

    def test_a_handler_whose_name_is_no_message_name_cannot_reply(self):
        @return_reply(Int())
        def request_2x(self, req, msg):
            """Doc."""
            return ("ok", 1)

        with pytest.raises(katcp.core.KatcpSyntaxError, match="Bad message name '2x'"):
            call(request_2x, "myreq")


# ---------------------------------------------------------------------------
# Decorators
# ---------------------------------------------------------------------------

class TestRequest:

    def test_unpacks_arguments(self):
        @request(Int(), Float(), Bool())
        def request_myreq(self, req, i, f, b):
            """My request."""
            return (req, i, f, b)

        req, *values = call(request_myreq, "myreq", b"1", b"2.5", b"1")
        assert values == [1, 2.5, True]
        assert request_myreq._request_decorated is True
        assert request_myreq.__name__ == "request_myreq"
        assert request_myreq.__doc__ == "My request."

    def test_include_msg(self):
        @request(Int(), include_msg=True)
        def request_myreq(self, req, msg, x):
            """Doc."""
            return msg, x

        msg, x = call(request_myreq, "myreq", b"9")
        assert x == 9 and msg.arguments == [b"9"]

    def test_major_4(self):
        @request(Timestamp(), major=4)
        def request_myreq(self, req, when):
            """Doc."""
            return when

        assert call(request_myreq, "myreq", b"1500") == 1.5

    def test_errors_name_parameter(self):
        @request(Int(), Float())
        def request_add(self, req, x, y):
            """Doc."""

        with pytest.raises(FailReply, match=re.escape(
                "Error in parameter 2 (y): Could not parse value 'abc' as float.")):
            call(request_add, "add", b"1", b"abc")
        with pytest.raises(FailReply, match=r"^Too many parameters given\.$"):
            call(request_add, "add", b"1", b"2", b"3")
        with pytest.raises(FailReply, match=re.escape(
                "Error in parameter 2 (y): No value given and no default available.")):
            call(request_add, "add", b"1")

    def test_optional_default_and_multiple(self):
        @request(Str(), Int(default=5), Str(optional=True))
        def request_opt(self, req, a, b, c):
            """Doc."""
            return a, b, c

        assert call(request_opt, "opt", b"x") == ("x", 5, None)
        assert call(request_opt, "opt", b"x", b"2", b"") == ("x", 2, "")

        @request(Str(), Int(multiple=True))
        def request_star(self, req, first, *rest):
            """Doc."""
            return first, rest

        assert call(request_star, "star", b"a", b"1", b"2", b"3") == ("a", (1, 2, 3))
        with pytest.raises(FailReply, match=re.escape("parameter 4 (rest)")):
            call(request_star, "star", b"a", b"1", b"2", b"x")
        with pytest.raises(FailReply, match=re.escape("parameter 2 (rest): No value given")):
            call(request_star, "star", b"a")

        @request(Str(optional=True, multiple=True))
        def request_words(self, req, *words):
            """Doc."""
            return words

        # As in katcp 0.9.3, a missing argument unpacks as unpack(None): one None.
        assert call(request_words, "words") == (None,)
        assert call(request_words, "words", b"a", b"b") == ("a", "b")

        @request(Int(optional=True), Str(optional=True, multiple=True))
        def request_count_words(self, req, count, *words):
            """Doc."""
            return count, words

        assert call(request_count_words, "count-words") == (None, (None,))
        assert call(request_count_words, "count-words", b"1") == (1, (None,))
        assert call(request_count_words, "count-words", b"1", b"a") == (1, ("a",))

        @request(Int(optional=True), Str(default="all", multiple=True))
        def request_defaulted(self, req, count, *words):
            """Doc."""
            return count, words

        assert call(request_defaulted, "defaulted") == (None, ("all",))

    def test_names_seen_through_other_decorators(self):
        @request(Int(), Int())
        @return_reply(Int())
        @concurrent_reply
        def request_pair(self, req, first, second):
            """Doc."""
            return ("ok", first)

        with pytest.raises(FailReply, match=re.escape("parameter 2 (second)")):
            call(request_pair, "pair", b"1", b"x")

    def test_decoration_errors(self):
        with pytest.raises(TypeError, match="last parameter"):
            request(Int(multiple=True), Int())
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            request(Int(), bogus=True)

    def test_async_def_passes_coroutine_through(self):
        @request(Int())
        async def request_slow(self, req, x):
            """Doc."""
            await asyncio.sleep(0)
            return x + 1

        result = call(request_slow, "slow", b"1")
        assert asyncio.iscoroutine(result)
        assert run_async(result) == 2

    def test_gen_coroutine_passes_future_through(self):
        @request(Int())
        @tornado.gen.coroutine
        def request_slow(self, req, x):
            """Doc."""
            yield tornado.gen.moment
            raise tornado.gen.Return(x + 1)

        async def main():
            result = call(request_slow, "slow", b"1")
            assert tornado.gen.is_future(result)
            return await result
        assert asyncio.run(main()) == 2


class TestReturnReply:

    def test_tuple(self):
        @return_reply(Int(), Float())
        def request_myreq(self, req, msg):
            """Doc."""
            return ("ok", 1, 2.0)

        # Without the request's id, as in 0.9.3: the server adds it as it sends the reply.
        reply = call(request_myreq, "myreq", mid=7)
        assert reply == Message.reply("myreq", b"ok", b"1", b"2.0")
        assert request_myreq._return_reply_decorated is True
        assert request_myreq.__doc__ == "Doc."

    def test_reply_is_named_after_the_handler_whatever_request_req_holds(self):
        # As in 0.9.3, whose tests reuse one mock req across handlers.
        @request(Int())
        @return_reply(Int())
        def request_int_range(self, req, x):
            """Doc."""
            return ("ok", x * 2)

        assert bytes(call(request_int_range, "int-range", b"3", mid=12)) == b"!int-range ok 6"
        req = mock.Mock()
        req.msg.name = "one"
        assert bytes(request_int_range(None, req, Message.request("int-range", b"4"))) == (
            b"!int-range ok 8")
        req = mock_req("watchdog", mid=3)
        assert bytes(request_int_range(None, req, Message.request("int-range", b"5"))) == (
            b"!int-range ok 10")

    def test_without_request_message_uses_method_name(self):
        @return_reply(Int())
        def request_some_thing(self, req):
            """Doc."""
            return ("ok", 1)

        assert request_some_thing(None, object()) == Message.reply("some-thing", b"ok", b"1")

    def test_fail_tuple_and_message_passthrough(self):
        @return_reply(Int())
        def request_myreq(self, req, msg):
            """Doc."""
            if msg.arguments:
                return Message.reply("myreq", "ok", "custom")
            return ("fail", "returned fail")

        assert bytes(call(request_myreq, "myreq")) == b"!myreq fail returned\\_fail"
        assert bytes(call(request_myreq, "myreq", b"x")) == b"!myreq ok custom"

    def test_errors_propagate(self):
        @return_reply(Int())
        def request_bad(self, req, msg):
            """Doc."""
            return (msg.arguments[0].decode(), "not-an-int")

        with pytest.raises(TypeError, match="%d format"):
            call(request_bad, "bad", b"ok")
        with pytest.raises(ValueError, match="First returned value must be 'ok' or 'fail'"):
            call(request_bad, "bad", b"error")

        @return_reply()
        def request_raises(self, req, msg):
            """Doc."""
            raise FailReply("This request always fails.")

        with pytest.raises(FailReply, match="always fails"):
            call(request_raises, "raises")

    def test_requires_request_prefix(self):
        with pytest.raises(ValueError, match="request_"):
            @return_reply()
            def handler(self, req, msg):
                """Doc."""

    def test_major_4(self):
        @request(Timestamp(), major=4)
        @return_reply(Timestamp(), major=4)
        def request_echo_ts(self, req, ts):
            """Doc."""
            return ("ok", ts)

        assert call(request_echo_ts, "echo-ts", b"1234567999123").arguments == [
            b"ok", b"1234567999123"]

    def test_gen_coroutine_with_return(self):
        @request(Int())
        @return_reply(Int())
        @tornado.gen.coroutine
        def request_slow(self, req, x):
            """Doc."""
            yield tornado.gen.moment
            raise tornado.gen.Return(("ok", x + 1))

        async def main():
            result = call(request_slow, "slow", b"1", mid=3)
            assert isinstance(result, tornado.concurrent.Future)
            return await result
        assert asyncio.run(main()) == Message.reply("slow", b"ok", b"2")

    def test_async_def(self):
        @return_reply(Str())
        @request(Str())
        async def request_echo(self, req, text):
            """Doc."""
            await asyncio.sleep(0)
            return ("ok", text)

        async def main():
            result = call(request_echo, "echo", b"hi")
            assert inspect.isawaitable(result)
            return await result
        assert asyncio.run(main()) == Message.reply("echo", b"ok", b"hi")

    def test_handler_returning_future(self):
        @return_reply(Int())
        def request_later(self, req, msg):
            """Doc."""
            future = asyncio.get_running_loop().create_future()
            IOLoop.current().call_later(0, future.set_result, ("ok", 5))
            return future

        async def main():
            return await call(request_later, "later")
        assert asyncio.run(main()) == Message.reply("later", b"ok", b"5")

    def test_future_resolving_to_message_and_failures(self):
        @return_reply(Int())
        async def request_async(self, req, msg):
            """Doc."""
            if msg.arguments == [b"msg"]:
                return Message.reply("async", "ok", "direct")
            if msg.arguments == [b"raise"]:
                raise FailReply("no")
            return ("bad-status",)

        async def main():
            assert await call(request_async, "async", b"msg") == Message.reply(
                "async", b"ok", b"direct")
            with pytest.raises(FailReply, match="no"):
                await call(request_async, "async", b"raise")
            with pytest.raises(ValueError, match="First returned value"):
                await call(request_async, "async")
        asyncio.run(main())


class TestSendReply:

    def test_sends_reply(self):
        class Device:
            @send_reply(Int(), Float())
            def my_callback(self, req):
                """Callback."""
                return (req, "ok", 5, 2.0)

        msg = Message.request("myreq", mid=4)
        req = FakeReq(msg)
        assert Device().my_callback(req) is None
        # Named after the request req holds; its id is added as the reply is sent.
        assert req.sent == [Message.reply("myreq", b"ok", b"5", b"2.0")]
        assert Device.my_callback.__doc__ == "Callback."

    def test_an_async_def_or_coroutine_callback_sends_its_reply_once_done(self):
        # A coroutine (or future) was taken for the tuple: "'coroutine' object is not
        # subscriptable", and Python warned it was never awaited.
        class Device:
            @send_reply(Int())
            async def native(self, req):
                """Native."""
                await asyncio.sleep(0)
                return (req, "ok", 1)

            @send_reply(Int())
            @tornado.gen.coroutine
            def decorated(self, req):
                """Decorated."""
                yield tornado.gen.moment
                return (req, "ok", 2)

        async def main():
            native, decorated = FakeReq(Message.request("a")), FakeReq(Message.request("b"))
            sending = Device().native(native)
            assert native.sent == []
            assert await sending is None
            assert await Device().decorated(decorated) is None
            return native.sent, decorated.sent

        assert asyncio.run(main()) == ([Message.reply("a", b"ok", b"1")],
                                       [Message.reply("b", b"ok", b"2")])


class TestInformAndUnpackMessage:

    def test_inform(self):
        class Client:
            @inform(Int(), Float())
            def inform_myinf(self, my_int, my_float):
                """Handle #myinf."""
                return my_int, my_float

            @inform(Int(), include_msg=True, major=4)
            def inform_other(self, msg, value):
                """Handle #other."""
                return msg.name, value

        client = Client()
        assert client.inform_myinf(Message.inform("myinf", b"3", b"0.5")) == (3, 0.5)
        assert client.inform_other(Message.inform("other", b"3")) == ("other", 3)
        assert Client.inform_myinf.__doc__ == "Handle #myinf."
        with pytest.raises(FailReply, match=re.escape("parameter 2 (my_float)")):
            client.inform_myinf(Message.inform("myinf", b"3", b"x"))

    def test_unpack_message(self):
        class Client:
            @unpack_message(Str(), Int(), Float(), Bool())
            def reply_myreq(self, status, my_int, my_float, my_bool):
                """Handle !myreq."""
                return status, my_int, my_float, my_bool

            @unpack_message(Str(), Int(), include_msg=True)
            def inform_fruit_picked(self, msg, fruit, no_picked):
                """Handle #fruit-picked."""
                return msg.mtype, fruit, no_picked

        client = Client()
        reply = Message.reply("myreq", b"ok", b"1", b"2.5", b"0")
        assert client.reply_myreq(reply) == ("ok", 1, 2.5, False)
        informed = Message.inform("fruit-picked", b"apple", b"3")
        assert client.inform_fruit_picked(informed) == (Message.INFORM, "apple", 3)
        assert Client.reply_myreq.__name__ == "reply_myreq"


class TestAttributeDecorators:

    def test_values(self):
        def request_x(self, req, msg):
            """Doc."""

        assert concurrent_reply(request_x) is request_x
        assert request_x._concurrent_reply is True
        assert request_timeout_hint(15)(request_x).request_timeout_hint == 15.0
        assert isinstance(request_x.request_timeout_hint, float)
        assert request_timeout_hint(None)(request_x).request_timeout_hint is None
        flags = (ProtocolFlags.MULTI_CLIENT,)
        assert has_katcp_protocol_flags(flags)(request_x)._has_katcp_protocol_flags == [b"M"]
        assert minimum_katcp_version(5, 1)(request_x)._minimum_katcp_version == (5, 1)
        assert minimum_katcp_version(4)(request_x)._minimum_katcp_version == (4, 0)

    ATTRIBUTE_DECORATORS = [
        ("_concurrent_reply", True, concurrent_reply),
        ("request_timeout_hint", 2.5, request_timeout_hint(2.5)),
        ("_has_katcp_protocol_flags", ["M"], has_katcp_protocol_flags(["M"])),
        ("_minimum_katcp_version", (5, 1), minimum_katcp_version(5, 1)),
    ]

    @pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
    @pytest.mark.parametrize("attribute", ATTRIBUTE_DECORATORS, ids=lambda a: a[0])
    def test_attributes_survive_any_stacking_order(self, order, attribute):
        name, value, attr_decorator = attribute
        decorators = [request(Int()), return_reply(Int()), attr_decorator]

        def request_stacked(self, req, x):
            """Stacked docstring."""
            return ("ok", x)

        handler = request_stacked
        for index in order:
            handler = decorators[index](handler)
        assert getattr(handler, name) == value
        assert handler.__doc__ == "Stacked docstring."
        assert handler.__name__ == "request_stacked"
        assert handler._request_decorated is True
        assert handler._return_reply_decorated is True
        assert call(handler, "stacked", b"4") == Message.reply("stacked", b"ok", b"4")

    def test_device_server_metaclass_uses_attributes(self):
        class Base(metaclass=DeviceServerMetaclass):
            PROTOCOL_INFO = ProtocolFlags(5, 0, [ProtocolFlags.MESSAGE_IDS])

            @request(Int())
            @return_reply(Int())
            @minimum_katcp_version(5, 1)
            def request_new(self, req, x):
                """Needs 5.1."""
                return ("ok", x)

            @has_katcp_protocol_flags([ProtocolFlags.MULTI_CLIENT])
            @request()
            @return_reply()
            def request_multi(self, req):
                """Needs multi-client."""
                return ("ok",)

            @request()
            @return_reply()
            def request_plain(self, req):
                """Always there."""
                return ("ok",)

        class Newer(Base):
            PROTOCOL_INFO = ProtocolFlags(5, 1, [ProtocolFlags.MULTI_CLIENT])

        assert sorted(Base._request_handlers) == ["plain"]
        assert sorted(Newer._request_handlers) == ["multi", "new", "plain"]
        handler = Newer._request_handlers["new"]
        assert handler.__doc__ == "Needs 5.1."
        assert call(handler, "new", b"3", obj=Newer()) == Message.reply("new", b"ok", b"3")

    def test_metaclass_sees_docstrings_of_decorated_handlers(self):
        class Device(metaclass=DeviceMetaclass):
            @request(Float(), Float())
            @return_reply(Float())
            def request_add(self, req, x, y):
                """Add two numbers"""
                return ("ok", x + y)

        handler = Device._request_handlers["add"]
        assert handler.__doc__ == "Add two numbers"
        assert call(handler, "add", b"0.1", b"0.2", obj=Device()).arguments == [
            b"ok", b"0.30000000000000004"]


class TestMultipleReplyValues:

    def test_return_reply_with_multiple(self):
        @request(Int(multiple=True, optional=True))
        @return_reply(Str(), Int(multiple=True, optional=True))
        def request_echo_ints(self, req, *values):
            """Doc."""
            if values == (None,):  # no arguments: one None, as katcp 0.9.3 unpacks
                values = ()
            return ("ok", "n=%d" % len(values)) + values

        assert call(request_echo_ints, "echo-ints", b"1", b"2", b"3").arguments == [
            b"ok", b"n=3", b"1", b"2", b"3"]
        assert call(request_echo_ints, "echo-ints").arguments == [b"ok", b"n=0"]

    def test_required_multiple_needs_a_value(self):
        with pytest.raises(ValueError, match="No value given"):
            pack_types([Str(), Int(multiple=True)], ["a"], 5)
        assert pack_types([Str(), Int(multiple=True, default=4)], ["a"], 5) == [b"a", b"4"]


class TestOnTornadoIOLoop(tornado.testing.AsyncTestCase):
    """The documented coroutine examples, driven by a tornado IOLoop."""

    class Device:
        @tornado.gen.coroutine
        def slow_operation(self):
            yield tornado.gen.sleep(0.001)
            raise tornado.gen.Return(42)

        @return_reply(Int())
        @concurrent_reply
        @request_timeout_hint(15)
        @tornado.gen.coroutine
        def request_myreq(self, req, msg):
            """A slow request"""
            result = yield self.slow_operation()
            raise tornado.gen.Return(("ok", result))

        @request(Float(), Float())
        @return_reply(Float())
        async def request_add(self, req, x, y):
            """Add two numbers"""
            await tornado.gen.sleep(0.001)
            return ("ok", x + y)

    @tornado.testing.gen_test(timeout=5)
    def test_gen_coroutine_example(self):
        handler = self.Device.request_myreq
        assert handler._concurrent_reply is True
        assert handler.request_timeout_hint == 15.0
        assert handler.__doc__ == "A slow request"
        reply = yield call(handler, "myreq", mid=2, obj=self.Device())
        assert bytes(reply) == b"!myreq ok 42"

    @tornado.testing.gen_test(timeout=5)
    def test_async_def_with_request(self):
        futures = [call(self.Device.request_add, "add", str(i).encode(), b"0.5",
                        obj=self.Device()) for i in range(3)]
        replies = yield futures
        assert [reply.arguments for reply in replies] == [
            [b"ok", b"0.5"], [b"ok", b"1.5"], [b"ok", b"2.5"]]


def _docstring_example(function):
    """The code of `function`'s docstring example, as a user would paste it."""
    lines = inspect.getdoc(function).splitlines()
    return "\n".join(line[4:] for line in lines if line.startswith((">>> ", "... ", "...")))


DECORATORS_WITH_EXAMPLES = [
    decorator for decorator in vars(katcp.kattypes.decorators).values()
    if inspect.isfunction(decorator) and ">>> " in (decorator.__doc__ or "")]


def _run_example(function):
    namespace = {"katcp": katcp, "tornado": tornado, "DeviceServer": DeviceServer,
                 "DeviceClient": katcp.DeviceClient}
    exec("from katcp.kattypes import *", namespace)
    exec(compile(_docstring_example(function), function.__name__, "exec"), namespace)
    return namespace["MyDevice"] if "MyDevice" in namespace else None


@pytest.mark.parametrize("decorator", DECORATORS_WITH_EXAMPLES,
                         ids=lambda decorator: decorator.__name__)
def test_decorator_docstring_examples_define_their_classes(decorator):
    # A class body that fails (a handler without a docstring, for one) raises here.
    _run_example(decorator)


@pytest.mark.parametrize("decorator", [concurrent_reply, request_timeout_hint],
                         ids=lambda decorator: decorator.__name__)
def test_slow_request_docstring_examples_reply(decorator):
    class SlowDevice(_run_example(decorator)):
        VERSION_INFO = ("example", 1, 0)
        BUILD_INFO = ("example", 0, 1, "")

        def setup_sensors(self):
            pass

        @tornado.gen.coroutine
        def slow_operation(self):
            yield tornado.gen.moment
            return 42

    server = SlowDevice("127.0.0.1", 0)
    server.start(timeout=5)
    try:
        with katcp.BlockingClient(*server.bind_address) as client:
            assert client.wait_protocol(5)
            reply, _ = client.blocking_request(Message.request("myreq"), timeout=5)
    finally:
        server.stop(timeout=5)
        server.join(timeout=5)
    assert reply.arguments == [b"ok", b"42"]
