"""Comparing sensors and waiting for their transitions."""

import queue
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import tornado.ioloop
from tornado.concurrent import Future

from katcp.core import Sensor
from katcp.loop.call_queue import CallQueue
from katcp.loop.futures import set_result_if_pending
from katcp.testutils.messages import _TestCase
from katcp.wire.util import plain_callback, refuse_coroutine


class SensorComparisonMixin(_TestCase):
    """Mixin to test that katcp.Sensor objects match specified criteria (for TestCases)."""

    def assert_sensor_equal(self, actual_sensor: Sensor, desired_sensor: Sensor,
                            ignore_attributes: Sequence[str] = ()) -> None:
        """Test that two sensor objects are equal, optionally ignoring some attributes."""
        attributes = {"name", "description", "units", "stype", "params"} - set(ignore_attributes)
        for attr in sorted(attributes):
            self.assertEqual(getattr(actual_sensor, attr), getattr(desired_sensor, attr),
                             "Sensor attribute %r differs" % attr)
        if "value" not in ignore_attributes:
            self.assertEqual(actual_sensor.value(), desired_sensor.value())
        if "status" not in ignore_attributes:
            self.assertEqual(actual_sensor.status(), desired_sensor.status())

    def assert_sensor_equal_description(self, actual_sensor: Sensor,
                                        desired_description: Dict[str, Any]) -> None:
        """Test that a Sensor object (actual) matches a description (desired).

        ``desired_description`` is a dict of attribute name to value; ``value`` and
        ``status`` compare against the sensor's current reading, and ``type`` is a
        type constant such as ``Sensor.INTEGER`` (or a KATCP type name).
        """
        for attr, desired in desired_description.items():
            if attr in ("value", "status", "timestamp"):
                actual = getattr(actual_sensor.read(), attr)
            elif attr == "type":
                actual = (actual_sensor.stype if isinstance(desired, str)
                          else Sensor.parse_type(actual_sensor.stype))
            else:
                actual = getattr(actual_sensor, attr)
            self.assertEqual(actual, desired,
                             "Sensor %r attribute %r is %r, expected %r"
                             % (actual_sensor.name, attr, actual, desired))

    def assert_sensors_equal_description(self, actual_sensors: Sequence[Sensor],
                                         desired_description: Sequence[Dict[str, Any]]) -> None:
        """Test that a list of Sensor objects (actual) match a description (desired)."""
        self.assertEqual(len(actual_sensors), len(desired_description))
        for sensor, description in zip(actual_sensors, desired_description):
            self.assert_sensor_equal_description(sensor, description)

    def assert_sensors_value_conditions(self, actual_sensors: Sequence[Sensor],
                                        value_tests: Dict[str, Callable[[Any], bool]]) -> None:
        """Test that a list of Sensor objects (actual) match value_tests.

        ``value_tests`` maps sensor names to callables that return True for good values;
        an ``async def`` one, or one that returns a coroutine, raises TypeError (its
        coroutine would pass any value).
        """
        by_name = {sensor.name: sensor for sensor in actual_sensors}
        for name, test in value_tests.items():
            plain_callback(test, "value test")
            self.assertIn(name, by_name)
            value = by_name[name].value()
            passed = test(value)
            if passed:
                refuse_coroutine(passed, "value test")
            self.assertTrue(passed, "Sensor %r value %r failed its test" % (name, value))


def suppress_queue_repeats(suppressed_queue: "queue.Queue[Any]", initial_value: Any,
                           read_time: Optional[float] = None) -> Iterator[Any]:
    """Generator that reads a Queue and suppresses runs of repeated values.

    The queue is consumed, and a value yielded whenever it differs from the previous
    one, the first being compared with ``initial_value`` (which is not yielded: it is
    what the caller already has). Stops after reading for ``read_time`` seconds
    (None: reads forever).
    """
    previous = initial_value
    deadline = None if read_time is None else time.monotonic() + read_time
    while True:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            return
        try:
            value = suppressed_queue.get(timeout=timeout)
        except queue.Empty:
            return
        if value != previous:
            previous = value
            yield value


def _satisfies(expected: Any, value: Any) -> bool:
    """Whether `value` meets one element of a transition sequence."""
    if not callable(expected):
        return value == expected
    met = expected(value)
    if met:
        refuse_coroutine(met, "value_sequence element")
    return met


class SensorTransitionWaiter:
    """Wait for a given set of sensor transitions.

    Works with katcp.resource.KATCPSensor objects (sensor of a resource client, best
    thread-safe wrapped when waiting from another thread) and plain katcp.Sensor
    objects. A KATCPSensor is sampled with the ``auto`` strategy while the waiter
    watches it, so that no change is missed; :meth:`teardown` restores its strategy.

    The sequence is followed as transitions: every update must satisfy the current
    element or the next one (moving on to it); any other value ends the wait as failed.
    Updates are checked as they arrive, so quick successive changes are not lost, and
    repeated values are fine.

    Parameters
    ----------
    sensor : KATCPSensor or Sensor
        The sensor to watch.
    value_sequence : list or None
        The values (or callables returning True for a matching value) to expect in
        order, the first being what the sensor has now; None just records received
        values.

    Raises
    ------
    ValueError
        If the sensor's current value does not satisfy the first element.
    TypeError
        If an element is an ``async def`` function (its coroutine would match any value);
        one that returns a coroutine raises it when called.
    """

    def __init__(self, sensor: Any, value_sequence: Optional[Sequence[Any]] = None) -> None:
        for expected in value_sequence or ():
            if callable(expected):
                plain_callback(expected, "value_sequence element")
        self.sensor = sensor
        self.desired_value_sequence = value_sequence
        self._received_values: List[Any] = []
        self._condition = threading.Condition()
        # Index into the sequence of the element the latest value satisfied.
        self._position = 0
        self._failed = False
        self._torn_down = False
        # Bound once, so that unregistering finds the listener registered.
        self._listener = self.update
        self._original_strategy = None
        self._setup()

    def _setup(self) -> None:
        register = getattr(self.sensor, "register_listener", None)
        if register is not None:
            if hasattr(self.sensor, "set_sampling_strategy"):
                self._original_strategy = self.sensor.sampling_strategy
                self.sensor.set_sampling_strategy("auto")
            register(self._listener, reading=True)
        else:
            self.sensor.attach(self)
        current = self._current_value()
        with self._condition:
            self._received_values.append(current)
        sequence = self.desired_value_sequence
        if not sequence:
            return
        try:
            first_met = _satisfies(sequence[0], current)
        except Exception:  # a failing check (or a coroutine returned) leaves no observer
            self.teardown()
            raise
        if not first_met:
            self.teardown()
            raise ValueError("Sensor %s has value %r, which does not match the first "
                             "element of %r" % (self.sensor.name, current, sequence))

    def _current_value(self) -> Any:
        reading = getattr(self.sensor, "reading", None)
        return self._value_of(self.sensor.read() if reading is None else reading)

    @staticmethod
    def _value_of(reading: Any) -> Any:
        """What the sequence is matched against: the value of a reading."""
        return reading.value if hasattr(reading, "value") else reading[2]

    def update(self, sensor: Any, reading: Any) -> None:
        """Record a new reading: a Sensor's observer and a KATCPSensor's listener."""
        self._record(self._value_of(reading))

    def _record(self, value: Any) -> None:
        with self._condition:
            if self._received_values[-1:] != [value]:
                self._received_values.append(value)
            self._advance(value)
            self._condition.notify_all()

    def _advance(self, value: Any) -> None:
        sequence = self.desired_value_sequence
        if not sequence or self._failed or self._done():
            return
        following = self._position + 1
        if _satisfies(sequence[following], value):
            self._position = following
        elif not _satisfies(sequence[self._position], value):
            self._failed = True

    def _done(self) -> bool:
        return self._position == len(self.desired_value_sequence or ()) - 1

    def wait(self, timeout: Optional[float] = 5) -> bool:
        """Wait until the specified transition occurs.

        Returns
        -------
        done : bool
            True if the whole sequence happened within ``timeout`` seconds; False on
            timeout, on a value out of sequence, or without a sequence.
        """
        if not self.desired_value_sequence:
            return False
        with self._condition:
            self._condition.wait_for(lambda: self._failed or self._done(), timeout)
            return self._done() and not self._failed

    def get_received_values(self, stop: bool = True, reset: bool = True) -> List[Any]:
        """Return list of values received to date (runs of repeats counted once)."""
        with self._condition:
            values = list(self._received_values)
            if reset:
                self._received_values = []
        if stop:
            self.teardown()
        return values

    def teardown(self) -> None:
        """Clean up: restore sensor strategy and de-register sensor callback."""
        if self._torn_down:
            return
        self._torn_down = True
        unregister = getattr(self.sensor, "unregister_listener", None)
        if unregister is not None:
            unregister(self._listener)
            if self._original_strategy is not None:
                self.sensor.set_sampling_strategy(self._original_strategy)
        else:
            self.sensor.detach(self)


class SensorTransitionStatusWaiter(SensorTransitionWaiter):
    """Also check for sensor status transitions, not just value.

    ``value_sequence`` holds ``(value, status)`` pairs (or callables taking one).
    """

    @staticmethod
    def _value_of(reading: Any) -> Any:
        return (reading.value, reading.status)


def wait_sensor(sensor: Any, value: Any, status: Any = None, timeout: Optional[float] = 5) -> bool:
    """Wait for a katcp sensor to attain a certain value.

    Returns
    -------
    attained : bool
    """
    if status is None:
        waiter_class, wanted = SensorTransitionWaiter, value
    else:
        waiter_class, wanted = SensorTransitionStatusWaiter, (value, status)
    # Whatever the sensor has now, then the wanted value (kept by any repeats).
    waiter = waiter_class(sensor, [lambda _: True, wanted])
    try:
        if waiter._current_value() == wanted:
            return True
        return waiter.wait(timeout)
    finally:
        waiter.teardown()


def wait_sensor_async(sensor: Sensor, value: Any, status: Any = None,
                      ioloop: Optional[tornado.ioloop.IOLoop] = None) -> "Future[None]":
    """Stop-gap async sensor-wait: resolves when ``sensor`` has ``value`` (and ``status``).

    ``sensor`` is a katcp.Sensor; updates may come from any thread. A wait given up
    leaves nothing on the sensor: one cancelled (``asyncio.wait_for``) at once, one
    abandoned (``tornado.gen.with_timeout``) at the sensor's next reading after it is
    collected.
    """
    loop = ioloop or tornado.ioloop.IOLoop.current()
    future: "Future[None]" = Future()
    # Weak: the sensor would otherwise keep an abandoned wait, and its observer, for ever.
    waiting = weakref.ref(future)

    def matches(reading: Any) -> bool:
        return reading.value == value and (status is None or reading.status == status)

    class Observer:
        def update(self, sensor_: Any, reading: Any) -> None:
            wait = waiting()
            if wait is None:
                sensor.detach(self)
            elif matches(reading):
                CallQueue.of(loop).call(set_result_if_pending, wait, None)

    observer = Observer()
    sensor.attach(observer)
    future.add_done_callback(lambda _: sensor.detach(observer))
    try:
        matched = matches(sensor.read())
    except Exception as exc:
        # Failed as the tornado coroutine it was did: the future, not the call.
        sensor.detach(observer)
        future.set_exception(exc)
        return future
    if matched:
        set_result_if_pending(future, None)
    return future
