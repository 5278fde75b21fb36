"""Client resources: one device (:class:`KATCPClientResource`) or many in a container."""

import asyncio
import collections
import functools
import inspect
import logging
import re
import sys
from typing import Any, Callable, Dict, Generator, Iterable, List, Optional, Sequence, Tuple

import tornado.gen
import tornado.ioloop
import tornado.util

from katcp import resource
from katcp.client.lifecycle import check_port
from katcp.core import AsyncEvent, AsyncState, AttrDict, log_future_exceptions
from katcp.display import did_you_mean, object_repr
from katcp.ioloop_manager import current_ioloop
from katcp.loop.crossing import call_on_loop, on_loop, wait_for_loop
from katcp.loop.futures import failed_future, until_all, until_first, windowed
from katcp.loop.futures import owning_relay as _owning_relay
from katcp.resource import StrategyResult, StrategySpec, escape_name
from katcp.resource.base import STRATEGY_WINDOW, read_only
from katcp.resource_client.groups import ClientGroup
from katcp.resource_client.inspecting import (_NONE_STRATEGY, KATCPClientResourceRequest,
                                              KATCPClientResourceSensorsManager,
                                              ReplyWrappedInspectingClientAsync,
                                              _StrategyWishes)
from katcp.resource_client.namespaces import _Namespace, _RequestNamespace
from katcp.wire.types import address_to_string
from katcp.wire.util import plain_callback, request_name_of

# The package's logger: the one 0.9 logged to.
log = logging.getLogger("katcp.resource_client")


@tornado.gen.coroutine
def list_sensors(parent_class: resource.KATCPResource, sensor_items: Any, filter: str,
                 strategy: bool, status: str, use_python_identifiers: bool, tuple: bool,
                 refresh: bool) -> Generator[Any, Any, List[Any]]:
    """Helper for implementing :meth:`katcp.resource.KATCPResource.list_sensors`

    The parameters not listed here are as for
    :meth:`katcp.resource.KATCPResource.list_sensors`.

    Parameters
    ----------
    sensor_items : tuple of sensor-item tuples
        As would be returned the items() method of a dict containing KATCPSensor
        objects keyed by Python-identifiers.
    parent_class : KATCPClientResource or KATCPClientResourceContainer
        Is used for prefix calculation.
    """
    filter_re = re.compile(filter)
    status_re = re.compile(status) if status else None
    in_container = isinstance(parent_class, KATCPClientResourceContainer)
    found_sensors: List[Any] = []
    for identifier, sensor_obj in sorted(sensor_items, key=lambda item: item[0]):
        search_name = identifier if use_python_identifiers else sensor_obj.name
        if not filter_re.search(search_name):
            continue
        if strategy and sensor_obj.sampling_strategy == _NONE_STRATEGY:
            continue
        try:
            sensor_type = sensor_obj.type
        except ValueError as exc:
            # What the device says of it (a type no KATCP version has, say) cannot be
            # read, nor its readings: one such sensor must not fail the whole list.
            getattr(parent_class, "_logger", log).warning(
                "Sensor %s of %s left out: %s", sensor_obj.name, sensor_obj.parent_name, exc)
            continue
        if refresh:
            yield sensor_obj.get_value()
        reading = sensor_obj.reading
        if status_re and not status_re.search(reading.status):
            continue
        prefix = ""
        if in_container and not sensor_obj.name.startswith("agg_"):
            prefix = sensor_obj.parent_name + "."
        if tuple:
            found_sensors.append((prefix + sensor_obj.name, reading.value,
                                  reading.timestamp, sensor_type, sensor_obj.units,
                                  reading.received_timestamp, reading.status,
                                  sensor_obj.sampling_strategy))
        else:
            found_sensors.append(resource.SensorResultTuple(
                object=sensor_obj, name=prefix + sensor_obj.name,
                python_identifier=identifier, description=sensor_obj.description,
                type=sensor_type, units=sensor_obj.units, reading=reading))
    return found_sensors


@tornado.gen.coroutine
def monitor_resource_sync_state(resource: Any, callback: Callable[[bool], Any],
                                exit_event: Optional[AsyncEvent] = None
                                ) -> Generator[Any, Any, None]:
    """Coroutine that monitors a KATCPResource's sync state.

    Calls callback(True/False) whenever the resource becomes synced or unsynced. Will
    always do an initial callback(False) call. Exits without calling callback() if
    exit_event is set.

    Warning: set the monitor's exit_event before stopping the resources being
    monitored, otherwise it could result in a memory leak. The until_synced() or
    until_not_synced() methods could keep a reference to the resource alive.

    Parameters
    ----------
    resource : :class:`KATCPClientResource` or :class:`KATCPClientResourceContainer`
    callback : callable
        Called with True when synced and False when not.
    exit_event : :class:`katcp.core.AsyncEvent`, optional
        Set it to end the monitor.

    Raises
    ------
    TypeError
        If `callback` is an ``async def`` function (its coroutines would never run).
    """
    plain_callback(callback, "callback")
    exit_event = exit_event or AsyncEvent()
    synced = False
    callback(synced)
    while not exit_event.is_set():
        until_change = resource.until_not_synced if synced else resource.until_synced
        # Both waits are its own: the one not met is cancelled, not left registered.
        yield until_first(until_change(), exit_event.until_set())
        if not exit_event.is_set():
            synced = not synced
            callback(synced)


class KATCPClientResource(resource.KATCPResource):
    """Class managing a client connection to a single KATCP resource

    Inspects the KATCP interface of the resources, exposing sensors and requests as
    per the :class:`katcp.resource.KATCPResource` API. Can also operate without
    exposing requests (``controlled=False``), for monitoring only.

    Parameters
    ----------
    resource_spec : dict with resource specifications. Keys:
        name : str
            Name of the resource
        description : str, optional
            Description of the resource
        address : (host, port)
            Host as str, port as int (ValueError at construction if it is no such
            pair, or its port is one no client can connect to).
        always_allowed_requests : seq of str,
            KACTP requests that are always allowed, even when the resource is not
            controlled. '-' and '_' will be treated equivalently.
        always_excluded_requests : seq of str,
            KACTP requests that are never allowed, even if the resource is
            controlled. Overrides requests in `always_allowed_requests`. '-' and
            '_' will be treated equivalently.
        controlled : bool, default: False
            True if control over the device (i.e. KATCP requests) is to be exposed.
        dummy_unknown_requests : bool, default: False
            True to make ``req.<name>`` of a request the device does not have a
            :class:`katcp.resource.KATCPDummyRequest` (which replies ``ok`` without
            contacting the device) instead of an AttributeError.
        auto_reconnect : bool, default: True
            If True, auto-reconnect should the network connection be closed.
        preset_protocol_flags : :class:`katcp.core.ProtocolFlags`, optional
            Assume these server protocol flags instead of detecting them.
    parent : :class:`KATCPResource` or None
        Parent KATCPResource object if this client is a child in a resource
        hierarchy
    logger : object, optional
        Python Logger object to log to, default is the module logger
    """

    MAX_LOOP_LATENCY = 0.03
    """When doing potentially tight loops in coroutines yield tornado.gen.moment after
    this much time. This is a suggestion for methods to use."""

    def __init__(self, resource_spec: Dict[str, Any],
                 parent: Optional["KATCPClientResourceContainer"] = None,
                 logger: Optional[logging.Logger] = log) -> None:
        super().__init__()
        self._logger = logger = log if logger is None else logger
        self._name = resource_spec["name"]
        self._address = _client_address(resource_spec["address"])
        self._description = resource_spec.get("description", "")
        self._parent = parent
        self._controlled = resource_spec.get("controlled", False)
        self._dummy_unknown_requests = resource_spec.get("dummy_unknown_requests", False)
        self.auto_reconnect = resource_spec.get("auto_reconnect", True)
        self._preset_protocol_flags = resource_spec.get("preset_protocol_flags")
        self._always_allowed_requests = set(
            map(escape_name, resource_spec.get("always_allowed_requests", ())))
        self._always_excluded_requests = set(
            map(escape_name, resource_spec.get("always_excluded_requests", ())))
        self._req = _RequestNamespace(
            self._dummy_request if self._dummy_unknown_requests else None)
        self._sensor = _Namespace("sensor")
        self._state = AsyncState(("disconnected", "syncing", "synced"), "disconnected")
        # The strategies asked for, by any way (see _StrategyWishes): given to every
        # sensors manager this resource makes, they outlive its restarts.
        self._strategy_wishes = _StrategyWishes()
        self._sensor_listener_cache: Dict[str, List[Callable[..., Any]]] = (
            collections.defaultdict(list))
        self._ioloop_set_to: Optional[tornado.ioloop.IOLoop] = None
        self.ioloop: Optional[tornado.ioloop.IOLoop] = None
        self._inspecting_client: Any = None
        self._sensor_manager: Any = None
        # True from a start() that replaces an inspecting client until its successor's
        # first sync: until then req and sensor hold what the previous one found.
        self._namespaces_of_previous_client = False

    state = read_only("_state.state",
                      "The current state, one of 'disconnected', 'syncing' or 'synced'.")

    @property
    def synced(self) -> bool:
        """True if the interface of the device is in sync with this resource."""
        return self._state.state == "synced"

    name = read_only("_name")
    description = read_only("_description")
    address = read_only("_address")
    parent = read_only("_parent")
    req = read_only("_req")
    sensor = read_only("_sensor")
    controlled = read_only(
        "_controlled",
        "True if the device's requests are exposed (resource spec ``controlled``).")
    dummy_unknown_requests = read_only(
        "_dummy_unknown_requests",
        "True if ``req.<unknown>`` gives a dummy request (resource spec key).")
    inspecting_client = read_only(
        "_inspecting_client",
        "The inspecting client that talks to the device (made by start(); None before).")

    @property
    def children(self) -> AttrDict:
        return AttrDict()

    @property
    def versions(self) -> Any:
        """Versions the device reported (its client's ``versions``).

        Raises
        ------
        RuntimeError
            Before :meth:`start`.
        """
        return self._katcp_client().versions

    @property
    def last_connect_time(self) -> Optional[float]:
        """When the client last connected to the device (its client's
        ``last_connect_time``); RuntimeError before :meth:`start`."""
        return self._katcp_client().last_connect_time

    def _katcp_client(self) -> Any:
        if self._inspecting_client is None:
            raise RuntimeError("Cannot find inspecting client, have you called start()?")
        return self._inspecting_client.katcp_client

    def is_connected(self) -> bool:
        """Indication of the connection state

        Returns True if state is not "disconnected", i.e "syncing" or "synced"
        """
        return self._state.state != "disconnected"

    def set_ioloop(self, ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        """Set the tornado ioloop to use

        Defaults to tornado.ioloop.IOLoop.current() if set_ioloop() is not called or if
        ioloop=None. Must be called before start()
        """
        self._ioloop_set_to = ioloop

    def inspecting_client_factory(self, host: str, port: int,
                                  ioloop_set_to: Optional[tornado.ioloop.IOLoop]
                                  ) -> ReplyWrappedInspectingClientAsync:
        """Return an instance of :class:`ReplyWrappedInspectingClientAsync` or similar

        Provided to ease testing. Dynamically overriding this method after instantiation
        but before start() is called allows for deep brain surgery. See
        :class:`katcp.fake_clients.fake_inspecting_client_factory`
        """
        return ReplyWrappedInspectingClientAsync(
            host, port, ioloop=ioloop_set_to, auto_reconnect=self.auto_reconnect,
            logger=self._logger)

    def start(self) -> None:
        """Start the client and connect

        Without :meth:`set_ioloop`, the resource runs on the loop given by
        :func:`katcp.ioloop_manager.current_ioloop` (in terminal IPython, the loop of
        its ``await`` cells). A resource already started (and not stopped since) is
        left as it is: it keeps its one connection.

        Called from another thread while the loop given to :meth:`set_ioloop` runs, the
        start is done on that loop, and waited for (0.9.3's connection went on there).
        """
        ioloop = self._ioloop_set_to
        if (ioloop is not None and not on_loop(ioloop)
                and ioloop.asyncio_loop.is_running()):  # type: ignore[attr-defined]
            wait_for_loop(call_on_loop(ioloop, None, self.start), ioloop, None,
                          lambda: f"{self!r}: its loop stopped before it started")
            return
        previous = self._inspecting_client
        if previous is not None and previous.running():
            if not previous.katcp_client.stopped():
                return
            # Its client stopped on its own (a lost connection without auto_reconnect):
            # the inspecting client's state coroutine is ended too.
            previous.stop()
        if previous is not None:
            self._namespaces_of_previous_client = True
            # The state is the new client's from now on: a stop() just before left the
            # previous one's (synced, say) until its last callback, which would wake
            # until_synced() before the new client has even connected.
            self._state.set_state("disconnected")
        host, port = self._address
        ic = self._inspecting_client = self.inspecting_client_factory(
            host, port, self._ioloop_set_to or current_ioloop())
        self.ioloop = ic.ioloop
        if self._preset_protocol_flags:
            ic.preset_protocol_flags(self._preset_protocol_flags)
        ic.set_state_callback(self._inspecting_client_state_callback)
        ic.request_factory = self._request_factory
        self._sensor_manager = KATCPClientResourceSensorsManager(
            ic, self._name, logger=self._logger)
        self._sensor_manager._wishes = self._strategy_wishes
        ic.handle_sensor_value()
        ic.sensor_factory = self._sensor_manager.sensor_factory
        log_future_exceptions(self._logger, ic.connect())

    def stop(self) -> None:
        """Stop the inspecting client and its connection."""
        if self._inspecting_client is not None:
            self._inspecting_client.stop()

    def until_stopped(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves when the inspecting client has stopped

        See the `DeviceClient.until_stopped` docstring for parameter
        definitions and more info.
        """
        if self._inspecting_client is None:
            return _done_future()  # never started: nothing to wait for
        return self._inspecting_client.until_stopped(timeout)

    def until_state(self, state: str, timeout: Optional[float] = None) -> Any:
        """Future that resolves when a certain client state is attained

        Parameters
        ----------
        state : str
            Desired state, one of ("disconnected", "syncing", "synced")
        timeout: float
            Timeout for operation in seconds; the timeout error names the address
            and the state reached.
        """
        return self._explained(self._state.until_state(state, timeout=timeout),
                               repr(state), timeout)

    def wait_connected(self, timeout: Optional[float] = None) -> Any:
        """Future that resolves when the state is not 'disconnected'."""
        return self._explained(self._state.until_state_in("syncing", "synced", timeout=timeout),
                               "connected", timeout)

    def until_synced(self, timeout: Optional[float] = None) -> Any:
        """Convenience method to wait (with Future) until client is synced

        On timeout it fails with :class:`tornado.util.TimeoutError` naming the
        device's address and the state reached.
        """
        return self.until_state("synced", timeout=timeout)

    def until_not_synced(self, timeout: Optional[float] = None) -> Any:
        """Convenience method to wait (with Future) until client is not synced"""
        return self._explained(
            self._state.until_state_in("disconnected", "syncing", timeout=timeout),
            "out of sync", timeout)

    def _explained(self, future: Any, goal: str, timeout: Optional[float]) -> Any:
        """`future`, whose timeout error (if any) says what was awaited, where, and
        what state was reached instead."""
        if not timeout:
            return future
        return _owning_relay(future, lambda: "Resource %r at %s not %s after %g s: its state "
                             "is %r" % (self._name, _address_text(self._address), goal,
                                        timeout, self._state.state))

    def __repr__(self) -> str:
        return object_repr(self, name=self._name, address=_address_text(self._address),
                           state=self._state.state, sensors=len(self._sensor),
                           requests=len(self._req))

    def __enter__(self) -> "KATCPClientResource":
        """``with resource:`` starts it (without waiting) and stops it at the end."""
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    async def __aenter__(self) -> "KATCPClientResource":
        """``async with resource:`` starts it and waits until it is synced (bound the
        wait with e.g. :func:`asyncio.wait_for`); at the end it stops it and waits
        until it has stopped. A wait given up stops it (no ``__aexit__`` follows)."""
        self.start()
        await _stopped_if_given_up(self, self.until_synced())
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.stop()
        await self.until_stopped()

    def list_sensors(self, filter: str = "", strategy: bool = False, status: str = "",
                     use_python_identifiers: bool = True, tuple: bool = False,
                     refresh: bool = False) -> Any:
        return list_sensors(self, dict.items(self._sensor), filter, strategy, status,
                            use_python_identifiers, tuple, refresh)

    @tornado.gen.coroutine
    def set_sampling_strategies(self, filter: str, strategy_and_params: StrategySpec
                                ) -> Generator[Any, Any, Dict[str, StrategyResult]]:
        """Set a strategy for all sensors matching the filter, including unseen sensors
        The strategy should persist across sensor disconnect/reconnect.

        Otherwise as :meth:`katcp.resource.KATCPResource.set_sampling_strategies`; the
        result has the sensors that exist now. They are set a few at a time: one wished
        another strategy after this call, before its turn, keeps that newer one (and
        the result reports it).
        """
        result = yield super().set_sampling_strategies(filter, strategy_and_params)
        if not result:
            self._warn_if_unknown(filter, "has no sensor matching %r" % filter)
        return result

    def _filter_strategy_setter(self, filter: str, strategy_and_params: StrategySpec
                                ) -> Callable[[str], Any]:
        # The latest wish covering a sensor counts: this one, made now, for the sensors
        # that match now or later, unless a newer wish covers them (see _set_as_wished).
        wish = self._strategy_wishes.wish_filter(
            filter, resource.normalize_strategy_parameters(strategy_and_params))
        return lambda sensor_name: self._set_as_wished(sensor_name, strategy_and_params,
                                                       wish)

    def _wish_for_later(self, sensor_name: str, strategy_and_params: StrategySpec
                        ) -> Optional[int]:
        """Wish a strategy for a sensor now, to set it later with :meth:`_set_as_wished`
        (as a container sets the sensors it matched, a few at a time).

        Returns
        -------
        wish : int or None
            The wish's number; None if `strategy_and_params` is not a strategy, which
            :meth:`set_sampling_strategy` then reports.
        """
        try:
            strategy = resource.normalize_strategy_parameters(strategy_and_params)
        except Exception:
            return None
        return self._strategy_wishes.wish(sensor_name, strategy)

    def _set_as_wished(self, sensor_name: str, strategy_and_params: StrategySpec,
                       wish: Optional[int]) -> Any:
        """:meth:`set_sampling_strategy` for wish number `wish`, made earlier (see
        :meth:`_wish_for_later`), unless a wish made since covers the sensor.

        That one is newer and counts (its own request sets it): the result then
        reports the strategy it gives the sensor, as set.
        """
        escaped_name = escape_name(sensor_name)
        if wish is None or self._strategy_wishes.is_latest(escaped_name, wish):
            return self.set_sampling_strategy(sensor_name, strategy_and_params)
        result: Dict[str, StrategyResult] = {}
        if escaped_name in self._sensor:
            strategy = self._strategy_wishes.for_sensor(escaped_name) or _NONE_STRATEGY
            result[escaped_name] = (True, strategy)
        return _done_future(result)

    def _warn_if_unknown(self, name: str, what: str) -> None:
        """Warn that a strategy was only cached, when the device's sensors are known.

        As in katcp 0.9 the strategy is kept for a sensor that may appear later and
        the result is empty; once synced, an unknown name is more likely a typo.
        """
        if self.synced:
            self._logger.warning("Resource %s %s; the strategy is kept for when it "
                                 "appears%s", self._name, what, did_you_mean(name, self._sensor))

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name: str, strategy_and_params: StrategySpec
                              ) -> Generator[Any, Any, Dict[str, StrategyResult]]:
        """Set a strategy for a sensor even if it is not yet known.
        The strategy should persist across sensor disconnect/reconnect.

        Otherwise as :meth:`katcp.resource.KATCPResource.set_sampling_strategy`. While
        the sensor does not exist the result is an empty dict (the strategy is kept for
        it), or ``{name: (False, exc_info)}`` if the strategy cannot be parsed.
        """
        sensor_name = escape_name(sensor_name)
        sensor_obj = dict.get(self._sensor, sensor_name)
        if sensor_obj is None:
            try:
                strategy = resource.normalize_strategy_parameters(strategy_and_params)
            except Exception:
                return {sensor_name: (False, sys.exc_info())}
            self._strategy_wishes.wish(sensor_name, strategy)
            self._warn_if_unknown(sensor_name, "has no sensor %r" % sensor_name)
            return {}
        # The manager records the wish (as for the sensor's own set_sampling_strategy).
        result = yield self._sensor_manager.set_sampling_strategy(
            sensor_obj.name, strategy_and_params)
        if not result[0]:
            self._logger.error("Error setting strategy %r for sensor %s of %s: %s",
                               strategy_and_params, sensor_name, self._name, result[1][1])
        return {sensor_name: result}

    def drop_sampling_strategy(self, sensor_name: str) -> None:
        """Drop the sampling strategy for the named sensor from the cache

        The strategy is no longer reapplied; see
        :meth:`katcp.resource.KATCPSensorsManager.drop_sampling_strategy`.
        """
        if self._sensor_manager is not None:
            self._sensor_manager.drop_sampling_strategy(sensor_name)
        else:
            self._strategy_wishes.wish(sensor_name, None)

    @tornado.gen.coroutine
    def set_sensor_listener(self, sensor_name: str, listener: Callable[..., Any]
                            ) -> Dict[str, Callable[..., Any]]:
        """Set a sensor listener for a sensor even if it is not yet known
        The listener registration should persist across sensor disconnect/reconnect.

        sensor_name : str
            Name of the sensor
        listener : callable
            Listening callable that will be registered on the named sensor when it
            becomes available. Called as ``listener(katcp_sensor, reading)``, i.e. as
            for :meth:`KATCPSensor.register_listener` with ``reading=True``.

        Returns
        -------
        done : tornado Future
            Resolves with ``{python_identifier: listener}`` if the sensor exists now,
            else with an empty dict; fails with TypeError if `listener` is an
            ``async def`` function (its coroutines would never run).
        """
        # Refused now: a listener kept for a sensor still to come is registered later.
        plain_callback(listener, "listener")
        sensor_name = escape_name(sensor_name)
        cached = self._sensor_listener_cache[sensor_name]
        if listener not in cached:  # set again and again, it is still registered once
            cached.append(listener)
        sensor_obj = dict.get(self._sensor, sensor_name)
        if sensor_obj is None:
            return {}
        sensor_obj.register_listener(listener, reading=True)
        return {sensor_name: listener}

    def _dummy_request(self, identifier: str) -> resource.KATCPDummyRequest:
        name = request_name_of(identifier)
        return resource.KATCPDummyRequest(
            dict(name=name, description="Dummy request (the device has no %r)." % name,
                 timeout_hint=None),
            is_active=self.is_active)

    def _request_factory(self, name: str, description: str,
                         timeout_hint: Optional[float] = None) -> KATCPClientResourceRequest:
        return KATCPClientResourceRequest(
            dict(name=name, description=description, timeout_hint=timeout_hint),
            self._inspecting_client, is_active=self.is_active)

    @tornado.gen.coroutine
    def _inspecting_client_state_callback(self, state: Any, model_changes: Any
                                          ) -> Generator[Any, Any, None]:
        # Waits only for what is not done yet: in a sync nothing is, and the callback
        # then costs its device no loop turns.
        if not state.connected:
            self._state.set_state("disconnected")
        elif not state.synced:
            self._state.set_state("syncing")
            if state.data_synced and self._namespaces_of_previous_client:
                self._namespaces_of_previous_client = False
                model_changes = self._with_stale_entries_removed(model_changes)
            if model_changes:
                yield from _result_of(self._update_model(model_changes))
        else:
            # Strategies can only be set once the sensor objects exist, i.e. after the
            # model update of the data-synced callback.
            ic = self._inspecting_client
            # An inspecting client from a user's factory may not count its connections.
            connection = getattr(ic, "connection_count", None)
            yield from _result_of(self._sensor_manager.reapply_sampling_strategies())
            # The connection may have dropped (or been replaced) meanwhile: "synced" now
            # would wake until_synced() with the device gone or not yet resynced. The
            # state callback that comes next sets the state instead.
            if (ic.is_connected() and ic.synced
                    and getattr(ic, "connection_count", None) == connection):
                self._state.set_state("synced")

    def _with_stale_entries_removed(self, model_changes: Any) -> Any:
        """`model_changes` of the first sync of a new inspecting client, which also
        removes what the namespaces kept of the previous one's that the device no
        longer has.

        The new client starts with nothing known, so its first sync reports all it
        finds as added and nothing as removed; without this, the items gone while the
        resource was stopped would stay, bound to the stopped client, for good.
        """
        ic = self._inspecting_client
        changes = AttrDict(model_changes or ())
        for kind, namespace, known in (("requests", self._req, ic.requests),
                                       ("sensors", self._sensor, ic.sensors)):
            stale = {obj.name for obj in dict.values(namespace)} - set(known)
            if stale:
                found = changes.get(kind) or AttrDict(added=set(), removed=set())
                changes[kind] = AttrDict(added=found.added, removed=found.removed | stale)
        return changes

    @tornado.gen.coroutine
    def _update_model(self, model_changes: Any) -> Generator[Any, Any, None]:
        """Bring the req and sensor namespaces in line with the inspecting client's
        `model_changes` (an item modified is in both its removed and added sets)."""
        ic = self._inspecting_client
        if "requests" in model_changes:
            changes = model_changes.requests
            yield from _result_of(self._remove_requests(changes.removed))
            yield from _result_of(self._add_requests(
                _with_heirs(changes.added, changes.removed, lambda: ic.requests)))
        if "sensors" in model_changes:
            changes = model_changes.sensors
            yield from _result_of(self._remove_sensors(changes.removed))
            yield from _result_of(self._add_sensors(
                _with_heirs(changes.added, changes.removed, lambda: ic.sensors)))

    @tornado.gen.coroutine
    def _add_requests(self, request_keys: Iterable[str]) -> Generator[Any, Any, None]:
        """Add the device's requests named `request_keys` that this resource exposes
        (see `controlled` and the always allowed and excluded requests)."""
        names = [name for name in request_keys if self._request_allowed(escape_name(name))]
        requests = yield from _result_of(
            _future_get_many(self._inspecting_client, "requests", names))
        self._update_namespace("req", (), requests)

    @tornado.gen.coroutine
    def _remove_requests(self, request_keys: Iterable[str]) -> None:
        self._update_namespace("req", request_keys, ())

    @tornado.gen.coroutine
    def _add_sensors(self, sensor_keys: Iterable[str]) -> Generator[Any, Any, None]:
        """Add the device's sensors named `sensor_keys`, with the strategies and
        listeners wished for them."""
        sensors = yield from _result_of(
            _future_get_many(self._inspecting_client, "sensors", sensor_keys))
        added_names = self._update_namespace("sensor", (), sensors)
        if self._strategy_wishes or self._sensor_listener_cache:
            for escaped_name in added_names:
                self._restore_sensor_wishes(escaped_name, self._sensor[escaped_name])

    @tornado.gen.coroutine
    def _remove_sensors(self, sensor_keys: Iterable[str]) -> None:
        self._update_namespace("sensor", sensor_keys, ())

    def _update_namespace(self, kind: str, removed: Iterable[str], added: Sequence[Any]
                          ) -> List[str]:
        """Update namespace `kind` ('req' or 'sensor') and mirror it in the parent.

        The `removed` names go and the `added` objects (but None) come in. Gives the
        escaped names added.
        """
        namespace = getattr(self, "_" + kind)
        removed_names = _remove_from(namespace, list(removed))
        added_names = _add_to(namespace, added)
        if self._parent and (added_names or removed_names):
            self._parent._child_changed(self, kind, added_names, removed_names)
        return added_names

    def _request_allowed(self, escaped_name: str) -> bool:
        if escaped_name in self._always_excluded_requests:
            return False
        return self._controlled or escaped_name in self._always_allowed_requests

    def _restore_sensor_wishes(self, escaped_name: str, sensor_obj: Any) -> None:
        """Re-attach wished strategies and cached listeners to a (new) sensor object."""
        # Sent by reapply_sampling_strategies() once synced.
        self._sensor_manager._sensor_appeared(sensor_obj.name)
        for listener in self._sensor_listener_cache.get(escaped_name, ()):
            sensor_obj.register_listener(listener, reading=True)


async def _stopped_if_given_up(resource: Any, wait: Any) -> None:
    """Await `wait` of an ``async with`` entry; stop `resource` if it is given up (the
    entry cancelled, as by :func:`asyncio.wait_for`), as no ``__aexit__`` follows."""
    try:
        await wait
    except BaseException:
        resource.stop()
        raise


def _future_get_many(inspecting_client: Any, kind: str, names: Iterable[str]) -> Any:
    """A future of the inspecting client's objects of `kind` ('sensors' or 'requests')
    called `names`, None for an unknown one.

    Through our inspecting client's one future for all of them where it has that; any
    other (one "or similar", as ``inspecting_client_factory`` allows, or a mock) is
    asked with its documented ``future_get_sensor`` / ``future_get_request``.
    """
    get_many = getattr(type(inspecting_client), "_future_get_many", None)
    if get_many is not None:
        return get_many(inspecting_client, kind, names)
    get_one = (inspecting_client.future_get_sensor if kind == "sensors"
               else inspecting_client.future_get_request)
    return tornado.gen.multi([get_one(name) for name in names])


def _result_of(future: Any) -> Generator[Any, Any, Any]:
    """The result of `future`, for ``yield from`` in a tornado coroutine: yielded to the
    coroutine's runner (which waits for it) only if it is not done yet."""
    if tornado.gen.is_future(future) and future.done():
        return future.result()
    return (yield future)


def _done_future(result: Any = None) -> "asyncio.Future[Any]":
    future = current_ioloop().asyncio_loop.create_future()  # type: ignore[attr-defined]
    future.set_result(result)
    return future


def _client_address(address: Any) -> Any:
    """A resource spec's ``address``, checked as a client checks its host and port.

    A resource makes its client only at start(): an address it cannot connect to is
    refused here, naming the spec key, rather than failing there (``"host:port"`` did not
    unpack) or leaving the resource to retry it for ever.

    Parameters
    ----------
    address : (host, port)
        As a tuple or list; other pairs are kept as a tuple.

    Returns
    -------
    address : tuple or list

    Raises
    ------
    ValueError
        If `address` is no (host, port) pair, or its port is one no client can connect
        to (see :func:`katcp.client.lifecycle.check_port`).
    """
    try:
        if isinstance(address, (str, bytes)):
            raise ValueError(address)
        host, port = address
    except (TypeError, ValueError):
        raise ValueError("Resource spec 'address' must be a (host, port) pair, not %r."
                         % (address,)) from None
    try:
        check_port(port)
    except ValueError as exc:
        raise ValueError("Resource spec 'address' %r: %s" % (address, exc)) from None
    return address if isinstance(address, (tuple, list)) else (host, port)


def _address_text(address: Any) -> str:
    """``host:port`` of an address tuple (anything else as it is)."""
    if isinstance(address, tuple) and len(address) == 2:
        return address_to_string(address)
    return str(address)


def _escape_names(names: List[str]) -> List[str]:
    """:func:`escape_name` of each of `names`, escaping them all in one go."""
    # escape_name() maps character by character, so it may escape the names joined
    # by a character it keeps, if no name holds that character.
    joined = "\n".join(names)
    if not names or joined.count("\n") != len(names) - 1:
        return [escape_name(name) for name in names]
    return escape_name(joined).split("\n")


def _with_heirs(added: Iterable[str], removed: Iterable[str],
                known_now: Callable[[], List[str]]) -> Iterable[str]:
    """The names `added`, and those the device has (``known_now()``, asked only if
    something was `removed`) that take the Python identifier of a name `removed`.

    A device may have two items of one identifier (sensors ``a.b`` and ``a-b``): the
    namespace holds one of them, and the other once that one goes.
    """
    if not removed:
        return added
    known = known_now()
    freed = set(_escape_names(list(removed)))
    # (A name removed and known is one modified, which is among those added already.)
    heirs = [name for name, escaped in zip(known, _escape_names(known)) if escaped in freed]
    return set(added).union(heirs) if heirs else added


def _add_to(namespace: AttrDict, objs: Sequence[Any]) -> List[str]:
    """Add the objects found (not None) under their escaped names; return those names."""
    found = [obj for obj in objs if obj is not None]
    added_names = _escape_names([obj.name for obj in found])
    namespace.update(zip(added_names, found))
    return added_names


def _remove_from(namespace: AttrDict, names: Sequence[str]) -> List[str]:
    """Remove the named objects (if there); return the escaped names."""
    removed_names = [escape_name(name) for name in names]
    for name in removed_names:
        namespace.pop(name, None)
    return removed_names


def _child_keys(prefix: str, kind: str, names: Sequence[str]) -> List[str]:
    """The container's keys of a child's items `names` of namespace `kind`."""
    keys = [prefix + name for name in names]
    # Aggregate sensors keep their names; few devices have any, so all the names are
    # looked at together first.
    if kind == "sensor" and "\nagg_" in "\n" + "\n".join(names):
        keys = [name if name.startswith("agg_") else key for name, key in zip(names, keys)]
    return keys


class KATCPClientResourceContainer(resource.KATCPResource):
    """Class for containing multiple :class:`KATCPClientResource` instances.

    Provides aggregate `sensor` and `req` attributes containing the union of all the
    sensors in requests in the contained resources. Names are prefixed with <resname>_,
    where <resname> is the name of the resource to which the sensor / request belongs
    except for aggregate sensors that starts with ``agg_``.

    Parameters
    ----------
    resources_spec : dict containing the specs of the contained resources. Keys:
        name : str
            Name of this collection of resources.
        description : str, optional
            Description of this collection of resources.
        clients : dict
            Maps each resource name to its resource specification for
            :class:`KATCPClientResource`; the ``name`` key of each spec is filled
            in from the resource name.
        groups : dict, optional
            Maps group names to sequences of client names making up each group.
    logger : object, optional
        Python Logger object to log to, default is the module logger
    """

    def __init__(self, resources_spec: Dict[str, Any],
                 logger: Optional[logging.Logger] = log) -> None:
        super().__init__()
        self._logger = logger = log if logger is None else logger
        self._name = resources_spec["name"]
        self._description = resources_spec.get("description", "")
        self._children = _Namespace("child resource")
        self._groups = _Namespace("group")
        self._req = _Namespace("request")
        self._sensor = _Namespace("sensor")
        self.ioloop: Optional[tornado.ioloop.IOLoop] = None
        for res_name, res_spec in resources_spec.get("clients", {}).items():
            self._add_child(res_name, res_spec)
        for group_name, client_names in resources_spec.get("groups", {}).items():
            self.add_group(group_name, client_names)

    name = read_only("_name")
    description = read_only("_description")
    children = read_only("_children")
    groups = read_only(
        "_groups", "AttrDict of :class:`ClientGroup` objects keyed by their escaped names.")
    req = read_only("_req")
    sensor = read_only("_sensor")

    @property
    def address(self) -> None:
        return None

    @property
    def parent(self) -> None:
        return None

    def is_connected(self) -> bool:
        """Indication of the connection state of all children"""
        return all(child.is_connected() for child in dict.values(self._children))

    def client_resource_factory(self, res_spec: Dict[str, Any],
                                parent: "KATCPClientResourceContainer",
                                logger: logging.Logger) -> KATCPClientResource:
        """Return an instance of :class:`KATCPClientResource` or similar

        Provided to ease testing. Overriding this method allows deep brain surgery. See
        :func:`katcp.fake_clients.fake_KATCP_client_resource_factory`
        """
        return KATCPClientResource(res_spec, parent=parent, logger=logger)

    def _add_child(self, res_name: str, res_spec: Dict[str, Any]) -> KATCPClientResource:
        res_spec = dict(res_spec, name=res_name)
        child = self.client_resource_factory(res_spec, parent=self, logger=self._logger)
        self._children[escape_name(res_name)] = child
        return child

    def add_child_resource_client(self, res_name: str, res_spec: Dict[str, Any]
                                  ) -> KATCPClientResource:
        """Add a resource client to the container and start the resource connection

        Parameters
        ----------
        res_name : str
            Name of the new child.
        res_spec : dict
            Resource specification as for :class:`KATCPClientResource`.

        Returns
        -------
        child : :class:`KATCPClientResource`

        Notes
        -----
        A child of the same (escaped) name is replaced: it is stopped, and its requests
        and sensors leave this container and its groups, where the new child takes
        its place; waits for a state of the old child (such as this container's
        :meth:`until_synced`) wait for the new child's.
        """
        replaced = dict.get(self._children, escape_name(res_name))
        child = self._add_child(res_name, res_spec)
        if replaced is not None:
            self._retire_child(replaced, child)
        child.set_ioloop(self.ioloop)
        child.start()
        if replaced is not None:
            # Stopped, it reaches no state any more: what waits for one of its states
            # (a wait of this container's, made before) waits for its successor's.
            replaced._state._hand_over(child._state)
        return child

    def _retire_child(self, old: KATCPClientResource, successor: KATCPClientResource
                      ) -> None:
        """Stop child `old`, replaced by `successor`, and take what it had out of this
        container (it kept its connection for good, and its items stayed)."""
        old.stop()
        for group in dict.values(self._groups):
            if old in group.clients:
                group.clients = tuple(successor if client is old else client
                                      for client in group.clients)
                group.client_updated(successor)
        for kind in ("req", "sensor"):
            self._child_changed(old, kind, (), list(getattr(old, kind)))

    def add_group(self, group_name: str, group_client_names: Sequence[str]) -> None:
        """Add a new :class:`ClientGroup` to container groups member.

        Add the group named group_name with sequence of client names to the
        container groups member. From there it will be wrapped appropriately
        in the higher-level thread-safe container.
        """
        clients = [self._children[escape_name(name)] for name in group_client_names]
        self._groups[escape_name(group_name)] = ClientGroup(group_name, clients)

    def set_ioloop(self, ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        """Set the tornado ioloop to use, for this container and all its children

        Defaults to tornado.ioloop.IOLoop.current() if set_ioloop() is not called or if
        ioloop=None. Must be called before start()
        """
        ioloop = ioloop or current_ioloop()
        self.ioloop = ioloop
        for child in dict.values(self._children):
            child.set_ioloop(ioloop)

    def start(self) -> None:
        """Start and connect all the subordinate clients"""
        if self.ioloop is None:
            self.ioloop = current_ioloop()
        for child in dict.values(self._children):
            child.start()

    def stop(self) -> None:
        """Stop all child resources"""
        for child in dict.values(self._children):
            child.stop()

    def until_stopped(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Return dict of futures that resolve when each child resource has stopped

        See the `DeviceClient.until_stopped` docstring for parameter
        definitions and more info.
        """
        return {name: child.until_stopped(timeout) for name, child in dict.items(self._children)}

    def until_synced(self, timeout: Optional[float] = None) -> Any:
        """Return a tornado Future; resolves when all subordinate clients are synced

        On timeout it fails with :class:`tornado.util.TimeoutError` naming the
        children that are not synced, their addresses and states.
        """
        synced = self.until_all_children_in_state("synced", timeout=timeout)
        if not timeout:
            return synced
        return _owning_relay(synced, lambda: "Container %r not synced after %g s: %s" % (
            self._name, timeout, ", ".join(
                "%s at %s is %r" % (child.name, _address_text(child.address), child.state)
                for child in dict.values(self._children) if not child.synced)))

    def __repr__(self) -> str:
        children = dict.values(self._children)
        return object_repr(self, name=self._name, children=len(children),
                           synced=sum(child.synced for child in children),
                           sensors=len(self._sensor), requests=len(self._req))

    def __enter__(self) -> "KATCPClientResourceContainer":
        """``with container:`` starts it (without waiting) and stops it at the end."""
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    async def __aenter__(self) -> "KATCPClientResourceContainer":
        """``async with container:`` starts it and waits until all its children are
        synced; at the end it stops them and waits until they have stopped. A wait
        given up stops them (no ``__aexit__`` follows)."""
        self.start()
        await _stopped_if_given_up(self, self.until_synced())
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.stop()
        await tornado.gen.multi(list(self.until_stopped().values()))

    def until_not_synced(self, timeout: Optional[float] = None) -> Any:
        """Return a tornado Future; resolves when any subordinate client is not synced

        It resolves to None (as the coroutine this was in 0.9); cancelling it, or its
        timeout, ends the wait on each child.
        """
        children = dict.values(self._children)
        return _owning_relay(until_first(*[child.until_not_synced() for child in children],
                                         timeout=timeout), keep_result=False)

    def until_all_children_in_state(self, state: str, timeout: Optional[float] = None) -> Any:
        """Return a tornado Future; resolves when all clients are in specified state

        It resolves to None (as the coroutine this was in 0.9); cancelling it, or its
        timeout, ends the wait on each child still waiting.
        """
        children = dict.values(self._children)
        try:
            waits = [child.until_state(state) for child in children]
        except ValueError as exc:  # not a state: as from the coroutine this was in 0.9
            return failed_future(exc)
        return _owning_relay(until_all(*waits, timeout=timeout), keep_result=False)

    def until_any_child_in_state(self, state: str, timeout: Optional[float] = None) -> Any:
        """Return a tornado Future; resolves when any client is in specified state"""
        children = dict.values(self._children)
        return until_first(*[child.until_state(state) for child in children], timeout=timeout)

    def list_sensors(self, filter: str = "", strategy: bool = False, status: str = "",
                     use_python_identifiers: bool = True, tuple: bool = False,
                     refresh: bool = False) -> Any:
        return list_sensors(self, dict.items(self._sensor), filter, strategy, status,
                            use_python_identifiers, tuple, refresh)

    @tornado.gen.coroutine
    def _through_children(self, filter: str, prepare: Callable[[Any, str], Callable[[], Any]],
                          outcome: Any, what: str
                          ) -> Generator[Any, Any, Dict[str, Dict[str, Any]]]:
        """Do an action for each sensor :meth:`list_sensors` finds, a few at a time.

        ``prepare(child, sensor_name)`` is called for each of them in the call (so
        that what it records, such as a strategy wish, counts from then) and gives the
        action, called in the sensor's turn. The action fails by raising, or by
        returning (or resolving with) False.

        It goes through the sensor's child resource, so that what it sets persists
        across the child's reconnects. Resolves, as in katcp 0.9, with
        ``{resource_name: {sensor_name: outcome or None}}``, keyed by the child
        resources' names and their sensors' Python identifiers; None marks a failure,
        which is logged.
        """
        sensors = yield self.list_sensors(filter=filter)
        if not sensors:
            self._logger.warning("Container %s has no sensor matching %r: no %s was set%s",
                                 self._name, filter, what,
                                 did_you_mean(filter.strip("^$"), self._sensor))

        @tornado.gen.coroutine
        def through_child(child: KATCPClientResource, name: str, action: Callable[[], Any]
                          ) -> Generator[Any, Any, Tuple[str, str, Any]]:
            try:
                done = action()
                if tornado.gen.is_future(done) or inspect.isawaitable(done):
                    done = yield done
                result = None if done is False else outcome
            except Exception:
                self._logger.exception("Could not set %s on sensor %s of %s",
                                       what, name, child.name)
                result = None
            return child.name, name, result

        # A few at a time: one at a time costs a round trip per sensor, and all at once
        # would have the last requests time out while queued at the device.
        starts = []
        for found in sensors:
            child = self._children[escape_name(found.object.parent_name)]
            name = found.object.normalised_name
            starts.append(functools.partial(through_child, child, name, prepare(child, name)))
        done = yield windowed(starts, STRATEGY_WINDOW)
        results: Dict[str, Dict[str, Any]] = {}
        for child_name, name, result in done:
            results.setdefault(child_name, {})[name] = result
        return results

    def set_sampling_strategies(self, filter: str, strategy_and_params: StrategySpec) -> Any:
        """Set sampling strategies for filtered sensors - these sensors have to exists.

        Parameters
        ----------
        filter : str
            Regular expression that selects the sensors, as for :meth:`list_sensors`.
        strategy_and_params : seq of str or str
            As for :meth:`katcp.resource.KATCPResource.set_sampling_strategy`.

        Returns
        -------
        done : tornado Future
            Resolves with ``{resource_name: {sensor_name: strategy_and_params or
            None}}``, keyed by the child resources' names and their sensors' Python
            identifiers; None marks a sensor whose strategy could not be set. The
            strategy is set through each sensor's child resource, so it persists
            across reconnects of that child. The sensors are set a few at a time: one
            wished another strategy after this call (through its child or this
            container), before its turn, keeps that newer one (counted as set here).
        """
        @tornado.gen.coroutine
        def set_strategy(child: KATCPClientResource, name: str, wish: Optional[int]
                         ) -> Generator[Any, Any, bool]:
            # The child reports (and logs) a strategy it could not set as
            # (False, exc_info), which katcp 0.9 counted as set.
            results = yield child._set_as_wished(name, strategy_and_params, wish)
            return results[name][0]

        def prepare(child: KATCPClientResource, name: str) -> Callable[[], Any]:
            # Wished now: a wish made after this call (through the child or this
            # container) counts as newer, even if made before this sensor's turn.
            wish = child._wish_for_later(name, strategy_and_params)
            return functools.partial(set_strategy, child, name, wish)

        return self._through_children(filter, prepare, strategy_and_params,
                                      "sampling strategy")

    def set_sampling_strategy(self, sensor_name: str, strategy_and_params: StrategySpec
                              ) -> Any:
        """Set sampling strategies for the specific sensor - this sensor has to exist

        As :meth:`set_sampling_strategies` with the filter ``'^' + sensor_name + '$'``.
        """
        return self.set_sampling_strategies("^" + sensor_name + "$", strategy_and_params)

    def set_sensor_listener(self, sensor_name: str, listener: Callable[..., Any]) -> Any:
        """Set listener for the specific sensor - this sensor has to exists.

        The sensors are those :meth:`list_sensors` finds with the filter
        ``'^' + sensor_name + '$'``. The listener is registered through each one's
        child resource (see :meth:`KATCPClientResource.set_sensor_listener`) so that
        it persists.

        Returns
        -------
        done : tornado Future
            Resolves with ``{resource_name: {sensor_name: listener or None}}``, keyed
            by the child resources' names and their sensors' Python identifiers;
            None marks a failure.
        """
        return self._through_children(
            "^" + sensor_name + "$",
            lambda child, name: functools.partial(child.set_sensor_listener, name, listener),
            listener, "listener")

    def _child_changed(self, child: KATCPClientResource, kind: str, added: Sequence[str],
                       removed: Sequence[str]) -> None:
        """Called by a child whose namespace `kind` ('req' or 'sensor') changed.

        Its items appear here prefixed with the child's escaped name, except aggregate
        sensors (``agg_...``), which keep their names.
        """
        namespace = getattr(self, "_" + kind)
        prefix = escape_name(child.name) + "_"
        for key in _child_keys(prefix, kind, removed):
            namespace.pop(key, None)
        mirrored = getattr(child, kind)
        namespace.update(zip(_child_keys(prefix, kind, added),
                             map(functools.partial(dict.get, mirrored), added)))
        if kind == "req":
            for group in dict.values(self._groups):
                if child in group.clients:
                    group.client_updated(child)
