"""The one place where bytes become text and text becomes bytes.

KATCP arguments are bytes; text is UTF-8 on the wire. Three readings of bytes are
needed, each with its own error policy:

- :func:`as_str` for values: invalid UTF-8 is an error.
- :func:`readable` for logs and displays: never fails, bad bytes become U+FFFD.
- :func:`show` for error messages about the bytes themselves: never fails, bad bytes
  stay visible as ``\\xNN`` escapes; :func:`show_repr` quotes them as ``repr()`` would.

:func:`quoted_line` quotes a received line that could not be taken, for a log record.
"""

import logging
import re
from typing import Any


logger = logging.getLogger("katcp.core")


def as_str(value: Any) -> Any:
    """Decode bytes as UTF-8 (strictly); anything else is returned unchanged.

    Raises
    ------
    UnicodeDecodeError
        If `value` is bytes that are not valid UTF-8 (a :class:`ValueError`).
    """
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    return value


def readable(value: Any) -> str:
    """Text for logs and displays: bytes decoded with replacement, others with str()."""
    if type(value) is bytes:  # the usual case, first: message arguments
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def show(value: Any) -> Any:
    """Bytes as text for error messages (undecodable bytes escaped); others unchanged."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    return value


# A byte that is not UTF-8, decoded as a surrogate escape, in a repr(): \udcNN, where the
# backslash is not itself escaped (an even run of backslashes before it).
_REPR_ESCAPED_BYTE = re.compile(r"(?<!\\)((?:\\\\)*)\\udc([89a-f][0-9a-f])")


def show_repr(value: Any) -> str:
    """``repr()`` of the text of bytes, for error messages; undecodable bytes as ``\\xNN``.

    Text that is UTF-8 is quoted and escaped as ``repr()`` of the str would be (so
    ``'*'`` and ``'\\t'``); each byte that is not shows as one ``\\xNN`` escape, where
    ``repr(show(value))`` would double its backslash.

    Parameters
    ----------
    value : bytes, bytearray or any other object
        Other objects are quoted by their own ``repr()``.

    Returns
    -------
    quoted : str
    """
    if not isinstance(value, (bytes, bytearray)):
        return repr(value)
    quoted = repr(bytes(value).decode("utf-8", errors="surrogateescape"))
    if "\\udc" not in quoted:
        return quoted
    return _REPR_ESCAPED_BYTE.sub(r"\1\\x\2", quoted)


# Enough of a bad line to recognise it; a line may be megabytes long.
QUOTED_LINE_LIMIT = 200


def quoted_line(line: bytes) -> str:
    """A received line as a log record quotes it: ``repr()`` of its first 200 bytes.

    Parameters
    ----------
    line : bytes

    Returns
    -------
    quoted : str
        ``b'...'``, followed by ``... (N bytes)`` when the line is longer than
        :data:`QUOTED_LINE_LIMIT` bytes.

    """
    if len(line) <= QUOTED_LINE_LIMIT:
        return repr(line)
    return "%r... (%d bytes)" % (line[:QUOTED_LINE_LIMIT], len(line))


def as_bytes(value: Any) -> bytes:
    """Bytes as they are; text as UTF-8; anything else as the UTF-8 encoding of its str().

    Text includes str subclasses, whose str() may be something else (an enum's name).
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return encode_utf8_with_error_log(value if isinstance(value, str) else str(value))


def encode_utf8_with_error_log(arg: str) -> bytes:
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
