"""Helpers kept from the Python 2/3 compatibility layer of katcp-python.

This package is Python 3 only, so these are thin and exist for code written against
the 0.9 API.
"""

from typing import Any, List

from katcp.wire.text import as_bytes, as_str

PY2 = False
PY3 = True


def byte_chars(byte_string: bytes) -> List[bytes]:
    """Return list of characters from a byte string (PY3-compatible).

    Parameters
    ----------
    byte_string : bytes

    Returns
    -------
    chars : list of bytes
        One single-byte ``bytes`` object per byte (iterating bytes in Python 3 gives
        ints instead).
    """
    return [byte_string[i:i + 1] for i in range(len(byte_string))]


def is_bytes(value: Any) -> bool:
    """Indicate if object is bytes-like: True for ``bytes`` and ``bytearray``."""
    return isinstance(value, (bytes, bytearray))


def is_text(value: Any) -> bool:
    """Indicate if object is text-like: True for ``str``."""
    return isinstance(value, str)


def ensure_native_str(value: Any) -> str:
    """Coerce bytes (decoded as UTF-8) or str to the native str type.

    Parameters
    ----------
    value : bytes or str

    Returns
    -------
    text : str

    Raises
    ------
    TypeError
        If `value` is neither bytes nor str.
    """
    if not isinstance(value, (str, bytes, bytearray)):
        raise TypeError("Expected bytes or str, got %r." % (type(value),))
    return as_str(value)


def ensure_bytes(value: Any) -> bytes:
    """Coerce str (encoded as UTF-8) or bytes to bytes (the reverse of
    :func:`ensure_native_str`)."""
    if not isinstance(value, (str, bytes, bytearray)):
        raise TypeError("Expected bytes or str, got %r." % (type(value),))
    return as_bytes(value)
