"""Tests for katcp.compat."""

import pytest

from katcp import compat


def test_flags():
    assert compat.PY3 is True and compat.PY2 is False


def test_byte_chars():
    assert compat.byte_chars(b"ab\xff") == [b"a", b"b", b"\xff"]
    assert compat.byte_chars(b"") == []


@pytest.mark.parametrize("value, is_bytes, is_text", [
    (b"x", True, False), (bytearray(b"x"), True, False), ("x", False, True),
    (1, False, False), (None, False, False), (memoryview(b"x"), False, False)])
def test_is_bytes_is_text(value, is_bytes, is_text):
    assert compat.is_bytes(value) is is_bytes
    assert compat.is_text(value) is is_text


def test_ensure_native_str():
    assert compat.ensure_native_str(b"caf\xc3\xa9") == "caf\u00e9"
    assert compat.ensure_native_str(bytearray(b"x")) == "x"
    assert compat.ensure_native_str("text") == "text"
    with pytest.raises(TypeError):
        compat.ensure_native_str(5)
    with pytest.raises(UnicodeDecodeError):
        compat.ensure_native_str(b"\xff")


def test_ensure_bytes():
    assert compat.ensure_bytes("caf\u00e9") == b"caf\xc3\xa9"
    assert compat.ensure_bytes(b"\xff") == b"\xff"
    assert compat.ensure_bytes(bytearray(b"x")) == b"x"
    with pytest.raises(TypeError):
        compat.ensure_bytes(None)
