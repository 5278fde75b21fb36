"""The one codec of KATCP's types: how each type's values look on the wire, for v4 and v5.

Each type has one rule, an object with ``encode(value, major) -> bytes`` and
``decode(raw, major) -> value`` (raising :class:`ValueError` for bytes that are not of
the type). :class:`~katcp.core.Sensor` and the :mod:`katcp.kattypes` classes both use
these; what they add is validation (ranges, allowed values), not another wire form.

Where v4 and v5 differ (timestamps: milliseconds or seconds), the rule asks
:func:`katcp.wire.flags.dialect`.
"""

import decimal
import numbers
import re
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from katcp.wire.flags import SEC_TO_MS_FAC, SEC_TS_KATCP_MAJOR, dialect
from katcp.wire.text import as_bytes, encode_utf8_with_error_log, show


Address = Tuple[str, Optional[int]]


# -- time units: the one rule for seconds <-> milliseconds (v4 wires carry milliseconds),
# used by sensors, kattypes, #log informs, clients and sampling parameters alike.

def seconds_to_ms(seconds: float) -> float:
    """Milliseconds for a time in seconds (a number; an int stays an int).

    Float noise below a nanosecond is rounded away, so that 1.001 s (which times 1000
    is 1000.9999999999999) is 1001.0 ms.
    """
    return round(seconds * SEC_TO_MS_FAC, 6)


def whole_ms(seconds: float) -> int:
    """Whole milliseconds for a time in seconds, truncated like katcp 0.9.3.

    1234567890.5007 s is 1234567890500 ms, and 1.001 s is 1001 ms (see above).
    """
    return int(seconds_to_ms(float(seconds)))


def ms_to_seconds(ms: float) -> float:
    """Seconds, as a float, for a time in milliseconds (division rounds correctly)."""
    return float(ms) / SEC_TO_MS_FAC


def format_timestamp(timestamp: float, major: int) -> bytes:
    """Wire form of a time in seconds: seconds for KATCP v5+, whole ms before."""
    # dialect(major).seconds_timestamps, without a call: this is on every sensor inform.
    if major >= SEC_TS_KATCP_MAJOR:
        return b"%.6f" % timestamp
    try:
        return b"%d" % whole_ms(timestamp)
    except (OverflowError, ValueError):
        # An infinite or NaN time has no whole milliseconds: written as v5 writes it
        # ("inf", "nan"), which parse_timestamp() reads back, rather than failing every
        # ?sensor-value and sampling of the sensor.
        return b"%.6f" % seconds_to_ms(float(timestamp))


def parse_timestamp(raw: Any, major: int) -> float:
    """Seconds (float) from a wire timestamp: seconds for KATCP v5+, ms before."""
    try:
        value = float(raw)
    except (ValueError, TypeError):
        raise ValueError("Could not parse value '%s' as timestamp." % (show(raw),)) from None
    if major < SEC_TS_KATCP_MAJOR:  # not dialect(major).seconds_timestamps
        value = ms_to_seconds(value)
    return value


# -- the types -------------------------------------------------------------------------

class WireType:
    """One KATCP type's wire rule (stateless: the module holds one instance of each)."""

    __slots__ = ()
    name = "unknown"

    # encode() of values of exactly these classes, as C-level callables of the value
    # alone (the same bytes in every KATCP version), for the sensor update hot path.
    # The str encoder is strict: where it raises UnicodeEncodeError, encode() replaces.
    exact_encoders: Dict[type, Callable[[Any], bytes]] = {}

    # decode() of a bytes argument, as a C-level callable of it alone (the same value in
    # every KATCP version), for the unpacking of request arguments; None where there is
    # none. Where it raises (ValueError, TypeError or LookupError), decode() gives the
    # error or the value.
    exact_decoder: Optional[Callable[[bytes], Any]] = None

    def encode(self, value: Any, major: int) -> bytes:
        """Format a (valid, non-None) value as the bytes of one argument."""
        raise NotImplementedError

    def decode(self, raw: bytes, major: int) -> Any:
        """Parse one argument's bytes; :class:`ValueError` if they are not of the type."""
        raise NotImplementedError

    def _refuse(self, raw: Any) -> ValueError:
        return ValueError("Could not parse value '%s' as %s." % (show(raw), self.name))


class _Number(WireType):
    __slots__ = ("name", "exact_decoder")
    exact_decoder: Callable[[Any], Any]

    def __init__(self, name: str, parse: Callable[[Any], Any]) -> None:
        self.name = name
        self.exact_decoder = parse

    def decode(self, raw: bytes, major: int) -> Any:
        try:
            return self.exact_decoder(raw)
        except (ValueError, TypeError):
            raise self._refuse(raw) from None


class _Integer(_Number):
    __slots__ = ()
    exact_encoders = {int: b"%d".__mod__, bool: b"%d".__mod__}

    def encode(self, value: Any, major: int) -> bytes:
        return b"%d" % (value,)


class _Float(_Number):
    __slots__ = ()
    exact_encoders = {float: b"%r".__mod__}  # %r of a float is its repr, in ASCII

    def encode(self, value: Any, major: int) -> bytes:
        # repr round-trips exactly.
        try:
            return repr(float(value)).encode("ascii")
        except OverflowError:
            # An integer (or fraction) beyond the range of floats: the infinity that
            # float arithmetic rounds it to, rather than failing every ?sensor-value.
            return b"inf" if value > 0 else b"-inf"


class _Boolean(WireType):
    __slots__ = ()
    name = "boolean"
    exact_encoders = {bool: (b"0", b"1").__getitem__}
    exact_decoder = {b"0": False, b"1": True}.__getitem__

    def encode(self, value: Any, major: int) -> bytes:
        return b"1" if value else b"0"

    def decode(self, raw: bytes, major: int) -> bool:
        if raw == b"1":
            return True
        if raw == b"0":
            return False
        raise self._refuse(raw)


LRU_NOMINAL, LRU_ERROR = range(2)
LRU_VALUES = {LRU_NOMINAL: b"nominal", LRU_ERROR: b"error"}
LRU_CONSTANTS = {v: k for k, v in LRU_VALUES.items()}


class _Lru(WireType):
    __slots__ = ()
    name = "lru"

    def encode(self, value: Any, major: int) -> bytes:
        try:
            return LRU_VALUES[value]
        except (KeyError, TypeError):
            raise ValueError("Lru value must be Sensor.LRU_NOMINAL or Sensor.LRU_ERROR, "
                             "not %r." % (value,)) from None

    def decode(self, raw: bytes, major: int) -> int:
        try:
            return LRU_CONSTANTS[raw]
        except (KeyError, TypeError):
            raise ValueError("Lru value must be 'nominal' or 'error', not '%s'."
                             % (show(raw),)) from None


class _NotUtf8(UnicodeDecodeError):
    # Still a UnicodeDecodeError (as katcp 0.9.3 raised), which reads well in a reply.
    def __str__(self) -> str:
        return "Could not decode value '%s' as UTF-8 text." % (show(self.object),)


class _String(WireType):
    # Any value is sent as the UTF-8 of its str(); bytes-like values (which the discrete
    # checks accept as their text) are sent as they are, like message arguments.
    __slots__ = ()
    name = "string"
    exact_encoders = {str: str.encode, bytes: bytes}  # bytes(b) is b itself
    exact_decoder = staticmethod(bytes.decode)  # UTF-8, strict

    def encode(self, value: Any, major: int) -> bytes:
        return as_bytes(value)

    def decode(self, raw: bytes, major: int) -> str:
        if isinstance(raw, str):
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotUtf8(*exc.args) from None


class _Discrete(_String):
    # On the wire a discrete value is a string; which strings are allowed is checked
    # by the sensor or kattype that knows the values, refusing others with not_one_of().
    __slots__ = ()
    name = "discrete"

    @staticmethod
    def not_one_of(value: Any, values: Iterable[str]) -> ValueError:
        """The error of a discrete `value` that is not one of `values` (their texts)."""
        return ValueError("Discrete value '%s' is not one of %s."
                          % (show(value), ", ".join(values)))


class _Timestamp(WireType):
    __slots__ = ()
    name = "timestamp"

    def encode(self, value: Any, major: int) -> bytes:
        return format_timestamp(float(value), major)

    def decode(self, raw: bytes, major: int) -> float:
        return parse_timestamp(raw, major)


class _Now:
    """The special value of the timestamp-or-now type meaning 'now'."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TimestampOrNow.NOW"


NOW = _Now()


class _TimestampOrNow(_Timestamp):
    __slots__ = ()
    name = "timestamp_or_now"

    def encode(self, value: Any, major: int) -> bytes:
        if value is NOW:
            return b"now"
        return super().encode(value, major)

    def decode(self, raw: bytes, major: int) -> Any:
        if raw == b"now":
            return NOW
        return super().decode(raw, major)


class _StrictTimestamp(WireType):
    # XXXX.YYY, never negative; repr precision rather than six decimals.
    __slots__ = ()
    name = "strict_timestamp"
    _FORMAT_RE = re.compile(rb"\d+(\.\d*)?\Z")

    def encode(self, value: Any, major: int) -> bytes:
        value = float(value)
        if not dialect(major).seconds_timestamps:
            value = seconds_to_ms(value)
        text = repr(value)
        if "e" in text:
            # XXXX.YYY has no exponent: 1e+20 as 100000000000000000000, 1e-07 as
            # 0.0000001, the same digits written out.
            text = format(decimal.Decimal(text), "f")
        return text.encode("ascii")

    def decode(self, raw: bytes, major: int) -> float:
        if not isinstance(raw, bytes) or not self._FORMAT_RE.match(raw):
            raise ValueError("Could not parse value '%s' as strict timestamp "
                             "(expected XXXX.YYY)." % (show(raw),))
        timestamp = float(raw)
        if not dialect(major).seconds_timestamps:
            timestamp = ms_to_seconds(timestamp)
        return timestamp


NULL_ADDRESS: Address = ("0.0.0.0", None)


def _bracketed(host: Any) -> Any:
    """The host of an address as text: an IPv6 one in brackets, so that none of its colons
    reads as the one before the port."""
    host = show(host)
    return "[%s]" % host if ":" in host else host


def address_text(address: Tuple[Any, Any]) -> str:
    """``host:port`` as KATCP writes an address (:data:`ADDRESS`): an IPv6 host in brackets.

    ``[::1]:5000`` reads back as the address it was made from, where
    :func:`address_to_string` writes ``::1:5000``. Any port is written as ``str()``
    writes it.

    Parameters
    ----------
    address : tuple of (str, int)
        (host, port).

    Returns
    -------
    text : str

    """
    host, port = address
    return "%s:%s" % (_bracketed(host), port)


def address_to_string(addr_tuple: Tuple[Any, Any]) -> str:
    """Format a (host, port) tuple as ``'host:port'``, as katcp 0.9.3 did.

    An IPv6 host is written as it is (``::1:5000``); :func:`address_text` writes the
    text that reads back as the same address.

    Parameters
    ----------
    addr_tuple : tuple
        (host, port).

    Returns
    -------
    address : str

    """
    return "%s:%s" % tuple(addr_tuple)


def is_port(port: Any) -> bool:
    """Whether `port` is a TCP port number: an integer from 0 to 65535.

    Parameters
    ----------
    port : object

    Returns
    -------
    is_port : bool
    """
    return isinstance(port, numbers.Integral) and 0 <= int(port) <= 65535


def check_address_port(port: Any) -> None:
    """Refuse the port of an address value that cannot be sent as one.

    The rule of the address type, for sensors and :class:`katcp.kattypes.Address`
    alike: the port of ``host:port`` is an integer from 0 to 65535, or None for none
    (``%d`` would send 1.5 as ``1``, and ``host:99999`` is no address).

    Parameters
    ----------
    port : object

    Raises
    ------
    ValueError
        If `port` is neither None nor a port number.
    """
    if port is not None and not is_port(port):
        raise ValueError("Address port must be None or 0-65535, not %r." % (port,))


class _Address(WireType):
    """``host[:port]``, an IPv6 host in brackets: ``[::1]:80``."""

    __slots__ = ()
    name = "address"
    _IPV6_RE = re.compile(r"\[(?P<host>[^\[\]]+)\](?::(?P<port>[0-9]+))?\Z")
    _IPV4_RE = re.compile(r"(?P<host>[^:\[\]]+)(?::(?P<port>[0-9]+))?\Z")

    def encode(self, value: Any, major: int) -> bytes:
        try:
            host, port = value
        except (TypeError, ValueError):
            raise ValueError("Address must be a (host, port) tuple, not %r." % (value,)) from None
        host = _bracketed(host)
        # UTF-8, as decode() reads it, so that any address received can be sent back.
        if port is None:
            return encode_utf8_with_error_log(host)
        return encode_utf8_with_error_log("%s:%d" % (host, port))

    def decode(self, raw: bytes, major: int) -> Address:
        text = show(raw)
        match = self._IPV6_RE.match(text) or self._IPV4_RE.match(text)
        if match is None:
            raise self._refuse(raw)
        port = match.group("port")
        return (match.group("host"), None if port is None else int(port))


INTEGER = _Integer("integer", int)
FLOAT = _Float("float", float)
BOOLEAN = _Boolean()
LRU = _Lru()
STRING = _String()
DISCRETE = _Discrete()
TIMESTAMP = _Timestamp()
TIMESTAMP_OR_NOW = _TimestampOrNow()
STRICT_TIMESTAMP = _StrictTimestamp()
ADDRESS = _Address()
