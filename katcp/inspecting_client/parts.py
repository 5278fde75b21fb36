"""The parts :class:`~katcp.inspecting_client.InspectingClientAsync` is built from.

Its states, what it notes as changed until inspected, the KATCP client that passes
informs to hooks, and the reading of ``#sensor-list`` informs into its model. All are
documented (and report themselves) as ``katcp.inspecting_client.<name>``.
"""

import collections
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from katcp.client import AsyncClient
from katcp.core import DEFAULT_KATCP_MAJOR, Message
from katcp.wire.text import readable
from katcp.wire.util import plain_callback

RequestType = collections.namedtuple(  # type: ignore[name-match]
    "Request", "name description timeout_hint")


class SyncError(Exception):
    """Raised if an error occurs during syncing with a device."""


class InspectingClientStateType(collections.namedtuple(
        "InspectingClientStateType", "connected synced model_changed data_synced")):
    """States tuple for the inspecting client. Fields, all bool:

    connected: bool
        TCP connection has been established with the server.
    synced: bool
        The inspecting client and the user that interfaces through the state change
        callback are all synchronised with the current device state. Also implies
        `connected = True` and `data_synced = True`.
    model_changed: bool
        The device has changed in some way, resulting in the device model being out
        of date.
    data_synced: bool
        The inspecting client's internal representation of the device is up to date,
        although state change user is not yet up to date.
    """

    __slots__ = ()


_DISCONNECTED = InspectingClientStateType(False, False, False, False)
_CONNECTED = InspectingClientStateType(True, False, False, False)
_SYNCED = InspectingClientStateType(True, True, False, True)


class _InformHookDeviceClient(AsyncClient):
    """AsyncClient that also passes every inform to functions hooked to its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inform_hooks: Dict[str, List[Callable[[Message], Any]]] = (
            collections.defaultdict(list))
        # Where super() looks handle_inform up, at each inform (as in 0.9.3: a test may
        # patch AsyncClient's once the client exists): the next class, whose own lookup
        # finds the same (a method bound once would not see a patch; super() made per
        # inform costs 4% of its handling), unless another class comes in between.
        mro = type(self).__mro__
        after = mro[mro.index(_InformHookDeviceClient) + 1:]
        self._unhooked: Any = after[0] if after[0].__mro__ == after else _AfterInformHooks

    def hook_inform(self, inform_name: str, callback: Callable[[Message], Any]) -> None:
        """Hookup a function to be called when an inform is received.

        Hooks see every inform of that name, also those that are part of the reply
        to a request, before normal processing.

        Parameters
        ----------
        inform_name : str
            Name of the inform, e.g. 'interface-changed'.
        callback : callable
            Called as callback(msg); hooking the same callback twice has no effect.

        Raises
        ------
        TypeError
            If `callback` is an ``async def`` function (its coroutines would never run).
        """
        plain_callback(callback, "callback")
        hooks = self._inform_hooks[inform_name]
        if callback not in hooks:
            hooks.append(callback)

    def handle_inform(self, msg: Message) -> Any:
        """Call callbacks hooked to the inform, then process it normally."""
        hooks = self._inform_hooks.get(msg.name)
        if hooks:
            for hook in hooks:
                try:
                    hook(msg)
                except Exception:
                    self._logger.exception("Inform hook %r failed on %s", hook, msg)
        return self._unhooked.handle_inform(self, msg)


class _AfterInformHooks:
    """Where :class:`_InformHookDeviceClient` finds handle_inform for a subclass that
    puts classes between it and the next class's own bases: super() at each call."""

    @staticmethod
    def handle_inform(client: _InformHookDeviceClient, msg: Message) -> Any:
        return super(_InformHookDeviceClient, client).handle_inform(msg)


class _PendingChanges:
    """What the device said has changed and still needs inspecting.

    For requests and for sensors separately: nothing (empty set), some names, or
    everything (ALL).
    """

    ALL = None

    def __init__(self) -> None:
        self.requests: Optional[Set[str]] = set()
        self.sensors: Optional[Set[str]] = set()

    def __bool__(self) -> bool:
        return self.requests is self.ALL or self.sensors is self.ALL or bool(
            self.requests or self.sensors)

    def add(self, kind: str, name: Optional[str] = None) -> None:
        """Mark all `kind` ('requests' or 'sensors') or just `name` as changed."""
        names = getattr(self, kind)
        if name is None:
            setattr(self, kind, self.ALL)
        elif names is not self.ALL:
            names.add(name)

    def add_from_inform(self, msg: Message) -> None:
        """Mark what an ``#interface-changed`` inform says has changed (KATCP spec)."""
        arguments = [readable(arg) for arg in msg.arguments]
        if arguments == ["sensor-list"]:
            self.add("sensors")
        elif arguments == ["request-list"]:
            self.add("requests")
        elif len(arguments) >= 2 and arguments[0] in ("sensor", "request"):
            self.add(arguments[0] + "s", arguments[1])
        else:
            # No arguments, or ones we do not understand: anything may have changed.
            self.add_all()

    def add_all(self) -> None:
        self.requests = self.ALL
        self.sensors = self.ALL

    def update(self, other: "_PendingChanges") -> None:
        """Add everything `other` (a _PendingChanges) holds."""
        for kind in ("requests", "sensors"):
            names = getattr(other, kind)
            if names is self.ALL:
                self.add(kind)
            else:
                for name in names:
                    self.add(kind, name)


def _is_unknown_fail(reply: Message) -> bool:
    """Whether a fail reply means that the item asked about does not exist."""
    return len(reply.arguments) > 1 and b"unknown" in reply.arguments[1].lower()


def _sensor_list_collector(found: Dict[str, Dict[str, Any]]
                           ) -> Tuple[Callable[[Message], None], List[Exception]]:
    """``collect(inform)`` storing what a ``#sensor-list`` inform says in `found`.

    Entries of `found`: sensor name -> its description, units, type (as text) and
    params (as sent: any difference in them is a change). The exceptions of malformed
    informs are appended to the list returned along.
    """
    # Units, type and params repeat from sensor to sensor: each combination of them is
    # decoded once, into an entry that the sensors of that shape copy (sharing its
    # texts and params) and fill in with their own description.
    shapes: Dict[Tuple[bytes, ...], Dict[str, Any]] = {}
    failures: List[Exception] = []

    def collect(inform: Message) -> None:
        try:
            arguments = inform.arguments
            entry = shapes.get(tuple(arguments[2:]))
            if entry is None:
                # Also where an inform of fewer than four arguments fails.
                _name, _description, units, sensor_type = arguments[:4]
                params = tuple(arguments[4:])
                entry = shapes[(units, sensor_type) + params] = {
                    "description": None, "units": readable(units),
                    "sensor_type": readable(sensor_type), "params": params}
            entry = entry.copy()
            try:
                # readable(), for the usual valid UTF-8 bytes (strict decoding is faster).
                sensor_name = arguments[0].decode()
                entry["description"] = arguments[1].decode()
            except (AttributeError, UnicodeDecodeError):
                sensor_name = readable(arguments[0])
                entry["description"] = readable(arguments[1])
            found[sensor_name] = entry
        except Exception as exc:
            failures.append(exc)

    return collect, failures


def _readings_of(msg: Message) -> Optional[List[Tuple[str, bytes, bytes, bytes]]]:
    """``(name, timestamp, status, value)`` of each sensor of a ``#sensor-status`` (or
    ``#sensor-value``) inform, as sent; None for a malformed inform."""
    arguments = msg.arguments
    try:
        timestamp = arguments[0]
        num_sensors = int(arguments[1])
    except (IndexError, ValueError):
        return None
    if len(arguments) != 2 + 3 * num_sensors:
        return None
    return [(readable(arguments[offset]), timestamp, arguments[offset + 1],
             arguments[offset + 2]) for offset in range(2, len(arguments), 3)]


def katcp_major(katcp_client: AsyncClient) -> int:
    """The major KATCP version `katcp_client`'s device speaks (the default until known)."""
    flags = katcp_client.protocol_flags
    return flags.major if flags is not None and flags.major else DEFAULT_KATCP_MAJOR


def _objects(names: List[str], index: Dict[str, Any],
             make: Callable[[str, Dict[str, Any]], Any]) -> List[Any]:
    """The objects of the items `names` (all in `index`), each made on first use and
    kept in its entry (key ``'obj'``)."""
    objs = []
    for name in names:
        info = index[name]
        obj = info.get("obj")
        if obj is None:
            obj = info["obj"] = make(name, info)
        objs.append(obj)
    return objs
