"""katcp 0.9 behaviour of the high-level clients and test helpers (issue 12).

Inspecting client, resource clients, fake clients and testutils as existing 0.9 code
and test suites use them: over real sockets on 127.0.0.1 where a user meets the
behaviour, and against the in-memory fakes.
"""

import asyncio
import datetime
import logging
import threading
import time
from unittest import mock

import pytest
import tornado.concurrent
import tornado.gen
import tornado.testing

from katcp import Sensor, fake_clients, testutils
from katcp.core import until_any, until_some
from katcp.inspecting_client import (ExponentialRandomBackoff, InspectingClientAsync,
                                     InspectingClientStateType)
from katcp.ioloop_manager import IOLoopThreadWrapper
from katcp.kattypes import Int, request, return_reply
from katcp.resource import KATCPDummyRequest, KATCPReply, KATCPSensor
from katcp.resource_client import (ClientGroup, KATCPClientResource,
                                   KATCPClientResourceContainer,
                                   KATCPClientResourceRequest,
                                   ThreadSafeKATCPClientGroupWrapper,
                                   ThreadSafeKATCPClientResourceWrapper, transform_future)

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
TIMEOUT = datetime.timedelta(seconds=WAIT)
NOT_STARTED = "Cannot find inspecting client, have you called start()?"

DISCONNECTED = InspectingClientStateType(False, False, False, False)
CONNECTED = InspectingClientStateType(True, False, False, False)
DATA_SYNCED_CHANGED = InspectingClientStateType(True, False, True, True)
SYNCED = InspectingClientStateType(True, True, False, True)


def start_device(test, device_class=testutils.DeviceTestServer):
    """A threaded test device on 127.0.0.1, stopped when the test ends."""
    device = device_class("127.0.0.1", 0)
    testutils.start_thread_with_cleanup(test, device, timeout=WAIT, start_timeout=WAIT)
    return device


class LoopTestCase(tornado.testing.AsyncTestCase):
    """AsyncTestCase that stops the clients a test started while its loop still runs."""

    def setUp(self):
        super().setUp()
        self._to_stop = []

    def stop_at_end(self, client):
        """Stop `client` (anything with stop() and until_stopped()) after the test."""
        self._to_stop.append(client)
        return client

    def tearDown(self):
        async def stop_all():
            for client in reversed(self._to_stop):
                client.stop()
                stopped = client.until_stopped()
                if isinstance(stopped, dict):
                    stopped = list(stopped.values())
                await tornado.gen.with_timeout(TIMEOUT,
                                               tornado.gen.multi(stopped)
                                               if isinstance(stopped, list) else stopped)
        self.io_loop.run_sync(stop_all)
        super().tearDown()


class StateLog:
    """State callback that records (state, model_changes) and wakes waiters."""

    def __init__(self):
        self.calls = []
        self._waiters = []

    def __call__(self, state, model_changes):
        self.calls.append((state, model_changes))
        for count, future in list(self._waiters):
            if len(self.calls) >= count and not future.done():
                future.set_result(None)

    @property
    def states(self):
        return [state for state, _ in self.calls]

    def until_count(self, count):
        future = asyncio.get_running_loop().create_future()
        if len(self.calls) >= count:
            future.set_result(None)
        else:
            self._waiters.append((count, future))
        return tornado.gen.with_timeout(TIMEOUT, future)


# -- inspecting client ------------------------------------------------------------------


class TestBackoff:

    def test_one_random_draw_scales_every_nominal_delay(self):
        # delay = nominal * (1 - randomicity + randomicity * random()): with a fixed
        # draw the delays grow by exactly exp_fac up to the maximum.
        with mock.patch("katcp.inspecting_client.random.random", return_value=0.25):
            backoff = ExponentialRandomBackoff(delay_initial=2.0, delay_max=10.0,
                                               exp_fac=2.0, randomicity=0.8)
            delays = [backoff.delay]
            for _ in range(4):
                backoff.failed()
                delays.append(backoff.delay)
            backoff.success()
            delays.append(backoff.delay)
        scale = 1.0 - 0.8 + 0.8 * 0.25
        assert delays == pytest.approx([n * scale for n in (2, 4, 8, 10, 10, 2)])


class TestModelIndex(LoopTestCase):
    """The request/sensor index: dict entries, _update_index and _difference."""

    def setUp(self):
        super().setUp()
        self.client = InspectingClientAsync("127.0.0.1", 1, ioloop=self.io_loop)

    def test_update_index_marks_only_real_changes(self):
        index = {}
        self.client._update_index(index, "a", {"description": "A."})
        self.client._update_index(index, "b", {"description": "B."})
        self.client._update_index(index, "a", {"description": "A."})
        self.client._update_index(index, "b", {"description": "New B."})
        assert index["a"] == {"description": "A."}
        assert index["b"] == {"description": "New B.", "_changed": True}

    def test_difference_adds_removes_and_reports_changed_in_both(self):
        index = {}
        for name in ("keep", "gone", "edited"):
            self.client._update_index(index, name, {"description": name})
        self.client._update_index(index, "edited", {"description": "edited again"})
        self.client._update_index(index, "fresh", {"description": "fresh"})
        added, removed = self.client._difference(
            ["keep", "gone", "edited"], ["keep", "edited", "fresh"], None, index)
        assert added == {"edited", "fresh"}
        assert removed == {"edited", "gone"}
        assert sorted(index) == ["edited", "fresh", "keep"]
        assert "_changed" not in index["edited"]

    def test_difference_for_one_name_leaves_the_others_alone(self):
        index = {}
        for name in ("b", "c"):
            self.client._update_index(index, name, {"description": name})
        assert self.client._difference(["b", "c"], [], "a", index) == (set(), set())
        assert sorted(index) == ["b", "c"]
        assert self.client._difference(["b", "c"], [], "b", index) == (set(), {"b"})
        assert sorted(index) == ["c"]


class TestInspectionOverSockets(LoopTestCase):

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_request_index_holds_what_help_said_with_whole_docstrings(self):
        device = start_device(self, testutils.DeviceTestServerWithTimeoutHints)
        device.request_timeout_hints = {"slow-command": 12.5}
        client = InspectingClientAsync(*device.bind_address, ioloop=self.io_loop)
        # Driving inspection by hand: a replaced state loop that returns no future.
        client._state_loop = mock.Mock(return_value=None)
        await client.connect(timeout=WAIT)
        self.stop_at_end(client)
        # Hints are asked for once the device has said it has them (flag T).
        await client.katcp_client.until_protocol(timeout=WAIT)
        changes = await client.inspect_requests()
        handlers = device._request_handlers
        assert changes.added == set(handlers) and changes.removed == set()
        assert client._requests_index == {
            name: {"name": name, "description": handler.__doc__,
                   "timeout_hint": 12.5 if name == "slow-command" else None}
            for name, handler in handlers.items()}
        # ?help NAME sends the docstring stripped.
        reply, informs = await client.simple_request("help", "client-list")
        assert reply.reply_ok()
        description = informs[0].arguments[1].decode()
        assert description == handlers["client-list"].__doc__.strip()
        assert description != handlers["client-list"].__doc__

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_held_back_connection_then_one_data_synced_and_one_synced_state(self):
        device = start_device(self)
        device.proceed_on_client_connect.clear()
        client = InspectingClientAsync(*device.bind_address, ioloop=self.io_loop)
        log = StateLog()
        client.set_state_callback(log)
        await client.connect()
        self.stop_at_end(client)
        await log.until_count(2)
        # Without #version-connect (nor any reply: the device handles the
        # connection first) the client cannot start inspecting.
        assert client.katcp_client.protocol_flags is None
        assert log.states == [DISCONNECTED, CONNECTED]
        device.ioloop.add_callback(device.proceed_on_client_connect.set)
        await client.until_synced(timeout=WAIT)
        assert log.states == [DISCONNECTED, CONNECTED, DATA_SYNCED_CHANGED, SYNCED]
        changes = log.calls[2][1]
        assert changes.requests.added == set(device._request_handlers)
        assert changes.sensors.added == device.sensor_names

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_the_state_that_woke_a_waiter_is_still_the_latest_state(self):
        # A loop turn after each state callback (as 0.9's coroutine yielding the
        # callback's None) lets code woken by a state see it before the next one.
        device = start_device(self)
        client = InspectingClientAsync(*device.bind_address, ioloop=self.io_loop)
        log = StateLog()
        client.set_state_callback(log)
        data_synced = client.until_state(DATA_SYNCED_CHANGED)
        await client.connect()
        self.stop_at_end(client)
        # Awaited directly: woken one loop turn after the state was sent.
        await data_synced
        assert log.states[-1] == DATA_SYNCED_CHANGED
        assert client.state == DATA_SYNCED_CHANGED
        await client.until_synced(timeout=WAIT)

    async def _retries_inspection(self, broken):
        device = start_device(self)
        setattr(device, broken, "Broken on purpose")
        client = InspectingClientAsync(*device.bind_address, ioloop=self.io_loop)
        client.initial_resync_timeout = 0.001
        log = StateLog()
        client.set_state_callback(log)
        await client.connect()
        self.stop_at_end(client)
        await client.until_connected(timeout=WAIT)
        # Each retry is reported as a new sync attempt.
        await log.until_count(len(log.calls) + 2)
        assert log.states[-2:] == [CONNECTED, CONNECTED]
        assert not client.state.data_synced
        assert client.resync_delay.delay_initial == 0.001
        setattr(device, broken, False)
        await client.until_synced(timeout=WAIT)
        data_synced = [changes for state, changes in log.calls
                       if state == DATA_SYNCED_CHANGED]
        assert len(data_synced) == 1
        assert data_synced[0].requests.added == set(device._request_handlers)
        assert data_synced[0].sensors.added == device.sensor_names

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_failing_help_is_retried_quickly(self):
        await self._retries_inspection("break_help")

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_failing_sensor_list_is_retried_quickly(self):
        await self._retries_inspection("break_sensor_list")


# -- resource sensors ---------------------------------------------------------------


class TestSetStrategy(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_set_strategy_hands_the_manager_one_string(self):
        manager = mock.Mock()
        manager.set_sampling_strategy = mock.AsyncMock(return_value=(True, ()))
        sensor = KATCPSensor(dict(sensor_type=Sensor.FLOAT, name="a.float"), manager)
        await sensor.set_strategy("none")
        await sensor.set_strategy("period", 0.25)
        await sensor.set_strategy("event-rate", "1.5 3")
        await sensor.set_strategy("differential-rate", [0.5, 1, b"2"])
        assert manager.set_sampling_strategy.call_args_list == [
            mock.call("a.float", "none"),
            mock.call("a.float", "period 0.25"),
            mock.call("a.float", "event-rate 1.5 3"),
            mock.call("a.float", "differential-rate 0.5 1 2"),
        ]
        # A manager answering at once (not with a future) is fine too.
        manager.set_sampling_strategy = mock.Mock(return_value=(True, ("event",)))
        assert await sensor.set_strategy("event") == (True, ("event",))


# -- fake clients ------------------------------------------------------------------------


class Extra:
    @request(Int())
    @return_reply(Int())
    def request_double(self, req, x):
        """Double it."""
        return ("ok", 2 * x)


def fake_resource(**spec):
    spec = dict(dict(name="dev", address=("fake-host.invalid", 1)), **spec)
    return fake_clients.fake_KATCP_client_resource_factory(KATCPClientResource, {}, spec)


def fake_container(**child_spec):
    spec = {"name": "cont", "clients": {
        "dev-a": dict(address=("fake-a.invalid", 1), **child_spec),
        "dev-b": dict(address=("fake-b.invalid", 2), **child_spec),
    }}
    return fake_clients.fake_KATCP_client_resource_container_factory(
        KATCPClientResourceContainer, {}, spec)


class TestFakes(LoopTestCase, testutils.SensorComparisonMixin):

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_sensor_infos_may_be_katcp_formatted(self):
        client, manager = fake_clients.fake_inspecting_client_factory(
            InspectingClientAsync, {}, "fake-host.invalid", 1, ioloop=self.io_loop)
        await client.connect()
        self.stop_at_end(client)
        manager.add_sensors({
            "level": (b"A level.", b"m", "float", b"-1.5", b"2.5e3"),
            "state": ("A state.", "", b"discrete", b"on", "off"),
            "count": ("A count.", "", Sensor.INTEGER, 0, b"10"),
        })
        await client.until_synced(timeout=WAIT)
        level = await client.future_get_sensor("level")
        self.assert_sensor_equal_description(level, {
            "name": "level", "type": Sensor.FLOAT, "description": "A level.",
            "units": "m", "params": [-1.5, 2500.0]})
        self.assert_sensor_equal_description(level, {"type": "float"})
        state = await client.future_get_sensor("state")
        assert state.params == ["on", "off"]
        count = await client.future_get_sensor("count")
        assert count.params == [0, 10]
        assert manager.fake_sensor_infos["level"] == ("A level.", "m", "float", -1.5, 2500.0)
        with pytest.raises(AssertionError):
            self.assert_sensor_equal_description(count, {"type": Sensor.FLOAT})

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_help_lists_only_help_sensor_list_and_added_requests(self):
        res, manager = fake_resource(controlled=True)
        manager.add_sensors({"temp": ("A temperature.", "degC", "float")})
        res.start()
        self.stop_at_end(res)
        await res.until_synced(timeout=WAIT)
        assert sorted(res.req) == ["help", "sensor_list"]
        manager.add_request_handlers_object(Extra())
        await res.until_state("syncing", timeout=WAIT)
        await res.until_synced(timeout=WAIT)
        assert sorted(res.req) == ["double", "help", "sensor_list"]
        # The unlisted standard requests still work for sampling and polling.
        result = await res.set_sampling_strategy("temp", "event")
        assert result == {"temp": (True, ("event",))}
        manager.fake_sensors["temp"].set_value(21.5)
        assert await res.sensor.temp.get_value() == 21.5

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_container_manager_takes_resource_or_escaped_names(self):
        container, manager = fake_container(controlled=True)
        assert sorted(manager.child_managers) == ["dev_a", "dev_b"]
        container.start()
        self.stop_at_end(container)
        await container.until_synced(timeout=WAIT)
        manager.add_sensors("dev-a", {"one": ("One.", "", "integer")})
        manager.add_sensors("dev_b", {"two": ("Two.", "", "integer")})
        await container.until_any_child_in_state("syncing", timeout=WAIT)
        await container.until_synced(timeout=WAIT)
        while sorted(container.sensor) != ["dev_a_one", "dev_b_two"]:
            await container.until_not_synced(timeout=WAIT)
            await container.until_synced(timeout=WAIT)


# -- resource clients --------------------------------------------------------------------


class ResourceCase(LoopTestCase):

    def real_resource(self, device, **spec):
        res = KATCPClientResource(dict(
            dict(name="dev", address=device.bind_address), **spec))
        return res

    def started(self, res):
        res.start()
        return self.stop_at_end(res)


class TestResourceAttributes(ResourceCase):

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_controlled_comes_from_the_spec(self):
        device = start_device(self)
        assert self.real_resource(device).controlled is False
        assert self.real_resource(device, controlled=True).controlled is True
        res, _ = fake_resource(controlled=True)
        assert res.controlled is True

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_versions_and_last_connect_time_come_from_the_client(self):
        device = start_device(self)
        res = self.real_resource(device)
        for attr in ("versions", "last_connect_time"):
            with pytest.raises(RuntimeError) as error:
                getattr(res, attr)
            assert str(error.value) == NOT_STARTED
        self.started(res)
        await res.until_synced(timeout=WAIT)
        katcp_client = res._inspecting_client.katcp_client
        assert res.versions is katcp_client.versions
        assert res.versions["katcp-protocol"][0].startswith("5.")
        assert res.last_connect_time is not None
        assert res.last_connect_time == katcp_client.last_connect_time

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_versions_of_a_fake_resource(self):
        res, _ = fake_resource()
        with pytest.raises(RuntimeError, match="have you called start"):
            res.versions
        self.started(res)
        await res.until_synced(timeout=WAIT)
        assert res.versions["katcp-device"] == ("fake-device",)


class TestDummyUnknownRequests(ResourceCase):

    async def check_dummies(self, res):
        await res.until_synced(timeout=WAIT)
        assert res.dummy_unknown_requests is True
        assert isinstance(res.req.help, KATCPClientResourceRequest)
        dummy = res.req.no_such_request
        assert isinstance(dummy, KATCPDummyRequest) and dummy.name == "no-such-request"
        assert "no_such_request" not in res.req
        reply = await dummy(1, 2)
        assert isinstance(reply, KATCPReply) and reply.succeeded
        with pytest.raises(AttributeError):
            res.req._private
        group = ClientGroup("group", [res])
        results = await group.req.no_such_request()
        assert results.succeeded and results[res.name].succeeded

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_unknown_requests_of_a_real_resource_are_dummies(self):
        device = start_device(self)
        res = self.started(self.real_resource(
            device, controlled=True, dummy_unknown_requests=True))
        await self.check_dummies(res)
        plain = self.started(self.real_resource(device, name="plain", controlled=True))
        await plain.until_synced(timeout=WAIT)
        assert plain.dummy_unknown_requests is False
        with pytest.raises(AttributeError):
            plain.req.no_such_request
        with pytest.raises(AttributeError):
            ClientGroup("plain", [plain]).req.no_such_request

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_unknown_requests_of_a_fake_resource_are_dummies(self):
        res, _ = fake_resource(controlled=True, dummy_unknown_requests=True)
        await self.check_dummies(self.started(res))


def test_thread_safe_wrappers_offer_the_dummies(loop_manager):
    ioloop = loop_manager.get_ioloop()
    res, _ = fake_resource(controlled=True, dummy_unknown_requests=True)
    res.set_ioloop(ioloop)
    wrapper = ThreadSafeKATCPClientResourceWrapper(res, IOLoopThreadWrapper(ioloop))
    wrapper.start()
    try:
        wrapper.until_synced(timeout=WAIT)
        assert wrapper.req.anything().succeeded
        group = IOLoopThreadWrapper(ioloop).call_in_ioloop(
            ClientGroup, ("g", [res]), {})
        group_wrapper = ThreadSafeKATCPClientGroupWrapper(group, IOLoopThreadWrapper(ioloop))
        assert group_wrapper.req.anything().succeeded
    finally:
        wrapper.stop()


class TestAlreadyDecidedFutures(ResourceCase):

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_until_any_is_resolved_when_an_input_is_done(self):
        loop = asyncio.get_running_loop()
        pending, done, failed = (loop.create_future() for _ in range(3))
        done.set_result("first")
        failed.set_exception(ValueError("boom"))
        future = until_any(pending, done, failed)
        assert future.done() and future.result() == "first"
        future = until_any(pending, failed, timeout=WAIT)
        assert future.done() and isinstance(future.exception(), ValueError)
        assert not until_any(pending).done()
        assert until_some(done).done()

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_transform_future_of_a_done_future(self):
        source = asyncio.get_running_loop().create_future()
        source.set_result(20)
        transformed = transform_future(lambda x: x + 1, source)
        assert transformed.done() and transformed.result() == 21
        pending = asyncio.get_running_loop().create_future()
        transformed = transform_future(lambda x: x + 1, pending)
        assert not transformed.done()
        pending.set_result(1)
        assert await transformed == 2

    async def check_sync_waits(self, container):
        # Before start every child is disconnected: not synced, at once.
        assert container.until_not_synced().done()
        for child in container.children.values():
            assert child.until_not_synced().done()
        container.start()
        self.stop_at_end(container)
        await container.until_synced(timeout=WAIT)
        assert container.until_synced().done()
        assert not container.until_not_synced().done()
        first = next(iter(container.children.values()))
        first.stop()
        await first.until_not_synced(timeout=WAIT)
        assert first.until_not_synced().done()
        assert container.until_not_synced().done()

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_sync_waits_over_sockets(self):
        device = start_device(self)
        container = KATCPClientResourceContainer({"name": "cont", "clients": {
            "one": dict(address=device.bind_address),
            "two": dict(address=device.bind_address)}})
        await self.check_sync_waits(container)

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_sync_waits_with_fakes(self):
        container, _ = fake_container()
        await self.check_sync_waits(container)


class TestQuorum(ResourceCase):

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_quorum_above_one_must_be_an_integer(self):
        device = start_device(self)
        clients = [self.started(self.real_resource(device, name=name))
                   for name in ("one", "two")]
        for client in clients:
            await client.until_synced(timeout=WAIT)
            await client.set_sampling_strategy("an.int", "event")
        group = ClientGroup("group", clients)
        for quorum in (1.5, 2.0):
            with pytest.raises(TypeError) as error:
                await group.wait("an_int", 3, timeout=1, quorum=quorum)
            assert str(error.value) == (
                "Quorum parameter %r must be an integer if outside range [0, 1]" % quorum)
        assert await group.wait("an_int", 3, timeout=WAIT, quorum=2)
        assert await group.wait("an_int", 3, timeout=WAIT, quorum=0.5)
        assert await group.wait("an_int", 3, timeout=WAIT, quorum=1)


def test_thread_safe_group_wait_checks_the_quorum(loop_manager):
    ioloop = loop_manager.get_ioloop()
    container, _ = fake_container()
    container.set_ioloop(ioloop)
    wrapper = ThreadSafeKATCPClientResourceWrapper(container, IOLoopThreadWrapper(ioloop))
    wrapper.start()
    try:
        wrapper.until_synced(timeout=WAIT)
        group = IOLoopThreadWrapper(ioloop).call_in_ioloop(
            ClientGroup, ("g", list(container.children.values())), {})
        group_wrapper = ThreadSafeKATCPClientGroupWrapper(group, IOLoopThreadWrapper(ioloop))
        with pytest.raises(TypeError, match="must be an integer if outside range"):
            group_wrapper.wait("x", 1, timeout=1, quorum=2.5)
    finally:
        wrapper.stop()


class TestContainerSensorListener(ResourceCase):

    async def check_listener(self, container, set_value):
        container.start()
        self.stop_at_end(container)
        await container.until_synced(timeout=WAIT)
        seen = asyncio.get_running_loop().create_future()

        def listener(sensor, reading):
            if reading.value == 4 and not seen.done():
                seen.set_result(sensor.parent_name)

        children = list(container.children.values())
        name = children[0].name
        prefix = children[0].name.replace("-", "_")
        result = await container.set_sensor_listener(prefix + "_an_int", listener)
        assert result == {name: {"an_int": listener}}
        assert await container.set_sensor_listener("nothing_like_it", listener) == {}
        await container.set_sampling_strategy(prefix + "_an_int", "event")
        set_value(4)
        assert await tornado.gen.with_timeout(TIMEOUT, seen) == name
        # Every match, per resource; a child that fails is logged and gets None.
        with mock.patch.object(children[1], "set_sensor_listener",
                               side_effect=RuntimeError("no")), \
                self.assertLogs("katcp.resource_client", logging.ERROR):
            result = await container.set_sensor_listener(".*_an_int", listener)
        assert result == {name: {"an_int": listener},
                          children[1].name: {"an_int": None}}

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_over_sockets(self):
        devices = [start_device(self) for _ in range(2)]
        container = KATCPClientResourceContainer({"name": "cont", "clients": {
            "dev-a": dict(address=devices[0].bind_address),
            "dev-b": dict(address=devices[1].bind_address)}})
        await self.check_listener(
            container, lambda value: devices[0].get_sensor("an.int").set_value(value))

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_with_fakes(self):
        container, manager = fake_container()
        for child in ("dev-a", "dev-b"):
            manager.add_sensors(child, {"an.int": ("An int.", "", "integer")})
        await self.check_listener(
            container,
            lambda value: manager.child_managers["dev_a"].fake_sensors["an.int"].set_value(
                value))


# -- testutils -----------------------------------------------------------------------


class StartRecorder:
    """A thread-like object that records how it is started and stopped."""

    def __init__(self):
        self.calls = []

    def start(self, timeout=None):
        self.calls.append(("start", timeout))

    def stop(self):
        self.calls.append(("stop",))

    def join(self, timeout=None):
        self.calls.append(("join", timeout))


class TestStartThreadWithCleanup(LoopTestCase):

    def test_starts_with_the_start_timeout_and_cleans_up(self):
        recorder = StartRecorder()
        cleanups = mock.Mock()
        testutils.start_thread_with_cleanup(cleanups, recorder, timeout=3, start_timeout=2)
        assert recorder.calls == [("start", 2)]
        (cleanup,), _ = cleanups.addCleanup.call_args
        cleanup()
        assert recorder.calls == [("start", 2), ("stop",), ("join", 3)]

    @tornado.testing.gen_test(timeout=WAIT)
    async def test_a_real_server_is_running_once_started(self):
        device = testutils.DeviceTestServer("127.0.0.1", 0)
        testutils.start_thread_with_cleanup(self, device, start_timeout=WAIT)
        assert device.running()
        client = InspectingClientAsync(*device.bind_address, ioloop=self.io_loop)
        await client.connect(timeout=WAIT)
        self.stop_at_end(client)
        reply, _ = await client.simple_request("watchdog")
        assert reply.reply_ok()


class TestDeviceTestServerGreeting(tornado.testing.AsyncTestCase):

    def test_greets_at_once_unless_held_back(self):
        # Called directly, with the loop not running, as 0.9 server tests do.
        device = testutils.DeviceTestServer("127.0.0.1", 0)
        connection = mock.Mock()
        device.on_client_connect(connection)
        informs = [str(call.args[0]) for call in connection.inform.call_args_list]
        assert [inform.split()[:2] for inform in informs] == [
            ["#version-connect", "katcp-protocol"], ["#version-connect", "katcp-library"],
            ["#version-connect", "katcp-device"]]
        device.proceed_on_client_connect.clear()
        held_back = mock.Mock()
        device.on_client_connect(held_back)
        assert held_back.inform.call_count == 0


class TestSensorTransitionWaiter:

    def test_the_first_element_must_match_the_current_value(self):
        sensor = Sensor.integer("counter", default=5)
        with pytest.raises(ValueError):
            testutils.SensorTransitionWaiter(sensor, [1, 2])
        # Nothing is left attached after the refusal.
        assert not sensor._observers
        waiter = testutils.SensorTransitionWaiter(sensor, [lambda value: value > 1, 6])
        waiter.teardown()

    def test_fast_and_repeated_updates_follow_the_sequence(self):
        sensor = Sensor.integer("counter", default=0)
        waiter = testutils.SensorTransitionWaiter(sensor, [0, 1, 2, 3])
        setter = threading.Thread(
            target=lambda: [sensor.set_value(v) for v in (0, 1, 1, 2, 2, 2, 3)])
        setter.start()
        assert waiter.wait(WAIT)
        setter.join(WAIT)
        assert waiter.get_received_values() == [0, 1, 2, 3]

    def test_a_value_out_of_sequence_ends_the_wait_as_failed(self):
        sensor = Sensor.integer("counter", default=0)
        waiter = testutils.SensorTransitionWaiter(sensor, [0, 1, 2])
        sensor.set_value(2)
        started = time.monotonic()
        assert waiter.wait(WAIT) is False
        assert time.monotonic() - started < WAIT / 2
        sensor.set_value(1)
        sensor.set_value(2)
        assert waiter.wait(0) is False
        waiter.teardown()

    def test_status_transitions(self):
        sensor = Sensor.integer("counter", default=0)
        waiter = testutils.SensorTransitionStatusWaiter(
            sensor, [(0, Sensor.UNKNOWN), (1, Sensor.WARN), (2, Sensor.NOMINAL)])
        sensor.set_value(1, Sensor.WARN)
        sensor.set_value(2, Sensor.NOMINAL)
        assert waiter.wait(WAIT)
        waiter.teardown()

    def test_wait_sensor_waits_for_a_value_from_any_start(self):
        sensor = Sensor.integer("counter", default=0)
        assert testutils.wait_sensor(sensor, 0, timeout=0)
        setter = threading.Timer(0.01, sensor.set_value, (7,))
        setter.start()
        assert testutils.wait_sensor(sensor, 7, timeout=WAIT)
        setter.join(WAIT)
        assert not testutils.wait_sensor(sensor, 8, timeout=0.01)


def test_transition_waiter_on_a_resource_sensor_over_sockets(loop_manager):
    ioloop = loop_manager.get_ioloop()
    device = testutils.DeviceTestServer("127.0.0.1", 0)
    device.start(timeout=WAIT)
    res = KATCPClientResource(dict(name="dev", address=device.bind_address))
    res.set_ioloop(ioloop)
    wrapper = ThreadSafeKATCPClientResourceWrapper(res, IOLoopThreadWrapper(ioloop))
    wrapper.start()
    try:
        wrapper.until_synced(timeout=WAIT)
        an_int = wrapper.sensor.an_int
        an_int.get_value()
        waiter = testutils.SensorTransitionWaiter(an_int, [3, lambda value: value > 3])
        # Sampled with 'auto' while watched, so that changes arrive.
        assert an_int.sampling_strategy == ("auto",)
        # (The device may coalesce quick changes: one is enough here.)
        device.get_sensor("an.int").set_value(4)
        assert waiter.wait(WAIT)
        waiter.teardown()
        assert an_int.sampling_strategy == ("none",)
    finally:
        wrapper.stop()
        device.stop()
        device.join(WAIT)


class TestWaitingMock:

    def test_count_never_reached_is_an_assertion_error(self):
        waiting = testutils.WaitingMock()
        waiting(1)
        with pytest.raises(AssertionError):
            waiting.assert_wait_call_count(2, timeout=0.01)

    def test_calls_from_another_thread_are_waited_for(self):
        waiting = testutils.WaitingMock(side_effect=[None, ValueError("second")])
        caller = threading.Thread(target=lambda: [waiting(), pytest.raises(
            ValueError, waiting)])
        caller.start()
        waiting.assert_wait_call_count(2, timeout=WAIT)
        caller.join(WAIT)
        assert len(waiting.call_args_list) == 2

    def test_counted_but_unrecorded_calls_are_a_runtime_error(self):
        waiting = testutils.WaitingMock()
        waiting()
        # A count ahead of the recorded calls: what a call caught half-way looks like.
        waiting.call_count = 2
        with pytest.raises(RuntimeError):
            waiting.assert_wait_call_count(2, timeout=0.01)
