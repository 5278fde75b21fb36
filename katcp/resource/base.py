"""The basics of :mod:`katcp.resource`: names, strategies, errors, readings and the
sensors manager interface. Documented (and reporting themselves) as
``katcp.resource.<name>``.
"""

import abc
import collections
import operator
import time
from typing import Any, Optional, Sequence, Tuple, Union

from katcp.core import Sensor
from katcp.wire.text import as_str


#: A sampling strategy: ``(name, param, ...)`` as in the KATCP spec, or the same words in
#: one space-separated string.
StrategySpec = Union[str, bytes, Sequence[Any]]
#: What setting a strategy gives per sensor: ``(True, normalised strategy)`` or
#: ``(False, sys.exc_info())``.
StrategyResult = Tuple[bool, Any]

#: ?sensor-sampling requests one call keeps in flight when it sets many strategies.
# Enough to pipeline them, few enough that each is answered well within its request
# timeout (a device handles them one after another).
STRATEGY_WINDOW = 32


def read_only(path: str, doc: Optional[str] = None) -> Any:
    """A read-only property giving the attribute at dotted `path` of the instance.

    Without `doc` it has no docstring of its own, so documentation tools show that of
    the property it overrides.
    """
    get = operator.attrgetter(path)

    def getter(self: Any) -> Any:
        return get(self)

    return property(getter, doc=doc)


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
