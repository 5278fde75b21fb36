"""Sensors: :class:`Sensor`, its :class:`Reading`, and what each sensor type checks.

The wire form of every value comes from :mod:`katcp.wire.types`; a sensor type adds
its parameters (range, allowed values), its default and the checks of
:meth:`Sensor.set_value`.
"""

import decimal
import functools
import numbers
import time
from typing import Any, Dict, FrozenSet, List, NamedTuple, Optional, Set, Tuple

from katcp.wire import types as wire_types
from katcp.wire.errors import KatcpTypeError
from katcp.wire.flags import DEFAULT_KATCP_MAJOR, SEC_TO_MS_FAC, SEC_TS_KATCP_MAJOR
from katcp.wire.message import escape_argument, format_argument
from katcp.wire.text import as_str, show_repr
from katcp.wire.util import plain_callback


# Sensor defines a classmethod named float, so its annotations use this alias.
_Seconds = float
_Text = Optional[str]
_Params = Optional[List[Any]]
_Status = Optional[int]


class Reading(NamedTuple):
    """Sensor reading as a (timestamp, status, value) tuple."""

    timestamp: float
    status: int
    value: Any


# What float and timestamp sensors take: Decimal is no numbers.Real, but 0.9.3 sent its
# float() as it did any number's.
_REAL = (numbers.Real, decimal.Decimal)

# What each of [min, max, warn_min, warn_max] is called in errors.
_PARAM_NAMES = ("minimum", "maximum", "warning minimum", "warning maximum")

# How Sensor._status_inform() lays out a reading, with its timestamp in seconds (v5) or
# formatted already (v4): the whole #sensor-status inform, and the inform's arguments
# alone for Sensor.status_line().
_STATUS_INFORM = (b"#sensor-status %.6f 1 %s %s %s\n", b"#sensor-status %s 1 %s %s %s\n")
_ARGUMENTS = (b"%.6f 1 %s %s %s", b"%s 1 %s %s %s")

# The wire-line cache of a sensor before its first line is made.
_NO_LINE: Tuple[None, None, bytes] = (None, None, b"")

# Reading(t, s, v) without the Python-level __new__ of a named tuple: set() is a hot path.
_new_reading = tuple.__new__


class _SensorType:
    """One sensor type: its wire rule, parameters, default and value check.

    `kinds` (with `described`, its wording) are the Python types values must have.
    `plain` says that its wire values never need escaping (numbers, constants).
    """

    # Types whose check() is their own say which builtin classes need no check.
    _ALWAYS_VALID: Optional[FrozenSet[type]] = None

    def __init__(self, rule: wire_types.WireType, default: Any = None, kinds: Any = None,
                 described: str = "", plain: bool = False) -> None:
        self.rule = rule
        self.encoders = rule.exact_encoders
        self.name = rule.name
        self.default = default
        self.plain = plain
        self._kinds = kinds
        self._described = described
        # Builtin classes whose values are always valid (any class, without `kinds`):
        # a value of one needs no further check. Subclasses with checks of their own
        # set theirs.
        self.exact_kinds: FrozenSet[type] = self._ALWAYS_VALID if self._ALWAYS_VALID is not None \
            else frozenset(cls for cls in (int, float, bool, str, bytes)
                           if kinds is None or issubclass(cls, kinds))

    def check(self, value: Any, params: List[Any]) -> None:
        """Raise ValueError if `value` is not valid for these params."""
        if value.__class__ in self.exact_kinds:
            return  # the common case, without an ABC isinstance check
        if self._kinds is not None and not isinstance(value, self._kinds):
            raise ValueError("%s sensor value must be %s, not %r."
                             % (self.name.capitalize(), self._described, value))

    def default_for(self, params: List[Any]) -> Any:
        return self.default

    def check_params(self, params: List[Any]) -> None:
        if params:
            raise ValueError("Sensor type %r takes no parameters." % (self.name,))

    def __getitem__(self, index: Any) -> Any:
        # 0.9.3's Sensor.SENSOR_TYPES held (kattype class, default) pairs, which code
        # takes apart: ``kattype, default = Sensor.SENSOR_TYPES[Sensor.FLOAT]``.
        from katcp import kattypes

        kattype = next(cls for cls in (kattypes.Int, kattypes.Float, kattypes.Bool,
                                       kattypes.Lru, kattypes.Discrete, kattypes.Str,
                                       kattypes.Timestamp, kattypes.Address)
                       if cls.name == self.name)
        return (kattype, self.default)[index]

    def __len__(self) -> int:
        return 2


class _NumberType(_SensorType):

    # [min, max] or, as spec 5.1 section 7.2 allows, [min, max, warn_min, warn_max]: the
    # nominal range and the wider range of warning values, with error values beyond it.
    # The nominal range gives the default; all of them are reported as they were given.
    def check_params(self, params: List[Any]) -> None:
        if not params:
            return
        label = self.name.capitalize()
        if len(params) not in (2, 4):
            raise ValueError("%s sensor params must be [min, max] or [min, max, warn_min, "
                             "warn_max], got %r." % (label, params))
        for what, param in zip(_PARAM_NAMES, params):
            try:
                self.check(param, params)
            except ValueError:
                raise ValueError("%s sensor %s must be %s, not %r."
                                 % (label, what, self._described, param)) from None
        if params[0] > params[1]:
            raise ValueError("%s sensor minimum %r is greater than maximum %r."
                             % (label, params[0], params[1]))
        if len(params) == 4 and params[2] > params[3]:
            raise ValueError("%s sensor warning minimum %r is greater than warning maximum %r."
                             % (label, params[2], params[3]))

    def default_for(self, params: List[Any]) -> Any:
        # The type's zero when the range allows it (as the reference reports for
        # never-set sensors), else the minimum as a value of the type (an integer
        # sensor's [100.0, 200.0] gives 100).
        if params and not params[0] <= self.default <= params[1]:
            return type(self.default)(params[0])
        return self.default

    # check(): [min, max] describe the expected range for clients (?sensor-list); the
    # reference accepts readings outside it (sensor-float-format.txt sets 1e22 and -inf
    # on a [-50.0, 150.0] sensor), so only the type is checked.


class _IntegerType(_NumberType):

    def check(self, value: Any, params: List[Any]) -> None:
        # 0.9.3 sent any number with %d: a whole-valued real (3.0, numpy.float64(7.0)) is
        # sent as the integer it is; others (1.5) were truncated, so they are refused.
        if value.__class__ in self.exact_kinds or (isinstance(value, numbers.Real)
                                                   and _is_whole(value)):
            return
        super().check(value, params)


def _check_timestamp(timestamp: Any) -> None:
    """Refuse a reading's timestamp that is not a real number of seconds.

    Stored, it would fail later and far away: on the loop, where the sampling formats
    it (the update is lost, an error logged), and in every bare ``?sensor-value``.
    """
    if not isinstance(timestamp, _REAL):
        raise TypeError("Sensor timestamp must be a number of seconds, not %r." % (timestamp,))


def _is_key(key: Any, table: Dict[Any, Any]) -> bool:
    """Whether `key` is one of `table`'s keys: an unhashable one (a list) is none."""
    try:
        return key in table
    except TypeError:
        return False


def _is_whole(value: Any) -> bool:
    """Whether `value` equals its int(), which %d sends (exactly: no rounding to float)."""
    try:
        return bool(value == int(value))
    except (OverflowError, ValueError, TypeError):  # infinities, NaN, no int()
        return False


class _BooleanType(_SensorType):

    _ALWAYS_VALID = frozenset([bool])

    def check(self, value: Any, params: List[Any]) -> None:
        if value.__class__ is bool:
            return
        # numpy's comparisons give numpy.bool_, which is no Integral: its dtype tells.
        boolean_scalar = getattr(getattr(value, "dtype", None), "kind", None) == "b"
        # Any real equal to 0 or 1 (1.0 too) is sent as 0.9.3 sent it, by its truth.
        if not (boolean_scalar or isinstance(value, numbers.Real)) or value not in (0, 1):
            raise ValueError("Boolean sensor value must be True or False, not %r." % (value,))


class _LruType(_SensorType):

    _ALWAYS_VALID = frozenset()

    def check(self, value: Any, params: List[Any]) -> None:
        # The wire rule refuses anything but the two constants, in the same words.
        self.rule.encode(value, DEFAULT_KATCP_MAJOR)


class _DiscreteType(_SensorType):

    _ALWAYS_VALID = frozenset()

    def check_params(self, params: List[Any]) -> None:
        if not params:
            raise ValueError("Discrete sensors need a non-empty list of values.")
        for param in params:
            if not isinstance(param, str):
                raise ValueError("Discrete sensor values must be str or bytes, not %r." % (param,))

    def default_for(self, params: List[Any]) -> Any:
        return params[0]

    def check(self, value: Any, params: List[Any]) -> None:
        if as_str(value) not in params:
            raise wire_types.DISCRETE.not_one_of(value, params)


class _AddressType(_SensorType):

    _ALWAYS_VALID = frozenset()

    def check(self, value: Any, params: List[Any]) -> None:
        try:
            host, port = value
        except (TypeError, ValueError):
            raise ValueError("Address sensor value must be a (host, port) tuple, not %r."
                             % (value,)) from None
        if not isinstance(host, (str, bytes)):
            raise ValueError("Address host must be a string, not %r." % (host,))
        wire_types.check_address_port(port)


# Cached for the classes found plain: each ?sensor-sampling attaches a strategy, and the
# test costs a microsecond. Bounded, for classes made at runtime.
@functools.lru_cache(maxsize=256)
def _check_observer_class(cls: type) -> None:
    update = getattr(cls, "update", None)
    if update is not None:
        plain_callback(update, "observer's update")


class Sensor:
    """Instantiate a new sensor object.

    Parameters
    ----------
    sensor_type : Sensor type constant
        The type of sensor (or one of the Python types int, float, bool, str).
    name : str
        The name of the sensor (UTF-8 bytes are decoded).
    description : str, optional
        A short description of the sensor.
    units : str, optional
        The units of the sensor value. May be the empty string if there are no
        applicable units.
    params : list, optional
        [min, max] for INTEGER and FLOAT (optional), all possible values for DISCRETE
        (required); omitted for other types. INTEGER and FLOAT also take
        [min, max, warn_min, warn_max] (KATCP 5.1 section 7.2): values from min to max are
        nominal, those beyond them up to warn_min and warn_max warrant a warning. `params`
        and the ``#sensor-list`` informs keep all four; min and max are the range, as for
        two params. Each item is an int or a float; those of an INTEGER sensor must be
        whole (``[0.0, 1e6]`` is listed as ``integer 0 1000000``).
    default : object, optional
        An initial value for the sensor, valid as for :meth:`set_value`. By default this
        is determined by the sensor type (for INTEGER and FLOAT sensors with params: 0 if
        in range, else the minimum).
    initial_status : int enum or None, optional
        An initial status for the sensor. If None, defaults to Sensor.UNKNOWN.

    Raises
    ------
    TypeError
        If `name` is not a str (or bytes).
    ValueError
        If the type, params or initial status are invalid, or `default` is a value
        :meth:`set_value` refuses.
    """

    INTEGER, FLOAT, BOOLEAN, LRU, DISCRETE, STRING, TIMESTAMP, ADDRESS = range(8)

    SENSOR_TYPES = {
        INTEGER: _IntegerType(wire_types.INTEGER, 0, numbers.Integral, "an integer", plain=True),
        FLOAT: _NumberType(wire_types.FLOAT, 0.0, _REAL, "a real number", plain=True),
        BOOLEAN: _BooleanType(wire_types.BOOLEAN, False, plain=True),
        LRU: _LruType(wire_types.LRU, wire_types.LRU_NOMINAL, plain=True),
        # A discrete sensor starts at its first value; "unknown" is what 0.9.3 listed.
        DISCRETE: _DiscreteType(wire_types.DISCRETE, "unknown"),
        STRING: _SensorType(wire_types.STRING, ""),
        TIMESTAMP: _SensorType(wire_types.TIMESTAMP, 0.0, _REAL, "a number of seconds",
                               plain=True),
        ADDRESS: _AddressType(wire_types.ADDRESS, wire_types.NULL_ADDRESS),
    }
    SENSOR_TYPE_LOOKUP = {kind.name: stype for stype, kind in SENSOR_TYPES.items()}

    UNKNOWN, NOMINAL, WARN, ERROR, FAILURE, UNREACHABLE, INACTIVE = range(7)

    STATUSES = {UNKNOWN: "unknown", NOMINAL: "nominal", WARN: "warn", ERROR: "error",
                FAILURE: "failure", UNREACHABLE: "unreachable", INACTIVE: "inactive"}
    STATUS_NAMES = {v: k for k, v in STATUSES.items()}
    STATUSES_RAW = {k: v.encode("ascii") for k, v in STATUSES.items()}
    STATUS_NAMES_RAW = {v: k for k, v in STATUSES_RAW.items()}

    LRU_NOMINAL = wire_types.LRU_NOMINAL
    LRU_ERROR = wire_types.LRU_ERROR
    LRU_VALUES = wire_types.LRU_VALUES
    LRU_CONSTANTS = wire_types.LRU_CONSTANTS

    # Kept as 0.9 API: nothing here uses it.
    MILLISECOND = SEC_TO_MS_FAC

    PYTHON_TYPE_TO_SENSOR = {bool: BOOLEAN, int: INTEGER, float: FLOAT, str: STRING, bytes: STRING}

    def __init__(self, sensor_type: Any, name: str, description: Optional[str] = None,
                 units: Optional[str] = None, params: Optional[List[Any]] = None,
                 default: Any = None, initial_status: Optional[int] = None) -> None:
        if _is_key(sensor_type, self.PYTHON_TYPE_TO_SENSOR):
            sensor_type = self.PYTHON_TYPE_TO_SENSOR[sensor_type]
        if not _is_key(sensor_type, self.SENSOR_TYPES):
            raise ValueError("Invalid sensor type %r." % (sensor_type,))
        if initial_status is None:
            initial_status = self.UNKNOWN
        if not _is_key(initial_status, self.STATUSES):
            raise ValueError("Invalid initial status %r for sensor %r." % (initial_status, name))
        kind = self.SENSOR_TYPES[sensor_type]
        self._sensor_type = sensor_type
        self._type = kind
        name = as_str(name)
        if not isinstance(name, str):
            # Listing and sorting the sensors of a device needs str names: one of
            # another type would fail every bare ?sensor-list of the device.
            raise TypeError("Sensor name must be a str (or UTF-8 bytes), not %r." % (name,))
        self.name = name
        self.units = as_str(units) if units is not None else ""
        self.stype = kind.name
        if sensor_type == self.DISCRETE and params is not None:
            params = [as_str(p) for p in params]
        params = list(params) if params else []
        kind.check_params(params)
        self.params = params
        self.formatted_params = [kind.rule.encode(p, DEFAULT_KATCP_MAJOR) for p in params]
        if description is None:
            description = "%s sensor '%s' %s" % (
                self.stype.capitalize(), self.name,
                "in unit %s" % self.units if self.units else "with no unit")
        self.description = as_str(description)
        if default is None:
            default = kind.default_for(params)
        elif default.__class__ not in kind.exact_kinds:
            # What set_value() would refuse: sent as it is, it would go out wrong or
            # fail ?sensor-value for every sensor of the device.
            kind.check(default, params)
        self._observers: Set[Any] = set()
        self._reading = Reading(time.time(), initial_status, default)
        # Wire forms, made once and shared by every request and client (see status_line
        # and list_line): (reading, name, line) with timestamps in seconds (v5) and in
        # milliseconds (v4); and (metadata, line).
        self._status_v5: Tuple[Optional[Reading], Optional[str], bytes] = _NO_LINE
        self._status_v4: Tuple[Optional[Reading], Optional[str], bytes] = _NO_LINE
        self._wire_name: Tuple[Optional[str], bytes] = (None, b"")
        self._list_line: Optional[Tuple[Tuple[Any, ...], bytes]] = None

    def __repr__(self) -> str:
        return "<%s.%s object name=%r at 0x%x>" % (
            type(self).__module__, type(self).__name__, self.name, id(self))

    # -- typed constructors -------------------------------------------------

    @classmethod
    def integer(cls, name: str, description: _Text = None, unit: str = "", params: _Params = None,
                default: Any = None, initial_status: _Status = None) -> "Sensor":
        """Instantiate a new integer sensor object.

        Parameters are as for :class:`Sensor` (`unit` is its `units`);
        `params` is [min, max], the range clients are told of, or
        [min, max, warn_min, warn_max] with the range of warning values too; `default`
        defaults to 0 (the minimum if 0 is out of range).
        """
        return cls(cls.INTEGER, name, description, unit, params, default, initial_status)

    @classmethod
    def float(cls, name: str, description: _Text = None, unit: str = "", params: _Params = None,
              default: Any = None, initial_status: _Status = None) -> "Sensor":
        """Instantiate a new float sensor object: as :meth:`integer`, with 0.0 for 0."""
        return cls(cls.FLOAT, name, description, unit, params, default, initial_status)

    @classmethod
    def boolean(cls, name: str, description: _Text = None, unit: str = "", default: Any = None,
                initial_status: _Status = None) -> "Sensor":
        """Instantiate a new boolean sensor object.

        Parameters are as for :class:`Sensor` (`unit` is its `units`);
        `default` defaults to False.
        """
        return cls(cls.BOOLEAN, name, description, unit, None, default, initial_status)

    @classmethod
    def lru(cls, name: str, description: _Text = None, unit: str = "", default: Any = None,
            initial_status: _Status = None) -> "Sensor":
        """Instantiate a new lru sensor object.

        Parameters are as for :class:`Sensor` (`unit` is its `units`);
        `default` (Sensor.LRU_*) defaults to Sensor.LRU_NOMINAL.
        """
        return cls(cls.LRU, name, description, unit, None, default, initial_status)

    @classmethod
    def string(cls, name: str, description: _Text = None, unit: str = "", default: Any = None,
               initial_status: _Status = None) -> "Sensor":
        """Instantiate a new string sensor object.

        Parameters are as for :class:`Sensor` (`unit` is its `units`);
        `default` defaults to the empty string.
        """
        return cls(cls.STRING, name, description, unit, None, default, initial_status)

    @classmethod
    def discrete(cls, name: str, description: _Text = None, unit: str = "", params: _Params = None,
                 default: Any = None, initial_status: _Status = None) -> "Sensor":
        """Instantiate a new discrete sensor object.

        Parameters are as for :class:`Sensor` (`unit` is its `units`);
        `params` is the allowed values (str); `default` defaults to the first of them.
        """
        return cls(cls.DISCRETE, name, description, unit, params, default, initial_status)

    @classmethod
    def timestamp(cls, name: str, description: _Text = None, unit: str = "", default: Any = None,
                  initial_status: _Status = None) -> "Sensor":
        """Instantiate a new timestamp sensor object.

        Parameters are as for :class:`Sensor` (`unit` is its `units`);
        `default` (seconds since the Unix epoch) defaults to 0.
        """
        return cls(cls.TIMESTAMP, name, description, unit, None, default, initial_status)

    @classmethod
    def address(cls, name: str, description: _Text = None, unit: str = "", default: Any = None,
                initial_status: _Status = None) -> "Sensor":
        """Instantiate a new IP address sensor object.

        Parameters are as for :class:`Sensor` (`unit` is its `units`);
        `default`, a (host, port) tuple, defaults to ("0.0.0.0", None).
        """
        return cls(cls.ADDRESS, name, description, unit, None, default, initial_status)

    # -- observers ------------------------------------------------------------

    def attach(self, observer: Any) -> None:
        """Attach an observer to this sensor.

        Parameters
        ----------
        observer : object
            Object with an ``update(sensor, reading)`` method that will be called
            when the sensor value is set.

        Raises
        ------
        TypeError
            If the observer's class has an ``async def`` update method (its coroutines
            would never run).
        """
        _check_observer_class(observer.__class__)
        self._observers.add(observer)

    def detach(self, observer: Any) -> None:
        """Detach an observer from this sensor.

        Parameters
        ----------
        observer : object
            The observer to remove from the set of observers notified when the
            sensor value is set.
        """
        self._observers.discard(observer)

    def notify(self, reading: Reading) -> None:
        """Notify all observers of changes to this sensor.

        Parameters
        ----------
        reading : Reading
            The reading passed to each observer's ``update(sensor, reading)``.
        """
        # tuple() copies the set atomically under the GIL, so observers may attach or
        # detach from other threads (or from inside update()) while we notify.
        for observer in tuple(self._observers):
            observer.update(self, reading)

    # -- reading and setting ------------------------------------------------

    def read(self) -> Reading:
        """Read the sensor and return a (timestamp, status, value) tuple.

        Returns
        -------
        reading : Reading
            Sensor reading as a (timestamp, status, value) tuple.
        """
        return self._reading

    def status(self) -> int:
        """Read the current sensor status.

        Returns
        -------
        status : enum (int)
            The status of the sensor, one of the keys in Sensor.STATUSES.
        """
        return self.read().status

    # katcp 0.9.3 kept the reading in these attributes; code and tests still read them.
    _timestamp = property(lambda self: self._reading.timestamp)
    _status = property(lambda self: self._reading.status)
    _value = property(lambda self: self._reading.value)

    def value(self) -> Any:
        """Read the current sensor value.

        Returns
        -------
        value : object
            The value of the sensor (the type will be appropriate to the sensor's type).
        """
        return self.read().value

    def set(self, timestamp: _Seconds, status: int, value: Any) -> None:
        """Set the current value of the sensor.

        Safe to call from any thread: the reading is stored in one assignment.

        Parameters
        ----------
        timestamp : float in seconds
            The time at which the sensor value was determined.
        status : Sensor status constant
            Whether the value represents an error condition or not.
        value : object
            The value of the sensor (the type should be appropriate to the sensor's
            type).

        Raises
        ------
        TypeError
            If `timestamp` is not a real number (nothing is set).
        """
        if timestamp.__class__ is not float and timestamp.__class__ is not int:
            _check_timestamp(timestamp)
        reading = self._reading = _new_reading(Reading, (timestamp, status, value))
        self.notify(reading)

    def set_value(self, value: Any, status: int = NOMINAL, timestamp: Optional[_Seconds] = None,
                  major: int = DEFAULT_KATCP_MAJOR) -> None:
        """Check and then set the value of the sensor.

        Parameters
        ----------
        value : object
            Value of the appropriate type for the sensor: for an integer sensor, an
            integer or a whole-valued real number (3.0 is sent as 3); for a float or
            timestamp sensor, a real number or a :class:`decimal.Decimal`; for a boolean
            sensor, True, False or a number equal to 0 or 1.
        status : Sensor status constant
            Whether the value represents an error condition or not.
        timestamp : float in seconds or None
            The time at which the sensor value was determined. Uses current time if
            None.
        major : int
            Unused; kept for compatibility with katcp 0.9 (values are checked the same
            way for every KATCP version).

        Raises
        ------
        ValueError
            If the value is not valid for this sensor, or `status` is not one of the
            sensor status constants (nothing is set).
        TypeError
            If `timestamp` is neither None nor a real number.
        """
        kind = self._type
        if value.__class__ not in kind.exact_kinds:  # else valid: no call needed
            kind.check(value, self.params)
        try:  # _is_key(), inline: set_value() is per reading
            known = status in self.STATUSES
        except TypeError:
            known = False
        if not known:
            raise ValueError("Invalid status %r for sensor %r." % (status, self.name))
        if timestamp is None:
            timestamp = time.time()
        self.set(timestamp, status, value)

    def set_formatted(self, raw_timestamp: bytes, raw_status: bytes, raw_value: bytes,
                      major: int = DEFAULT_KATCP_MAJOR) -> None:
        """Set the current value of the sensor.

        Parameters
        ----------
        raw_timestamp : bytes
            KATCP formatted timestamp byte string.
        raw_status : bytes
            KATCP formatted sensor status byte string.
        raw_value : bytes
            KATCP formatted sensor value byte string.
        major : int, default = 5
            KATCP major version to use for interpreting the raw values.

        Raises
        ------
        ValueError, KatcpTypeError
            As :meth:`parse_reading` raises them; nothing is set.
        """
        self.set(*self.parse_reading(raw_timestamp, raw_status, raw_value, major))

    def parse_reading(self, raw_timestamp: bytes, raw_status: bytes, raw_value: bytes,
                      major: int = DEFAULT_KATCP_MAJOR) -> Tuple[_Seconds, int, Any]:
        """Parse a KATCP formatted reading, the reverse of :meth:`format_reading`.

        Parameters are as for :meth:`set_formatted`.

        Returns
        -------
        timestamp, status, value : float, int, object
            The reading, as :meth:`set` takes it.

        Raises
        ------
        ValueError
            If a part cannot be parsed or the value is not valid for the sensor.
        KatcpTypeError
            If the status or the value is not bytes.
        """
        timestamp = wire_types.parse_timestamp(raw_timestamp, major)
        try:
            status = self.STATUS_NAMES_RAW[raw_status]
        except (KeyError, TypeError):  # TypeError: unhashable, as a bytearray is
            if not isinstance(raw_status, bytes):
                # Said as parse_value() says it of a value: "nominal" is a valid status.
                raise KatcpTypeError("Sensor statuses must be parsed from bytes, not %r."
                                     % (type(raw_status),)) from None
            raise ValueError("Invalid sensor status %s." % (show_repr(raw_status),)) from None
        return timestamp, status, self.parse_value(raw_value, major)

    def format_reading(self, reading: Tuple[_Seconds, int, Any], major: int = DEFAULT_KATCP_MAJOR
                       ) -> Tuple[bytes, bytes, bytes]:
        """Format sensor reading as (timestamp, status, value) tuple of byte strings.

        Parameters
        ----------
        reading : Reading
            Sensor reading as returned by :meth:`read` (or a plain tuple of the same).
        major : int
            Major version of KATCP to use when interpreting types.

        Returns
        -------
        timestamp : bytes
            KATCP formatted timestamp byte string.
        status : bytes
            KATCP formatted sensor status byte string.
        value : bytes
            KATCP formatted sensor value byte string.
        """
        timestamp, status, value = reading
        return (wire_types.format_timestamp(timestamp, major), self.STATUSES_RAW[status],
                self._type.rule.encode(value, major))

    def read_formatted(self, major: int = DEFAULT_KATCP_MAJOR) -> Tuple[bytes, bytes, bytes]:
        """Read the sensor and return a (timestamp, status, value) tuple of bytes.

        Parameters
        ----------
        major : int
            Major version of KATCP to use when interpreting types.

        Returns
        -------
        timestamp, status, value : bytes
            KATCP formatted byte strings.
        """
        return self.format_reading(self.read(), major)

    def status_line(self, reading: Reading, major: int = DEFAULT_KATCP_MAJOR) -> bytes:
        """The arguments of the ``#sensor-value`` / ``#sensor-status`` inform of `reading`.

        Formatted once per reading and KATCP major version (v4 sends milliseconds): every
        request and client reporting the same reading shares the bytes, and the next
        :meth:`set` makes a new reading and so new bytes.

        Parameters
        ----------
        reading : Reading
            A reading of this sensor, as :meth:`read` returns (or as observers get it).
        major : int
            KATCP major version.

        Returns
        -------
        line : bytes
            ``timestamp 1 name status value``, escaped as on the wire.

        Notes
        -----
        A server's ``event`` strategies ask whether the sensor has a status_line() of its
        own (its class's, or one set on it) when they are made, not at each change: one
        set later is heard by the strategies set after it (and by the other strategies
        and requests at once).
        """
        # Only the unit of timestamps differs between versions: two flavours of line.
        seconds = major >= SEC_TS_KATCP_MAJOR
        cached = self._status_v5 if seconds else self._status_v4
        name = self.name
        if cached[0] is reading and cached[1] is name:
            return cached[2]
        line = self._status_inform(reading, major, _ARGUMENTS)
        if seconds:
            self._status_v5 = (reading, name, line)
        else:
            self._status_v4 = (reading, name, line)
        return line

    def _status_inform(self, reading: Reading, major: int,
                       formats: Tuple[bytes, bytes] = _STATUS_INFORM) -> bytes:
        """The whole ``#sensor-status`` inform of `reading`, newline included.

        The bytes of ``b"#sensor-status " + status_line(reading, major) + b"\\n"``, made
        in one formatting operation and not kept: for the event strategies' fan-out, which
        makes each change's line once for all its clients. status_line() gives the
        `formats` of the inform's arguments alone: the reading goes in ``formats[0]`` with
        its timestamp in seconds (v5, formatted there), in ``formats[1]`` with one
        formatted already (v4, or by the format_reading() of a subclass).
        """
        name = self.name
        wire_name = self._wire_name
        if wire_name[0] is not name:
            wire_name = self._wire_name = (name, escape_argument(format_argument(name)))
        # A class check only (not uses_own()): this runs for every new reading.
        if self.__class__.format_reading is not _FORMAT_READING:
            return self._own_status_line(reading, major, wire_name[1], formats[1])
        timestamp, status, value = reading
        kind = self._type
        encode = kind.encoders.get(type(value))
        try:
            value = kind.rule.encode(value, major) if encode is None else encode(value)
        except UnicodeEncodeError:
            value = kind.rule.encode(value, major)  # which replaces what cannot be encoded
        if not kind.plain:
            value = escape_argument(value)
        if major >= SEC_TS_KATCP_MAJOR:
            # wire.types.format_timestamp() for v5, in the same formatting operation
            # (tests/test_sensor.py checks that the two agree).
            return formats[0] % (timestamp, wire_name[1], _STATUS_BYTES[status], value)
        return formats[1] % (wire_types.format_timestamp(timestamp, major), wire_name[1],
                             _STATUS_BYTES[status], value)

    def _own_status_line(self, reading: Reading, major: int, wire_name: bytes,
                         line_format: bytes) -> bytes:
        # From the format_reading() of a subclass (or a replacement) that formats readings
        # its own way.
        return self._line_of(self.format_reading(reading, major), wire_name, line_format)

    @staticmethod
    def _line_of(formatted: Tuple[bytes, bytes, bytes], wire_name: bytes,
                 line_format: bytes = _ARGUMENTS[1]) -> bytes:
        timestamp, status, value = [escape_argument(part) for part in formatted]
        return line_format % (timestamp, wire_name, status, value)

    def formatted_status_line(self, major: int = DEFAULT_KATCP_MAJOR) -> bytes:
        """As :meth:`status_line`, of what :meth:`read_formatted` gives.

        For a sensor whose class formats its current reading its own way (overrides
        :meth:`read_formatted`), as ``?sensor-value`` asks each sensor; others give the
        same as ``status_line(read(), major)``, which shares its bytes.

        Parameters
        ----------
        major : int
            KATCP major version, passed on to :meth:`read_formatted`.

        Returns
        -------
        line : bytes
            The inform's arguments after the name, as :meth:`status_line` returns them.
        """
        wire_name = escape_argument(format_argument(self.name))
        return self._line_of(self.read_formatted(major), wire_name)

    def list_line(self) -> bytes:
        """The arguments of this sensor's ``#sensor-list`` inform.

        Formatted once, and again only when the name, description, units, type or
        formatted parameters change.

        Returns
        -------
        line : bytes
            ``name description units type params...``, escaped as on the wire.
        """
        cached = self._list_line
        params = self.formatted_params
        if cached is not None:
            (name, description, units, stype, known_params), line = cached
            if (name is self.name and description is self.description and units is self.units
                    and stype is self.stype and known_params == params):
                return line
        metadata = (self.name, self.description, self.units, self.stype, list(params))
        line = b" ".join([escape_argument(format_argument(arg))
                          for arg in metadata[:4] + tuple(params)])
        self._list_line = (metadata, line)
        return line

    def parse_value(self, s_value: bytes, katcp_major: int = DEFAULT_KATCP_MAJOR) -> Any:
        """Parse a value from a byte string.

        Parameters
        ----------
        s_value : bytes
            A byte string value to attempt to convert to a value for the sensor.

        Returns
        -------
        value : object
            A value of a type appropriate to the sensor.

        Raises
        ------
        ValueError
            If the bytes cannot be parsed or the value is not valid for the sensor.
        KatcpTypeError
            If `s_value` is not bytes.
        """
        if not isinstance(s_value, bytes):
            raise KatcpTypeError("Sensor values must be parsed from bytes, not %r."
                                 % (type(s_value),))
        value = self._type.rule.decode(s_value, katcp_major)
        self._type.check(value, self.params)
        return value

    @classmethod
    def parse_type(cls, type_string: Any) -> int:
        """Parse KATCP formatted type code into Sensor type constant.

        Parameters
        ----------
        type_string : str or bytes
            KATCP formatted type code.

        Returns
        -------
        sensor_type : Sensor type constant
            The corresponding Sensor type constant.
        """
        type_string = as_str(type_string)
        try:
            return cls.SENSOR_TYPE_LOOKUP[type_string]
        except KeyError:
            raise ValueError("Invalid sensor type string %r." % (type_string,))

    @classmethod
    def parse_params(cls, sensor_type: int, formatted_params: List[bytes],
                     major: int = DEFAULT_KATCP_MAJOR) -> List[Any]:
        """Parse KATCP formatted parameters into Python values.

        Parameters
        ----------
        sensor_type : Sensor type constant
            The type of sensor the parameters are for.
        formatted_params : list of byte strings
            The formatted parameters that should be parsed.
        major : int
            Major version of KATCP to use when interpreting types.

        Returns
        -------
        params : list of objects
            The parsed parameters.
        """
        kind = cls.SENSOR_TYPES[sensor_type]
        return [kind.rule.decode(param, major) for param in formatted_params]


# The wire bytes of each status, for status_line() (a module global is found faster).
_STATUS_BYTES = Sensor.STATUSES_RAW

# The methods status_line() and ?sensor-value skip where a sensor's class keeps them: a
# subclass that overrides one, or a replacement on the class (as mock.patch.object
# makes), is called instead.
_FORMAT_READING = Sensor.format_reading
