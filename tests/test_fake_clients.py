"""katcp.fake_clients: high-level clients against in-memory fake devices, no network."""

import asyncio
import concurrent.futures
import logging

import pytest
import tornado.concurrent
import tornado.gen
import tornado.testing

from katcp import Message, Sensor
from katcp import fake_clients
from katcp.core import FailReply
from katcp.inspecting_client import InspectingClientAsync
from katcp.ioloop_manager import IOLoopThreadWrapper
from katcp.kattypes import Int, Str, request, return_reply
from katcp.resource_client import (KATCPClientResource, KATCPClientResourceContainer,
                                   ReplyWrappedInspectingClientAsync,
                                   ThreadSafeKATCPClientResourceWrapper)

pytestmark = pytest.mark.timeout(60)

WAIT = 10
SENSORS = {
    "temp": ("A temperature.", "degC", "float", -10.0, 60.0),
    "mode": ("The mode.", "", "discrete", "idle", "busy"),
}


class Handlers:
    """Request handlers as a device would have them."""

    @request(Int(), Int())
    @return_reply(Int())
    def request_add(self, req, x, y):
        """Add two integers."""
        return ("ok", x + y)

    @request(Str())
    @return_reply(Str())
    @tornado.gen.coroutine
    def request_echo_later(self, req, text):
        """Echo after a loop iteration."""
        yield tornado.gen.moment
        req.inform("echoing")
        raise tornado.gen.Return(("ok", text))

    async def request_native(self, req, msg):
        """An async def handler."""
        await asyncio.sleep(0)
        return req.make_reply("ok", "native")

    def request_refuse(self, req, msg):
        """Always fails."""
        raise FailReply("not today")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    async def refuse(*args, **kwargs):
        raise AssertionError("fake clients must not open connections")

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", refuse)


class TestFakeResourceClient(tornado.testing.AsyncTestCase):

    def make(self, **options):
        res, manager = fake_clients.fake_KATCP_client_resource_factory(
            KATCPClientResource, options,
            dict(name="dev", address=("fake-host.invalid", 5000), controlled=True))
        res.start()
        self.addCleanup(res.stop)
        return res, manager

    @tornado.testing.gen_test(timeout=WAIT)
    def test_requests_of_every_style(self):
        res, manager = self.make(sensor_infos=SENSORS)
        manager.add_request_handlers_object(Handlers())
        manager.add_request_handlers_dict({"ping": lambda req, msg: req.make_reply("ok", "pong")})
        yield res.until_synced(timeout=WAIT)
        assert {"add", "echo_later", "native", "refuse", "ping", "help"} <= set(dir(res.req))
        reply = yield res.req.add(2, 3)
        assert reply.succeeded and reply.reply.arguments == [b"ok", b"5"]
        reply = yield res.req.echo_later("hi")
        assert reply.reply.arguments == [b"ok", b"hi"]
        assert [m.arguments for m in reply.informs] == [[b"echoing"]]
        reply = yield res.req.native()
        assert reply.reply.arguments == [b"ok", b"native"]
        reply = yield res.req.refuse()
        assert not reply.succeeded and reply.reply.arguments == [b"fail", b"not today"]
        reply = yield res.req.ping()
        assert reply.reply.arguments == [b"ok", b"pong"]
        reply = yield res.req.add("x", 1)
        assert reply.reply.arguments[0] == b"fail"

    @tornado.testing.gen_test(timeout=WAIT)
    def test_cancelled_handler_sends_no_reply_and_logs_no_error(self):
        res, manager = self.make()

        def cancelled(req, msg):
            future = asyncio.get_event_loop().create_future()
            future.cancel()
            return future

        manager.add_request_handlers_dict({"cancelled": cancelled})
        yield res.until_synced(timeout=WAIT)
        errors = []
        handler = logging.Handler(logging.ERROR)
        handler.emit = errors.append
        logging.getLogger("asyncio").addHandler(handler)
        self.addCleanup(logging.getLogger("asyncio").removeHandler, handler)
        reply = yield res.req.cancelled(timeout=0.1)
        assert reply.reply.arguments[0] == b"fail"
        assert b"timed out" in reply.reply.arguments[1]
        assert errors == []

    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_handler_without_a_reply_gets_the_real_servers_fail(self):
        res, manager = self.make(sensor_infos=SENSORS)

        async def native_tuple(req, msg):
            return ("ok",)

        manager.add_request_handlers_dict({
            "tuple": lambda req, msg: ("ok",), "nothing": lambda req, msg: None,
            "native-tuple": native_tuple})
        yield res.until_synced(timeout=WAIT)
        for name in ("tuple", "nothing", "native_tuple"):  # Python names of the requests
            # At once, as a real server answers: not after the request's timeout.
            reply = yield getattr(res.req, name)(timeout=WAIT)
            assert reply.reply.arguments == [b"fail", b"Handler returned an invalid reply."]

    @tornado.testing.gen_test(timeout=WAIT)
    def test_sensors_read_and_sampled(self):
        res, manager = self.make(sensor_infos=SENSORS)
        yield res.until_synced(timeout=WAIT)
        assert set(dir(res.sensor)) >= {"temp", "mode"}
        manager.fake_sensors["temp"].set_value(21.5)
        value = yield res.sensor.temp.get_value()
        assert value == 21.5
        readings = []
        seen = tornado.concurrent.Future()

        def listener(sensor, reading):
            readings.append(reading.value)
            if reading.value == 30.0 and not seen.done():
                seen.set_result(None)

        res.sensor.temp.register_listener(listener, reading=True)
        yield res.sensor.temp.set_sampling_strategy("event")
        manager.fake_sensors["temp"].set_value(30.0, Sensor.WARN)
        yield seen
        assert readings[-1] == 30.0
        assert res.sensor.temp.reading.status == "warn"

    @tornado.testing.gen_test(timeout=WAIT)
    def test_readings_set_on_the_clients_sensors_stay_until_the_fake_sets_one(self):
        # As 0.9.3 tests give fake sensors readings: on the client's KATCPSensor. Polling
        # and sampling a fake sensor that the test never set must leave them alone.
        res, manager = self.make(sensor_infos=SENSORS)
        yield res.until_synced(timeout=WAIT)
        res.sensor.temp.set_value(35.0, Sensor.WARN, timestamp=1234.0)
        value = yield res.sensor.temp.get_value()
        assert value == 35.0
        yield res.sensor.temp.set_sampling_strategy("event")
        reading = yield res.sensor.temp.get_reading()
        assert (reading.timestamp, reading.status, reading.value) == (1234.0, "warn", 35.0)
        found = yield res.list_sensors("temp", refresh=True)
        assert [s.reading.value for s in found] == [35.0]
        # Once the test sets the fake sensor, its readings are the ones the client gets.
        manager.fake_sensors["temp"].set_value(12.5)
        value = yield res.sensor.temp.get_value()
        assert value == 12.5
        assert res.sensor.temp.reading.status == "nominal"

    @tornado.testing.gen_test(timeout=WAIT)
    def test_interface_changes_after_sync_are_seen(self):
        res, manager = self.make()
        yield res.until_synced(timeout=WAIT)
        assert "late" not in dir(res.sensor)
        manager.add_sensors({"late": ("Added later.", "", "integer")})
        manager.add_request_handlers_dict({"later": lambda req, msg: req.make_reply("ok")})
        yield res.until_not_synced(timeout=WAIT)
        yield res.until_synced(timeout=WAIT)
        assert "late" in dir(res.sensor)
        reply = yield res.req.later()
        assert reply.succeeded
        assert manager.fake_sensor_infos["late"] == ("Added later.", "", "integer")


    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_sensor_replaced_by_add_sensors_is_sampled_no_more(self):
        # As a DeviceServer ends the strategies of a sensor that add_sensor() replaces:
        # the fake device kept them, and the old sensor's readings came under the name,
        # mixed with the new one's.
        res, manager = self.make(sensor_infos=SENSORS)
        yield res.until_synced(timeout=WAIT)
        seen = []
        arrived = {2.0: tornado.concurrent.Future(), 3.0: tornado.concurrent.Future()}

        def listener(sensor, reading):
            seen.append(reading.value)
            if reading.value in arrived and not arrived[reading.value].done():
                arrived[reading.value].set_result(None)

        res.set_sensor_listener("temp", listener)
        yield res.set_sampling_strategy("temp", "event")
        replaced = manager.fake_sensors["temp"]
        manager.add_sensors({"temp": SENSORS["temp"]})
        yield res.until_not_synced(timeout=WAIT)
        yield res.until_synced(timeout=WAIT)
        yield res.set_sampling_strategy("temp", "event")
        manager.fake_sensors["temp"].set_value(2.0)
        yield arrived[2.0]
        replaced.set_value(1.5)
        manager.fake_sensors["temp"].set_value(3.0)
        yield arrived[3.0]
        assert 1.5 not in seen


class TestFakeInspectingClient(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test(timeout=WAIT)
    def test_inspects_the_fake_device(self):
        client, manager = fake_clients.fake_inspecting_client_factory(
            InspectingClientAsync, {"sensor_infos": SENSORS, "request_handlers": Handlers()},
            "fake-host.invalid", 5000, ioloop=self.io_loop)
        self.addCleanup(client.stop)
        yield client.connect()
        yield client.until_synced(timeout=WAIT)
        assert set(client.sensors) == {"temp", "mode"}
        assert {"add", "refuse", "help", "sensor-list"} <= set(client.requests)
        sensor = yield client.future_get_sensor("mode")
        assert sensor.stype == "discrete" and sensor.params == ["idle", "busy"]
        reply, informs = yield client.simple_request("add", 4, 5)
        assert reply.arguments == [b"ok", b"9"]
        reply, informs = yield client.simple_request("no-such-request")
        assert reply.arguments == [b"invalid", b"Unknown request."]
        req = fake_clients.FakeClientRequestConnection(
            _RecordingConnection(), Message.request("sensor-list"))
        reply = manager.request_sensor_list(req, req.msg)
        assert reply.arguments == [b"ok", b"2"]

    @tornado.gen.coroutine
    def synced_client(self):
        """An inspecting client of a fake device with SENSORS, synced, and its manager."""
        client, manager = fake_clients.fake_inspecting_client_factory(
            InspectingClientAsync, {"sensor_infos": SENSORS}, "fake-host.invalid", 5000,
            ioloop=self.io_loop)
        self.addCleanup(client.stop)
        yield client.connect()
        yield client.until_synced(timeout=WAIT)
        return client, manager

    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_sensor_value_reply_counts_the_readings_sent(self):
        # The readings of fake sensors nothing set are held back, and the reply's count
        # with them (a client may check the informs against it).
        client, manager = yield self.synced_client()
        reply, informs = yield client.simple_request("sensor-value")
        assert (reply.arguments, informs) == ([b"ok", b"0"], [])
        manager.fake_sensors["temp"].set_value(12.5)
        for request in (("sensor-value",), ("sensor-value", "temp"), ("sensor-value", "mode")):
            reply, informs = yield client.simple_request(*request)
            assert reply.arguments == [b"ok", str(len(informs)).encode()]
            assert [inform.arguments[2:] for inform in informs] == [
                [b"temp", b"nominal", b"12.5"]] * len(informs)
        assert len(informs) == 0

    @tornado.testing.gen_test(timeout=WAIT)
    def test_sampling_and_interface_changes_after_sync(self):
        client, manager = yield self.synced_client()
        sensor = yield client.future_get_sensor("temp")
        updated = tornado.concurrent.Future()

        class Observer:
            def update(self, sensor, reading):
                if reading.value == 42.5 and not updated.done():
                    updated.set_result(reading)

        sensor.attach(Observer())
        reply, _ = yield client.simple_request("sensor-sampling", "temp", "event")
        assert reply.arguments == [b"ok", b"temp", b"event"]
        manager.fake_sensors["temp"].set_value(42.5, Sensor.WARN)
        reading = yield updated
        assert reading.status == Sensor.WARN
        manager.add_sensors({"late": ("Added later.", "", "boolean")})
        yield client.until_not_synced(timeout=WAIT)
        yield client.until_synced(timeout=WAIT)
        assert "late" in client.sensors
        late = yield client.future_get_sensor("late")
        assert late.stype == "boolean"


class TestFakeAsyncClient(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test(timeout=WAIT)
    def test_made_as_an_async_client_is_with_a_device_of_its_own(self):
        client = fake_clients.FakeAsyncClient("fake-host.invalid", 5000)
        other = fake_clients.FakeAsyncClient("fake-host.invalid", 5000, timeout=WAIT)
        fake_clients.FakeInspectingClientManager(client).add_request_handlers_object(Handlers())
        for each in (client, other):
            each.set_ioloop(self.io_loop)
            each.start()
            self.addCleanup(each.stop)
            yield each.until_protocol(timeout=WAIT)
        reply, informs = yield client.future_request(Message.request("add", 2, 3))
        assert reply.arguments == [b"ok", b"5"]
        reply, informs = yield other.future_request(Message.request("add", 2, 3))
        assert reply.arguments == [b"invalid", b"Unknown request."]


class _RecordingConnection:
    def __init__(self):
        self.sent = []

    def inform(self, msg):
        self.sent.append(msg)

    def reply_inform(self, msg, orig):
        self.sent.append(msg)

    def reply(self, msg, orig):
        self.sent.append(msg)


class TestFakeContainer(tornado.testing.AsyncTestCase):

    @staticmethod
    def make():
        """A fake container with children a and b, and its manager."""
        spec = {"name": "cont", "clients": {
            "a": dict(address=("fake-a.invalid", 1), controlled=True),
            "b": dict(address=("fake-b.invalid", 2), controlled=True),
        }}
        return fake_clients.fake_KATCP_client_resource_container_factory(
            KATCPClientResourceContainer, {}, spec)

    @tornado.testing.gen_test(timeout=WAIT)
    def test_children_have_their_own_devices(self):
        container, manager = self.make()
        assert set(manager.child_managers) == {"a", "b"}
        manager.add_request_handlers_dict("a", {"who": lambda req, msg: req.make_reply("ok", "a")})
        manager.add_request_handlers_object("b", Handlers())
        manager.add_sensors("b", {"level": ("A level.", "", "integer")})
        container.start()
        self.addCleanup(container.stop)
        yield container.until_synced(timeout=WAIT)
        reply = yield container.req.a_who()
        assert reply.reply.arguments == [b"ok", b"a"]
        reply = yield container.req.b_add(1, 1)
        assert reply.reply.arguments == [b"ok", b"2"]
        assert "b_level" in dir(container.sensor)
        assert "a_add" not in dir(container.req)

    @tornado.testing.gen_test(timeout=WAIT)
    def test_children_sample_and_see_interface_changes_after_sync(self):
        container, manager = self.make()
        manager.add_sensors("b", {"level": ("A level.", "", "integer", 0, 100)})
        container.start()
        self.addCleanup(container.stop)
        yield container.until_synced(timeout=WAIT)
        seen = tornado.concurrent.Future()

        def listener(sensor, reading):
            if reading.value == 7 and not seen.done():
                seen.set_result(reading)

        container.sensor.b_level.register_listener(listener, reading=True)
        yield container.sensor.b_level.set_sampling_strategy("event")
        manager.child_managers["b"].fake_sensors["level"].set_value(7)
        reading = yield seen
        assert reading.status == "nominal"
        assert "a_extra" not in dir(container.sensor)
        manager.add_sensors("a", {"extra": ("Added later.", "", "float")})
        yield container.until_not_synced(timeout=WAIT)
        yield container.until_synced(timeout=WAIT)
        assert "a_extra" in dir(container.sensor)
        assert container.sensor.b_level.sampling_strategy == ("event",)


class _TaggedResource(KATCPClientResource):
    def __init__(self, resource_spec, tag, **kwargs):
        super().__init__(resource_spec, **kwargs)
        self.tag = tag


class _TaggingContainer(KATCPClientResourceContainer):
    def client_resource_factory(self, res_spec, parent, logger):
        return _TaggedResource(res_spec, "tag-" + res_spec["name"], parent=parent,
                               logger=logger)


class TestFakeContainerUsesItsClientResourceFactory(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test(timeout=WAIT)
    def test_children_are_what_the_container_class_makes_and_still_fake(self):
        spec = {"name": "cont", "clients": {
            "a": dict(address=("fake-a.invalid", 1), controlled=True)}}
        container, manager = fake_clients.fake_KATCP_client_resource_container_factory(
            _TaggingContainer, {"request_handlers": Handlers()}, spec)
        child = container.children["a"]
        assert isinstance(child, _TaggedResource)
        assert child.tag == "tag-a" and child.parent is container
        manager.add_sensors("a", {"level": ("A level.", "", "integer")})
        container.start()
        self.addCleanup(container.stop)
        yield container.until_synced(timeout=WAIT)
        reply = yield container.req.a_add(2, 3)
        assert reply.reply.arguments == [b"ok", b"5"]
        assert "a_level" in dir(container.sensor)


class TestFakeFromAnotherThread:
    """The blocking wrapper case: the client runs in a managed ioloop thread and the test
    drives the fake device from its own thread."""

    def test_manager_and_sensors_used_from_a_foreign_thread(self, loop_manager):
        ioloop = loop_manager.get_ioloop()
        # Debug mode makes asyncio reject non-thread-safe calls from this thread outright.
        ioloop.asyncio_loop.set_debug(True)
        res, manager = fake_clients.fake_KATCP_client_resource_factory(
            KATCPClientResource, {"sensor_infos": SENSORS},
            dict(name="dev", address=("fake-host.invalid", 5000), controlled=True))
        res.set_ioloop(ioloop)
        wrapper = ThreadSafeKATCPClientResourceWrapper(res, IOLoopThreadWrapper(ioloop))
        wrapper.start()
        try:
            wrapper.until_synced(timeout=WAIT)
            # The in-memory resync can finish before a blocking until_not_synced() would
            # start waiting, so the wait is registered on the loop before the change.
            went_unsynced = concurrent.futures.Future()
            IOLoopThreadWrapper(ioloop).call_in_ioloop(
                lambda: tornado.concurrent.chain_future(res.until_not_synced(), went_unsynced),
                (), {})
            manager.add_request_handlers_object(Handlers())
            went_unsynced.result(WAIT)
            wrapper.until_synced(timeout=WAIT)
            assert wrapper.req.add(20, 22).reply.arguments == [b"ok", b"42"]
            wrapper.sensor.temp.set_strategy("event")
            manager.fake_sensors["temp"].set_value(12.5)
            assert wrapper.sensor.temp.wait(12.5, timeout=WAIT)
        finally:
            wrapper.stop()


class _MarkedInspectingClient(ReplyWrappedInspectingClientAsync):
    """What a resource subclass's own inspecting_client_factory makes."""


class _ResourceWithItsOwnInspectingClient(KATCPClientResource):
    def inspecting_client_factory(self, host, port, ioloop_set_to):
        return _MarkedInspectingClient(host, port, ioloop=ioloop_set_to,
                                       auto_reconnect=self.auto_reconnect, logger=self._logger)


class TestFakeResourceUsesItsInspectingClientFactory(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test(timeout=WAIT)
    def test_the_inspecting_client_is_the_class_the_resource_makes_and_still_fake(self):
        res, manager = fake_clients.fake_KATCP_client_resource_factory(
            _ResourceWithItsOwnInspectingClient, {"request_handlers": Handlers()},
            dict(name="dev", address=("fake-host.invalid", 5000), controlled=True))
        res.start()
        self.addCleanup(res.stop)
        yield res.until_synced(timeout=WAIT)
        assert isinstance(res._inspecting_client, _MarkedInspectingClient)
        reply = yield res.req.add(2, 3)
        assert reply.reply.arguments == [b"ok", b"5"]
