"""The parts a client resource is built from: its inspecting client, requests and sensors.

:class:`ReplyWrappedInspectingClientAsync` talks to the device,
:class:`KATCPClientResourceRequest` wraps one of its requests and
:class:`KATCPClientResourceSensorsManager` sets, remembers and reapplies the sampling
strategies of its sensors.
"""

import collections
import functools
import logging
import re
import sys
from typing import (Any, Callable, Dict, Generator, Iterable, List, Optional, Pattern,
                    Tuple)

import tornado.gen

from katcp import resource
from katcp.core import Message
from katcp.inspecting_client import InspectingClientAsync
from katcp.loop.futures import windowed
from katcp.resource import (KATCPReply, KATCPSensorError, StrategyResult, StrategySpec,
                            escape_name)
from katcp.resource.base import STRATEGY_WINDOW
from katcp.resource.sensor import mirror_maker
from katcp.wire.util import transform_future, transformed_future

# The package's logger: the one 0.9 logged to.
log = logging.getLogger("katcp.resource_client")

_NONE_STRATEGY: Tuple[str, ...] = ("none",)


class ReplyWrappedInspectingClientAsync(InspectingClientAsync):
    """Adds wrapped_request() method that wraps reply in a KATCPReply"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One bound method for all the sensors that keep it until first use.
        self._describe_sensor = self._sensor_description

    def _sensor_maker(self) -> Callable[[str, Dict[str, Any]], Any]:
        factory = self.sensor_factory
        if getattr(factory, "__func__", None) is KATCPClientResourceSensorsManager.sensor_factory:
            # A resource's own factory, neither replaced nor overridden: its sensors
            # parse the device's description only when first used.
            manager: KATCPClientResourceSensorsManager = factory.__self__  # type: ignore
            return manager.mirror_maker(self._describe_sensor)
        return super()._make_sensor

    def _make_sensor(self, name: str, info: Dict[str, Any]) -> Any:
        return self._sensor_maker()(name, info)

    @staticmethod
    def reply_wrapper(x: Tuple[Message, List[Message]]) -> KATCPReply:
        """Turn a ``(reply, informs)`` tuple into a :class:`KATCPReply`."""
        return KATCPReply(*x)

    def wrapped_request(self, request: str, *args: Any, timeout: Optional[float] = None,
                        mid: Optional[int] = None, use_mid: Optional[bool] = None) -> Any:
        """Create and send a request to the server: as :meth:`simple_request`, but
        resolving with the reply wrapped by :meth:`reply_wrapper` (a
        :class:`katcp.resource.KATCPReply`)."""
        return transformed_future(self.reply_wrapper, self.simple_request(
            request, *args, timeout=timeout, mid=mid, use_mid=use_mid))


class KATCPClientResourceRequest(resource.KATCPRequest):
    """Callable wrapper around a KATCP request

    Parameters
    ----------
    request_description : dict
        ``name``, ``description`` and ``timeout_hint`` of the request.
    client : :class:`ReplyWrappedInspectingClientAsync` or similar
        Provides ``wrapped_request()``.
    is_active : callable, optional
        Returns True if the owning resource is active.
    """

    def __init__(self, request_description: Dict[str, Any], client: Any,
                 is_active: Callable[[], bool] = lambda: True) -> None:
        self._client = client
        super().__init__(request_description, is_active)

    def issue_request(self, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
        """Issue the wrapped request to the server.

        As :meth:`ReplyWrappedInspectingClientAsync.wrapped_request` with this request's
        name; a `timeout` of None uses the request's :attr:`timeout_hint`. The other
        keyword arguments (`mid`, `use_mid`) are passed on only if given, as in 0.9.3.
        """
        if timeout is None:
            timeout = self.timeout_hint
        return self._client.wrapped_request(self.name, *args, timeout=timeout, **kwargs)


class _StrategyWishes:
    """The sampling strategies asked for on one resource: the one home of these wishes.

    A wish is for one sensor (by escaped name) or for every sensor whose escaped name
    matches a filter. Whichever way it was made (the resource, its sensors manager, a
    sensor object), the latest wish that covers a sensor is what it gets when it
    appears again or the device reconnects; a dropped one means none.
    """

    def __init__(self) -> None:
        self._made = 0  # wishes made so far: a wish's number orders it
        self._by_sensor: Dict[str, Tuple[int, Optional[Tuple[str, ...]]]] = {}
        self._by_filter: Dict[str, Tuple[int, Pattern[str], Tuple[str, ...]]] = {}

    def __bool__(self) -> bool:
        return bool(self._by_sensor or self._by_filter)

    def _number(self) -> int:
        self._made += 1
        return self._made

    def wish(self, sensor_name: str, strategy: Optional[Tuple[str, ...]]) -> int:
        """Wish normalised `strategy` for a sensor (KATCP or escaped name); None drops it.

        Returns
        -------
        number : int
            The wish's number (see :meth:`is_latest`); 0 for a drop that only forgot.
        """
        escaped_name = escape_name(sensor_name)
        if strategy is None and not any(regex.search(escaped_name)
                                        for _, regex, _ in self._by_filter.values()):
            # No older filter wish to overrule: forgetting is enough.
            self._by_sensor.pop(escaped_name, None)
            return 0
        number = self._number()
        self._by_sensor[escaped_name] = (number, strategy)
        return number

    def wish_filter(self, filter: str, strategy: Tuple[str, ...]) -> int:
        """Wish normalised `strategy` for the sensors whose escaped names match `filter`;
        returns the wish's number (see :meth:`is_latest`)."""
        regex = re.compile(filter)
        number = self._number()
        self._by_filter[filter] = (number, regex, strategy)
        return number

    def _latest(self, escaped_name: str) -> Tuple[int, Optional[Tuple[str, ...]]]:
        """Number and strategy of the latest wish covering the sensor ((0, None): none)."""
        number, strategy = self._by_sensor.get(escaped_name, (0, None))
        # A snapshot: a sensor's sampling_strategy may be read off the loop (through a
        # thread-safe wrapper) while the loop adds a filter.
        for filter_number, regex, filter_strategy in tuple(self._by_filter.values()):
            if filter_number > number and regex.search(escaped_name):
                number, strategy = filter_number, filter_strategy
        return number, strategy

    def for_sensor(self, escaped_name: str) -> Optional[Tuple[str, ...]]:
        """The strategy of the latest wish covering the sensor, or None."""
        return self._latest(escaped_name)[1]

    def is_latest(self, escaped_name: str, number: int) -> bool:
        """True if wish `number` is still the latest covering the sensor: no wish made
        since covers it (nor drops it)."""
        return self._latest(escaped_name)[0] == number


class KATCPClientResourceSensorsManager(resource.KATCPSensorsManager):
    """Implementation of KATSensorsManager ABC for a directly-connected client

    Assumes that all methods are called from the same ioloop context

    Parameters
    ----------
    inspecting_client : :class:`ReplyWrappedInspectingClientAsync` or similar
    resource_name : str
        Name of the resource owning the sensors (their ``parent_name``).
    logger : :class:`logging.Logger`, optional
    """

    def __init__(self, inspecting_client: Any, resource_name: str,
                 logger: Optional[logging.Logger] = log) -> None:
        self._inspecting_client = inspecting_client
        self.resource_name = resource_name
        self._logger = log if logger is None else logger
        # The wishes: a resource gives each manager it makes its own, which outlive them.
        self._wishes = _StrategyWishes()
        # What the wishes give each sensor the device has (or had), keyed by KATCP name:
        # reapplied after each sync.
        self._strategy_cache: Dict[str, Tuple[str, ...]] = {}

    def sensor_factory(self, **sensor_description: Any) -> resource.KATCPSensor:
        """Create the :class:`katcp.resource.KATCPSensor` the inspecting client uses.

        Its :class:`katcp.Sensor` (the parser of its readings) is made on first use.
        """
        return self._mirror_maker()(sensor_description["name"], sensor_description)

    def mirror_sensor(self, name: str, info: Any,
                      describe: Callable[[str, Any], Dict[str, Any]]) -> resource.KATCPSensor:
        """The sensor :meth:`sensor_factory` would make, from unparsed `info`.

        Parameters
        ----------
        name : str
            KATCP name of the sensor.
        info : dict
            What the device says of it (its ``description`` key as text), kept until
            the sensor is first used.
        describe : callable
            ``describe(name, info)`` gives the keyword arguments of
            :meth:`sensor_factory`; called on first use.
        """
        return self.mirror_maker(describe)(name, info)

    def mirror_maker(self, describe: Callable[[str, Any], Dict[str, Any]]
                     ) -> Callable[[str, Any], resource.KATCPSensor]:
        """:meth:`mirror_sensor` as a function of ``(name, info)``, for many sensors.

        Parameters
        ----------
        describe : callable
            ``describe(name, info)`` gives the keyword arguments of
            :meth:`sensor_factory`; called on a sensor's first use.

        Returns
        -------
        mirror : callable
            ``mirror(name, info)``, as ``mirror_sensor(name, info, describe)``; one
            function serves a whole sync.
        """
        return self._mirror_maker(describe)

    def _mirror_maker(self, describe: Optional[Callable[[str, Any], Dict[str, Any]]] = None
                      ) -> Callable[[str, Any], resource.KATCPSensor]:
        # Of the class katcp.resource has when called, where 0.9's sensor_factory (and
        # so a test's patch) found it.
        return mirror_maker(self, describe, resource.KATCPSensor)

    def _get_strategy_cache_key(self, sensor_name: str) -> str:
        if sensor_name in self._strategy_cache:
            return sensor_name
        escaped_name = escape_name(sensor_name)
        for key in self._strategy_cache:
            if escape_name(key) == escaped_name:
                return key
        return sensor_name

    def get_sampling_strategy(self, sensor_name: str) -> Tuple[str, ...]:
        """As :meth:`katcp.resource.KATCPSensorsManager.get_sampling_strategy`: the
        strategy of the latest wish covering the sensor, ``('none',)`` if none.

        A filter's wish counts from its call, before its turn to set this sensor comes
        (0.9.3 set the first sensor a filter matched within the call), so that a wait
        made at once finds the strategy set.
        """
        return self._wishes.for_sensor(escape_name(sensor_name)) or _NONE_STRATEGY

    def cache_sampling_strategy(self, sensor_name: str, strategy_and_params: StrategySpec) -> None:
        """Memorise a strategy to be applied by the next :meth:`reapply_sampling_strategies`.

        Parameters
        ----------
        sensor_name : str
            KATCP name of the sensor.
        strategy_and_params : seq of str or str
            Strategy as for :meth:`set_sampling_strategy`.
        """
        self._wish(sensor_name, resource.normalize_strategy_parameters(strategy_and_params))

    def _wish(self, sensor_name: str, strategy: Optional[Tuple[str, ...]]) -> None:
        """Every wish made through this manager: recorded, and given to the sensor."""
        self._wishes.wish(sensor_name, strategy)
        if strategy is None:
            self._strategy_cache.pop(self._get_strategy_cache_key(sensor_name), None)
        else:
            self._strategy_cache[sensor_name] = strategy

    def _sensor_appeared(self, sensor_name: str) -> None:
        """A sensor the device added (again) gets what the wishes give it now."""
        strategy = self._wishes.for_sensor(escape_name(sensor_name))
        if strategy is None:
            self._strategy_cache.pop(sensor_name, None)
        else:
            self._strategy_cache[sensor_name] = strategy

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name: str, strategy_and_params: StrategySpec
                              ) -> Generator[Any, Any, StrategyResult]:
        """Set the sampling strategy for the named sensor

        Resolves with ``(success, info)`` as for one sensor of
        :meth:`katcp.resource.KATCPResource.set_sampling_strategy`.
        """
        try:
            normalised = resource.normalize_strategy_parameters(strategy_and_params)
            self._wish(sensor_name, normalised)
            reply = yield self._inspecting_client.wrapped_request(
                "sensor-sampling", sensor_name, *normalised)
            if not reply.succeeded:
                # repr(): the reply's readable form, without wire escapes.
                raise KATCPSensorError("Error setting strategy for sensor %s:\n%r"
                                       % (sensor_name, reply))
        except Exception:
            return (False, sys.exc_info())
        return (True, normalised)

    def drop_sampling_strategy(self, sensor_name: str) -> None:
        self._wish(sensor_name, None)

    @tornado.gen.coroutine
    def reapply_sampling_strategies(self) -> Generator[Any, Any, None]:
        """Reapply all sensor strategies using cached values

        Strategies of sensors the device does not (or no longer) have are kept in the
        cache but not sent. Failures are logged, not raised: each sensor ends with its
        strategy or with an error logged for it, with or without bulk sampling (see
        :meth:`_send_strategies`), unless the connection is lost meanwhile: the rest is
        then left to the next connection's sync, which reapplies them all.
        """
        if not self._strategy_cache:
            # Nothing to send: no list of the device's sensors made (a resource's sync
            # comes here with thousands of them and, most often, no strategy).
            return
        known_sensors = set(self._inspecting_client.sensors)
        by_strategy: Dict[Tuple[str, ...], List[str]] = collections.defaultdict(list)
        for name, strategy in self._strategy_cache.items():
            if name in known_sensors:
                by_strategy[strategy].append(name)
        if by_strategy:
            yield self._send_strategies(by_strategy)

    @tornado.gen.coroutine
    def _send_strategies(self, by_strategy: Dict[Tuple[str, ...], List[str]]
                         ) -> Generator[Any, Any, None]:
        """Send strategies for several sensors each, as many requests as needed.

        The one place that decides between a bulk request and one per sensor: with
        the device's BULK_SET_SENSOR_SAMPLING flag (KATCP v5.1) the sensors of a
        strategy share a ``?sensor-sampling a,b,c`` request, else each has its own. A
        bulk request is atomic (the strategy is set for all or for none), so one sensor
        that rejects the strategy would cost all the others theirs; a failed bulk
        request is therefore retried one sensor at a time, which ends as the per-sensor
        path does. The requests are pipelined a few at a time (as by
        :meth:`katcp.resource.KATCPResource.set_sampling_strategies`).

        Parameters
        ----------
        by_strategy : dict
            KATCP names of the sensors (list of str) by normalised strategy and
            parameters (tuple of str, see
            :func:`katcp.resource.normalize_strategy_parameters`).

        Returns
        -------
        done : tornado Future
            Resolves with None once every request is answered. Nothing is raised and
            the cache is left as it is: each sensor whose strategy could not be set
            is logged as an error, unless the connection was lost meanwhile (the next
            one's sync reapplies them all).
        """
        flags = self._inspecting_client.katcp_client.protocol_flags
        bulk = flags is not None and flags.bulk_set_sensor_sampling
        lost = self._connection_lost()
        shared: List[Tuple[List[str], Tuple[str, ...]]] = []
        singles: List[Tuple[str, Tuple[str, ...]]] = []
        for strategy, names in by_strategy.items():
            if bulk and len(names) > 1:
                shared.append((names, strategy))
            else:
                singles.extend((name, strategy) for name in names)
        problems = yield self._request_samplings(
            (",".join(names), strategy) for names, strategy in shared)
        for (names, strategy), problem in zip(shared, problems):
            if problem is not None:
                # Not an error yet: the retry below logs each sensor that really fails.
                self._logger.debug("Bulk strategy %r failed for sensors %s (%s); retrying "
                                   "one sensor at a time", strategy, ",".join(names), problem)
                singles.extend((name, strategy) for name in names)
        problems = yield self._request_samplings(singles)
        if lost():
            # One line, not an error per sensor: their strategies are not lost.
            self._logger.info("Connection of %s lost while reapplying sampling "
                              "strategies; the next connection's sync reapplies them",
                              self.resource_name)
            return
        for (name, strategy), problem in zip(singles, problems):
            if problem is not None:
                # Errors are only logged: one bad strategy must not stop the resync.
                self._logger.error("Error reapplying strategy %r for sensors %s: %s",
                                   strategy, name, problem)

    def _connection_lost(self) -> Callable[[], bool]:
        """``lost()``: whether the inspecting client's current connection has ended
        (or been replaced) since this call."""
        client = self._inspecting_client
        # An inspecting client from a user's factory may not count its connections.
        connection = getattr(client, "connection_count", None)
        return lambda: (not client.is_connected()
                        or getattr(client, "connection_count", None) != connection)

    def _request_samplings(self, requests: Iterable[Tuple[str, Tuple[str, ...]]]) -> Any:
        """A future of what :meth:`_request_sampling` resolves with for each of
        `requests` (``(names, strategy)``), in their order, pipelined a few at a time."""
        return windowed([functools.partial(self._request_sampling, names, strategy)
                         for names, strategy in requests], STRATEGY_WINDOW)

    @tornado.gen.coroutine
    def _request_sampling(self, names: str, strategy: Tuple[str, ...]
                          ) -> Generator[Any, Any, Any]:
        """Send ``?sensor-sampling names strategy``; resolves with None if it succeeded,
        else with what went wrong (the reply's readable form or the exception)."""
        try:
            reply = yield self._inspecting_client.wrapped_request(
                "sensor-sampling", names, *strategy)
        except Exception as exc:
            return exc
        # repr(): the reply's readable form, without wire escapes.
        return None if reply.succeeded else repr(reply)

    @tornado.gen.coroutine
    def poll_sensor(self, sensor_name: str) -> Generator[Any, Any, None]:
        reply = yield self._inspecting_client.wrapped_request("sensor-value", sensor_name)
        if not reply.succeeded:
            raise KATCPSensorError("Error polling sensor %s:\n%r" % (sensor_name, reply))
