"""Our servers and clients against an independent KATCP peer written from the spec.

The peer here knows nothing of katcp: it writes and reads raw lines over 127.0.0.1, as a
hand-written device or client in another language would, and cuts, ends and surrounds
its lines in every way the spec allows (section 2.1: space and tab runs, newline or
carriage-return line ends, whitespace-only lines; section 4: the greeting with protocol
flags in any order; section 7: sensor types and multi-sensor #sensor-status informs).
A strict client checks every line both kinds of server send, in v4 and v5, against the
message grammar as a careful sender writes it.
"""

import asyncio
import logging
import math
import re

import pytest
import tornado.testing

from accepting import Acceptor, closed
from log_helpers import no_logs, recording_logger
from server_kinds import started

from katcp import AsyncClient, AsyncDeviceServer, DeviceServer, Message, ProtocolFlags, Sensor
from katcp.inspecting_client import InspectingClientAsync

WAIT = 5.0


class RawDevice:
    """A device written from the spec: it sends `greeting`, then for each line it hears
    (kept in `heard`) what ``answer(name, mid, args)`` returns, all bytes (`mid` with its
    brackets, or empty): bytes to send, or a list of them to send one write each."""

    def __init__(self, greeting, answer):
        self.greeting = greeting
        self.answer = answer
        self.heard = []
        self.writers = []
        self.port = None
        self._acceptor = Acceptor(self._serve)

    async def start(self):
        self.port = await self._acceptor.start()

    async def stop(self):
        await self._acceptor.stop()

    def push(self, data):
        for writer in self.writers:
            writer.write(data)

    async def _serve(self, reader, writer):
        self.writers.append(writer)
        writer.write(self.greeting)
        try:
            while True:
                line = (await reader.readline()).rstrip(b"\r\n")
                if not line:
                    break
                self.heard.append(line)
                head, *args = line.split(b" ")
                name, _, mid = head[1:].partition(b"[")
                out = self.answer(name, b"[" + mid if mid else b"", args)
                for chunk in out if isinstance(out, list) else [out]:
                    writer.write(chunk)
                    await writer.drain()
        finally:
            writer.close()
            await closed(writer)


def _v5_greeting(flags):
    return (b"#version-connect katcp-protocol " + flags + b"\n"
            b"#version-connect katcp-library raw-0.1 raw-0.1-build\n")


def _echo(name, mid, args):
    return b"!" + name + mid + b" ok " + b" ".join(args) + b"\n"


class TestClientsAgainstARawDevice(tornado.testing.AsyncTestCase):

    def setUp(self):
        super().setUp()
        self.devices = []
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            client.stop()
            self.io_loop.run_sync(lambda: client.until_stopped(WAIT))
        for device in self.devices:
            self.io_loop.run_sync(device.stop)
        super().tearDown()

    async def _device(self, greeting, answer=_echo):
        device = RawDevice(greeting, answer)
        self.devices.append(device)
        await device.start()
        return device

    async def _client(self, device):
        client = AsyncClient("127.0.0.1", device.port)
        self.clients.append(client)
        client.set_ioloop(self.io_loop)
        client.start()
        await client.until_protocol(timeout=WAIT)
        return client

    @tornado.testing.gen_test(timeout=10)
    async def test_flags_in_any_order_unknown_ones_none_and_a_v4_greeting(self):
        cases = [
            (_v5_greeting(b"5.1-TIBM"), "5.1-BIMT", b"?echo[1] a"),
            (_v5_greeting(b"5.1-MIXZ"), "5.1-IMXZ", b"?echo[1] a"),
            (_v5_greeting(b"5.1"), "5.1", b"?echo a"),
            (_v5_greeting(b"5.0-M"), "5.0-M", b"?echo a"),
            (b"#version raw-api-1.0\n#build-state raw-impl-2.0\n", "4.0", b"?echo a"),
        ]
        for greeting, flags, sent in cases:
            with self.subTest(greeting=greeting):
                device = await self._device(greeting)
                client = await self._client(device)
                self.assertEqual(str(client.protocol_flags), flags)
                reply, _ = await client.future_request(Message.request("echo", "a"),
                                                       timeout=WAIT)
                self.assertEqual(device.heard, [sent])
                self.assertEqual(reply.arguments, [b"ok", b"a"])

    @tornado.testing.gen_test(timeout=10)
    async def test_each_connection_speaks_the_version_of_its_own_greeting(self):
        # A device restarted behind the same address as another version (or another
        # implementation): what the last greeting said goes with its connection, and a
        # connection without one is used without message ids (spec 2.2).
        device = await self._device(_v5_greeting(b"5.0-MI"))
        client = await self._client(device)
        client.auto_reconnect_delay = 0
        cases = [(b"#version raw-api-1.0\n#build-state raw-impl-2.0\n", "4.0", False),
                 (b"", None, False),
                 (_v5_greeting(b"5.1-MIB"), "5.1-BIM", True)]
        reply, _ = await client.future_request(Message.request("echo", "a"), timeout=WAIT)
        self.assertEqual((device.heard, reply.mid), ([b"?echo[1] a"], b"1"))
        for greeting, flags, ids in cases:
            with self.subTest(greeting=greeting):
                device.greeting = greeting
                for writer in device.writers:
                    writer.close()
                device.writers.clear()
                await client.until_disconnected(timeout=WAIT)
                await client.until_connected(timeout=WAIT)
                if flags is not None:
                    await client.until_protocol(timeout=WAIT)
                self.assertEqual(flags, client.protocol_flags and str(client.protocol_flags))
                reply, _ = await client.future_request(Message.request("echo", "a"),
                                                       timeout=WAIT)
                self.assertEqual((reply.mid is not None, reply.arguments), (ids, [b"ok", b"a"]))
                self.assertEqual(device.heard[-1],
                                 b"?echo[%s] a" % reply.mid if ids else b"?echo a")

    @tornado.testing.gen_test(timeout=10)
    async def test_a_reply_cut_into_bytes_among_what_a_device_may_send_reaches_its_request(
            self):
        def answer(name, mid, args):
            lines = (b"   \n\t\n\r\n"                                # whitespace-only
                     b"#log warn 1234567890.5 dev lone\\_cr\r"        # ended by CR alone
                     b"!nothing-asked ok\r\n"
                     b"!echo[999] ok\n#echo[999] stray\n"             # ids never sent
                     b"#echo" + mid + b" first\tinform\r\n"
                     b"!echo" + mid + b" ok \\@ a\\_b\n")
            return [lines[i:i + 1] for i in range(len(lines))]
        device = await self._device(_v5_greeting(b"5.1-MI"), answer)
        client = await self._client(device)
        unhandled = []
        client.unhandled_inform = client.unhandled_reply = unhandled.append
        with recording_logger("katcp.client") as (_, records):
            reply, informs = await client.future_request(Message.request("echo"),
                                                         timeout=WAIT)
        self.assertEqual(reply.arguments, [b"ok", b"", b"a b"])
        self.assertEqual([inform.arguments for inform in informs], [[b"first", b"inform"]])
        self.assertEqual([str(msg) for msg in unhandled], [
            "#log warn 1234567890.5 dev lone\\_cr", "!nothing-asked ok",
            "!echo[999] ok", "#echo[999] stray"])
        # Lines of only blanks are reported as katcp 0.9.3 reports them.
        self.assertEqual([m.split(": ")[-1] for m in records.messages()],
                         ["Empty message received."] * 2)

    @tornado.testing.gen_test(timeout=10)
    async def test_an_inspecting_client_reads_every_spec_type_and_multi_sensor_informs(self):
        listed = {
            b"t.float": b"A\\_float V float -1e3 1.5E+3 -2e3 2e3",
            b"t.nan": b"NaN \\@ float",
            b"t.int": b"An\\_int \\@ integer -5 5",
            b"t.bool": b"A\\_bool \\@ boolean",
            b"t.disc": b"Discrete \\@ discrete on off a\\_b",
            b"t.lru": b"An\\_lru \\@ lru",
            b"t.ts": b"Time \\@ timestamp",
            b"t.ip6": b"IPv6 \\@ address",
            b"t.ip6np": b"IPv6 \\@ address",
            b"t.str": b"Text \\@ string",
        }

        def answer(name, mid, args):
            if name == b"help":
                return b"!help" + mid + b" ok 0\n"
            if name == b"sensor-list":
                return b"".join(b"#sensor-list" + mid + b" " + sensor + b" " + listed[sensor]
                                + b"\n" for sensor in listed) + (
                    b"!sensor-list" + mid + b" ok %d\n" % len(listed))
            return b"!" + name + mid + b" ok " + b" ".join(args) + b"\n"
        device = await self._device(_v5_greeting(b"5.0-MI"), answer)
        client = InspectingClientAsync("127.0.0.1", device.port)
        self.clients.append(client)
        client.set_ioloop(self.io_loop)
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        sensors = {name: await client.future_get_sensor(name) for name in client.sensors}
        with no_logs("katcp.inspect_client", logging.WARNING):
            device.push(
                b"#sensor-status 1234567890.25 3 t.float warn -1.25e-3 t.nan nominal nan"
                b" t.int error 7\n"
                b"#sensor-status 1234567891 5 t.bool nominal 1 t.disc unknown a\\_b"
                b" t.lru failure error t.ts nominal 1234567800.125 t.str nominal a\\tb\\\\\n"
                b"#sensor-status 1234567892.5 2 t.ip6 nominal [2001:db8::1]:4000"
                b" t.ip6np nominal [::1]\n")
            # A request round trip orders the informs before the assertions.
            await client.simple_request("watchdog")
        readings = {name: tuple(sensor.read()) for name, sensor in sensors.items()}
        self.assertEqual(sensors["t.float"].params, [-1000.0, 1500.0, -2000.0, 2000.0])
        self.assertEqual(sensors["t.disc"].params, ["on", "off", "a b"])
        self.assertTrue(math.isnan(readings.pop("t.nan")[2]))
        self.assertEqual(readings, {
            "t.float": (1234567890.25, Sensor.WARN, -0.00125),
            "t.int": (1234567890.25, Sensor.ERROR, 7),
            "t.bool": (1234567891.0, Sensor.NOMINAL, True),
            "t.disc": (1234567891.0, Sensor.UNKNOWN, "a b"),
            "t.lru": (1234567891.0, Sensor.FAILURE, Sensor.LRU_ERROR),
            "t.ts": (1234567891.0, Sensor.NOMINAL, 1234567800.125),
            "t.str": (1234567891.0, Sensor.NOMINAL, "a\tb\\"),
            "t.ip6": (1234567892.5, Sensor.NOMINAL, ("2001:db8::1", 4000)),
            "t.ip6np": (1234567892.5, Sensor.NOMINAL, ("::1", None)),
        })


class _Device:
    VERSION_INFO = ("peer-api", 1, 0)
    BUILD_INFO = ("peer-impl", 0, 1, "")


class _ThreadedDevice(_Device, DeviceServer):
    pass


class _AsyncDevice(_Device, AsyncDeviceServer):
    pass


@pytest.fixture(params=["threaded", "async"])
def device(request):
    server = started(request.param, _ThreadedDevice, _AsyncDevice)
    yield server
    server.stop(timeout=WAIT).result(WAIT)
    server.join(timeout=WAIT)


async def _talk(port, pieces, replies):
    """Send `pieces` one write each; return every line up to the `replies`-th reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
        lines = []
        while sum(line.startswith(b"!") for line in lines) < replies:
            lines.append((await asyncio.wait_for(reader.readline(), WAIT)).rstrip(b"\n"))
        return lines
    finally:
        writer.close()
        await closed(writer)


def test_a_server_answers_requests_cut_anywhere_and_ended_by_cr_lf_or_both(device):
    stream = (b"?watchdog[1]\r?help[2]\t \twatchdog \r\n?watchdog\t[3]\n"
              b"?sensor-value[4]\t\n?watchdog[5]\r")
    pieces = [stream[i:i + 1] for i in range(len(stream))]
    lines = asyncio.run(_talk(device.bind_address[1], pieces, 5))
    replies = [line for line in lines if not line.startswith(b"#version-connect")]
    assert replies[0] == b"!watchdog[1] ok"
    assert replies[1].startswith(b"#help[2] watchdog ")
    # "?watchdog\t[3]" is a request with the argument "[3]", not an id.
    assert replies[2:] == [b"!help[2] ok 1", b"!watchdog ok", b"!sensor-value[4] ok 0",
                           b"!watchdog[5] ok"]


# -- a strict client: every byte a server sends, checked against the spec ------------------

# A <message> of section 2.1 as a careful sender writes it: one space before each argument,
# none at the end, newline ended; ids of 1 .. 2**31-1 (2.2) are echoed as the client sent.
_STRICT_LINE = re.compile(rb"[?!#][A-Za-z][A-Za-z0-9-]*(\[[1-9][0-9]*\])?"
                          rb"( (?:[^\\ \0\n\r\x1b\t]|\\[\\_0nret@])+)*\n")
# Requests whose "ok" reply counts the informs sent before it.
_COUNTED = (b"help", b"sensor-list", b"sensor-value", b"client-list", b"version-list")
_T0 = 1234567890.25


class _SensorDevice(_Device):
    def setup_sensors(self):
        for sensor, value in [
                (Sensor.integer("s.int", "An integer", "", [0, 9]), 3),
                (Sensor.float("s.float", "A float", "V", [-1.5, 1.5]), -0.25),
                (Sensor.boolean("s.bool", "", ""), True),
                (Sensor.discrete("s.disc", "Discrete", "", ["a b", "c"]), "a b"),
                (Sensor.string("s.str", "Text\twith specials", ""), "x y\t\\\0\r\n\x1b"),
                (Sensor.string("s.empty", "Empty", ""), ""),
                (Sensor.timestamp("s.ts", "Time", ""), 1234567800.125),
                (Sensor.address("s.addr", "Peer", ""), ("10.0.0.1", 7147))]:
            sensor.set_value(value, timestamp=_T0)
            self.add_sensor(sensor)


class _V4:
    PROTOCOL_INFO = ProtocolFlags(4, 0, [ProtocolFlags.MULTI_CLIENT])


# The threaded and the asyncio server class of each major version.
_STRICT_CLASSES = {
    5: (type("T5", (_SensorDevice, DeviceServer), {}),
        type("A5", (_SensorDevice, AsyncDeviceServer), {})),
    4: (type("T4", (_V4, _SensorDevice, DeviceServer), {}),
        type("A4", (_V4, _SensorDevice, AsyncDeviceServer), {})),
}


@pytest.fixture(params=[("threaded", 5), ("async", 5), ("threaded", 4), ("async", 4)],
                ids=lambda param: "%s-v%d" % param)
def strict_session(request):
    kind, major = request.param
    server = started(kind, *_STRICT_CLASSES[major])
    yield server.bind_address[1], major
    server.stop(timeout=WAIT).result(WAIT)
    server.join(timeout=WAIT)


async def _strict_exchange(port, major):
    """Send each request (with an id in v5) and check every line up to its reply; return
    the lines of the greeting and of each exchange."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def line():
        got = await asyncio.wait_for(reader.readline(), WAIT)
        assert _STRICT_LINE.fullmatch(got), got
        return got[:-1]
    try:
        greeting = [await line() for _ in range(3 if major == 5 else 2)]
        exchanges = []
        requests = [b"watchdog", b"help", b"help watchdog", b"sensor-list",
                    b"sensor-list /int|str/", b"sensor-value", b"sensor-value s.str",
                    b"client-list", b"log-level", b"sensor-sampling s.int event",
                    b"sensor-sampling s.int", b"sensor-sampling s.int none", b"no-such",
                    b"version-list" if major == 5 else b"watchdog"]
        for number, request in enumerate(requests, 1):
            name, _, args = request.partition(b" ")
            head = name + (b"[%d]" % number if major == 5 else b"")
            writer.write(b"?" + head + (b" " + args if args else b"") + b"\n")
            lines = [await line()]
            while not lines[-1].startswith((b"!" + head + b" ")):
                lines.append(await line())
            # The informs of this request carry its id; any other (#sensor-status)
            # belongs to no request and has none.
            mine = [got for got in lines[:-1] if got.startswith(b"#" + head + b" ")]
            assert all(b"[" not in got.split(b" ")[0] for got in lines[:-1]
                       if got not in mine), lines
            reply = lines[-1].split(b" ")
            if name in _COUNTED and reply[1] == b"ok":
                assert reply[2:] == [b"%d" % len(mine)], lines
            exchanges.append(lines)
        return greeting, exchanges
    finally:
        writer.close()
        await closed(writer)


def test_a_strict_client_finds_every_line_as_the_spec_writes_it(strict_session):
    port, major = strict_session
    greeting, exchanges = asyncio.run(_strict_exchange(port, major))
    if major == 5:
        assert [line.split(b" ")[1] for line in greeting] == [
            b"katcp-protocol", b"katcp-library", b"katcp-device"]
    else:
        assert [line.split(b" ")[0] for line in greeting] == [b"#version", b"#build-state"]
    values = {line.split(b" ")[3]: line for line in exchanges[5][:-1]}
    stamp = b"1234567890250" if major == 4 else b"1234567890.250000"
    assert values[b"s.str"] == b"#sensor-value%s %s 1 s.str nominal %s" % (
        b"[6]" if major == 5 else b"", stamp, b"x\\_y\\t\\\\\\0\\r\\n\\e")
    assert values[b"s.empty"].endswith(b" s.empty nominal \\@")
    assert values[b"s.ts"].endswith(b" s.ts nominal " + (b"1234567800125" if major == 4
                                                          else b"1234567800.125000"))
    # The first reading of a strategy is sent before the reply that sets it, with the
    # timestamp in the units of the version: milliseconds in v4, seconds in v5.
    assert exchanges[9][0] == b"#sensor-status %s 1 s.int nominal 3" % stamp
    assert exchanges[12][-1].split(b" ")[1] == b"invalid"
