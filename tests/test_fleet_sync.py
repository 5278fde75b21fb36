"""Syncing many sensors cheaply: what the fleet benchmark (bench/bench_fleet.py) relies on.

* Once synced, an inspecting client hands out known sensors and requests at once, in an
  already resolved future (a resource gets every sensor of its device this way while it
  syncs), and the same object each time.
* An answered request keeps nothing of its reply alive while it waits, answered, for
  its deadline to pass (thousands of sensor-list informs during a sync).
* Parsing undoes escapes the same way whether it takes the plain-space fast path or not.
"""

import asyncio
import gc

import pytest
from tornado.ioloop import IOLoop

from katcp import AsyncClient, AsyncDeviceServer, Message, Sensor
from katcp.core import KatcpSyntaxError, MessageParser
from katcp.inspecting_client import InspectingClientAsync

WAIT = 10.0


class _Device(AsyncDeviceServer):
    VERSION_INFO = ("fleet-test", 1, 0)
    BUILD_INFO = ("fleet-test", 1, 0, "")

    def setup_sensors(self):
        for i in range(5):
            self.add_sensor(Sensor.integer("count.%d" % i, "Counter %d." % i, "", [0, 10]))


async def _synced_client():
    device = _Device("127.0.0.1", 0)
    device.set_ioloop(IOLoop.current())
    device.start()
    client = InspectingClientAsync("127.0.0.1", device.bind_address[1],
                                   ioloop=IOLoop.current())
    await client.connect(timeout=WAIT)
    await client.until_synced(timeout=WAIT)
    return device, client


def test_known_sensors_and_requests_come_resolved_once_synced():
    async def main():
        device, client = await _synced_client()
        try:
            first = client.future_get_sensor("count.3")
            assert first.done()
            sensor = first.result()
            assert sensor.name == "count.3" and sensor.params == [0, 10]
            assert (await client.future_get_sensor("count.3")) is sensor
            request = client.future_get_request("watchdog")
            assert request.done() and request.result().name == "watchdog"
            # Unknown names still ask the device (update_on_lookup) and find nothing.
            missing = client.future_get_sensor("no.such")
            assert not missing.done()
            assert (await missing) is None
        finally:
            client.stop()
            await client.until_stopped(timeout=WAIT)
            await asyncio.wrap_future(device.stop(timeout=WAIT))

    asyncio.run(main())


def _sensor_list_informs():
    return [o for o in gc.get_objects() if isinstance(o, Message)
            and o.mtype == Message.INFORM and o.name == "sensor-list"]


def test_answered_request_keeps_no_informs_until_its_deadline():
    async def main():
        device = _Device("127.0.0.1", 0)
        device.set_ioloop(IOLoop.current())
        device.start()
        client = AsyncClient("127.0.0.1", device.bind_address[1])
        client.set_ioloop(IOLoop.current())
        client.start()
        try:
            await client.until_protocol(timeout=WAIT)
            # a deadline far away: the answered request stays in the timeout heap
            reply, informs = await client.future_request(Message.request("sensor-list"),
                                                         timeout=3600)
            assert reply.reply_ok() and len(informs) == 5
            del reply, informs
            await asyncio.sleep(0)  # the loop's handle that resumed us held the future
            gc.collect()
            assert _sensor_list_informs() == []
        finally:
            client.stop()
            await client.until_stopped(timeout=WAIT)
            await asyncio.wrap_future(device.stop(timeout=WAIT))

    asyncio.run(main())


@pytest.mark.parametrize("wire, arguments", [
    (rb"#x a\_b\_\_c", [b"a b  c"]),
    (rb"#x a\\_b", [b"a\\_b"]),
    (rb"#x \\\_ \@ a\tb\_", [b"\\ ", b"", b"a\tb "]),
    (rb"#x \_\0\n\r\e", [b" \0\n\r\x1b"]),
])
def test_escapes_undone_alike_on_either_path(wire, arguments):
    assert MessageParser().parse(wire).arguments == arguments
    assert MessageParser().parse(bytes(Message.inform("x", *arguments))) == \
        Message.inform("x", *arguments)


@pytest.mark.parametrize("wire", [rb"#x a\_\q", rb"#x a\_b\\"[:-1]])
def test_invalid_escapes_are_refused_after_plain_ones(wire):
    with pytest.raises(KatcpSyntaxError, match="Invalid escape sequence"):
        MessageParser().parse(wire)
