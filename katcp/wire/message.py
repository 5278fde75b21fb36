"""KATCP messages and the parser that turns lines of bytes into them (no I/O).

Precompiled regexes, no per-message logging and ``__slots__``: this is the hot path.
Every malformed line raises :class:`~katcp.core.KatcpSyntaxError` and nothing else.
"""

import functools
import numbers
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple, Union

from katcp.wire.errors import KatcpSyntaxError, KatcpTypeError
from katcp.wire.text import encode_utf8_with_error_log, readable, show, show_repr


MessageId = Union[int, str, bytes, None]

_ESCAPES = {b"\\": b"\\\\", b" ": b"\\_", b"\0": b"\\0", b"\n": b"\\n", b"\r": b"\\r",
            b"\x1b": b"\\e", b"\t": b"\\t"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}
_UNESCAPES[b"\\@"] = b""

_UNESCAPE_SUB = functools.partial(re.compile(rb"\\.?", re.DOTALL).sub,
                                  lambda m: _UNESCAPES[m.group()])


# The escapes other than of a space or a backslash, commonest first (the newlines of
# help texts). Each gives a byte that ends no escape; that of an empty argument, which
# gives nothing and so could join a stray backslash to what follows, comes last. The
# arguments of a line, unescaped together joined by NULs, leave that of a NUL alone.
_JOINED_UNESCAPES = [(escaped, _UNESCAPES[escaped])
                     for escaped in (b"\\n", b"\\t", b"\\r", b"\\e", b"\\@")]
_OTHER_UNESCAPES = [(b"\\0", b"\0")] + _JOINED_UNESCAPES


def _undo_plain(part: bytes) -> Optional[bytes]:
    """Undo the escapes of `part`, which holds no escaped backslash (None: an invalid one).

    Every backslash then starts an escape of its own, so plain replace() calls undo
    them (most text escapes only spaces) with no regex callback per escape.
    """
    return _undo_others(part.replace(b"\\_", b" "), _OTHER_UNESCAPES)


def _undo_others(part: bytes, escapes: List[Tuple[bytes, bytes]]) -> Optional[bytes]:
    """Undo `escapes` in `part` (escaped spaces undone already); None if a backslash is
    left, which is not among them, or invalid, or part of an escaped backslash."""
    for escaped, raw in escapes:
        if 92 not in part:
            return part
        part = part.replace(escaped, raw)
    return None if 92 in part else part


def _unescape(arg: bytes) -> bytes:
    """Undo the escapes of one argument (KeyError for an invalid one)."""
    if arg == b"\\@":  # the empty argument (e.g. a sensor's units)
        return b""
    if b"\\\\" in arg:
        # Escaped backslashes are whole escapes, paired from the left as split()
        # pairs them: what lies between them is plain.
        parts = [_undo_plain(part) for part in arg.split(b"\\\\")]
        if None not in parts:
            return b"\\".join(parts)  # type: ignore[arg-type]
    else:
        plain = _undo_plain(arg)
        if plain is not None:
            return plain
    # An invalid escape: the regex finds it and reports it.
    return _UNESCAPE_SUB(arg)


def _unescape_all(arguments: List[bytes]) -> List[bytes]:
    """Undo the escapes of a message's arguments (KatcpSyntaxError for an invalid one)."""
    # The arguments are unescaped together, joined by a NUL: no valid line holds one
    # unescaped, so unless an escape gives one, splitting on it gives them back. An
    # escape is undone by replacing it wherever it is; an escaped backslash (which
    # pairs from the left) or an invalid escape leaves a backslash behind, found at
    # the end: then each argument is unescaped on its own.
    joined = b"\0".join(arguments)
    spaced = joined.replace(b"\\_", b" ")
    if 92 not in spaced:
        return spaced.split(b"\0")
    # Most lines escape only spaces and empty arguments.
    plain = spaced.replace(b"\\@", b"")
    if 92 in plain:
        rest = _undo_others(spaced, _JOINED_UNESCAPES)
        if rest is None:
            return _unescape_each(arguments)
        plain = rest
    return plain.split(b"\0")


def _unescape_each(arguments: List[bytes]) -> List[bytes]:
    """Undo the escapes of each argument on its own (KatcpSyntaxError for an invalid one)."""
    try:
        return [_unescape(arg) if 92 in arg else arg for arg in arguments]
    except KeyError as exc:
        raise KatcpSyntaxError("Invalid escape sequence %s." % (show_repr(exc.args[0]),)) from None


def escape_argument(arg: bytes) -> bytes:
    """The wire form of one raw argument: special bytes escaped, ``\\@`` if empty.

    Parameters
    ----------
    arg : bytes

    Returns
    -------
    escaped : bytes
    """
    if not arg:
        return b"\\@"
    # The escapes of _ESCAPES, a backslash first (the others add backslashes that must
    # stay single). One replace() per special byte present, each found by memchr: many
    # times faster than a regex calling back per escape (a help text has hundreds).
    # Unrolled, as this formats every sensor-list line and string sensor value (so are
    # Message.__bytes__'s fast path and parse()'s check: test_codec_rules checks all agree).
    if 92 in arg:
        arg = arg.replace(b"\\", b"\\\\")
    if 32 in arg:
        arg = arg.replace(b" ", b"\\_")
    if 10 in arg:
        arg = arg.replace(b"\n", b"\\n")
    if 9 in arg:
        arg = arg.replace(b"\t", b"\\t")
    if 13 in arg:
        arg = arg.replace(b"\r", b"\\r")
    if 0 in arg:
        arg = arg.replace(b"\0", b"\\0")
    if 27 in arg:
        arg = arg.replace(b"\x1b", b"\\e")
    return arg


_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-]*\Z")
_HEADER_RE = re.compile(rb"([A-Za-z][A-Za-z0-9\-]*)(?:\[([0-9]+)\])?\Z")
_BLANK_SPLIT = re.compile(rb"[ \t]+").split
# The bytes of _ESCAPES that are neither separators nor the escape itself: those that
# may only travel escaped.
_UNESCAPED_SPECIALS = frozenset(raw[0] for raw in _ESCAPES) - frozenset(b" \t\\")


def needs_byte_checks(data: bytes) -> bool:
    """Whether the lines framed from `data` need :meth:`MessageParser.parse`'s byte checks.

    Lines split from received data on their line ends (a newline or a carriage return)
    hold neither; where `data` holds none of the other bytes that parse() looks for in
    each line (those of ``_UNESCAPED_SPECIALS`` besides the line ends, and the vertical
    tab and form feed that ``bytes.split()`` would take for separators), its lines may be
    parsed with ``checked=True``. A few searches of a chunk then replace six of every
    line in it.

    Parameters
    ----------
    data : bytes
        Received data, as handed to the line framer.

    Returns
    -------
    needed : bool
        True if some line framed from `data` may hold such a byte.
    """
    return 0 in data or 27 in data or 11 in data or 12 in data


# Names already validated (str) and header bytes already decoded (bytes -> str).
# Bounded so that a peer sending endless new names cannot grow them forever.
_NAME_CACHE_MAX = 4096
_valid_names: Set[str] = set()
_header_names: Dict[bytes, str] = {}


def check_name(name: Any) -> str:
    """A message name as a :class:`Message` keeps it, checked as its constructor checks it.

    Parameters
    ----------
    name : str or bytes
        The name (a str subclass gives its text, bytes their ASCII).

    Returns
    -------
    name : str

    Raises
    ------
    KatcpSyntaxError
        If `name` is no KATCP message name.
    """
    if type(name) is not str:
        if isinstance(name, str):
            name = str.__str__(name)  # its text: a str enum's str() is its member name
        elif isinstance(name, bytes):
            name = name.decode("ascii", errors="replace")
        else:
            raise KatcpSyntaxError("Message name must be a str, not %r." % (name,))
    if name in _valid_names:
        return name
    if not _NAME_RE.match(name):
        raise KatcpSyntaxError("Bad message name %r." % (name,))
    if len(_valid_names) < _NAME_CACHE_MAX:
        _valid_names.add(name)
    return name


def format_mid(mid: Any) -> bytes:
    """A message id (int, str or bytes) as the decimal digits sent on the wire.

    Raises
    ------
    KatcpSyntaxError
        If `mid` is of another type, or not a decimal integer.
    """
    # The spec limits message ids to 1 .. 2**31 - 1 (section 2.2); the clients of this
    # library send only those. Like katcp 0.9.3, any decimal digits are accepted (here
    # and by the parser) and kept as given, so a reply echoes the id exactly as sent.
    if isinstance(mid, int) and not isinstance(mid, bool):
        mid = b"%d" % mid
    elif isinstance(mid, str):
        mid = mid.encode("ascii", errors="replace")
    elif not isinstance(mid, bytes):
        raise KatcpSyntaxError("Message id must be int, str or bytes, not %r." % (mid,))
    # bytes.isdigit() is ASCII-only; a negative int fails here too.
    if not mid.isdigit():
        raise KatcpSyntaxError("Message id %r is not a decimal integer." % (mid,))
    return mid


def _format_other(arg: Any) -> bytes:
    # Subclasses (IntEnum, numpy scalars, str subclasses ...) and unencodable text take
    # the slow path.
    if isinstance(arg, bool):
        return b"1" if arg else b"0"
    if isinstance(arg, numbers.Integral):
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(float(arg)).encode("ascii")
    if isinstance(arg, numbers.Real):
        # Its own text where that is a number, as 0.9.3 sent it: numpy.float32(21.3) is
        # "21.3", not the float64 expansion of its value. Fraction(1, 4) is "0.25".
        text = str(arg)
        try:
            float(text)
        except ValueError:
            return repr(float(arg)).encode("ascii")
        return text.encode("utf-8")
    if isinstance(arg, (bytes, bytearray, memoryview)):
        return bytes(arg)
    if arg is None:
        return b""
    if isinstance(arg, str):
        # Its text, not str(): the str() of a str enum member is the member's name.
        return encode_utf8_with_error_log(str.__str__(arg))
    return encode_utf8_with_error_log(str(arg))


# Exact-type dispatch to C-level callables: no Python frame per argument.
# str.encode raises on lone surrogates; callers then fall back to _format_other.
_FORMATTERS: Dict[type, Callable[[Any], bytes]] = {
    str: str.encode, bool: (b"0", b"1").__getitem__, int: b"%d".__mod__, float: b"%r".__mod__}
_get_formatter = _FORMATTERS.get


def _format_arguments(arguments: Iterable[Any]) -> List[bytes]:
    """The wire bytes of message arguments (unescaped): the one rule of the constructor."""
    # A loop rather than a list comprehension: messages have few arguments, and a
    # comprehension's own frame costs more than the appends.
    formatted: List[bytes] = []
    try:
        for arg in arguments:
            formatted.append(arg if type(arg) is bytes
                             else _get_formatter(type(arg), _format_other)(arg))
    except UnicodeEncodeError:
        # Text that strict encoding refused (a lone surrogate) goes to the careful
        # formatter, and so do the arguments after it (in a loop: many such texts must
        # not nest a call each); an iterator of arguments goes on from there, never
        # iterated twice.
        formatted.append(_format_other(arg))
        if iter(arguments) is not arguments:
            arguments = list(arguments)[len(formatted):]
        formatted.extend([_format_other(arg) for arg in arguments])
    return formatted


def format_argument(arg: Any) -> bytes:
    """Format a Message argument to a byte string.

    Parameters
    ----------
    arg : bytes, str, bool, int, float or None
        Value to format (str is UTF-8 encoded, bool is ``1``/``0``, float uses
        ``repr``, None becomes the empty argument). Other real numbers (numpy's
        float32) are sent as their str() where that is a number, else as the ``repr``
        of their float; any other object as the UTF-8 of its str().

    Returns
    -------
    formatted : bytes
    """
    return _format_arguments((arg,))[0]


def _wire_form(end: bytes) -> Callable[["Message"], bytes]:
    """A function of a message that gives its wire form followed by `end`.

    Message's ``__bytes__`` (`end` empty) and ``_line`` (`end` a newline, for senders,
    which then need not add it with a copy of the line) are two functions of this one
    body.
    """
    def wire_form(self: "Message") -> bytes:
        args = self.arguments
        mid = self.mid
        try:
            head = _wire_heads[self.mtype][self.name]
        except KeyError:
            head = _wire_head(self.mtype, self.name)
        if len(args) == 1 and args[0].isalpha():
            # "!name[id] ok": nothing to escape, one join (most replies). isalpha()
            # rather than a set of reply codes: the new bytes of each reply's code would be
            # hashed for it.
            if mid is None:
                return b"".join((head, b" ", args[0], end))
            return b"".join((head, b"[", mid, b"] ", args[0], end))
        if mid is not None:
            head = b"".join((head, b"[", mid, b"]"))
        if not args:
            return head + end
        line = b" ".join((head, *args))
        # Fast path: no empty argument and no byte needing an escape (of _ESCAPES) besides
        # the separating spaces, which is the case for the bulk of real traffic. Searched
        # in the whole line, whose head holds none (else the slow path gives the same).
        # (int membership is a plain memchr, several times faster than b"x" in line)
        if (line.count(b" ") == len(args) and 92 not in line and 9 not in line
                and 10 not in line and 13 not in line and 0 not in line and 27 not in line
                and b"" not in args):
            return line + end
        return b"".join((head, b" ", b" ".join([escape_argument(arg) for arg in args]), end))

    wire_form.__name__ = "_line" if end else "__bytes__"
    wire_form.__qualname__ = "Message." + wire_form.__name__
    return wire_form


# What a class of messages may replace that decides how its messages are made and sent.
_RULED = frozenset(["format_argument", "__bytes__"])


class _MessageClass(type):
    """The class of :class:`Message` classes: a ``format_argument`` set on one, or
    deleted, once it exists (as ``mock.patch.object(Message, "format_argument", ...)``
    does and undoes) decides how the constructors of it and its subclasses format
    arguments from then on, as in 0.9.3, where they called it for each argument; a
    ``__bytes__`` set or deleted decides what the senders write of their messages."""

    def __setattr__(cls, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _RULED:
            _choose_rules(cls)

    def __delattr__(cls, name: str) -> None:
        super().__delattr__(name)
        if name in _RULED:
            _choose_rules(cls)


class Message(metaclass=_MessageClass):
    """Represents a KAT device control language message.

    Parameters
    ----------
    mtype : Message type constant
        The message type (request, reply or inform).
    name : str
        The message name.
    arguments : list of objects (float, int, bool, bytes, or str)
        The message arguments.
    mid : str or bytes (digits only), int, or None
        The message identifier. Replies and informs that are part of the reply to a
        request should have the same id as the request did.
    """

    # With a __dict__, as 0.9.3's plain class: code keeps its own attributes on a message
    # (``msg.received_at = time.time()``) and tests replace methods on the instance.
    __slots__ = ("mtype", "name", "arguments", "mid", "__dict__")

    REQUEST, REPLY, INFORM = range(3)

    # Reply codes, as they appear in ``reply.arguments[0]``.
    OK, FAIL, INVALID = b"ok", b"fail", b"invalid"

    TYPE_NAMES = {REQUEST: "REQUEST", REPLY: "REPLY", INFORM: "INFORM"}
    # The wire's type characters, so bytes like everything else on the wire.
    TYPE_SYMBOLS = {REQUEST: b"?", REPLY: b"!", INFORM: b"#"}
    TYPE_SYMBOL_LOOKUP = {v: k for k, v in TYPE_SYMBOLS.items()}

    # How the constructors format the arguments: Message's own rule without a call per
    # argument, or, where a class overrides format_argument(), a call of it for each (as
    # 0.9.3's did). Chosen once per class, so that no message asks.
    _format_all = staticmethod(_format_arguments)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _choose_rules(cls)

    def __init__(self, mtype: int, name: str, arguments: Optional[Iterable[Any]] = None,
                 mid: MessageId = None) -> None:
        # The constant itself is kept, not a value equal to it (1.0 or True for REPLY, as
        # 0.9.3 took): what is indexed by the type (_wire_heads) takes only ints.
        try:
            self.mtype = _TYPES[mtype]
        except (KeyError, TypeError):  # TypeError: unhashable, as a list is
            raise KatcpSyntaxError("Invalid message type %r." % (mtype,)) from None
        # check_name()'s cache of valid names, asked here first: the call would cost
        # about 270 instructions per message (1% of a request served).
        self.name = name if name.__class__ is str and name in _valid_names else check_name(name)
        self.mid = None if mid is None else format_mid(mid)
        if arguments is None or (arguments.__class__ is tuple and not arguments):
            self.arguments = []  # none (Message.request("name") gives ()): no call
        else:
            self.arguments = self._format_all(arguments)

    @classmethod
    def _from_wire(cls, mtype: int, name: str, arguments: List[bytes],
                   mid: Optional[bytes]) -> "Message":
        """A message of parts already valid, made without the constructor's checks and
        formatting (public as :func:`message_from_parts`).

        Parameters
        ----------
        mtype : int
            One of the message types (``Message.REQUEST``, ``REPLY`` or ``INFORM``).
        name : str
            A valid name, as :func:`check_name` gives it.
        arguments : list of bytes
            The arguments as they are sent (the list is kept, not copied).
        mid : bytes or None
            The message id's digits, or None.

        Returns
        -------
        msg : :class:`Message`
        """
        msg = cls.__new__(cls)
        msg.mtype = mtype
        msg.name = name
        msg.arguments = arguments
        msg.mid = mid
        return msg

    def format_argument(self, arg: Any) -> bytes:
        """Format a Message argument to a byte string.

        The constructor formats each argument with this method where a subclass overrides
        it (as in 0.9.3); :func:`format_argument` is the rule.

        Parameters
        ----------
        arg : object
            Value to format, as :func:`format_argument` takes it.

        Returns
        -------
        formatted : bytes
        """
        return format_argument(arg)

    def copy(self) -> "Message":
        """Return a shallow copy of the message object and its arguments.

        Returns
        -------
        msg : Message
            A copy of the message object.
        """
        return self._from_wire(self.mtype, self.name, list(self.arguments), self.mid)

    # The message's wire form (bytes(msg)), and its line as senders write it, newline
    # included: two functions of one body (see _wire_form()). A class whose __bytes__ is
    # another has a _line of it (see _choose_rules()).
    __bytes__ = _wire_form(b"")
    _line = _wire_form(b"\n")

    def __str__(self) -> str:
        return show(self.__bytes__())

    def __repr__(self) -> str:
        name = self.name
        if self.mid is not None:
            name = "%s[%s]" % (name, self.mid.decode("ascii"))
        shown = []
        for arg in self.arguments:
            # As on the wire (escaped), but an empty argument shows as b''.
            arg = escape_argument(arg) if arg else arg
            if len(arg) > 1000:
                arg = arg[:1000] + b"..."
            shown.append(repr(arg))
        return "<Message %s %s (%s)>" % (
            self.TYPE_NAMES[self.mtype].lower(), name, ", ".join(shown))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.mtype == other.mtype and self.name == other.name
                and self.mid == other.mid and self.arguments == other.arguments)

    __hash__ = None  # type: ignore[assignment]

    def reply_ok(self) -> bool:
        """Return True if this is a reply and its first argument is 'ok'."""
        return self.mtype == self.REPLY and bool(self.arguments) and self.arguments[0] == self.OK

    @classmethod
    def request(cls, name: str, *args: Any, mid: MessageId = None) -> "Message":
        """Helper method for creating request messages.

        Parameters
        ----------
        name : str
            The name of the message.
        args : list of objects (float, int, bool, bytes, or str)
            The message arguments.
        mid : str or bytes (digits only), int, or None
            Message ID to use or None (default) for no Message ID.
        """
        return cls(cls.REQUEST, name, args, mid)

    @classmethod
    def reply(cls, name: str, *args: Any, mid: MessageId = None) -> "Message":
        """Helper method for creating reply messages (parameters as for :meth:`request`)."""
        return cls(cls.REPLY, name, args, mid)

    @classmethod
    def inform(cls, name: str, *args: Any, mid: MessageId = None) -> "Message":
        """Helper method for creating inform messages (parameters as for :meth:`request`)."""
        return cls(cls.INFORM, name, args, mid)

    @classmethod
    def reply_to_request(cls, req_msg: "Message", *args: Any) -> "Message":
        """Helper method for creating reply messages to a specific request.

        Copies the message name and message identifier from the request message.

        Parameters
        ----------
        req_msg : Message
            The request message that this reply is in reply to.
        args : list of objects (float, int, bool, bytes, or str)
            The message arguments.
        """
        return cls._answer(cls.REPLY, req_msg, args)

    @classmethod
    def reply_inform(cls, req_msg: "Message", *args: Any) -> "Message":
        """Helper method for creating inform messages in reply to a request.

        Copies the message name and message identifier from the request message.

        Parameters are as for :meth:`reply_to_request`.
        """
        return cls._answer(cls.INFORM, req_msg, args)

    @classmethod
    def _answer(cls, mtype: int, req_msg: "Message", args: Tuple[Any, ...]) -> "Message":
        # As cls(mtype, req_msg.name, args, req_msg.mid), without checking again what the
        # request's constructor checked: this makes the reply to every request. Its name
        # is taken as __init__ takes one, inlined for the same reason.
        msg = _new_message(cls)
        msg.mtype = mtype
        name = req_msg.name
        msg.name = name if name.__class__ is str and name in _valid_names else check_name(name)
        mid = req_msg.mid
        # A request's mid is normally already canonical bytes; only re-check otherwise.
        msg.mid = mid if mid is None or type(mid) is bytes else format_mid(mid)
        if len(args) == 1 and args[0] is _OK_TEXT and cls._format_all is _format_arguments:
            # "ok" alone, the commonest reply (as a literal, it is this interned str):
            # formatted without the formatter's call.
            msg.arguments = [b"ok"]
        else:
            msg.arguments = msg._format_all(args)
        return msg


def _format_each(msg: Message, arguments: Iterable[Any]) -> List[bytes]:
    """The arguments formatted by `msg`'s own format_argument()."""
    return [msg.format_argument(arg) for arg in arguments]


def line_from_bytes(msg: Any) -> bytes:
    """The line a sender writes of `msg` whose __bytes__ is not Message's own.

    What ``msg._line()`` gives for a message whose class has a ``__bytes__`` of its
    own, and what senders write of a stand-in for a message (no :class:`Message`).

    Parameters
    ----------
    msg : Message or stand-in
        What the sender was given.

    Returns
    -------
    line : bytes
        Its bytes, with the newline that ends a line.
    """
    return msg.__bytes__() + b"\n"


def wire_line(msg: Any) -> bytes:
    """The line a sender writes of `msg`: its wire form and the newline that ends it.

    ``msg._line()`` for a :class:`Message` (one formatting operation, or
    :func:`line_from_bytes` where its class has a ``__bytes__`` of its own), and
    :func:`line_from_bytes` for a stand-in without ``_line()`` or whose ``_line()``
    gives no bytes (a mock made to Message's spec). Parameters and result as
    :func:`line_from_bytes`.
    """
    try:
        line = msg._line()
    except AttributeError:
        return line_from_bytes(msg)
    return line if line.__class__ is bytes else line_from_bytes(msg)


_OWN_FORMAT_ARGUMENT = Message.__dict__["format_argument"]
_OWN_BYTES = Message.__dict__["__bytes__"]
_OWN_LINE = Message.__dict__["_line"]


def _choose_rules(cls: type) -> None:
    """Make the constructors of `cls` and its subclasses format arguments with Message's
    rule, or where their format_argument is another, with a call of it for each; and
    their senders write lines of Message's wire form, or where their __bytes__ is
    another, of what it gives."""
    classes = [cls]
    for klass in classes:
        own = klass.format_argument is _OWN_FORMAT_ARGUMENT  # type: ignore[attr-defined]
        type.__setattr__(klass, "_format_all",
                         staticmethod(_format_arguments) if own else _format_each)
        own = klass.__bytes__ is _OWN_BYTES  # type: ignore[attr-defined]
        type.__setattr__(klass, "_line", _OWN_LINE if own else line_from_bytes)
        classes.extend(klass.__subclasses__())


def readable_message(msg: Message) -> str:
    """A message as people read it: ``!name arg ...`` with its arguments unescaped.

    The one form for messages in exception texts and displays: the wire escapes
    (``\\_`` for a space, ...) are for parsers, so ``fail Unknown\\_strategy`` reads
    ``fail Unknown strategy``. Unlike ``str(msg)`` it is not parseable.

    Parameters
    ----------
    msg : :class:`Message`

    Returns
    -------
    text : str

    """
    head = Message.TYPE_SYMBOLS[msg.mtype].decode("ascii") + msg.name
    return " ".join([head] + [readable(arg) for arg in msg.arguments])


_TYPE_BYTES = Message.TYPE_SYMBOLS
_TYPES = {mtype: mtype for mtype in Message.TYPE_SYMBOLS}
# The wire head (``!name``) of each name sent, per message type (its index): one lookup
# per message rather than one of the type's byte and an encode of the name. Bounded as
# the name caches are.
_wire_heads: Tuple[Dict[str, bytes], ...] = tuple({} for _ in Message.TYPE_SYMBOLS)


def _wire_head(mtype: int, name: str) -> bytes:
    """The wire head of a message of type `mtype` named `name`, kept for the next."""
    head = _TYPE_BYTES[mtype] + name.encode("ascii")
    heads = _wire_heads[mtype]
    if len(heads) < _NAME_CACHE_MAX:
        heads[name] = head
    return head


# For other packages: a Message of parts already valid (a checked name, the arguments as
# bytes, the id as bytes or None), made without the constructor's checks.
message_from_parts = Message._from_wire

_INFORM = Message.INFORM
_new_message = object.__new__
_OK_TEXT = "ok"
# The message type of each first byte (None: not a type character), indexed by the byte.
_TYPE_FROM_BYTE = tuple(Message.TYPE_SYMBOL_LOOKUP.get(bytes([byte])) for byte in range(256))


class MessageParser:
    """Parses lines into Message objects."""

    ESCAPE_LOOKUP = {k[1:]: v for k, v in _UNESCAPES.items()}
    TYPE_SYMBOL_LOOKUP = Message.TYPE_SYMBOL_LOOKUP

    # The last inform header with an id parsed, with its name and id: the informs of a
    # reply come one after another under one header. One tuple, replaced whole, so that a
    # parser shared between threads never pairs a header with another's id.
    _last_header: Tuple[bytes, str, Optional[bytes]] = (b"", "", None)

    def __init__(self) -> None:
        # On the instance from the start, though only informs set it: parse() reads it
        # for every line with an id (a server's parser sees no informs), and a class
        # attribute read through an instance costs about 200 instructions more on
        # CPython 3.11. The class's stays for subclasses that do not call this.
        self._last_header = self._last_header

    def parse(self, line: bytes, checked: bool = False) -> Message:
        """Parse a line, return a Message.

        Parameters
        ----------
        line : bytes
            The line to parse (should not contain the terminating newline or carriage
            return).
        checked : bool, optional
            True where the caller vouches that `line` is bytes split on its line ends
            from data in which :func:`needs_byte_checks` found nothing: the searches
            of the line for bytes that may travel only escaped are skipped.

        Returns
        -------
        msg : Message object
            The resulting Message.

        Raises
        ------
        KatcpSyntaxError
            For any line that is not a valid KATCP message.
        KatcpTypeError
            If `line` is not bytes (or a bytearray or memoryview).
        """
        if not checked and type(line) is not bytes:
            # Text has no defined encoding on the wire: like katcp 0.9.3, refuse it.
            if not isinstance(line, (bytearray, memoryview)):
                raise KatcpTypeError("Expected a bytes line, got %r." % (type(line),))
            line = bytes(line)
        mtype = _TYPE_FROM_BYTE[line[0]] if line else None
        if mtype is None:
            if not line.strip(b" \t"):
                raise KatcpSyntaxError("Empty message received.")
            raise KatcpSyntaxError("Bad type character %s." % (show_repr(line[:1]),))
        if checked:
            parts = line.split()
        else:
            # Newline, carriage return, NUL and ESC may only appear escaped (spec 2.3):
            # the bytes of _UNESCAPED_SPECIALS, written out because four memchr()s take
            # about 50 ns where one regex search of them takes 200 to 700 ns
            # (test_codec_rules checks that they agree).
            if 10 in line or 13 in line or 0 in line or 27 in line:
                raise KatcpSyntaxError("Unescaped special character %r in message." % (
                    next(chr(c) for c in line if c in _UNESCAPED_SPECIALS),))
            # bytes.split() is much faster than a regex but also splits on \v and \f,
            # which are not separators in KATCP, so it is only used when they are absent.
            if 11 in line or 12 in line:
                parts = _BLANK_SPLIT(line.rstrip(b" \t"))
            else:
                parts = line.split()
        header = parts[0]
        name: Optional[str]
        if header[-1] == 93:  # b"]": an id, which is short and follows a cached name
            last = self._last_header
            if header == last[0]:
                name, mid = last[1], last[2]
            else:
                # partition() rather than find() and two slices: about 0.1 us less.
                name_part, _, mid = header.partition(b"[")
                name = _header_names.get(name_part)
                mid = mid[:-1]
                if name is None or not mid.isdigit():
                    name, mid = self._parse_header(header)
                if mtype == _INFORM:  # requests and replies do not repeat their header
                    self._last_header = (header, name, mid)
        else:
            # Keyed whole (most informs, and v4 requests and replies): one lookup.
            name = _header_names.get(header)
            mid = None
            if name is None:
                name, mid = self._parse_header(header)
        del parts[0]  # in place: a list less per message
        arguments = parts
        if 92 in line and arguments:
            arguments = _unescape_all(arguments)
        # Message._from_wire(), inlined: this makes every message received.
        msg = _new_message(Message)
        msg.mtype = mtype
        msg.name = name
        msg.arguments = arguments
        msg.mid = mid
        return msg

    @staticmethod
    def _parse_header(header: bytes) -> Tuple[str, Optional[bytes]]:
        match = _HEADER_RE.match(header, 1)
        if match is None:
            raise KatcpSyntaxError("Bad message name (and possibly id) %s." % (show_repr(header[1:]),))
        name = match.group(1).decode("ascii")
        mid = match.group(2)
        if len(_header_names) < _NAME_CACHE_MAX:
            # Keyed without the id, which the fast path in parse() strips off.
            _header_names[header[:match.end(1)]] = name
        return name, mid

