"""What the cheaper fleet sync must keep exactly as it was.

The parser unescapes all the arguments of a line together where it can, and a client
resource escapes the names of a whole sync at once: neither may change a single byte of
what comes out, whatever the arguments or names hold.
"""

from hypothesis import given
from hypothesis import strategies as st

from katcp.core import KatcpSyntaxError, Message, MessageParser
from katcp.resource import escape_name
from katcp.resource_client.resources import _escape_names

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
