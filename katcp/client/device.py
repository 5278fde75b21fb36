"""DeviceClient: a KATCP client that dispatches messages to handler methods by name."""

import asyncio
import concurrent.futures
import functools
import logging
import traceback
from typing import Any, Callable, Dict, Optional

import tornado.gen

from katcp.client.lifecycle import ClientLifecycle, log
from katcp.client.protocol import ClientProtocol
from katcp.client.threadsafe import wrap_threadsafe_methods
from katcp.loop.crossing import is_awaitable
from katcp.wire.errors import KatcpClientDisconnected, KatcpVersionError
from katcp.wire.flags import (FLOAT_TS_KATCP_MAJOR, SEC_TS_KATCP_MAJOR,
                              VERSION_CONNECT_KATCP_MAJOR, ProtocolFlags)
from katcp.wire.handlers import DeviceMetaclass
from katcp.wire.message import Message
from katcp.wire.message import format_mid as _format_mid
from katcp.wire.text import readable
from katcp.wire.types import seconds_to_ms, whole_ms
from katcp.wire.util import check_tb_limit, object_repr, refuse_async_generator


_REQUEST, _REPLY, _INFORM = Message.REQUEST, Message.REPLY, Message.INFORM
# The largest message id (spec section 2.2: ids are 1 to 2**31 - 1).
_MAX_MID = 2 ** 31 - 1


class DeviceClient(ClientLifecycle, metaclass=DeviceMetaclass):
    """Device client proxy.

    Subclasses should implement .reply_*, .inform_* and send_request_* methods to take
    actions when messages arrive, and implement unhandled_inform, unhandled_reply and
    unhandled_request to provide fallbacks for messages for which there is no handler.

    Request messages can be sent by calling .send_request().

    Parameters
    ----------
    host : string
        Host to connect to.
    port : int
        Port to connect to.
    tb_limit : int or None
        Maximum number of stack frames to send in error traceback (None: all).
    logger : object, optional
        Python Logger object to log to; None (as not given) for the ``katcp.client`` logger.
    auto_reconnect : bool
        Whether to automatically reconnect if the connection dies.

    Attributes
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop`
        The loop the client runs on (set by :meth:`start` or :meth:`set_ioloop`).
    protocol_flags : :class:`katcp.core.ProtocolFlags` or None
        The server's KATCP version and features, once known.
    versions : dict
        What the server's version informs said on the current (or last) connection:
        name -> tuple of strings, e.g.
        ``versions["katcp-device"] == ("my-api-1.0", "my-build-0.1")``.
    last_connect_time : float or None
        When the current (or last) connection was made, in the loop's clock
        (``ioloop.time()``); None before the first connection.
    auto_reconnect_delay : float
        Seconds before the first reconnection attempt; further attempts back off
        exponentially (with random jitter, at most 5 seconds apart).

    Notes
    -----
    Without :meth:`enable_thread_safety` a client belongs to its ioloop's thread:
    calling :meth:`request`, :meth:`send_message` and the request methods of
    :class:`AsyncClient` from another thread raises AssertionError, as in katcp 0.9.
    :class:`CallbackClient` and :class:`BlockingClient` enable thread safety.

    To connect over something other than a TCP socket (a fake device in tests, say),
    override :meth:`connect_transport`.

    """

    # Filled in by DeviceMetaclass from the reply_*, inform_* and request_* methods.
    _inform_handlers: Dict[str, Callable[..., Any]]
    _reply_handlers: Dict[str, Callable[..., Any]]
    _request_handlers: Dict[str, Callable[..., Any]]

    # Set on the instance by preset_protocol_flags() only: one attribute less on most
    # clients (see ClientLifecycle._state_flags).
    _protocol_preset = False

    def __init__(self, host: str, port: int, tb_limit: int = 20,
                 logger: Optional[logging.Logger] = log,
                 auto_reconnect: bool = True) -> None:
        check_tb_limit(tb_limit)
        super().__init__(host, port, logger, auto_reconnect)
        self._tb_limit = tb_limit
        self._threadsafe = False
        self._last_msg_id = 0
        self.versions: Dict[str, Any] = {}
        self.protocol_flags: Optional[ProtocolFlags] = None
        self._server_supports_ids = False

    def __repr__(self) -> str:
        return object_repr(self, address=self.bind_address_string,
                           connected=self.is_connected(), protocol=self.protocol_flags)

    def enable_thread_safety(self) -> None:
        """Enable thread-safety features.

        Must be called before start().

        """
        if self._threadsafe:
            return
        if self._running.is_set():
            raise RuntimeError("Cannot enable thread safety after start")
        wrap_threadsafe_methods(self, self._post_to_loop, self._call_and_wait)
        self._threadsafe = True

    def _connection_made(self, protocol: ClientProtocol) -> None:
        # A new dict, not cleared: the server may be another one (restarted, or a new
        # version), and a thread reading the old dict is not disturbed.
        self.versions = {}
        if not self._protocol_preset:
            self._set_protocol(None)
        super()._connection_made(protocol)

    def _connection_lost(self) -> None:
        if not self._protocol_preset:
            # Protocol information belongs to a connection: wait_protocol() must wait for
            # the next one's.
            self._received_protocol_info.clear()
        super()._connection_lost()

    # -- protocol version ------------------------------------------------------------

    def preset_protocol_flags(self, protocol_flags: ProtocolFlags) -> None:
        """Preset server protocol flags.

        Sets the assumed server protocol flags and disables automatic server
        version detection.

        Parameters
        ----------
        protocol_flags : katcp.core.ProtocolFlags instance

        """
        self._protocol_preset = True
        self._set_protocol(protocol_flags)

    def _set_protocol(self, protocol_flags: Optional[ProtocolFlags]) -> None:
        """Take `protocol_flags` as the server's (None: not known, wait_protocol() waits)."""
        self.protocol_flags = protocol_flags
        self._server_supports_ids = protocol_flags is not None and bool(protocol_flags.message_ids)
        if protocol_flags is None:
            self._received_protocol_info.clear()
        else:
            self._received_protocol_info.set()

    def _set_protocol_from_inform(self, protocol_flags: Any, msg: Message) -> None:
        current = self.protocol_flags
        if self._protocol_preset:
            if protocol_flags != current:
                self._logger.warning(
                    "Protocol Version Warning: got %r, which does not match the preset "
                    "protocol flags %s; keeping the preset.", str(msg), current)
            return
        if current is None:
            self._set_protocol(protocol_flags)
            return
        is_v5 = (current.major or 0) >= VERSION_CONNECT_KATCP_MAJOR
        if is_v5 != ((protocol_flags.major or 0) >= VERSION_CONNECT_KATCP_MAJOR):
            # As in katcp 0.9, the client gives up on this server: reconnecting would
            # only meet the same contradiction again.
            self._logger.error(
                "Protocol Version Error: got %r from a server already detected as "
                "KATCP %s. Disconnecting and not reconnecting; use "
                "preset_protocol_flags() to talk to this server.", str(msg), current)
            self._auto_reconnect = False
            self._set_protocol(None)
            self._disconnect()

    def convert_seconds(self, time_seconds: float) -> float:
        """Convert a time in seconds to the device timestamp units.

        KATCP v4 and earlier, specified all timestamps in milliseconds. Since KATCP
        v5, all timestamps are in seconds. If the device KATCP version has been
        detected, this method converts a value in seconds to the appropriate
        (seconds or milliseconds) quantity. For version smaller than V4, the time
        value will be truncated to the nearest millisecond.

        Parameters
        ----------
        time_seconds : float

        Returns
        -------
        device_time : float or int

        """
        flags = self.protocol_flags
        if flags is None or flags.major is None or flags.major >= SEC_TS_KATCP_MAJOR:
            return time_seconds
        if flags.major < FLOAT_TS_KATCP_MAJOR:
            return whole_ms(time_seconds)
        return seconds_to_ms(time_seconds)

    def inform_version_connect(self, msg: Message) -> None:
        """Process a #version-connect message."""
        if len(msg.arguments) < 2:
            return
        name, *values = [readable(arg) for arg in msg.arguments]
        self.versions[name] = tuple(values)
        if name == "katcp-protocol":
            self._set_protocol_from_inform(ProtocolFlags.parse_version(values[0]), msg)

    def inform_version(self, msg: Message) -> None:
        """Handle katcp v4 and below version inform."""
        self._v4_version_inform("katcp-device-version", msg)

    def inform_build_state(self, msg: Message) -> None:
        """Handle katcp v4 and below build-state inform."""
        self._v4_version_inform("katcp-device-build-state", msg)

    def _v4_version_inform(self, name: str, msg: Message) -> None:
        if msg.arguments:
            self.versions[name] = (readable(msg.arguments[0]),)
        self._set_protocol_from_inform(ProtocolFlags(4, 0, set()), msg)

    # -- sending ---------------------------------------------------------------------

    def _next_id(self) -> str:
        """Return the next available message id.

        Ids count up from 1; after the largest the spec allows (2**31 - 1) they start
        again at 1. As in katcp 0.9.3 every automatic id is drawn here, so a test may
        replace it (on the instance, say) to choose the ids a client sends.

        Returns
        -------
        mid : str
            The id, as decimal digits.

        """
        number = self._last_msg_id % _MAX_MID + 1
        self._last_msg_id = number
        return str(number)

    def _assign_mid(self, msg: Message, use_mid: Optional[bool]) -> Any:
        """Give `msg` a message id if it has none and should carry one; return its key.

        An id is drawn from :meth:`_next_id` for every request without one (so the ids
        seen on the wire follow the number of requests made, as the reference client's
        do). The key that tracks the request is its wire id (bytes), or the drawn id as
        text when none is sent: that never clashes with a wire id.

        """
        if msg.mid is not None:
            return msg.mid
        mid = self._next_id()
        if use_mid or (use_mid is None and self._server_supports_ids):
            # The digits _next_id gives need only encoding, which is most of the cost of
            # a request id saved; whatever else a replacement gives (an int, bytes,
            # other text) gets _format_mid's conversion or its error.
            try:
                wire = mid.encode()
            except AttributeError:
                wire = b""
            msg.mid = wire if wire.isdigit() else _format_mid(mid)
            return msg.mid
        return mid

    def request(self, msg: Message, use_mid: Optional[bool] = None) -> Optional[bytes]:
        """Send a request message, with automatic message ID assignment.

        Parameters
        ----------
        msg : katcp.Message request message
        use_mid : bool or None, default=None

        Returns
        -------
        mid : bytes or None
            The message id, or None if no msg id is used.

        Notes
        -----
        If use_mid is None and the server supports msg ids, or if use_mid is True, a
        message ID will automatically be assigned if msg.mid is None. If msg.mid has
        a value and the server supports msg ids, that value will be used. If the
        server does not support msg ids, KatcpVersionError will be raised.

        """
        self._assign_mid(msg, use_mid)
        self.send_request(msg)
        return msg.mid

    def send_request(self, msg: Message) -> None:
        """Send a request message.

        Parameters
        ----------
        msg : Message object
            The request Message to send.

        Raises
        ------
        KatcpVersionError
            If `msg` has a message id and the server does not support them.

        """
        if msg.mtype != Message.REQUEST:
            raise AssertionError("not a request message: %s" % (msg,))  # also under -O
        if msg.mid is not None and not self._server_supports_ids:
            raise KatcpVersionError("Message IDs not supported by server")
        self.send_message(msg)

    def send_message(self, msg: Message) -> None:
        """Send any kind of message.

        Call it from the client's ioloop, or from any thread once
        :meth:`enable_thread_safety` has been called. From another thread the message
        is handed to the ioloop, and a failure to send it there is logged, not raised.

        Parameters
        ----------
        msg : Message object
            The message to send.

        Raises
        ------
        KatcpClientDisconnected
            If called on the ioloop while the client is not connected.
        AssertionError
            If called from another thread without thread safety enabled.

        """
        data = bytes(msg) + b"\n"
        if self._on_loop_thread():
            protocol = self._open_protocol()
            if protocol is None:
                raise KatcpClientDisconnected("Not connected to device %s"
                                              % self.bind_address_string)
            protocol.write(data)
        elif self._threadsafe:
            try:
                self._post_to_loop(self._write, data)
            except RuntimeError:  # stopped: as for a client not connected
                self._logger.warning("Cannot send message: client to %s is stopped",
                                     self.bind_address_string)
        else:
            self._check_loop_thread()  # raises: another thread, and not thread safe

    def _write(self, data: bytes) -> None:
        protocol = self._open_protocol()
        if protocol is None:
            self._logger.warning("Cannot send message: client not connected to %s",
                                 self.bind_address_string)
            return
        protocol.write(data)

    # -- receiving -------------------------------------------------------------------

    def handle_message(self, msg: Message) -> Any:
        """Handle a message from the server.

        Parameters
        ----------
        msg : Message object
            The Message to dispatch to the handler methods.

        """
        mtype = msg.mtype
        if mtype == _REPLY:
            return self.handle_reply(msg)
        if mtype == _INFORM:
            return self.handle_inform(msg)
        if mtype == _REQUEST:
            return self.handle_request(msg)
        self._logger.error("Unexpected message type from server ['%s'].", msg)
        return None

    def handle_inform(self, msg: Message) -> Any:
        """Dispatch an inform message to its ``inform_*`` method, or unhandled_inform().

        An exception the handler raises is logged (error, "Inform name FAIL" with the
        traceback up to `tb_limit` frames) and not raised, as in katcp 0.9: an override
        that calls this goes on after it.
        """
        handler = self._inform_handlers.get(msg.name)
        try:
            if handler is None:
                return self.unhandled_inform(msg)
            return handler(self, msg)
        except Exception as exc:
            self._log_handler_failure("Inform", msg, exc)
            return None

    def handle_reply(self, msg: Message) -> Any:
        """Dispatch a reply message to its ``reply_*`` method, or unhandled_reply().

        An exception the handler raises is logged ("Reply name FAIL"), as by
        :meth:`handle_inform`.
        """
        handler = self._reply_handlers.get(msg.name)
        try:
            if handler is None:
                return self.unhandled_reply(msg)
            return handler(self, msg)
        except Exception as exc:
            self._log_handler_failure("Reply", msg, exc)
            return None

    def handle_request(self, msg: Message) -> None:
        """Dispatch a request message to its ``request_*`` method, or unhandled_request().

        A handler may return a reply Message, which is sent (with the request's message
        id, as spec 5.1 section 2.2 asks), or a coroutine or future (tornado, asyncio or
        :class:`concurrent.futures.Future`) of one, whose reply is sent once it resolves;
        an exception it raises (unhandled_request() too) is logged ("Request name FAIL",
        as by :meth:`handle_inform`) and answered with a fail reply carrying the
        traceback.
        """
        handler = self._request_handlers.get(msg.name)
        try:
            if handler is None:
                return self.unhandled_request(msg)
            reply = handler(self, msg)
            refuse_async_generator(reply)
        except Exception as exc:
            reply = self._failed_request_reply(msg, exc)
        if isinstance(reply, concurrent.futures.Future):
            # Followed on the loop: it calls back in the thread that resolves it.
            reply = asyncio.wrap_future(reply)
        if is_awaitable(reply):
            tornado.gen.convert_yielded(reply).add_done_callback(
                functools.partial(self._reply_when_done, msg))
            return None
        self._send_request_reply(msg, reply)
        return None

    def _reply_when_done(self, msg: Message, future: Any) -> None:
        if future.cancelled():
            # Every request gets a reply (spec 5.1 section 2.2), as a server's does.
            self._send_request_reply(msg, Message.reply_to_request(msg, "fail",
                                                                   "Request cancelled."))
            return
        exc = future.exception()
        self._send_request_reply(
            msg, future.result() if exc is None else self._failed_request_reply(msg, exc))

    def _failed_request_reply(self, msg: Message, exc: BaseException) -> Message:
        return Message.reply_to_request(msg, "fail",
                                        self._log_handler_failure("Request", msg, exc))

    def _log_handler_failure(self, kind: str, msg: Message, exc: BaseException) -> str:
        """Log that the handler of `msg` raised `exc`; return the traceback logged."""
        reason = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__,
                                                    limit=self._tb_limit))
        # "Inform name FAIL: traceback" as katcp 0.9 logged it, naming the server too:
        # clients share a logger.
        self._logger.error("%s %s FAIL (server %s): %s", kind, msg.name,
                           self.bind_address_string, reason)
        return reason

    def _send_request_reply(self, msg: Message, reply: Any) -> None:
        if isinstance(reply, Message):
            if reply.mid is None and reply.mtype == Message.REPLY:
                reply.mid = msg.mid
            try:
                self.send_message(reply)
            except KatcpClientDisconnected:  # the server went while its request ran
                self._logger.warning("Cannot reply to %s: client not connected to %s",
                                     msg.name, self.bind_address_string)

    def unhandled_inform(self, msg: Message) -> None:
        """Fallback for an inform message without a handler (override it); ignores it."""

    def unhandled_reply(self, msg: Message) -> None:
        """Fallback for a reply message without a handler (override it); logs it."""
        self._logger.debug("Unhandled reply %s", msg)

    def unhandled_request(self, msg: Message) -> None:
        """Fallback for a request message without a handler (override it); logs it."""
        self._logger.debug("Unhandled request %s", msg)

