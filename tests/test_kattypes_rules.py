"""kattypes: decorator options, the KATCP version a handler speaks, and refusal texts.

Written against the mutants that survived the older tests (see docs/mutation.rst).
"""

import abc
import asyncio
import collections
import copy
import enum
import logging
import pickle
import types
from unittest import mock

import pytest
from wait_helpers import racing

from katcp import Message, Sensor
from katcp.core import FailReply, KatcpSyntaxError
from katcp.kattypes import (Address, Bool, Discrete, DiscreteMulti, Float, Int, KatcpType,
                            Lru, Str, StrictTimestamp, Struct, Timestamp, TimestampOrNow, inform,
                            make_reply, pack_types, request, return_reply, send_reply,
                            unpack_message, unpack_types)


class _Mode(str, enum.Enum):
    FAST = "fast"


class FakeReq:
    """Just enough of a request object for handlers: the message and the replies sent."""

    def __init__(self, msg):
        self.msg = msg
        self.sent = []

    def reply_with_message(self, msg):
        self.sent.append(msg)


def make_device_class():
    """The decorated handlers, defined when a test runs (decorators run at definition)."""

    class Device:
        offset = 100

        @request(Int(), Timestamp(), major=4)
        @return_reply(Int(), Timestamp(), major=4)
        def request_v4(self, req, number, when):
            return ("ok", number + self.offset, when)

        @request(Int(), Timestamp())
        @return_reply(Int(), Timestamp())
        def request_v5(self, req, number, when):
            return ("ok", number + self.offset, when)

        @request(Timestamp(multiple=True), major=4)
        @return_reply(Timestamp(multiple=True), major=4)
        def request_many(self, req, *whens):
            return ("ok",) + whens

        @request(Int(), include_msg=True)
        @return_reply(Str())
        def request_with_msg(self, req, msg, number):
            return ("ok", "%s %s %d" % (req.msg.name, msg.name, number + self.offset))

        @send_reply(Timestamp(), major=4)
        def sent_v4(self, req, when):
            return (req, "ok", when)

        @send_reply(Int())
        def sent_v5(self, req, number):
            return (req, "ok", number + self.offset)

        @inform(Timestamp(), major=4)
        def inform_v4(self, when):
            return (self.offset, when)

        @inform(Timestamp(), include_msg=True)
        def inform_v5(self, msg, when):
            return (self.offset, msg.name, when)

        @unpack_message(Str(), Timestamp(), major=4)
        def reply_v4(self, status, when):
            return (self.offset, status, when)

        @unpack_message(Timestamp(), include_msg=True)
        def reply_v5(self, msg, when):
            return (self.offset, msg.name, when)

    return Device


def _call(handler_name, *args, mid=None):
    msg = Message.request(handler_name.split("_", 1)[1].replace("_", "-"), *args, mid=mid)
    req = FakeReq(msg)
    return getattr(make_device_class()(), handler_name)(req, msg), req


def test_request_and_reply_in_katcp_v4_use_milliseconds():
    reply, _ = _call("request_v4", 1, b"1500", mid=7)
    assert bytes(reply) == b"!v4 ok 101 1500"


def test_request_and_reply_default_to_katcp_v5_seconds():
    reply, _ = _call("request_v5", 1, b"1500")
    assert bytes(reply) == b"!v5 ok 101 1500.000000"


def test_multiple_arguments_keep_the_version():
    reply, _ = _call("request_many", b"1000", b"2500", b"4000")
    assert bytes(reply) == b"!many ok 1000 2500 4000"


def test_include_msg_passes_the_message_after_req():
    reply, _ = _call("request_with_msg", 5)
    assert bytes(reply) == b"!with-msg ok with-msg\\_with-msg\\_105"


def test_send_reply_uses_its_version_and_the_request_name():
    req = FakeReq(Message.request("sent-v4", mid=3))
    device = make_device_class()()
    device.sent_v4(req, 2.5)
    assert [bytes(m) for m in req.sent] == [b"!sent-v4 ok 2500"]
    req.sent = []
    device.sent_v5(req, 1)
    assert [bytes(m) for m in req.sent] == [b"!sent-v4 ok 101"]


def test_inform_and_unpack_message_handlers_use_their_version():
    device = make_device_class()()
    assert device.inform_v4(Message.inform("v4", b"2500")) == (100, 2.5)
    assert device.inform_v5(Message.inform("v5", b"2500")) == (100, "v5", 2500.0)
    assert device.reply_v4(Message.reply("v4", "ok", b"2500")) == (100, "ok", 2.5)
    assert device.reply_v5(Message.reply("v5", b"2500")) == (100, "v5", 2500.0)


def test_inform_handlers_are_marked():
    Device = make_device_class()
    assert Device.inform_v4._inform_decorated is True
    assert not hasattr(Device.reply_v4, "_inform_decorated")
    assert Device.request_v4._request_decorated is True
    assert Device.request_v4._return_reply_decorated is True


@pytest.mark.parametrize("decorator, name", [
    (request, "request"), (inform, "inform"), (unpack_message, "unpack_message"),
    (return_reply, "return_reply"), (send_reply, "send_reply")])
def test_decorators_refuse_unknown_options(decorator, name):
    with pytest.raises(TypeError) as error:
        decorator(Int(), colour="red", bogus=1)
    # Python's own refusal, whatever the decorator's function is called at run time.
    assert "got an unexpected keyword argument" in str(error.value)


def test_only_the_last_type_may_take_multiple_values():
    with pytest.raises(TypeError) as error:
        request(Int(multiple=True), Int())
    assert str(error.value) == "Only the last parameter type can accept multiple arguments."


def test_return_reply_only_on_request_handlers():
    def not_a_request(self, req):
        return ("ok",)

    with pytest.raises(ValueError) as error:
        return_reply()(not_a_request)
    assert str(error.value) == ("This decorator can only be used on a katcp request handler "
                                "(method name should start with 'request_').")


@pytest.mark.parametrize("status", ["ok", b"ok"])
def test_ok_status_as_text_or_bytes(status):
    assert bytes(make_reply("x", [Int()], [status, 3], 5)) == b"!x ok 3"
    assert bytes(make_reply("x", [Int(), Int(default=4)], [status, 3], 5)) == b"!x ok 3 4"


@pytest.mark.parametrize("status", ["fail", b"fail"])
def test_fail_status_as_text_or_bytes(status):
    assert bytes(make_reply("x", [Int()], [status, "why"], 5)) == b"!x fail why"


def test_reply_types_use_the_given_version():
    assert bytes(make_reply("x", [Timestamp()], ["ok", 1.5], 4)) == b"!x ok 1500"
    assert bytes(make_reply("x", [Timestamp(), Timestamp(default=2.0)], ["ok", 1.5], 4)) \
        == b"!x ok 1500 2000"


def test_async_make_reply_uses_the_given_version():
    import tornado.concurrent
    import tornado.ioloop

    from katcp.kattypes import async_make_reply

    async def run():
        arguments = tornado.concurrent.Future()
        arguments.set_result(("ok", 1.5))
        return await async_make_reply("x", [Timestamp()], arguments, 4)

    loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        assert bytes(loop.run_sync(run)) == b"!x ok 1500"
    finally:
        loop.close()


class _Later:
    """An awaitable that is not a future, though it has a done() method."""

    def done(self):
        return True

    def __await__(self):
        return _awaited(("ok", 2)).__await__()


def _run_coroutine(coroutine):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


@pytest.mark.parametrize("result", [_Later, lambda: _awaited(("ok", 2))])
def test_awaitable_replies_are_named_after_the_handler(result):
    @return_reply(Int())
    def request_later(self, req):
        return result()

    req = FakeReq(Message.request("other", mid=6))
    reply = _run_coroutine(request_later(None, req))
    assert bytes(reply) == b"!later ok 2"


async def _awaited(value):
    return value


def test_a_stand_in_request_does_not_name_the_reply():
    # Tests of servers often give handlers a stand-in made for another request (katcp
    # 0.9.3's mocks): the reply is named after the handler, without an id, as in 0.9.3.
    @return_reply(Int())
    def request_mine(self, req):
        return ("ok", 1)

    stand_in = FakeReq(types.SimpleNamespace(name="stand-in", mid=b"3"))
    assert bytes(request_mine(None, stand_in)) == b"!mine ok 1"


def test_send_reply_needs_the_request_to_name_its_reply():
    @send_reply(Int())
    def sent(self, req):
        return (req, "ok", 1)

    with pytest.raises(KatcpSyntaxError) as error:
        sent(None, FakeReq(None))
    assert str(error.value) == "Bad message name ''."


def test_unknown_reply_status_is_refused():
    with pytest.raises(ValueError, match="must be 'ok' or 'fail'"):
        make_reply("x", [], ["maybe"], 5)


class TestPackTypes:

    def test_extra_arguments_without_multiple_are_refused(self):
        with pytest.raises(ValueError) as error:
            pack_types([Int()], [1, 2], 5)
        assert str(error.value) == "Too many arguments to pack."
        with pytest.raises(ValueError):
            pack_types([], [1], 5)

    def test_no_types_and_no_arguments(self):
        assert pack_types([], [], 5) == []

    def test_missing_arguments_take_defaults_in_the_version(self):
        assert pack_types([Int(), Timestamp(default=1.5)], [3], 4) == [b"3", b"1500"]
        assert pack_types([Timestamp(default=1.5)], [], 5) == [b"1.500000"]

    def test_a_single_multiple_type_packs_every_argument_in_the_version(self):
        assert pack_types([Timestamp(multiple=True)], [1.0, 2.0], 4) == [b"1000", b"2000"]
        assert pack_types([Int(), Timestamp(multiple=True)], [1, 1.0, 2.0], 4) == [
            b"1", b"1000", b"2000"]

    def test_exactly_as_many_arguments_as_types(self):
        assert pack_types([Int(), Int()], [1, 2], 5) == [b"1", b"2"]


class TestUnpackTypes:

    def test_extra_values_of_a_multiple_type_use_the_version(self):
        assert unpack_types([Int(), Timestamp(multiple=True)], [b"1", b"1000", b"2000"],
                            ["a", "b"], 4) == [1, 1.0, 2.0]

    def test_missing_values_take_defaults(self):
        assert unpack_types([Int(), Int(default=7)], [b"1"], ["a", "b"], 5) == [1, 7]
        assert unpack_types([Int(default=7)], [], ["a"], 5) == [7]

    def test_errors_name_the_parameter(self):
        with pytest.raises(Exception, match="Error in parameter 2 \\(second\\)"):
            unpack_types([Int(), Int()], [b"1", b"x"], ["first", "second"], 5)


class TestTypes:

    def test_none_without_default_cannot_be_packed(self):
        with pytest.raises(ValueError) as error:
            Int(optional=True).pack(None)
        assert str(error.value) == "Cannot pack a None value."
        with pytest.raises(ValueError, match="No value given and no default available."):
            Int().pack(None)

    def test_checks_use_the_version(self):
        assert Timestamp().pack(1.5, major=4) == b"1500"
        assert Timestamp().unpack(b"1500", major=4) == 1.5
        assert StrictTimestamp().pack(1.5, major=4) == b"1500.0"
        assert StrictTimestamp().unpack(b"1500", major=4) == 1.5

    @pytest.mark.parametrize("kattype, raw, message", [
        (Bool(), b"yes", "Could not parse value 'yes' as boolean."),
        (Str(), b"\xff", "Could not decode value '\\xff' as UTF-8 text."),
        (Lru(), b"ok", "Lru value must be 'nominal' or 'error', not 'ok'."),
        (StrictTimestamp(), b"1e5",
         "Could not parse value '1e5' as strict timestamp (expected XXXX.YYY)."),
        (StrictTimestamp(), b"-1",
         "Could not parse value '-1' as strict timestamp (expected XXXX.YYY)."),
        (Address(), b"a:b:c", "Could not parse value 'a:b:c' as address."),
        (Timestamp(), b"later", "Could not parse value 'later' as timestamp."),
    ])
    def test_decode_refusals(self, kattype, raw, message):
        with pytest.raises(ValueError) as error:
            kattype.decode(raw, 5)
        assert str(error.value) == message

    def test_struct_refusals(self):
        with pytest.raises(ValueError) as error:
            Struct(">h").decode(b"abc", 5)
        assert str(error.value).startswith("Could not unpack 'abc' with format '>h': ")
        with pytest.raises(ValueError) as error:
            Struct(">h").encode(("x",), 5)
        assert str(error.value).startswith("Could not pack ('x',) with format '>h': ")

    def test_encode_refusals(self):
        with pytest.raises(ValueError) as error:
            Lru().encode(5, 5)
        assert str(error.value) == (
            "Lru value must be Sensor.LRU_NOMINAL or Sensor.LRU_ERROR, not 5.")
        with pytest.raises(ValueError) as error:
            Address().encode("1.2.3.4", 5)
        assert str(error.value) == "Address must be a (host, port) tuple, not '1.2.3.4'."

    def test_lru_both_ways(self):
        assert Lru().pack(Sensor.LRU_ERROR) == b"error"
        assert Lru().unpack(b"nominal") == Sensor.LRU_NOMINAL

    def test_strict_timestamps_may_be_zero_but_not_negative(self):
        assert StrictTimestamp().pack(0) == b"0.0"
        assert StrictTimestamp().pack(0.5) == b"0.5"
        with pytest.raises(ValueError) as error:
            StrictTimestamp().pack(-0.5)
        assert str(error.value) == "Strict timestamp -0.5 may not be negative."

    def test_now_has_a_readable_repr(self):
        assert repr(TimestampOrNow.NOW) == "TimestampOrNow.NOW"
        assert TimestampOrNow().pack(TimestampOrNow.NOW) == b"now"
        assert TimestampOrNow().unpack(b"now") is TimestampOrNow.NOW
        assert TimestampOrNow().pack(2.5, major=4) == b"2500"

    def test_discrete_is_case_sensitive_unless_asked(self):
        with pytest.raises(ValueError) as error:
            Discrete(["On", "off"]).check("on", 5)
        assert str(error.value) == "Discrete value 'on' is not one of On, off."
        Discrete(["On", "off"]).check("On", 5)
        Discrete(["On", "off"]).check(b"off", 5)
        Discrete(["On", "off"], case_insensitive=True).check("ON", 5)
        Discrete(["On", "off"], case_insensitive=True).check(b"oFF", 5)

    def test_discrete_multi_checks_each_item(self):
        kattype = DiscreteMulti(["a", "b", "c"])
        assert kattype.pack(["a", "c"], major=4) == b"a,c"
        assert kattype.unpack(b"b,a", major=4) == ["b", "a"]
        assert kattype.unpack(b"all", major=4) == ["a", "b", "c"]
        with pytest.raises(ValueError):
            kattype.pack(["a", "d"], major=4)

    @pytest.mark.parametrize("value, wire", [
        (("1.2.3.4", 80), b"1.2.3.4:80"), (("::1", None), b"[::1]"),
        (("::1", 8), b"[::1]:8"), ((b"host", 1), b"host:1")])
    def test_addresses(self, value, wire):
        assert Address().pack(value) == wire

    def test_infinite_timestamps_format_in_lower_case(self):
        assert Timestamp().pack(float("inf")) == b"inf"

    def test_float_and_bool_formats(self):
        assert Float().pack(2) == b"2.0"
        assert Bool().unpack(b"1") is True and Bool().unpack(b"0") is False

    def test_strict_timestamps_must_be_numbers(self):
        with pytest.raises(ValueError) as error:
            StrictTimestamp().pack("soon")
        assert str(error.value) == "Strict timestamp 'soon' is not a number."

    def test_v4_milliseconds_keep_no_float_noise_below_a_nanosecond(self):
        assert StrictTimestamp().pack(1.001, major=4) == b"1001.0"
        assert StrictTimestamp().pack(1.0000000004, major=4) == b"1000.0"

    def test_discrete_multi_keeps_its_separator(self):
        kattype = DiscreteMulti(["a", "b"], separator="; ")
        assert kattype.separator == "; "
        assert kattype.pack(["b", "a"]) == b"b;a"
        assert kattype.unpack(b"a; b") == ["a", "b"]

    def test_text_subclasses_are_sent_as_their_text(self):
        # A str-valued enum's str() is its qualified name; the wire carries its value.
        assert Str().pack(_Mode.FAST) == b"fast"

    def test_unencodable_text_is_replaced_and_logged(self, caplog):
        with caplog.at_level(logging.ERROR, logger="katcp.core"):
            assert Str().pack("a\udcffb") == b"a?b"
        assert [r.getMessage() for r in caplog.records] == [
            "Error encoding message argument to UTF-8, replacing invalid characters: "
            "'a\\udcffb'"]

    def test_subclasses_that_adapt_a_value_keep_the_version(self):
        class Rounded(Timestamp):
            """Whole seconds, on top of the timestamp type's wire form."""

            def encode(self, value, major):
                return super().encode(round(value), major)

            def decode(self, value, major):
                return round(super().decode(value, major))

        assert Rounded().pack(2.4, major=4) == b"2000"
        assert Rounded().unpack(b"2600", major=4) == 3
        assert Rounded().pack(2.4) == b"2.000000"


class TestHandlerArguments:

    def test_defaults_fill_in_on_the_fast_path_too(self):
        @request(Int(default=5), Int(default=6))
        def handler(self, req, a, b):
            return a, b

        req = FakeReq(Message.request("x", 1, 2))
        assert handler(None, req, req.msg) == (1, 2)
        req = FakeReq(Message.request("x", 1))
        assert handler(None, req, req.msg) == (1, 6)

    def test_errors_name_the_handler_parameter_or_its_varargs(self):
        @request(Int(), Int(multiple=True))
        def handler(self, req, first, *rest):
            return first, rest

        msg = Message.request("x", 1, 2, b"three")
        with pytest.raises(Exception) as error:
            handler(None, FakeReq(msg), msg)
        assert "Error in parameter 3 (rest): " in str(error.value)

        @request(Int())
        def unnamed(*args):
            return args

        msg = Message.request("x", b"one")
        with pytest.raises(Exception) as error:
            unnamed(None, FakeReq(msg), msg)
        assert "Error in parameter 1 (args): " in str(error.value)

        @request(Int(), Int())
        def short(self, req, first):
            return first

        msg = Message.request("x", 1, b"two")
        with pytest.raises(Exception) as error:
            short(None, FakeReq(msg), msg)
        assert "Error in parameter 2 (): " in str(error.value)

    def test_include_msg_shifts_the_parameter_names(self):
        @request(Int(), include_msg=True)
        def handler(self, req, msg, number):
            return number

        @inform(Int(), include_msg=True)
        def on_inform(self, msg, count):
            return count

        msg = Message.request("x", b"one")
        with pytest.raises(Exception) as error:
            handler(None, FakeReq(msg), msg)
        assert "Error in parameter 1 (number): " in str(error.value)
        with pytest.raises(Exception) as error:
            on_inform(None, Message.inform("x", b"one"))
        assert "Error in parameter 1 (count): " in str(error.value)

    def test_send_reply_defaults_to_katcp_v5(self):
        @send_reply(Timestamp())
        def sent(self, req):
            return (req, "ok", 1.5)

        req = FakeReq(Message.request("x"))
        sent(None, req)
        assert [bytes(m) for m in req.sent] == [b"!x ok 1.500000"]

    def test_callables_without_a_signature_can_be_decorated(self):
        class Opaque:
            # inspect.signature() refuses this object.
            __signature__ = "no signature"

            def __call__(self, *args):
                return args[-1]

        decorated = request(Int())(Opaque())
        msg = Message.request("x", 3)
        assert decorated(None, FakeReq(msg), msg) == 3
        msg = Message.request("x", b"x")
        with pytest.raises(Exception) as error:
            decorated(None, FakeReq(msg), msg)
        assert "Error in parameter 1 (): " in str(error.value)

    def test_include_msg_in_inform_and_unpack_message_handlers(self):
        @inform(Int(), include_msg=True)
        def on_inform(self, msg, number):
            return self, msg.name, number

        @unpack_message(Int())
        def on_reply(self, number):
            return self, number

        assert on_inform("me", Message.inform("x", 4)) == ("me", "x", 4)
        assert on_reply("me", Message.reply("x", 5)) == ("me", 5)
        assert on_inform._inform_decorated is True


class TestMethodsPatchedOnATypeLater:
    """A check(), pack() or unpack() set on a type's class, or on a type, once handlers
    were decorated (``mock.patch.object(Int, "check", ...)`` in a test) is heard by those
    handlers, and its undo too: 0.9.3 called each by name at every request and reply."""

    @staticmethod
    def _device():
        class Device:
            @request(Int(), Str())
            @return_reply(Int(), Bool())
            def request_echo(self, req, number, text):
                return ("ok", number, text == "yes")

        return Device()

    def _reply(self, device, *args):
        msg = Message.request("echo", *args)
        return bytes(device.request_echo(FakeReq(msg), msg))

    def test_a_check_patched_on_the_class_refuses_arguments_until_undone(self):
        device = self._device()
        assert self._reply(device, 3, "yes") == b"!echo ok 3 1"
        with mock.patch.object(Int, "check", side_effect=ValueError("not today")):
            with pytest.raises(FailReply, match=r"parameter 1 \(number\): not today"):
                self._reply(device, 3, "yes")
        assert self._reply(device, 3, "yes") == b"!echo ok 3 1"

    def test_a_check_patched_on_a_base_class_is_heard_by_the_reply(self):
        device = self._device()
        with mock.patch.object(KatcpType, "check", autospec=True) as check:
            assert self._reply(device, 3, "no") == b"!echo ok 3 0"
        # The Str argument, the reply's status and its Bool (Int's check is its own).
        assert [call.args[1] for call in check.call_args_list] == ["no", "ok", False]

    def test_pack_and_unpack_patched_on_the_class_are_used(self):
        device = self._device()
        with mock.patch.object(Bool, "pack", return_value=b"maybe"), \
                mock.patch.object(Str, "unpack", return_value="yes"):
            assert self._reply(device, 3, "no") == b"!echo ok 3 maybe"
        assert self._reply(device, 3, "no") == b"!echo ok 3 0"

    def test_a_check_patched_on_the_class_is_heard_by_send_reply(self):
        class Device:
            @send_reply(Int())
            def sent(self, req, number):
                return (req, "ok", number)

        device = Device()
        req = FakeReq(Message.request("echo"))
        with mock.patch.object(Int, "check", side_effect=ValueError("not today")):
            with pytest.raises(ValueError, match="not today"):
                device.sent(req, 3)
        device.sent(req, 3)
        assert [bytes(msg) for msg in req.sent] == [b"!echo ok 3"]

    def test_a_check_patched_on_a_type_itself_is_heard_until_undone(self):
        shared = Int(max=10)  # as a module keeps one for several handlers

        class Device:
            @request(shared)
            @return_reply(shared)
            def request_twice(self, req, number):
                return ("ok", number * 2)

        device = Device()
        msg = Message.request("twice", 4)
        with mock.patch.object(shared, "check") as check:
            assert bytes(device.request_twice(FakeReq(msg), msg)) == b"!twice ok 8"
        assert [call.args[0] for call in check.call_args_list] == [4, 8]
        msg = Message.request("twice", 11)
        with pytest.raises(FailReply, match="11 is higher than maximum 10"):
            device.request_twice(FakeReq(msg), msg)

    def test_encode_and_decode_patched_on_the_class_are_used_until_undone(self):
        # Types made (and handlers decorated) before the patch hear it, as each named its
        # decode() and encode() at every call in 0.9.3.
        device = self._device()
        made_before = Timestamp()
        with mock.patch.object(Int, "decode", return_value=7), \
                mock.patch.object(Bool, "encode", return_value=b"maybe"), \
                mock.patch.object(Timestamp, "decode", return_value=1.5):
            assert self._reply(device, 3, "no") == b"!echo ok 7 maybe"
            assert made_before.unpack(b"99") == 1.5
        assert self._reply(device, 3, "no") == b"!echo ok 3 0"
        assert made_before.unpack(b"99") == 99.0

    def test_a_type_of_its_own_rule_is_not_changed_by_a_patch_of_its_base(self):
        # TimestampOrNow decodes "now" by its own rule, whatever Timestamp's decode is.
        with mock.patch.object(Timestamp, "decode", return_value=1.5):
            assert TimestampOrNow().unpack(b"now") is TimestampOrNow.NOW
            assert Timestamp().unpack(b"now") == 1.5

    @pytest.mark.parametrize("duplicate", [
        copy.copy, copy.deepcopy, lambda kt: pickle.loads(pickle.dumps(kt))],
        ids=["copy", "deepcopy", "pickle"])
    def test_copies_of_a_type_hear_a_decode_patched_on_its_class(self, duplicate):
        twin = duplicate(Int(max=5))
        with mock.patch.object(Int, "decode", return_value=1):
            assert twin.unpack(b"3") == 1
        assert twin.unpack(b"3") == 3
        with pytest.raises(ValueError, match="higher than maximum 5"):
            twin.unpack(b"6")

    @pytest.mark.parametrize("duplicate", [
        copy.copy, copy.deepcopy, lambda kt: pickle.loads(pickle.dumps(kt))],
        ids=["copy", "deepcopy", "pickle"])
    def test_copies_of_a_subclass_with_slots_keep_them(self, duplicate):
        twin = duplicate(_SlottedInt(max=5, unit="dB"))
        assert twin.unit == "dB"
        with mock.patch.object(Int, "decode", return_value=1):
            assert twin.unpack(b"3") == 1
        assert twin.unpack(b"3") == 3

    def test_a_subclass_compared_by_value_is_made_and_hears_a_patch(self):
        # Defining __eq__ makes a class unhashable (as 0.9.3's allowed).
        made = _ComparedInt()
        assert made == _ComparedInt()
        with mock.patch.object(Int, "decode", return_value=1):
            assert made.unpack(b"3") == 1
        assert made.unpack(b"3") == 3

    def test_patches_in_one_thread_while_another_makes_types(self):
        # Types made meanwhile must not fail the patch (or its undo), however
        # the threads interleave; a short switch interval makes them interleave often.
        made = collections.deque(maxlen=500)  # kept, so that a patch has many to visit
        with racing(lambda: made.append(Int())):
            for _ in range(200):
                with mock.patch.object(Int, "decode", return_value=1):
                    pass
        assert Int().unpack(b"3") == 3


class _SlottedInt(Int):
    __slots__ = ("unit",)

    def __init__(self, unit, **kwargs):
        super().__init__(**kwargs)
        self.unit = unit


class _ComparedInt(Int):
    def __eq__(self, other):
        return type(other) is type(self)


class _Described(abc.ABC):
    @abc.abstractmethod
    def describe(self):
        """What the type is for."""


def test_a_type_may_mix_in_an_abstract_base_class():
    # As with 0.9.3's plain classes: the class of the kattypes classes (which hears
    # methods patched on them) is an ABCMeta, so that the two metaclasses agree.
    class Gain(Int, _Described):
        def describe(self):
            return "a gain"

    with pytest.raises(TypeError, match="abstract"):
        type("Undescribed", (Int, _Described), {})()
    assert Gain(min=0).unpack(b"3") == 3
    assert isinstance(Gain(), _Described) and isinstance(Gain(), KatcpType)
    with mock.patch.object(Int, "decode", return_value=1):
        assert Gain().unpack(b"3") == 1
