"""DeviceServer (sensors, the standard requests) and AsyncDeviceServer."""

import logging
import queue
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import tornado.ioloop

from katcp.core import (INTERFACE_CHANGED_KATCP_MAJOR, VERSION_CONNECT_KATCP_MAJOR, Message,
                        Sensor)
from katcp.loop.crossing import running_loop
from katcp.sampling import SampleStrategy
from katcp.server.base import DeviceServerBase, _done_future, log
from katcp.server import sampling_requests, standard_requests
from katcp.server.logger import DeviceLogger
from katcp.version import VERSION_STR


class _UnknownSensorError(KeyError, ValueError):
    """An unknown sensor name given to remove_sensor().

    A KeyError, as in katcp 0.9.3 (which popped the name from its dict of sensors), and a
    ValueError, as get_sensor() raises; its text is get_sensor()'s, without KeyError's quotes.
    """

    __str__ = Exception.__str__


class DeviceServer(DeviceServerBase):
    """Implements some standard messages on top of DeviceServerBase.

    Inform messages handled are:

      - version (sent on connect)
      - build-state (sent on connect)
      - log (via self.log.warn(...), etc)
      - disconnect
      - client-connected

    Requests handled are:

      - halt
      - help
      - log-level
      - restart [1]_
      - client-list
      - sensor-list
      - sensor-sampling
      - sensor-value
      - watchdog
      - version-list (only standard in KATCP v5 or later)
      - request-timeout-hint (pre-standard only if protocol flags indicates
                              timeout hints, supported for KATCP v5.1 or later)
      - sensor-sampling-clear (non-standard)

    .. [1] Restart relies on .set_restart_queue() being used to register a restart
       queue with the device. When the device needs to be restarted, it will be added
       to the restart queue. The queue should be a Python Queue.Queue object without a
       maximum size.

    Unhandled standard requests are:

      - configure
      - mode

    Subclasses can define the tuple VERSION_INFO to set the interface name, major and
    minor version numbers. The BUILD_INFO tuple can be defined to give a string
    describing a particular interface instance and may have a fourth element containing
    additional version information (e.g. rc1).

    Subclasses may manipulate the versions returned by the ?version-list command by
    editing .extra_versions which is a dictionary mapping role or component names to
    (version, build_state_or_serial_no) tuples. The build_state_or_serial_no may be
    None.

    Subclasses must override the .setup_sensors() method. If they have no sensors to
    register, the method should just be a pass.

    Set the class (or instance) attribute :attr:`SEND_INTERFACE_CHANGED` to True to have
    :meth:`add_sensor` and :meth:`remove_sensor` tell the clients of a running KATCP v5
    server with ``#interface-changed sensor-list``. It is False by default because katcp
    0.9 never sends that inform by itself: its servers send it themselves, after adding
    or removing a batch of sensors.
    """

    SEND_INTERFACE_CHANGED = False
    """Whether add_sensor() / remove_sensor() send ``#interface-changed sensor-list``.

    When True, clients of a running KATCP v5 server are sent the inform once per loop
    iteration in which sensors were added or removed. Off by default, as in katcp 0.9.
    """

    # DeviceServer has a version number and a build state.
    VERSION_INFO = ("device_stub", 0, 1)
    BUILD_INFO = ("name", 0, 1, "")

    # The requests, each defined in the module of its concern.
    request_halt = standard_requests.request_halt
    request_help = standard_requests.request_help
    request_log_level = standard_requests.request_log_level
    request_restart = standard_requests.request_restart
    request_client_list = standard_requests.request_client_list
    request_version_list = standard_requests.request_version_list
    request_sensor_list = standard_requests.request_sensor_list
    request_sensor_value = standard_requests.request_sensor_value
    request_watchdog = standard_requests.request_watchdog
    request_request_timeout_hint = standard_requests.request_request_timeout_hint
    request_sensor_sampling = sampling_requests.request_sensor_sampling
    request_sensor_sampling_clear = sampling_requests.request_sensor_sampling_clear
    clear_strategies = sampling_requests.clear_strategies
    _cancel_sensor_strategies = sampling_requests.cancel_sensor_strategies

    def __init__(self, host: str, port: int, tb_limit: int = 20,
                 logger: Optional[logging.Logger] = log) -> None:
        self._restart_queue: Optional["queue.Queue[Any]"] = None
        self._sensors: Dict[str, Sensor] = {}
        # The sensors sorted by name, for the listing requests: (generation, list),
        # valid while the generation is that of _sensors (add_sensor, remove_sensor).
        self._sensors_generation = 0
        self._sorted_cache: Tuple[int, List[Tuple[str, Sensor]]] = (-1, [])
        self._strategies: Dict[Any, Dict[Sensor, SampleStrategy]] = {}
        self._client_conns: Set[Any] = set()
        # The loop a #interface-changed is queued on (None: none is).
        self._interface_changed_pending: Any = None
        self.extra_versions: Dict[str, Tuple[str, Optional[str]]] = {}
        super().__init__(host, port, tb_limit, logger)
        self.log = DeviceLogger(self, python_logger=self._logger)
        self.setup_sensors()

    def setup_sensors(self) -> None:
        """Populate the dictionary of sensors.

        Unimplemented by default -- subclasses should add their sensors here or pass if
        there are no sensors.

        Examples
        --------
        >>> class MyDevice(DeviceServer):
        ...     def setup_sensors(self):
        ...         self.add_sensor(Sensor(...))
        ...         self.add_sensor(Sensor(...))
        ...

        """

    def version(self) -> str:
        """Return a version string of the form type-major.minor."""
        return "%s-%s.%s" % tuple(self.VERSION_INFO[:3])

    def build_state(self) -> str:
        """Return build state string of the form name-major.minor[(a|b|rc)n]."""
        return "%s-%s.%s%s" % (tuple(self.BUILD_INFO[:3]) + (
            "".join(str(part) for part in self.BUILD_INFO[3:]),))

    def set_restart_queue(self, restart_queue: "queue.Queue[Any]") -> None:
        """Set the restart queue.

        When the device server should be restarted, it will be added to the queue.

        Parameters
        ----------
        restart_queue : Queue.Queue object
            The queue to add the device server to when it should be restarted.

        """
        self._restart_queue = restart_queue

    # -- connections ----------------------------------------------------------------

    def on_client_connect(self, client_conn: Any) -> Any:
        """Inform client of build state and version on connect.

        KATCP v5 servers send ``#version-connect`` informs; v4 ones ``#version`` and
        ``#build-state``, and tell the other clients with ``#client-connected``.
        Subclasses may override it to greet clients otherwise or to do their own
        housekeeping.

        Parameters
        ----------
        client_conn : ClientConnection
            The connection just made.

        Returns
        -------
        ready : Future
            Resolves once the device is ready for the client's messages.

        """
        others = list(self._client_conns)
        self._client_conns.add(client_conn)
        if self._katcp_major >= VERSION_CONNECT_KATCP_MAJOR:
            for version in (("katcp-protocol", str(self.PROTOCOL_INFO)),
                            ("katcp-library", VERSION_STR),
                            ("katcp-device", self.version(), self.build_state())):
                client_conn.inform(Message.inform("version-connect", *version))
        else:
            client_conn.inform(Message.inform("version", self.version()))
            client_conn.inform(Message.inform("build-state", self.build_state()))
            connected = Message.inform("client-connected", client_conn.address)
            for other in others:
                other.inform(connected)
        return _done_future()

    def on_client_disconnect(self, client_conn: Any, msg: str, connection_valid: bool) -> Any:
        """Inform client it is about to be disconnected (``#disconnect msg``).

        Its sampling strategies are cancelled first. Not called for every connection
        that ends: a client may drop it first.

        Parameters
        ----------
        client_conn : ClientConnection
            The connection about to be closed.
        msg : str
            Why it is closed.
        connection_valid : bool
            Whether the connection can still be sent to.

        Returns
        -------
        done : Future
            Resolves once the connection may be closed.

        """
        self._client_conns.discard(client_conn)
        self.clear_strategies(client_conn, remove_client=True)
        if connection_valid:
            client_conn.inform(Message.inform("disconnect", msg))
        client_conn.on_client_disconnect_was_called()
        return _done_future()

    # -- sensors ----------------------------------------------------------------------

    def add_sensor(self, sensor: Sensor) -> None:
        """Add a sensor to the device.

        Usually called inside .setup_sensors() but may be called from elsewhere. With
        :attr:`SEND_INTERFACE_CHANGED`, clients of a running v5 server are sent
        ``#interface-changed sensor-list``. A sensor of the same name added before is
        replaced, and its clients' strategies are ended as :meth:`remove_sensor` ends
        them: the name means only the new sensor (sampled anew with
        ``?sensor-sampling``).

        Parameters
        ----------
        sensor : Sensor object
            The sensor object to register with the device server.

        Raises
        ------
        TypeError
            If `sensor` is not a :class:`Sensor`.

        """
        if not isinstance(sensor, Sensor):
            raise TypeError("add_sensor() takes a Sensor, not %r." % (sensor,))
        replaced = self._sensors.get(sensor.name)
        self._sensors[sensor.name] = sensor
        self._sensors_generation += 1
        if replaced is not None and replaced is not sensor:
            self._end_strategies_of(replaced)
        self._interface_changed()

    def remove_sensor(self, sensor: Union[Sensor, str]) -> None:
        """Remove a sensor from the device.

        Also deregisters all clients observing the sensor. With
        :attr:`SEND_INTERFACE_CHANGED`, clients of a running v5 server are sent
        ``#interface-changed sensor-list``.

        Parameters
        ----------
        sensor : Sensor object or name string
            The sensor to remove from the device server.

        Raises
        ------
        KeyError, ValueError
            If the device has no sensor of that name (the exception is both).

        """
        name = sensor if isinstance(sensor, str) else sensor.name
        removed = self._sensors.pop(name, None)
        if removed is None:
            raise _UnknownSensorError("Unknown sensor '%s'." % (name,))
        self._sensors_generation += 1
        self._end_strategies_of(removed)
        self._interface_changed()

    def _end_strategies_of(self, sensor: Sensor) -> None:
        """End every client's strategy of `sensor`, no longer the device's."""
        if self.running() and not self._server.in_ioloop_thread():
            # Timed samples read the sensor when they run, so they are withdrawn at once:
            # none sends a value set after this returns. (Read from this thread, the
            # loop's dicts at worst miss a strategy starting now; the cancel ends it.)
            for strategies in list(self._strategies.values()):
                strategy = strategies.get(sensor)
                if strategy is not None:
                    strategy._withdrawn = True
            # In its place among what this thread hands the loop: the readings it set
            # before are still sent, none it sets after this returns is. Dropped if the
            # loop closes first (a stop under way), whose disconnects end the strategies.
            self._server.call_soon_threadsafe(self._cancel_sensor_strategies, sensor)
        else:
            self._cancel_sensor_strategies(sensor)

    def _interface_changed(self) -> None:
        # Several changes in one loop iteration give one inform.
        if (not self.SEND_INTERFACE_CHANGED or not self.running()
                or self._katcp_major < INTERFACE_CHANGED_KATCP_MAJOR):
            return
        ioloop = self.ioloop
        if self._interface_changed_pending is ioloop:
            return
        # Pending on this loop: one queued on a loop that closed before running it (a
        # stop under way) holds back none on the loop of a restart.
        self._interface_changed_pending = ioloop
        self._server.call_soon_threadsafe(self._send_interface_changed)

    def _send_interface_changed(self) -> None:
        self._interface_changed_pending = None
        self._server.mass_send_message(Message.inform("interface-changed", "sensor-list"))

    def _sorted_sensors(self) -> List[Tuple[str, Sensor]]:
        """(name, sensor) of every sensor, sorted by name (the list is shared: do not change it)."""
        generation = self._sensors_generation
        known, ordered = self._sorted_cache
        if known != generation or len(ordered) != len(self._sensors):
            ordered = sorted(self._sensors.items())
            # Kept only if no sensor was added or removed meanwhile (from another thread).
            if self._sensors_generation == generation:
                self._sorted_cache = (generation, ordered)
        return ordered

    def get_sensor(self, sensor_name: str) -> Sensor:
        """Fetch the sensor with the given name.

        Parameters
        ----------
        sensor_name : str
            Name of the sensor to retrieve.

        Returns
        -------
        sensor : Sensor object
            The sensor with the given name.

        Raises
        ------
        ValueError
            If there is no such sensor.

        """
        sensor = self._sensors.get(sensor_name)
        if sensor is None:
            raise ValueError("Unknown sensor '%s'." % (sensor_name,))
        return sensor

    def get_sensors(self) -> List[Sensor]:
        """Fetch a list of all sensors.

        Returns
        -------
        sensors : list of Sensor objects
            The list of sensors registered with the device server.

        """
        return list(self._sensors.values())

    def has_sensor(self, sensor_name: str) -> bool:
        """Whether the sensor with specified name is known.

        Parameters
        ----------
        sensor_name : str
            The name of the sensor.

        Returns
        -------
        known : bool
            Whether the device has a sensor of that name.

        """
        return sensor_name in self._sensors


class AsyncDeviceServer(DeviceServer):
    """DeviceServer that is automatically configured for async use.

    Same as instantiating a :class:`DeviceServer` instance and calling methods
    set_concurrency_options(thread_safe=False, handler_thread=False) and
    set_ioloop(tornado.ioloop.IOLoop.current()) before starting.
    """

    def __init__(self, host: str, port: int, tb_limit: int = 20,
                 logger: Optional[logging.Logger] = log) -> None:
        super().__init__(host, port, tb_limit, logger)
        self.set_concurrency_options(thread_safe=False, handler_thread=False)
        if running_loop() is not None:
            # Made on a running loop: that loop, known at once (as katcp 0.9 took
            # IOLoop.current() here), so server.ioloop serves before start() too.
            self.set_ioloop(tornado.ioloop.IOLoop.current())
        else:
            # No loop runs here yet: the one current in the thread that calls start().
            self._server.use_current_ioloop()
