"""Core KATCP classes: messages, the message parser, protocol flags, sensors, exceptions
and the small asynchronous helpers shared by clients and servers.

Nothing here does I/O: the codec turns bytes into :class:`Message` objects and back.
"""

import asyncio
import concurrent.futures
import functools
import logging
import numbers
import re
import threading
import time
from collections import defaultdict, namedtuple
from datetime import timedelta
from typing import Any, Callable, Dict, Iterable, Optional, Set, Tuple, Union

import tornado.concurrent
import tornado.gen
import tornado.ioloop

logger = logging.getLogger(__name__)

SEC_TO_MS_FAC = 1000
MS_TO_SEC_FAC = 1.0 / 1000
DEFAULT_KATCP_MAJOR = 5
SEC_TS_KATCP_MAJOR = 5
FLOAT_TS_KATCP_MAJOR = 4
MID_KATCP_MAJOR = 5
VERSION_CONNECT_KATCP_MAJOR = 5
INTERFACE_CHANGED_KATCP_MAJOR = 5


# ---------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------

class KatcpError(Exception):
    """Base class for KATCP errors raised by clients and version checks."""


class KatcpClientError(KatcpError):
    """Raised by KATCP clients when an error occurs."""


class KatcpClientDisconnected(KatcpClientError):
    """Raised when trying to send a message to a disconnected server."""


class KatcpVersionError(KatcpError):
    """Raised when using a feature the remote KATCP protocol version does not support."""


class KatcpDeviceError(Exception):
    """Raised by KATCP servers when errors occur (deprecated)."""


class KatcpSyntaxError(ValueError):
    """Raised by parsers when encountering a syntax error."""


class KatcpTypeError(TypeError):
    """Raised by parsers when encountering invalid types."""


class FailReply(Exception):
    """Raised by request handlers to indicate a failure.

    The server replies ``!name fail <message>`` instead of sending a traceback.
    """


class AsyncReply(Exception):
    """Raised by a request handler to indicate it will reply later."""


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def encode_utf8_with_error_log(arg):
    """Return byte string encoded with UTF-8, but log and replace on error.

    Parameters
    ----------
    arg : str
        Text to encode.

    Returns
    -------
    encoded : bytes
        UTF-8 bytes; unencodable characters (lone surrogates) become ``?``.
    """
    try:
        return arg.encode("utf-8")
    except UnicodeEncodeError:
        logger.error("Error encoding message argument to UTF-8, replacing invalid "
                     "characters: %r", arg)
        return arg.encode("utf-8", errors="replace")


def convert_method_name(prefix, name):
    """Convert a method name to the corresponding KATCP message name.

    Parameters
    ----------
    prefix : str
        Method prefix such as ``'request_'``, stripped if present.
    name : str
        Python method name, e.g. ``'request_sensor_list'`` or ``'sensor_list'``.

    Returns
    -------
    katcp_name : str
        The KATCP name, e.g. ``'sensor-list'``.
    """
    if name.startswith(prefix):
        name = name[len(prefix):]
    return name.replace("_", "-")


def steal_docstring_from(obj):
    """Decorator that lets you steal a docstring from another object.

    Parameters
    ----------
    obj : object
        Object whose ``__doc__`` is copied onto the decorated function.
    """
    def deco(fn):
        fn.__doc__ = obj.__doc__
        return fn
    return deco


def hashable_identity(obj):
    """Generate a hashable ID that is stable for methods etc.

    Bound methods are re-created on each attribute access, so they are identified by
    their function and instance rather than by ``id()``.

    Parameters
    ----------
    obj : object
        Object to identify.

    Returns
    -------
    identity : hashable
    """
    if hasattr(obj, "__func__"):
        return (id(obj.__func__), id(obj.__self__))
    if isinstance(obj, (str, bytes)):
        return obj
    return id(obj)


class AttrDict(dict):
    """Dict-like object allowing attribute access to keys."""

    def __getattr__(self, attr):
        try:
            return self[attr]
        except KeyError:
            raise AttributeError(attr)

    def __setattr__(self, attr, value):
        self[attr] = value


class DefaultAttrDict(defaultdict):
    """Similar to AttrDict but adds `collections.defaultdict` functionality."""

    def __getattr__(self, attr):
        # Only called when normal lookup fails; defaultdict semantics create the key.
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self[attr]

    def __setattr__(self, attr, value):
        self[attr] = value


# ---------------------------------------------------------------------------
# Message codec
# ---------------------------------------------------------------------------

_ESCAPES = {
    b"\\": b"\\\\",
    b" ": b"\\_",
    b"\0": b"\\0",
    b"\n": b"\\n",
    b"\r": b"\\r",
    b"\x1b": b"\\e",
    b"\t": b"\\t",
}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}
_UNESCAPES[b"\\@"] = b""

_ESCAPE_SUB = functools.partial(re.compile(rb"[\\ \0\n\r\x1b\t]").sub,
                                lambda m: _ESCAPES[m.group()])
_UNESCAPE_SUB = functools.partial(re.compile(rb"\\.?", re.DOTALL).sub,
                                  lambda m: _UNESCAPES[m.group()])
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-]*\Z")
_HEADER_RE = re.compile(rb"([A-Za-z][A-Za-z0-9\-]*)(?:\[([0-9]+)\])?\Z")
_BLANK_SPLIT = re.compile(rb"[ \t]+").split
_UNESCAPED_SPECIALS = frozenset(b"\n\r\0\x1b")

# Names already validated (str) and header bytes already decoded (bytes -> str).
# Bounded so that a peer sending endless new names cannot grow them forever.
_NAME_CACHE_MAX = 4096
_valid_names: Set[str] = set()
_header_names: Dict[bytes, str] = {}


def _escape_argument(arg):
    if not arg:
        return b"\\@"
    return _ESCAPE_SUB(arg)


def _check_name(name):
    if type(name) is not str:
        if isinstance(name, bytes):
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


def _format_mid(mid):
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


def _copy_mid(mid):
    # A request's mid is normally already canonical bytes; only re-check otherwise.
    if mid is None or type(mid) is bytes:
        return mid
    return _format_mid(mid)


def _format_other(arg):
    # Subclasses (IntEnum, numpy scalars, str subclasses ...) and unencodable text take
    # the slow path.
    if isinstance(arg, bool):
        return b"1" if arg else b"0"
    if isinstance(arg, numbers.Integral):
        return b"%d" % arg
    if isinstance(arg, numbers.Real):
        return repr(float(arg)).encode("ascii")
    if isinstance(arg, (bytes, bytearray, memoryview)):
        return bytes(arg)
    if arg is None:
        return b""
    return encode_utf8_with_error_log(str(arg))


# Exact-type dispatch to C-level callables: no Python frame per argument.
# str.encode raises on lone surrogates; callers then fall back to _format_other.
_FORMATTERS: Dict[type, Callable[[Any], bytes]] = {
    str: str.encode,
    bool: (b"0", b"1").__getitem__,
    int: b"%d".__mod__,
    float: b"%r".__mod__,
}
_get_formatter = _FORMATTERS.get


class Message:
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

    __slots__ = ("mtype", "name", "arguments", "mid")

    REQUEST, REPLY, INFORM = range(3)

    # Reply codes, as they appear in ``reply.arguments[0]``.
    OK, FAIL, INVALID = b"ok", b"fail", b"invalid"

    TYPE_NAMES = {REQUEST: "REQUEST", REPLY: "REPLY", INFORM: "INFORM"}
    # The wire's type characters, so bytes like everything else on the wire.
    TYPE_SYMBOLS = {REQUEST: b"?", REPLY: b"!", INFORM: b"#"}
    TYPE_SYMBOL_LOOKUP = {v: k for k, v in TYPE_SYMBOLS.items()}

    def __init__(self, mtype: int, name: str, arguments: Optional[Iterable[Any]] = None,
                 mid: Union[int, str, bytes, None] = None) -> None:
        if mtype not in _TYPE_BYTES:
            raise KatcpSyntaxError("Invalid message type %r." % (mtype,))
        self.mtype = mtype
        self.name = (name if name.__class__ is str and name in _valid_names
                     else _check_name(name))
        self.mid = None if mid is None else _format_mid(mid)
        if arguments is None or arguments is _NO_ARGUMENTS:
            self.arguments = []
        else:
            try:
                self.arguments = [
                    arg if type(arg) is bytes else _get_formatter(type(arg), _format_other)(arg)
                    for arg in arguments
                ]
            except UnicodeEncodeError:
                self.arguments = [arg if type(arg) is bytes else _format_other(arg)
                                  for arg in arguments]

    @classmethod
    def _from_wire(cls, mtype, name, arguments, mid):
        # The parser has validated everything already.
        msg = cls.__new__(cls)
        msg.mtype = mtype
        msg.name = name
        msg.arguments = arguments
        msg.mid = mid
        return msg

    @staticmethod
    def format_argument(arg: Any) -> bytes:
        """Format a Message argument to a byte string.

        Parameters
        ----------
        arg : bytes, str, bool, int, float or None
            Value to format (str is UTF-8 encoded, bool is ``1``/``0``, float uses
            ``repr``, None becomes the empty argument).

        Returns
        -------
        formatted : bytes
        """
        if type(arg) is bytes:
            return arg
        try:
            return _get_formatter(type(arg), _format_other)(arg)
        except UnicodeEncodeError:
            return _format_other(arg)

    def copy(self) -> "Message":
        """Return a shallow copy of the message object and its arguments.

        Returns
        -------
        msg : Message
            A copy of the message object.
        """
        return self._from_wire(self.mtype, self.name, list(self.arguments), self.mid)

    def __bytes__(self) -> bytes:
        head = _TYPE_BYTES[self.mtype] + self.name.encode("ascii")
        if self.mid is not None:
            head += b"[" + self.mid + b"]"
        args = self.arguments
        if not args:
            return head
        body = b" ".join(args)
        # Fast path: no empty argument and no byte needing an escape besides the
        # separating spaces, which is the case for the bulk of real traffic.
        # (int membership is a plain memchr, several times faster than b"x" in body)
        if (body.count(b" ") == len(args) - 1 and 92 not in body and 9 not in body
                and 10 not in body and 13 not in body and 0 not in body and 27 not in body
                and b"" not in args):
            return head + b" " + body
        return head + b" " + b" ".join([_escape_argument(arg) for arg in args])

    def __str__(self):
        return self.__bytes__().decode("utf-8", errors="backslashreplace")

    def __repr__(self):
        name = self.name
        if self.mid is not None:
            name = "%s[%s]" % (name, self.mid.decode("ascii"))
        shown = []
        for arg in self.arguments:
            # As on the wire (escaped), but an empty argument shows as b''.
            arg = _ESCAPE_SUB(arg)
            if len(arg) > 1000:
                arg = arg[:1000] + b"..."
            shown.append(repr(arg))
        return "<Message %s %s (%s)>" % (
            self.TYPE_NAMES[self.mtype].lower(), name, ", ".join(shown))

    def __eq__(self, other):
        if not isinstance(other, Message):
            return NotImplemented
        return (self.mtype == other.mtype and self.name == other.name
                and self.mid == other.mid and self.arguments == other.arguments)

    def __ne__(self, other):
        result = self.__eq__(other)
        if result is NotImplemented:
            return result
        return not result

    __hash__ = None  # type: ignore[assignment]

    def reply_ok(self) -> bool:
        """Return True if this is a reply and its first argument is 'ok'."""
        return (self.mtype == self.REPLY and bool(self.arguments)
                and self.arguments[0] == self.OK)

    @classmethod
    def request(cls, name: str, *args: Any, mid: Union[int, str, bytes, None] = None
                ) -> "Message":
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
    def reply(cls, name: str, *args: Any, mid: Union[int, str, bytes, None] = None
              ) -> "Message":
        """Helper method for creating reply messages.

        Parameters
        ----------
        name : str
            The name of the message.
        args : list of objects (float, int, bool, bytes, or str)
            The message arguments.
        mid : str or bytes (digits only), int, or None
            Message ID to use or None (default) for no Message ID.
        """
        return cls(cls.REPLY, name, args, mid)

    @classmethod
    def inform(cls, name: str, *args: Any, mid: Union[int, str, bytes, None] = None
               ) -> "Message":
        """Helper method for creating inform messages.

        Parameters
        ----------
        name : str
            The name of the message.
        args : list of objects (float, int, bool, bytes, or str)
            The message arguments.
        mid : str or bytes (digits only), int, or None
            Message ID to use or None (default) for no Message ID.
        """
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
        msg = cls(cls.REPLY, req_msg.name, args)
        msg.mid = _copy_mid(req_msg.mid)
        return msg

    @classmethod
    def reply_inform(cls, req_msg: "Message", *args: Any) -> "Message":
        """Helper method for creating inform messages in reply to a request.

        Copies the message name and message identifier from the request message.

        Parameters
        ----------
        req_msg : Message
            The request message that this inform is in reply to.
        args : list of objects (float, int, bool, bytes, or str)
            The message arguments except name.
        """
        msg = cls(cls.INFORM, req_msg.name, args)
        msg.mid = _copy_mid(req_msg.mid)
        return msg


_TYPE_BYTES = Message.TYPE_SYMBOLS
_NO_ARGUMENTS = ()  # the empty tuple is a singleton: Message.request(name) passes it
_TYPE_FROM_BYTE = {v[0]: k for k, v in Message.TYPE_SYMBOLS.items()}


class MessageParser:
    """Parses lines into Message objects."""

    ESCAPE_LOOKUP = {k[1:]: v for k, v in _UNESCAPES.items()}
    TYPE_SYMBOL_LOOKUP = Message.TYPE_SYMBOL_LOOKUP

    def parse(self, line: bytes) -> Message:
        """Parse a line, return a Message.

        Parameters
        ----------
        line : bytes
            The line to parse (should not contain the terminating newline or carriage
            return).

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
        if type(line) is not bytes:
            # Text has no defined encoding on the wire: like katcp 0.9.3, refuse it.
            if not isinstance(line, (bytearray, memoryview)):
                raise KatcpTypeError("Expected a bytes line, got %r." % (type(line),))
            line = bytes(line)
        mtype = _TYPE_FROM_BYTE.get(line[0]) if line else None
        if mtype is None:
            if not line.strip(b" \t"):
                raise KatcpSyntaxError("Empty message received.")
            raise KatcpSyntaxError("Bad type character %r." % (
                line[:1].decode("utf-8", "backslashreplace"),))
        # Newline, carriage return, NUL and ESC may only appear escaped (spec 2.3).
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
        if header[-1] == 93:  # b"]": an id, which is short and follows a cached name
            bracket = header.find(b"[")
            name = _header_names.get(header[:bracket])
            mid = header[bracket + 1:-1]
            if name is None or not mid.isdigit():
                name, mid = self._parse_header(header)
        else:
            name = _header_names.get(header)
            mid = None
            if name is None:
                name, mid = self._parse_header(header)
        arguments = parts[1:]
        if 92 in line:
            try:
                arguments = [_UNESCAPE_SUB(arg) if 92 in arg else arg for arg in arguments]
            except KeyError as exc:
                raise KatcpSyntaxError("Invalid escape sequence %r." % (
                    exc.args[0].decode("utf-8", "backslashreplace"),)) from None
        return Message._from_wire(mtype, name, arguments, mid)

    @staticmethod
    def _parse_header(header):
        match = _HEADER_RE.match(header, 1)
        if match is None:
            raise KatcpSyntaxError("Bad message name (and possibly id) %r." % (
                header[1:].decode("utf-8", "backslashreplace"),))
        name = match.group(1).decode("ascii")
        mid = match.group(2)
        if len(_header_names) < _NAME_CACHE_MAX:
            # Keyed without the id, which the fast path in parse() strips off.
            _header_names[header[:match.end(1)]] = name
        return name, mid


# ---------------------------------------------------------------------------
# Protocol flags
# ---------------------------------------------------------------------------

class ProtocolFlags:
    """Utility class for handling KATCP protocol flags.

    Parameters
    ----------
    major : int
        Major version number.
    minor : int
        Minor version number.
    flags : iterable of bytes (or str)
        One-character protocol flags, e.g. ``ProtocolFlags.MULTI_CLIENT``; they are
        stored as bytes, as on the wire.

    Raises
    ------
    ValueError
        If a flag needs a newer KATCP version than `major`.`minor`.
    """

    MULTI_CLIENT = b"M"
    MESSAGE_IDS = b"I"
    REQUEST_TIMEOUT_HINTS = b"T"
    BULK_SET_SENSOR_SAMPLING = b"B"

    # The first (major, minor) that defines each flag.
    _FLAG_SINCE = {MESSAGE_IDS: (MID_KATCP_MAJOR, 0),
                   REQUEST_TIMEOUT_HINTS: (5, 1),
                   BULK_SET_SENSOR_SAMPLING: (5, 1)}

    VERSION_RE = re.compile(rb"^(?P<major>\d+)\.(?P<minor>\d+)(?:-(?P<flags>.*))?$")

    def __init__(self, major: Optional[int], minor: Optional[int],
                 flags: Iterable[Union[bytes, str]]) -> None:
        self.major = major
        self.minor = minor
        self.flags = {self._as_flag(flag) for flag in flags}
        if major is not None:
            for flag in self.flags:
                since = self._FLAG_SINCE.get(flag)
                if since is not None and (major, minor or 0) < since:
                    raise ValueError("Protocol flag %r needs KATCP %d.%d or later, not "
                                     "%s.%s." % (flag.decode("latin-1"), since[0], since[1],
                                                 major, minor))
        self.multi_client = self.MULTI_CLIENT in self.flags
        self.message_ids = self.MESSAGE_IDS in self.flags
        self.request_timeout_hints = self.REQUEST_TIMEOUT_HINTS in self.flags
        self.bulk_set_sensor_sampling = self.BULK_SET_SENSOR_SAMPLING in self.flags

    @staticmethod
    def _as_flag(flag):
        # Flags given as text (as this library took them before) mean the same bytes;
        # iterating a bytes string such as b"MI" gives ints.
        if isinstance(flag, str):
            return flag.encode("ascii")
        if isinstance(flag, int):
            return bytes((flag,))
        return bytes(flag)

    def supports(self, flag):
        """Return True if `flag` is set.

        Parameters
        ----------
        flag : bytes or str
            One-character protocol flag.
        """
        return self._as_flag(flag) in self.flags

    def __eq__(self, other):
        if not isinstance(other, ProtocolFlags):
            return NotImplemented
        return (self.major, self.minor, self.flags) == (other.major, other.minor, other.flags)

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]

    def __str__(self):
        flags = b"".join(sorted(self.flags)).decode("latin-1")
        return "%s.%s%s" % (self.major, self.minor, "-" + flags if flags else "")

    def __repr__(self):
        return "<ProtocolFlags %s>" % (self,)

    @classmethod
    def parse_version(cls, version_str: Union[str, bytes]) -> "ProtocolFlags":
        """Create a ProtocolFlags object from a version string.

        Parameters
        ----------
        version_str : bytes or str
            The version string from a ``#version-connect katcp-protocol`` inform,
            e.g. ``b'5.0-IM'``.

        Returns
        -------
        flags : ProtocolFlags
            Major and minor are None when the string cannot be parsed.
        """
        if isinstance(version_str, str):
            version_str = version_str.encode("utf-8")
        match = cls.VERSION_RE.match(version_str)
        if match is None:
            return cls(None, None, set())
        flags = match.group("flags") or b""
        return cls(int(match.group("major")), int(match.group("minor")),
                   {flags[i:i + 1] for i in range(len(flags))})


# ---------------------------------------------------------------------------
# Device metaclasses
# ---------------------------------------------------------------------------

class DeviceMetaclass(type):
    """Metaclass for DeviceServer and DeviceClient classes.

    Collects up methods named request_* and adds them to a dictionary of supported
    methods on the class. All request_* methods must have a doc string so that help
    can be generated. The same is done for inform_* and reply_* methods.
    """

    _PREFIXES = (("request_", "_request_handlers"),
                 ("inform_", "_inform_handlers"),
                 ("reply_", "_reply_handlers"))

    # Handlers that must be documented: ?help shows the docstrings of requests.
    _DOCSTRING_REQUIRED = ("request_",)

    def __init__(mcs, name, bases, dct):
        super().__init__(name, bases, dct)
        for _prefix, attr in mcs._PREFIXES:
            setattr(mcs, attr, {})
        for attr_name in dir(mcs):
            for prefix, handlers_attr in mcs._PREFIXES:
                if not attr_name.startswith(prefix):
                    continue
                handler = getattr(mcs, attr_name)
                if not callable(handler):
                    break
                if prefix in type(mcs)._DOCSTRING_REQUIRED:
                    assert handler.__doc__ is not None, (
                        "Handler %s.%s has no docstring." % (name, attr_name))
                if mcs.check_protocol(handler):
                    getattr(mcs, handlers_attr)[convert_method_name(prefix, attr_name)] = handler
                break

    def check_protocol(mcs, handler):
        """Return False if handler should be filtered.

        Parameters
        ----------
        handler : function
            A request, inform or reply handler.
        """
        return True


class DeviceServerMetaclass(DeviceMetaclass):
    """Specialisation of DeviceMetaclass for Device Servers.

    Handlers decorated with ``minimum_katcp_version`` or ``has_katcp_protocol_flags``
    are left out when the class's ``PROTOCOL_INFO`` does not satisfy them. A server's
    inform handlers must have docstrings too, as in katcp 0.9.
    """

    _DOCSTRING_REQUIRED = ("request_", "inform_")

    def check_protocol(mcs, handler):
        """True if the current server's protocol flags satisfy handler requirements.

        Parameters
        ----------
        handler : function
            A request, inform or reply handler.
        """
        protocol_info = getattr(mcs, "PROTOCOL_INFO", None)
        if protocol_info is None:
            return True
        min_version = getattr(handler, "_minimum_katcp_version", None)
        if min_version is not None and (protocol_info.major, protocol_info.minor) < tuple(
                min_version):
            return False
        required_flags = getattr(handler, "_has_katcp_protocol_flags", None)
        if required_flags:
            return all(protocol_info.supports(flag) for flag in required_flags)
        return True


# ---------------------------------------------------------------------------
# Sensors
# ---------------------------------------------------------------------------

# Sensor defines a classmethod named float, so its annotations use this alias.
_Seconds = float

Reading = namedtuple("Reading", ["timestamp", "status", "value"])
Reading.__doc__ = "Sensor reading as a (timestamp, status, value) tuple."


def _ensure_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


# The one rule for seconds <-> milliseconds (KATCP v4 wires carry milliseconds), used by
# sensors, kattypes, #log informs, clients and sampling parameters alike.

def _seconds_to_ms(seconds):
    """Milliseconds for a time in seconds (a number; an int stays an int).

    Float noise below a nanosecond is rounded away, so that 1.001 s (which times 1000
    is 1000.9999999999999) is 1001.0 ms.
    """
    return round(seconds * SEC_TO_MS_FAC, 6)


def _whole_ms(seconds):
    """Whole milliseconds for a time in seconds, truncated like katcp 0.9.3.

    1234567890.5007 s is 1234567890500 ms, and 1.001 s is 1001 ms (see above).
    """
    return int(_seconds_to_ms(float(seconds)))


def _ms_to_seconds(ms):
    """Seconds, as a float, for a time in milliseconds (division rounds correctly)."""
    return float(ms) / SEC_TO_MS_FAC


def _format_timestamp(timestamp, major):
    """Wire form of a time in seconds: seconds for KATCP v5+, whole ms before."""
    if major >= SEC_TS_KATCP_MAJOR:
        return b"%.6f" % timestamp
    return b"%d" % _whole_ms(timestamp)


def _parse_timestamp(raw, major):
    """Seconds (float) from a wire timestamp: seconds for KATCP v5+, ms before."""
    try:
        value = float(raw)
    except (ValueError, TypeError):
        raise ValueError("Could not parse value '%s' as timestamp." % (_show(raw),))
    if major < SEC_TS_KATCP_MAJOR:
        value = _ms_to_seconds(value)
    return value


def _show(raw):
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="backslashreplace")
    return raw


class _SensorCodec:
    """How one sensor type formats, parses and checks its values and params."""

    name: str = ""
    default: Any = None

    def encode(self, value, major):
        raise NotImplementedError

    def decode(self, raw, major):
        raise NotImplementedError

    def check(self, value, params, major):
        """Raise ValueError if `value` is not valid for these params."""

    def default_for(self, params):
        return self.default

    def check_params(self, params):
        if params:
            raise ValueError("Sensor type %r takes no parameters." % (self.name,))


class _NumberCodec(_SensorCodec):

    number_type: Any = None
    label: str = ""

    def decode(self, raw, major):
        try:
            return self.number_type(raw)
        except (ValueError, TypeError):
            raise ValueError("Could not parse value %r as %s." % (_show(raw), self.name))

    def check_params(self, params):
        if not params:
            return
        if len(params) != 2:
            raise ValueError("%s sensor params must be [min, max], got %r."
                             % (self.label, params))
        for param in params:
            self.check_type(param)
        if params[0] > params[1]:
            raise ValueError("%s sensor minimum %r is greater than maximum %r."
                             % (self.label, params[0], params[1]))

    def default_for(self, params):
        # The type's zero when the range allows it (as the reference reports for
        # never-set sensors), else the minimum.
        if params and not params[0] <= self.default <= params[1]:
            return params[0]
        return self.default

    def check_type(self, value):
        raise NotImplementedError

    def check(self, value, params, major):
        # [min, max] describe the expected range for clients (?sensor-list); the
        # reference accepts readings outside it (sensor-float-format.txt sets 1e22
        # and -inf on a [-50.0, 150.0] sensor), so only the type is checked.
        self.check_type(value)


class _IntegerCodec(_NumberCodec):
    name = "integer"
    label = "Integer"
    default = 0
    number_type = int

    def encode(self, value, major):
        return b"%d" % value

    def check_type(self, value):
        if not isinstance(value, numbers.Integral):
            raise ValueError("Integer sensor value must be an integer, not %r." % (value,))


class _FloatCodec(_NumberCodec):
    name = "float"
    label = "Float"
    default = 0.0
    number_type = float

    def encode(self, value, major):
        return repr(float(value)).encode("ascii")

    def check_type(self, value):
        if not isinstance(value, numbers.Real):
            raise ValueError("Float sensor value must be a real number, not %r." % (value,))


class _BooleanCodec(_SensorCodec):
    name = "boolean"
    default = False

    def encode(self, value, major):
        return b"1" if value else b"0"

    def decode(self, raw, major):
        if raw == b"1":
            return True
        if raw == b"0":
            return False
        raise ValueError("Boolean value must be 0 or 1, not %r." % (_show(raw),))

    def check(self, value, params, major):
        if not isinstance(value, (bool, numbers.Integral)) or value not in (0, 1):
            raise ValueError("Boolean sensor value must be True or False, not %r." % (value,))


class _LruCodec(_SensorCodec):
    name = "lru"
    LRU_NOMINAL, LRU_ERROR = range(2)
    LRU_VALUES = {LRU_NOMINAL: b"nominal", LRU_ERROR: b"error"}
    LRU_CONSTANTS = {v: k for k, v in LRU_VALUES.items()}
    default = LRU_NOMINAL

    def encode(self, value, major):
        try:
            return self.LRU_VALUES[value]
        except KeyError:
            raise ValueError("Invalid lru value %r." % (value,))

    def decode(self, raw, major):
        try:
            return self.LRU_CONSTANTS[raw]
        except KeyError:
            raise ValueError("Lru value must be 'nominal' or 'error', not %r." % (_show(raw),))

    def check(self, value, params, major):
        if value not in self.LRU_VALUES:
            raise ValueError("Lru value must be Sensor.LRU_NOMINAL or Sensor.LRU_ERROR, "
                             "not %r." % (value,))


class _StringCodec(_SensorCodec):
    # Like katcp 0.9.3, any value is accepted (no check()) and formatted with str().
    name = "string"
    default = ""

    def encode(self, value, major):
        if isinstance(value, bytes):
            return value
        return encode_utf8_with_error_log(str(value))

    def decode(self, raw, major):
        # Invalid UTF-8 raises UnicodeDecodeError, a ValueError.
        return raw.decode("utf-8")


class _DiscreteCodec(_StringCodec):
    name = "discrete"

    def check_params(self, params):
        if not params:
            raise ValueError("Discrete sensors need a non-empty list of values.")
        for param in params:
            if not isinstance(param, str):
                raise ValueError("Discrete sensor values must be str or bytes, not %r."
                                 % (param,))

    def default_for(self, params):
        return params[0]

    def check(self, value, params, major):
        if _ensure_str(value) not in params:
            raise ValueError("Discrete value %r is not one of %s."
                             % (_show(value), ", ".join(params)))


class _TimestampCodec(_SensorCodec):
    name = "timestamp"
    default = 0.0

    def encode(self, value, major):
        return _format_timestamp(float(value), major)

    def decode(self, raw, major):
        return _parse_timestamp(raw, major)

    def check(self, value, params, major):
        if not isinstance(value, numbers.Real):
            raise ValueError("Timestamp sensor value must be a number of seconds, not %r."
                             % (value,))


class _AddressCodec(_SensorCodec):
    name = "address"
    NULL = ("0.0.0.0", None)
    default = NULL
    _IPV6_RE = re.compile(r"^\[(?P<host>[^\[\]]*)\](?::(?P<port>[^:]*))?$")
    _IPV4_RE = re.compile(r"^(?P<host>[^:\[\]]*)(?::(?P<port>[^:]*))?$")

    def encode(self, value, major):
        host, port = value
        host = _ensure_str(host)
        if ":" in host:
            host = "[%s]" % host
        if port is None:
            return host.encode("ascii")
        return ("%s:%d" % (host, port)).encode("ascii")

    def decode(self, raw, major):
        text = _show(raw)
        match = self._IPV6_RE.match(text) or self._IPV4_RE.match(text)
        if match is None or not match.group("host"):
            raise ValueError("Could not parse address %r." % (text,))
        port = match.group("port")
        if port is not None:
            if not port.isdigit():
                raise ValueError("Could not parse port in address %r." % (text,))
            port = int(port)
        return (match.group("host"), port)

    def check(self, value, params, major):
        try:
            host, port = value
        except (TypeError, ValueError):
            raise ValueError("Address sensor value must be a (host, port) tuple, not %r."
                             % (value,))
        if not isinstance(host, (str, bytes)):
            raise ValueError("Address host must be a string, not %r." % (host,))
        if port is not None and (not isinstance(port, numbers.Integral)
                                 or not 0 <= port <= 65535):
            raise ValueError("Address port must be None or 0-65535, not %r." % (port,))


class Sensor:
    """Instantiate a new sensor object.

    Parameters
    ----------
    sensor_type : Sensor type constant
        The type of sensor (or one of the Python types int, float, bool, str).
    name : str
        The name of the sensor.
    description : str, optional
        A short description of the sensor.
    units : str, optional
        The units of the sensor value. May be the empty string if there are no
        applicable units.
    params : list, optional
        [min, max] for INTEGER and FLOAT (optional), all possible values for DISCRETE
        (required); omitted for other types.
    default : object, optional
        An initial value for the sensor. By default this is determined by the sensor
        type (for INTEGER and FLOAT sensors with params: 0 if in range, else the
        minimum).
    initial_status : int enum or None, optional
        An initial status for the sensor. If None, defaults to Sensor.UNKNOWN.
    """

    INTEGER, FLOAT, BOOLEAN, LRU, DISCRETE, STRING, TIMESTAMP, ADDRESS = range(8)

    SENSOR_TYPES = {
        INTEGER: _IntegerCodec(),
        FLOAT: _FloatCodec(),
        BOOLEAN: _BooleanCodec(),
        LRU: _LruCodec(),
        DISCRETE: _DiscreteCodec(),
        STRING: _StringCodec(),
        TIMESTAMP: _TimestampCodec(),
        ADDRESS: _AddressCodec(),
    }
    SENSOR_TYPE_LOOKUP = {codec.name: stype for stype, codec in SENSOR_TYPES.items()}

    UNKNOWN, NOMINAL, WARN, ERROR, FAILURE, UNREACHABLE, INACTIVE = range(7)

    STATUSES = {
        UNKNOWN: "unknown",
        NOMINAL: "nominal",
        WARN: "warn",
        ERROR: "error",
        FAILURE: "failure",
        UNREACHABLE: "unreachable",
        INACTIVE: "inactive",
    }
    STATUS_NAMES = {v: k for k, v in STATUSES.items()}
    STATUSES_RAW = {k: v.encode("ascii") for k, v in STATUSES.items()}
    STATUS_NAMES_RAW = {v: k for k, v in STATUSES_RAW.items()}

    LRU_NOMINAL = _LruCodec.LRU_NOMINAL
    LRU_ERROR = _LruCodec.LRU_ERROR
    LRU_VALUES = _LruCodec.LRU_VALUES
    LRU_CONSTANTS = _LruCodec.LRU_CONSTANTS

    MILLISECOND = SEC_TO_MS_FAC

    PYTHON_TYPE_TO_SENSOR = {bool: BOOLEAN, int: INTEGER, float: FLOAT, str: STRING,
                             bytes: STRING}

    def __init__(self, sensor_type, name, description=None, units=None, params=None,
                 default=None, initial_status=None):
        sensor_type = self.PYTHON_TYPE_TO_SENSOR.get(sensor_type, sensor_type)
        if sensor_type not in self.SENSOR_TYPES:
            raise ValueError("Invalid sensor type %r." % (sensor_type,))
        if initial_status is None:
            initial_status = self.UNKNOWN
        if initial_status not in self.STATUSES:
            raise ValueError("Invalid initial status %r for sensor %r."
                             % (initial_status, name))
        codec = self.SENSOR_TYPES[sensor_type]
        self._sensor_type = sensor_type
        self._codec = codec
        self.name = _ensure_str(name)
        self.units = _ensure_str(units) if units is not None else ""
        self.stype = codec.name
        if sensor_type == self.DISCRETE and params is not None:
            params = [_ensure_str(p) for p in params]
        params = list(params) if params else []
        codec.check_params(params)
        self.params = params
        self.formatted_params = [codec.encode(p, DEFAULT_KATCP_MAJOR) for p in params]
        if description is None:
            description = "%s sensor '%s' %s" % (
                self.stype.capitalize(), self.name,
                "in unit %s" % self.units if self.units else "with no unit")
        self.description = _ensure_str(description)
        if default is None:
            default = codec.default_for(params)
        self._observers = set()
        self._reading = Reading(time.time(), initial_status, default)

    def __repr__(self):
        return "<%s.%s object name=%r at 0x%x>" % (
            type(self).__module__, type(self).__name__, self.name, id(self))

    # -- typed constructors -------------------------------------------------

    @classmethod
    def integer(cls, name, description=None, unit="", params=None, default=None,
                initial_status=None):
        """Instantiate a new integer sensor object.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str
            A short description of the sensor.
        unit : str
            The units of the sensor value.
        params : list
            [min, max] -- minimum and maximum values of the sensor.
        default : int
            An initial value for the sensor. Defaults to 0 (the minimum if 0 is out
            of range).
        initial_status : int enum or None
            An initial status for the sensor. If None, defaults to Sensor.UNKNOWN.
        """
        return cls(cls.INTEGER, name, description, unit, params, default, initial_status)

    @classmethod
    def float(cls, name, description=None, unit="", params=None, default=None,
              initial_status=None):
        """Instantiate a new float sensor object.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str
            A short description of the sensor.
        unit : str
            The units of the sensor value.
        params : list
            [min, max] -- minimum and maximum values of the sensor.
        default : float
            An initial value for the sensor. Defaults to 0.0 (the minimum if 0.0 is
            out of range).
        initial_status : int enum or None
            An initial status for the sensor. If None, defaults to Sensor.UNKNOWN.
        """
        return cls(cls.FLOAT, name, description, unit, params, default, initial_status)

    @classmethod
    def boolean(cls, name, description=None, unit="", default=None, initial_status=None):
        """Instantiate a new boolean sensor object.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str
            A short description of the sensor.
        unit : str
            The units of the sensor value.
        default : bool
            An initial value for the sensor. Defaults to False.
        initial_status : int enum or None
            An initial status for the sensor. If None, defaults to Sensor.UNKNOWN.
        """
        return cls(cls.BOOLEAN, name, description, unit, None, default, initial_status)

    @classmethod
    def lru(cls, name, description=None, unit="", default=None, initial_status=None):
        """Instantiate a new lru sensor object.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str
            A short description of the sensor.
        unit : str
            The units of the sensor value.
        default : enum, Sensor.LRU_*
            An initial value for the sensor. Defaults to Sensor.LRU_NOMINAL.
        initial_status : int enum or None
            An initial status for the sensor. If None, defaults to Sensor.UNKNOWN.
        """
        return cls(cls.LRU, name, description, unit, None, default, initial_status)

    @classmethod
    def string(cls, name, description=None, unit="", default=None, initial_status=None):
        """Instantiate a new string sensor object.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str
            A short description of the sensor.
        unit : str
            The units of the sensor value.
        default : str
            An initial value for the sensor. Defaults to the empty string.
        initial_status : int enum or None
            An initial status for the sensor. If None, defaults to Sensor.UNKNOWN.
        """
        return cls(cls.STRING, name, description, unit, None, default, initial_status)

    @classmethod
    def discrete(cls, name, description=None, unit="", params=None, default=None,
                 initial_status=None):
        """Instantiate a new discrete sensor object.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str
            A short description of the sensor.
        unit : str
            The units of the sensor value.
        params : [str]
            Sequence of all allowable discrete sensor states.
        default : str
            An initial value for the sensor. Defaults to the first item of params.
        initial_status : int enum or None
            An initial status for the sensor. If None, defaults to Sensor.UNKNOWN.
        """
        return cls(cls.DISCRETE, name, description, unit, params, default, initial_status)

    @classmethod
    def timestamp(cls, name, description=None, unit="", default=None, initial_status=None):
        """Instantiate a new timestamp sensor object.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str
            A short description of the sensor.
        unit : str
            The units of the sensor value; may only be the empty string.
        default : float
            An initial value in seconds since the Unix Epoch. Defaults to 0.
        initial_status : int enum or None
            An initial status for the sensor. If None, defaults to Sensor.UNKNOWN.
        """
        return cls(cls.TIMESTAMP, name, description, unit, None, default, initial_status)

    @classmethod
    def address(cls, name, description=None, unit="", default=None, initial_status=None):
        """Instantiate a new IP address sensor object.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str
            A short description of the sensor.
        unit : str
            The units of the sensor value.
        default : (str, int)
            An initial value for the sensor: (host, port). Defaults to ("0.0.0.0", None).
        initial_status : int enum or None
            An initial status for the sensor. If None, defaults to Sensor.UNKNOWN.
        """
        return cls(cls.ADDRESS, name, description, unit, None, default, initial_status)

    # -- observers ------------------------------------------------------------

    def attach(self, observer: Any) -> None:
        """Attach an observer to this sensor.

        Parameters
        ----------
        observer : object
            Object with an ``update(sensor, reading)`` method that will be called
            when the sensor value is set.
        """
        self._observers.add(observer)

    def detach(self, observer: Any) -> None:
        """Detach an observer from this sensor.

        Parameters
        ----------
        observer : object
            The observer to remove from the set of observers notified when the
            sensor value is set.
        """
        self._observers.discard(observer)

    def notify(self, reading):
        """Notify all observers of changes to this sensor.

        Parameters
        ----------
        reading : Reading
            The reading passed to each observer's ``update(sensor, reading)``.
        """
        # tuple() copies the set atomically under the GIL, so observers may attach or
        # detach from other threads (or from inside update()) while we notify.
        for observer in tuple(self._observers):
            observer.update(self, reading)

    # -- reading and setting ------------------------------------------------

    def read(self) -> Reading:
        """Read the sensor and return a (timestamp, status, value) tuple.

        Returns
        -------
        reading : Reading
            Sensor reading as a (timestamp, status, value) tuple.
        """
        return self._reading

    def status(self) -> int:
        """Read the current sensor status.

        Returns
        -------
        status : enum (int)
            The status of the sensor, one of the keys in Sensor.STATUSES.
        """
        return self._reading.status

    @property
    def _value(self):
        # katcp 0.9.3 kept the value in this attribute; code and tests still read it.
        return self._reading.value

    def value(self) -> Any:
        """Read the current sensor value.

        Returns
        -------
        value : object
            The value of the sensor (the type will be appropriate to the sensor's type).
        """
        return self._reading.value

    def set(self, timestamp: _Seconds, status: int, value: Any) -> None:
        """Set the current value of the sensor.

        Safe to call from any thread: the reading is stored in one assignment.

        Parameters
        ----------
        timestamp : float in seconds
            The time at which the sensor value was determined.
        status : Sensor status constant
            Whether the value represents an error condition or not.
        value : object
            The value of the sensor (the type should be appropriate to the sensor's
            type).
        """
        reading = self._reading = Reading(timestamp, status, value)
        self.notify(reading)

    def set_value(self, value: Any, status: int = NOMINAL, timestamp: Optional[_Seconds] = None,
                  major: int = DEFAULT_KATCP_MAJOR) -> None:
        """Check and then set the value of the sensor.

        Parameters
        ----------
        value : object
            Value of the appropriate type for the sensor.
        status : Sensor status constant
            Whether the value represents an error condition or not.
        timestamp : float in seconds or None
            The time at which the sensor value was determined. Uses current time if
            None.
        major : int
            Major version of KATCP to use when interpreting types.

        Raises
        ------
        ValueError
            If the value is not valid for this sensor.
        """
        self._codec.check(value, self.params, major)
        if status not in self.STATUSES:
            raise ValueError("Invalid status %r for sensor %r." % (status, self.name))
        if timestamp is None:
            timestamp = time.time()
        self.set(timestamp, status, value)

    def set_formatted(self, raw_timestamp, raw_status, raw_value,
                      major=DEFAULT_KATCP_MAJOR):
        """Set the current value of the sensor.

        Parameters
        ----------
        raw_timestamp : bytes
            KATCP formatted timestamp byte string.
        raw_status : bytes
            KATCP formatted sensor status byte string.
        raw_value : bytes
            KATCP formatted sensor value byte string.
        major : int, default = 5
            KATCP major version to use for interpreting the raw values.
        """
        timestamp = _parse_timestamp(raw_timestamp, major)
        status = self.STATUS_NAMES_RAW.get(raw_status)
        if status is None:
            raise ValueError("Invalid sensor status %r." % (_show(raw_status),))
        self.set(timestamp, status, self.parse_value(raw_value, major))

    def format_reading(self, reading, major=DEFAULT_KATCP_MAJOR):
        """Format sensor reading as (timestamp, status, value) tuple of byte strings.

        Parameters
        ----------
        reading : Reading
            Sensor reading as returned by :meth:`read`.
        major : int
            Major version of KATCP to use when interpreting types.

        Returns
        -------
        timestamp : bytes
            KATCP formatted timestamp byte string.
        status : bytes
            KATCP formatted sensor status byte string.
        value : bytes
            KATCP formatted sensor value byte string.
        """
        timestamp, status, value = reading
        return (_format_timestamp(timestamp, major), self.STATUSES_RAW[status],
                self._codec.encode(value, major))

    def read_formatted(self, major: int = DEFAULT_KATCP_MAJOR) -> Tuple[bytes, bytes, bytes]:
        """Read the sensor and return a (timestamp, status, value) tuple of bytes.

        Parameters
        ----------
        major : int
            Major version of KATCP to use when interpreting types.

        Returns
        -------
        timestamp, status, value : bytes
            KATCP formatted byte strings.
        """
        return self.format_reading(self._reading, major)

    def parse_value(self, s_value: bytes, katcp_major: int = DEFAULT_KATCP_MAJOR) -> Any:
        """Parse a value from a byte string.

        Parameters
        ----------
        s_value : bytes
            A byte string value to attempt to convert to a value for the sensor.

        Returns
        -------
        value : object
            A value of a type appropriate to the sensor.

        Raises
        ------
        ValueError
            If the bytes cannot be parsed or the value is not valid for the sensor.
        KatcpTypeError
            If `s_value` is not bytes.
        """
        if not isinstance(s_value, bytes):
            raise KatcpTypeError("Sensor values must be parsed from bytes, not %r."
                                 % (type(s_value),))
        value = self._codec.decode(s_value, katcp_major)
        self._codec.check(value, self.params, katcp_major)
        return value

    @classmethod
    def parse_type(cls, type_string):
        """Parse KATCP formatted type code into Sensor type constant.

        Parameters
        ----------
        type_string : str or bytes
            KATCP formatted type code.

        Returns
        -------
        sensor_type : Sensor type constant
            The corresponding Sensor type constant.
        """
        type_string = _ensure_str(type_string)
        try:
            return cls.SENSOR_TYPE_LOOKUP[type_string]
        except KeyError:
            raise ValueError("Invalid sensor type string %r." % (type_string,))

    @classmethod
    def parse_params(cls, sensor_type, formatted_params, major=DEFAULT_KATCP_MAJOR):
        """Parse KATCP formatted parameters into Python values.

        Parameters
        ----------
        sensor_type : Sensor type constant
            The type of sensor the parameters are for.
        formatted_params : list of byte strings
            The formatted parameters that should be parsed.
        major : int
            Major version of KATCP to use when interpreting types.

        Returns
        -------
        params : list of objects
            The parsed parameters.
        """
        codec = cls.SENSOR_TYPES[sensor_type]
        return [codec.decode(param, major) for param in formatted_params]


# ---------------------------------------------------------------------------
# Asynchronous helpers (tornado 6 futures are asyncio futures)
# ---------------------------------------------------------------------------

def _new_future(ioloop=None):
    """Create a future on the running loop, else on `ioloop`, else the current loop."""
    loop = asyncio._get_running_loop()
    if loop is None and ioloop is not None:
        loop = ioloop.asyncio_loop
    if loop is not None:
        return loop.create_future()
    return tornado.concurrent.Future()


def _set_result_threadsafe(future, result):
    """Resolve `future` from any thread, on its own loop."""
    loop = future.get_loop()
    if asyncio._get_running_loop() is loop:
        if not future.done():
            future.set_result(result)
    elif not loop.is_closed():
        # A closed loop can no longer run anything waiting on the future.
        loop.call_soon_threadsafe(_set_result_if_pending, future, result)


def _set_result_if_pending(future, result):
    if not future.done():
        future.set_result(result)


class AsyncEvent:
    """tornado Future based event class.

    Like :class:`threading.Event`, but :meth:`until_set` returns a future to yield on.

    Parameters
    ----------
    ioloop : tornado.ioloop.IOLoop or None
        Loop on which waiting futures are created when not called from a running loop.
    """

    def __init__(self, ioloop=None):
        self._ioloop = ioloop
        self._flag = False
        self._waiters = []
        # set() may come from another thread while the loop registers a waiter.
        self._lock = threading.Lock()

    def is_set(self):
        """Return True if the event is set."""
        return self._flag

    isSet = is_set

    def set(self):
        """Set the event flag to true and resolve all waiting futures (any thread)."""
        with self._lock:
            self._flag = True
            waiters, self._waiters = self._waiters, []
        for future in waiters:
            _set_result_threadsafe(future, True)

    def clear(self):
        """Reset the event flag."""
        self._flag = False

    def until_set(self, timeout=None):
        """Return a future that resolves (to True) when the event is set.

        Parameters
        ----------
        timeout : float or None
            Seconds after which the future fails with tornado.gen.TimeoutError.
        """
        future = _new_future(self._ioloop)
        with self._lock:
            pending = not self._flag
            if pending:
                self._waiters.append(future)
        if not pending:
            _set_result_threadsafe(future, True)
        elif timeout:
            return tornado.gen.with_timeout(timedelta(seconds=timeout), future)
        return future

    def wait_with_ioloop(self, ioloop, timeout=None):
        """Block (from a thread other than `ioloop`'s) until the event is set.

        Parameters
        ----------
        ioloop : tornado.ioloop.IOLoop
            The loop on which the event is set.
        timeout : float or None
            Seconds to wait, or None to wait forever.

        Returns
        -------
        flag : bool
            The event flag after waiting.
        """
        done = concurrent.futures.Future()

        def wait():
            tornado.concurrent.chain_future(self.until_set(), done)

        ioloop.add_callback(wait)
        try:
            done.result(timeout)
        except concurrent.futures.TimeoutError:
            pass
        return self._flag


class AsyncCallbackEvent(AsyncEvent):
    """AsyncEvent that also calls ``callback(flag)`` whenever it is set or cleared.

    Parameters
    ----------
    callback : callable
        Called with True on :meth:`set` and False on :meth:`clear`.
    """

    def __init__(self, callback=lambda x: x):
        super().__init__()
        self._callback = callback

    def set(self):
        """Set the event and call the callback with True."""
        super().set()
        self._callback(True)

    def clear(self):
        """Clear the event and call the callback with False."""
        super().clear()
        self._callback(False)


class AsyncState:
    """Allow async waiting for a state to attain a certain value.

    Parameters
    ----------
    valid_states : sequence
        All the states the object may be in.
    initial_state : object, optional
        Starting state; defaults to the first of `valid_states`.
    ioloop : tornado.ioloop.IOLoop or None
        Loop on which waiting futures are created.
    """

    def __init__(self, valid_states, initial_state=None, ioloop=None):
        self._valid_states = tuple(valid_states)
        if initial_state is None:
            initial_state = self._valid_states[0]
        if initial_state not in self._valid_states:
            raise ValueError("Initial state %r is not one of %r."
                             % (initial_state, self._valid_states))
        self._ioloop = ioloop
        self._events = {state: AsyncEvent(ioloop) for state in self._valid_states}
        self._state = initial_state
        self._events[initial_state].set()

    @property
    def state(self):
        """The current state."""
        return self._state

    @property
    def valid_states(self):
        """Tuple of the valid states."""
        return self._valid_states

    def set_state(self, state):
        """Change the state, resolving futures waiting for it.

        Parameters
        ----------
        state : object
            One of the valid states.
        """
        if state not in self._events:
            raise ValueError("State %r is not one of %r." % (state, self._valid_states))
        self._events[self._state].clear()
        self._state = state
        self._events[state].set()

    def until_state(self, state, timeout=None):
        """Return a tornado Future that will resolve when the requested state is set.

        Parameters
        ----------
        state : object
            One of the valid states.
        timeout : float or None
            Seconds after which the future fails with tornado.gen.TimeoutError.
        """
        if state not in self._events:
            raise ValueError("State %r is not one of %r." % (state, self._valid_states))
        future = self._events[state].until_set()
        if timeout:
            return tornado.gen.with_timeout(timedelta(seconds=timeout), future)
        return future

    def until_state_in(self, *states, **kwargs):
        """Return a tornado Future, resolves when any of the requested states is set.

        Parameters
        ----------
        states : objects
            Valid states to wait for.
        timeout : float or None (keyword)
            Seconds after which the future fails with tornado.gen.TimeoutError.
        """
        timeout = kwargs.get("timeout")
        return until_any(*[self.until_state(s) for s in states], timeout=timeout)


def until_later(delay, ioloop=None):
    """Return a future that resolves (to None) after `delay` seconds.

    Parameters
    ----------
    delay : float
        Delay in seconds.
    ioloop : tornado.ioloop.IOLoop or None
        Loop to use; defaults to the current loop.
    """
    ioloop = ioloop or tornado.ioloop.IOLoop.current()
    future = _new_future(ioloop)
    ioloop.call_later(delay, _set_result_if_pending, future, None)
    return future


def until_any(*futures, **kwargs):
    """Return a future that resolves when any of the passed futures resolves.

    Resolves with the result (or exception) of the first future to finish; if one
    is already done, the returned future is resolved (with the first such) already.

    Parameters
    ----------
    futures : futures
        The futures to wait on.
    timeout : float or None (keyword)
        Seconds after which the returned future fails with tornado.gen.TimeoutError.
    ioloop : tornado.ioloop.IOLoop or None (keyword)
        Loop to use; defaults to the current loop.
    """
    timeout = kwargs.get("timeout")
    ioloop = kwargs.get("ioloop")
    any_future = _new_future(ioloop)

    def handle_done(done_future):
        if any_future.done():
            return
        if done_future.cancelled():
            any_future.cancel()
            return
        exc = done_future.exception()
        if exc is not None:
            any_future.set_exception(exc)
        else:
            any_future.set_result(done_future.result())

    futures = [tornado.gen.convert_yielded(future) for future in futures]
    for future in futures:
        if future.done():
            # Already decided: resolved on return, not on a later loop turn.
            handle_done(future)
            return any_future
    for future in futures:
        future.add_done_callback(handle_done)
    if timeout:
        return tornado.gen.with_timeout(timedelta(seconds=timeout), any_future)
    return any_future


@tornado.gen.coroutine
def until_some(*args, **kwargs):
    """Return a future that resolves when some of the passed futures resolve.

    The futures can be passed as either a sequence of *args* or a dict of *kwargs*
    (but not both).

    Parameters
    ----------
    done_at_least : None or int (keyword)
        Number of futures that need to resolve before this resolves or None to wait
        for all (default None).
    timeout : None or float (keyword)
        Timeout in seconds, or None for no timeout (the default).

    Returns
    -------
    future : tornado Future
        Resolves with a list of (index, value) tuples for the futures that resolved,
        index being the position (for *args*) or the key (for *kwargs*).

    Raises
    ------
    tornado.gen.TimeoutError
        If the timeout expires first.
    """
    done_at_least = kwargs.pop("done_at_least", None)
    timeout = kwargs.pop("timeout", None)
    if done_at_least is None:
        done_at_least = len(args) + len(kwargs)
    wait_iterator = tornado.gen.WaitIterator(*args, **kwargs)
    maybe_timeout = future_timeout_manager(timeout)
    results = []
    while not wait_iterator.done() and len(results) < done_at_least:
        result = yield maybe_timeout(wait_iterator.next())
        results.append((wait_iterator.current_index, result))
    return results


def future_timeout_manager(timeout=None, ioloop=None):
    """Create Helper function for yielding with a cumulative timeout if required.

    Keeps track of time over multiple timeout calls so that a single timeout can be
    placed over multiple operations.

    Parameters
    ----------
    timeout : float or None
        Total timeout in seconds, or None for no timeout.
    ioloop : tornado.ioloop.IOLoop or None
        Loop whose clock is used; defaults to the current loop.

    Returns
    -------
    maybe_timeout : callable
        Accepts a future and wraps it in :func:`tornado.gen.with_timeout` with the
        remaining time; raises tornado.gen.TimeoutError when it expires. Its
        ``remaining()`` attribute returns the remaining time (None without timeout).
    """
    ioloop = ioloop or tornado.ioloop.IOLoop.current()
    t0 = ioloop.time()

    def remaining():
        return timeout - (ioloop.time() - t0) if timeout else None

    def maybe_timeout(future):
        if not timeout:
            return future
        return tornado.gen.with_timeout(t0 + timeout, future)

    maybe_timeout.remaining = remaining
    return maybe_timeout


class LatencyTimer:
    """Track for how long already-resolved futures are yielded.

    Yielding a resolved future does not return control to the loop, so a long run of
    them starves other callbacks; this tells the caller when to yield
    ``tornado.gen.moment``.

    Parameters
    ----------
    max_loop_latency : float
        Seconds of uninterrupted work after which it is time to yield.
    ioloop : tornado.ioloop.IOLoop or None
        Loop whose clock is used; defaults to the current loop.
    """

    def __init__(self, max_loop_latency, ioloop=None):
        self.max_loop_latency = max_loop_latency
        self._ioloop = ioloop or tornado.ioloop.IOLoop.current()
        self._streak_start = None

    def check_future(self, fut):
        """Call with each future that is to be yielded on.

        Parameters
        ----------
        fut : Future

        Returns
        -------
        done : bool
            Whether the future is already resolved.
        """
        done = fut.done()
        if not done:
            # Yielding a pending future gives the loop its turn.
            self._streak_start = None
        elif self._streak_start is None:
            self._streak_start = self._ioloop.time()
        return done

    def time_to_yield(self):
        """Call after check_future(). If True, it is time to yield tornado.gen.moment."""
        if self._streak_start is None:
            return False
        if self._ioloop.time() - self._streak_start >= self.max_loop_latency:
            self._streak_start = None
            return True
        return False


def log_future_exceptions(logger, f, ignore=()):
    """Log any exceptions set to a future.

    Parameters
    ----------
    logger : logging.Logger
        Logger to log exceptions to.
    f : Future
        Future to watch.
    ignore : tuple of exception classes
        Exceptions that are not logged.
    """
    def log_cb(done):
        if done.cancelled():
            return
        exc = done.exception()
        if exc is None or isinstance(exc, ignore):
            return
        logger.error("Unhandled exception returned by future", exc_info=exc)

    f.add_done_callback(log_cb)


def log_coroutine_exceptions(coro):
    """Coroutine (or any method that returns a future) decorator to log exceptions.

    Parameters
    ----------
    coro : callable
        Returns a future or a coroutine object; exceptions it ends with are logged
        to the ``katcp.core`` logger.
    """
    @functools.wraps(coro)
    def wrapped(*args, **kwargs):
        future = tornado.gen.convert_yielded(coro(*args, **kwargs))
        log_future_exceptions(logger, future)
        return future

    return wrapped
