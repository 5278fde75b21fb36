"""The wire layer has one home per concern: one rule per KATCP type for Sensor and kattypes,
no event loop below katcp.loop, documented names still at home in katcp.core, and
keyword arguments that are checked.
"""

import asyncio
import concurrent.futures
import pickle
import subprocess
import sys
import threading

import pytest
import tornado.gen
import tornado.ioloop

import katcp.core
from katcp import kattypes
from katcp.core import AsyncEvent, AsyncState, Message, Reading, Sensor, until_any
from katcp.wire import text, types
from katcp.wire.flags import dialect

# (sensor type, sensor params, kattype) pairs that describe the same KATCP type.
SAME_TYPE = [
    (Sensor.INTEGER, None, kattypes.Int()),
    (Sensor.FLOAT, None, kattypes.Float()),
    (Sensor.BOOLEAN, None, kattypes.Bool()),
    (Sensor.LRU, None, kattypes.Lru()),
    (Sensor.STRING, None, kattypes.Str()),
    (Sensor.DISCRETE, ["on", "off"], kattypes.Discrete(["on", "off"])),
    (Sensor.TIMESTAMP, None, kattypes.Timestamp()),
    (Sensor.ADDRESS, None, kattypes.Address()),
]

RAW_VALUES = [b"1", b"0", b"-3", b"1.5", b"x", b"", b"on", b"nominal", b"error", b"\xff",
              b"1234.5", b"10.0.0.1:7147", b"host", b"host:0", b"[::1]:80", b"[fe80::1]",
              b"h:p", b"[::1]:x", b":80", b"[::1", b"a:1:2", b"\xd9\xa1"]


def _outcome(parse, raw, major):
    try:
        return ("value", parse(raw, major))
    except ValueError as exc:
        return ("refused", str(exc))


@pytest.mark.parametrize("major", [4, 5])
@pytest.mark.parametrize("sensor_type, params, kattype", SAME_TYPE,
                         ids=[Sensor.SENSOR_TYPES[t].name for t, _, _ in SAME_TYPE])
def test_sensors_and_kattypes_read_the_wire_alike(sensor_type, params, kattype, major):
    sensor = Sensor(sensor_type, "s", params=params)
    for raw in RAW_VALUES:
        assert (_outcome(sensor.parse_value, raw, major)
                == _outcome(kattype.unpack, raw, major)), raw


@pytest.mark.parametrize("major", [4, 5])
@pytest.mark.parametrize("sensor_type, params, kattype", SAME_TYPE,
                         ids=[Sensor.SENSOR_TYPES[t].name for t, _, _ in SAME_TYPE])
def test_sensors_and_kattypes_write_the_wire_alike(sensor_type, params, kattype, major):
    sensor = Sensor(sensor_type, "s", params=params)
    value = sensor.value()
    sensor.set(1234.5, Sensor.NOMINAL, value)
    assert sensor.read_formatted(major)[2] == kattype.pack(value, major=major)


def test_an_address_port_must_be_ascii_digits():
    for parse in (Sensor.address("a").parse_value, kattypes.Address().unpack):
        with pytest.raises(ValueError, match=r"^Could not parse value 'h:\u0661' as address\.$"):
            parse("h:\u0661".encode("utf-8"))


@pytest.mark.parametrize("address, bracketed, as_in_093", [
    (("127.0.0.1", 5000), "127.0.0.1:5000", "127.0.0.1:5000"),
    (("::1", 5000), "[::1]:5000", "::1:5000"),
    (("all interfaces", 0), "all interfaces:0", "all interfaces:0"),
    (("host", "7147"), "host:7147", "host:7147")])
def test_the_two_texts_of_an_address(address, bracketed, as_in_093):
    # The tools show an address so that it reads back (as the wire writes it); 0.9.3's
    # address_to_string, and what shows what it showed, leave an IPv6 host bare.
    assert types.address_text(address) == bracketed
    assert types.address_to_string(address) == as_in_093
    if isinstance(address[1], int):
        assert types.ADDRESS.encode(address, 5) == bracketed.encode("ascii")
        assert types.ADDRESS.decode(bracketed.encode("ascii"), 5) == address


def test_timestamps_follow_the_dialect_table():
    assert not dialect(4).seconds_timestamps
    assert dialect(5).seconds_timestamps and dialect(6) is dialect(5)
    assert types.TIMESTAMP.encode(1.5, 4) == b"1500"
    assert types.TIMESTAMP.encode(1.5, 5) == b"1.500000"
    assert types.TIMESTAMP.decode(b"1500", 4) == 1.5


def test_text_helpers_each_keep_their_error_policy():
    assert text.as_str(b"caf\xc3\xa9") == "caf\u00e9"
    with pytest.raises(UnicodeDecodeError):
        text.as_str(b"\xff")
    assert text.readable(b"a\xff") == "a\ufffd"
    assert text.readable(5) == "5"
    assert text.show(b"a\xff") == "a\\xff"
    assert text.as_bytes("\u00e9") == b"\xc3\xa9"


LAYER_1 = ["katcp.wire", "katcp.kattypes.types", "katcp.kattypes.decorators", "katcp.wire.errors", "katcp.wire.text", "katcp.wire.message",
           "katcp.wire.flags", "katcp.wire.types", "katcp.wire.sensor", "katcp.wire.handlers",
           "katcp.wire.util", "katcp.kattypes", "katcp.compat", "katcp.object_proxies"]


def test_layer_1_imports_no_event_loop_and_not_the_facade():
    code = ("import sys\n"
            "for name in %r: __import__(name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('asyncio', 'tornado')"
            " or m == 'katcp.core')\n"
            "print(','.join(bad))\n" % (LAYER_1,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == ""


def test_core_names_keep_their_documented_home():
    for name in katcp.core.__all__:
        value = getattr(katcp.core, name)
        if isinstance(value, type) or callable(value):
            assert value.__module__ == "katcp.core", name
    for name in kattypes.__all__:
        assert getattr(kattypes, name).__module__ == "katcp.kattypes", name
    assert "Int" in kattypes.__all__ and "types" not in kattypes.__all__
    reading = Reading(1.0, Sensor.NOMINAL, 3)
    assert pickle.loads(pickle.dumps(reading)) == reading
    msg = Message.request("watchdog", mid=3)
    assert pickle.loads(pickle.dumps(msg)) == msg


def test_misspelt_keywords_are_refused():
    async def main():
        with pytest.raises(TypeError):
            until_any(asyncio.get_running_loop().create_future(), timout=1)
        with pytest.raises(TypeError):
            AsyncState(["a", "b"]).until_state_in("a", timout=1)
    asyncio.run(main())
    with pytest.raises(TypeError):
        kattypes.return_reply(kattypes.Int(), mayor=4)


def test_async_event_set_from_another_thread_wakes_the_loop():
    async def main():
        event = AsyncEvent()
        waiter = event.until_set()
        setter = threading.Thread(target=event.set)
        setter.start()
        assert await asyncio.wait_for(waiter, 5)
        setter.join(5)
    asyncio.run(main())


def test_wait_with_ioloop_refuses_to_block_its_own_loop():
    async def main():
        with pytest.raises(RuntimeError, match="would block"):
            AsyncEvent().wait_with_ioloop(tornado.ioloop.IOLoop.current(), timeout=0.1)
    asyncio.run(main())


def test_wait_with_ioloop_from_a_thread():
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    runner = threading.Thread(target=ioloop.start)
    runner.start()
    try:
        event = AsyncEvent()
        ioloop.add_callback(ioloop.call_later, 0.01, event.set)
        assert event.wait_with_ioloop(ioloop, timeout=5) is True
        assert AsyncEvent().wait_with_ioloop(ioloop, timeout=0.01) is False
    finally:
        ioloop.add_callback(ioloop.stop)
        runner.join(5)
        ioloop.close()


class _Req:
    msg = Message.request("later", mid=4)


def test_return_reply_keeps_the_kind_of_future():
    @kattypes.return_reply(kattypes.Int())
    def request_later(self, req, result):
        """Reply with what `result` resolves to."""
        return result

    done = concurrent.futures.Future()
    done.set_result(("ok", 3))
    reply = request_later(None, _Req(), done)
    assert isinstance(reply, concurrent.futures.Future)
    assert reply.result(0) == Message.reply("later", b"ok", b"3")

    async def main():
        resolved = asyncio.get_running_loop().create_future()
        resolved.set_result(("ok", 5))
        reply = request_later(None, _Req(), resolved)
        # Already resolved: the reply is there at once, as for katcp 0.9.3 coroutines.
        assert asyncio.isfuture(reply) and reply.done()
        assert reply.result() == Message.reply("later", b"ok", b"5")
    asyncio.run(main())


def test_invalid_utf8_is_a_unicode_error_that_reads_well():
    for parse in (Sensor.string("s").parse_value, kattypes.Str().unpack):
        with pytest.raises(UnicodeDecodeError) as info:
            parse(b"ok\xff")
        assert str(info.value) == "Could not decode value 'ok\\xff' as UTF-8 text."
