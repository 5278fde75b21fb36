"""Intermediate-level KATCP client that keeps a model of a device's requests and sensors.

:class:`InspectingClientAsync` connects to a device, inspects it with ``?help`` (plus
``?request-timeout-hint`` where supported) and ``?sensor-list``, and keeps that model in
step with the device: it re-inspects after every (re)connection and whenever the device
sends ``#interface-changed``, inspecting only what the inform says has changed. One state
coroutine per client drives this and reports each step through an
:class:`InspectingClientStateType` state (and an optional user callback).

The client is not thread-safe: use it only from its ioloop.

It composes parts of one job each: the model and its diffing (``index``), the current
state and the waits for it (``states``), the state coroutine (``sync``), the requests
that inspect the device (``inspection``), the routing of readings to sensor objects
(``updates``) and the lookup of requests and sensors by name, which makes their objects
(``lookup``); ``parts`` holds the types they share.
"""

import asyncio
import inspect
import logging
# 0.9 code patches katcp.inspecting_client.random.random to fix the backoff's draws.
import random  # noqa: F401
from typing import Any, Callable, Dict, Generator, Iterable, List, Optional, Set, Tuple

import tornado.gen
import tornado.ioloop
import tornado.util

from katcp._export import forward_patches, keep_home
from katcp.core import AttrDict, Message, Sensor, future_timeout_manager, until_any
from katcp.ioloop_manager import current_ioloop
from katcp.loop.backoff import ExponentialRandomBackoff
# Public in its own module, not part of this documented one.
from katcp.loop.futures import give_up as _give_up
from katcp.loop.futures import owning_relay as _owning_relay
from katcp.loop.futures import until_all as _until_all
from katcp.wire.util import own_methods, uses_own

ic_logger = logging.getLogger("katcp.inspect_client")

# Documented here since 0.9; shared with other retrying code from katcp.loop.backoff.
keep_home(__name__, ExponentialRandomBackoff)

from katcp.inspecting_client.index import Index, _Model, difference, reindex, update_index
from katcp.inspecting_client.inspection import _Inspector
from katcp.inspecting_client.lookup import _Lookup
from katcp.inspecting_client.parts import (  # noqa: F401 (documented here)
    InspectingClientStateType, RequestType, SyncError, _InformHookDeviceClient, _PendingChanges)
from katcp.inspecting_client.states import _StateReport, in_state_callback
from katcp.inspecting_client.sync import _StateCoroutine
from katcp.inspecting_client.updates import _SensorUpdates

# Documented (and pickled) here since 0.9.
keep_home(__name__, RequestType, SyncError, InspectingClientStateType, _InformHookDeviceClient,
          _PendingChanges)


class InspectingClientAsync:
    """Higher-level client that inspects a KATCP interface.

    Note: This class is not thread-safe at present, it should only be called from
    the ioloop.

    Note: always call stop() after start() and you are done with the container to
    make sure the container cleans up correctly.

    Parameters
    ----------
    host : str
        Host of the KATCP device.
    port : int
        Port of the KATCP device.
    ioloop : tornado.ioloop.IOLoop or None
        Loop to run on; defaults to the current loop.
    initial_inspection : bool or None
        True or None (the default): inspect all requests and sensors whenever the
        client (re)connects. False: skip that inspection, learning about requests and
        sensors only as they are looked up (future_get_sensor etc.); resyncs then
        re-inspect only the requests and sensors already known.
    auto_reconnect : bool
        Whether to reconnect automatically if the connection is lost.
    logger : logging.Logger
        Logger to log to.
    """

    sensor_factory: Callable[..., Any] = Sensor
    """Factory that produces sensor objects, called with keyword arguments name,
    sensor_type, description, units and params. Should be set before start()."""

    request_factory: Callable[..., Any] = RequestType
    """Factory that produces KATCP Request objects.

    signature: request_factory(name, description, timeout_hint), all parameters
    passed as kwargs. Should be set before calling connect()/start().
    """

    resync_delay: Optional[ExponentialRandomBackoff] = None
    """Set to an ExponentialRandomBackoff instance when the state coroutine starts
    (unless set before start())."""

    initial_resync_timeout = 1.0
    """Seconds before the first retry of a failed inspection (the default
    :attr:`resync_delay`'s initial delay); set before start()."""

    max_resync_timeout = 90.0
    """Upper bound of the delay between retries of a failed inspection (the default
    :attr:`resync_delay`'s maximum); set before start()."""

    def __init__(self, host: str, port: int, ioloop: Optional[tornado.ioloop.IOLoop] = None,
                 initial_inspection: Optional[bool] = None, auto_reconnect: bool = True,
                 logger: Optional[logging.Logger] = ic_logger) -> None:
        self._logger = logger = ic_logger if logger is None else logger
        self.initial_inspection = initial_inspection is not False
        self._model = _Model()
        self._update_on_lookup = True
        self._states = _StateReport(self)
        self._state_loop_future: Any = None
        self.katcp_client = self.inform_hook_client_factory(
            host, port, auto_reconnect=auto_reconnect, logger=logger)
        self._sensor_updates = _SensorUpdates(self, self._model, _OWN_UPDATE_SENSOR)
        self._inspector = _Inspector(self, self._model)
        self._sync = _StateCoroutine(self, self._states, self._inspector)
        self._lookup = _Lookup(self, self._model, self._states)
        self.set_ioloop(ioloop or current_ioloop())
        self.katcp_client.hook_inform("interface-changed", self._cb_inform_interface_change)
        self.katcp_client.hook_inform("sensor-status", self._sensor_status_hook())
        self.katcp_client.notify_connected = (  # type: ignore[method-assign]
            self._cb_connection_state)

    def inform_hook_client_factory(self, host: str, port: int, *args: Any, **kwargs: Any
                                   ) -> _InformHookDeviceClient:
        """Return an instance of :class:`_InformHookDeviceClient` or similar.

        Provided to ease testing. Dynamically overriding this method after
        instantiation but before start() is called allows for deep brain surgery.
        See :func:`katcp.fake_clients.fake_inspecting_client_factory`.
        """
        return _InformHookDeviceClient(host, port, *args, **kwargs)

    def set_ioloop(self, ioloop: tornado.ioloop.IOLoop) -> None:
        """Set the tornado ioloop to use (for this client and its KATCP client).

        Parameters
        ----------
        ioloop : tornado.ioloop.IOLoop
        """
        self.ioloop = ioloop
        self.katcp_client.set_ioloop(ioloop)

    # -- model and state properties -------------------------------------------------

    @property
    def state(self) -> InspectingClientStateType:
        """Current client state."""
        return self._states.state

    @property
    def synced(self) -> bool:
        """Boolean indicating if the device has been synchronised."""
        return self._states.state.synced

    @property
    def _state(self) -> InspectingClientStateType:
        # 0.9's name for it.
        return self._states.state

    def running(self) -> bool:
        """Whether the client runs: between connect() and stop(), unless its KATCP
        client stopped on its own (lost its connection without auto_reconnect)."""
        return self._sync.running

    @property
    def connection_count(self) -> int:
        """Number of connections made so far: a change tells that the connection was
        replaced meanwhile."""
        return self._sync.connection_count

    @property
    def _requests_index(self) -> Index:
        # 0.9 code reads and replaces the indexes under these names.
        return self._model.requests

    @_requests_index.setter
    def _requests_index(self, index: Index) -> None:
        self._model.requests = index

    @property
    def _sensors_index(self) -> Index:
        return self._model.sensors

    @_sensors_index.setter
    def _sensors_index(self, index: Index) -> None:
        self._model.sensors = index

    @property
    def requests(self) -> List[str]:
        """A list of possible requests."""
        return list(self._model.requests)

    @property
    def sensors(self) -> List[str]:
        """A list of known sensors."""
        return list(self._model.sensors)

    def is_connected(self) -> bool:
        """Connection status."""
        return self.katcp_client.is_connected()

    connected = property(is_connected)

    def set_state_callback(self, cb: Optional[Callable[..., Any]]) -> None:
        """Set user callback for state changes

        Called as ``cb(state, model_changes)``

        where `state` is an :class:`InspectingClientStateType` instance, and
        `model_changes` is an :class:`~katcp.core.AttrDict`. The latter may contain
        keys ``requests`` and ``sensors`` to describe changes to requests or sensors
        respectively. These in turn have attributes ``added`` and ``removed`` which
        are sets of request/sensor names. Requests/sensors that have been modified
        will appear in both sets. The callback may return a future, which the
        client waits for before carrying on.

        .. warning::

            It is possible for `model_changes` to be ``None``, or for either
            ``requests`` or ``sensors`` to be absent from `model_changes`.
        """
        self._states.callback = cb

    def preset_protocol_flags(self, protocol_flags: Any) -> None:
        """Preset server protocol flags.

        Sets the assumed server protocol flags and disables automatic server version
        detection.

        Parameters
        ----------
        protocol_flags : katcp.core.ProtocolFlags instance
        """
        self.katcp_client.preset_protocol_flags(protocol_flags)

    def handle_sensor_value(self) -> None:
        """Handle #sensor-value informs just like #sensor-status informs"""
        self.katcp_client.hook_inform("sensor-value", self._sensor_status_hook())

    def _sensor_status_hook(self) -> Callable[[Message], None]:
        # Straight to the router, a call less per inform, unless _cb_inform_sensor_status
        # is overridden or replaced (asked at each hooking, as it was looked up then).
        if uses_own(self, _OWN_SENSOR_STATUS):
            return self._sensor_updates.on_inform
        return self._cb_inform_sensor_status

    # -- waiting for states ---------------------------------------------------------

    def _create_future(self) -> "asyncio.Future[Any]":
        # A future of this client's loop, whichever thread's loop is current.
        loop: asyncio.AbstractEventLoop = self.ioloop.asyncio_loop  # type: ignore[attr-defined]
        return loop.create_future()

    def until_state(self, desired_state: InspectingClientStateType,
                    timeout: Optional[float] = None) -> Any:
        """Wait until state is desired_state, InspectingClientStateType instance

        Returns a future

        Raises
        ------
        TypeError
            If `desired_state` is not a tuple of the four fields of
            :class:`InspectingClientStateType` (a name such as ``"synced"``, which a
            :class:`~katcp.resource_client.KATCPClientResource` takes): no state would ever
            equal it, and the wait would never end.
        """
        if (not isinstance(desired_state, tuple)
                or len(desired_state) != len(InspectingClientStateType._fields)):
            raise TypeError(f"until_state() takes an InspectingClientStateType("
                            f"connected, synced, model_changed, data_synced), not "
                            f"{desired_state!r}")
        return self._states.until(lambda state: state == desired_state, timeout)

    def until_connected(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves when the client is connected."""
        return self._states.until(lambda state: state.connected, timeout)

    def until_synced(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves when the client is synced."""
        return self._states.until(lambda state: state.synced, timeout)

    def until_not_synced(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves when the client is not synced."""
        return self._states.until(lambda state: not state.synced, timeout)

    def until_data_synced(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves when the client's model is up to date."""
        return self._states.until(lambda state: state.data_synced, timeout)

    # -- lifecycle ------------------------------------------------------------------

    @tornado.gen.coroutine
    def connect(self, timeout: Optional[float] = None) -> Generator[Any, Any, None]:
        """Connect to KATCP interface, starting what is needed

        Parameters
        ----------
        timeout : float, None
            Time to wait until connected. No waiting if None.

        Raises
        ------
        tornado.gen.TimeoutError
            If the connect timeout expires.
        """
        if self._sync.running:
            raise AssertionError("InspectingClientAsync already started")  # also under -O
        self._sync.running = True
        maybe_timeout = future_timeout_manager(timeout, self.ioloop)
        client = self.katcp_client
        try:
            client.start()
        except BaseException:
            # Not started (its KATCP client still stopping, say): a later connect() may.
            self._sync.running = False
            raise
        # stop() may be called while this waits; the client then never runs.
        stopped = client.until_stopped()
        running = client.until_running()
        connected = client.until_connected() if timeout else None
        try:
            yield maybe_timeout(until_any(running, stopped))
            if connected is not None:
                yield maybe_timeout(until_any(connected, stopped))
        except tornado.gen.TimeoutError:
            self.stop()
            raise
        finally:
            # A wait given up stays registered until cancelled: each connect that timed
            # out left one for a connection, which a device that stays away never ends.
            _give_up(stopped, running, connected)
        if self._sync.running:
            self._start_state_loop()

    def start(self, timeout: Optional[float] = None) -> Any:
        """:meth:`connect` (with the same `timeout`); see the class's note on stop()."""
        return self.connect(timeout)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the client; the state coroutine sends a final not-connected state.

        The `timeout` is passed on to the KATCP client's stop().
        """
        self._sync.running = False
        self._sync.wake()
        self.katcp_client.stop(timeout)

    def close(self) -> None:
        """Stop the client and wait for its thread (if any) to end."""
        self.stop()
        self.join()

    def join(self, timeout: Optional[float] = None) -> None:
        """Rejoin the KATCP client's ioloop thread (if managed), waiting up to `timeout`
        seconds."""
        self.katcp_client.join(timeout)

    def until_stopped(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves when the client has stopped

        See the `DeviceClient.until_stopped` docstring for parameter definitions and
        more info. It resolves to None once the KATCP client and this client's state
        coroutine have ended; given up (cancelled, timed out), it leaves both alone.
        """
        waits = [self.katcp_client.until_stopped()]
        # Asked from this client's own state callback, it leaves out the state coroutine
        # (as 0.9.3 did): that waits for the callback, and the wait would never end.
        if self._state_loop_future is not None and in_state_callback.get() is not self:
            # A wait of its own on the state coroutine, which a wait given up leaves be.
            waits.append(asyncio.shield(self._state_loop_future))
        # Given up, it gives up its waits: unregistered, they do not pile up.
        return _owning_relay(_until_all(*waits, timeout=timeout), keep_result=False)

    # -- the state coroutine --------------------------------------------------------

    def _start_state_loop(self) -> None:
        # _state_loop may be replaced (e.g. by a test that drives inspection by
        # hand); run whatever awaitable it returns, if any.
        running = self._state_loop()
        if inspect.isawaitable(running) or tornado.gen.is_future(running):
            # until_stopped() shields it, which takes no concurrent future (tornado's
            # convert_yielded passes one through): those are wrapped on this, the
            # client's, loop.
            self._state_loop_future = asyncio.wrap_future(tornado.gen.convert_yielded(running))

    def _cb_connection_state(self, connected: bool) -> None:
        self._sync.on_connection_state(connected)

    def _state_loop(self) -> Any:
        """The state coroutine (see :class:`~katcp.inspecting_client.sync._StateCoroutine`)."""
        return self._sync.run()

    # -- inspection -----------------------------------------------------------------

    @tornado.gen.coroutine
    def inspect(self) -> Generator[Any, Any, Optional[AttrDict]]:
        """Inspect device requests and sensors, update model.

        Returns
        -------
        Tornado future that resolves with:

        model_changes : Nested AttrDict or None
            Contains sets of added/removed request/sensor names

            Example structure::

                {'requests': {'added': set(['req1', 'req2']),
                              'removed': set(['req10', 'req20'])},
                 'sensors': {'added': set(['sens1', 'sens2']),
                             'removed': set(['sens10', 'sens20'])}}

            If there are no changes keys may be omitted. If an item is in both the
            'added' and 'removed' sets that means that it changed.

            If neither request not sensor changes are present, None is returned
            instead of a nested structure.

        If the inspection fails, the model is left as it was (as in 0.9.3), so that the
        changes found before the failure are found, and reported, again.
        """
        pending = _PendingChanges()
        pending.add_all()
        model_changes = AttrDict()
        before = self._model.snapshot()
        try:
            # Everything the device has, initial_inspection or not: that only limits what
            # the client's own resyncs look at.
            yield self._inspector.pending(pending, model_changes, everything=True)
        except BaseException:
            self._model.undo(before, model_changes)
            raise
        return model_changes or None

    @tornado.gen.coroutine
    def inspect_requests(self, name: Optional[str] = None, timeout: Optional[float] = None
                         ) -> Generator[Any, Any, Optional[AttrDict]]:
        """Inspect all or one requests on the device. Update requests index.

        Parameters
        ----------
        name : str or None, optional
            Name of the request or None to get all requests.
        timeout : float or None, optional
            Timeout for request inspection, None for no timeout

        Returns
        -------
        Tornado future that resolves with:

        changes : :class:`~katcp.core.AttrDict` or None
            Sets of the requests ``added`` and ``removed`` (modified ones are in
            both), as in the ``requests`` item of :meth:`inspect`'s result; None if
            nothing changed.
        """
        return (yield from self._inspector.requests(name, timeout))

    @tornado.gen.coroutine
    def inspect_sensors(self, name: Optional[str] = None, timeout: Optional[float] = None
                        ) -> Generator[Any, Any, Optional[AttrDict]]:
        """Inspect all or one sensor on the device. Update sensors index.

        As :meth:`inspect_requests`, for sensors.
        """
        return (yield from self._inspector.sensors(name, timeout))

    def _update_index(self, index: Index, name: str, data: Dict[str, Any]) -> None:
        """Store what the device says about item `name` in `index` (see
        :func:`~katcp.inspecting_client.index.update_index`)."""
        update_index(index, name, data)

    def _difference(self, original_keys: Iterable[str], updated_keys: Iterable[str],
                    name: Optional[str], index: Index) -> Tuple[Set[str], Set[str]]:
        """What an inspection changed (see :func:`~katcp.inspecting_client.index.difference`)."""
        return difference(original_keys, updated_keys, name, index)

    def _reindex(self, index: Index, found: Index, name: Optional[str]) -> Optional[AttrDict]:
        """Store in `index` the items an inspection `found` (name -> data): through this
        client's _update_index and _difference, which a subclass may override."""
        return reindex(index, found, name, self._update_index, self._difference)

    # -- looking up requests and sensors --------------------------------------------

    @tornado.gen.coroutine
    def future_check_sensor(self, name: str, update: Optional[bool] = None
                            ) -> Generator[Any, Any, bool]:
        """Check if the sensor exists.

        Used internally by future_get_sensor. This method is aware of
        synchronisation in progress and if inspection of the server is allowed.

        Parameters
        ----------
        name : str
            Name of the sensor to verify.
        update : bool or None, optional
            If a katcp request to the server should be made to check if the sensor
            is on the server now. True = Allow, False do not Allow, None use the class
            default.

        Notes
        -----
        Ensure that self.state.data_synced == True if yielding to
        future_check_sensor from a state-change callback, or a deadlock will occur.
        """
        return (yield self._lookup.check("sensors", name, update))

    @tornado.gen.coroutine
    def future_check_request(self, name: str, update: Optional[bool] = None
                             ) -> Generator[Any, Any, bool]:
        """Check if the request exists: as :meth:`future_check_sensor`, for requests.

        Used internally by future_get_request.
        """
        return (yield self._lookup.check("requests", name, update))

    def future_get_sensor(self, name: str, update: Optional[bool] = None) -> Any:
        """Get the sensor object.

        Check if we have information for this sensor, if not connect to server and
        update (if allowed) to get information.

        Parameters
        ----------
        name : string
            Name of the sensor.
        update : bool or None, optional
            True allow inspect client to inspect katcp server if the sensor is not
            known.

        Returns
        -------
        A tornado Future resolving to the sensor created by :meth:`sensor_factory`, or
        to None if the sensor is not found.

        Notes
        -----
        Ensure that self.state.data_synced == True if yielding to future_get_sensor
        from a state-change callback, or a deadlock will occur.
        """
        return self._lookup.get("sensors", name, update)

    def future_get_request(self, name: str, update: Optional[bool] = None) -> Any:
        """Get the request object: as :meth:`future_get_sensor`, for requests.

        Returns
        -------
        A tornado Future resolving to the request created by :meth:`request_factory`,
        or to None if the request is not found.
        """
        return self._lookup.get("requests", name, update)

    def _future_get_many(self, kind: str, names: Iterable[str]) -> Any:
        """One future resolving to the list of objects (None for an unknown name) of
        `kind` ('sensors' or 'requests') called `names`.

        As :meth:`future_get_sensor` or :meth:`future_get_request` for each name, but
        known names of an up-to-date model cost no future each (a resource gets every
        sensor of its device this way while it syncs).
        """
        return self._lookup.many(kind, names)

    def _sensor_maker(self) -> Callable[[str, Dict[str, Any]], Any]:
        """``make(name, info)`` giving the sensor object of an index entry: looked up
        once for a whole batch of sensors."""
        return self._make_sensor

    def _make_sensor(self, name: str, info: Dict[str, Any]) -> Any:
        return self._lookup.make_sensor(name, info)

    def _sensor_description(self, name: str, info: Dict[str, Any]) -> Dict[str, Any]:
        """The keyword arguments of :attr:`sensor_factory` for sensor `name` of the index."""
        return self._lookup.sensor_description(name, info)

    def _make_request(self, name: str, info: Dict[str, Any]) -> Any:
        return self._lookup.make_request(name, info)

    # -- talking to the device ------------------------------------------------------

    def simple_request(self, request: str, *args: Any, timeout: Optional[float] = None,
                       mid: Optional[int] = None, use_mid: Optional[bool] = None) -> Any:
        """Create and send a request to the server.

        This method implements a very small subset of the options possible to send
        an request. It is provided as a shortcut to sending a simple request.

        Parameters
        ----------
        request : str
            The request to call.
        *args : list of objects
            Arguments to pass on to the request.
        timeout : float or None, optional
            Timeout after this amount of seconds (keyword argument).
        mid : None or int, optional
            Message identifier to use for the request message. If None, use either
            auto-incrementing value or no mid depending on the KATCP protocol version
            (mid's were only introduced with KATCP v5) and the value of the `use_mid`
            argument. Defaults to None
        use_mid : bool
            Use a mid for the request if True. Defaults to True if the server
            supports them.

        Returns
        -------
        future object.

        Examples
        --------
        ::

            reply, informs = yield ic.simple_request('help', 'sensor-list')
        """
        msg = Message.request(request, *args, mid=mid)
        return self.katcp_client.future_request(msg, timeout, use_mid)

    @tornado.gen.coroutine
    def update_sensor(self, name: str, timestamp: bytes, status: bytes, value: bytes) -> None:
        """Set a sensor object (if one was made) to a KATCP formatted reading.

        Called for each reading of a ``#sensor-status`` inform (and of ``#sensor-value``
        after :meth:`handle_sensor_value`), so an override or a replacement sees them all.
        An ``async def`` override is run on the client's loop; what it raises is logged.

        Parameters
        ----------
        name : str
            Name of the sensor.
        timestamp, status, value : bytes
            The reading as it appears in a #sensor-status inform.
        """
        self._sensor_updates.set_formatted(name, timestamp, status, value)

    def _cb_inform_sensor_status(self, msg: Message) -> None:
        """Update sensor objects from a #sensor-status (or #sensor-value) inform."""
        self._sensor_updates.on_inform(msg)

    def _cb_inform_interface_change(self, msg: Message) -> None:
        """Note what the device says has changed (see the KATCP spec) and resync."""
        self._sync.on_interface_changed(msg)


_OWN_SENSOR_STATUS = own_methods(InspectingClientAsync, "_cb_inform_sensor_status")
_OWN_UPDATE_SENSOR = InspectingClientAsync.update_sensor

# 0.9.3 code and tests patch names here that its one module looked up at call time.
forward_patches(__name__)
