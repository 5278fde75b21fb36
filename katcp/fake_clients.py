"""Fake KATCP clients for testing code that uses the high-level clients, with no network.

The factories build subclasses of the given client classes whose KATCP connection is an
in-memory transport to a fake device: request handlers and sensors that the test registers
through a *manager*. Everything above the transport (message ids, request futures, inform
hooks, inspection, sampling, listeners) is the real client code, so tests exercise what
production does.

Example
-------
>>> from katcp import resource_client, fake_clients
>>> client, manager = fake_clients.fake_KATCP_client_resource_factory(
...     resource_client.KATCPClientResource, {},
...     dict(name="dev", address=("fake-host", 5000), controlled=True))
>>> manager.add_sensors({"temp": ("A temperature.", "degC", "float", -10.0, 60.0)})
>>> manager.add_request_handlers_dict({"ping": lambda req, msg: req.make_reply("ok")})
"""

import inspect
import itertools
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, cast

import tornado.gen

from katcp import client, server
from katcp.core import (AsyncReply, FailReply, KatcpSyntaxError, Message, MessageParser,
                        ProtocolFlags, Sensor, convert_method_name)
from katcp.kattypes import Int, return_reply
from katcp.loop.call_queue import CallQueue
from katcp.loop.crossing import post_to_loop
from katcp.resource import escape_name
from katcp.resource_client import KATCPClientResource, KATCPClientResourceContainer
from katcp.sampling import SampleStrategy
from katcp.wire.message import format_argument
from katcp.server import sampling_requests, standard_requests
from katcp.server.reply_outcomes import reply_with_result
from katcp.wire.text import as_str, readable

FAKE_PROTOCOL = ProtocolFlags(5, 0, [ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS])
# The informs that carry one sensor's reading, its name as third argument.
_READING_INFORMS = frozenset(["sensor-value", "sensor-status"])


class FakeKATCPServerError(Exception):
    """Raised if a FakeKATCPServer is used in an unsupported way"""


class FakeKATCPServer:
    """Fake the parts of a KATCP server used by katcp.server.ClientConnection.

    Messages sent to a connection are handed to the function registered for it with
    :meth:`add_connection` (the fake transport of a fake client).
    """

    def __init__(self) -> None:
        self._deliver: Dict[Any, Callable[[Message], None]] = {}

    def add_connection(self, conn_id: Any, deliver: Callable[[Message], None]) -> None:
        """Deliver what is sent to connection `conn_id` with `deliver`.

        Parameters
        ----------
        conn_id : hashable
            The connection, as the fake client's ClientConnection names it.
        deliver : callable
            ``deliver(msg)`` hands a message to the fake client.

        """
        self._deliver[conn_id] = deliver

    def remove_connection(self, conn_id: Any) -> None:
        """Forget connection `conn_id` (if known): nothing is delivered to it any more.

        Parameters
        ----------
        conn_id : hashable

        """
        self._deliver.pop(conn_id, None)

    def get_address(self, conn_id: Any) -> str:
        """The address a server would show for connection `conn_id`.

        Parameters
        ----------
        conn_id : hashable

        Returns
        -------
        address : str
            ``fake-client:<conn_id>``.

        """
        return "fake-client:%s" % (conn_id,)

    def send_message(self, conn_id: Any, msg: Message) -> None:
        """Hand `msg` to connection `conn_id` at once (dropped if it is not known).

        Parameters
        ----------
        conn_id : hashable
        msg : Message

        """
        deliver = self._deliver.get(conn_id)
        if deliver is not None:
            deliver(msg)

    def mass_send_message(self, msg: Message) -> None:
        """Hand `msg` to every known connection at once.

        Parameters
        ----------
        msg : Message

        """
        for deliver in list(self._deliver.values()):
            deliver(msg)

    def flush_on_close(self) -> None:
        """Not supported: a fake connection buffers nothing.

        Raises
        ------
        FakeKATCPServerError
            Always.

        """
        raise FakeKATCPServerError("A fake connection has nothing to flush")


_log = logging.getLogger("katcp.fake_clients")

class FakeClientRequestConnection(server.ClientRequestConnection):
    """The ``req`` handed to fake request handlers: a real ClientRequestConnection."""


def _reply_from(msg: Message, exc: BaseException) -> Message:
    if isinstance(exc, FailReply):
        return Message.reply_to_request(msg, "fail", str(exc))
    return Message.reply_to_request(msg, "fail", "%s: %s" % (type(exc).__name__, exc))


class _FakeDevice:
    """What fake clients connect to: request handlers, sensors and the standard requests.

    The sensor requests are a DeviceServer's own (a
    :class:`~katcp.server.standard_requests.SensorHost`), so a fake device answers them
    as a real one does, texts and all. A fake sensor has no reading to report until the
    test sets one on it (``manager.fake_sensors[name].set_value(...)``): until then its
    ``#sensor-value`` and ``#sensor-status`` informs are not sent (nor counted in a
    ``?sensor-value`` reply), so polling or sampling it leaves alone the reading the client
    holds. 0.9.3's fakes answered those requests with a bare ``ok``, and its users' tests
    set readings on the client's sensors (``KATCPSensor.set_value``).
    """

    PROTOCOL_INFO = FAKE_PROTOCOL
    _katcp_major = cast(int, FAKE_PROTOCOL.major)
    # Strategies run on the loop current where the requests are handled: the client's.
    ioloop = None

    request_sensor_list = standard_requests.request_sensor_list
    request_sensor_value = standard_requests.request_sensor_value
    request_sensor_sampling = sampling_requests.request_sensor_sampling
    request_sensor_sampling_clear = sampling_requests.request_sensor_sampling_clear
    clear_strategies = sampling_requests.clear_strategies

    def __init__(self) -> None:
        self.server = FakeKATCPServer()
        self.request_handlers: Dict[str, Callable[..., Any]] = {}
        self._sensors: Dict[str, Sensor] = {}
        # Each fake sensor's reading when it was made: while it still holds that one
        # object, nothing set it and its readings are not sent (see _deliver_set_readings).
        self._unset_readings: Dict[str, Any] = {}
        # Per connection: its id on the fake server, its client's loop; and its
        # {sensor: strategy}.
        self._conn_ids: Dict[server.ClientConnection, int] = {}
        self._loops: Dict[server.ClientConnection, Any] = {}
        self._strategies: Dict[Any, Dict[Sensor, SampleStrategy]] = {}
        self._connection_ids = itertools.count(1)
        # The interface ?help lists, as in 0.9: these two and the test's handlers.
        self._standard: Dict[str, Callable[..., Any]] = {
            "help": self._request_help, "sensor-list": self.request_sensor_list}
        # Answered too (the clients' sampling, polling and liveness checks use them)
        # but not listed, so the fake's interface stays what 0.9 code expects.
        self._unlisted: Dict[str, Callable[..., Any]] = {
            "sensor-value": self.request_sensor_value,
            "sensor-sampling": self.request_sensor_sampling,
            "sensor-sampling-clear": self.request_sensor_sampling_clear,
            "watchdog": lambda req, msg: req.make_reply("ok")}

    def _sorted_sensors(self) -> List[Tuple[str, Sensor]]:
        # Not cached as a DeviceServer's are: tests may change the dict of fake sensors.
        return sorted(self._sensors.items())

    def _call_on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        # Requests are handled on the client's loop already.
        return fn(*args)

    # -- model --------------------------------------------------------------------------

    def add_sensors(self, sensor_infos: Dict[str, Tuple[Any, ...]]) -> None:
        for name, info in sensor_infos.items():
            description, units, type_spec = info[:3]
            # A Sensor type constant or a KATCP type name.
            sensor_type = type_spec if isinstance(type_spec, int) else Sensor.parse_type(type_spec)
            # Params may be Python values or KATCP-formatted ones (b'-123.4'), as
            # anything that would go into a #sensor-list inform.
            params = Sensor.parse_params(
                sensor_type, [format_argument(param) for param in info[3:]])
            sensor = Sensor(sensor_type, name, as_str(description), as_str(units),
                            params or None)
            replaced = self._sensors.get(name)
            self._sensors[name] = sensor
            self._unset_readings[name] = sensor.read()
            if replaced is not None:
                self._end_strategies_of(replaced)
        self.interface_changed()

    def _end_strategies_of(self, sensor: Sensor) -> None:
        """As a DeviceServer's: every client's strategy of `sensor`, which the device no
        longer has, ends (on the client's loop, where its strategies live)."""
        for client_conn, ioloop in list(self._loops.items()):
            CallQueue.of(ioloop).call(self._end_strategy, client_conn, sensor)

    def _end_strategy(self, client_conn: Any, sensor: Sensor) -> None:
        strategy = self._strategies.get(client_conn, {}).pop(sensor, None)
        if strategy is not None:
            strategy.cancel()

    def add_request_handlers(self, handlers: Dict[str, Callable[..., Any]]) -> None:
        self.request_handlers.update(handlers)
        self.interface_changed()

    def interface_changed(self) -> None:
        self.server.mass_send_message(Message.inform("interface-changed"))

    # -- connections --------------------------------------------------------------------

    def connect(self, deliver: Callable[[Message], None], ioloop: Any
                ) -> server.ClientConnection:
        """Register a new connection of a client on `ioloop`; returns its ClientConnection."""
        conn_id = next(self._connection_ids)
        # Per request id: the #sensor-value informs held back, which its reply's count
        # leaves out.
        withheld: Dict[Optional[bytes], int] = {}
        self.server.add_connection(
            conn_id, lambda msg: self._deliver_set_readings(deliver, withheld, msg))
        client_conn = server.ClientConnection(self.server, conn_id)
        self._conn_ids[client_conn] = conn_id
        self._loops[client_conn] = ioloop
        for name, value in (("katcp-protocol", str(self.PROTOCOL_INFO)),
                            ("katcp-library", "katcp-python-fake"),
                            ("katcp-device", "fake-device")):
            client_conn.inform(Message.inform("version-connect", name, value))
        return client_conn

    def _deliver_set_readings(self, deliver: Callable[[Message], None],
                              withheld: Dict[Optional[bytes], int], msg: Message) -> None:
        """Deliver `msg` unless it is the reading of a fake sensor that nothing set; a
        ``!sensor-value ok N`` counts only the informs delivered, as a server's does."""
        if (msg.mtype == Message.INFORM and msg.name in _READING_INFORMS
                and len(msg.arguments) > 2):
            name = as_str(msg.arguments[2])
            sensor = self._sensors.get(name)
            if sensor is not None and sensor.read() is self._unset_readings.get(name):
                if msg.name == "sensor-value":
                    withheld[msg.mid] = withheld.get(msg.mid, 0) + 1
                return
        elif msg.mtype == Message.REPLY and msg.name == "sensor-value" and msg.mid in withheld:
            held_back = withheld.pop(msg.mid)
            if len(msg.arguments) == 2 and msg.arguments[0] == b"ok":
                msg = Message.reply(msg.name, "ok", int(msg.arguments[1]) - held_back,
                                    mid=msg.mid)
        deliver(msg)

    def disconnect(self, client_conn: Any) -> None:
        self.clear_strategies(client_conn, remove_client=True)
        # As a server's: a ?sensor-sampling handled after this starts no strategy for it.
        client_conn.on_client_disconnect_was_called()
        del self._loops[client_conn]
        self.server.remove_connection(self._conn_ids.pop(client_conn))

    def handle_request(self, client_conn: Any, msg: Message) -> None:
        """Answer one request; the reply goes back through ``client_conn``."""
        req = FakeClientRequestConnection(client_conn, msg)
        handler = (self.request_handlers.get(msg.name) or self._standard.get(msg.name)
                   or self._unlisted.get(msg.name))
        if handler is None:
            req.reply_with_message(Message.reply_to_request(msg, "invalid", "Unknown request."))
            return
        try:
            result = handler(req, msg)
        except AsyncReply:
            return
        except Exception as exc:
            req.reply_with_message(_reply_from(msg, exc))
            return
        if result is not None and (tornado.gen.is_future(result) or inspect.isawaitable(result)):
            future = tornado.gen.convert_yielded(result)
            future.add_done_callback(lambda f: self._reply_later(req, msg, f))
        else:
            reply_with_result(req, result, _log)

    @staticmethod
    def _reply_later(req: Any, msg: Message, future: Any) -> None:
        if future.cancelled():
            return  # as a real server does: a cancelled handler sends no reply
        exc = future.exception()
        if exc is None:
            reply_with_result(req, future.result(), _log)
        else:
            req.reply_with_message(_reply_from(msg, exc))

    # -- ?help: the fake's own, listing the fake's interface ----------------------------

    def _request_help(self, req: Any, msg: Message) -> Message:
        handlers = dict(self._standard, **self.request_handlers)
        if msg.arguments:
            name = readable(msg.arguments[0])
            if name not in handlers:
                raise FailReply("Unknown request method.")
            names = [name]
        else:
            names = sorted(handlers)
        for name in names:
            req.inform(name, (handlers[name].__doc__ or "").strip() or name)
        return req.make_reply("ok", len(names))


class _FakeTransport:
    """An in-memory transport between a client protocol and a fake device.

    Both directions go through ``call_soon``, like real I/O: a reply never arrives inside
    the call that sent the request. Messages may also come from a test's own thread (a
    manager adding sensors while the client runs in a managed ioloop), so the device's
    messages cross over with :func:`~katcp.loop.crossing.post_to_loop`
    (``call_soon_threadsafe``).
    """

    def __init__(self, device: _FakeDevice, protocol: Any, ioloop: Any) -> None:
        self._device = device
        self._protocol = protocol
        self._ioloop = ioloop
        self._loop = ioloop.asyncio_loop
        self._parse = MessageParser().parse
        self._closed = False
        self._client_conn = device.connect(self._deliver, ioloop)

    def _deliver(self, msg: Message) -> None:
        if not self._closed:
            post_to_loop(self._ioloop, self._receive, bytes(msg) + b"\n")

    def _receive(self, data: bytes) -> None:
        if not self._closed:
            self._protocol.data_received(data)

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                msg = self._parse(line)
            except KatcpSyntaxError as exc:
                self._deliver(Message.inform("log", "error", "0", "root", str(exc)))
                continue
            if msg.mtype == Message.REQUEST:
                self._loop.call_soon(self._device.handle_request, self._client_conn, msg)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket, no peer address

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None
                                ) -> None:
        pass  # nothing is ever buffered, so the protocol is never paused

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._device.disconnect(self._client_conn)
        self._loop.call_soon(self._protocol.connection_lost, None)

    abort = close


class FakeAsyncClient(client.AsyncClient):
    """Fake version of :class:`katcp.client.AsyncClient`: connects to a fake device.

    Made as an AsyncClient is (the host and port are only names); it has a fake device of
    its own, to which ``FakeInspectingClientManager(client)`` adds sensors and request
    handlers. The factories pass the device their clients share as the ``fake_device``
    keyword argument.
    """

    def __init__(self, *args: Any, fake_device: Optional[_FakeDevice] = None,
                 **kwargs: Any) -> None:
        self._fake_device = fake_device if fake_device is not None else _FakeDevice()
        super().__init__(*args, **kwargs)

    async def connect_transport(self, protocol_factory: Callable[[], Any]) -> Any:
        """Connect to the fake device instead of a socket."""
        protocol = protocol_factory()
        transport = _FakeTransport(self._fake_device, protocol, self.ioloop)
        protocol.connection_made(transport)
        return transport, protocol


def _fake_subclass(base: type, *mixins: type, **attributes: Any) -> type:
    """A class ``Fake<base's name>`` deriving from the `mixins` and `base`."""
    return type("Fake" + base.__name__, mixins + (base,), attributes)


class _RequestHandlerRegistry:
    """Shared by the managers: register request handlers and sensors on a fake device."""

    def __init__(self, device: _FakeDevice) -> None:
        self._device = device

    @property
    def fake_sensors(self) -> Dict[str, Sensor]:
        """The fake device's :class:`katcp.Sensor` objects by name: set them to send updates."""
        return self._device._sensors

    @property
    def fake_sensor_infos(self) -> Dict[str, Tuple[Any, ...]]:
        return {name: (sensor.description, sensor.units, sensor.stype) + tuple(sensor.params or ())
                for name, sensor in self._device._sensors.items()}

    def add_sensors(self, sensor_infos: Dict[str, Tuple[Any, ...]]) -> None:
        """Add fake sensors.

        Parameters
        ----------
        sensor_infos : dict
            Sensor name to ``(description, units, type, *params)``; type is a KATCP type
            name (``"float"``) or a Sensor type constant.
        """
        self._device.add_sensors(sensor_infos)

    def add_request_handlers_object(self, rh_obj: Any) -> None:
        """Add fake request handlers from an object with request_* method(s).

        Handlers are called as ``handler(req, msg)`` (bound methods) and may be decorated
        with the kattypes decorators.
        """
        handlers = {}
        for attr in dir(rh_obj):
            if attr.startswith("request_") and callable(getattr(rh_obj, attr)):
                handlers[convert_method_name("request_", attr)] = getattr(rh_obj, attr)
        self._device.add_request_handlers(handlers)

    def add_request_handlers_dict(self, rh_dict: Dict[str, Callable[..., Any]]) -> None:
        """Add fake request handlers from a dict keyed by request name.

        Each handler is called as ``handler(req, msg)``.
        """
        self._device.add_request_handlers(dict(rh_dict))


class FakeInspectingClientManager(_RequestHandlerRegistry):
    """Manage the fake device behind a fake inspecting client (or a FakeAsyncClient)."""

    def __init__(self, fake_inspecting_client: Any) -> None:
        super().__init__(fake_inspecting_client._fake_device)

    @return_reply(Int())
    def request_sensor_list(self, req: Any, msg: Message) -> Tuple[Any, ...]:
        """Sensor list"""
        reply = self._device.request_sensor_list(req, msg)
        return ("ok", int(reply.arguments[1]))


def _apply_fake_options(registry: _RequestHandlerRegistry, fake_options: Any) -> None:
    fake_options = fake_options or {}
    if fake_options.get("sensor_infos"):
        registry.add_sensors(fake_options["sensor_infos"])
    handlers = fake_options.get("request_handlers")
    if isinstance(handlers, dict):
        registry.add_request_handlers_dict(handlers)
    elif handlers is not None:
        registry.add_request_handlers_object(handlers)


def _fake_inspecting_class(InspectingClass: Any, device: _FakeDevice) -> type:
    def inform_hook_client_factory(self: Any, host: str, port: int, *args: Any,
                                   **kwargs: Any) -> Any:
        base = type(InspectingClass.inform_hook_client_factory(self, host, port, *args, **kwargs))
        return _fake_subclass(base, FakeAsyncClient)(host, port, *args, fake_device=device,
                                                     **kwargs)

    return _fake_subclass(InspectingClass, _fake_device=device,
                          inform_hook_client_factory=inform_hook_client_factory)


def fake_inspecting_client_factory(InspectingClass: type, fake_options: Any, host: str,
                                   port: int, *args: Any, **kwargs: Any) -> Tuple[Any, Any]:
    """Create a fake inspecting client and its manager.

    Parameters
    ----------
    InspectingClass : class
        :class:`katcp.inspecting_client.InspectingClientAsync` or a subclass.
    fake_options : dict or None
        Optional ``sensor_infos`` (as for ``add_sensors``) and ``request_handlers`` (a
        dict or an object with ``request_*`` methods) to start with.
    host, port, args, kwargs
        As for ``InspectingClass``.

    Returns
    -------
    fake_inspecting_client : InspectingClass subclass instance
        Connects to an in-memory fake device.
    manager : :class:`FakeInspectingClientManager`
        Adds sensors and request handlers to the fake device.
    """
    device = _FakeDevice()
    fake_client = _fake_inspecting_class(InspectingClass, device)(host, port, *args, **kwargs)
    manager = FakeInspectingClientManager(fake_client)
    _apply_fake_options(manager, fake_options)
    return fake_client, manager


class FakeKATCPClientResourceManager(_RequestHandlerRegistry):
    """Manage a fake KATCPClientResource instance"""

    def __init__(self, fake_katcp_resource_client: Any) -> None:
        super().__init__(fake_katcp_resource_client._fake_device)


def _fake_resource_class(KATCPClientResourceClass: Type[KATCPClientResource],
                         device: _FakeDevice) -> type:
    def inspecting_client_factory(self: Any, host: str, port: int, ioloop_set_to: Any) -> Any:
        # The class the resource's own factory makes (a subclass's may make another), faked.
        base = type(KATCPClientResourceClass.inspecting_client_factory(
            self, host, port, ioloop_set_to))
        fake_class = _fake_inspecting_class(base, device)
        return fake_class(host, port, ioloop=ioloop_set_to,
                          auto_reconnect=self.auto_reconnect, logger=self._logger)

    return _fake_subclass(KATCPClientResourceClass, _fake_device=device,
                          inspecting_client_factory=inspecting_client_factory)


def fake_KATCP_client_resource_factory(KATCPClientResourceClass: type, fake_options: Any,
                                       resource_spec: Dict[str, Any], *args: Any,
                                       **kwargs: Any) -> Tuple[Any, Any]:
    """Create a fake KATCPClientResource-like class and a fake-manager.

    Parameters
    ----------
    KATCPClientResourceClass : class
        :class:`katcp.resource_client.KATCPClientResource` or a subclass.
    fake_options : dict or None
        As for :func:`fake_inspecting_client_factory`.
    resource_spec, args, kwargs
        As for ``KATCPClientResourceClass``.

    Returns
    -------
    fake_katcp_client_resource : KATCPClientResourceClass subclass instance
    manager : :class:`FakeKATCPClientResourceManager`
    """
    device = _FakeDevice()
    fake = _fake_resource_class(KATCPClientResourceClass, device)(resource_spec, *args, **kwargs)
    manager = FakeKATCPClientResourceManager(fake)
    _apply_fake_options(manager, fake_options)
    return fake, manager


class FakeKATCPClientResourceContainerManager:
    """Manage the fake devices behind the children of a fake resource container."""

    def __init__(self, fake_katcp_resource_container: Any) -> None:
        self._fkrc = fake_katcp_resource_container

    @property
    def child_managers(self) -> Dict[str, FakeKATCPClientResourceManager]:
        """Managers of the children's fake devices, keyed as the container's children
        (by escaped resource name)."""
        return self._fkrc._fake_child_managers

    def _manager(self, child_name: str) -> FakeKATCPClientResourceManager:
        return self.child_managers[escape_name(child_name)]

    def add_sensors(self, child_name: str, sensor_infos: Dict[str, Tuple[Any, ...]]) -> None:
        """Add fake sensors to the device of child ``child_name``.

        ``child_name`` may be the resource name or its escaped form.
        """
        self._manager(child_name).add_sensors(sensor_infos)

    def add_request_handlers_object(self, child_name: str, rh_obj: Any) -> None:
        """Add fake request handlers from an object with request_* method(s)."""
        self._manager(child_name).add_request_handlers_object(rh_obj)

    def add_request_handlers_dict(self, child_name: str,
                                  rh_dict: Dict[str, Callable[..., Any]]) -> None:
        """Add fake request handlers from a dict keyed by request name."""
        self._manager(child_name).add_request_handlers_dict(rh_dict)


def fake_KATCP_client_resource_container_factory(
        KATCPClientResourceContainerClass: Type[KATCPClientResourceContainer],
        fake_options: Any, resources_spec: Dict[str, Any], *args: Any, **kwargs: Any
) -> Tuple[Any, Any]:
    """Create a fake KATCPClientResourceContainer-like class and a fake-manager.

    Each child is made by the container class's own ``client_resource_factory`` (so it
    is of the class that factory makes), then connects to its own fake device.

    As :func:`fake_KATCP_client_resource_factory`, for
    :class:`katcp.resource_client.KATCPClientResourceContainer` (or a subclass) and its
    ``resources_spec``; the `fake_options` apply to every child. The manager returned
    is a :class:`FakeKATCPClientResourceContainerManager`, whose ``child_managers`` maps
    child names to their managers.
    """
    child_managers: Dict[str, FakeKATCPClientResourceManager] = {}

    def client_resource_factory(self: Any, res_spec: Dict[str, Any], parent: Any,
                                logger: Any) -> Any:
        # The child that the container class itself makes (its class, its arguments),
        # then connected to a fake device of its own: it is not started yet, and its
        # fake class only adds the fake device and replaces inspecting_client_factory.
        child = KATCPClientResourceContainerClass.client_resource_factory(
            self, res_spec, parent=parent, logger=logger)
        child.__class__ = _fake_resource_class(type(child), _FakeDevice())
        manager = FakeKATCPClientResourceManager(child)
        _apply_fake_options(manager, fake_options)
        child_managers[escape_name(res_spec["name"])] = manager
        return child

    fake_class = _fake_subclass(KATCPClientResourceContainerClass,
                                _fake_child_managers=child_managers,
                                client_resource_factory=client_resource_factory)
    container = fake_class(resources_spec, *args, **kwargs)
    return container, FakeKATCPClientResourceContainerManager(container)
