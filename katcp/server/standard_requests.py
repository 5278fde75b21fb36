"""The standard KATCP requests of a DeviceServer (the sampling ones apart).

Each ``request_*`` function is a method of :class:`katcp.server.DeviceServer`, which takes
it into its class body: `self` is the device server. Their docstrings, which ``?help``
sends, keep the indentation of method docstrings.
"""

import re
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Tuple

from katcp.core import (DEFAULT_KATCP_MAJOR, VERSION_CONNECT_KATCP_MAJOR, AsyncReply, FailReply,
                        Message, ProtocolFlags, Sensor)
from katcp.kattypes import (Int, Str, has_katcp_protocol_flags, minimum_katcp_version,
                            request, return_reply)
from katcp.sampling import SampleStrategy
from katcp.server.connection import ClientRequestConnection
from katcp.version import VERSION_STR, __version__
from katcp.wire.text import as_str
from katcp.wire.types import STRING

if TYPE_CHECKING:
    from katcp.server.device import DeviceServer

BASE_REQUESTS = frozenset([
    "halt", "help", "log-level", "restart", "client-list", "sensor-list", "sensor-sampling",
    "sensor-sampling-clear", "sensor-value", "watchdog", "version-list", "new-command",
    "raise-fail", "raise-exception"])
"""List of basic KATCP requests that a minimal device server should implement."""


class SensorHost(Protocol):
    """What the sensor requests use of the device they are a method of.

    A :class:`~katcp.server.DeviceServer` is one; so are the fake devices of
    :mod:`katcp.fake_clients`, which answer ``?sensor-list``, ``?sensor-value``,
    ``?sensor-sampling`` and ``?sensor-sampling-clear`` with these same functions.
    """

    PROTOCOL_INFO: ProtocolFlags
    # Sensor name -> sensor; per client connection, sensor -> its strategy.
    _sensors: Dict[str, Sensor]
    _strategies: Dict[Any, Dict[Sensor, SampleStrategy]]

    @property
    def _katcp_major(self) -> int: ...

    @property
    def ioloop(self) -> Any: ...

    def _sorted_sensors(self) -> List[Tuple[str, Sensor]]: ...

    def _call_on_loop(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def clear_strategies(self, client_conn: Any, remove_client: bool = False) -> None: ...


def construct_name_filter(pattern: Any) -> Tuple[bool, Callable[[str], bool]]:
    """Return a function for filtering sensor names based on a pattern.

    Parameters
    ----------
    pattern : None or str
        If None, the returned function matches all names. If pattern starts and ends
        with '/' the text between the slashes is used as a regular expression to search
        the names. Otherwise the pattern must match the name of the sensor exactly.

    Returns
    -------
    exact : bool
        Return True if pattern is expected to match exactly. Used to determine whether
        having no matching sensors constitutes an error.
    filter_func : f(str) -> bool
        Function for determining whether a name matches the pattern.

    Raises
    ------
    re.error
        If the regular expression is invalid.

    """
    if pattern is None:
        return False, lambda name: True
    pattern = as_str(pattern)
    if pattern.startswith("/") and pattern.endswith("/"):
        search = re.compile(pattern[1:-1]).search
        return False, lambda name: search(name) is not None
    return True, lambda name: name == pattern


def _name_argument(value: Any) -> str:
    """A request's name argument as text; a fail reply if it is not UTF-8 (no name is)."""
    try:
        return STRING.decode(value, DEFAULT_KATCP_MAJOR)
    except UnicodeDecodeError as exc:
        raise FailReply(str(exc)) from None


def _matching_sensors(self: SensorHost, msg: Message) -> List[Tuple[str, Sensor]]:
    if not msg.arguments:
        return self._sorted_sensors()
    name = _name_argument(msg.arguments[0])
    exact, name_filter = construct_name_filter(name)
    if exact:
        sensor = self._sensors.get(name)
        if sensor is None:
            raise FailReply("Unknown sensor name.")
        return [(name, sensor)]
    return [(name, sensor) for name, sensor in self._sorted_sensors() if name_filter(name)]


def request_halt(self: "DeviceServer", req: ClientRequestConnection, msg: Message) -> Message:
    """Halt the device server.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether scheduling the halt succeeded.

        Examples
        --------
        ::

            ?halt
            !halt ok

        """
    req.reply("ok")
    # Scheduled after the reply so that "!halt ok" precedes "#disconnect".
    self._server.call_soon_threadsafe(self.stop)
    raise AsyncReply


def request_help(self: "DeviceServer", req: ClientRequestConnection, msg: Message) -> Message:
    """Return help on the available requests.

        Return a description of the available requests using a sequence of
        #help informs.

        Parameters
        ----------
        request : str, optional
            The name of the request to return help for (the default is to
            return help for all requests).

        Informs
        -------
        request : str
            The name of a request.
        description : str
            Documentation for the named request.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the help succeeded.
        informs : int
            Number of #help inform messages sent.

        Examples
        --------
        ::

            ?help
            #help halt ...description...
            #help help ...description...
            ...
            !help ok 5

            ?help halt
            #help halt ...description...
            !help ok 1

        """
    handlers = self._request_handlers
    if not msg.arguments:
        # As in 0.9: the listing sends each docstring whole, ?help NAME stripped.
        for name, each in sorted(handlers.items()):
            req.inform(name, each.__doc__ or "")
        return req.make_reply("ok", len(handlers))
    name = _name_argument(msg.arguments[0])
    handler = handlers.get(name)
    if handler is None:
        return req.make_reply("fail", "Unknown request method.")
    req.inform(name, (handler.__doc__ or "").strip())
    return req.make_reply("ok", "1")


def request_log_level(self: "DeviceServer", req: ClientRequestConnection, msg: Message) -> Message:
    """Query or set the current logging level.

        Parameters
        ----------
        level : {'all', 'trace', 'debug', 'info', 'warn', 'error', 'fatal', 'off'}, optional
            Name of the logging level to set the device server to (the default
            is to leave the log level unchanged).

        Returns
        -------
        success : {'ok', 'fail'}
            Whether the request succeeded.
        level : {'all', 'trace', 'debug', 'info', 'warn', 'error', 'fatal', 'off'}
            The log level after processing the request.

        Examples
        --------
        ::

            ?log-level
            !log-level ok warn

            ?log-level info
            !log-level ok info

        """
    if msg.arguments:
        try:
            self.log.set_log_level_by_name(msg.arguments[0])
        except ValueError as exc:
            raise FailReply(str(exc))
    return req.make_reply("ok", self.log.level_name())


def request_restart(self: "DeviceServer", req: ClientRequestConnection, msg: Message) -> Message:
    """Restart the device server.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether scheduling the restart succeeded.

        Examples
        --------
        ::

            ?restart
            !restart ok

        """
    if self._restart_queue is None:
        raise FailReply("No restart queue registered -- cannot restart.")
    # put_nowait never blocks: the queue should have no size limit.
    self._restart_queue.put_nowait(self)
    return req.make_reply("ok")


def request_client_list(self: "DeviceServer", req: ClientRequestConnection,
                        msg: Message) -> Message:
    """Request the list of connected clients.

        The list of clients is sent as a sequence of #client-list informs.

        Informs
        -------
        addr : str
            The address of the client as host:port with host in dotted quad
            notation. If the address of the client could not be determined
            (because, for example, the client disconnected suddenly) then a
            unique string representing the client is sent instead.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the client list succeeded.
        informs : int
            Number of #client-list inform messages sent.

        Examples
        --------
        ::

            ?client-list
            #client-list 127.0.0.1:53600
            !client-list ok 1

        """
    addresses = sorted(conn.address for conn in list(self._client_conns))
    for address in addresses:
        req.inform(address)
    return req.make_reply("ok", len(addresses))


@minimum_katcp_version(VERSION_CONNECT_KATCP_MAJOR)
def request_version_list(self: "DeviceServer", req: ClientRequestConnection,
                         msg: Message) -> Message:
    """Request the list of versions of roles and subcomponents.

        Informs
        -------
        name : str
            Name of the role or component.
        version : str
            A string identifying the version of the component. Individual
            components may define the structure of this argument as they
            choose. In the absence of other information clients should treat
            it as an opaque string.
        build_state_or_serial_number : str
            A unique identifier for a particular instance of a component.
            This should change whenever the component is replaced or updated.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the version list succeeded.
        informs : int
            Number of #version-list inform messages sent.

        Examples
        --------
        ::

            ?version-list
            #version-list katcp-protocol 5.0-MI
            #version-list katcp-library katcp-python-0.4 katcp-python-0.4.1-py2
            #version-list katcp-device foodevice-1.0 foodevice-1.0.0rc1
            !version-list ok 3

        """
    versions = [
        ("katcp-protocol", (str(self.PROTOCOL_INFO), None)),
        ("katcp-library", (VERSION_STR, __version__)),
        ("katcp-device", (self.version(), self.build_state())),
    ] + sorted(self.extra_versions.items())
    for name, (version, build_state) in versions:
        # A build state (or serial number) of None is left out.
        req.inform(name, *[part for part in (version, build_state) if part is not None])
    return req.make_reply("ok", len(versions))


def request_sensor_list(self: SensorHost, req: ClientRequestConnection,
                        msg: Message) -> Message:
    """Request the list of sensors.

        The list of sensors is sent as a sequence of #sensor-list informs.

        Parameters
        ----------
        name : str, optional
            Name of the sensor to list (the default is to list all sensors).
            If name starts and ends with '/' it is treated as a regular
            expression and all sensors whose names contain the regular
            expression are returned.

        Informs
        -------
        name : str
            The name of the sensor being described.
        description : str
            Description of the named sensor.
        units : str
            Units for the value of the named sensor.
        type : str
            Type of the named sensor.
        params : list of str, optional
            Additional sensor parameters (type dependent). For integer and
            float sensors the additional parameters are the minimum and maximum
            sensor value. For discrete sensors the additional parameters are
            the allowed values. For all other types no additional parameters
            are sent.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the sensor list succeeded.
        informs : int
            Number of #sensor-list inform messages sent.

        Examples
        --------
        ::

            ?sensor-list
            #sensor-list psu.voltage PSU\\_voltage. V float 0.0 5.0
            #sensor-list cpu.status CPU\\_status. \\@ discrete on off error
            ...
            !sensor-list ok 5

            ?sensor-list cpu.power.on
            #sensor-list cpu.power.on Whether\\_CPU\\_hase\\_power. \\@ boolean
            !sensor-list ok 1

            ?sensor-list /voltage/
            #sensor-list psu.voltage PSU\\_voltage. V float 0.0 5.0
            #sensor-list cpu.voltage CPU\\_voltage. V float 0.0 3.0
            !sensor-list ok 2

        """
    sensors = _matching_sensors(self, msg)
    # Each sensor's line is formatted once (until its description changes), and the
    # informs leave in one batch.
    if not req.inform_lines([sensor.list_line() for _, sensor in sensors]):
        for name, sensor in sensors:
            req.inform(name, sensor.description, sensor.units, sensor.stype,
                       *sensor.formatted_params)
    return req.make_reply("ok", len(sensors))


def request_sensor_value(self: SensorHost, req: ClientRequestConnection,
                         msg: Message) -> Message:
    """Request the value of a sensor or sensors.

        A list of sensor values as a sequence of #sensor-value informs.

        Parameters
        ----------
        name : str, optional
            Name of the sensor to poll (the default is to send values for all
            sensors). If name starts and ends with '/' it is treated as a
            regular expression and all sensors whose names contain the regular
            expression are returned.

        Informs
        -------
        timestamp : float
            Timestamp of the sensor reading in seconds since the Unix
            epoch, or milliseconds for katcp versions <= 4.
        count : {1}
            Number of sensors described in this #sensor-value inform. Will
            always be one. It exists to keep this inform compatible with
            #sensor-status.
        name : str
            Name of the sensor whose value is being reported.
        value : object
            Value of the named sensor. Type depends on the type of the sensor.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the list of values succeeded.
        informs : int
            Number of #sensor-value inform messages sent.

        Examples
        --------
        ::

            ?sensor-value
            #sensor-value 1244631611.415231 1 psu.voltage nominal 4.5
            #sensor-value 1244631611.415200 1 cpu.status nominal off
            ...
            !sensor-value ok 5

            ?sensor-value cpu.power.on
            #sensor-value 1244631611.415231 1 cpu.power.on nominal 0
            !sensor-value ok 1

        """
    sensors = _matching_sensors(self, msg)
    major = self._katcp_major
    # Each reading is formatted once (shared with #sensor-status informs and other
    # clients), and the informs leave in one batch.
    own = Sensor.read_formatted
    # A sensor whose class formats its reading its own way is asked to, as in 0.9.3.
    if not req.inform_lines([sensor.status_line(sensor.read(), major)
                             if sensor.__class__.read_formatted is own
                             else sensor.formatted_status_line(major)
                             for _, sensor in sensors]):
        for name, sensor in sensors:
            timestamp, status, value = sensor.read_formatted(major)
            req.inform(timestamp, b"1", name, status, value)
    return req.make_reply("ok", len(sensors))


def request_watchdog(self: "DeviceServer", req: ClientRequestConnection, msg: Message) -> Message:
    """Check that the server is still alive.

        Returns
        -------
            success : {'ok'}

        Examples
        --------
        ::

            ?watchdog
            !watchdog ok

        """
    return req.make_reply("ok")


@has_katcp_protocol_flags([ProtocolFlags.REQUEST_TIMEOUT_HINTS])
@minimum_katcp_version(5, 1)
@request(Str(optional=True))
@return_reply(Int())
def request_request_timeout_hint(self: "DeviceServer", req: ClientRequestConnection,
                                 request: Optional[str]) -> Tuple[str, int]:
    """Return timeout hints for requests

        KATCP requests should generally take less than 5s to complete, but some
        requests are unavoidably slow. This results in spurious client timeout
        errors. This request provides timeout hints that clients can use to select
        suitable request timeouts.

        Parameters
        ----------
        request : str, optional
            The name of the request to return a timeout hint for (the default is
            to return hints for all requests that have timeout hints). Returns one
            inform per request. Must be an existing request if specified.

        Informs
        -------
        request : str
            The name of the request.
        suggested_timeout : float
            Suggested request timeout in seconds for the request. If
            `suggested_timeout` is zero (0), no timeout hint is available.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the help succeeded.
        informs : int
            Number of #request-timeout-hint inform messages sent.

        Examples
        --------
        ::

            ?request-timeout-hint
            #request-timeout-hint halt 5
            #request-timeout-hint very-slow-request 500
            ...
            !request-timeout-hint ok 5

            ?request-timeout-hint moderately-slow-request
            #request-timeout-hint moderately-slow-request 20
            !request-timeout-hint ok 1

        Notes
        -----
        ?request-timeout-hint without a parameter will only return informs for
        requests that have specific timeout hints, so it will most probably be a
        subset of all the requests, or even no informs at all.

        """
    handlers = self._request_handlers
    # None: no name given (an empty name is a name, and no request's).
    if request is not None and request not in handlers:
        raise FailReply("Unknown request method")
    hints = [(name, getattr(handlers[name], "request_timeout_hint", None) or 0)
             for name in ([request] if request is not None else sorted(handlers))]
    # Asked about all requests, only those with a hint are listed.
    hints = [(name, hint) for name, hint in hints if hint or request is not None]
    for name, hint in hints:
        req.inform(name, float(hint))
    return ("ok", len(hints))


