"""The device side of katcp-web: one high-level client, its state, and the pages watching it.

:class:`DeviceMonitor` keeps a :class:`katcp.KATCPClientResource` connected to the device
(on the current tornado loop), follows its connection state, registers one sensor listener per
sensor and fans the readings out to the subscribed pages, coalesced into one JSON message per
short interval so that fast sensors cost one websocket frame per interval, not per reading.
"""

import collections
import functools
import json
import logging
import math
import operator
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from katcp.core import Message, ProtocolFlags
from katcp.loop.futures import give_up, log_future_exceptions, until_first
from katcp.loop.policy import thread_ioloop
from katcp.resource_client import KATCPClientResource
from katcp.wire.text import readable
from katcp.wire.types import address_text, address_to_string

log = logging.getLogger("katcp.web")

NUMERIC_TYPES = frozenset(["integer", "float"])
"""Sensor types whose recent values are kept for the page's sparklines."""

FLAG_NAMES = [(ProtocolFlags.MULTI_CLIENT, "multi-client"),
              (ProtocolFlags.MESSAGE_IDS, "message ids"),
              (ProtocolFlags.REQUEST_TIMEOUT_HINTS, "request timeout hints"),
              (ProtocolFlags.BULK_SET_SENSOR_SAMPLING, "bulk sensor sampling")]


_by_name = operator.itemgetter("name")


class RequestRefused(Exception):
    """A page asked for something this katcp-web does not allow or know."""


def json_value(value: Any) -> Any:
    """Turn a sensor value into something JSON carries faithfully.

    Finite numbers and booleans stay as they are; everything else (strings, discrete
    values, addresses, NaN and infinities, which JSON cannot carry) becomes text.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, tuple) and len(value) == 2:  # address sensors: (host, port)
        return address_to_string(value)
    return readable(value)


def message_dict(msg: Message) -> Dict[str, Any]:
    """A reply or inform as the page shows it: name, type symbol and unescaped arguments."""
    return {"name": msg.name, "mtype": readable(msg.TYPE_SYMBOLS[msg.mtype]),
            "arguments": [readable(arg) for arg in msg.arguments]}


def _describe_protocol(identity: Dict[str, Any], flags: Any) -> None:
    """Put the KATCP version and protocol flags of `flags` (None: unknown) in `identity`."""
    if flags is not None:
        identity["protocol"] = "%s.%s" % (flags.major, flags.minor)
        identity["flags"] = [text for flag, text in FLAG_NAMES if flag in flags.flags]


class DeviceMonitor:
    """Watch one KATCP device and push what it shows to subscribers.

    All methods must be called on the tornado loop the monitor was started on.

    Parameters
    ----------
    address : tuple of (str, int)
        The device's host and port.
    strategy : str
        Sampling strategy (and parameters) set on every sensor, e.g. ``"event"`` (the
        default: the device reports each change at its own rate) or ``"period 0.5"``.
    history : int
        Recent numeric values kept per sensor for the sparklines.
    flush_interval : float
        Seconds during which readings are gathered into one message to the pages.
    request_timeout : float
        Seconds to wait for the reply of a request sent from a page (unless the device
        gives a timeout hint).
    """

    def __init__(self, address: Sequence[Any], strategy: str = "event", history: int = 60,
                 flush_interval: float = 0.05, request_timeout: float = 30.0) -> None:
        self.address: Tuple[Any, ...] = tuple(address)
        self.strategy = strategy
        self.history = history
        self.flush_interval = flush_interval
        self.request_timeout = request_timeout
        self.resource = KATCPClientResource(dict(
            name="device", address=self.address, controlled=True))
        self._subscribers: Set[Callable[[str], Any]] = set()
        self._listened: Set[str] = set()
        self._histories: Dict[str, Any] = collections.defaultdict(
            functools.partial(collections.deque, maxlen=history))
        self._pending: Dict[str, List[List[Any]]] = {}
        self._flush_handle: Any = None
        self._identity: Dict[str, Any] = {"versions": [], "protocol": None, "flags": []}
        self._connection: Dict[str, Any] = {
            "state": "disconnected", "since": time.time(), "connects": 0, "reconnects": 0,
            "address": address_text(self.address)}
        self._last_update: Optional[float] = None
        self._loop: Any = None
        self._follower: Any = None
        self._stopped = False

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the device on the current tornado loop and start following it (again,
        after :meth:`stop`)."""
        self._loop = thread_ioloop()
        self._stopped = False
        self.resource.set_ioloop(self._loop)
        self.resource.start()
        if self._follower is None:
            # Once: the resource keeps the wish for sensors not seen yet, across reconnects
            # and restarts. Made again, it would go to the last sync's sensors at once, while
            # the client has not connected yet.
            wished = self.resource.set_sampling_strategies("", self.strategy)
            wished.add_done_callback(lambda future: future.result())  # the loop logs a failure
        # Kept, to be cancelled by stop(): it may be waiting for a device that never comes.
        self._follower = self._loop.asyncio_loop.create_task(self._follow_state())
        log_future_exceptions(log, self._follower)

    def stop(self) -> None:
        """Disconnect from the device; subscribers get no further messages."""
        self._stopped = True
        give_up(self._follower)
        if self._flush_handle is not None:
            self._loop.remove_timeout(self._flush_handle)
            self._flush_handle = None
        self._subscribers.clear()
        self.resource.stop()

    # -- subscribers ----------------------------------------------------------------------

    def subscribe(self, send: Callable[[str], Any]) -> None:
        """Start sending messages to ``send(text)``, beginning with a full snapshot."""
        self._subscribers.add(send)
        send(json.dumps(self.snapshot()))

    def unsubscribe(self, send: Callable[[str], Any]) -> None:
        """Stop sending messages to ``send`` (no error if it was not subscribed)."""
        self._subscribers.discard(send)

    def _broadcast(self, message: Dict[str, Any]) -> None:
        text = json.dumps(message)
        for send in list(self._subscribers):
            send(text)

    # -- what the page shows --------------------------------------------------------------

    def snapshot(self) -> Dict[str, Any]:
        """Everything a new page needs: connection, identity, sensors and requests."""
        synced = self.resource.state == "synced"
        # The resource keeps the last sync's sensors and requests while it resyncs: not shown.
        sensors = sorted(({"name": sensor.name, "type": sensor.type, "units": sensor.units,
                           "description": sensor.description,
                           "reading": self._reading_list(sensor.reading),
                           "history": list(self._histories.get(sensor.name, ()))}
                          for sensor in dict.values(self.resource.sensor) if synced), key=_by_name)
        requests = sorted(({"name": req.name, "description": req.description}
                           for req in dict.values(self.resource.req) if synced), key=_by_name)
        return {"type": "snapshot", "synced": synced, "connection": dict(self._connection),
                "identity": self._identity, "last_update": self._last_update,
                "sensors": sensors, "requests": requests}

    @staticmethod
    def _reading_list(reading: Any) -> List[Any]:
        return [reading.timestamp, reading.status, json_value(reading.value)]

    # -- connection state -------------------------------------------------------------------

    async def _follow_state(self) -> None:
        resource = self.resource
        while not self._stopped:
            state = resource.state
            if state != self._connection["state"]:
                self._state_changed(state)
                if state == "synced":
                    await self._synced()
                    continue  # the state may have moved on while we asked for identity
            if state == "disconnected":
                await resource.wait_connected()
                continue
            # Of the two waits, the one that did not end this is cancelled (which
            # unregisters it from the resource's state): a device that resyncs again and
            # again would otherwise pile up a wait for "disconnected" with each resync.
            lost = resource.until_state("disconnected")
            if state == "synced":
                await until_first(resource.until_state("syncing"), lost)
            else:
                await until_first(resource.until_synced(), lost)
            if lost.done() and not lost.cancelled() and resource.state != "disconnected":
                # Reconnected before this coroutine ran: the page still gets to know.
                self._state_changed("disconnected")

    def _state_changed(self, state: str) -> None:
        connection = self._connection
        if connection["state"] == "disconnected":
            connection["connects"] += 1
            connection["reconnects"] = max(0, connection["connects"] - 1)
        connection.update(state=state, since=time.time())
        self._broadcast({"type": "connection", "connection": dict(connection)})

    async def _synced(self) -> None:
        for name, sensor in dict.items(self.resource.sensor):
            if name not in self._listened:
                self._listened.add(name)
                await self.resource.set_sensor_listener(name, self._on_reading)
        self._identity = await self._read_identity()
        self._broadcast(self.snapshot())

    async def _read_identity(self) -> Dict[str, Any]:
        identity: Dict[str, Any] = {"versions": [], "protocol": None, "flags": []}
        version_list = dict.get(self.resource.req, "version_list")
        if version_list is None:
            # A KATCP v4 device has no ?version-list: it named its versions (#version,
            # #build-state) in its greeting, which the client kept.
            client = self.resource.inspecting_client.katcp_client
            identity["versions"] = [[name, *values] for name, values in client.versions.items()]
            _describe_protocol(identity, client.protocol_flags)
            return identity
        try:
            reply = await version_list(timeout=self.request_timeout)
        except Exception as exc:  # the device went away or does not answer: show none
            log.warning("?version-list failed: %s", exc)
            return identity
        for inform in reply.informs:
            fields = [readable(arg) for arg in inform.arguments]
            if fields:
                identity["versions"].append(fields)
            if len(fields) >= 2 and fields[0] == "katcp-protocol":
                _describe_protocol(identity, ProtocolFlags.parse_version(fields[1]))
        return identity

    # -- readings -------------------------------------------------------------------------

    def _on_reading(self, sensor: Any, reading: Any) -> None:
        name = sensor.name
        value = json_value(reading.value)
        self._pending.setdefault(name, []).append([reading.timestamp, reading.status, value])
        if sensor.type in NUMERIC_TYPES and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            self._histories[name].append([reading.timestamp, value])
        self._last_update = reading.received_timestamp
        if self._flush_handle is None and not self._stopped:
            self._flush_handle = self._loop.call_later(self.flush_interval, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        pending, self._pending = self._pending, {}
        if pending:
            self._broadcast({"type": "readings", "readings": pending,
                             "last_update": self._last_update})

    # -- requests from pages ----------------------------------------------------------------

    async def send_request(self, name: str, arguments: Sequence[str]) -> Dict[str, Any]:
        """Send request ``name`` with ``arguments`` to the device.

        Returns
        -------
        reply : dict
            ``{"ok": bool, "reply": message, "informs": [message, ...]}``, messages as
            made by :func:`message_dict`.

        Raises
        ------
        RequestRefused
            If the device has no such request (or is not synced).
        """
        req = next((req for req in dict.values(self.resource.req) if req.name == name), None)
        if req is None:
            raise RequestRefused("the device has no request %r" % name)
        timeout = req.timeout_hint or self.request_timeout
        reply = await req(*arguments, timeout=timeout)
        return {"ok": reply.succeeded, "reply": message_dict(reply.reply),
                "informs": [message_dict(msg) for msg in reply.informs]}
