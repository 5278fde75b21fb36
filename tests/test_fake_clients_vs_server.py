"""A fake device (katcp.fake_clients) answers the standard sensor requests as a real
DeviceServer with the same sensors does: the same replies, texts and informs."""

import asyncio
import time

import pytest
import tornado.testing

from katcp import AsyncClient, DeviceServer, Message, Sensor
from katcp.fake_clients import FakeAsyncClient, FakeInspectingClientManager

pytestmark = pytest.mark.timeout(60)

WAIT = 10

SENSOR_INFOS = {
    "temp": ("A temperature.", "degC", "float", -10.0, 60.0),
    "mode": ("The mode.", "", "discrete", "idle", "busy"),
    "name": ("A name.", "", "string"),
}

# In order, on one connection: later requests see the strategies earlier ones set.
REQUESTS = [
    ("sensor-list",), ("sensor-list", "temp"), ("sensor-list", "nope"),
    ("sensor-list", "/^t|^n/"), ("sensor-list", "/zzz/"),
    ("sensor-value",), ("sensor-value", "mode"), ("sensor-value", "nope"),
    ("sensor-value", "/o/"),
    ("sensor-sampling",), ("sensor-sampling", "nope"), ("sensor-sampling", "temp"),
    ("sensor-sampling", "temp", "bogus"), ("sensor-sampling", "temp", "period"),
    ("sensor-sampling", "temp", "period", "0"),
    ("sensor-sampling", "temp", "event", "extra"),
    ("sensor-sampling", "name", "differential", "1"),
    # Bulk setting is not in the protocol both speak (5.0): a list is one unknown name.
    ("sensor-sampling", "temp,mode", "event"),
    ("sensor-sampling", "temp", "period", "3600"), ("sensor-sampling", "temp"),
    ("sensor-sampling-clear",), ("sensor-sampling", "temp"),
    ("sensor-sampling-clear", "extra"),
]


class Device(DeviceServer):
    def setup_sensors(self):
        self.add_sensor(Sensor.float("temp", "A temperature.", "degC", [-10.0, 60.0]))
        self.add_sensor(Sensor.discrete("mode", "The mode.", "", ["idle", "busy"]))
        self.add_sensor(Sensor.string("name", "A name.", ""))


def answer(reply, informs):
    """What a reply and its informs say, without message ids and readings' timestamps."""
    # A #sensor-value's first argument is its reading's timestamp.
    skip = 1 if reply.name == "sensor-value" else 0
    return reply.arguments, [inform.arguments[skip:] for inform in informs]


class TestFakeDeviceAnswersAsARealServer(tornado.testing.AsyncTestCase):

    async def answers(self, client):
        client.set_ioloop(self.io_loop)
        client.start()
        try:
            await client.until_protocol(timeout=WAIT)
            return [answer(*await client.future_request(Message.request(*args), timeout=WAIT))
                    for args in REQUESTS]
        finally:
            client.stop()
            await client.until_stopped(timeout=WAIT)

    @tornado.testing.gen_test(timeout=3 * WAIT)
    async def test_sensor_requests(self):
        server = Device("127.0.0.1", 0)
        server.set_concurrency_options(thread_safe=False, handler_thread=False)
        server.set_ioloop(self.io_loop)
        server.start()
        try:
            real = await self.answers(AsyncClient("127.0.0.1", server.bind_address[1]))
        finally:
            await asyncio.wrap_future(server.stop())
        fake_client = FakeAsyncClient("fake-host.invalid", 5000)
        manager = FakeInspectingClientManager(fake_client)
        manager.add_sensors(SENSOR_INFOS)
        # A fake sensor reports its readings once the test set one: the real sensors'.
        for sensor in manager.fake_sensors.values():
            sensor.set(time.time(), Sensor.UNKNOWN, sensor.value())
        fake = await self.answers(fake_client)
        for args, real_answer, fake_answer in zip(REQUESTS, real, fake):
            assert fake_answer == real_answer, args
        # The requests cover what the fake used to answer otherwise (a request asked
        # more than once: its last answer).
        replies = dict(zip(REQUESTS, (reply for reply, _ in real)))
        assert replies[("sensor-list", "/^t|^n/")] == [b"ok", b"2"]
        assert replies[("sensor-sampling", "temp", "bogus")] == [
            b"fail", b"Unknown strategy name: bogus."]
        assert replies[("sensor-sampling", "nope")] == [b"fail", b"Unknown sensor name: nope."]
        assert replies[("sensor-sampling", "temp,mode", "event")][0] == b"fail"
        assert replies[("sensor-sampling-clear",)] == [b"ok"]
        assert replies[("sensor-sampling", "temp")] == [b"ok", b"temp", b"none"]
