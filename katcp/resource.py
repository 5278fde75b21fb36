"""A high-level abstract interface to KATCP clients, sensors and requests."""

import abc
import collections
import collections.abc
import inspect
import logging
import operator
import sys
import time
import types
from typing import (Any, Callable, Dict, Generator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import tornado.concurrent
import tornado.gen
import tornado.ioloop

from katcp._export import keep_home
from katcp.core import DEFAULT_KATCP_MAJOR, Message, Sensor, hashable_identity
from katcp.display import (KATCPReply, did_you_mean, object_repr, request_docstring,
                           request_repr, resource_html, sensor_repr)
from katcp.wire.text import as_str

log = logging.getLogger(__name__)

# Defined with the display code; documented (and pickled) as katcp.resource.KATCPReply.
keep_home(__name__, KATCPReply)

__all__ = ["escape_name", "normalize_strategy_parameters", "KATCPResourceError",
           "KATCPResourceInactive", "KATCPSensorError", "KATCPResource", "KATCPRequest",
           "KATCPDummyRequest", "KATCPReply", "KATCPSensorReading", "KATCPSensorsManager",
           "KATCPSensor", "SensorResultTuple"]

#: A sampling strategy: ``(name, param, ...)`` as in the KATCP spec, or the same words in
#: one space-separated string.
StrategySpec = Union[str, bytes, Sequence[Any]]
#: What setting a strategy gives per sensor: ``(True, normalised strategy)`` or
#: ``(False, sys.exc_info())``.
StrategyResult = Tuple[bool, Any]


def _read_only(path: str, doc: Optional[str] = None) -> Any:
    """A read-only property giving the attribute at dotted `path` of the instance.

    Without `doc` it has no docstring of its own, so documentation tools show that of
    the property it overrides.
    """
    get = operator.attrgetter(path)

    def getter(self: Any) -> Any:
        return get(self)

    return property(getter, doc=doc)


def escape_name(name: str) -> str:
    """Escape sensor and request names to be valid Python identifiers.

    Parameters
    ----------
    name : str
        KATCP sensor or request name, e.g. ``'sensor-name.sub'``.

    Returns
    -------
    identifier : str
        The name with ``.`` and ``-`` replaced by ``_``, e.g. ``'sensor_name_sub'``.
    """
    return name.replace(".", "_").replace("-", "_")


def _number_or_text(param: Any) -> str:
    param = as_str(param)
    try:
        # Numbers get one canonical spelling, so that 1, '1' and 1.0 compare equal.
        return str(float(param))
    except ValueError:
        return str(param)


def normalize_strategy_parameters(params: StrategySpec) -> Tuple[str, ...]:
    """Normalize strategy parameters to be a list of strings.

    Parameters
    ----------
    params : (space-delimited) string or sequence of strings/numbers
        Parameters expected by :class:`~katcp.sampling.SampleStrategy` object, in
        various forms, where the first parameter is the name of the strategy.

    Returns
    -------
    params : tuple of strings
        Strategy parameters as a list of strings
    """
    params = as_str(params)
    if isinstance(params, str):
        params = params.split()
    return tuple(_number_or_text(param) for param in params)


class KATCPResourceError(Exception):
    """Error raised for resource-related errors"""


class KATCPResourceInactive(KATCPResourceError):
    """Raised when a request is made to an inactive resource"""


class KATCPSensorError(KATCPResourceError):
    """Raised if a problem occurred dealing with as KATCPSensor operation"""


class SensorResultTuple(collections.namedtuple(
        "SensorResultTuple",
        "object name python_identifier description type units reading")):
    """Per-sensor result of list_sensors() method

    Attributes
    ----------
    object : :class:`KATCPSensor` instance
    name : str
        KATCP (i.e. unescaped) name of the sensor
    python_identifier : str
        Python-identifier name of the sensor.
    description : str
        KATCP description of the sensor
    type : str
        KATCP type of the sensor
    units : str
        KATCP units of the sensor
    reading : :class:`KATCPSensorReading` instance
        Most recently received sensor reading
    """

    __slots__ = ()


class KATCPSensorReading(collections.namedtuple(
        "KATCPSensorReading", "received_timestamp timestamp istatus value")):
    """Sensor reading as a (received_timestamp, timestamp, istatus, value) tuple.

    Attributes
    ----------
    received_timestamp : float
        Time (in seconds since UTC epoch) at which the sensor value was received.
    timestamp : float
        Time (in seconds since UTC epoch) at which the sensor value was determined.
    istatus : int element of :attr:`katcp.Sensor.STATUSES`
        Sensor status constant.
    value : object
        The value of the sensor (the type will be appropriate to the sensor's type).
    """

    __slots__ = ()

    @property
    def status(self) -> str:
        """Returns the string representation of sensor status, eg 'nominal'"""
        try:
            return Sensor.STATUSES[int(self.istatus)]
        except (ValueError, KeyError):
            return "unknown"


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

    @tornado.gen.coroutine
    def wait(self, sensor_name: str, condition_or_value: Any,
             timeout: Optional[float] = 5) -> Generator[Any, Any, bool]:
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
        still not satisfied after a given timeout period.

        Raises
        ------
        :class:`KATCPSensorError`
            If the sensor does not have a strategy set, or if the named sensor
            is not present
        """
        sensor = self._sensor_named(sensor_name)
        try:
            yield sensor.wait(condition_or_value, timeout)
        except tornado.gen.TimeoutError:
            return False
        return True

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
        """
        sensors = yield self.list_sensors(filter, **list_sensor_args)
        results = yield [self.set_sampling_strategy(result.python_identifier, strategy_and_params)
                         for result in sensors]
        return {key: value for result in results for key, value in result.items()}

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


class KATCPSensorsManager(abc.ABC):
    """Sensor management class used by KATCPSensor. Abstracts communications details.

    This class should arrange:

    1. A mechanism for setting sensor strategies
    2. A mechanism for polling a sensor value
    3. Keeping track of- and reapplying sensor strategies after reconnect, etc.
    4. Providing local time. This is doing to avoid direct calls to time.time,
       allowing accelerated time testing / simulation / dry-running
    """

    def time(self) -> float:
        """Returns the current time (in seconds since UTC epoch)"""
        return time.time()

    @abc.abstractmethod
    def get_sampling_strategy(self, sensor_name: str) -> Any:
        """Get the current sampling strategy for the named sensor

        Parameters
        ----------
        sensor_name : str
            Name of the sensor (normal or escaped form)

        Returns
        -------
        strategy : tuple of str
            contains (<strat_name>, [<strat_parm1>, ...]) where the strategy names
            and parameters are as defined by the KATCP spec
        """

    @abc.abstractmethod
    def set_sampling_strategy(self, sensor_name: str, strategy_and_parms: StrategySpec) -> Any:
        """Set the sampling strategy for the named sensor

        Parameters
        ----------
        sensor_name : str
            Name of the sensor
        strategy_and_parms : seq of str or str
            As for :meth:`KATCPResource.set_sampling_strategy`.

        Returns
        -------
        done : tornado Future
            Resolves when done or raises KATCPSensorError; it may resolve with
            ``(success, info)`` as for one sensor of
            :meth:`KATCPResource.set_sampling_strategy`.

        Notes
        -----
        It is recommended that implementations use
        :func:`normalize_strategy_parameters` to process the strategy_and_parms
        parameter, since it will deal with both string and list versions and
        makes sure that numbers are represented as strings in a consistent
        format.

        This method should arrange for the strategy to be set on the underlying
        network device or whatever other implementation is used. This strategy
        should also be automatically re-set if the device is reconnected, etc.
        If a strategy is set for a non-existing sensor, it should still cache
        the strategy and ensure that is applied whenever said sensor comes into
        existence. This allows an applications to pre-set strategies for
        sensors before synced / connected to a device.
        """

    @abc.abstractmethod
    def drop_sampling_strategy(self, sensor_name: str) -> None:
        """Drop the sampling strategy for the named sensor from the cache

        Calling :meth:`set_sampling_strategy` requires the sensor manager to
        memorise the requested strategy so that it can automatically be reapplied.
        If the client is no longer interested in the sensor, or knows the sensor
        may be removed from the server, then it can use this method to ensure the
        manager forgets about the strategy.  This method will not change the current
        strategy.  No error is raised if there is no strategy to drop.

        Parameters
        ----------
        sensor_name : str
            Name of the sensor (normal or escaped form)
        """

    @abc.abstractmethod
    def reapply_sampling_strategies(self) -> Any:
        """Reapply all sensor strategies using cached values

        Would typically be called when a connection is re-established. Should
        not raise errors when resetting strategies for sensors that no longer
        exist on the KATCP resource.
        """

    @abc.abstractmethod
    def poll_sensor(self, sensor_name: str) -> Any:
        """Poll sensor and arrange for sensor object to be updated

        Returns
        -------
        done_future : tornado Future
            Resolves when the poll is complete, or raises KATCPSensorError
        """


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
        description = sensor_description.get("description")
        self._attach(sensor_manager, as_str(sensor_description["name"]),
                     None if description is None else as_str(description), sensor_description)
        # Made at once: a bad description fails here, where the caller can see it.
        self._sensor

    @classmethod
    def _mirrored(cls, sensor_manager: KATCPSensorsManager, name: str,
                  description: Optional[str], source: Any,
                  describe: Optional[Callable[[str, Any], Dict[str, Any]]] = None
                  ) -> "KATCPSensor":
        """A sensor of a device's model, whose :class:`katcp.Sensor` is made on first use.

        A client resource mirrors every sensor of its device but reads or watches few
        of them, so the rest never pay for their type-aware parser. The keyword
        arguments of that Sensor are `source`, or ``describe(name, source)`` if given
        (e.g. parsed from the device's ``#sensor-list`` inform only then). `name` and
        `description` are text.
        """
        return cls._mirror_maker(sensor_manager, describe)(name, description, source)

    @classmethod
    def _mirror_maker(cls, sensor_manager: KATCPSensorsManager,
                      describe: Optional[Callable[[str, Any], Dict[str, Any]]] = None
                      ) -> Callable[[str, Optional[str], Any], "KATCPSensor"]:
        """``mirror(name, description, source)``: :meth:`_mirrored` for many sensors of
        one manager (a resource's sync makes hundreds of them at once)."""
        new = cls.__new__

        def mirror(name: str, description: Optional[str], source: Any) -> "KATCPSensor":
            sensor = new(cls)
            sensor._attach(sensor_manager, name, description, source, describe)
            return sensor

        return mirror

    # Until set otherwise: no reading yet, no katcp.Sensor made yet, and the Sensor's
    # keyword arguments taken as they are (class attributes: one less store per sensor).
    _reading = _NO_READING
    _sensor_obj: Optional[Sensor] = None
    _describe: Optional[Callable[[str, Any], Dict[str, Any]]] = None

    def _attach(self, sensor_manager: KATCPSensorsManager, name: str,
                description: Optional[str], source: Any,
                describe: Optional[Callable[[str, Any], Dict[str, Any]]] = None) -> None:
        self._manager = sensor_manager
        self.name = name
        # What the katcp.Sensor is made from (when first needed).
        self._sensor_description = source
        if describe is not None:
            self._describe = describe
        if description is None:
            # The default description comes from katcp.Sensor.
            description = self._sensor.description
        self.description = self.__doc__ = description

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

    reading = _read_only(
        "_reading", "Most recently received sensor reading as KATCPSensorReading instance")
    value = _read_only("_reading.value", "Value of the most recently received reading.")
    status = _read_only(
        "_reading.status", "Status name (e.g. 'nominal') of the most recently received reading.")
    type = _read_only("_sensor.stype", "KATCP type name of the sensor, e.g. 'integer'.")
    units = _read_only("_sensor.units", "Units of the sensor.")
    params = _read_only(
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

    @tornado.gen.coroutine
    def set_sampling_strategy(self, strategy: StrategySpec) -> Generator[Any, Any, Any]:
        """Set current sampling strategy for sensor

        Parameters
        ----------
        strategy : seq of str or str
            As for :meth:`KATCPResource.set_sampling_strategy`.

        Returns
        -------
        done : tornado Future that resolves when done or raises KATCPSensorError
        """
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
        """
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

    @tornado.gen.coroutine
    def get_value(self) -> Generator[Any, Any, Any]:
        """Get a fresh sensor value from the KATCP resource: as :meth:`get_reading`,
        resolving with the reading's value."""
        reading = yield self.get_reading()
        return reading.value

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
        """
        if isinstance(condition_or_value, collections.abc.Sequence) and not isinstance(
                condition_or_value, (str, bytes)):
            raise NotImplementedError("Currently only single conditions are supported")
        if callable(condition_or_value):
            condition_test = condition_or_value
        else:
            def condition_test(reading: Any) -> bool:
                return reading.value == condition_or_value

        if self.sampling_strategy == ("none",):
            raise KATCPSensorError("Cannot wait on sensor %s since it does not have a "
                                   "strategy set" % self.name)
        ioloop = tornado.ioloop.IOLoop.current()
        future: "tornado.concurrent.Future[bool]" = tornado.concurrent.Future()

        def handle_update(sensor: Any, reading: Any) -> None:
            if future.done():
                return
            try:
                if condition_test(reading):
                    self.unregister_listener(handle_update)
                    future.set_result(True)
            except Exception as exc:
                self.unregister_listener(handle_update)
                future.set_exception(exc)

        self.register_listener(handle_update, reading=True)
        # The current reading may already satisfy the condition.
        ioloop.add_callback(handle_update, self, self._reading)
        if not timeout:
            return future
        timeout_future = tornado.gen.with_timeout(ioloop.time() + timeout, future)
        # A timed-out wait must not leave its listener behind.
        timeout_future.add_done_callback(lambda _: self.unregister_listener(handle_update))
        return timeout_future


def _words(params: Any) -> List[Any]:
    """Flatten strings (split on whitespace) and nested sequences into one list."""
    params = as_str(params)
    if isinstance(params, str):
        return params.split()
    if isinstance(params, collections.abc.Iterable):
        return [word for param in params for word in _words(param)]
    return [params]
