""":class:`KATCPSensor`, the mirror of one sensor of a device. Documented (and reporting
itself) as ``katcp.resource.KATCPSensor``.
"""

import collections.abc
import inspect
import logging
import types
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional, Tuple, Type, Union

import tornado.concurrent
import tornado.gen
import tornado.ioloop

from katcp.core import DEFAULT_KATCP_MAJOR, Sensor, hashable_identity
from katcp.display import sensor_repr
from katcp.loop.crossing import running_loop
from katcp.loop.futures import expire_after
from katcp.loop.policy import on_thread_ioloop, thread_ioloop
from katcp.resource.base import (KATCPSensorError, KATCPSensorReading, KATCPSensorsManager,
                                 StrategySpec, read_only)
from katcp.wire.text import as_str
from katcp.wire.util import escape_name, plain_callback, refuse_coroutine


# The logger of katcp.resource, where listener failures were always logged.
log = logging.getLogger("katcp.resource")


_NO_READING = KATCPSensorReading(0, 0, Sensor.UNKNOWN, None)
"""What a sensor reads before its first reading (immutable, so shared)."""

_NO_LISTENERS: Mapping[Any, Any] = types.MappingProxyType({})


class KATCPSensor:
    """Wrapper around a specific KATCP sensor on a given KATCP device.

    Each available KATCP sensor for a particular device has an associated
    :class:`KATCPSensor` object in the object hierarchy. This wrapper is mainly
    for interactive convenience. It provides the KATCP request help string as a
    docstring and registers listeners. Subclasses need to call the base class
    version of __init__().

    Parameters
    ----------
    sensor_description : dict
        Keyword arguments for :class:`katcp.Sensor`: ``name``, ``sensor_type``,
        ``description``, ``units`` and ``params``.
    sensor_manager : :class:`KATCPSensorsManager` instance
        Handles strategies, polling and time for this sensor.
    """

    def __init__(self, sensor_description: Dict[str, Any],
                 sensor_manager: KATCPSensorsManager) -> None:
        self._manager = sensor_manager
        self.name = as_str(sensor_description["name"])
        self._sensor_description = sensor_description
        # Made at once: a bad description fails here, where the caller can see it.
        sensor = self._sensor
        description = sensor_description.get("description")
        self.description = self.__doc__ = (
            sensor.description if description is None else as_str(description))

    # Until set otherwise: no reading yet, no katcp.Sensor made yet, and the Sensor's
    # keyword arguments taken as they are (class attributes: one less store per sensor).
    _reading = _NO_READING
    _sensor_obj: Optional[Sensor] = None
    _describe: Optional[Callable[[str, Any], Dict[str, Any]]] = None

    @property
    def _sensor(self) -> Sensor:
        """The :class:`katcp.Sensor` that knows this sensor's type: it parses readings."""
        sensor = self._sensor_obj
        if sensor is None:
            # What it is made from is kept: two threads asking at once both make an
            # equal one, neither finds its source gone.
            kwargs = self._sensor_description
            if self._describe is not None:
                kwargs = self._describe(self.name, kwargs)
            sensor = self._sensor_obj = Sensor(**kwargs)
        return sensor

    _listeners: Mapping[Any, Tuple[Callable[..., Any], bool]] = _NO_LISTENERS
    """Listeners by identity: (listener, reading) pairs; most sensors have none, and
    share this read-only empty mapping until they get one."""

    def __repr__(self) -> str:
        return sensor_repr(self, self._manager.time())

    @property
    def parent_name(self) -> Optional[str]:
        """Name of the parent of this KATCPSensor"""
        return getattr(self._manager, "resource_name", None)

    @property
    def normalised_name(self) -> str:
        """Normalised name of this KATCPSensor that can be used as a python identifier"""
        return escape_name(self.name)

    reading = read_only(
        "_reading", "Most recently received sensor reading as KATCPSensorReading instance")
    value = read_only("_reading.value", "Value of the most recently received reading.")
    status = read_only(
        "_reading.status", "Status name (e.g. 'nominal') of the most recently received reading.")
    type = read_only("_sensor.stype", "KATCP type name of the sensor, e.g. 'integer'.")
    units = read_only("_sensor.units", "Units of the sensor.")
    params = read_only(
        "_sensor.params", "Type parameters of the sensor (e.g. [min, max] or discrete values).")

    @property
    def sampling_strategy(self) -> Any:
        """Current sampling strategy"""
        return self._manager.get_sampling_strategy(self.name)

    def drop_sampling_strategy(self) -> None:
        """Drop memorised sampling strategy for sensor, if any

        Calling this method ensures that the sensor manager does not attempt
        to reapply a sampling strategy.  It will not raise an error if no strategy
        has been set.  Use :meth:`set_sampling_strategy` to memorise a strategy again.
        """
        self._manager.drop_sampling_strategy(self.name)

    def set_strategy(self, strategy: StrategySpec, params: Any = None) -> Any:
        """Set current sampling strategy for sensor.
        Add this footprint for backwards compatibility.

        Parameters
        ----------
        strategy : seq of str or str
            The strategy name, or the whole strategy as for
            :meth:`set_sampling_strategy`.
        params : seq of str or str
            The strategy's parameters, if not in `strategy`.

        Returns
        -------
        done : tornado Future
            As for :meth:`set_sampling_strategy`.
        """
        # As in 0.9 the manager gets one space-separated string, e.g. 'period 0.5'.
        words = _words((strategy, () if params is None else params))
        return self.set_sampling_strategy(" ".join(str(word) for word in words))

    def set_sampling_strategy(self, strategy: StrategySpec) -> Any:
        """Set current sampling strategy for sensor

        Parameters
        ----------
        strategy : seq of str or str
            As for :meth:`KATCPResource.set_sampling_strategy`.

        Returns
        -------
        done : tornado Future that resolves when done or raises KATCPSensorError
        """
        return self._set_sampling_strategy(strategy)

    @on_thread_ioloop
    @tornado.gen.coroutine
    def _set_sampling_strategy(self, strategy: StrategySpec) -> Generator[Any, Any, Any]:
        result = self._manager.set_sampling_strategy(self.name, strategy)
        if tornado.gen.is_future(result) or inspect.isawaitable(result):
            result = yield result
        # Managers report (success, info); a failure becomes the documented error.
        if isinstance(result, tuple) and len(result) == 2 and result[0] is False:
            info = result[1]
            if isinstance(info, tuple) and len(info) == 3:
                info = info[1]
            raise KATCPSensorError("Error setting strategy %r for sensor %s: %s"
                                   % (strategy, self.name, info))
        return result

    def register_listener(self, listener: Callable[..., Any], reading: bool = False) -> None:
        """Add a callback function that is called when sensor value is updated.

        Parameters
        ----------
        listener : function
            Called as ``listener(received_timestamp, timestamp, status, value)``, or
            with `reading` as ``listener(katcp_sensor, reading)``, where
            `katcp_sensor` is this KATCPSensor and `reading` a
            :class:`KATCPSensorReading`.
        reading : bool, optional
            Selects the callback signature, see above.

        Raises
        ------
        TypeError
            If `listener` is an ``async def`` function (its coroutines would never run).
        """
        plain_callback(listener, "listener")
        if self._listeners is _NO_LISTENERS:
            self._listeners = {}
        self._listeners[hashable_identity(listener)] = (  # type: ignore[index]
            listener, reading)

    def unregister_listener(self, listener: Callable[..., Any]) -> None:
        """Remove a listener callback added with register_listener()."""
        if self._listeners:
            self._listeners.pop(hashable_identity(listener), None)  # type: ignore[attr-defined]

    def is_listener(self, listener: Callable[..., Any]) -> bool:
        """True if `listener` is registered on this sensor."""
        return hashable_identity(listener) in self._listeners

    def clear_listeners(self) -> None:
        """Clear any registered listeners to updates from this sensor."""
        self._listeners = _NO_LISTENERS

    def call_listeners(self, reading: KATCPSensorReading) -> None:
        """Call every registered listener with `reading`, logging their errors."""
        if not self._listeners:
            return
        for listener, use_reading in list(self._listeners.values()):
            try:
                if use_reading:
                    listener(self, reading)
                else:
                    listener(reading.received_timestamp, reading.timestamp,
                             reading.status, reading.value)
            except Exception:
                log.exception("Unhandled exception calling KATCPSensor listener %r for "
                              "sensor %s", listener, self.name)

    def set(self, timestamp: float, status: int, value: Any) -> None:
        """Set sensor with a given received value, matches :meth:`katcp.Sensor.set`"""
        reading = KATCPSensorReading(self._manager.time(), timestamp, status, value)
        self._reading = reading
        self.call_listeners(reading)

    def set_value(self, value: Any, status: int = Sensor.NOMINAL,
                  timestamp: Optional[float] = None) -> None:
        """Set sensor value with optinal specification of status and timestamp"""
        if timestamp is None:
            timestamp = self._manager.time()
        self.set(timestamp, status, value)

    def set_formatted(self, raw_timestamp: bytes, raw_status: bytes, raw_value: bytes,
                      major: int = DEFAULT_KATCP_MAJOR) -> None:
        """Set sensor using KATCP string formatted inputs

        Mirrors :meth:`katcp.Sensor.set_formatted`: the reading is parsed for this
        sensor's type and passed to :meth:`set`.
        """
        self.set(*self._sensor.parse_reading(raw_timestamp, raw_status, raw_value, major))

    def parse_value(self, s_value: Union[str, bytes]) -> Any:
        """Parse a value from a string: as :meth:`katcp.Sensor.parse_value`."""
        if isinstance(s_value, str):
            s_value = s_value.encode("utf-8")
        return self._sensor.parse_value(s_value)

    @on_thread_ioloop
    @tornado.gen.coroutine
    def get_reading(self) -> Generator[Any, Any, KATCPSensorReading]:
        """Get a fresh sensor reading from the KATCP resource

        Returns
        -------
        reply : tornado Future resolving with  :class:`KATCPSensorReading` object

        Notes
        -----
        As a side-effect this will update the reading stored in this object, and result
        in registered listeners being called.
        """
        yield self._manager.poll_sensor(self.name)
        return self._reading

    @on_thread_ioloop
    @tornado.gen.coroutine
    def get_value(self) -> Generator[Any, Any, Any]:
        """Get a fresh sensor value from the KATCP resource: as :meth:`get_reading`,
        resolving with the reading's value."""
        reading = yield self.get_reading()
        return reading.value

    @on_thread_ioloop
    @tornado.gen.coroutine
    def get_status(self) -> Generator[Any, Any, str]:
        """Get a fresh sensor status from the KATCP resource: as :meth:`get_reading`,
        resolving with the reading's status name."""
        reading = yield self.get_reading()
        return reading.status

    def wait(self, condition_or_value: Any, timeout: Optional[float] = None) -> Any:
        """Wait for the sensor to satisfy a condition.

        Parameters
        ----------
        condition_or_value : obj or callable, or seq of objs or callables
            If obj, sensor.value is compared with obj. If callable,
            condition_or_value(reading) is called, and must return True if its
            condition is satisfied. Since the reading is passed in, the value,
            status, timestamp or received_timestamp attributes can all be used
            in the check.
        timeout : float or None
            The timeout in seconds (None means wait forever)

        Returns
        -------
        This command returns a tornado Future that resolves with True when the
        sensor value satisfies the condition. It will never resolve with False;
        if a timeout is given a TimeoutError happens instead.

        Raises
        ------
        :class:`KATCPSensorError`
            If the sensor does not have a strategy set
        :class:`tornado.gen.TimeoutError`
            If the sensor condition still fails after a stated timeout period
        TypeError
            If the condition is an ``async def`` function (its coroutine is no answer);
            the future fails with it if the condition returns a coroutine
        """
        if isinstance(condition_or_value, collections.abc.Sequence) and not isinstance(
                condition_or_value, (str, bytes)):
            raise NotImplementedError("Currently only single conditions are supported")
        if callable(condition_or_value):
            condition_test = plain_callback(condition_or_value, "condition")
        else:
            def condition_test(reading: Any) -> bool:
                return reading.value == condition_or_value

        if self.sampling_strategy == ("none",):
            raise KATCPSensorError("Cannot wait on sensor %s since it does not have a "
                                   "strategy set" % self.name)
        loop = running_loop()
        if loop is None:
            # Called off any loop: the future lives on the thread's loop, made here if
            # there is none rather than by asyncio (deprecated on Python 3.12+).
            loop = thread_ioloop().asyncio_loop  # type: ignore[attr-defined]
        future: "tornado.concurrent.Future[bool]" = loop.create_future()

        def handle_update(sensor: Any, reading: Any) -> None:
            if future.done():
                return
            try:
                met = condition_test(reading)
                if met:
                    refuse_coroutine(met, "condition")
                    # At once, for whoever looks before the loop turns.
                    self.unregister_listener(handle_update)
                    future.set_result(True)
            except Exception as exc:
                self.unregister_listener(handle_update)
                future.set_exception(exc)

        self.register_listener(handle_update, reading=True)
        # However the wait ends (met, failed, timed out or cancelled by a caller that
        # gave up on it), its listener goes with it.
        future.add_done_callback(lambda _: self.unregister_listener(handle_update))
        # The current reading may already satisfy the condition.
        tornado.ioloop.IOLoop.current().add_callback(handle_update, self, self._reading)
        if timeout:
            expire_after(future, timeout)
        return future


def mirror_maker(sensor_manager: KATCPSensorsManager,
                 describe: Optional[Callable[[str, Any], Dict[str, Any]]] = None,
                 cls: Type[KATCPSensor] = KATCPSensor) -> Callable[[str, Any], KATCPSensor]:
    """``mirror(name, source)``: a :class:`KATCPSensor` (of class `cls`) of a device's
    model, whose :class:`katcp.Sensor` is made on first use; one function for many
    sensors of one manager (a resource's sync makes hundreds of them at once).

    A client resource mirrors every sensor of its device but reads or watches few
    of them, so the rest never pay for their type-aware parser. The keyword
    arguments of that Sensor are `source`, or ``describe(name, source)`` if given
    (e.g. parsed from the device's ``#sensor-list`` inform only then). `name` and
    ``source.get('description')`` are text; without a description the Sensor's
    default is taken.
    """
    new = cls.__new__

    def mirror(name: str, source: Any) -> KATCPSensor:
        sensor = new(cls)
        sensor._manager = sensor_manager
        sensor.name = name
        # What the katcp.Sensor is made from (when first needed).
        sensor._sensor_description = source
        sensor._describe = describe
        description = source.get("description")
        sensor.description = sensor.__doc__ = (
            sensor._sensor.description if description is None else description)
        return sensor

    return mirror


def _words(params: Any) -> List[Any]:
    """Flatten strings (split on whitespace) and nested sequences into one list."""
    params = as_str(params)
    if isinstance(params, str):
        return params.split()
    if isinstance(params, collections.abc.Iterable):
        return [word for param in params for word in _words(param)]
    return [params]
