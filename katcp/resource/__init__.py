"""A high-level abstract interface to KATCP clients, sensors and requests."""

import abc
import functools
import logging
import sys
from typing import Any, Callable, Dict, Generator, Optional, Tuple

import tornado.concurrent
import tornado.gen
import tornado.ioloop

from katcp._export import forward_patches, keep_home
from katcp.core import Message
from katcp.display import (KATCPReply, did_you_mean, object_repr, request_docstring,
                           request_repr, resource_html)
# Public in their own modules, not part of this documented one.
from katcp.loop.futures import expire_after as _expire_after
from katcp.loop.futures import failed_future as _failed_future
from katcp.loop.futures import windowed as _windowed
# The basics and the sensor mirror live in submodules, documented (and reporting
# themselves) here.
from katcp.resource.base import (KATCPResourceError, KATCPResourceInactive, KATCPSensorError,
                                 KATCPSensorReading, KATCPSensorsManager, SensorResultTuple,
                                 StrategyResult, StrategySpec, normalize_strategy_parameters)
from katcp.resource.base import STRATEGY_WINDOW as _STRATEGY_WINDOW
from katcp.resource.sensor import KATCPSensor
from katcp.wire.util import escape_name

log = logging.getLogger(__name__)

# KATCPReply is defined with the display code; documented (and pickled) here.
keep_home(__name__, KATCPReply, KATCPResourceError, KATCPResourceInactive, KATCPSensorError,
          KATCPSensorReading, KATCPSensorsManager, SensorResultTuple, escape_name,
          normalize_strategy_parameters, KATCPSensor)

__all__ = ["escape_name", "normalize_strategy_parameters", "KATCPResourceError",
           "KATCPResourceInactive", "KATCPSensorError", "KATCPResource", "KATCPRequest",
           "KATCPDummyRequest", "KATCPReply", "KATCPSensorReading", "KATCPSensorsManager",
           "KATCPSensor", "SensorResultTuple"]


class KATCPResource(abc.ABC):
    """Base class to serve as the definition of the KATCPResource API.

    A class `C` implementing the KATCPResource API should register itself using
    `KATCPResource.register(C)` or subclass KATCPResource directly. A complication
    involved with subclassing is that all the abstract properties must be
    implemented as properties; normal instance attributes cannot be used.

    Resources form a hierarchy: :attr:`children` holds subordinate resources and
    :attr:`parent` points back up. A resource may also expose the requests and sensors
    of its children in its own :attr:`req` and :attr:`sensor` namespaces, prefixed with
    the child's name.
    """

    def __init__(self) -> None:
        self._active = True

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Name of this KATCP resource."""

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Description of this KATCP resource."""

    @property
    @abc.abstractmethod
    def address(self) -> Optional[Tuple[str, int]]:
        """Address of the underlying client/device.

        Type: tuple(host, port) or None, with host a string and port an integer.

        If this KATCPResource is not associated with a specific KATCP device
        (e.g. it is only a top-level container for a hierarchy of KATCP
        resources), the address should be None.
        """

    @property
    @abc.abstractmethod
    def is_connected(self) -> Any:
        """Indicate whether the underlying client/device is connected or not."""

    @property
    @abc.abstractmethod
    def req(self) -> Any:
        """Attribute root/container for all KATCP request wrappers.

        Each KATCP request that is exposed on a KATCP device should have a
        corresponding :class:`KATCPRequest` object so that calling

          `resource.req.request_name(arg1, arg2, ...)`

        sends a '?request-name arg1 arg2 ...' message to the KATCP device and
        waits for the associated inform-reply and reply messages.

        For a :class:`KATCPResource` object that exposes a hierarchical device
        it can choose to include lower-level request handlers here such that
        `resource.req.dev_request()` maps to `resource.dev.req.request()`.
        """

    @property
    @abc.abstractmethod
    def sensor(self) -> Any:
        """Attribute root/container for all KATCP sensor wrappers.

        Each KATCP sensor that is exposed on a KATCP device should have a
        corresponding :class:`KATCPSensor` object so that

          `resource.sensor.sensor_name`

        corresponds to a sensor named e.g. 'sensor-name', where the object or
        attribute name is an escaped/Pythonised version of the original sensor
        name (see :func:`escape_name` for the escape mechanism). Hopefully the
        device is not crazy enough to have multiple sensors that map to the
        same Python identifier.

        A :class:`KATCPResource` object that exposes a hierarchical device can
        choose to include lower-level sensors here such that
        `resource.sensor.dev_sensorname` maps to
        `resource.dev.sensor.sensorname`.
        """

    @property
    @abc.abstractmethod
    def parent(self) -> Optional["KATCPResource"]:
        """Parent KATCPResource object of this subordinate resource, or None."""

    @property
    @abc.abstractmethod
    def children(self) -> Any:
        """AttrDict of subordinate KATCPResource objects keyed by their names."""

    def is_active(self) -> bool:
        """True if this resource is active (requests may be made)."""
        return self._active

    def set_active(self, active: bool) -> None:
        """Mark this resource and all its children active or inactive.

        Parameters
        ----------
        active : bool
            Requests on an inactive resource raise :class:`KATCPResourceInactive`.
        """
        self._active = bool(active)
        for child in dict.values(self.children):
            child.set_active(active)

    def wait(self, sensor_name: str, condition_or_value: Any,
             timeout: Optional[float] = 5) -> Any:
        """Wait for a sensor in this resource to satisfy a condition.

        Parameters
        ----------
        sensor_name : string
            The name of the sensor to check
        condition_or_value : obj or callable, or seq of objs or callables
            As for :meth:`KATCPSensor.wait`.
        timeout : float or None
            The timeout in seconds (None means wait forever)

        Returns
        -------
        This command returns a tornado Future that resolves with True when the
        sensor value satisfies the condition, or False if the condition is
        still not satisfied after a given timeout period. Cancelling it ends the
        wait and removes its sensor listener.

        Raises
        ------
        :class:`KATCPSensorError`
            If the sensor does not have a strategy set, or if the named sensor
            is not present
        """
        try:
            # The sensor's own wait and future, without its timeout error: cancelling
            # it takes the listener away in one step, with no futures in between.
            waiting = tornado.gen.convert_yielded(
                self._sensor_named(sensor_name).wait(condition_or_value))
        except Exception as exc:
            return _failed_future(exc)  # as from the coroutine this was in 0.9
        if timeout:
            _expire_after(waiting, timeout, False)
        return waiting

    def _sensor_named(self, sensor_name: str) -> "KATCPSensor":
        sensor = dict.get(self.sensor, escape_name(sensor_name))
        if sensor is None:
            raise KATCPSensorError("Sensor %r is not present on resource %r%s" % (
                escape_name(sensor_name), self.name, did_you_mean(sensor_name, self.sensor)))
        return sensor

    @abc.abstractmethod
    def list_sensors(self, filter: str = "", strategy: bool = False, status: str = "",
                     use_python_identifiers: bool = True, tuple: bool = False,
                     refresh: bool = False) -> Any:
        """List sensors available on this resource matching certain criteria.

        Parameters
        ----------
        filter : string, optional
            Filter each returned sensor's name against this regexp if specified.
            To ease the dichotomy between Python identifier names and actual
            sensor names, the default is to search on Python identifier names
            rather than KATCP sensor names, unless `use_python_identifiers`
            below is set to False. Note that the sensors of subordinate
            KATCPResource instances may have inconsistent names and Python
            identifiers, better to always search on Python identifiers in this
            case.
        strategy : {False, True}, optional
            Only list sensors with a set strategy if True
        status : string, optional
            Filter each returned sensor's status against this regexp if given
        use_python_identifiers : {True, False}, optional
            Match on python identifiers even the the KATCP name is available.
        tuple : {True, False}, optional, Default: False
            Return backwards compatible tuple instead of SensorResultTuples
        refresh : {True, False}, optional, Default: False
            If set the sensor values will be refreshed with get_value before
            returning the results.

        Returns
        -------
        sensors : list of SensorResultTuples, or list of tuples
            List of matching sensors presented as named tuples. The `object`
            field is the :class:`KATCPSensor` object associated with the sensor.
            Note that the name of the object may not match `name` if it
            originates from a subordinate device.
        """

    @tornado.gen.coroutine
    def set_sampling_strategies(self, filter: str, strategy_and_params: StrategySpec,
                                **list_sensor_args: Any
                                ) -> Generator[Any, Any, Dict[str, StrategyResult]]:
        """Set a sampling strategy for all sensors that match the specified filter.

        Parameters
        ----------
        filter : string
            The regular expression filter to use to select the sensors to which
            to apply the specified strategy.  Use "" to match all sensors. Is
            matched using :meth:`list_sensors`.
        strategy_and_params : seq of str or str
            As for :meth:`set_sampling_strategy`.
        **list_sensor_args : keyword arguments
            Passed to the :meth:`list_sensors` call as kwargs

        Returns
        -------
        sensors_strategies : tornado Future
            As for :meth:`set_sampling_strategy`, with an item for each sensor matched.

        Notes
        -----
        The requests are pipelined, a few at a time: each one's timeout then counts only
        its own handling, not the wait behind all the others at the device.
        """
        set_one = self._filter_strategy_setter(filter, strategy_and_params)
        sensors = yield self.list_sensors(filter, **list_sensor_args)
        results = yield _windowed(
            [functools.partial(set_one, result.python_identifier) for result in sensors],
            _STRATEGY_WINDOW)
        return {key: value for result in results for key, value in result.items()}

    def _filter_strategy_setter(self, filter: str, strategy_and_params: StrategySpec
                                ) -> Callable[[str], Any]:
        """How :meth:`set_sampling_strategies` sets each sensor it matched, in its turn
        (a few at a time, so maybe loop turns after the call): got once, in the call.

        Returns
        -------
        set_one : callable
            ``set_one(sensor_name)`` returns what :meth:`set_sampling_strategy` does.
        """
        return lambda sensor_name: self.set_sampling_strategy(sensor_name,
                                                              strategy_and_params)

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name: str, strategy_and_params: StrategySpec
                              ) -> Generator[Any, Any, Dict[str, StrategyResult]]:
        """Set a sampling strategy for a specific sensor.

        Parameters
        ----------
        sensor_name : string
            The specific sensor.
        strategy_and_params : seq of str or str
            As tuple contains (<strat_name>, [<strat_parm1>, ...]) where the
            strategy names and parameters are as defined by the KATCP spec. As
            str contains the same elements in space-separated form.

        Returns
        -------
        sensors_strategies : tornado Future
            resolves with a dict with the Python identifier names of the sensors
            as keys and the value a tuple:

            (success, info) with

            success : bool
                True if setting succeeded for this sensor, else False
            info : tuple
                normalised sensor strategy and parameters as tuple if
                success == True else, sys.exc_info() tuple for the error that
                occurred.
        """
        try:
            sensor_obj = self._sensor_named(sensor_name)
            yield sensor_obj.set_sampling_strategy(strategy_and_params)
            result: StrategyResult = (True, sensor_obj.sampling_strategy)
        except Exception:
            result = (False, sys.exc_info())
        return {escape_name(sensor_name): result}

    def __repr__(self) -> str:
        return object_repr(self, name=self.name)

    def _repr_html_(self) -> str:
        """Tables of the sensors and requests, for notebooks."""
        return resource_html(self)


class KATCPRequest(abc.ABC):
    """Abstract Base class to serve as the definition of the KATCPRequest API.

    Wrapper around a specific KATCP request to a given KATCP device.  Each
    available KATCP request for a particular device has an associated
    :class:`KATCPRequest` object in the object hierarchy. This wrapper is mainly
    for interactive convenience. It provides the KATCP request help string as a
    docstring and pretty-prints the result of the request.

    Parameters
    ----------
    request_description : dict
        Keys ``name``, ``description`` and optionally ``timeout_hint``.
    is_active : callable, optional
        Returns True if the resource owning this request is active.
    """

    def __init__(self, request_description: Dict[str, Any],
                 is_active: Callable[[], bool] = lambda: True) -> None:
        self._request_description = request_description
        self._is_active = is_active
        self.__doc__ = request_docstring(self.name, self.description)

    @property
    def name(self) -> str:
        """Name of the KATCP request."""
        return self._request_description["name"]

    @property
    def description(self) -> str:
        """Description of KATCP request as obtained from the ?help request."""
        return self._request_description["description"]

    @property
    def timeout_hint(self) -> Optional[float]:
        """Request timeout suggested by device or None if not provided"""
        return self._request_description.get("timeout_hint")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Execute the KATCP request described by this object.

        All positional arguments of this function are converted to KATCP string
        representations and passed on as space-separated parameters to the KATCP
        device. Keyword arguments are passed on to :meth:`issue_request`.

        Keyword Arguments
        -----------------
        timeout : None or float, optional
            Timeout in seconds for the request. If None, use request timeout
            hint received from server or default for the :class:`KATCPResource`
            instance that contains the request if no hint is available.
        mid : None or int, optional
            Message identifier to use for the request message. If None, use
            either auto-incrementing value or no mid depending on the KATCP
            protocol version (mid's were only introduced with KATCP v5) and the
            default of the containing :class:`KATCPResource` instance.

        Returns
        -------
        reply : tornado future resolving to :class:`KATCPReply` object
            KATCP request reply wrapped in KATCPReply object

        Raises
        ------
        :class:`KATCPResourceInactive` if the resource is inactive when the
        request is made.
        """
        if not self.is_active():
            raise KATCPResourceInactive("Can't make request %s since its resource is "
                                        "inactive" % self.name)
        return self.issue_request(*args, **kwargs)

    def is_active(self) -> bool:
        """True if resource for this request is active"""
        return self._is_active()

    @abc.abstractmethod
    def issue_request(self, *args: Any, **kwargs: Any) -> Any:
        """Signature as for __call__

        Do the request immediately without checking active state.
        """

    def __repr__(self) -> str:
        return request_repr(self)


class KATCPDummyRequest(KATCPRequest):
    """Dummy counterpart to KATCPRequest that always returns a successful reply"""

    def issue_request(self, *args: Any, timeout: Optional[float] = None,
                      mid: Optional[int] = None, use_mid: Optional[bool] = None) -> Any:
        future: "tornado.concurrent.Future[KATCPReply]" = tornado.concurrent.Future()
        future.set_result(KATCPReply(Message.reply(self.name, "ok"), []))
        return future

# 0.9.3 code and tests patch names here that its one module looked up at call time.
forward_patches(__name__)
