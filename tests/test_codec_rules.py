"""The message codec's less travelled paths: first-seen names, odd argument types, ids.

The codec caches names it has validated, so most tests only exercise the cached path;
these use names never seen before in the process. Written against the mutants that
survived the older tests (see docs/mutation.rst).
"""

import decimal
import enum
import fractions
import itertools
import numbers
import os
import struct

import pytest

from katcp.core import KatcpSyntaxError, KatcpTypeError, Message, MessageParser, ProtocolFlags
from katcp.server import DeviceServer
from katcp.wire import message
from katcp.wire.message import (_ESCAPES, _UNESCAPED_SPECIALS, escape_argument, format_argument,
                                needs_byte_checks, readable_message)
from katcp.wire.text import QUOTED_LINE_LIMIT, quoted_line, readable, show_repr

from server_line_client import LineClient

_counter = itertools.count()
MAX_MID = 2 ** 31 - 1


def fresh_name():
    """A message name this process has not used before."""
    return "fresh-%d-%d-x" % (os.getpid(), next(_counter))


def _error(fn, *args, **kwargs):
    with pytest.raises(KatcpSyntaxError) as error:
        fn(*args, **kwargs)
    return str(error.value)


class TestNames:

    def test_first_seen_names_are_checked_and_kept(self):
        name = fresh_name()
        assert Message.request(name).name == name
        assert Message.request(name).name == name
        name = fresh_name()
        assert Message.inform(name.encode("ascii")).name == name

    def test_each_type_and_name_has_its_own_wire_head_and_the_kept_ones_are_bounded(
            self, monkeypatch):
        # Message.__bytes__ keeps the head (b"!name") of each type and name it sent.
        name = fresh_name()
        for _ in range(2):
            assert bytes(Message.reply(name, "ok", mid=3)) == b"!%s[3] ok" % name.encode()
            assert bytes(Message.inform(name, "ok")) == b"#%s ok" % name.encode()
            assert bytes(Message.request(name, "a b")) == b"?%s a\\_b" % name.encode()
        renamed = Message.reply(name, "ok")
        renamed.name = fresh_name()
        assert bytes(renamed) == b"!%s ok" % renamed.name.encode()
        monkeypatch.setattr(message, "_NAME_CACHE_MAX", 0)
        unkept = fresh_name()
        assert bytes(Message.reply(unkept, "ok")) == b"!%s ok" % unkept.encode()
        assert all(unkept not in heads for heads in message._wire_heads)

    @pytest.mark.parametrize("msg", [
        Message.request("x"), Message.request("x", mid=4), Message.reply("x", "ok"),
        Message.reply("x", "ok", mid=4), Message.reply("x", "fail", "a b", mid=4),
        Message.inform("x", "a", "b"), Message.inform("x", "", b"\\", "\n", mid=9),
        Message.reply("x", "ok1", mid=4), Message.reply("x", "")])
    def test_a_messages_line_is_its_wire_form_and_a_newline(self, msg):
        # What senders write (Message._line(), the newline joined in) on every path of
        # the wire form: none, one or more arguments, plain or escaped, with an id or not.
        assert msg._line() == bytes(msg) + b"\n"
        assert bytes(msg).count(b"\n") == 0

    def test_the_two_functions_of_the_wire_form_are_named_as_the_methods_they_are(self):
        # One body makes both (message._wire_form()): tracebacks, profiles and the API
        # docs tell them apart by these names.
        assert [(f.__name__, f.__qualname__) for f in (Message.__bytes__, Message._line)] == [
            ("__bytes__", "Message.__bytes__"), ("_line", "Message._line")]

    @pytest.mark.parametrize("mtype, head", [(1.0, b"!"), (True, b"!"), (0.0, b"?"),
                                             (2.0, b"#")])
    def test_a_type_equal_to_a_constant_but_of_another_class_is_sent(self, mtype, head):
        # The constructor takes any type equal to a constant, as 0.9.3's did (its check
        # and its __str__ looked the type up in dicts), so the message can be sent.
        msg = Message(mtype, "ping", ["a"])
        assert bytes(msg) == head + b"ping a"
        assert msg.mtype == mtype and type(msg.mtype) is int

    @pytest.mark.parametrize("bad", ["1abc", "a b", "a_b", "", "-a"])
    def test_bad_names_are_refused(self, bad):
        assert _error(Message.request, bad) == "Bad message name %r." % (bad,)

    def test_non_ascii_byte_names_are_refused(self):
        # Names are ASCII: every other byte shows as a replacement character.
        assert _error(Message.request, b"caf\xc3\xa9") == "Bad message name 'caf\ufffd\ufffd'."

    def test_names_must_be_text(self):
        assert _error(Message.request, 5) == "Message name must be a str, not 5."

    def test_message_type_is_checked(self):
        assert _error(Message, 7, "x") == "Invalid message type 7."


class TestIds:

    @pytest.mark.parametrize("mid, wire", [
        (5, b"5"), ("17", b"17"), (b"42", b"42"), (b"007", b"007"), (MAX_MID, b"%d" % MAX_MID),
        (0, b"0"), (MAX_MID + 1, b"%d" % (MAX_MID + 1))])
    def test_ids_are_bytes_of_digits_as_given(self, mid, wire):
        assert Message.request("x", mid=mid).mid == wire

    @pytest.mark.parametrize("mid, message", [
        (True, "Message id must be int, str or bytes, not True."),
        (1.5, "Message id must be int, str or bytes, not 1.5."),
        ("x1", "Message id b'x1' is not a decimal integer."),
        ("\u00e91", "Message id b'?1' is not a decimal integer."),
        (b"-1", "Message id b'-1' is not a decimal integer."),
    ])
    def test_bad_ids_are_refused(self, mid, message):
        assert _error(Message.request, "x", mid=mid) == message

    def test_a_reply_copies_an_id_set_by_hand_in_canonical_form(self):
        request = Message.request("x")
        request.mid = 7
        assert Message.reply_to_request(request, "ok").mid == b"7"
        request.mid = b"8"
        assert Message.reply_inform(request, "a").mid == b"8"
        request.mid = None
        assert Message.reply_to_request(request, "ok").mid is None


class _Colour(enum.IntEnum):
    RED = 3


class _Text(str):
    pass


class _Float(float):
    pass


class _RoundedFloat(float):
    """A float whose str() rounds: sent as repr() of its value, as 0.9.3 sent any float."""

    def __str__(self):
        return "%.1f" % self


@numbers.Real.register
class _Float32:
    """What numpy.float32 is to katcp: a numbers.Real, no float, whose str() is short."""

    def __init__(self, value):
        self._value = struct.unpack("f", struct.pack("f", value))[0]
        self._text = repr(value)

    def __float__(self):
        return self._value

    def __str__(self):
        return self._text


class _TemperatureDevice(DeviceServer):
    """A device whose measurements are numpy-style float32 numbers."""

    VERSION_INFO = ("codec-test", 1, 0)
    BUILD_INFO = ("codec-test", 1, 0, "")

    def setup_sensors(self):
        """No sensors."""

    def request_get_temp(self, req, msg):
        """Inform of the last temperature and reply with this one."""
        req.inform(_Float32(0.1))
        return req.make_reply("ok", _Float32(21.3))


class TestArguments:

    @pytest.mark.parametrize("arg, wire", [
        (_Colour.RED, b"3"), (_Text("t"), b"t"), (_Float(0.5), b"0.5"),
        (_RoundedFloat(1.25), b"1.25"),
        (fractions.Fraction(1, 4), b"0.25"), (fractions.Fraction(1, 3), b"0.3333333333333333"),
        (_Float32(21.3), b"21.3"), (_Float32(0.1), b"0.1"), (decimal.Decimal("0.1"), b"0.1"),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"mv"), b"mv"), (None, b""), (True, b"1"), (False, b"0"),
        (-3, b"-3"), (2.5, b"2.5"), ("caf\u00e9", "caf\u00e9".encode("utf-8"))])
    def test_argument_types(self, arg, wire):
        assert Message.request("x", arg).arguments == [wire]
        assert format_argument(arg) == wire

    def test_a_reply_with_a_float32_sends_its_own_short_text(self):
        # As 0.9.3 sent numbers of types it did not know: their str(), not the float64
        # expansion of their value (21.299999237060547).
        server = _TemperatureDevice("127.0.0.1", 0)
        assert server.start(timeout=10)
        try:
            with LineClient(server.bind_address[1], timeout=10) as client:
                client.greeting(3)
                assert client.request("?get-temp") == (
                    ["#get-temp 0.1"], "!get-temp ok 21.3")
        finally:
            server.stop().result(10)
            server.join(timeout=10)

    def test_text_that_cannot_be_encoded_takes_the_slow_path_for_every_argument(self):
        msg = Message.request("x", b"raw", "\udcff", 3, True, False, 0.5, None, "ok")
        assert msg.arguments[0] == b"raw"
        assert isinstance(msg.arguments[1], bytes)
        assert msg.arguments[2:] == [b"3", b"1", b"0", b"0.5", b"", b"ok"]
        assert format_argument("\udcff") == msg.arguments[1]

    def test_fast_path_and_escaping_agree(self):
        assert bytes(Message.request("x", "a", "b")) == b"?x a b"
        assert bytes(Message.request("x", "a b", "")) == b"?x a\\_b \\@"
        assert bytes(Message.request("x", "a\tb")) == b"?x a\\tb"
        assert bytes(Message.request("x", "\\", "\x1b", "\0")) == b"?x \\\\ \\e \\0"
        assert bytes(Message.request("x", "a\nb", "c\rd")) == b"?x a\\nb c\\rd"

    def test_repr_shows_the_id_and_shortens_long_arguments(self):
        msg = Message.inform("x", b"a" * 1000, b"b" * 1001, mid=4)
        assert repr(msg) == "<Message inform x[4] (%r, %r)>" % (
            b"a" * 1000, b"b" * 1000 + b"...")

    def test_str_shows_undecodable_bytes_escaped(self):
        assert str(Message.inform("x", b"\xff")) == "#x \\xff"

    @pytest.mark.parametrize("make, symbol", [
        (Message.request, "?"), (Message.reply, "!"), (Message.inform, "#")])
    def test_readable_form_shows_arguments_as_written(self, make, symbol):
        msg = make("say", "two words", b"tab\there", 3, b"\xff", mid=7)
        assert readable_message(msg) == symbol + "say two words tab\there 3 \ufffd"
        assert readable_message(make("halt")) == symbol + "halt"


@pytest.mark.parametrize("raw, shown", [
    (b"*", "'*'"), (b"'", '"\'"'), (b"\t", "'\\t'"), (b"\\q", "'\\\\q'"),
    (b"caf\xc3\xa9", "'caf\u00e9'"), (b"\xff", "'\\xff'"), (b"\\\xff", "'\\\\\\xff'"),
    (b"\\\\\xfe", "'\\\\\\\\\\xfe'"), (b"\\udcff", "'\\\\udcff'"),
    (bytearray(b"a\x80"), "'a\\x80'"), ("text", "'text'")])
def test_error_texts_quote_bytes_as_repr_with_one_escape_per_undecodable_byte(raw, shown):
    assert show_repr(raw) == shown


def test_a_bad_line_is_quoted_whole_up_to_the_limit_and_cut_beyond_it():
    assert QUOTED_LINE_LIMIT == 200
    assert quoted_line(b"x" * 200) == repr(b"x" * 200)
    assert quoted_line(b"x" * 201) == repr(b"x" * 200) + "... (201 bytes)"


def test_readable_text_of_any_bytes_replaces_what_is_not_utf8():
    for raw in (b"caf\xc3\xa9 \xff", bytearray(b"caf\xc3\xa9 \xff")):
        assert readable(raw) == "caf\u00e9 \ufffd"
    assert readable(3) == "3"


class _ParserOfItsOwn(MessageParser):

    def __init__(self):
        pass


class TestParser:

    def setup_method(self):
        self.parser = MessageParser()

    def test_first_seen_names_with_and_without_ids(self):
        name = fresh_name()
        msg = self.parser.parse(b"?" + name.encode("ascii") + b"[12] a")
        assert (msg.name, msg.mid, msg.arguments) == (name, b"12", [b"a"])
        plain = fresh_name()
        msg = self.parser.parse(b"!" + plain.encode("ascii") + b" b")
        assert (msg.name, msg.mid, msg.arguments) == (plain, None, [b"b"])
        # A name that is a prefix of a cached one is a name of its own.
        shorter = plain[:-1]
        msg = self.parser.parse(b"!" + shorter.encode("ascii") + b" c")
        assert (msg.name, msg.mid, msg.arguments) == (shorter, None, [b"c"])
        other = fresh_name()
        msg = self.parser.parse(b"#" + other.encode("ascii"))
        assert (msg.mtype, msg.name, msg.mid) == (Message.INFORM, other, None)

    def test_a_reply_to_a_parsed_request_of_a_new_name_has_its_name(self):
        # The parser does not check names as the constructor does: the reply checks it.
        name = fresh_name()
        request = self.parser.parse(b"?%s[3] x" % (name.encode("ascii"),))
        reply = Message.reply_to_request(request, "ok")
        assert (reply.name, reply.mid) == (name, b"3")
        assert bytes(reply) == b"!%s[3] ok" % (name.encode("ascii"),)

    @pytest.mark.parametrize("mid", [b"1", b"2147483647", b"999999999"])
    def test_largest_ids_are_accepted(self, mid):
        for name in ("watchdog", fresh_name()):
            msg = self.parser.parse(b"?%s[%s]" % (name.encode("ascii"), mid))
            assert msg.mid == mid

    @pytest.mark.parametrize("mid", [b"0", b"01", b"2147483648", b"12345678901"])
    def test_ids_outside_the_spec_are_kept_as_sent(self, mid):
        # Accept liberally, as katcp 0.9.3 does: the reply echoes the id as it came.
        for name in ("watchdog", fresh_name()):
            assert self.parser.parse(b"?%s[%s]" % (name.encode("ascii"), mid)).mid == mid

    @pytest.mark.parametrize("line, message", [
        (b"?1abc", "Bad message name (and possibly id) '1abc'."),
        (b"?a[x]", "Bad message name (and possibly id) 'a[x]'."),
        (b"?a\xe9", "Bad message name (and possibly id) 'a\\xe9'."),
        ("?caf\u00e9".encode("utf-8"), "Bad message name (and possibly id) 'caf\u00e9'."),
        (b"X", "Bad type character 'X'."),
        (b"XX ok", "Bad type character 'X'."),
        (b"\xe9", "Bad type character '\\xe9'."),
        (b"", "Empty message received."),
        (b" \t ", "Empty message received."),
        (b"?a b\\q", "Invalid escape sequence '\\\\q'."),
        (b"?a b\x00c", "Unescaped special character '\\x00' in message."),
    ])
    def test_refusals_say_what_is_wrong(self, line, message):
        assert _error(self.parser.parse, line) == message

    @pytest.mark.parametrize("line", [5, "?watchdog"])
    def test_lines_must_be_bytes(self, line):
        with pytest.raises(KatcpTypeError) as error:
            self.parser.parse(line)
        assert str(error.value) == "Expected a bytes line, got %r." % (type(line),)

    def test_a_bytearray_is_a_line(self):
        assert self.parser.parse(bytearray(b"?watchdog")).name == "watchdog"

    @pytest.mark.parametrize("char", [b"\x0b", b"\x0c"])
    def test_line_breaking_characters_are_not_separators(self, char):
        msg = self.parser.parse(b"?x a" + char + b"b c ")
        assert msg.arguments == [b"a" + char + b"b", b"c"]

    def test_tabs_and_runs_of_blanks_separate(self):
        assert self.parser.parse(b"?x a\t b  \t c").arguments == [b"a", b"b", b"c"]

    def test_every_place_that_knows_which_bytes_are_escaped_agrees_with_the_table(self):
        # For speed, wire/message.py writes that set out several times besides _ESCAPES:
        # escape_argument's unrolled replaces, the fast path of Message.__bytes__, and
        # parse()'s refusal of bytes that may only travel escaped (_UNESCAPED_SPECIALS).
        escaped = {raw[0] for raw in _ESCAPES}
        separators_and_escape = set(b" \t\\")
        assert _UNESCAPED_SPECIALS == escaped - separators_and_escape
        for byte in range(256):
            arg = b"a" + bytes([byte]) + b"b"
            wire = b"a" + _ESCAPES.get(bytes([byte]), bytes([byte])) + b"b"
            assert escape_argument(arg) == wire
            assert bytes(Message.inform("x", arg, b"c")) == b"#x " + wire + b" c"
            # A reply's only argument has a fast path of its own.
            assert bytes(Message.reply("x", arg, mid=5)) == b"!x[5] " + wire
            assert bytes(Message.reply("x", bytes([byte]))) == b"!x " + escape_argument(
                bytes([byte]))
            assert self.parser.parse(b"#x " + wire).arguments == [arg]
            if byte in escaped - separators_and_escape:
                assert _error(self.parser.parse, b"#x " + arg) == (
                    "Unescaped special character %r in message." % (chr(byte),))
            elif byte not in separators_and_escape:
                assert self.parser.parse(b"#x " + arg).arguments == [arg]


    @pytest.mark.parametrize("parser_class", [MessageParser, _ParserOfItsOwn])
    def test_informs_under_one_header_and_the_next_header_each_get_their_own_id(
            self, parser_class):
        # parse() keeps the last inform header with an id on the parser (from its
        # __init__; a subclass that does not call it uses the class's): the id never
        # passes from one header to another, nor from one parser to another.
        parser, other = parser_class(), parser_class()
        lines = [b"?help[7]", b"#help[7] a", b"#help[7] b", b"#help[8] c", b"!help[8] ok",
                 b"#help d", b"#sensor-value[7] e"]
        assert [(msg.name, msg.mid) for msg in map(parser.parse, lines)] == [
            ("help", b"7"), ("help", b"7"), ("help", b"7"), ("help", b"8"), ("help", b"8"),
            ("help", None), ("sensor-value", b"7")]
        assert other.parse(b"#help[9] f").mid == b"9"
        assert parser.parse(b"#sensor-value[7] g").arguments == [b"g"]

    def test_a_chunk_needs_the_byte_checks_of_its_lines_when_it_holds_what_they_find(self):
        # Lines framed from a chunk hold no line end; needs_byte_checks() looks for the
        # rest of what parse() searches each line for (bytes that travel only escaped,
        # and \v and \f, which bytes.split() takes for separators).
        line_ends = {10, 13}
        searched = (_UNESCAPED_SPECIALS - line_ends) | {11, 12}
        for byte in set(range(256)) - line_ends:
            line = b"#x a" + bytes([byte]) + b"b c"
            assert needs_byte_checks(b"?y\n" + line + b"\n") == (byte in searched)
            if byte == 92:  # an invalid escape, refused either way
                assert _error(self.parser.parse, line, checked=True) == _error(
                    self.parser.parse, line)
            elif byte not in searched:
                assert self.parser.parse(line, checked=True) == self.parser.parse(line)


class TestProtocolFlags:

    def test_flags_newer_than_the_version_are_refused(self):
        with pytest.raises(ValueError) as error:
            ProtocolFlags(5, 0, "T")
        assert str(error.value) == "Protocol flag 'T' needs KATCP 5.1 or later, not 5.0."

    def test_no_flags_by_default(self):
        # As in the documented PROTOCOL_INFO = ProtocolFlags(5, 1).
        flags = ProtocolFlags(5, 1)
        assert (flags.major, flags.minor, flags.flags) == (5, 1, set())
        assert str(flags) == "5.1"

    @pytest.mark.parametrize("version, expected", [
        (b"5.0-BIMT", ProtocolFlags(5, 0, "IM")), ("4.0-IM", ProtocolFlags(4, 0, "M")),
        (b"5.1-BIMT", ProtocolFlags(5, 1, "BIMT")), (b"6.2-BX", ProtocolFlags(6, 2, "BX"))])
    def test_a_peers_version_keeps_only_the_flags_its_version_has(self, version, expected):
        assert ProtocolFlags.parse_version(version) == expected

    def test_equal_flags_are_not_unequal(self):
        a, b = ProtocolFlags(5, 0, "MI"), ProtocolFlags(5, 0, "IM")
        assert a == b and not (a != b)
        assert a != ProtocolFlags(5, 1, "MI")
        assert (a != "5.0-MI") is True

    def test_undecodable_versions_parse_what_they_can(self):
        flags = ProtocolFlags.parse_version(b"5.1-M\xff")
        assert (flags.major, flags.minor) == (5, 1)
        assert flags.multi_client
        assert ProtocolFlags.parse_version(b"\xff").major is None
