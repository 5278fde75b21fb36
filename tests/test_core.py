"""Tests for katcp.core: the message codec, protocol flags, exceptions, the device
metaclasses and the small synchronous and asynchronous helpers."""

import asyncio
import concurrent.futures
import enum
import functools
import gc
import logging
import random
import sys
import threading
import weakref
from unittest import mock

import pytest
import tornado.gen
import tornado.ioloop
import tornado.testing
from tornado.concurrent import Future
from subprocess_helpers import run_program
from wait_helpers import pending_waits, waits_left_by

from katcp import core
from katcp.core import (AsyncCallbackEvent, AsyncEvent, AsyncReply, AsyncState, AttrDict,
                        DefaultAttrDict, DeviceMetaclass, DeviceServerMetaclass, FailReply,
                        KatcpClientDisconnected, KatcpClientError, KatcpDeviceError,
                        KatcpError, KatcpSyntaxError, KatcpTypeError, KatcpVersionError,
                        LatencyTimer, Message, MessageParser, ProtocolFlags,
                        convert_method_name, encode_utf8_with_error_log,
                        future_timeout_manager, hashable_identity, log_coroutine_exceptions,
                        log_future_exceptions, steal_docstring_from, until_any, until_later,
                        until_some)
from katcp.loop.futures import _until_all, _windowed, give_up

PARSER = MessageParser()


# ---------------------------------------------------------------------------
# Message construction
# ---------------------------------------------------------------------------

class TestMessageConstruction:

    def test_type_constants(self):
        assert (Message.REQUEST, Message.REPLY, Message.INFORM) == (0, 1, 2)
        assert Message.TYPE_NAMES == {0: "REQUEST", 1: "REPLY", 2: "INFORM"}
        assert Message.TYPE_SYMBOLS == {0: b"?", 1: b"!", 2: b"#"}
        assert Message.TYPE_SYMBOL_LOOKUP == {b"?": 0, b"!": 1, b"#": 2}
        assert (Message.OK, Message.FAIL, Message.INVALID) == (b"ok", b"fail", b"invalid")

    def test_a_message_takes_attributes_and_replacements_of_its_methods(self):
        # As 0.9.3's plain class: code keeps its own attributes on a message, and tests
        # replace its methods on the instance.
        msg = Message.request("foo", "a")
        msg.received_at = 123.0
        assert msg.received_at == 123.0
        with mock.patch.object(msg, "reply_ok", return_value=True):
            assert msg.reply_ok()
        assert not msg.reply_ok()
        assert msg == Message.request("foo", "a") and bytes(msg) == b"?foo a"

    def test_fields(self):
        msg = Message(Message.INFORM, "sensor-value", [b"a", "b"], 12)
        assert msg.mtype == Message.INFORM
        assert msg.name == "sensor-value"
        assert msg.arguments == [b"a", b"b"]
        assert msg.mid == b"12"

    def test_defaults(self):
        msg = Message(Message.REQUEST, "watchdog")
        assert msg.arguments == []
        assert msg.mid is None

    def test_helpers_set_type(self):
        assert Message.request("a", 1).mtype == Message.REQUEST
        assert Message.reply("a", 1).mtype == Message.REPLY
        assert Message.inform("a", 1).mtype == Message.INFORM
        assert Message.request("a", 1, mid=3).mid == b"3"
        assert Message.reply("a", mid="4").mid == b"4"
        assert Message.inform("a", mid=b"5").mid == b"5"

    def test_helpers_reject_unknown_keywords(self):
        with pytest.raises(TypeError):
            Message.request("a", foo=1)

    def test_reply_to_request_and_reply_inform_copy_name_and_mid(self):
        req = Message.request("sensor-list", "x", mid=7)
        reply = Message.reply_to_request(req, "ok", 1)
        inform = Message.reply_inform(req, "x", "desc")
        assert (reply.mtype, reply.name, reply.mid, reply.arguments) == (
            Message.REPLY, "sensor-list", b"7", [b"ok", b"1"])
        assert (inform.mtype, inform.name, inform.mid, inform.arguments) == (
            Message.INFORM, "sensor-list", b"7", [b"x", b"desc"])
        assert Message.reply_to_request(Message.request("w")).mid is None

    @pytest.mark.parametrize("mtype", [-1, 3, "?", None, [0], {}])
    def test_bad_type(self, mtype):
        with pytest.raises(KatcpSyntaxError, match=r"^Invalid message type "):
            Message(mtype, "foo")

    @pytest.mark.parametrize("name", ["a", "A", "a-b", "sensor-list", "x1-2-3", "Z9"])
    def test_good_names(self, name):
        assert Message.request(name).name == name

    @pytest.mark.parametrize("name", ["", "1abc", "-abc", "a_b", "a b", "a.b", "a[1]",
                                      "caf\u00e9", "a\n", None, 12, ["a"]])
    def test_bad_names(self, name):
        with pytest.raises(KatcpSyntaxError):
            Message(Message.REQUEST, name)

    def test_bytes_name_becomes_str(self):
        assert Message.request(b"foo").name == "foo"

    def test_a_str_subclass_name_is_its_text(self):
        class Request(str, enum.Enum):
            WATCHDOG = "watchdog"
        msg = Message.request(Request.WATCHDOG)
        assert type(msg.name) is str and msg.name == "watchdog"
        assert bytes(msg) == b"?watchdog"

    @pytest.mark.parametrize("mid, expected", [
        (1, b"1"), (2 ** 31 - 1, b"2147483647"), ("123", b"123"), (b"456", b"456"),
        # Like katcp 0.9.3 any decimal digits, kept as given (a reply echoes them).
        ("007", b"007"), (0, b"0"), (2 ** 31, b"2147483648"), (b"00", b"00"),
        (None, None)])
    def test_good_mids(self, mid, expected):
        assert Message.request("foo", mid=mid).mid == expected

    @pytest.mark.parametrize("mid", [-1, "", "abc", b"1a", "-5", " 5", "1.5", 1.5, True,
                                     [1], "\u00b2"])
    def test_bad_mids(self, mid):
        with pytest.raises(KatcpSyntaxError):
            Message.request("foo", mid=mid)

    def test_bad_mid_is_a_value_error(self):
        with pytest.raises(ValueError):
            Message.request("foo", mid="1a")


class TestFormatArgument:

    class Colour(enum.IntEnum):
        RED = 3

    class Text(str):
        pass

    class Mode(str, enum.Enum):
        IDLE = "idle"

    class Tagged(str):
        def __str__(self):
            return "Tagged(%s)" % (str.__str__(self),)

    @pytest.mark.parametrize("arg, expected", [
        (b"raw\xff", b"raw\xff"),
        ("text", b"text"),
        ("caf\u00e9", b"caf\xc3\xa9"),
        (True, b"1"),
        (False, b"0"),
        (0, b"0"),
        (-546, b"-546"),
        (2 ** 80, b"1208925819614629174706176"),
        (1.7, b"1.7"),
        (-1.234e-05, b"-1.234e-05"),
        (1e-7, b"1e-07"),
        (1e22, b"1e+22"),
        (0.30000000000000004, b"0.30000000000000004"),
        (123456789012.5, b"123456789012.5"),
        (float("nan"), b"nan"),
        (float("-inf"), b"-inf"),
        (-0.0, b"-0.0"),
        (None, b""),
        (bytearray(b"ba"), b"ba"),
        (Colour.RED, b"3"),
        (Text("sub"), b"sub"),
        (Mode.IDLE, b"idle"),
        (Tagged("caf\u00e9"), b"caf\xc3\xa9"),
        (Tagged("a\ud800b"), b"a?b"),
    ])
    def test_format(self, arg, expected):
        assert Message.request("x").format_argument(arg) == expected
        assert Message.inform("x", arg).arguments == [expected]

    def test_an_iterator_of_arguments_with_unencodable_text_keeps_every_argument(self):
        arguments = iter(["first", "a\ud800b", 3, "last\udcff", b"end"])
        assert Message.inform("x", *arguments).arguments == [
            b"first", b"a?b", b"3", b"last?", b"end"]
        assert Message(Message.INFORM, "x", iter(["first", "a\ud800b", "last"])).arguments \
            == [b"first", b"a?b", b"last"]

    def test_many_unencodable_texts_are_formatted_without_nesting_calls(self):
        # Each used to nest a call of the formatter: a few thousand overflowed the stack.
        count = 5 * sys.getrecursionlimit()
        arguments = ["a\udcff", 7] * count
        expected = [b"a?", b"7"] * count
        with mock.patch("katcp.wire.text.logger"):
            assert Message.inform("x", *arguments).arguments == expected
            assert Message(Message.INFORM, "x", iter(arguments)).arguments == expected

    def test_format_is_usable_on_instances(self):
        assert Message.request("x").format_argument(5) == b"5"

    def test_a_subclass_formats_its_arguments_its_own_way(self):
        # A method, as in 0.9.3: a subclass's override formats what its constructors
        # take, and may call the base class's with the message.
        class ThreeDecimals(Message):
            def format_argument(self, arg):
                if isinstance(arg, float):
                    return b"%.3f" % arg
                return Message.format_argument(self, arg)

        assert ThreeDecimals.request("x", 1.23456, "a b").arguments == [b"1.235", b"a b"]
        request = ThreeDecimals.request("x")
        assert ThreeDecimals.reply_to_request(request, "ok", 2.5).arguments == [
            b"ok", b"2.500"]
        assert Message.request("x", 1.23456).arguments == [b"1.23456"]

        class WithItsOwnInit(ThreeDecimals):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)

        assert WithItsOwnInit.request("x", 0.5).arguments == [b"0.500"]

    def test_a_later_subclass_without_an_override_leaves_an_earlier_ones_in_use(self):
        class Upper(Message):
            def format_argument(self, arg):
                return str(arg).upper().encode()

        class Plain(Message):
            pass

        assert Upper.request("x", "abc").arguments == [b"ABC"]
        assert Plain.request("x", "abc").arguments == [b"abc"]
        # The reply of "ok" alone too, which Message's own rule formats without a call.
        request = Message.request("x")
        assert Upper.reply_to_request(request, "ok").arguments == [b"OK"]
        assert Plain.reply_to_request(request, "ok").arguments == [b"ok"]

    def test_format_argument_patched_on_a_class_is_used_from_then_on(self):
        # 0.9.3's constructors called it for each argument, so a test patching it on the
        # class was heard; the choice made once per class kept the rule in use.
        def upper(self, arg):
            return str(arg).upper().encode()

        class Plain(Message):
            pass

        request = Message.request("x", "before")
        with mock.patch.object(Message, "format_argument", upper):
            assert Message.request("x", "abc").arguments == [b"ABC"]
            assert Message.reply_to_request(request, "ok", "d").arguments == [b"OK", b"D"]
            assert Plain.inform("x", "e").arguments == [b"E"]
        assert Message.request("x", "abc", 1.5).arguments == [b"abc", b"1.5"]
        assert Plain.inform("x", "e").arguments == [b"e"]
        # On a subclass alone (inherited there, so deleted again at the end).
        with mock.patch.object(Plain, "format_argument", upper):
            assert Plain.inform("x", "e").arguments == [b"E"]
            assert Message.inform("x", "e").arguments == [b"e"]
        assert Plain.inform("x", "e").arguments == [b"e"]
        assert request.arguments == [b"before"]

    def test_other_objects_use_str(self):
        class Thing:
            def __str__(self):
                return "thing!"
        assert Message.request("x").format_argument(Thing()) == b"thing!"

    def test_unencodable_text_is_logged_and_replaced(self, caplog):
        with caplog.at_level(logging.ERROR, logger="katcp.core"):
            assert Message.request("x").format_argument("a\ud800b") == b"a?b"
        assert "utf-8" in caplog.text.lower()

    def test_encode_utf8_with_error_log(self, caplog):
        assert encode_utf8_with_error_log("caf\u00e9") == b"caf\xc3\xa9"
        assert caplog.records == []
        with caplog.at_level(logging.ERROR):
            assert encode_utf8_with_error_log("\udcff") == b"?"
        assert len(caplog.records) == 1


# ---------------------------------------------------------------------------
# Message formatting, equality, repr
# ---------------------------------------------------------------------------

class TestMessageFormatting:

    def test_simple(self):
        assert bytes(Message.request("watchdog")) == b"?watchdog"
        assert bytes(Message.reply("watchdog", "ok")) == b"!watchdog ok"
        assert bytes(Message.inform("log", "info", 1.5)) == b"#log info 1.5"

    def test_no_trailing_newline(self):
        assert not bytes(Message.inform("a", "b\n")).endswith(b"\n")

    def test_mid(self):
        assert bytes(Message.request("set-rate", 4.1, mid=123)) == b"?set-rate[123] 4.1"

    @pytest.mark.parametrize("raw, escaped", [
        (b"\\", b"\\\\"), (b" ", b"\\_"), (b"\0", b"\\0"), (b"\n", b"\\n"),
        (b"\r", b"\\r"), (b"\x1b", b"\\e"), (b"\t", b"\\t"), (b"", b"\\@"),
        (b"a b\tc\nd\\e\0f\x1bg\rh", b"a\\_b\\tc\\nd\\\\e\\0f\\eg\\rh"),
        (b"@_", b"@_"), (b"\xff\x01", b"\xff\x01"),
    ])
    def test_escapes(self, raw, escaped):
        assert bytes(Message.inform("x", raw)) == b"#x " + escaped
        assert bytes(Message.inform("x", b"a", raw, b"b")) == b"#x a " + escaped + b" b"

    def test_each_byte_escapes_as_the_table_says(self):
        from katcp.wire.message import _ESCAPES, escape_argument
        text = bytes(range(256)) * 3
        assert escape_argument(text) == b"".join(
            _ESCAPES.get(bytes([byte]), bytes([byte])) for byte in text)

    def test_empty_arguments(self):
        assert bytes(Message.reply("optional", "ok", 1, 2, "")) == b"!optional ok 1 2 \\@"
        assert bytes(Message.reply("x", "", "")) == b"!x \\@ \\@"

    def test_str_is_decoded_bytes(self):
        msg = Message.inform("x", "caf\u00e9", "a b")
        assert str(msg) == "#x caf\u00e9 a\\_b"
        assert isinstance(str(msg), str)

    def test_str_survives_non_utf8(self):
        assert str(Message.inform("x", b"\xff")) == "#x \\xff"

    def test_repr(self):
        assert repr(Message.reply("ok", b"123", b"zzz")) == "<Message reply ok (b'123', b'zzz')>"
        assert repr(Message.request("w", mid=4)) == "<Message request w[4] ()>"
        # Arguments are shown escaped, as on the wire, except the empty one.
        assert repr(Message.inform("a-b", b"x y", b"", b"\\\n")) == \
            "<Message inform a-b (b'x\\\\_y', b'', b'\\\\\\\\\\\\n')>"

    def test_repr_truncates_long_arguments(self):
        text = repr(Message.inform("big", b"a" * 5000, b"b" * 1000))
        assert text == "<Message inform big (b'%s...', b'%s')>" % ("a" * 1000, "b" * 1000)

    def test_equality(self):
        a = Message.request("foo", 1, "x", mid=3)
        assert a == Message(Message.REQUEST, "foo", [b"1", b"x"], b"3")
        assert not (a != Message(Message.REQUEST, "foo", [b"1", b"x"], b"3"))
        assert a != Message.request("foo", 1, "x")
        assert a != Message.reply("foo", 1, "x", mid=3)
        assert a != Message.request("fop", 1, "x", mid=3)
        assert a != Message.request("foo", 1, "y", mid=3)
        assert a != "?foo[3] 1 x"
        assert not (a == b"?foo[3] 1 x")

    def test_unhashable(self):
        with pytest.raises(TypeError):
            hash(Message.request("foo"))

    def test_reply_ok(self):
        assert Message.reply("foo", "ok").reply_ok() is True
        assert Message.reply("foo", "ok", 1).reply_ok() is True
        assert Message.reply("foo", "fail", "x").reply_ok() is False
        assert Message.reply("foo").reply_ok() is False
        assert Message.inform("foo", "ok").reply_ok() is False
        assert Message.request("foo", "ok").reply_ok() is False

    def test_copy_is_shallow_and_independent(self):
        msg = Message.request("foo", b"a", mid=2)
        copy = msg.copy()
        assert copy == msg and copy is not msg
        copy.arguments.append(b"b")
        assert msg.arguments == [b"a"]


# ---------------------------------------------------------------------------
# MessageParser
# ---------------------------------------------------------------------------

class TestMessageParser:

    def test_types(self):
        assert PARSER.parse(b"?foo").mtype == Message.REQUEST
        assert PARSER.parse(b"!foo").mtype == Message.REPLY
        assert PARSER.parse(b"#foo").mtype == Message.INFORM

    def test_full_message(self):
        msg = PARSER.parse(b"?set-rate[123] 4.1 ok")
        assert msg == Message.request("set-rate", "4.1", "ok", mid=123)
        assert isinstance(msg.name, str)
        assert msg.mid == b"123"
        assert all(type(a) is bytes for a in msg.arguments)

    @pytest.mark.parametrize("line", [
        b"?raw-reverse   a    b   ",
        b"?raw-reverse\ta\t\tb\t",
        b"?raw-reverse \t a \t b",
    ])
    def test_whitespace_runs_separate_arguments(self, line):
        assert PARSER.parse(line).arguments == [b"a", b"b"]

    def test_trailing_whitespace_only(self):
        assert PARSER.parse(b"?watchdog ").arguments == []
        assert PARSER.parse(b"?watchdog \t").arguments == []

    def test_escapes(self):
        msg = PARSER.parse(b"?raw \\_ \\@ \\\\ \\t \\n \\r \\e \\0 a\\@b x\\_y \\@\\@")
        assert msg.arguments == [b" ", b"", b"\\", b"\t", b"\n", b"\r", b"\x1b", b"\0",
                                 b"ab", b"x y", b""]

    def test_escapes_in_sequence(self):
        assert PARSER.parse(b"#x a\\_b\\tc\\nd\\\\e\\0f\\eg\\rh").arguments == [
            b"a b\tc\nd\\e\0f\x1bg\rh"]
        assert PARSER.parse(b"#x \\\\_").arguments == [b"\\_"]

    def test_other_whitespace_bytes_are_argument_content(self):
        # Only spaces and tabs separate arguments.
        assert PARSER.parse(b"#x a\x0bb\x0cc d").arguments == [b"a\x0bb\x0cc", b"d"]

    @pytest.mark.parametrize("line", [b"#x a\rb", b"#x \nc", b"?foo \0", b"!ok \x1b",
                                      b"!test message\n"])
    def test_unescaped_specials_are_rejected(self, line):
        # Newline, carriage return, NUL and ESC may only appear escaped (as in 0.9.3).
        with pytest.raises(KatcpSyntaxError, match="Unescaped special character"):
            PARSER.parse(line)

    def test_non_ascii_arguments_kept_as_bytes(self):
        assert PARSER.parse(b"?types caf\xc3\xa9 \xff\xfe").arguments == [
            b"caf\xc3\xa9", b"\xff\xfe"]

    def test_accepts_bytearray_but_not_str(self):
        assert PARSER.parse(bytearray(b"!foo ok")) == Message.reply("foo", "ok")
        # Text has no wire encoding: a type error, as in katcp 0.9.3.
        with pytest.raises(KatcpTypeError):
            PARSER.parse("?foo caf\u00e9")

    def test_max_mid(self):
        assert PARSER.parse(b"?watchdog[2147483647]").mid == b"2147483647"

    @pytest.mark.parametrize("line, message", [
        (b"", "Empty message received."),
        (b"   ", "Empty message received."),
        (b"\t\t", "Empty message received."),
        (b"*foo", "Bad type character '*'."),
        (b"foo", "Bad type character 'f'."),
        (b"$", "Bad type character '$'."),
        (b"%watchdog", "Bad type character '%'."),
        (b"\xffwatchdog", "Bad type character '\\xff'."),
        (b"\\foo", "Bad type character"),
        (b" ?foo", "Bad type character ' '."),
        (b"\t!foo ok", "Bad type character '\\t'."),
        (b"\n", "Bad type character '\\n'."),
        (b"?", "Bad message name"),
        (b"? foo", "Bad message name"),
        (b"?1foo", "Bad message name"),
        (b"?-foo", "Bad message name"),
        (b"?foo_bar", "Bad message name"),
        (b"?foo.bar", "Bad message name"),
        (b"?caf\xc3\xa9", "Bad message name"),
        (b"?foo[", "Bad message name"),
        (b"?foo]", "Bad message name"),
        (b"?foo[]", "Bad message name"),
        (b"?foo[1", "Bad message name"),
        (b"?foo[a]", "Bad message name"),
        (b"?foo[-1]", "Bad message name"),
        (b"?foo[1][2]", "Bad message name"),
        (b"?[1]", "Bad message name"),
        (b"?foo\\_bar", "Bad message name"),
        (b"?bad\xff", "Bad message name (and possibly id) 'bad\\xff'."),
        (b"?foo a\\q", "Invalid escape sequence '\\\\q'."),
        (b"?foo a\\", "Invalid escape sequence"),
        (b"?foo \\", "Invalid escape sequence"),
        (b"?foo \\x41", "Invalid escape sequence"),
        (b"?foo \\N", "Invalid escape sequence"),
        (b"?foo \\ ", "Invalid escape sequence"),
        # Bytes that are not UTF-8 show as one escape each, as in the other error texts.
        (b"?foo ok \\\xff", "Invalid escape sequence '\\\\\\xff'."),
    ])
    def test_malformed_lines(self, line, message):
        with pytest.raises(KatcpSyntaxError) as excinfo:
            PARSER.parse(line)
        assert str(excinfo.value).startswith(message)

    @pytest.mark.parametrize("mid", [b"0", b"01", b"00012", b"2147483648",
                                     b"99999999999999999999999"])
    def test_ids_outside_the_spec_are_kept_as_sent(self, mid):
        # Accepted like katcp 0.9.3 (the spec's 1 .. 2**31-1 binds senders), on both
        # the first-seen and the cached-name path, and echoed unchanged.
        for line in [b"?unseen-%d[%s] a" % (len(mid), mid), b"?foo[%s] a" % mid]:
            msg = PARSER.parse(line)
            assert msg.mid == mid and msg.arguments == [b"a"]
            assert bytes(Message.reply_to_request(msg, "ok")).startswith(
                b"!%s[%s] ok" % (msg.name.encode(), mid))

    @pytest.mark.parametrize("line, message", [
        (b"?foo[]", "Bad message name"),
        (b"?foo[1][2]", "Bad message name"),
        (b"?foo[ 1]", "Bad message name"),
        (b"?foo[+1]", "Bad message name"),
        (b"?foo[\xd9\xa1]", "Bad message name"),  # a non-ASCII digit
        (b"?foo]", "Bad message name"),
        (b"?[1]", "Bad message name"),
    ])
    def test_bad_ids_after_the_name_is_known(self, line, message):
        # Names seen before take a faster path to the id; it must be just as strict.
        assert PARSER.parse(b"?foo[7]").name == "foo"
        assert PARSER.parse(b"?foo").name == "foo"
        with pytest.raises(KatcpSyntaxError) as excinfo:
            PARSER.parse(line)
        assert str(excinfo.value).startswith(message)
        assert PARSER.parse(b"?foo[2147483647] a").mid == b"2147483647"

    def test_non_bytes_line(self):
        with pytest.raises(KatcpTypeError):
            PARSER.parse(None)
        with pytest.raises(KatcpTypeError):
            PARSER.parse(12)

    def test_pathological_lines_are_fast(self):
        # Regexes must not backtrack catastrophically on long near-miss lines.
        for line in [b"?" + b"a" * 100000 + b"[", b"?a[" + b"1" * 100000,
                     b"?a " + b"\\" * 100001, b"?a" + b"-" * 100000 + b"!",
                     b"?a " + b" \t" * 100000 + b"\\q"]:
            with pytest.raises(KatcpSyntaxError):
                PARSER.parse(line)

    def test_random_lines_only_raise_syntax_errors(self):
        rng = random.Random(4242)
        pieces = [b"?", b"!", b"#", b"[", b"]", b" ", b"\t", b"\\", b"\\_", b"\\@", b"\\x",
                  b"\0", b"\xff", b"-", b"0", b"1", b"abc", b"\n", b"\r", b"\x0b",
                  b"99999999999"]
        parsed = 0
        for _ in range(20000):
            # Mostly well-started lines, so that the argument code is reached too.
            start = rng.choice([b"?a", b"!ab-1", b"#x[12]", b""])
            line = start + b"".join(rng.choice(pieces) for _ in range(rng.randrange(12)))
            try:
                msg = PARSER.parse(line)
            except KatcpSyntaxError:
                continue
            parsed += 1
            assert PARSER.parse(bytes(msg)) == msg
        assert parsed > 2000

    def test_long_valid_line(self):
        args = [b"x" * 10000, b"y\\_" * 1000]
        assert PARSER.parse(b"#big " + b" ".join(args)).arguments == [
            b"x" * 10000, b"y " * 1000]

    @pytest.mark.parametrize("msg", [
        Message.request("a"),
        Message.reply("a-b-c", "ok", mid=2 ** 31 - 1),
        Message.inform("x", b"", b"", b"\\@", b" "),
        Message.inform("x", bytes(range(256))),
        Message.request("x", True, 1, 2.5, "caf\u00e9", None, b"\\\\"),
    ])
    def test_round_trip(self, msg):
        assert PARSER.parse(bytes(msg)) == msg

    def test_parser_class_attributes(self):
        assert MessageParser.TYPE_SYMBOL_LOOKUP == {b"?": 0, b"!": 1, b"#": 2}
        assert MessageParser.ESCAPE_LOOKUP[b"_"] == b" "
        assert MessageParser.ESCAPE_LOOKUP[b"@"] == b""


# ---------------------------------------------------------------------------
# ProtocolFlags
# ---------------------------------------------------------------------------

class TestProtocolFlags:

    def test_constants(self):
        assert (ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS,
                ProtocolFlags.REQUEST_TIMEOUT_HINTS,
                ProtocolFlags.BULK_SET_SENSOR_SAMPLING) == (b"M", b"I", b"T", b"B")

    def test_attributes(self):
        flags = ProtocolFlags(5, 1, {"M", b"I"})
        assert (flags.major, flags.minor, flags.flags) == (5, 1, {b"M", b"I"})
        assert ProtocolFlags(5, 1, b"MI") == flags
        assert flags.multi_client and flags.message_ids
        assert not flags.request_timeout_hints and not flags.bulk_set_sensor_sampling
        all_flags = ProtocolFlags(5, 1, "BIMT")
        assert all_flags.request_timeout_hints and all_flags.bulk_set_sensor_sampling
        assert all_flags.supports("T") and not flags.supports("T")
        assert all_flags.supports(b"T") and not flags.supports(b"T")

    @pytest.mark.parametrize("major, minor, flag", [
        (4, 0, ProtocolFlags.MESSAGE_IDS), (5, 0, ProtocolFlags.REQUEST_TIMEOUT_HINTS),
        (5, 0, ProtocolFlags.BULK_SET_SENSOR_SAMPLING), (4, 9, "T")])
    def test_flag_needs_newer_version(self, major, minor, flag):
        with pytest.raises(ValueError, match="needs KATCP"):
            ProtocolFlags(major, minor, [flag])

    def test_str(self):
        assert str(ProtocolFlags(5, 1, "TIMB")) == "5.1-BIMT"
        assert str(ProtocolFlags(5, 0, ["M", "I"])) == "5.0-IM"
        assert str(ProtocolFlags(5, 0, set())) == "5.0"
        assert str(ProtocolFlags(4, 0, [ProtocolFlags.MULTI_CLIENT])) == "4.0-M"

    def test_repr(self):
        assert repr(ProtocolFlags(5, 0, "MI")) == "<ProtocolFlags 5.0-IM>"

    def test_equality(self):
        assert ProtocolFlags(5, 0, "IM") == ProtocolFlags(5, 0, ["M", "I"])
        assert ProtocolFlags(5, 0, "IM") != ProtocolFlags(5, 0, "M")
        assert ProtocolFlags(5, 0, "M") != ProtocolFlags(5, 1, "M")
        assert ProtocolFlags(5, 0, "M") != ProtocolFlags(4, 0, "M")
        assert ProtocolFlags(5, 0, "M") != "5.0-M"

    @pytest.mark.parametrize("text, expected", [
        (b"5.0-IM", (5, 0, {b"I", b"M"})),
        ("5.1-BIMT", (5, 1, {b"B", b"I", b"M", b"T"})),
        (b"4.0", (4, 0, set())),
        (b"5.0-", (5, 0, set())),
        (b"12.34-M", (12, 34, {b"M"})),
    ])
    def test_parse_version(self, text, expected):
        flags = ProtocolFlags.parse_version(text)
        assert (flags.major, flags.minor, flags.flags) == expected

    @pytest.mark.parametrize("text", [b"", b"five", b"5", b"5.x-M", b"v5.0"])
    def test_parse_bad_version(self, text):
        flags = ProtocolFlags.parse_version(text)
        assert (flags.major, flags.minor, flags.flags) == (None, None, set())
        assert flags == ProtocolFlags(None, None, ())
        assert str(flags) == "None.None"

    def test_unknown_flags_are_kept(self):
        flags = ProtocolFlags.parse_version(b"5.1-MIU")
        assert flags.flags == {b"M", b"I", b"U"}
        assert str(flags) == "5.1-IMU"


# ---------------------------------------------------------------------------
# Exceptions and constants
# ---------------------------------------------------------------------------

def test_exception_hierarchy():
    assert issubclass(KatcpSyntaxError, ValueError)
    assert issubclass(KatcpTypeError, TypeError)
    assert issubclass(KatcpClientError, KatcpError)
    assert issubclass(KatcpVersionError, KatcpError)
    assert issubclass(KatcpClientDisconnected, KatcpClientError)
    for exc in (FailReply, AsyncReply, KatcpDeviceError, KatcpError):
        assert issubclass(exc, Exception)
    assert str(FailReply("This request always fails.")) == "This request always fails."


def test_exceptions_exported_at_top_level():
    import katcp
    for name in ("Message", "MessageParser", "ProtocolFlags", "Sensor", "Reading",
                 "DeviceMetaclass", "KatcpError", "KatcpSyntaxError", "KatcpTypeError",
                 "KatcpVersionError", "KatcpClientError", "KatcpClientDisconnected",
                 "KatcpDeviceError", "FailReply", "AsyncReply"):
        assert getattr(katcp, name) is getattr(core, name)


def test_constants():
    assert core.SEC_TO_MS_FAC == 1000
    assert core.MS_TO_SEC_FAC == 1.0 / 1000
    assert core.DEFAULT_KATCP_MAJOR == 5
    assert core.SEC_TS_KATCP_MAJOR == 5
    assert core.FLOAT_TS_KATCP_MAJOR == 4
    assert core.MID_KATCP_MAJOR == 5
    assert core.VERSION_CONNECT_KATCP_MAJOR == 5
    assert core.INTERFACE_CHANGED_KATCP_MAJOR == 5


# ---------------------------------------------------------------------------
# Device metaclasses
# ---------------------------------------------------------------------------

def test_convert_method_name():
    assert convert_method_name("request_", "request_sensor_list") == "sensor-list"
    assert convert_method_name("request_", "sensor_list") == "sensor-list"
    assert convert_method_name("inform_", "inform_foo") == "foo"
    assert convert_method_name("reply_", "reply_a_b_c") == "a-b-c"


class TestDeviceMetaclass:

    def test_collects_handlers(self):
        class Base(metaclass=DeviceMetaclass):
            def request_sensor_list(self, req, msg):
                """List sensors."""

            def inform_build_state(self, msg):
                pass

            def reply_halt(self, msg):
                pass

            request_not_callable = 5

        class Child(Base):
            def request_sensor_list(self, req, msg):
                """Overridden."""

            def request_extra(self, req, msg):
                """Extra."""

        assert set(Base._request_handlers) == {"sensor-list"}
        assert Base._inform_handlers == {"build-state": Base.inform_build_state}
        assert Base._reply_handlers == {"halt": Base.reply_halt}
        assert Child._request_handlers == {"sensor-list": Child.request_sensor_list,
                                           "extra": Child.request_extra}
        assert Base._request_handlers["sensor-list"] is Base.request_sensor_list
        # Subclass dicts are separate objects.
        assert Base._request_handlers is not Child._request_handlers

    def test_request_handlers_need_docstrings(self):
        with pytest.raises(AssertionError, match="request_nodoc"):
            class NoDoc(metaclass=DeviceMetaclass):
                def request_nodoc(self, req, msg):
                    pass

    def test_rules_kept_by_assertion_errors_hold_under_python_O(self):
        # These refusals were assert statements: python -O stripped them, so an inform
        # went out as a request (its caller waiting for a reply that never came), a
        # handler without a docstring was taken, and a running inspecting client was
        # connected again.
        tests = ["tests/test_core.py::TestDeviceMetaclass::test_request_handlers_need_docstrings",
                 "tests/test_legacy_server.py::test_server_inform_handlers_need_docstrings",
                 "tests/test_client.py::test_inform_message_is_not_a_request",
                 "tests/test_inspecting_client.py::TestConnectionLifecycle::"
                 "test_a_second_connect_while_running_is_refused"]
        done = run_program(["-O", "-m", "pytest", "-q", "-p", "no:cacheprovider"] + tests,
                           timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "%d passed" % len(tests) in done.stdout

    def test_check_protocol_default(self):
        class Any(metaclass=DeviceMetaclass):
            pass
        assert Any.check_protocol(lambda: None) is True

    def test_server_metaclass_filters_by_protocol(self):
        def flagged(flags):
            def deco(fn):
                fn._has_katcp_protocol_flags = list(flags)
                return fn
            return deco

        def minimum(major, minor=0):
            def deco(fn):
                fn._minimum_katcp_version = (major, minor)
                return fn
            return deco

        class Server(metaclass=DeviceServerMetaclass):
            PROTOCOL_INFO = ProtocolFlags(5, 0, "M")

            @flagged("B")
            def request_bulk(self, req, msg):
                """Needs B."""

            @flagged("M")
            def request_multi(self, req, msg):
                """Needs M."""

            @minimum(5, 1)
            def request_new(self, req, msg):
                """Needs 5.1."""

            @minimum(5)
            def request_v5(self, req, msg):
                """Needs 5.0."""

            def request_plain(self, req, msg):
                """No needs."""

        assert set(Server._request_handlers) == {"multi", "v5", "plain"}

        class NewServer(Server):
            PROTOCOL_INFO = ProtocolFlags(5, 1, "MB")

        assert set(NewServer._request_handlers) == {"bulk", "multi", "new", "v5", "plain"}

    def test_server_metaclass_without_protocol_info(self):
        class Bare(metaclass=DeviceServerMetaclass):
            def request_x(self, req, msg):
                """X."""
        assert set(Bare._request_handlers) == {"x"}


# ---------------------------------------------------------------------------
# Synchronous helpers
# ---------------------------------------------------------------------------

def test_attr_dict():
    d = AttrDict(a=1)
    assert d.a == 1
    d.b = 2
    assert d["b"] == 2
    assert isinstance(d, dict)
    with pytest.raises(AttributeError):
        d.missing


def test_default_attr_dict():
    d = DefaultAttrDict(list, a=[1])
    assert d.a == [1]
    d.b.append(2)
    assert d["b"] == [2]
    d.c = 3
    assert d["c"] == 3
    nested = DefaultAttrDict(lambda: DefaultAttrDict(int))
    nested.x.y += 1
    assert nested["x"]["y"] == 1
    with pytest.raises(AttributeError):
        d.__missing_dunder__


def test_hashable_identity():
    class A:
        def meth(self):
            pass
    a, b = A(), A()
    assert hashable_identity(a.meth) == hashable_identity(a.meth)
    assert hashable_identity(a.meth) != hashable_identity(b.meth)
    assert hashable_identity(a) == id(a)
    assert hashable_identity("name") == "name"
    hash(hashable_identity(a.meth))


def test_steal_docstring_from():
    def source():
        """The doc."""

    @steal_docstring_from(source)
    def target():
        pass
    assert target.__doc__ == "The doc."


# ---------------------------------------------------------------------------
# Asynchronous helpers
# ---------------------------------------------------------------------------

class _ErrorRecords(logging.Handler):
    """Collects what `logger_name` logs at ERROR and above while in a ``with`` block."""

    def __init__(self, logger_name):
        super().__init__(logging.ERROR)
        self.logger = logging.getLogger(logger_name)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


class TestAsyncHelpers(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test(timeout=5)
    def test_async_event(self):
        event = AsyncEvent()
        assert not event.is_set() and not event.isSet()
        waiter = event.until_set()
        assert not waiter.done()
        self.io_loop.add_callback(event.set)
        result = yield waiter
        assert result is True and event.is_set()
        assert (yield event.until_set()) is True
        event.clear()
        assert not event.is_set()
        assert not event.until_set().done()

    @tornado.testing.gen_test(timeout=5)
    def test_async_event_set_from_another_thread(self):
        event = AsyncEvent()
        waiter = event.until_set()
        thread = threading.Thread(target=event.set)
        thread.start()
        assert (yield waiter) is True
        thread.join(5)

    def test_an_event_set_on_the_thread_of_its_waits_closed_loop_is_set_quietly(self):
        # As a client stopped after its loop was closed under it, by the thread that ran
        # the loop (a test case's cleanup): set() raised "Event loop is closed".
        event = AsyncEvent()
        loop = asyncio.new_event_loop()

        async def wait():
            waiter = event.until_set()
            waiter.add_done_callback(lambda _: None)  # what a coroutine awaiting it adds
            return waiter

        waiter = loop.run_until_complete(wait())
        loop.close()
        event.set()
        assert event.is_set() and not waiter.done()

    def test_async_event_waits_off_the_loop_on_the_loop_it_is_given(self):
        event = AsyncEvent()
        assert event.ioloop is None
        event.ioloop = self.io_loop
        assert event.ioloop is self.io_loop
        waiters = []
        thread = threading.Thread(target=lambda: waiters.append(event.until_set()))
        thread.start()
        thread.join(5)
        (waiter,) = waiters
        assert waiter.get_loop() is self.io_loop.asyncio_loop
        event.set()
        assert self.io_loop.run_sync(lambda: waiter, timeout=5) is True

    def _set_while_a_thread_waits(self, timeout):
        """What ``wait_with_ioloop(timeout)`` in another thread returns for an event set
        on the loop meanwhile."""
        event = AsyncEvent()
        finished = self.io_loop.asyncio_loop.create_future()

        def waiter():
            result = event.wait_with_ioloop(self.io_loop, timeout=timeout)
            self.io_loop.add_callback(finished.set_result, result)

        thread = threading.Thread(target=waiter)
        thread.start()
        self.io_loop.add_callback(event.set)
        result = self.io_loop.run_sync(lambda: finished, timeout=5)
        thread.join(5)
        assert not thread.is_alive()
        return result

    def test_async_event_wait_with_ioloop(self):
        assert self._set_while_a_thread_waits(5) is True
        unset = AsyncEvent()
        assert unset.wait_with_ioloop(self.io_loop, timeout=0.01) is False

    @tornado.testing.gen_test(timeout=5)
    def test_async_callback_event(self):
        calls = []
        event = AsyncCallbackEvent(calls.append)
        event.set()
        assert (yield event.until_set()) is True
        event.clear()
        assert calls == [True, False]
        AsyncCallbackEvent().set()  # the default callback accepts the flag

    def test_async_callback_event_refuses_an_async_def_callback(self):
        # set() and clear() call it and move on: its coroutines would never run.
        async def callback(flag):
            pass

        with pytest.raises(TypeError, match="callback .* is an async function"):
            AsyncCallbackEvent(callback)

    @tornado.testing.gen_test(timeout=5)
    def test_async_state(self):
        state = AsyncState(("disconnected", "syncing", "synced"))
        assert state.state == "disconnected"
        assert state.valid_states == ("disconnected", "syncing", "synced")
        assert (yield state.until_state("disconnected")) is True
        waiter = state.until_state("synced")
        any_waiter = state.until_state_in("syncing", "synced")
        state.set_state("syncing")
        assert (yield any_waiter) is True
        assert not waiter.done()
        state.set_state("synced")
        assert (yield waiter) is True
        assert not state.until_state("disconnected").done()
        with pytest.raises(ValueError):
            state.set_state("bogus")
        with pytest.raises(ValueError):
            state.until_state("bogus")
        with pytest.raises(tornado.gen.TimeoutError):
            yield state.until_state("disconnected", timeout=0.01)
        with pytest.raises(tornado.gen.TimeoutError):
            yield state.until_state_in("disconnected", "syncing", timeout=0.01)

    def test_async_state_initial(self):
        assert AsyncState("abc", "b").state == "b"
        with pytest.raises(ValueError):
            AsyncState("abc", "z")

    @tornado.testing.gen_test(timeout=5)
    def test_until_later(self):
        t0 = self.io_loop.time()
        result = yield until_later(0.05)
        assert result is None
        assert self.io_loop.time() - t0 >= 0.049

    @tornado.testing.gen_test(timeout=5)
    def test_until_any(self):
        f1, f2 = Future(), Future()
        any_f = until_any(f1, f2)
        f2.set_result("second")
        assert (yield any_f) == "second"
        f3, f4 = Future(), Future()
        any_f = until_any(f3, f4)
        f3.set_exception(RuntimeError("boom"))
        with pytest.raises(RuntimeError, match="boom"):
            yield any_f
        with pytest.raises(tornado.gen.TimeoutError):
            yield until_any(Future(), timeout=0.01)

    @tornado.testing.gen_test(timeout=5)
    def test_until_some(self):
        fs = [Future() for _ in range(3)]
        some = until_some(*fs, done_at_least=2)
        fs[2].set_result("c")
        fs[0].set_result("a")
        assert sorted((yield some)) == [(0, "a"), (2, "c")]
        kw = {"x": Future(), "y": Future()}
        all_done = until_some(**kw)
        kw["x"].set_result(1)
        kw["y"].set_result(2)
        assert sorted((yield all_done)) == [("x", 1), ("y", 2)]
        with pytest.raises(tornado.gen.TimeoutError):
            yield until_some(Future(), Future(), done_at_least=1, timeout=0.01)

    @tornado.testing.gen_test(timeout=10)
    def test_until_any_and_until_some_follow_futures_of_other_threads(self):
        # Debug mode refuses a loop future set from another thread, as asyncio's rules do.
        self.io_loop.asyncio_loop.set_debug(True)
        for wait in (lambda cf: until_any(cf), lambda cf: until_some(cf, done_at_least=1)):
            resolvable, cf = threading.Event(), concurrent.futures.Future()

            def resolve():
                resolvable.wait(5)
                cf.set_result("from a thread")

            thread = threading.Thread(target=resolve)
            thread.start()
            waiting = wait(cf)
            # Released once something waits on the result: the thread then resolves it
            # under the loop's debug checks.
            bounded = tornado.gen.with_timeout(self.io_loop.time() + 5, waiting)
            resolvable.set()
            result = yield bounded
            assert result in ("from a thread", [(0, "from a thread")])
            thread.join(5)
        done = concurrent.futures.Future()
        done.set_result(1)
        # One done already: decided on return, as for loop futures.
        assert until_any(done, Future()).result() == 1

    @tornado.testing.gen_test(timeout=5)
    def test_until_any_of_futures_decided_in_one_turn_is_the_first_quietly(self):
        errors = _ErrorRecords("asyncio")
        with errors:
            f1, f2 = Future(), Future()
            first = until_any(f1, f2)
            f1.set_result("first")
            f2.set_result("second")  # its callback is already due when f1's runs
            assert (yield first) == "first"
            f3 = Future()
            bounded = future_timeout_manager(5)(f3)
            f3.set_result("third")
            bounded.cancel()
            yield tornado.gen.moment
        assert errors.records == []

    @tornado.testing.gen_test(timeout=5)
    def test_a_cancelled_future_cancels_the_waits_on_it(self):
        f1, f2 = Future(), Future()
        waits = [until_any(f1, f2), future_timeout_manager(5)(f1),
                 until_some(f1, f2, done_at_least=1)]
        f1.cancel()
        done, _ = yield asyncio.wait(waits, timeout=2)
        assert len(done) == 3 and all(wait.cancelled() for wait in waits)

    @tornado.testing.gen_test(timeout=5)
    def test_a_decided_wait_leaves_no_timer_holding_it(self):
        f1 = Future()
        wait = until_any(f1, timeout=3600)
        some = until_some(f1, timeout=3600)
        refs = [weakref.ref(wait), weakref.ref(some)]
        f1.set_result(1)
        assert (yield wait) == 1 and (yield some) == [(0, 1)]
        del wait, some
        yield tornado.gen.moment
        gc.collect()
        assert [ref() for ref in refs] == [None, None]

    @tornado.testing.gen_test(timeout=5)
    def test_a_given_up_event_wait_is_forgotten(self):
        event = AsyncEvent()
        waits = [event.until_set(), event.until_set()]
        refs = [weakref.ref(wait) for wait in waits]
        waits[0].cancel()
        with pytest.raises(asyncio.TimeoutError):
            yield asyncio.wait_for(waits[1], 0.001)  # which cancels it
        del waits
        yield tornado.gen.moment
        gc.collect()
        assert [ref() for ref in refs] == [None, None]

    @tornado.testing.gen_test(timeout=5)
    def test_a_wait_bounded_by_no_time_has_no_timeout(self):
        # As in katcp 0.9: a timeout of 0 is none.
        event = AsyncEvent()
        state = AsyncState(("a", "b"))
        waits = [event.until_set(timeout=0), state.until_state("b", timeout=0),
                 state.until_state_in("b", timeout=0), until_any(event.until_set(), timeout=0),
                 until_some(event.until_set(), timeout=0)]
        # A timer of no time would have fired by now.
        yield until_later(0)
        yield tornado.gen.moment
        assert not any(wait.done() for wait in waits)
        event.set()
        state.set_state("b")
        assert (yield waits[:4]) == [True] * 4
        assert (yield waits[4]) == [(0, True)]

    @tornado.testing.gen_test(timeout=5)
    def test_an_endless_timeout_waits_for_ever(self):
        # As until_any always did: no OverflowError, and a state that holds already
        # resolves the wait at once.
        for endless in (float("inf"), 1e300):
            event = AsyncEvent()
            state = AsyncState(("a", "b"))
            assert (yield state.until_state("a", timeout=endless)) is True
            waits = [event.until_set(timeout=endless), state.until_state("b", timeout=endless),
                     state.until_state_in("b", timeout=endless),
                     until_any(event.until_set(), timeout=endless),
                     until_some(event.until_set(), timeout=endless),
                     future_timeout_manager(endless)(event.until_set())]
            yield until_later(0)
            yield tornado.gen.moment
            assert not any(wait.done() for wait in waits)
            event.set()
            state.set_state("b")
            assert (yield waits[:4]) == [True] * 4
            assert (yield waits[4:]) == [[(0, True)], True]

    @tornado.testing.gen_test(timeout=5)
    def test_a_nan_timeout_times_out_at_once(self):
        # The rule until_any always had: a NaN deadline is already past.
        event = AsyncEvent()
        state = AsyncState(("a", "b"))
        nan = float("nan")
        waits = [event.until_set(timeout=nan), state.until_state("b", timeout=nan),
                 state.until_state_in("b", timeout=nan),
                 until_any(event.until_set(), timeout=nan),
                 until_some(event.until_set(), timeout=nan),
                 future_timeout_manager(nan)(event.until_set())]
        for wait in waits:
            with pytest.raises(tornado.gen.TimeoutError):
                yield wait
        assert not event.is_set()

    def test_wait_with_ioloop_takes_endless_and_nan_timeouts(self):
        # NaN: no wait at all.
        assert AsyncEvent().wait_with_ioloop(self.io_loop, timeout=float("nan")) is False
        assert self._set_while_a_thread_waits(float("inf")) is True

    @tornado.testing.gen_test(timeout=5)
    def test_an_already_decided_future_is_passed_through_the_timeout_manager(self):
        # As tornado.gen.with_timeout: decided at once, not on a later loop turn.
        done = Future()
        done.set_result(5)
        waited = future_timeout_manager(5)(done)
        assert waited.done() and waited.result() == 5
        yield tornado.gen.moment

    @tornado.testing.gen_test(timeout=5)
    def test_until_some_counts_as_katcp_0_9_did(self):
        f1, f2 = Future(), Future()
        # More than there are: all of them.
        every = until_some(f1, f2, done_at_least=5)
        # None at all: at once.
        none = until_some(Future(), done_at_least=0)
        assert none.done() and none.result() == []
        f2.set_result("b")
        f1.set_result("a")
        assert (yield every) == [(1, "b"), (0, "a")]
        # A failure before enough are done fails the wait.
        f3, f4 = Future(), Future()
        failing = until_some(f3, f4, done_at_least=2)
        f4.set_exception(RuntimeError("boom"))
        with pytest.raises(RuntimeError, match="boom"):
            yield failing
        f3.cancel()
        # Positions or names, not both.
        with pytest.raises(ValueError):
            yield until_some(Future(), x=Future())

    @tornado.testing.gen_test(timeout=5)
    def test_future_timeout_manager_shares_one_deadline_between_waits(self):
        maybe_timeout = future_timeout_manager(0.1)
        yield maybe_timeout(until_later(0.06))
        # Had each wait its own 0.1 s, this one would be done before it timed out.
        with pytest.raises(tornado.gen.TimeoutError):
            yield maybe_timeout(until_later(0.06))

    @tornado.testing.gen_test(timeout=5)
    def test_until_any_leaves_nothing_on_the_futures_it_did_not_take(self):
        shared = Future()

        @tornado.gen.coroutine
        def take_the_other():
            other = Future()
            waits = [until_any(shared, other), until_some(shared, other, done_at_least=1)]
            other.set_result(1)
            assert (yield waits) == [1, [(1, 1)]]
            yield tornado.gen.moment

        assert (yield waits_left_by(take_the_other)) <= 0
        shared.cancel()

    @tornado.testing.gen_test(timeout=5)
    def test_until_all_of_own_waits_cancels_those_left_once_it_is_over(self):
        done, pending = Future(), Future()
        done.set_result(1)
        with pytest.raises(tornado.gen.TimeoutError):
            yield _until_all(done, pending, timeout=0.001)
        yield tornado.gen.moment
        assert pending.cancelled() and not done.cancelled()
        # Given up by its caller.
        first, second = Future(), Future()
        _until_all(first, second).cancel()
        yield tornado.gen.moment
        assert first.cancelled() and second.cancelled()
        # Failed as one of them failed.
        failing, other = Future(), Future()
        waiting = _until_all(failing, other)
        failing.set_exception(ValueError("boom"))
        with pytest.raises(ValueError, match="boom"):
            yield waiting
        yield tornado.gen.moment
        assert other.cancelled()
        # Decided: as until_some, for all of them.
        first, second = Future(), Future()
        waiting = _until_all(first, second, timeout=5)
        second.set_result("b")
        first.set_result("a")
        assert (yield waiting) == [(1, "b"), (0, "a")]

    @tornado.testing.gen_test(timeout=5)
    def test_give_up_cancels_waits_except_on_a_closed_loop(self):
        first, second = Future(), Future()
        first.add_done_callback(lambda _: None)
        give_up(first, None, second)
        assert first.cancelled() and second.cancelled()
        # A coroutine closed by the garbage collector after its loop (a console tool
        # whose output failed): cancelling would call the closed loop and raise in the
        # collector ("Exception ignored"); nothing of that loop runs again.
        loop = asyncio.new_event_loop()
        left = loop.create_future()
        left.add_done_callback(lambda _: None)
        loop.close()
        give_up(left)
        assert not left.done()

    @tornado.testing.gen_test(timeout=5)
    def test_windowed_keeps_a_window_of_pending_starts_and_their_order(self):
        futures = [Future() for _ in range(5)]
        started = []

        def start(index):
            started.append(index)
            return futures[index] if index != 2 else "plain"

        @tornado.gen.coroutine
        def settled():
            # What is ready runs within a few loop turns (no timer is involved).
            for _ in range(10):
                yield tornado.gen.moment

        waiting = tornado.gen.convert_yielded(
            _windowed([functools.partial(start, i) for i in range(5)], 2))
        yield settled()
        assert started == [0, 1]
        futures[1].set_result("b")
        yield settled()
        # The freed place goes to the next ones: a plain value takes none for long.
        assert started == [0, 1, 2, 3]
        futures[3].set_exception(ValueError("boom"))
        futures[0].set_result("a")
        yield settled()
        assert started == [0, 1, 2, 3, 4] and not waiting.done()
        # A failure is raised once the others are done.
        futures[4].set_result("e")
        with pytest.raises(ValueError, match="boom"):
            yield waiting
        waiting = _windowed([functools.partial(start, 2), lambda: futures[1]], 8)
        assert (yield waiting) == ["plain", "b"]
        assert (yield _windowed([], 8)) == []

    @tornado.testing.gen_test(timeout=10)
    def test_waits_given_up_leave_nothing_behind(self):
        event = AsyncEvent()
        state = AsyncState(("a", "b", "c"))

        @tornado.gen.coroutine
        def give_up():
            # Each way a wait can end without what it waited for: a poll.
            with pytest.raises(tornado.gen.TimeoutError):
                yield event.until_set(timeout=0.001)
            # Waits given up without a timeout are cancelled, as until_set() says.
            waits = [event.until_set(), state.until_state_in("b", "c")]
            yield until_any(*waits, until_later(0))
            for wait in waits:
                wait.cancel()
            waits = [event.until_set(), state.until_state("b")]
            with pytest.raises(tornado.gen.TimeoutError):
                yield until_some(*waits, timeout=0.001)
            for wait in waits:
                wait.cancel()
            with pytest.raises(tornado.gen.TimeoutError):
                yield state.until_state_in("b", "c", timeout=0.001)
            wait = state.until_state("c")
            with pytest.raises(tornado.gen.TimeoutError):
                yield future_timeout_manager(0.001)(wait)
            wait.cancel()
            wait = event.until_set()
            until_any(wait, timeout=5).cancel()
            wait.cancel()
            # What the given-up waits leave to do runs on the next loop turn.
            yield tornado.gen.moment

        assert (yield waits_left_by(give_up, 50)) <= 0
        # The waits still work.
        waits = [event.until_set(), event.until_set(timeout=5), state.until_state_in("b", "c"),
                 state.until_state("c", timeout=5), until_any(event.until_set())]
        event.set()
        state.set_state("c")
        assert (yield waits) == [True] * 5

    @tornado.testing.gen_test(timeout=5)
    def test_cancelling_one_wait_leaves_the_others_waiting(self):
        event = AsyncEvent()
        state = AsyncState(("a", "b"))
        waits = [event.until_set(), state.until_state("b"), state.until_state_in("b")]
        for cancelled in (event.until_set(), state.until_state("b"),
                          state.until_state_in("b")):
            cancelled.cancel()
        with pytest.raises(asyncio.TimeoutError):
            yield asyncio.wait_for(asyncio.shield(event.until_set()), 0.001)
        with pytest.raises(asyncio.TimeoutError):
            yield asyncio.wait_for(event.until_set(), 0.001)
        event.set()
        state.set_state("b")
        assert (yield waits) == [True] * 3

    @tornado.testing.gen_test(timeout=5)
    def test_cancelled_wait_is_not_handed_out_again(self):
        event = AsyncEvent()
        event.until_set().cancel()
        waiter = event.until_set()
        assert not waiter.cancelled()
        self.io_loop.add_callback(event.set)
        assert (yield waiter) is True

    def test_wait_with_ioloop_timeouts_leave_nothing_behind(self):
        event = AsyncEvent()
        assert not event.wait_with_ioloop(self.io_loop, timeout=0)

        def poll(times):
            done = concurrent.futures.Future()

            def polls():
                try:
                    done.set_result([event.wait_with_ioloop(self.io_loop, timeout=0.001)
                                     for _ in range(times)])
                except Exception as exc:
                    done.set_exception(exc)

            thread = threading.Thread(target=polls)
            thread.start()
            # The loop runs until the polls are over and their last timers have fired.
            outcome, _ = self.io_loop.run_sync(
                lambda: tornado.gen.multi([asyncio.wrap_future(done), until_later(0.05)]),
                timeout=5)
            thread.join(5)
            assert outcome == [False] * times

        poll(1)
        before = pending_waits()
        poll(30)
        assert pending_waits() <= before

    @tornado.testing.gen_test(timeout=5)
    def test_future_timeout_manager(self):
        maybe_timeout = future_timeout_manager(0.2)
        assert 0 < maybe_timeout.remaining() <= 0.2
        done = Future()
        done.set_result(5)
        assert (yield maybe_timeout(done)) == 5
        with pytest.raises(tornado.gen.TimeoutError):
            yield maybe_timeout(Future())
        assert maybe_timeout.remaining() <= 0
        no_timeout = future_timeout_manager()
        assert no_timeout.remaining() is None
        pending = Future()
        assert no_timeout(pending) is pending

    def test_latency_timer(self):
        now = [100.0]

        class Clock:
            def time(self):
                return now[0]

        timer = LatencyTimer(0.5, ioloop=Clock())
        done, pending = Future(), Future()
        done.set_result(None)
        assert timer.check_future(done) is True
        assert not timer.time_to_yield()
        now[0] += 0.6
        assert timer.check_future(done) is True
        assert timer.time_to_yield()
        # A new streak starts after yielding.
        assert timer.check_future(done) and not timer.time_to_yield()
        now[0] += 0.6
        assert timer.check_future(pending) is False
        assert not timer.time_to_yield()
        pending.cancel()

    @tornado.testing.gen_test(timeout=5)
    def test_log_future_exceptions(self):
        log = logging.getLogger("test.core.lfe")
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        log.addHandler(handler)
        try:
            for exc in (RuntimeError("bad"), KeyError("ignored")):
                f = Future()
                log_future_exceptions(log, f, ignore=(KeyError,))
                f.set_exception(exc)
                with pytest.raises(type(exc)):
                    yield f
            ok = Future()
            log_future_exceptions(log, ok)
            ok.set_result(1)
            yield ok
            yield tornado.gen.moment
        finally:
            log.removeHandler(handler)
        assert len(records) == 1
        assert records[0].exc_info[1].args == ("bad",)

    @tornado.testing.gen_test(timeout=5)
    def test_log_coroutine_exceptions(self):
        @log_coroutine_exceptions
        async def failing():
            raise RuntimeError("from coroutine")

        @log_coroutine_exceptions
        @tornado.gen.coroutine
        def fine():
            return 3

        with self.assertLogs("katcp.core", logging.ERROR) as logs:
            with pytest.raises(RuntimeError):
                yield failing()
            yield tornado.gen.moment
        assert "from coroutine" in "\n".join(logs.output)
        assert (yield fine()) == 3
        assert failing.__name__ == "failing"
