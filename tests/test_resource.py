"""Tests for katcp.resource: the abstract high-level API and its concrete helpers."""

import functools
import inspect
import sys
import types

import pytest
import tornado.gen
import tornado.testing

from katcp import Message, Sensor
from katcp.core import AttrDict
from katcp.resource import (
    KATCPDummyRequest,
    KATCPReply,
    KATCPRequest,
    KATCPResource,
    KATCPResourceError,
    KATCPResourceInactive,
    KATCPSensor,
    KATCPSensorError,
    KATCPSensorReading,
    KATCPSensorsManager,
    SensorResultTuple,
    escape_name,
    normalize_strategy_parameters,
)
from katcp.wire.util import request_name_of

from subprocess_helpers import assert_quiet_exit, run_without_loop


class ManualManager(KATCPSensorsManager):
    """Sensor manager with a fixed clock that records what it is asked to do."""

    resource_name = "dev"

    def __init__(self):
        self.strategies = {}
        self.polled = []
        self.fail_next_strategy = False
        self.poll_reading = None
        self.now = 1000.0

    def time(self):
        return self.now

    def get_sampling_strategy(self, sensor_name):
        return self.strategies.get(sensor_name, ("none",))

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name, strategy_and_parms):
        strategy = normalize_strategy_parameters(strategy_and_parms)
        if self.fail_next_strategy:
            self.fail_next_strategy = False
            try:
                raise KATCPSensorError("device said no")
            except KATCPSensorError:
                return (False, sys.exc_info())
        self.strategies[sensor_name] = strategy
        return (True, strategy)

    def drop_sampling_strategy(self, sensor_name):
        self.strategies.pop(sensor_name, None)

    def reapply_sampling_strategies(self):
        raise NotImplementedError

    @tornado.gen.coroutine
    def poll_sensor(self, sensor_name):
        self.polled.append(sensor_name)
        self.sensors[sensor_name].set(*self.poll_reading)


def make_sensor(manager, name="an.int", sensor_type=Sensor.INTEGER, params=None):
    sensor = KATCPSensor(
        dict(name=name, sensor_type=sensor_type, description="An %s" % name,
             units="m", params=params or [0, 100]),
        manager,
    )
    manager.sensors = getattr(manager, "sensors", {})
    manager.sensors[name] = sensor
    return sensor


class MiniResource(KATCPResource):
    """Smallest concrete resource: a fixed set of sensors and children."""

    def __init__(self, sensors, children=()):
        super().__init__()
        self._sensor = AttrDict((s.normalised_name, s) for s in sensors)
        self._children = AttrDict((c.name, c) for c in children)

    name = "mini"
    description = "A mini resource"
    address = None
    is_connected = True
    parent = None
    req = AttrDict()

    @property
    def sensor(self):
        return self._sensor

    @property
    def children(self):
        return self._children

    @tornado.gen.coroutine
    def list_sensors(self, filter="", strategy=False, status="",
                     use_python_identifiers=True, tuple=False, refresh=False):
        return [
            SensorResultTuple(s, s.name, name, s.description, s.type, s.units, s.reading)
            for name, s in sorted(self._sensor.items()) if filter in name
        ]


def test_escape_name():
    assert escape_name("sensor-name.sub") == "sensor_name_sub"
    assert escape_name("plain") == "plain"


def test_a_request_name_comes_back_from_its_identifier():
    for name in ("sensor-list", "plain", "a-b-c", "x1-2"):
        assert request_name_of(escape_name(name)) == name


@pytest.mark.parametrize("given, expected", [
    ("event", ("event",)),
    ("period 0.5", ("period", "0.5")),
    (("period", 1), ("period", "1.0")),
    (["differential", "2", " "], ("differential", "2.0", " ")),
    (b"event-rate 1 10", ("event-rate", "1.0", "10.0")),
    (("period", b"0.25"), ("period", "0.25")),
])
def test_normalize_strategy_parameters(given, expected):
    assert normalize_strategy_parameters(given) == expected


def test_error_hierarchy():
    assert issubclass(KATCPResourceInactive, KATCPResourceError)
    assert issubclass(KATCPSensorError, KATCPResourceError)
    assert issubclass(KATCPResourceError, Exception)


def test_katcp_reply():
    reply = Message.reply("help", "ok", "2")
    informs = [Message.inform("help", "add", "Add two numbers"),
               Message.inform("help", "halt", "Stop")]
    result = KATCPReply(reply, informs)
    assert result.succeeded and bool(result)
    assert result.messages == [reply] + informs
    unpacked_reply, unpacked_informs = result
    assert unpacked_reply is reply and unpacked_informs == informs
    assert repr(result) == "!help ok 2\n#help add Add two numbers\n#help halt Stop"
    assert str(result) == "!help ok 2\n#help add Add\\_two\\_numbers\n#help halt Stop"
    failed = KATCPReply(Message.reply("add", "fail", "bad"), [])
    assert not failed and not failed.succeeded


def test_sensor_reading_status():
    reading = KATCPSensorReading(2.0, 1.0, Sensor.WARN, 42)
    assert reading.status == "warn"
    assert reading.istatus == Sensor.WARN
    assert reading == (2.0, 1.0, Sensor.WARN, 42)


def test_sensor_result_tuple_fields():
    assert SensorResultTuple._fields == (
        "object", "name", "python_identifier", "description", "type", "units", "reading")


def test_abstract_classes_need_implementations():
    with pytest.raises(TypeError):
        KATCPResource()
    with pytest.raises(TypeError):
        KATCPRequest(dict(name="x", description="y"))
    with pytest.raises(TypeError):
        KATCPSensorsManager()


class TestRequests(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test
    def test_dummy_request(self):
        active = [True]
        request = KATCPDummyRequest(
            dict(name="add", description="Add two numbers", timeout_hint=3.5),
            is_active=lambda: active[0])
        assert request.name == "add"
        assert request.description == "Add two numbers"
        assert request.timeout_hint == 3.5
        assert "Add two numbers" in request.__doc__
        assert "Calling this object sends ?add" in request.__doc__
        assert "name=add" in repr(request)
        reply = yield request(1, 2)
        assert isinstance(reply, KATCPReply) and reply.succeeded
        active[0] = False
        assert not request.is_active()
        with pytest.raises(KATCPResourceInactive):
            request(1, 2)
        # issue_request skips the active check.
        reply = yield request.issue_request()
        assert reply.succeeded

    def test_timeout_hint_defaults_to_none(self):
        request = KATCPDummyRequest(dict(name="x", description="y"))
        assert request.timeout_hint is None


class TestKATCPSensor(tornado.testing.AsyncTestCase):

    def setUp(self):
        super().setUp()
        self.manager = ManualManager()
        self.sensor = make_sensor(self.manager)

    def test_attributes(self):
        sensor = self.sensor
        assert sensor.name == "an.int"
        assert sensor.normalised_name == "an_int"
        assert sensor.parent_name == "dev"
        assert sensor.description == "An an.int" == sensor.__doc__
        assert sensor.type == "integer"
        assert sensor.units == "m"
        assert sensor.params == [0, 100]
        assert sensor.reading == KATCPSensorReading(0, 0, Sensor.UNKNOWN, None)
        assert sensor.status == "unknown"
        assert "name=an.int" in repr(sensor)

    def test_set_and_listeners(self):
        plain_calls, reading_calls = [], []

        def plain(*args):
            plain_calls.append(args)

        def with_reading(sensor, reading):
            reading_calls.append((sensor, reading))

        self.sensor.register_listener(plain)
        self.sensor.register_listener(with_reading, reading=True)
        assert self.sensor.is_listener(plain) and self.sensor.is_listener(with_reading)
        self.sensor.set(900.0, Sensor.NOMINAL, 7)
        expected = KATCPSensorReading(1000.0, 900.0, Sensor.NOMINAL, 7)
        assert self.sensor.reading == expected
        assert self.sensor.value == 7
        assert plain_calls == [(1000.0, 900.0, "nominal", 7)]
        assert reading_calls == [(self.sensor, expected)]
        self.sensor.unregister_listener(plain)
        assert not self.sensor.is_listener(plain)
        self.sensor.set_value(8, Sensor.WARN)
        assert self.sensor.reading == KATCPSensorReading(1000.0, 1000.0, Sensor.WARN, 8)
        assert len(plain_calls) == 1 and len(reading_calls) == 2
        self.sensor.clear_listeners()
        self.sensor.set_value(9)
        assert len(reading_calls) == 2

    def test_failing_listener_does_not_stop_others(self):
        calls = []

        def broken(sensor, reading):
            raise RuntimeError("listener bug")

        self.sensor.register_listener(broken, reading=True)
        self.sensor.register_listener(lambda s, r: calls.append(r.value), reading=True)
        self.sensor.set_value(3)
        assert calls == [3]

    def test_set_formatted_and_parse_value(self):
        self.sensor.set_formatted(b"1234.5", b"warn", b"12", 5)
        assert self.sensor.reading == KATCPSensorReading(1000.0, 1234.5, Sensor.WARN, 12)
        # KATCP v4 timestamps are in milliseconds.
        self.sensor.set_formatted(b"1234500", b"nominal", b"13", 4)
        assert self.sensor.reading[1:] == (1234.5, Sensor.NOMINAL, 13)
        assert self.sensor.parse_value(b"42") == 42
        assert self.sensor.parse_value("43") == 43

    @tornado.testing.gen_test
    def test_strategies(self):
        assert self.sensor.sampling_strategy == ("none",)
        result = yield self.sensor.set_sampling_strategy("period 0.5")
        assert result == (True, ("period", "0.5"))
        assert self.sensor.sampling_strategy == ("period", "0.5")
        yield self.sensor.set_strategy("event")
        assert self.sensor.sampling_strategy == ("event",)
        yield self.sensor.set_strategy("differential", 2)
        assert self.sensor.sampling_strategy == ("differential", "2.0")
        yield self.sensor.set_strategy("event-rate", "1 10")
        assert self.sensor.sampling_strategy == ("event-rate", "1.0", "10.0")
        yield self.sensor.set_strategy("event-rate", [0.5, 5])
        assert self.sensor.sampling_strategy == ("event-rate", "0.5", "5.0")
        self.manager.fail_next_strategy = True
        with pytest.raises(KATCPSensorError, match="device said no"):
            yield self.sensor.set_sampling_strategy("auto")
        self.sensor.drop_sampling_strategy()
        assert self.sensor.sampling_strategy == ("none",)

    @tornado.testing.gen_test
    def test_get_value_polls(self):
        self.manager.poll_reading = (999.0, Sensor.ERROR, 55)
        value = yield self.sensor.get_value()
        assert value == 55
        status = yield self.sensor.get_status()
        assert status == "error"
        reading = yield self.sensor.get_reading()
        assert reading == KATCPSensorReading(1000.0, 999.0, Sensor.ERROR, 55)
        assert self.manager.polled == ["an.int"] * 3

    @tornado.testing.gen_test
    def test_wait(self):
        with pytest.raises(KATCPSensorError):
            self.sensor.wait(5)
        yield self.sensor.set_strategy("event")
        self.sensor.set_value(5)
        # Already satisfied by the current reading.
        assert (yield self.sensor.wait(5, timeout=1)) is True
        waiting = self.sensor.wait(lambda reading: reading.status == "warn", timeout=5)
        yield tornado.gen.moment
        self.sensor.set_value(6)
        assert not waiting.done()
        self.sensor.set_value(7, Sensor.WARN)
        assert (yield waiting) is True
        assert not self.sensor._listeners
        with pytest.raises(tornado.gen.TimeoutError):
            yield self.sensor.wait(100, timeout=0.05)
        # A timed-out wait removes its listener.
        assert not self.sensor._listeners
        with pytest.raises(NotImplementedError):
            self.sensor.wait([1, 2])

    @tornado.testing.gen_test
    def test_wait_condition_error_propagates(self):
        yield self.sensor.set_strategy("event")

        def bad_condition(reading):
            raise ValueError("bad condition")

        with pytest.raises(ValueError, match="bad condition"):
            yield self.sensor.wait(bad_condition, timeout=1)

    @tornado.testing.gen_test
    def test_async_def_listeners_and_conditions_are_refused(self):
        # A listener's coroutine would never run, and a wait took a condition's coroutine
        # for a true answer: resolved with True while the value was not 99.
        async def listener(sensor, reading):
            pass

        async def condition(reading):
            return reading.value == 99

        yield self.sensor.set_strategy("event")
        self.sensor.set_value(5)
        for reading in (False, True):
            with pytest.raises(TypeError, match="listener .* is an async function"):
                self.sensor.register_listener(listener, reading=reading)
        assert not self.sensor.is_listener(listener)
        with pytest.raises(TypeError, match="condition .* is an async function"):
            self.sensor.wait(condition, timeout=1)
        assert not self.sensor._listeners

    @tornado.testing.gen_test
    def test_callables_with_an_async_def_call_are_refused(self):
        # Only the function itself was checked: an object whose __call__ is async def
        # (also in a partial) was taken, and its coroutines dropped.
        class Listener:
            async def __call__(self, *args):
                pass

        yield self.sensor.set_strategy("event")
        for listener in (Listener(), functools.partial(Listener(), self.sensor)):
            with pytest.raises(TypeError, match="listener .* is an async function"):
                self.sensor.register_listener(listener)
            with pytest.raises(TypeError, match="condition .* is an async function"):
                self.sensor.wait(listener, timeout=1)
        assert not self.sensor._listeners

    @tornado.testing.gen_test
    def test_a_method_made_of_a_partial_of_an_async_function_is_refused(self):
        # It has no code of its own: inspect looks through the method and the partial.
        async def coroutine_listener(owner, sensor, reading):
            pass

        async def generator_listener(owner, sensor, reading):
            yield

        yield self.sensor.set_strategy("event")
        for function in (coroutine_listener, generator_listener):
            listener = types.MethodType(functools.partial(function), object())
            with pytest.raises(TypeError, match="listener .* is an async function"):
                self.sensor.register_listener(listener)
        assert not self.sensor._listeners

    @tornado.testing.gen_test
    def test_a_class_whose_instances_are_async_callables_is_a_plain_callable(self):
        # Calling the class makes an instance (type.__call__): nothing to await.
        made = []

        class Listener:
            def __init__(self, sensor, reading):
                made.append(reading.value)

            async def __call__(self, *args):
                pass

        yield self.sensor.set_strategy("event")
        self.sensor.register_listener(Listener, reading=True)
        self.sensor.set_value(7)
        assert made == [7]

    @tornado.testing.gen_test
    def test_a_wait_fails_when_its_condition_returns_an_async_generator(self):
        # An async generator, true as any object, would resolve the wait with True.
        async def values(reading):
            yield reading.value

        def condition(reading):
            return values(reading)

        yield self.sensor.set_strategy("event")
        self.sensor.set_value(5)
        with pytest.raises(TypeError, match="async generator"):
            yield self.sensor.wait(condition, timeout=1)
        assert not self.sensor._listeners

    @tornado.testing.gen_test
    def test_a_wait_fails_when_its_condition_returns_a_coroutine(self):
        # A plain function returning a coroutine cannot be told when the wait starts:
        # its coroutine, true as any object, resolved the wait with True at once.
        returned = []

        async def is_99(reading):
            return reading.value == 99

        def condition(reading):
            returned.append(is_99(reading))
            return returned[-1]

        yield self.sensor.set_strategy("event")
        self.sensor.set_value(5)
        with pytest.raises(TypeError, match="condition returned the coroutine"):
            yield self.sensor.wait(condition, timeout=1)
        assert not self.sensor._listeners
        # Closed: it never runs, and Python does not warn that it was never awaited.
        assert inspect.getcoroutinestate(returned[0]) == inspect.CORO_CLOSED


class TestKATCPResource(tornado.testing.AsyncTestCase):

    def setUp(self):
        super().setUp()
        self.manager = ManualManager()
        self.sensors = [make_sensor(self.manager, "an.int"),
                        make_sensor(self.manager, "other-int")]
        self.child = MiniResource([])
        self.child.name = "child"
        self.resource = MiniResource(self.sensors, children=[self.child])

    def test_active(self):
        assert self.resource.is_active() and self.child.is_active()
        self.resource.set_active(False)
        assert not self.resource.is_active() and not self.child.is_active()
        self.resource.set_active(True)
        assert self.child.is_active()
        assert "name=mini" in repr(self.resource)

    @tornado.testing.gen_test
    def test_set_sampling_strategy(self):
        result = yield self.resource.set_sampling_strategy("an.int", "period 1")
        assert result == {"an_int": (True, ("period", "1.0"))}
        result = yield self.resource.set_sampling_strategy("missing", "event")
        success, exc_info = result["missing"]
        assert not success and exc_info[0] is KATCPSensorError
        self.manager.fail_next_strategy = True
        result = yield self.resource.set_sampling_strategy("an_int", "event")
        assert result["an_int"][0] is False

    @tornado.testing.gen_test
    def test_set_sampling_strategies(self):
        result = yield self.resource.set_sampling_strategies("int", "event")
        assert result == {"an_int": (True, ("event",)), "other_int": (True, ("event",))}
        result = yield self.resource.set_sampling_strategies("other", "period 2")
        assert result == {"other_int": (True, ("period", "2.0"))}
        assert self.sensors[0].sampling_strategy == ("event",)

    @tornado.testing.gen_test
    def test_wait(self):
        yield self.resource.set_sampling_strategy("an.int", "event")
        self.sensors[0].set_value(3)
        assert (yield self.resource.wait("an.int", 3, timeout=1)) is True
        assert (yield self.resource.wait("an_int", 4, timeout=0.05)) is False
        with pytest.raises(KATCPSensorError):
            yield self.resource.wait("other_int", 4, timeout=0.05)
        with pytest.raises(KATCPSensorError):
            yield self.resource.wait("missing", 4, timeout=0.05)

    @tornado.testing.gen_test
    def test_wait_refuses_an_async_def_condition(self):
        async def condition(reading):
            return reading.value == 99

        yield self.resource.set_sampling_strategy("an.int", "event")
        self.sensors[0].set_value(3)
        with pytest.raises(TypeError, match="condition .* is an async function"):
            yield self.resource.wait("an.int", condition, timeout=1)


def test_katcp_sensor_used_off_any_loop_takes_the_threads_loop_without_warning():
    # 0.9.3's test idiom (a mock manager, no loop) in a plain script's main thread: the
    # futures of set_strategy() and wait() live on the loop made for the thread, as
    # katcp 0.9's did. Python 3.12 and 3.13 warned (an error here) when asyncio made it.
    result = run_without_loop("""
import asyncio
from unittest import mock
from katcp import Sensor, resource
manager = mock.Mock()
manager.get_sampling_strategy.return_value = ("period", "0.5")
sensor = resource.KATCPSensor(dict(sensor_type=Sensor.INTEGER, name="s.x", params=[0, 10]),
                              manager)
done = sensor.set_strategy("period", 0.5)
assert done.done() and done.get_loop() is asyncio.get_event_loop()
manager.set_sampling_strategy.assert_called_once_with("s.x", "period 0.5")
sensor.set_value(3)
waited = sensor.wait(3)
assert waited.get_loop() is asyncio.get_event_loop()
assert asyncio.get_event_loop().run_until_complete(asyncio.wait_for(waited, 10)) is True
""")
    assert_quiet_exit(result)


def test_katcp_sensor_read_off_any_loop_takes_the_threads_loop_without_warning():
    # get_reading/get_value/get_status from a plain script's main thread (a mock manager
    # whose poll updates the sensor): their futures live on the loop made for the thread.
    # Python 3.12 and 3.13 warned (an error here) when asyncio made it for tornado.
    result = run_without_loop("""
import asyncio
from unittest import mock
from katcp import Sensor, resource
manager = mock.Mock()
sensor = resource.KATCPSensor(dict(sensor_type=Sensor.INTEGER, name="s.x", params=[0, 10]),
                              manager)
manager.poll_sensor.side_effect = lambda name: sensor.set_value(7)
for method, expected in (("get_reading", None), ("get_value", 7), ("get_status", "nominal")):
    future = getattr(sensor, method)()
    loop = asyncio.get_event_loop()
    assert future.get_loop() is loop
    result = loop.run_until_complete(asyncio.wait_for(future, 10))
    assert expected is None or result == expected, (method, result)
""")
    assert_quiet_exit(result)
