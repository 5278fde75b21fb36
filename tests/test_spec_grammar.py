"""Conformance of the codec with the message grammar of the KATCP spec (rev 5.1, 2.1).

The grammar is transcribed into a ply lexer + LALR parser, one token per byte, so
that every production of the spec's BNF is checked literally:

       <message> ::= <type> <name> [<msgid>] <arguments> <eol>
          <type> ::= "?" | "!" | "#"
          <name> ::= alpha (alpha | digit | "-")*
         <msgid> ::= "[" (digit / "0") digit* "]"
    <whitespace> ::= (space | tab) [<whitespace>]
           <eol> ::= newline | carriage-return
     <arguments> ::= (<whitespace> <argument> <arguments>) | <whitespace> | ""
      <argument> ::= (<plain> | <escape>)+
        <escape> ::= "\\" <escapecode>
    <escapecode> ::= "\\" | "_" | zero | "n" | "r" | "e" | "t" | "@"
       <special> ::= backslash | space | null | newline | carriage-return | escape | tab
         <plain> ::= character / <special>
"""

import math
import random

import ply.lex
import ply.yacc
import pytest

from katcp.core import KatcpSyntaxError, Message, MessageParser

SEED = 20090213
N_MESSAGES = 3000


class GrammarError(Exception):
    """The line is not a <message> of the spec grammar."""


class SpecGrammar:
    """ply lexer and parser for the spec's <message> production.

    Bytes are decoded as latin-1 so that each byte is one character and one token.
    """

    tokens = ("TYPECHAR", "ALPHA", "ZERO", "NONZERO", "DASH", "LBRACKET", "RBRACKET",
              "BACKSLASH", "UNDERSCORE", "AT", "WS", "EOL", "SPECIAL", "OTHER")

    t_TYPECHAR = r"[?!\#]"
    t_ALPHA = r"[A-Za-z]"
    t_ZERO = r"0"
    t_NONZERO = r"[1-9]"
    t_DASH = r"-"
    t_LBRACKET = r"\["
    t_RBRACKET = r"\]"
    t_BACKSLASH = r"\\"
    t_UNDERSCORE = r"_"
    t_AT = r"@"
    t_WS = r"[ \t]"
    t_EOL = r"[\n\r]"
    # null and escape are <special> but are not whitespace or eol.
    t_SPECIAL = r"[\x00\x1b]"
    t_OTHER = r"[^?!\#A-Za-z0-9\-\[\]\\_@ \t\n\r\x00\x1b]"

    def t_error(self, t):
        raise GrammarError("untokenisable character %r" % t.value[0])

    start = "message"

    def p_message(self, p):
        """message : TYPECHAR name msgid arguments EOL"""
        p[0] = (p[1], p[2], p[3], p[4])

    def p_name(self, p):
        """name : ALPHA
                | name ALPHA
                | name ZERO
                | name NONZERO
                | name DASH"""
        p[0] = p[1] if len(p) == 2 else p[1] + p[2]

    def p_msgid(self, p):
        """msgid : LBRACKET NONZERO digits RBRACKET
                 | empty"""
        p[0] = p[2] + p[3] if len(p) == 5 else None

    def p_digits(self, p):
        """digits : digits ZERO
                  | digits NONZERO
                  | empty"""
        p[0] = "" if len(p) == 2 else p[1] + p[2]

    def p_whitespace(self, p):
        """whitespace : WS
                      | WS whitespace"""

    def p_arguments(self, p):
        """arguments : whitespace argument arguments
                     | whitespace
                     | empty"""
        p[0] = [p[2]] + p[3] if len(p) == 4 else []

    def p_argument(self, p):
        """argument : argchar
                    | argument argchar"""
        p[0] = p[1] if len(p) == 2 else p[1] + p[2]

    def p_argchar(self, p):
        """argchar : plain
                   | escape"""
        p[0] = p[1]

    def p_plain(self, p):
        """plain : ALPHA
                 | ZERO
                 | NONZERO
                 | DASH
                 | TYPECHAR
                 | LBRACKET
                 | RBRACKET
                 | UNDERSCORE
                 | AT
                 | OTHER"""
        p[0] = p[1]

    _ESCAPE_CODES = {"\\": "\\", "_": " ", "0": "\0", "n": "\n", "r": "\r", "e": "\x1b",
                     "t": "\t", "@": ""}

    def p_escape(self, p):
        """escape : BACKSLASH escapecode"""
        p[0] = p[2]

    def p_escapecode(self, p):
        """escapecode : BACKSLASH
                      | UNDERSCORE
                      | ZERO
                      | ALPHA
                      | AT"""
        if p[1] not in self._ESCAPE_CODES:
            raise GrammarError("bad escape code %r" % p[1])
        p[0] = self._ESCAPE_CODES[p[1]]

    def p_empty(self, p):
        """empty :"""

    def p_error(self, p):
        raise GrammarError("syntax error at %r" % (p,))

    def __init__(self):
        self.lexer = ply.lex.lex(module=self, debug=False, optimize=False)
        # No parsetab/parser.out files may be written into the repository.
        self.parser = ply.yacc.yacc(module=self, debug=False, write_tables=False,
                                    errorlog=ply.yacc.NullLogger())

    def parse(self, line):
        """Parse `line` (bytes including the eol); return (type, name, mid, args)."""
        return self.parser.parse(line.decode("latin-1"), lexer=self.lexer.clone())


@pytest.fixture(scope="module")
def grammar():
    return SpecGrammar()


PARSER = MessageParser()
NAME_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAME_REST = NAME_FIRST + "0123456789-"
SPECIAL_BYTES = b"\\ \0\n\r\x1b\t@_"


def random_name(rng):
    return rng.choice(NAME_FIRST) + "".join(
        rng.choice(NAME_REST) for _ in range(rng.randrange(0, 20)))


def random_mid(rng):
    kind = rng.randrange(5)
    if kind == 0:
        return None
    value = rng.choice([1, 2 ** 31 - 1, rng.randrange(1, 2 ** 31)])
    return [value, str(value), str(value).encode("ascii"), value][kind - 1]


def random_bytes(rng):
    kind = rng.randrange(4)
    size = rng.randrange(0, 30)
    if kind == 0:
        # Weighted towards the bytes that need escaping.
        return bytes(rng.choice(SPECIAL_BYTES) for _ in range(size))
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(size))
    if kind == 2:
        return b""
    return bytes(rng.choice(b"abc \\") for _ in range(size))


def random_argument(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return random_bytes(rng)
    if kind == 1:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x11000)]))
                       for _ in range(rng.randrange(0, 10))).replace("\ud800", "x")
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3:
        return rng.randrange(-2 ** 70, 2 ** 70)
    if kind == 4:
        return rng.choice([rng.uniform(-1e300, 1e300), rng.random(), math.inf, -math.inf,
                           math.nan, 0.0, -0.0, 1e-7, 5e-324])
    if kind == 5:
        return None
    if kind == 6:
        return ""
    # Every single byte value on its own.
    return bytes([rng.randrange(256)])


def _text(rng_text):
    # Random code points may be lone surrogates, which UTF-8 cannot encode.
    return "".join(c for c in rng_text if not 0xD800 <= ord(c) <= 0xDFFF)


def random_message(rng):
    args = []
    for _ in range(rng.randrange(0, 8)):
        arg = random_argument(rng)
        args.append(_text(arg) if isinstance(arg, str) else arg)
    mtype = rng.choice([Message.REQUEST, Message.REPLY, Message.INFORM])
    return Message(mtype, random_name(rng), args, random_mid(rng))


def test_grammar_accepts_the_spec_examples(grammar):
    for line in [b"?set-rate 5.1\n", b"!set-unknown-parameter invalid Unknown\\_request.\n",
                 b"?set-rate[123] 4.1\n", b"#foo \\@\n", b"?watchdog\n", b"?watchdog \t \r",
                 b"#sensor-list drive.dc-voltage-elev Drive\\_bus\\_voltage V float 0.0 900.0\n"]:
        grammar.parse(line)


@pytest.mark.parametrize("line", [
    b"?set-rate 5.1",          # no eol
    b"*foo\n",                 # bad type
    b"?1foo\n",                # name must start with a letter
    b"?foo[0]\n",              # ids start at 1
    b"?foo[01]\n",             # no leading zeros
    b"?foo[]\n",
    b"?foo a\\q\n",            # bad escape
    b"?foo a\\\n",             # lone backslash
    b"?foo a\x00b\n",          # raw special
    b"?foo a\x1bb\n",
    b" ?foo\n",                # leading whitespace
    b"\n",
])
def test_grammar_rejects_malformed_lines(grammar, line):
    with pytest.raises(GrammarError):
        grammar.parse(line)


def test_generated_messages_conform_and_round_trip(grammar):
    rng = random.Random(SEED)
    for _ in range(N_MESSAGES):
        msg = random_message(rng)
        line = bytes(msg)
        mtype, name, mid, args = grammar.parse(line + rng.choice([b"\n", b"\r"]))
        assert mtype == Message.TYPE_SYMBOLS[msg.mtype].decode("ascii")
        assert name == msg.name
        assert (mid.encode("ascii") if mid is not None else None) == msg.mid
        assert [a.encode("latin-1") for a in args] == msg.arguments
        assert PARSER.parse(line) == msg


def test_every_byte_value_conforms(grammar):
    for value in range(256):
        msg = Message.inform("byte", bytes([value]), b"x" + bytes([value]) * 3 + b"y")
        _, _, _, args = grammar.parse(bytes(msg) + b"\n")
        assert [a.encode("latin-1") for a in args] == msg.arguments
        assert PARSER.parse(bytes(msg)) == msg


# Lines over a small alphabet hit every corner of the grammar; the parser must accept
# exactly what the grammar accepts. (Like katcp 0.9.3 it accepts any id of digits: the
# spec limits ids to 1 .. 2**31-1 in prose (2.2) for senders, not in the grammar.)
ALPHABET = [b"?", b"!", b"#", b"a", b"Z", b"n", b"0", b"1", b"9", b"-", b"[", b"]", b"\\",
            b"_", b"@", b" ", b"\t", b"x", b".", b"\0", b"\x1b"]


def test_parser_accepts_exactly_the_grammar_language(grammar):
    rng = random.Random(SEED + 1)
    accepted = rejected = 0
    for _ in range(N_MESSAGES * 3):
        line = rng.choice([b"?", b"!", b"#", b""]) + b"".join(
            rng.choice(ALPHABET) for _ in range(rng.randrange(0, 12)))
        try:
            expected = grammar.parse(line + b"\n")
        except GrammarError:
            expected = None
        try:
            msg = PARSER.parse(line)
        except KatcpSyntaxError:
            msg = None
        if expected is None:
            rejected += 1
            assert msg is None, line
        else:
            accepted += 1
            assert msg is not None, line
            mtype, name, mid, args = expected
            assert (Message.TYPE_SYMBOLS[msg.mtype].decode("ascii"), msg.name) == (mtype, name)
            assert msg.mid == (mid.encode("ascii") if mid is not None else None)
            assert msg.arguments == [a.encode("latin-1") for a in args]
    # The sample must exercise both outcomes substantially.
    assert accepted > 250 and rejected > 3000
