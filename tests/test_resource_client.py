"""Tests for katcp.resource_client against real device servers on 127.0.0.1."""

import asyncio
import concurrent.futures
import functools
import logging
import socket
import threading
from unittest import mock

import pytest
import tornado.concurrent
import tornado.gen
import tornado.ioloop
import tornado.testing
from log_helpers import no_logs, recording_logger
from test_client import _closed_port
from wait_helpers import outcome_in_thread, racing, waits_left_by

from katcp import Message, ProtocolFlags, Sensor
from katcp.core import AsyncEvent, AttrDict, until_any, until_later
from katcp.ioloop_manager import IOLoopThreadWrapper
from katcp.kattypes import Int, Str, concurrent_reply, request, return_reply
from katcp.resource import (KATCPDummyRequest, KATCPReply, KATCPResourceInactive,
                            KATCPSensor, KATCPSensorError, KATCPSensorReading,
                            SensorResultTuple, escape_name)
from katcp.resource.base import STRATEGY_WINDOW
from katcp.resource_client import (
    AttrMappingProxy,
    ClientGroup,
    GroupResults,
    KATCPClientResource,
    KATCPClientResourceContainer,
    KATCPClientResourceRequest,
    KATCPClientResourceSensorsManager,
    MappingProxy,
    ReplyWrappedInspectingClientAsync,
    ThreadSafeKATCPClientResourceWrapper,
    monitor_resource_sync_state,
    transform_future,
)
from katcp.resource_client.inspecting import _StrategyWishes
from katcp.server import DeviceServer
from katcp.testutils import call_in_ioloop

WAIT = 10.0


class BaseDevice(DeviceServer):
    """Device with an integer sensor, an add request and a way to grow a sensor."""

    VERSION_INFO = ("resource-test", 1, 0)
    BUILD_INFO = ("resource-test", 1, 0, "")
    # add_sensor() / remove_sensor() tell the clients (off by default, as in katcp 0.9).
    SEND_INTERFACE_CHANGED = True

    def setup_sensors(self):
        self.an_int = Sensor.integer("an.int", "An integer", "count", [0, 1000])
        self.an_int.set_value(1)
        self.add_sensor(self.an_int)
        self.a_float = Sensor.float("a-float", "A float", "m", [-10.0, 10.0])
        self.a_float.set_value(0.5)
        self.add_sensor(self.a_float)

    @request(Int(), Int())
    @return_reply(Int())
    def request_add(self, req, x, y):
        """Add two numbers"""
        return ("ok", x + y)

    @request(Int())
    @return_reply()
    def request_set_int(self, req, value):
        """Set the an.int sensor."""
        self.an_int.set_value(value)
        return ("ok",)

    @request()
    @return_reply()
    def request_grow(self, req):
        """Add the extra.sensor sensor, changing the interface."""
        self.extra = Sensor.integer("extra.sensor", "Grown on request", "", [0, 10])
        self.extra.set_value(4)
        self.add_sensor(self.extra)
        return ("ok",)


class ShrinkingDevice(BaseDevice):
    """Can take extra.sensor away again, so that ?grow adds it anew."""

    @request()
    @return_reply()
    def request_shrink(self, req):
        """Remove the extra.sensor sensor, changing the interface."""
        self.remove_sensor("extra.sensor")
        return ("ok",)


class SensorlessDevice(BaseDevice):
    """A device with requests but no sensors."""

    def setup_sensors(self):
        pass


class RehelpDevice(BaseDevice):
    """Can change the help of ?add, telling the clients the request was modified."""

    @request(Str())
    @return_reply()
    def request_rehelp(self, req, text):
        """Give ?add a new help text."""
        add = self._request_handlers["add"]

        def handler(server, req, msg):
            return add(server, req, msg)
        handler.__doc__ = text
        self._request_handlers = dict(self._request_handlers, add=handler)
        self.mass_inform(Message.inform("interface-changed", "request", "add", "modified"))
        return ("ok",)


class DeviceV1(BaseDevice):

    def setup_sensors(self):
        super().setup_sensors()
        self.add_sensor(Sensor.string("old-sensor", "Only in version 1", ""))

    @request()
    @return_reply()
    def request_old_thing(self, req):
        """Only in version 1."""
        return ("ok",)


class DeviceV2(BaseDevice):

    def setup_sensors(self):
        super().setup_sensors()
        self.new_sensor = Sensor.integer("new.sensor", "Only in version 2", "", [0, 10])
        self.add_sensor(self.new_sensor)

    @request()
    @return_reply()
    def request_new_thing(self, req):
        """Only in version 2."""
        return ("ok",)


class SamplingRecorderDevice(DeviceV1):
    """KATCP v5.0 device (no bulk sensor sampling) that records ?sensor-sampling."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampling_requests = []

    async def request_sensor_sampling(self, req, msg):
        """Record the request, then configure sampling as usual."""
        self.sampling_requests.append(msg.arguments)
        return await super().request_sensor_sampling(req, msg)


class DropOnSamplingDevice(SamplingRecorderDevice):
    """Once armed, drops the connection of the next ?sensor-sampling request instead of
    replying to it."""

    drop_next = False

    async def request_sensor_sampling(self, req, msg):
        """Drop the connection if armed, else record and configure sampling."""
        if self.drop_next:
            self.drop_next = False
            await req.client_connection.disconnect("dropped while sampling")
            return Message.reply("sensor-sampling", "fail", "dropped")
        return await super().request_sensor_sampling(req, msg)


class BulkDevice(SamplingRecorderDevice):
    """KATCP v5.1 device with bulk sensor sampling that records ?sensor-sampling."""

    PROTOCOL_INFO = ProtocolFlags(5, 1, {
        ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS,
        ProtocolFlags.BULK_SET_SENSOR_SAMPLING})


class AggregateDevice(BaseDevice):
    """Has an aggregate sensor (``agg_`` name), which it can take away and bring back."""

    def setup_sensors(self):
        super().setup_sensors()
        self.agg_total = Sensor.integer("agg_total", "An aggregate", "", [0, 100])
        self.agg_total.set_value(2)
        self.add_sensor(self.agg_total)

    @request()
    @return_reply()
    def request_drop_agg(self, req):
        """Remove the agg_total sensor, changing the interface."""
        self.remove_sensor("agg_total")
        return ("ok",)

    @request()
    @return_reply()
    def request_restore_agg(self, req):
        """Add the agg_total sensor again, changing the interface."""
        self.add_sensor(self.agg_total)
        return ("ok",)


class UnknownTypeDevice(BaseDevice):
    """Lists, with its sensors, one of a type that no KATCP version has."""

    def request_sensor_list(self, req, msg):
        """List the sensors, and odd.one of type blob."""
        reply = super().request_sensor_list(req, msg)
        req.inform("odd.one", "Of no known type", "", "blob")
        return Message.reply("sensor-list", "ok", int(reply.arguments[1]) + 1)


class TwinNamesDevice(BaseDevice):
    """Has sensors twin.a and twin-a, of one Python identifier, and can drop either."""

    def setup_sensors(self):
        super().setup_sensors()
        for name in ("twin.a", "twin-a"):
            self.add_sensor(Sensor.integer(name, "A twin", "", [0, 10]))

    @request(Str())
    @return_reply()
    def request_drop(self, req, name):
        """Remove a sensor, changing the interface."""
        self.remove_sensor(name)
        return ("ok",)


def start_server(device_class=DeviceV1, port=0):
    server = device_class("127.0.0.1", port)
    server.start(timeout=WAIT)
    server.wait_running(WAIT)
    return server


def stop_server(server):
    server.stop()
    server.join(WAIT)


class CountingDevice(BaseDevice):
    """Counts the connections made to it and those still open."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections_made = 0
        self.connections_open = 0
        self._connections_changed = threading.Condition()

    def on_client_connect(self, client_conn):
        with self._connections_changed:
            self.connections_made += 1
            self.connections_open += 1
            self._connections_changed.notify_all()
        return super().on_client_connect(client_conn)

    def on_client_disconnect(self, client_conn, msg, connection_valid):
        with self._connections_changed:
            self.connections_open -= 1
            self._connections_changed.notify_all()
        return super().on_client_disconnect(client_conn, msg, connection_valid)

    def until_open(self, count):
        """A future of whether `count` connections are open within WAIT seconds (the
        wait blocks a thread of the loop's executor, not the loop)."""
        def wait():
            with self._connections_changed:
                return self._connections_changed.wait_for(
                    lambda: self.connections_open == count, WAIT)
        return tornado.ioloop.IOLoop.current().run_in_executor(None, wait)


@tornado.gen.coroutine
def until_model(res, check):
    """Wait, through the resource's state changes, until it is synced and check() holds
    (e.g. an interface change has reached its namespaces)."""
    while not (res.synced and check()):
        yield res.until_not_synced() if res.synced else res.until_synced()


@tornado.gen.coroutine
def listeners_gone(sensor, turns=10):
    """Whether the sensor's listeners are gone within a few loop turns (what a cancelled
    wait leaves to do runs on the next turns; no timer is involved)."""
    for _ in range(turns):
        if not sensor._listeners:
            return True
        yield tornado.gen.moment
    return not sensor._listeners


def _waits_on(res):
    """The waits registered on the states of resource `res`."""
    return sum(len(event._waiters) for event in res._state._events.values())


@tornado.gen.coroutine
def waits_gone(res, turns=10):
    """Whether the waits on `res` are gone within a few loop turns (as listeners_gone)."""
    for _ in range(turns):
        if not _waits_on(res):
            return True
        yield tornado.gen.moment
    return not _waits_on(res)


class ListenerFuture:
    """A reading listener that resolves a future when `condition(reading)` holds."""

    def __init__(self, condition):
        self.condition = condition
        self.readings = []
        self.future = tornado.concurrent.Future()

    def __call__(self, sensor, reading):
        self.readings.append(reading)
        if not self.future.done() and self.condition(reading):
            self.future.set_result(reading)


class ResourceTestCase(tornado.testing.AsyncTestCase):

    def start_server(self, device_class=DeviceV1, port=0):
        server = start_server(device_class, port)
        self.addCleanup(stop_server, server)
        return server

    @tornado.gen.coroutine
    def synced_pair_in_group_both(self):
        """Two servers, and a synced container of their clients d0 and d1 in group both."""
        servers = [self.start_server() for _ in range(2)]
        container = KATCPClientResourceContainer(
            container_spec(servers, ["d0", "d1"], groups={"both": ["d0", "d1"]}))
        container.start()
        self.addCleanup(container.stop)
        yield container.until_synced(timeout=WAIT)
        return servers, container

    def make_resource(self, server, **spec):
        spec.setdefault("name", "dev")
        spec.setdefault("controlled", True)
        spec["address"] = server.bind_address
        res = KATCPClientResource(spec)
        res.start()
        self.addCleanup(res.stop)
        return res


class TestKATCPClientResource(ResourceTestCase):

    def setUp(self):
        super().setUp()
        self.server = self.start_server()

    @tornado.testing.gen_test(timeout=WAIT)
    def test_sync_and_namespaces(self):
        res = self.make_resource(self.server, description="A test device")
        assert res.state == "disconnected" and not res.is_connected()
        yield res.until_synced(timeout=WAIT)
        assert res.synced and res.is_connected() and res.state == "synced"
        assert res.name == "dev" and res.description == "A test device"
        assert res.address == self.server.bind_address
        assert res.parent is None and res.children == {}
        assert res.ioloop is self.io_loop
        for name in ("add", "set_int", "grow", "old_thing", "sensor_list", "help"):
            assert name in res.req
            assert name in dir(res.req)
            assert isinstance(getattr(res.req, name), KATCPClientResourceRequest)
        assert set(res.sensor) == {"an_int", "a_float", "old_sensor"}
        assert "an_int" in dir(res.sensor)
        assert res.sensor.an_int.name == "an.int"
        assert res.sensor.an_int.type == "integer"
        assert res.sensor.a_float.units == "m"
        assert res.req.add.name == "add"
        assert res.req.add.description == "Add two numbers"
        assert "Add two numbers" in res.req.add.__doc__
        assert "KATCPClientResourceRequest(name=add, help='Add two numbers')" in repr(res.req.add)
        assert "KATCPSensor(name=an.int, parent=dev, value=" in repr(res.sensor.an_int)
        assert "KATCPClientResource(name=dev, address=" in repr(res)

    @tornado.testing.gen_test(timeout=WAIT)
    def test_sensors_are_of_the_class_katcp_resource_has(self):
        # Where 0.9's sensor manager found the class, and so where a test patches it.
        class Mirror(KATCPSensor):
            pass

        with mock.patch("katcp.resource.KATCPSensor", Mirror):
            res = self.make_resource(self.server)
            yield res.until_synced(timeout=WAIT)
            made = res.inspecting_client.sensor_factory(
                name="made", sensor_type=Sensor.INTEGER, description="Made.", units="",
                params=[0, 10])
        assert type(res.sensor.an_int) is Mirror
        assert type(made) is Mirror and made.name == "made"

    @tornado.testing.gen_test(timeout=WAIT)
    def test_requests(self):
        res = self.make_resource(self.server)
        yield res.until_synced(timeout=WAIT)
        reply = yield res.req.add(3, 6)
        assert isinstance(reply, KATCPReply)
        assert reply.succeeded and reply.reply.arguments == [b"ok", b"9"]
        assert repr(reply) == "!add ok 9"
        reply = yield res.req.add(3, timeout=2)
        assert not reply.succeeded and reply.reply.arguments[0] == b"fail"
        reply = yield res.req.help("add")
        assert reply.succeeded and len(reply.informs) == 1
        assert reply.informs[0].arguments == [b"add", b"Add two numbers"]
        reply = yield res.req.add(1, 1, mid=77)
        assert reply.reply.mid == b"77"
        res.set_active(False)
        with pytest.raises(Exception, match="inactive"):
            res.req.add(1, 2)
        res.set_active(True)
        assert res.is_active()

    @tornado.testing.gen_test(timeout=WAIT)
    def test_uncontrolled_resource_exposes_only_allowed_requests(self):
        res = self.make_resource(
            self.server, controlled=False,
            always_allowed_requests=["sensor-value", "add", "help"],
            always_excluded_requests=["help"])
        yield res.until_synced(timeout=WAIT)
        assert set(res.req) == {"sensor_value", "add"}
        excluded = self.make_resource(
            self.server, name="dev2", always_excluded_requests=["set-int"])
        yield excluded.until_synced(timeout=WAIT)
        assert "set_int" not in excluded.req and "add" in excluded.req

    @tornado.testing.gen_test(timeout=WAIT)
    def test_sensor_strategies_listeners_and_polling(self):
        res = self.make_resource(self.server)
        yield res.until_synced(timeout=WAIT)
        an_int = res.sensor.an_int
        value = yield an_int.get_value()
        assert value == 1 and an_int.reading.status == "nominal"
        with pytest.raises(KATCPSensorError):
            an_int.wait(1)
        result = yield res.set_sampling_strategy("an.int", "event")
        assert result == {"an_int": (True, ("event",))}
        assert an_int.sampling_strategy == ("event",)
        listener = ListenerFuture(lambda reading: reading.value == 42)
        yield res.set_sensor_listener("an_int", listener)
        plain_calls = []
        an_int.register_listener(lambda *args: plain_calls.append(args))
        self.server.an_int.set_value(42, Sensor.WARN)
        reading = yield tornado.gen.with_timeout(self.io_loop.time() + WAIT, listener.future)
        assert reading.status == "warn" and reading.value == 42
        assert plain_calls[-1][2:] == ("warn", 42)
        assert (yield res.wait("an.int", 42, timeout=1)) is True
        assert (yield res.wait("an_int", 43, timeout=0.05)) is False
        waiting = an_int.wait(lambda r: r.value == 43, timeout=WAIT)
        reply = yield res.req.set_int(43)
        assert reply.succeeded
        assert (yield waiting) is True
        reply = yield res.req.sensor_sampling("an.int")
        assert reply.reply.arguments == [b"ok", b"an.int", b"event"]
        failed = yield res.set_sampling_strategy("an.int", "bogus-strategy")
        assert failed["an_int"][0] is False
        with pytest.raises(KATCPSensorError):
            yield an_int.set_sampling_strategy("bogus-strategy")
        res.drop_sampling_strategy("an.int")
        assert an_int.sampling_strategy == ("none",)

    @tornado.testing.gen_test(timeout=WAIT)
    def test_list_sensors(self):
        res = self.make_resource(self.server)
        yield res.until_synced(timeout=WAIT)
        sensors = yield res.list_sensors()
        assert [s.python_identifier for s in sensors] == ["a_float", "an_int", "old_sensor"]
        assert all(isinstance(s, SensorResultTuple) for s in sensors)
        sensors = yield res.list_sensors("an_")
        assert [s.name for s in sensors] == ["an.int"]
        assert sensors[0].object is res.sensor.an_int
        assert (yield res.list_sensors("an\\.int")) == []
        sensors = yield res.list_sensors("an\\.int", use_python_identifiers=False)
        assert len(sensors) == 1
        yield res.set_sampling_strategies("a", "event")
        assert res.sensor.a_float.sampling_strategy == ("event",)
        assert res.sensor.old_sensor.sampling_strategy == ("none",)
        sensors = yield res.list_sensors(strategy=True)
        assert [s.python_identifier for s in sensors] == ["a_float", "an_int"]
        sensors = yield res.list_sensors(status="nominal", refresh=True)
        assert [s.python_identifier for s in sensors] == ["a_float", "an_int"]
        old = yield res.list_sensors("old", tuple=True)
        assert old[0][0] == "old-sensor" and old[0][6] == "unknown"
        assert old[0][7] == ("none",)

    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_sensor_of_an_unknown_type_is_left_out_of_the_lists(self):
        res = self.make_resource(self.start_server(UnknownTypeDevice))
        yield res.until_synced(timeout=WAIT)
        assert "odd_one" in res.sensor
        with recording_logger("katcp.resource_client") as (_, records):
            sensors = yield res.list_sensors()
            result = yield res.set_sampling_strategies("", "event")
        assert [s.python_identifier for s in sensors] == ["a_float", "an_int"]
        assert set(result) == {"a_float", "an_int"}
        warnings = [record.getMessage() for record in records.records
                    if record.levelno == logging.WARNING]
        assert len(warnings) == 2 and all("odd.one" in text and "blob" in text
                                          for text in warnings)

    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_filters_strategy_is_its_sensors_strategy_from_the_call(self):
        # 0.9.3 set (and cached) the first sensor a filter matched within the call, so
        # a wait made at once, before the strategies are set, was no error.
        res = self.make_resource(self.server)
        yield res.until_synced(timeout=WAIT)
        setting = res.set_sampling_strategies("an_int|a_float", "event")
        assert res.sensor.a_float.sampling_strategy == ("event",)
        assert res.sensor.an_int.sampling_strategy == ("event",)
        assert res.sensor.old_sensor.sampling_strategy == ("none",)
        waiting = res.wait("an_int", 1, timeout=WAIT)
        yield setting
        assert (yield waiting) is True

    @tornado.testing.gen_test(timeout=WAIT)
    def test_interface_change_applies_pending_strategy_and_listener(self):
        res = self.make_resource(self.server)
        yield res.until_synced(timeout=WAIT)
        assert (yield res.set_sampling_strategy("extra.sensor", "event")) == {}
        listener = ListenerFuture(lambda reading: reading.value == 4)
        assert (yield res.set_sensor_listener("extra.sensor", listener)) == {}
        reply = yield res.req.grow()
        assert reply.succeeded
        # The event strategy reports the current value as soon as it is applied.
        reading = yield tornado.gen.with_timeout(self.io_loop.time() + WAIT, listener.future)
        assert reading.value == 4
        assert res.sensor.extra_sensor.sampling_strategy == ("event",)

    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_listener_set_again_and_again_is_kept_once(self):
        # Kept for sensors that come later and re-registered at each sync: a listener set
        # in a loop must not pile up.
        res = self.make_resource(self.server)
        yield res.until_synced(timeout=WAIT)
        listener, other = ListenerFuture(lambda reading: False), ListenerFuture(None)
        for _ in range(100):
            yield res.set_sensor_listener("extra.sensor", listener)
        yield res.set_sensor_listener("extra.sensor", other)
        assert res._sensor_listener_cache["extra_sensor"] == [listener, other]

    @tornado.testing.gen_test(timeout=WAIT)
    def test_an_async_def_sensor_listener_is_refused_before_it_is_kept(self):
        # Kept for a sensor still to come, it would have been registered (and its
        # coroutines dropped) at a later sync, long after this call.
        async def listener(sensor, reading):
            pass

        res = self.make_resource(self.server)
        yield res.until_synced(timeout=WAIT)
        for name in ("an.int", "extra.sensor"):
            with pytest.raises(TypeError, match="listener .* is an async function"):
                yield res.set_sensor_listener(name, listener)
        assert not res._sensor_listener_cache.get("extra_sensor")
        assert not res.sensor.an_int.is_listener(listener)

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_server_restart_with_changed_interface(self):
        res = self.make_resource(self.server)
        yield res.until_synced(timeout=WAIT)
        port = self.server.bind_address[1]
        yield res.set_sampling_strategy("an.int", "event")
        # A filter strategy also covers sensors that only appear later.
        assert (yield res.set_sampling_strategies("new_", "event")) == {}
        yield res.set_sampling_strategies("float", "period 0.5")
        an_int_updates = ListenerFuture(lambda reading: reading.value == 7)
        yield res.set_sensor_listener("an.int", an_int_updates)
        new_updates = ListenerFuture(lambda reading: reading.value == 3)
        yield res.set_sensor_listener("new.sensor", new_updates)
        old_an_int = res.sensor.an_int
        assert "old_thing" in res.req and "new_sensor" not in res.sensor

        stop_server(self.server)
        yield res.until_not_synced(timeout=WAIT)
        assert res.state in ("disconnected", "syncing")
        server2 = self.start_server(DeviceV2, port)
        yield res.until_synced(timeout=WAIT)

        assert "new_thing" in res.req and "old_thing" not in res.req
        assert set(res.sensor) == {"an_int", "a_float", "new_sensor"}
        # Unchanged sensors keep their objects, so direct listeners survive too.
        assert res.sensor.an_int is old_an_int
        for name, strategy in (("an.int", [b"event"]), ("new.sensor", [b"event"]),
                               ("a-float", [b"period", b"0.5"])):
            reply = yield res.req.sensor_sampling(name)
            assert reply.reply.arguments == [b"ok", name.encode()] + strategy
        server2.an_int.set_value(7)
        server2.new_sensor.set_value(3)
        yield tornado.gen.with_timeout(
            self.io_loop.time() + WAIT, [an_int_updates.future, new_updates.future])
        assert res.sensor.new_sensor.value == 3

    @tornado.testing.gen_test(timeout=WAIT)
    def test_state_futures_and_stop(self):
        res = self.make_resource(self.server)
        yield res.wait_connected(timeout=WAIT)
        yield res.until_state("synced", timeout=WAIT)
        states = []
        changes = [tornado.concurrent.Future() for _ in range(3)]

        def record(synced):
            states.append(synced)
            changes[len(states) - 1].set_result(synced)

        exit_event = AsyncEvent()
        monitor = monitor_resource_sync_state(res, record, exit_event)
        assert (yield changes[1]) is True
        res.stop()
        yield res.until_stopped(timeout=WAIT)
        yield res.until_not_synced(timeout=WAIT)
        assert res.state == "disconnected"
        assert (yield changes[2]) is False
        exit_event.set()
        yield tornado.gen.with_timeout(self.io_loop.time() + WAIT, monitor)
        assert states == [False, True, False]

    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_monitor_refuses_an_async_def_callback(self):
        # It calls the callback and moves on: its coroutines would never run.
        async def record(synced):
            pass

        res = self.make_resource(self.server)
        with pytest.raises(TypeError, match="callback .* is an async function"):
            yield monitor_resource_sync_state(res, record, AsyncEvent())

    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_monitor_told_to_exit_leaves_nothing_behind(self):
        res = self.make_resource(self.server)
        yield res.until_synced(timeout=WAIT)

        @tornado.gen.coroutine
        def monitor_once():
            exit_event = AsyncEvent()
            states = []
            monitor = monitor_resource_sync_state(res, states.append, exit_event)
            yield tornado.gen.moment
            exit_event.set()
            yield tornado.gen.with_timeout(self.io_loop.time() + WAIT, monitor)
            assert states == [False, True]
            yield tornado.gen.moment

        assert (yield waits_left_by(monitor_once)) <= 0

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_polled_waits_leave_nothing_behind(self):
        res = self.make_resource(self.server)
        yield res.until_synced(timeout=WAIT)
        yield res.set_sampling_strategy("an.int", "event")

        @tornado.gen.coroutine
        def poll():
            # A watchdog's questions while the link stays up: each wait is given up.
            with pytest.raises(tornado.gen.TimeoutError, match=" not out of sync after "):
                yield res.until_not_synced(timeout=0.001)
            with pytest.raises(tornado.gen.TimeoutError, match=" not 'disconnected' after "):
                yield res.until_state("disconnected", timeout=0.001)
            # Waits given up without a timeout are cancelled, as AsyncEvent.until_set says.
            waits = [res.until_not_synced(), res.until_state("syncing")]
            yield until_any(*waits, until_later(0))
            for wait in waits:
                wait.cancel()
            assert (yield res.wait("an.int", 999, timeout=0.001)) is False
            # What the given-up waits leave to do runs on the next loop turn.
            yield tornado.gen.moment

        assert (yield waits_left_by(poll, 50)) <= 0
        assert not res.sensor.an_int._listeners
        # The waits still work.
        not_synced = res.until_not_synced()
        res.stop()
        yield tornado.gen.with_timeout(self.io_loop.time() + WAIT, not_synced)


class TestStrategyWishes(ResourceTestCase):
    """The latest strategy wished for a sensor, whichever way it was set, is what the
    sensor gets again when the device adds it anew or the resource restarts."""

    @tornado.testing.gen_test(timeout=4 * WAIT)
    def test_latest_wish_comes_back_with_the_sensor(self):
        res = self.make_resource(self.start_server(ShrinkingDevice))
        yield res.until_synced(timeout=WAIT)
        yield res.req.grow()
        yield until_model(res, lambda: "extra_sensor" in res.sensor)

        @tornado.gen.coroutine
        def added_anew():
            """The sensor's strategy on both sides once the device has added it anew."""
            yield res.req.shrink()
            yield until_model(res, lambda: "extra_sensor" not in res.sensor)
            yield res.req.grow()
            yield until_model(res, lambda: "extra_sensor" in res.sensor)
            reply = yield res.req.sensor_sampling("extra.sensor")
            return res.sensor.extra_sensor.sampling_strategy, reply.reply.arguments[2:]

        yield res.set_sampling_strategy("extra.sensor", "event")
        # Set later on the sensor: newer than the resource's wish.
        yield res.sensor.extra_sensor.set_sampling_strategy("period 2")
        assert (yield added_anew()) == (("period", "2.0"), [b"period", b"2.0"])
        yield res.sensor.extra_sensor.set_strategy("period", 3)
        assert (yield added_anew()) == (("period", "3.0"), [b"period", b"3.0"])
        res.sensor.extra_sensor.drop_sampling_strategy()
        assert (yield added_anew()) == (("none",), [b"none"])
        # Dropped by name, a sensor is no longer covered by an older filter's wish...
        yield res.set_sampling_strategies("extra", "period 0.5")
        res.drop_sampling_strategy("extra.sensor")
        assert (yield added_anew()) == (("none",), [b"none"])
        # ... but by a newer one.
        yield res.set_sampling_strategies("extra", "event")
        assert (yield added_anew()) == (("event",), [b"event"])

        # A wish made on a sensor outlives a restart of the resource too.
        yield res.sensor.an_int.set_sampling_strategy("period 4")
        res.stop()
        yield res.until_stopped(timeout=WAIT)
        res.start()
        yield res.until_synced(timeout=WAIT)
        reply = yield res.req.sensor_sampling("an.int")
        assert reply.reply.arguments[2:] == [b"period", b"4.0"]
        assert res.sensor.an_int.sampling_strategy == ("period", "4.0")


    @tornado.gen.coroutine
    def sampling_when_added_anew(self, res):
        """The extra sensor's strategy on the device once it has added it anew."""
        yield res.req.shrink()
        yield until_model(res, lambda: "extra_sensor" not in res.sensor)
        yield res.req.grow()
        yield until_model(res, lambda: "extra_sensor" in res.sensor)
        reply = yield res.req.sensor_sampling("extra.sensor")
        return reply.reply.arguments[2:]

    @tornado.testing.gen_test(timeout=4 * WAIT)
    def test_wishes_made_while_the_sensor_is_gone(self):
        res = self.make_resource(self.start_server(ShrinkingDevice))
        yield res.until_synced(timeout=WAIT)
        # A filter's wish alone (no other wish, no listener) reaches a sensor added later.
        yield res.set_sampling_strategies("extra", "event")
        yield res.req.grow()
        yield until_model(res, lambda: "extra_sensor" in res.sensor)
        reply = yield res.req.sensor_sampling("extra.sensor")
        assert reply.reply.arguments[2:] == [b"event"]
        # Re-set while the sensor is gone, the filter's wish is the newest again.
        yield res.sensor.extra_sensor.set_sampling_strategy("period 2")
        yield res.req.shrink()
        yield until_model(res, lambda: "extra_sensor" not in res.sensor)
        yield res.set_sampling_strategies("extra", "period 3")
        yield res.req.grow()
        yield until_model(res, lambda: "extra_sensor" in res.sensor)
        reply = yield res.req.sensor_sampling("extra.sensor")
        assert reply.reply.arguments[2:] == [b"period", b"3.0"]
        # A strategy the sensors manager caches is a wish like any other.
        res.sensor.extra_sensor._manager.cache_sampling_strategy("extra.sensor", "period 4")
        assert (yield self.sampling_when_added_anew(res)) == [b"period", b"4.0"]

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_wishes_made_before_the_start(self):
        server = self.start_server()
        res = KATCPClientResource(dict(name="dev", address=server.bind_address,
                                       controlled=True))
        yield res.set_sampling_strategy("an.int", "event")
        yield res.set_sampling_strategy("a-float", "period 2")
        res.drop_sampling_strategy("an.int")
        res.start()
        self.addCleanup(res.stop)
        yield res.until_synced(timeout=WAIT)
        for name, strategy in (("an.int", [b"none"]), ("a-float", [b"period", b"2.0"])):
            reply = yield res.req.sensor_sampling(name)
            assert reply.reply.arguments[2:] == strategy

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_a_drop_for_a_sensor_never_wished_for(self):
        res = self.make_resource(self.start_server())
        yield res.until_synced(timeout=WAIT)
        # No wish to forget and no filter's wish to overrule: nothing to record.
        res.drop_sampling_strategy("an.int")
        res.sensor.a_float.drop_sampling_strategy()
        assert (yield self.strategies_after_a_restart(res, "an.int", "a-float")) == [
            ("none",), ("none",)]

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_a_connection_lost_while_wishes_are_reapplied_is_never_synced(self):
        server = self.start_server(DropOnSamplingDevice)
        res = self.make_resource(server)
        yield res.until_synced(timeout=WAIT)
        yield res.set_sampling_strategy("an.int", "event")
        katcp_client = res._inspecting_client.katcp_client
        seen = []
        set_state = res._state.set_state

        def record(state):
            seen.append((state, katcp_client.is_connected()))
            set_state(state)
        res._state.set_state = record
        server.drop_next = True
        katcp_client.disconnect()
        # The resync's re-apply loses its connection; the next connection's resync
        # re-applies the wish and is synced.
        yield res.until_not_synced(timeout=WAIT)
        yield res.until_synced(timeout=WAIT)
        assert ("synced", False) not in seen
        assert seen[-1] == ("synced", True)
        assert seen.count(("disconnected", False)) == 2
        reply = yield res.req.sensor_sampling("an.int")
        assert reply.reply.arguments[2:] == [b"event"]

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_a_connection_lost_while_many_wishes_are_reapplied_logs_no_error_for_each(self):
        server = self.start_server(ManySensorsDropOnSamplingDevice)
        res = self.make_resource(server)
        yield res.until_synced(timeout=WAIT)
        yield res.set_sampling_strategies("many", "event")
        server.drop_next = True
        with recording_logger("katcp") as (_, records):
            res._inspecting_client.katcp_client.disconnect()
            # The resync's re-apply loses its connection; the next one re-applies all.
            yield res.until_not_synced(timeout=WAIT)
            yield res.until_synced(timeout=WAIT)
        problems = [record.getMessage() for record in records.records
                    if record.levelno >= logging.WARNING and "strateg" in record.getMessage()]
        assert problems == []
        assert (yield self.strategies_on_the_device(res, *server.many_names)) == [
            ("event",)] * len(server.many_names)

    @tornado.gen.coroutine
    def strategies_on_the_device(self, res, *names):
        replies = yield [res.req.sensor_sampling(name) for name in names]
        return [tuple(arg.decode() for arg in reply.reply.arguments[2:])
                for reply in replies]

    @tornado.gen.coroutine
    def strategies_after_a_restart(self, res, *names):
        """The strategies of the sensors on the device once `res` restarted (those it
        reapplies: the device starts its new connection with none)."""
        res.stop()
        yield res.until_stopped(timeout=WAIT)
        res.start()
        yield res.until_synced(timeout=WAIT)
        return (yield self.strategies_on_the_device(res, *names))

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_a_wish_made_after_a_filter_before_its_sensors_turn_counts(self):
        res = self.make_resource(self.start_server())
        yield res.until_synced(timeout=WAIT)
        # Asked in one loop turn, by name and by the sensor after the filter: the
        # filter's sensors are set in later turns, but the later wishes count.
        by_filter = res.set_sampling_strategies("a", "event")
        by_name = res.set_sampling_strategy("an.int", "auto")
        by_sensor = res.sensor.a_float.set_sampling_strategy("period 2")
        results = yield [by_filter, by_name, by_sensor]
        assert results[0] == {"an_int": (True, ("auto",)),
                              "a_float": (True, ("period", "2.0"))}
        assert results[1] == {"an_int": (True, ("auto",))}
        expected = [("auto",), ("period", "2.0")]
        assert (yield self.strategies_on_the_device(res, "an.int", "a-float")) == expected
        assert [res.sensor.an_int.sampling_strategy,
                res.sensor.a_float.sampling_strategy] == expected
        assert (yield self.strategies_after_a_restart(res, "an.int", "a-float")) == expected
        # A drop after a filter counts as newer too: nothing is reapplied.
        by_filter = res.set_sampling_strategies("a", "event")
        res.drop_sampling_strategy("an.int")
        res.sensor.a_float.drop_sampling_strategy()
        yield by_filter
        assert res.sensor.an_int.sampling_strategy == ("none",)
        assert (yield self.strategies_after_a_restart(res, "an.int", "a-float")) == [
            ("none",), ("none",)]
        # A filter asked after a filter: the later one counts.
        first = res.set_sampling_strategies("a", "event")
        second = res.set_sampling_strategies("a", "period 3")
        assert (yield first) == (yield second) == {
            "an_int": (True, ("period", "3.0")), "a_float": (True, ("period", "3.0"))}
        assert (yield self.strategies_after_a_restart(res, "an.int", "a-float")) == [
            ("period", "3.0"), ("period", "3.0")]

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_a_wish_made_after_a_container_filter_before_its_sensors_turn_counts(self):
        server = self.start_server(ManySensorsDevice)
        container = KATCPClientResourceContainer(container_spec([server], ["c0"]))
        container.set_ioloop(self.io_loop)
        container.start()
        self.addCleanup(container.stop)
        yield container.until_synced(timeout=WAIT)
        res = container.children.c0
        last = "many.%03d" % (ManySensorsDevice.SENSORS - 1)
        # The container's filter sets the last sensor in a later window, after the
        # requests of the wishes asked after it: by name through the container (which
        # too waits for its turn) and through the child resource (at once).
        by_filter = container.set_sampling_strategies("many", "event")
        by_name = container.set_sampling_strategy("c0_" + escape_name(last), "auto")
        by_child = res.set_sampling_strategy("many.000", "period 2")
        results = yield [by_filter, by_name, by_child]
        assert results[0] == {"c0": {escape_name(name): "event"
                                     for name in server.many_names}}
        assert results[1] == {"c0": {escape_name(last): "auto"}}
        expected = [("period", "2.0"), ("event",), ("auto",)]
        names = ("many.000", "many.001", last)
        assert (yield self.strategies_on_the_device(res, *names)) == expected
        assert [res.sensor[escape_name(name)].sampling_strategy for name in names] == expected
        assert (yield self.strategies_after_a_restart(res, *names)) == expected


class ManySensorsDevice(BaseDevice):
    """More sensors than a filter sets in its first window of requests."""

    SENSORS = STRATEGY_WINDOW + 8

    def setup_sensors(self):
        super().setup_sensors()
        self.many_names = ["many.%03d" % i for i in range(self.SENSORS)]
        for name in self.many_names:
            self.add_sensor(Sensor.integer(name, "One of many", "", [0, 10]))


class ManySensorsDropOnSamplingDevice(ManySensorsDevice, DropOnSamplingDevice):
    """Many sensors, and the connection dropped on the ?sensor-sampling once armed."""


class TestStartWhenStarted(ResourceTestCase):
    """start() on a resource that is started already keeps its one connection."""

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_child_added_before_the_container_starts(self):
        server = self.start_server(CountingDevice)
        container = KATCPClientResourceContainer(container_spec([server], ["a"]))
        container.set_ioloop(self.io_loop)
        # Starts the child, which the container's start() then starts again.
        container.add_child_resource_client(
            "b", dict(address=server.bind_address, controlled=True))
        container.start()
        self.addCleanup(container.stop)
        yield container.until_synced(timeout=WAIT)
        assert (yield server.until_open(2))
        container.stop()
        yield list(container.until_stopped(timeout=WAIT).values())
        assert (yield server.until_open(0))
        assert server.connections_made == 2

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_start_twice_then_stop_and_start(self):
        server = self.start_server(CountingDevice)
        res = self.make_resource(server)
        res.start()
        yield res.until_synced(timeout=WAIT)
        assert (yield server.until_open(1))
        res.stop()
        yield res.until_stopped(timeout=WAIT)
        assert (yield server.until_open(0))
        # Stopped, it starts again: one new connection.
        res.start()
        yield res.until_synced(timeout=WAIT)
        assert (yield server.until_open(1))
        res.stop()
        yield res.until_stopped(timeout=WAIT)
        assert (yield server.until_open(0))
        assert server.connections_made == 2

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_started_at_once_after_stop_it_is_synced_only_once_its_new_client_is(self):
        server = self.start_server(CountingDevice)
        res = self.make_resource(server)
        yield res.until_synced(timeout=WAIT)
        old_client = res.inspecting_client
        # Started again without waiting for the stop: the state is the new client's.
        res.stop()
        res.start()
        assert res.state == "disconnected"
        synced = res.until_synced(timeout=WAIT)
        assert not synced.done()
        yield synced
        assert res.inspecting_client.synced
        # The old client's last state (once its inspection has ended) came before.
        yield old_client.until_stopped(timeout=WAIT)
        assert res.synced
        assert (yield res.req.add(1, 2)).reply.arguments == [b"ok", b"3"]
        assert (yield server.until_open(1))

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_start_on_a_synced_resource_keeps_its_connection(self):
        server = self.start_server(CountingDevice)
        res = self.make_resource(server)
        yield res.until_synced(timeout=WAIT)
        inspecting_client = res.inspecting_client
        assert isinstance(inspecting_client, ReplyWrappedInspectingClientAsync)
        not_synced = res.until_not_synced()
        res.start()
        assert res.inspecting_client is inspecting_client
        assert (yield res.req.add(1, 2)).reply.arguments == [b"ok", b"3"]
        assert res.synced and not not_synced.done()
        not_synced.cancel()
        assert server.connections_made == 1

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_start_after_the_connection_ended_it_ends_what_was_left(self):
        # Without auto_reconnect the client stops on its own once the device goes; a
        # start() then makes a new client and ends the old one's inspection.
        server = self.start_server()
        port = server.bind_address[1]
        res = self.make_resource(server, auto_reconnect=False)
        yield res.until_synced(timeout=WAIT)
        stop_server(server)
        yield res._inspecting_client.katcp_client.until_stopped(timeout=WAIT)
        old_inspection_ended = res.until_stopped(timeout=WAIT)
        self.start_server(port=port)
        res.start()
        yield res.until_synced(timeout=WAIT)
        yield old_inspection_ended

    @tornado.gen.coroutine
    def started_again_on_a_new_device(self, auto_reconnect):
        """A container's one child, synced with a DeviceV1 and with a strategy and a
        listener on an.int, is started again (after stop(), or after its connection
        ended without auto_reconnect) with a DeviceV2 on the same port: old-sensor and
        ?old-thing are gone, new.sensor and ?new-thing have come. Gives the child, its
        an.int sensor object and its ?add request from before, and the new device."""
        server = self.start_server(DeviceV1)
        port = server.bind_address[1]
        spec = container_spec([server], ["dev"])
        spec["clients"]["dev"]["auto_reconnect"] = auto_reconnect
        container = KATCPClientResourceContainer(spec)
        container.set_ioloop(self.io_loop)
        container.start()
        self.addCleanup(container.stop)
        yield container.until_synced(timeout=WAIT)
        res = container.children.dev
        yield res.set_sampling_strategy("an.int", "event")
        listener = ListenerFuture(lambda reading: reading.value == 7)
        yield res.set_sensor_listener("an.int", listener)
        old_an_int, old_add = res.sensor.an_int, res.req.add
        if auto_reconnect:
            res.stop()
            yield res.until_stopped(timeout=WAIT)
            stop_server(server)
        else:
            stop_server(server)
            yield res._inspecting_client.katcp_client.until_stopped(timeout=WAIT)
        assert not res.synced
        server = self.start_server(DeviceV2, port)
        res.start()
        yield container.until_synced(timeout=WAIT)
        return container, res, old_an_int, old_add, server, listener

    @tornado.gen.coroutine
    def check_in_line_with_the_new_device(self, auto_reconnect):
        container, res, old_an_int, old_add, server, listener = (
            yield self.started_again_on_a_new_device(auto_reconnect))
        # What the device no longer has is gone, here and in the container, as after
        # any resync.
        assert set(res.sensor) == {"an_int", "a_float", "new_sensor"}
        assert set(res.req) == set(map(escape_name, res._inspecting_client.requests))
        assert "old_thing" not in res.req and "new_thing" in res.req
        assert set(container.sensor) == {"dev_" + name for name in res.sensor}
        assert set(container.req) == {"dev_" + name for name in res.req}
        # What it still has is bound to the new client, not to the stopped one.
        an_int = res.sensor.an_int
        assert an_int is not old_an_int and container.sensor.dev_an_int is an_int
        assert an_int._manager is res._sensor_manager
        assert (yield an_int.get_value()) == 1
        assert res.req.add is not old_add and container.req.dev_add is res.req.add
        assert (yield res.req.add(1, 2)).reply.arguments == [b"ok", b"3"]
        # The strategy and the listener set before come back with it.
        reply = yield res.req.sensor_sampling("an.int")
        assert reply.reply.arguments == [b"ok", b"an.int", b"event"]
        server.an_int.set_value(7)
        reading = yield tornado.gen.with_timeout(self.io_loop.time() + WAIT, listener.future)
        assert reading.value == 7 and an_int.value == 7

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_started_again_on_a_device_without_sensors_it_drops_them_all(self):
        server = self.start_server()
        port = server.bind_address[1]
        res = self.make_resource(server)
        yield res.until_synced(timeout=WAIT)
        assert "an_int" in res.sensor
        res.stop()
        yield res.until_stopped(timeout=WAIT)
        stop_server(server)
        self.start_server(SensorlessDevice, port)
        # The new client's first sync reports no sensors at all: the stale ones are the
        # only change to them.
        with no_logs("", logging.WARNING):
            res.start()
            yield res.until_synced(timeout=WAIT)
        assert set(res.sensor) == set()
        assert (yield res.req.add(1, 2)).reply.arguments == [b"ok", b"3"]

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_started_again_after_stop_it_drops_what_the_device_lost(self):
        yield self.check_in_line_with_the_new_device(auto_reconnect=True)

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_started_again_after_the_connection_ended_it_drops_what_the_device_lost(self):
        yield self.check_in_line_with_the_new_device(auto_reconnect=False)


class TestBulkSampling(ResourceTestCase):

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_strategies_reapplied_in_bulk_after_restart(self):
        server = self.start_server(BulkDevice)
        res = self.make_resource(server)
        yield res.until_synced(timeout=WAIT)
        yield res.set_sampling_strategies("a", "event")
        yield res.set_sampling_strategy("old-sensor", "period 0.5")
        assert len(server.sampling_requests) == 3
        port = server.bind_address[1]
        stop_server(server)
        yield res.until_not_synced(timeout=WAIT)
        server2 = self.start_server(BulkDevice, port)
        yield res.until_synced(timeout=WAIT)
        requests = sorted(server2.sampling_requests, key=len)
        assert len(requests) == 2
        assert requests[1] == [b"old-sensor", b"period", b"0.5"]
        names, strategy = requests[0][0], requests[0][1:]
        assert set(names.split(b",")) == {b"an.int", b"a-float"} and strategy == [b"event"]
        reply = yield res.req.sensor_sampling("a-float")
        assert reply.reply.arguments == [b"ok", b"a-float", b"event"]


class FloatSensorsMixin:
    """A second float sensor, and a third one on request."""

    def setup_sensors(self):
        super().setup_sensors()
        self.b_float = Sensor.float("b.float", "Another float", "m", [-10.0, 10.0])
        self.b_float.set_value(0.5)
        self.add_sensor(self.b_float)

    @request()
    @return_reply()
    def request_grow_float(self, req):
        """Add the c.float sensor, changing the interface."""
        self.c_float = Sensor.float("c.float", "Grown on request", "m", [-10.0, 10.0])
        self.c_float.set_value(4.0)
        self.add_sensor(self.c_float)
        return ("ok",)


class FloatDevice(FloatSensorsMixin, SamplingRecorderDevice):
    """KATCP v5.0: one ?sensor-sampling per sensor."""


class FloatBulkDevice(FloatSensorsMixin, BulkDevice):
    """KATCP v5.1 with BULK_SET_SENSOR_SAMPLING: one ?sensor-sampling per strategy."""


class TestBulkSamplingFallback(ResourceTestCase):
    """A bulk ?sensor-sampling is all or nothing (spec 5.1): one sensor that refuses the
    strategy must not cost the sensors sharing its request theirs."""

    # Differential strategies are refused by the string sensor old-sensor and taken by
    # the float sensors a-float, b.float and (once ?grow-float adds it) c.float.
    FILTER = "float|old"
    STRATEGY = "differential 0.5"
    SET = ("differential", "0.5")
    SET_ON_WIRE = [b"differential", b"0.5"]

    @tornado.gen.coroutine
    def set_strategy_on_matching_sensors(self, res):
        result = yield res.set_sampling_strategies(self.FILTER, self.STRATEGY)
        assert {name: ok for name, (ok, _) in result.items()} == {
            "a_float": True, "b_float": True, "old_sensor": False}

    @tornado.gen.coroutine
    def restart_outcome(self, device_class):
        """Set the strategy by filter, restart the device and say what the reapplied
        strategies came to on both sides."""
        server = self.start_server(device_class)
        res = self.make_resource(server)
        yield res.until_synced(timeout=WAIT)
        yield self.set_strategy_on_matching_sensors(res)
        port = server.bind_address[1]
        stop_server(server)
        yield res.until_not_synced(timeout=WAIT)
        with self.assertLogs("katcp.resource_client", "ERROR") as logs:
            server = self.start_server(device_class, port)
            # Strategies are reapplied before the resource says it is synced.
            yield res.until_synced(timeout=WAIT)
        on_device = {}
        for name in ("a-float", "b.float", "old-sensor", "an.int"):
            reply = yield res.req.sensor_sampling(name)
            on_device[name] = reply.reply.arguments[2:]
        on_client = {name: sensor.sampling_strategy for name, sensor in res.sensor.items()}
        return server, res, on_device, on_client, logs.output

    @tornado.testing.gen_test(timeout=4 * WAIT)
    def test_restart_reapplies_the_good_strategies_as_without_bulk(self):
        server, res, on_device, on_client, errors = yield self.restart_outcome(
            FloatBulkDevice)
        assert on_device == {"a-float": self.SET_ON_WIRE, "b.float": self.SET_ON_WIRE,
                             "old-sensor": [b"none"], "an.int": [b"none"]}
        # The client keeps the refused strategy too: it is retried on the next sync.
        assert on_client == {"a_float": self.SET, "b_float": self.SET,
                             "old_sensor": self.SET, "an_int": ("none",)}
        assert len(errors) == 1 and "old-sensor" in errors[0]
        # One bulk request first; only its failure costs one request per sensor.
        names, *strategy = server.sampling_requests[0]
        assert set(names.split(b",")) == {b"a-float", b"b.float", b"old-sensor"}
        assert strategy == self.SET_ON_WIRE
        assert sorted(request[0] for request in server.sampling_requests[1:4]) == [
            b"a-float", b"b.float", b"old-sensor"]
        # The reapplied strategy really samples: wait() sees the device's change.
        waiting = res.sensor.b_float.wait(5.0, timeout=WAIT)
        server.b_float.set_value(5.0)
        assert (yield waiting) is True
        # Exactly what a device without bulk sampling (one request per sensor) gives.
        _, _, *outcome = yield self.restart_outcome(FloatDevice)
        assert outcome == [on_device, on_client, errors]

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_filter_strategy_reaches_a_sensor_added_later(self):
        server = self.start_server(FloatBulkDevice)
        res = self.make_resource(server)
        yield res.until_synced(timeout=WAIT)
        yield self.set_strategy_on_matching_sensors(res)
        # The strategy sends c.float's current value (4.0) once it is set.
        first_update = ListenerFuture(lambda reading: reading.value == 4.0)
        assert (yield res.set_sensor_listener("c.float", first_update)) == {}
        reply = yield res.req.grow_float()
        assert reply.succeeded
        yield tornado.gen.with_timeout(self.io_loop.time() + WAIT, first_update.future)
        reply = yield res.req.sensor_sampling("c.float")
        assert reply.reply.arguments[2:] == self.SET_ON_WIRE
        assert res.sensor.c_float.sampling_strategy == self.SET
        waiting = res.sensor.c_float.wait(9.0, timeout=WAIT)
        server.c_float.set_value(9.0)
        assert (yield waiting) is True


class TestHelpers(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test
    def test_transform_future(self):
        source = tornado.concurrent.Future()
        doubled = transform_future(lambda value: value * 2, source)
        source.set_result(21)
        assert (yield doubled) == 42
        failing = tornado.concurrent.Future()
        passed_on = transform_future(lambda value: value, failing)
        failing.set_exception(ValueError("boom"))
        with pytest.raises(ValueError, match="boom"):
            yield passed_on
        bad_transform = tornado.concurrent.Future()
        raising = transform_future(lambda value: 1 / value, bad_transform)
        bad_transform.set_result(0)
        with pytest.raises(ZeroDivisionError):
            yield raising

    def test_reply_wrapper(self):
        reply = ReplyWrappedInspectingClientAsync.reply_wrapper(
            (Message.reply("x", "ok"), []))
        assert isinstance(reply, KATCPReply) and reply.succeeded

    def test_mapping_proxies(self):
        data = {"a_b": 1, "c": 2}
        proxy = MappingProxy(data, lambda value: value * 10)
        assert dict(proxy) == {"a_b": 10, "c": 20}
        assert len(proxy) == 2 and "c" in proxy and proxy.get("missing") is None
        attrs = AttrMappingProxy(data, str)
        assert attrs.a_b == "1" and attrs["c"] == "2"
        data["d"] = 4
        assert attrs.d == "4" and "d" in dir(attrs)
        with pytest.raises(AttributeError):
            attrs.missing

    def test_group_results(self):
        ok = KATCPReply(Message.reply("x", "ok"), [])
        fail = KATCPReply(Message.reply("x", "fail"), [])
        assert GroupResults(a=ok, b=ok).succeeded
        assert GroupResults(a=ok, b=ok)
        assert not GroupResults(a=ok, b=fail)
        assert not GroupResults(a=ok, b=None).succeeded


@pytest.mark.parametrize("address, problem", [
    ("127.0.0.1:7147", "must be a (host, port) pair, not '127.0.0.1:7147'"),
    (("127.0.0.1",), "must be a (host, port) pair"),
    (None, "must be a (host, port) pair, not None"),
    (("127.0.0.1", 70000), "('127.0.0.1', 70000): Cannot connect to port 70000"),
    (("127.0.0.1", None), "Cannot connect to port None"),
])
def test_a_resource_refuses_an_address_its_client_could_not_connect_to(address, problem):
    with pytest.raises(ValueError) as refused:
        KATCPClientResource(dict(name="dev", address=address))
    assert str(refused.value).startswith("Resource spec 'address' ")
    assert problem in str(refused.value)
    # A container's children are resources too.
    with pytest.raises(ValueError, match="Resource spec 'address' "):
        KATCPClientResourceContainer(dict(name="site", clients={"dev": dict(address=address)}))


def test_a_resource_takes_an_address_of_another_pair_kind_as_a_tuple():
    address = iter(("127.0.0.1", 7147))
    assert KATCPClientResource(dict(name="dev", address=address)).address == (
        "127.0.0.1", 7147)


@pytest.mark.parametrize("address", [("127.0.0.1", 7147), ["127.0.0.1", 7147],
                                     ("dev.example", "7147")])
def test_a_resource_keeps_the_address_it_was_given(address):
    resource = KATCPClientResource(dict(name="dev", address=address))
    assert resource.address is address
    # Its repr names it (a tuple as host:port; a list as it is).
    host, port = address
    assert str(host) in repr(resource) and str(port) in repr(resource)


def test_a_dummy_request_is_named_after_the_unknown_one_and_follows_the_resource():
    # test_legacy_highlevel.py calls dummies of a synced resource.
    resource = KATCPClientResource(dict(name="dev", address=("127.0.0.1", 7147),
                                        dummy_unknown_requests=True))
    dummy = resource.req.no_such_request
    assert isinstance(dummy, KATCPDummyRequest)
    assert (dummy.name, dummy.description, dummy.timeout_hint) == (
        "no-such-request", "Dummy request (the device has no 'no-such-request').", None)
    assert dummy.is_active()
    resource.set_active(False)
    assert not dummy.is_active()
    with pytest.raises(KATCPResourceInactive, match="no-such-request"):
        dummy()


@pytest.mark.parametrize("logger_name", ["katcp.test.resource", None])
def test_a_resource_spec_of_a_name_and_an_address_alone(logger_name):
    resource = KATCPClientResource(dict(name="dev", address=("127.0.0.1", 7147)),
                                   logger=logger_name and logging.getLogger(logger_name))
    assert resource.description == "" and resource.parent is None
    assert resource.controlled is False and resource.dummy_unknown_requests is False
    assert resource.auto_reconnect is True
    assert resource.state == "disconnected" and resource.ioloop is None
    # Without dummies, an unknown request is an error, as an unknown sensor is.
    for namespace, kind in [(resource.req, "request"), (resource.sensor, "sensor")]:
        with pytest.raises(AttributeError, match="^No %s 'nope'$" % (kind,)):
            getattr(namespace, "nope")
    # What goes wrong is logged to the logger given, or else to katcp.resource_client.
    io_loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        failed = io_loop.asyncio_loop.create_future()
        failed.set_exception(RuntimeError("no device"))
        resource.inspecting_client_factory = lambda host, port, ioloop: mock.Mock(
            ioloop=ioloop, **{"connect.return_value": failed})
        resource.set_ioloop(io_loop)
        with recording_logger(logger_name or "katcp.resource_client") as (_, log):
            resource.start()
            io_loop.run_sync(lambda: asyncio.sleep(0))  # the failure's callback runs
    finally:
        io_loop.close()
    assert log.messages() == ["Unhandled exception returned by future"]
    assert str(log.records[0].exc_info[1]) == "no device"


@pytest.mark.parametrize("logger_name", ["katcp.test.manager", None])
def test_a_sensors_manager_made_alone_keeps_strategies_and_logs_failures(logger_name):
    # A resource gives the managers it makes its own wishes and logger; one made alone
    # has its own, and katcp.resource_client's logger unless given one.
    inspecting = mock.Mock(sensors=["an.int"])
    inspecting.katcp_client.protocol_flags = None
    inspecting.wrapped_request.side_effect = RuntimeError("gone")
    manager = KATCPClientResourceSensorsManager(
        inspecting, "dev", logger=logger_name and logging.getLogger(logger_name))
    manager.cache_sampling_strategy("an.int", "event")
    assert manager.get_sampling_strategy("an.int") == ("event",)
    io_loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        with recording_logger(logger_name or "katcp.resource_client") as (_, log):
            io_loop.run_sync(manager.reapply_sampling_strategies)
    finally:
        io_loop.close()
    assert log.messages() == ["Error reapplying strategy ('event',) for sensors an.int: gone"]


def test_a_sensors_manager_with_no_strategy_reapplies_without_asking_for_the_sensors():
    # A resource's every sync ends with a reapply: with no strategy cached it sends
    # nothing and makes no list of the device's (thousands of) sensors.
    inspecting = mock.Mock()
    sensors = type(inspecting).sensors = mock.PropertyMock(return_value=["an.int"])
    manager = KATCPClientResourceSensorsManager(inspecting, "dev")
    io_loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        io_loop.run_sync(manager.reapply_sampling_strategies)
        sensors.assert_not_called()
        manager.cache_sampling_strategy("an.int", "event")
        inspecting.katcp_client.protocol_flags = None
        io_loop.run_sync(manager.reapply_sampling_strategies)
    finally:
        io_loop.close()
    sensors.assert_called_once_with()
    inspecting.wrapped_request.assert_called_once_with("sensor-sampling", "an.int", "event")


class TestWithDocumentedCollaborators(tornado.testing.AsyncTestCase):
    """What a resource asks of its collaborators is only what their docs promise, so
    that a mock (or an inspecting client "or similar") stands in for them."""

    def test_a_request_passes_on_only_the_keywords_given(self):
        client = mock.Mock()
        request = KATCPClientResourceRequest(
            dict(name="the-request", description="d", timeout_hint=33.34), client)
        request("parm1", 2)
        client.wrapped_request.assert_called_once_with("the-request", "parm1", 2,
                                                       timeout=33.34)
        client.reset_mock()
        request(mid=7, timeout=1.5)
        client.wrapped_request.assert_called_once_with("the-request", timeout=1.5, mid=7)

    @tornado.testing.gen_test
    def test_a_group_of_mock_clients_waits_on_them(self):
        clients = [mock.Mock() for _ in range(3)]
        for number, client in enumerate(clients):
            client.name = "resource%d" % number
            client.wait.return_value = tornado.concurrent.Future()
            client.wait.return_value.set_result(number < 2)
        group = ClientGroup("group", clients)
        assert list(group.req) == []
        result = yield group.wait("sensor", "value", timeout=1, quorum=2)
        assert result and result == {"resource0": True, "resource1": True,
                                     "resource2": False}

    @tornado.testing.gen_test
    def test_the_model_follows_an_inspecting_client_with_the_documented_methods(self):
        spec = dict(name="dev", address=("testhost", 12345), controlled=False,
                    always_allowed_requests=["req-one", "excluded_one"],
                    always_excluded_requests=["excluded-one"])
        resource = KATCPClientResource(spec)
        inspecting = mock.Mock(spec=["future_get_request", "future_get_sensor"])

        def done(value):
            future = tornado.concurrent.Future()
            future.set_result(value)
            return future

        inspecting.future_get_request.side_effect = lambda name: done(
            KATCPClientResourceRequest(dict(name=name, description=name), inspecting))
        inspecting.future_get_sensor.side_effect = lambda name: done(
            KATCPSensor(dict(name=name, description="", units="", sensor_type=Sensor.INTEGER,
                             params=[]), resource._sensor_manager))
        resource._inspecting_client = inspecting
        yield resource._update_model(AttrDict(
            requests=AttrDict(added={"req-one", "excluded-one", "other"}, removed=set()),
            sensors=AttrDict(added={"an.int"}, removed=set())))
        # Not controlled: only the always allowed requests, less the always excluded.
        assert list(resource.req) == ["req_one"]
        assert isinstance(resource.req.req_one, KATCPClientResourceRequest)
        assert list(resource.sensor) == ["an_int"]
        inspecting.future_get_sensor.assert_called_once_with("an.int")
        yield resource._remove_sensors(["an.int"])
        yield resource._remove_requests(["req-one"])
        assert list(resource.req) == [] and list(resource.sensor) == []

    def test_start_makes_the_inspecting_client_of_the_spec_on_the_loop_set(self):
        # Through the documented factory, which a test (or fake_clients) may replace.
        flags = ProtocolFlags(5, 0, set("MI"))
        logger = logging.getLogger("katcp.test.resource")
        other_loop = tornado.ioloop.IOLoop(make_current=False)
        self.addCleanup(other_loop.close)
        made = []

        def factory(host, port, ioloop_set_to):
            client = mock.Mock(ioloop=ioloop_set_to)
            made.append(((host, port, ioloop_set_to), client))
            return client

        for given_loop, expected_loop in [(other_loop, other_loop), (None, self.io_loop)]:
            resource = KATCPClientResource(
                dict(name="dev", address=("testhost", 12345), preset_protocol_flags=flags),
                logger=logger)
            resource.set_ioloop(given_loop)
            resource.inspecting_client_factory = factory
            resource.start()
            (arguments, client), = made
            del made[:]
            assert arguments == ("testhost", 12345, expected_loop)
            assert resource.inspecting_client is client and resource.ioloop is expected_loop
            client.preset_protocol_flags.assert_called_once_with(flags)
            # The sensors' manager logs (a strategy it fails to set again) where the
            # resource does.
            assert resource._sensor_manager._logger is logger


@pytest.mark.parametrize("logger_name", ["katcp.test.site", None])
def test_a_container_of_a_name_alone(logger_name):
    container = KATCPClientResourceContainer(
        dict(name="site"), logger=logger_name and logging.getLogger(logger_name))
    assert container.name == "site" and container.description == ""
    assert container.ioloop is None
    for namespace, kind in [(container.children, "child resource"),
                            (container.groups, "group"), (container.req, "request"),
                            (container.sensor, "sensor")]:
        assert list(namespace) == []
        with pytest.raises(AttributeError, match="^No %s 'nope'$" % (kind,)):
            getattr(namespace, "nope")
    # Its warnings go to the logger given, or else to katcp.resource_client.
    io_loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        with recording_logger(logger_name or "katcp.resource_client") as (_, log):
            assert io_loop.run_sync(
                lambda: container.set_sampling_strategies("nope", "event")) == {}
    finally:
        io_loop.close()
    assert log.messages() == [
        "Container site has no sensor matching 'nope': no sampling strategy was set"]


def container_spec(servers, names, groups=None):
    spec = dict(
        name="array",
        description="Many devices",
        clients={name: dict(address=server.bind_address, controlled=True)
                 for name, server in zip(names, servers)},
    )
    if groups:
        spec["groups"] = groups
    return spec


class SlowSamplingDevice(BaseDevice):
    """Many sensors, whose ?sensor-sampling requests the device works on one after
    another for WORK seconds each, counting those received and not yet answered."""

    SENSORS = 200
    WORK = 0.005

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_progress = 0
        self.most_in_progress = 0
        self.answered = 0
        # Made on the server's loop at the first request: before Python 3.10 a lock
        # belongs to the loop current where it is made.
        self._working = None

    def setup_sensors(self):
        super().setup_sensors()
        for i in range(self.SENSORS):
            self.add_sensor(Sensor.integer("many.%03d" % i, "One of many", "", [0, 10]))

    @concurrent_reply
    async def request_sensor_sampling(self, req, msg):
        """Configure sampling as usual, after the device's work for the request."""
        self.in_progress += 1
        self.most_in_progress = max(self.most_in_progress, self.in_progress)
        if self._working is None:
            self._working = asyncio.Lock()
        try:
            async with self._working:
                await asyncio.sleep(self.WORK)  # the device's work, not a synchronisation
            reply = await super().request_sensor_sampling(req, msg)
            self.answered += 1
            return reply
        finally:
            self.in_progress -= 1


class TestManyStrategiesOnASlowDevice(ResourceTestCase):
    """Strategies for many sensors are pipelined a few requests at a time: sent all at
    once, the last ones would time out waiting behind the others at the device (which
    answers them all) rather than in their own handling."""

    # Less than the device's work for all the requests, well over that for a window.
    REQUEST_TIMEOUT = 0.6
    MANY = {"many_%03d" % i for i in range(SlowSamplingDevice.SENSORS)}

    @tornado.gen.coroutine
    def synced_resource(self, server):
        res = self.make_resource(server)
        yield res.until_synced(timeout=WAIT)
        res._inspecting_client.katcp_client._request_timeout = self.REQUEST_TIMEOUT
        return res

    def assert_pipelined(self, server):
        assert server.answered == SlowSamplingDevice.SENSORS
        assert 1 < server.most_in_progress <= STRATEGY_WINDOW

    @tornado.testing.gen_test(timeout=WAIT)
    def test_set_sampling_strategies_of_a_resource(self):
        server = self.start_server(SlowSamplingDevice)
        res = yield self.synced_resource(server)
        with no_logs("katcp"):
            result = yield res.set_sampling_strategies("many", "event")
        assert set(result) == self.MANY
        assert all(outcome == (True, ("event",)) for outcome in result.values())
        self.assert_pipelined(server)

    @tornado.testing.gen_test(timeout=WAIT)
    def test_strategies_reapplied_after_a_restart(self):
        server = self.start_server(SlowSamplingDevice)
        res = yield self.synced_resource(server)
        yield res.set_sampling_strategies("many", "event")
        port = server.bind_address[1]
        stop_server(server)
        yield res.until_not_synced(timeout=WAIT)
        with no_logs("katcp"):
            server = self.start_server(SlowSamplingDevice, port)
            # Strategies are reapplied before the resource says it is synced.
            yield res.until_synced(timeout=WAIT)
        self.assert_pipelined(server)
        reply = yield res.req.sensor_sampling("many.199")
        assert reply.reply.arguments == [b"ok", b"many.199", b"event"]

    @tornado.testing.gen_test(timeout=WAIT)
    def test_set_sampling_strategies_of_a_container(self):
        server = self.start_server(SlowSamplingDevice)
        container = KATCPClientResourceContainer(container_spec([server], ["c0"]))
        container.set_ioloop(self.io_loop)
        container.start()
        self.addCleanup(container.stop)
        yield container.until_synced(timeout=WAIT)
        with no_logs("katcp"):
            results = yield container.set_sampling_strategies("many", "event")
        assert results == {"c0": dict.fromkeys(self.MANY, "event")}
        self.assert_pipelined(server)


class TestKATCPClientResourceContainer(ResourceTestCase):

    def make_container(self, spec):
        container = KATCPClientResourceContainer(spec)
        container.set_ioloop(self.io_loop)
        container.start()
        self.addCleanup(container.stop)
        return container

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_container_with_twenty_children(self):
        server = self.start_server()
        names = ["c%02d" % i for i in range(20)]
        spec = container_spec([server] * 20, names,
                              groups={"evens": names[::2], "pair": ["c00", "c01"]})
        container = self.make_container(spec)
        assert container.name == "array" and container.description == "Many devices"
        assert container.address is None and container.parent is None
        yield container.until_any_child_in_state("synced", timeout=2 * WAIT)
        yield container.until_synced(timeout=2 * WAIT)
        yield container.until_all_children_in_state("synced", timeout=WAIT)
        assert container.is_connected()
        assert set(container.children) == set(names)
        assert all(child.parent is container for child in container.children.values())
        assert len(container.sensor) == 20 * 3 and len(container.req) > 20 * 10
        assert container.sensor.c07_an_int is container.children.c07.sensor.an_int
        assert "c07_an_int" in dir(container.sensor)
        reply = yield container.req.c13_add(2, 3)
        assert reply.reply.arguments == [b"ok", b"5"]

        # As in katcp 0.9: {resource name: {sensor identifier: strategy as given}}.
        results = yield container.set_sampling_strategies("an_int", "event")
        assert results == {name: {"an_int": "event"} for name in names}
        assert all(child.sensor.an_int.sampling_strategy == ("event",)
                   for child in container.children.values())
        result = yield container.set_sampling_strategy("c01_a_float", ("period", 1))
        assert result == {"c01": {"a_float": ("period", 1)}}
        assert container.sensor.c01_a_float.sampling_strategy == ("period", "1.0")
        result = yield container.set_sampling_strategy("c02_a_float", "period -1")
        assert result == {"c02": {"a_float": None}}
        with recording_logger(container._logger.name) as (_, log):
            missing = yield container.set_sampling_strategy("c01_an_it", "event")
            assert missing == {}
            assert (yield container.set_sensor_listener("c01_an_it", print)) == {}
        assert log.messages() == [
            "Container array has no sensor matching '^c01_an_it$': no %s was set; did you "
            "mean 'c01_an_int' or 'c19_an_int' or 'c18_an_int'?" % (what,)
            for what in ("sampling strategy", "listener")]

        sensors = yield container.list_sensors("c05_")
        assert [s.name for s in sensors] == ["c05.a-float", "c05.an.int", "c05.old-sensor"]
        listener = ListenerFuture(lambda reading: reading.value == 99)
        result = yield container.set_sensor_listener("c03_an_int", listener)
        assert result == {"c03": {"an_int": listener}}
        server.an_int.set_value(99)
        yield tornado.gen.with_timeout(self.io_loop.time() + WAIT, listener.future)
        assert (yield container.wait("c19_an_int", 99, timeout=WAIT)) is True
        assert (yield container.wait("c19_an_int", 98, timeout=0.05)) is False

        evens = container.groups.evens
        assert isinstance(evens, ClientGroup) and len(evens) == 10
        assert evens.is_connected()
        results = yield evens.req.add(1, 2)
        assert isinstance(results, GroupResults) and results.succeeded
        assert set(results) == set(names[::2])

        stopped = container.until_stopped(timeout=WAIT)
        container.stop()
        assert set(stopped) == set(names)
        yield list(stopped.values())
        yield container.until_not_synced(timeout=WAIT)
        assert not container.is_connected()

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_polled_container_waits_leave_nothing_behind(self):
        server = self.start_server()
        container = self.make_container(container_spec([server, server], ["a", "b"]))
        yield container.until_synced(timeout=WAIT)

        @tornado.gen.coroutine
        def poll():
            with pytest.raises(tornado.gen.TimeoutError):
                yield container.until_not_synced(timeout=0.001)
            with pytest.raises(tornado.gen.TimeoutError):
                yield container.until_any_child_in_state("disconnected", timeout=0.001)
            yield tornado.gen.moment

        assert (yield waits_left_by(poll)) <= 0

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_a_child_added_again_under_its_name_replaces_the_old_one(self):
        first, second = self.start_server(DeviceV1), self.start_server(DeviceV2)
        container = self.make_container(container_spec([first], ["dev"], {"g": ["dev"]}))
        yield container.until_synced(timeout=WAIT)
        old = container.children.dev
        stopped = old.until_stopped(timeout=WAIT)
        new = container.add_child_resource_client("dev", dict(
            address=second.bind_address, controlled=True))
        # The old child is stopped, and what it had leaves the container and its group.
        yield stopped
        assert container.children.dev is new and container.groups.g.clients == (new,)
        assert "dev_old_sensor" not in container.sensor and "dev_old_thing" not in container.req
        assert "old_thing" not in container.groups.g.req
        yield container.until_synced(timeout=WAIT)
        assert set(container.sensor) == {"dev_" + name for name in new.sensor}
        assert "dev_new_sensor" in container.sensor and "dev_old_sensor" not in container.sensor
        assert set(container.req) == {"dev_" + name for name in new.req}
        assert set(container.groups.g.req) == set(new.req)
        assert (yield container.req.dev_new_thing()).succeeded

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_a_container_wait_made_before_a_child_is_replaced_follows_its_successor(self):
        # The replaced child is stopped, and never syncs: a wait that still counted on it
        # hung, though every child of the container was synced.
        gone = start_server()
        stop_server(gone)
        second = self.start_server(DeviceV2)
        container = self.make_container(container_spec([gone], ["dev"]))
        waiting = container.until_synced(timeout=WAIT)
        new = container.add_child_resource_client("dev", dict(
            address=second.bind_address, controlled=True))
        yield waiting
        assert new.synced

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_add_child_and_group(self):
        server = self.start_server()
        container = self.make_container(container_spec([server], ["first"]))
        yield container.until_synced(timeout=WAIT)
        second = container.add_child_resource_client("second-dev", dict(
            address=server.bind_address, controlled=True))
        assert container.children.second_dev is second
        yield second.until_synced(timeout=WAIT)
        assert "second_dev_add" in container.req
        assert "second_dev_an_int" in container.sensor
        container.add_group("both", ["first", "second-dev"])
        group = container.groups.both
        assert group.clients == (container.children.first, second)
        results = yield group.set_sampling_strategy("an.int", "event")
        assert results == {"first": {"an_int": (True, ("event",))},
                           "second-dev": {"an_int": (True, ("event",))}}
        results = yield group.set_sampling_strategies("float", "period 2")
        assert results["first"] == {"a_float": (True, ("period", "2.0"))}
        replies = yield group.req.add(2, 2)
        assert [r.reply.arguments for r in replies.values()] == [[b"ok", b"4"]] * 2


    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_a_container_filters_strategy_is_its_sensors_strategy_from_the_call(self):
        server = self.start_server()
        container = self.make_container(container_spec([server, server], ["a", "b"]))
        yield container.until_synced(timeout=WAIT)
        setting = container.set_sampling_strategies("an_int", "period 0.5")
        assert container.sensor.a_an_int.sampling_strategy == ("period", "0.5")
        assert container.sensor.b_an_int.sampling_strategy == ("period", "0.5")
        waiting = container.wait("b_an_int", 1, timeout=WAIT)
        yield setting
        assert (yield waiting) is True

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_aggregate_sensors_keep_their_names_in_the_container(self):
        # The documented exception to the <resname>_ prefix: sensors named agg_...
        server = self.start_server(AggregateDevice)
        container = self.make_container(container_spec([server], ["dev"]))
        yield container.until_synced(timeout=WAIT)
        child = container.children.dev
        assert set(container.sensor) == {"agg_total", "dev_an_int", "dev_a_float"}
        assert container.sensor.agg_total is child.sensor.agg_total
        sensors = yield container.list_sensors("agg_total|dev_an_int")
        assert [(s.name, s.python_identifier) for s in sensors] == [
            ("agg_total", "agg_total"), ("dev.an.int", "dev_an_int")]
        result = yield container.set_sampling_strategies("agg", "event")
        assert result == {"dev": {"agg_total": "event"}}
        server.agg_total.set_value(5)
        assert (yield container.wait("agg_total", 5, timeout=WAIT)) is True

        yield child.req.drop_agg()
        yield until_model(child, lambda: "agg_total" not in child.sensor)
        assert set(container.sensor) == {"dev_an_int", "dev_a_float"}
        yield child.req.restore_agg()
        yield until_model(child, lambda: "agg_total" in child.sensor)
        assert set(container.sensor) == {"agg_total", "dev_an_int", "dev_a_float"}
        assert container.sensor.agg_total is child.sensor.agg_total

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_a_sensor_of_the_python_identifier_of_a_removed_one_takes_its_place(self):
        server = self.start_server(TwinNamesDevice)
        container = self.make_container(container_spec([server], ["dev"]))
        yield container.until_synced(timeout=WAIT)
        child = container.children.dev
        # One of the two shows (either); the other takes its place once it goes, here
        # and in the container.
        shown = child.sensor.twin_a.name
        other = ({"twin.a", "twin-a"} - {shown}).pop()
        yield child.req.drop(shown)
        yield until_model(child, lambda: shown not in child.inspecting_client.sensors)
        assert child.sensor.twin_a.name == other
        assert container.sensor.dev_twin_a is child.sensor.twin_a
        yield child.req.drop(other)
        yield until_model(child, lambda: other not in child.inspecting_client.sensors)
        assert "twin_a" not in child.sensor and "dev_twin_a" not in container.sensor

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_an_inactive_container_makes_its_children_and_groups_inactive(self):
        servers = [self.start_server() for _ in range(2)]
        container = self.make_container(container_spec(servers, ["a", "b"], {"g": ["a", "b"]}))
        yield container.until_synced(timeout=WAIT)
        container.set_active(False)
        assert not container.is_active()
        assert not any(child.is_active() for child in container.children.values())
        for call in (lambda: container.req.a_add(1, 2),
                     lambda: container.children.b.req.add(1, 2)):
            with pytest.raises(KATCPResourceInactive):
                call()
        with pytest.raises(KATCPResourceInactive):
            yield container.groups.g.req.add(1, 2)
        container.set_active(True)
        assert all(child.is_active() for child in container.children.values())
        results = yield container.groups.g.req.add(1, 2)
        assert results.succeeded and set(results) == {"a", "b"}

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_a_group_request_takes_the_help_of_a_modified_request(self):
        # Two devices: the request stays in the group while one device modifies it.
        servers = [self.start_server(RehelpDevice) for _ in range(2)]
        container = self.make_container(container_spec(servers, ["dev", "other"],
                                                        {"g": ["dev", "other"]}))
        yield container.until_synced(timeout=WAIT)
        child, group = container.children.dev, container.groups.g
        assert group.req.add.description == "Add two numbers"
        yield child.req.rehelp("Adds, with new help.")
        yield until_model(child, lambda: child.req.add.description == "Adds, with new help.")
        assert group.req.add.description == "Adds, with new help."
        assert "Adds, with new help." in group.req.add.__doc__
        replies = yield group.req.add(1, 2)
        assert [reply.reply.arguments for reply in replies.values()] == [[b"ok", b"3"]] * 2

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_waits_given_up_on_a_container_end_those_on_its_children(self):
        server = self.start_server()
        with _closed_port() as port:
            spec = container_spec([server], ["up"])
            spec["clients"]["down"] = dict(address=("127.0.0.1", port), controlled=True)
            container = self.make_container(spec)
            up, down = container.children.up, container.children.down
            yield up.until_synced(timeout=WAIT)
            # A poll while a device is down: every wait times out, and each waited on
            # the child that is down.
            for _ in range(20):
                with pytest.raises(tornado.gen.TimeoutError, match="down at 127.0.0.1"):
                    yield container.until_synced(timeout=0.001)
                with pytest.raises(tornado.gen.TimeoutError):
                    yield container.until_all_children_in_state("synced", timeout=0.001)
            assert (yield waits_gone(down))
            # Waits given up by their caller (cancelled), with or without a timeout.
            for wait in (lambda: container.until_synced(),
                         lambda: container.until_synced(timeout=WAIT),
                         lambda: container.until_all_children_in_state("synced"),
                         lambda: down.until_synced(timeout=WAIT)):
                waiting = wait()
                assert _waits_on(down) == 1
                waiting.cancel()
                assert (yield waits_gone(down))
            assert _waits_on(up) == 0
            # A state that does not exist fails the wait, as from 0.9's coroutine.
            failed = container.until_all_children_in_state("no-such-state")
            assert isinstance(failed.exception(), ValueError)

    @tornado.testing.gen_test(timeout=2 * WAIT)
    def test_a_watchdog_on_a_healthy_container_leaves_no_waits(self):
        server = self.start_server()
        container = self.make_container(container_spec([server] * 2, ["a", "b"]))
        synced = yield container.until_synced(timeout=WAIT)
        assert synced is None  # as from 0.9's coroutine
        children = list(container.children.values())
        for _ in range(20):
            with pytest.raises(tornado.gen.TimeoutError):
                yield container.until_not_synced(timeout=0.001)
            # Given up from outside: cancelled, as asyncio.wait_for does.
            waiting = container.until_not_synced()
            assert all(_waits_on(child) for child in children)
            waiting.cancel()
        for child in children:
            assert (yield waits_gone(child))
        assert (yield container.until_all_children_in_state("synced")) is None


class TestClientGroupQuorum(ResourceTestCase):

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_group_wait_with_quorum(self):
        servers = [self.start_server() for _ in range(3)]
        names = ["d0", "d1", "d2"]
        container = KATCPClientResourceContainer(
            container_spec(servers, names, groups={"all": names}))
        container.start()
        self.addCleanup(container.stop)
        yield container.until_synced(timeout=WAIT)
        group = container.groups.all
        yield group.set_sampling_strategy("an.int", "event")
        servers[0].an_int.set_value(9)
        servers[1].an_int.set_value(9)
        yield [container.children[n].sensor.an_int.wait(9, timeout=WAIT) for n in names[:2]]

        result = yield group.wait("an.int", 9, timeout=WAIT, quorum=2, max_grace_period=0.1)
        assert result and dict(result) == {"d0": True, "d1": True, "d2": False}
        assert (yield group.wait("an.int", 9, timeout=WAIT, quorum=0.5,
                                 max_grace_period=0.05))
        assert (yield group.wait("an.int", 9, timeout=WAIT, quorum=1,
                                 max_grace_period=0.05))
        everyone = yield group.wait("an.int", 9, timeout=0.3)
        assert not everyone and sum(everyone.values()) == 2
        assert not (yield group.wait("an.int", 9, timeout=0.3, quorum=1.0))
        # The quorum is there at once; the straggler's update, which needs a network
        # round trip, arrives within the grace period and still counts.
        late = group.wait("an.int", 9, timeout=WAIT, quorum=2, max_grace_period=WAIT / 2)
        servers[2].an_int.set_value(9)
        result = yield late
        assert result and all(result.values())
        # A bad quorum fails the future (as from katcp 0.9's coroutine), not the call.
        bad_quorum = group.wait("an.int", 9, quorum="two")
        with pytest.raises(TypeError):
            yield bad_quorum
        # A grace period as long as the timeout takes half of it, and the wait still
        # ends at the timeout.
        never = yield group.wait("an.int", 10, timeout=0.2, max_grace_period=0.2)
        assert not never and not any(never.values())

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_group_wait_refuses_sensors_it_cannot_wait_on(self):
        # As documented: KATCPSensorError if a client's sensor has no strategy or is
        # not there; a quorum above 1 must be an integer.
        servers, container = yield self.synced_pair_in_group_both()
        group = container.groups.both
        with pytest.raises(KATCPSensorError):
            yield group.wait("an.int", 1, timeout=WAIT)
        yield container.children.d0.set_sampling_strategy("an.int", "event")
        with pytest.raises(KATCPSensorError):
            yield group.wait("an.int", 1, timeout=WAIT, quorum=1)
        with pytest.raises(KATCPSensorError):
            yield group.wait("no.such.sensor", 1, timeout=WAIT)
        yield group.set_sampling_strategy("an.int", "event")
        with pytest.raises(TypeError):
            yield group.wait("an.int", 1, timeout=WAIT, quorum=1.5)
        assert (yield group.wait("an.int", 1, timeout=WAIT, quorum=2))

    @tornado.testing.gen_test(timeout=3 * WAIT)
    def test_group_wait_leaves_no_listener_behind(self):
        servers, container = yield self.synced_pair_in_group_both()
        group = container.groups.both
        yield group.set_sampling_strategy("an.int", "event")
        servers[0].an_int.set_value(9)
        yield container.children.d0.sensor.an_int.wait(9, timeout=WAIT)
        straggler = container.children.d1.sensor.an_int
        # The quorum is met at once; d1's wait, never met, ends with the group's.
        for timeout, grace in ((0.2, None), (0.2, 0), (0.2, 0.05), (None, 0.05), (None, 0)):
            result = yield group.wait("an.int", 9, timeout=timeout, quorum=1,
                                      max_grace_period=grace)
            assert dict(result) == {"d0": True, "d1": False} and result
            assert not straggler._listeners
        result = yield group.wait("an.int", 9, timeout=0.2, max_grace_period=0.05)
        assert dict(result) == {"d0": True, "d1": False} and not result
        assert not straggler._listeners
        # A wait given up by its caller takes its listeners with it.
        for wait in (lambda: group.wait("an.int", 10, timeout=None),
                     lambda: container.children.d1.wait("an.int", 10, timeout=None),
                     lambda: straggler.wait(10)):
            waiting = wait()
            assert straggler._listeners
            waiting.cancel()
            assert (yield listeners_gone(straggler))
        assert (yield container.children.d1.wait("an.int", 10, timeout=0.01)) is False
        with pytest.raises(tornado.gen.TimeoutError):
            yield straggler.wait(10, timeout=0.01)
        assert not straggler._listeners


class TestThreadSafeWrappers:
    """The blocking wrappers used from plain threads (as in IPython or a script)."""

    @pytest.fixture
    def server(self):
        server = start_server()
        yield server
        stop_server(server)

    @pytest.fixture
    def group_wrapper(self, loop_manager, server):
        """A synced thread-safe wrapper of a container of clients a and b, group ab."""
        ioloop = loop_manager.get_ioloop()
        container = KATCPClientResourceContainer(
            container_spec([server, server], ["a", "b"], groups={"ab": ["a", "b"]}))
        container.set_ioloop(ioloop)
        wrapper = ThreadSafeKATCPClientResourceWrapper(
            container, IOLoopThreadWrapper(ioloop))
        wrapper.start()
        try:
            wrapper.until_synced(timeout=WAIT)
            yield wrapper
        finally:
            wrapper.stop()
            for child in wrapper.children.values():
                child.until_stopped(timeout=WAIT)

    def test_resource_wrapper(self, loop_manager, server):
        ioloop = loop_manager.get_ioloop()
        res = KATCPClientResource(dict(
            name="dev", address=server.bind_address, controlled=True))
        res.set_ioloop(ioloop)
        wrapper = ThreadSafeKATCPClientResourceWrapper(res, IOLoopThreadWrapper(ioloop))
        wrapper.start()
        try:
            wrapper.until_synced(timeout=WAIT)
            assert isinstance(wrapper, KATCPClientResource)
            assert repr(wrapper) == repr(res) and wrapper.name == "dev"
            assert {"add", "help", "set_int"} <= set(dir(wrapper.req))
            assert "an_int" in dir(wrapper.sensor)
            assert repr(wrapper.req.add) == repr(res.req.add)
            reply = wrapper.req.add(2, 5)
            assert isinstance(reply, KATCPReply) and reply.reply.arguments == [b"ok", b"7"]
            sensor = wrapper.sensor.an_int
            assert isinstance(sensor, KATCPSensor) and sensor.name == "an.int"
            assert sensor.get_value() == 1
            sensor.set_strategy("event")
            assert sensor.sampling_strategy == ("event",)
            results = []

            def worker():
                results.append(wrapper.req.set_int(11))
                results.append(wrapper.sensor.an_int.wait(11, timeout=WAIT))
                results.append(wrapper.wait("an.int", 12, timeout=0.05))

            thread = threading.Thread(target=worker)
            thread.start()
            thread.join(WAIT)
            assert results[0].succeeded and results[1:] == [True, False]
            assert sensor.reading.value == 11
            with pytest.raises(tornado.gen.TimeoutError):
                sensor.wait(500, timeout=0.05)
            sensors = wrapper.list_sensors("an_")
            assert [s.name for s in sensors] == ["an.int"]
            assert wrapper.children == {}
        finally:
            wrapper.stop()
            wrapper.until_stopped(timeout=WAIT)

    def test_start_called_from_another_thread_than_its_running_loop_syncs(self, loop_manager,
                                                                         server):
        # 0.9.3's connection went on on the resource's loop wherever start() was called;
        # started off it, the connection's coroutine waited on the calling thread's loop,
        # which nothing runs: the resource stayed disconnected.
        ioloop = loop_manager.get_ioloop()
        res = KATCPClientResource(dict(
            name="dev", address=server.bind_address, controlled=True))
        container = KATCPClientResourceContainer(container_spec([server], ["a"]))
        res.set_ioloop(ioloop)
        container.set_ioloop(ioloop)
        res.start()
        container.start()
        try:
            assert res.ioloop is ioloop  # done by the time start() returned
            assert call_in_ioloop(ioloop, lambda: res.until_synced(timeout=WAIT)) is True
            call_in_ioloop(ioloop, lambda: container.until_synced(timeout=WAIT))
            assert container.children["a"].synced
            assert call_in_ioloop(ioloop, lambda: res.req.add(2, 5)).reply.arguments == [
                b"ok", b"7"]
        finally:
            call_in_ioloop(ioloop, res.stop)
            call_in_ioloop(ioloop, container.stop)
            call_in_ioloop(ioloop, lambda: res.until_stopped(timeout=WAIT))

    def test_endless_timeouts_of_a_resource_and_its_wrapper_wait_for_ever(self, loop_manager,
                                                                         server):
        ioloop = loop_manager.get_ioloop()
        res = KATCPClientResource(dict(
            name="dev", address=server.bind_address, controlled=True))
        res.set_ioloop(ioloop)
        wrapper = ThreadSafeKATCPClientResourceWrapper(res, IOLoopThreadWrapper(ioloop))
        wrapper.start()
        inf = float("inf")
        try:
            wrapper.until_synced(timeout=WAIT)
            # Synced already: at once, on the loop and through the wrapper.
            assert wrapper.until_synced(timeout=inf) is True
            assert call_in_ioloop(ioloop, lambda: res.until_synced(timeout=1e300)) is True
            not_synced = outcome_in_thread(functools.partial(wrapper.until_not_synced,
                                                             timeout=inf))
        finally:
            wrapper.stop()
            wrapper.until_stopped(timeout=WAIT)
        assert not_synced.result(WAIT) is True

    def test_resource_wrapper_wait_gives_the_resource_timeout_error(self, loop_manager):
        ioloop = loop_manager.get_ioloop()
        # Bound, never listening: every connection attempt is refused.
        with socket.socket() as absent:
            absent.bind(("127.0.0.1", 0))
            res = KATCPClientResource(dict(name="absent", address=absent.getsockname()))
            res.set_ioloop(ioloop)
            wrapper = ThreadSafeKATCPClientResourceWrapper(res, loop_manager)
            wrapper.start()
            try:
                for wait in (wrapper.until_synced, functools.partial(wrapper.until_state,
                                                                     "synced")):
                    # The resource's own error, which says what it waited for.
                    with pytest.raises(tornado.gen.TimeoutError,
                                       match="Resource 'absent' at .* not 'synced' after 0.3 s"):
                        wait(timeout=0.3)
            finally:
                wrapper.close()

    def test_container_wrapper_gives_plain_values_of_what_gives_futures(self, group_wrapper,
                                                                       server):
        # As documented: every call that returns a future blocks and gives its outcome.
        wrapper = group_wrapper
        assert wrapper.set_sampling_strategies("an_int", "event") == {
            "a": {"an_int": "event"}, "b": {"an_int": "event"}}
        assert wrapper.set_sampling_strategy("a_a_float", "period 0.5") == {
            "a": {"a_float": "period 0.5"}}
        readings = []

        def listener(sensor, reading):
            readings.append(reading)
        assert wrapper.set_sensor_listener("b_an_int", listener) == {"b": {"an_int": listener}}
        assert [s.python_identifier for s in wrapper.list_sensors(strategy=True)] == [
            "a_a_float", "a_an_int", "b_an_int"]
        assert wrapper.wait("a_an_int", 1, timeout=WAIT) is True
        assert wrapper.wait("a_an_int", 2, timeout=0.05) is False
        assert wrapper.until_all_children_in_state("synced", timeout=WAIT) is None
        assert wrapper.until_any_child_in_state("synced", timeout=WAIT) is True
        sensor = wrapper.children.a.sensor.an_int
        server.an_int.set_value(3, Sensor.WARN)
        reading = sensor.get_reading()
        assert isinstance(reading, KATCPSensorReading) and reading.value == 3
        assert sensor.get_status() == "warn"
        assert sensor.set_sampling_strategy("event") == (True, ("event",))
        reply = wrapper.req.a_add.issue_request(4, 4)
        assert isinstance(reply, KATCPReply) and reply.reply.arguments == [b"ok", b"8"]
        assert wrapper.req.a_add.name == "add" and wrapper.req.a_add.is_active()
        assert wrapper.groups.ab.set_sampling_strategies("float", "event") == {
            name: {"a_float": (True, ("event",))} for name in ("a", "b")}
        assert wrapper.groups.ab.is_connected() is True

    def test_group_wrapper_hands_out_wrapped_clients(self, group_wrapper):
        group = group_wrapper.groups.ab
        # Used from this thread (not the loop's), as iterated or indexed.
        for client in [*group, group[0], group[-1], *group[:]]:
            assert isinstance(client, ThreadSafeKATCPClientResourceWrapper)
            assert client.req.add(1, 2).reply.arguments == [b"ok", b"3"]
        assert [client.name for client in group] == ["a", "b"]

    def test_container_wrapper_with_groups(self, group_wrapper):
        wrapper = group_wrapper  # a container's
        assert wrapper.req.a_add(1, 1).reply.arguments == [b"ok", b"2"]
        child = wrapper.children.b
        assert isinstance(child, ThreadSafeKATCPClientResourceWrapper)
        assert child.req.add(2, 2).reply.arguments == [b"ok", b"4"]
        group = wrapper.groups.ab
        assert "add" in dir(group.req)
        results = group.req.add(3, 3)
        assert results.succeeded and set(results) == {"a", "b"}
        assert [c.name for c in group.clients] == ["a", "b"]
        strategies = group.set_sampling_strategy("an.int", "event")
        assert strategies["a"]["an_int"][0] and strategies["b"]["an_int"][0]
        assert group.wait("an.int", 1, timeout=WAIT)
        assert wrapper.sensor.b_an_int.get_value() == 1
        from_thread = concurrent.futures.Future()
        thread = threading.Thread(
            target=lambda: from_thread.set_result(wrapper.req.b_add(5, 5)))
        thread.start()
        assert from_thread.result(WAIT).reply.arguments == [b"ok", b"10"]
        thread.join(WAIT)


def test_a_sensors_strategy_read_by_another_thread_while_filters_are_wished():
    # A sensor's sampling_strategy may be read through a thread-safe wrapper while the
    # loop wishes a filter: the read must not fail, however the threads interleave (a
    # short switch interval makes them interleave often).
    wishes = _StrategyWishes()
    with racing(lambda: wishes.for_sensor("a_sensor")):
        for number in range(3000):
            wishes.wish_filter("^b%d$" % number, ("event",))
    wishes.wish_filter("^a_", ("period", "1.0"))
    assert wishes.for_sensor("a_sensor") == ("period", "1.0")
