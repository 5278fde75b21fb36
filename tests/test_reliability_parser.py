"""Property-based fuzzing of the codec: any bytes parse or raise KatcpSyntaxError, and
anything we format parses back to the same message."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from katcp.core import KatcpSyntaxError, Message, MessageParser

from reliability_settings import SOAK, scaled

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(3600 if SOAK else 120)]

CASES = scaled(3000, 100000)
FUZZ_SETTINGS = settings(max_examples=CASES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))

PARSER = MessageParser()

names = st.from_regex(r"\A[a-zA-Z][a-zA-Z0-9-]{0,30}\Z", fullmatch=True)
mids = st.one_of(st.none(), st.integers(min_value=1, max_value=2 ** 31 - 1))
byte_arguments = st.binary(max_size=40)
text_arguments = st.text(max_size=20)
number_arguments = st.one_of(st.integers(min_value=-2 ** 63, max_value=2 ** 63),
                             st.floats(allow_nan=False, allow_infinity=False),
                             st.booleans())
arguments = st.lists(st.one_of(byte_arguments, text_arguments, number_arguments),
                     max_size=8)
mtypes = st.sampled_from([Message.REQUEST, Message.REPLY, Message.INFORM])

# Lines built from the protocol's own pieces reach deeper into the parser than random bytes.
line_pieces = st.lists(st.one_of(
    st.sampled_from([b"?", b"!", b"#", b"[", b"]", b" ", b"\t", b"\\", b"\\_", b"\\@",
                     b"\\0", b"\\n", b"\\r", b"\\e", b"\\t", b"\\\\", b"\\x", b"\x00",
                     b"\xff", b"\xc3\xa9", b"-", b"1", b"0", b"99999999999999999999"]),
    st.from_regex(rb"\A[a-z][a-z0-9-]{0,8}\Z", fullmatch=True),
    st.binary(max_size=8)), max_size=20).map(b"".join)


def _parse_or_syntax_error(line):
    try:
        msg = PARSER.parse(line)
    except KatcpSyntaxError:
        return None
    assert isinstance(msg, Message)
    return msg


@FUZZ_SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_give_a_message_or_a_syntax_error(line):
    _parse_or_syntax_error(line)


@FUZZ_SETTINGS
@given(line_pieces)
def test_protocol_like_lines_give_a_message_or_a_syntax_error(line):
    msg = _parse_or_syntax_error(line)
    if msg is not None:
        # Whatever parses must format and parse again to the same message.
        assert PARSER.parse(bytes(msg)) == msg


@FUZZ_SETTINGS
@given(mtypes, names, mids, arguments)
def test_format_then_parse_round_trips(mtype, name, mid, args):
    msg = Message(mtype, name, args, mid)
    line = bytes(msg)
    assert b"\n" not in line and b"\r" not in line
    parsed = PARSER.parse(line)
    assert parsed == msg
    assert parsed.arguments == msg.arguments
    assert parsed.mid == msg.mid


@FUZZ_SETTINGS
@given(st.lists(st.binary(max_size=30), max_size=6))
def test_every_byte_value_survives_escaping(args):
    msg = Message.inform("x", *args)
    assert PARSER.parse(bytes(msg)).arguments == args
