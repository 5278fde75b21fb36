"""DeviceServerBase: message dispatch to request_*, inform_* and reply_* methods.

The class is made of parts with one job each, mixins in modules of their own:
:class:`~katcp.server.reply_outcomes.ReplyOutcomes` (the reply to what a request handler
returned or raised), :class:`~katcp.server.device_sending.DeviceSending` (informs and
replies sent by the device) and :class:`~katcp.server.lifecycle.ServerLifecycle` (start,
stop and the waits). What is left here is the choice of what receives each message, the
dispatch itself and the connection hooks.
"""

import asyncio
import functools
import inspect
import logging
import sys
from typing import Any, Callable, Dict, Optional, Tuple, cast

import tornado.gen

from katcp.core import DEFAULT_KATCP_MAJOR, DeviceServerMetaclass, Message, ProtocolFlags
from katcp.loop.crossing import is_awaitable
from katcp.server.connection import (ClientConnection, ClientRequestConnection,
                                     ThreadsafeClientConnection)
from katcp.server.device_sending import DeviceSending
from katcp.server.handler_thread import MessageHandlerThread
from katcp.server.lifecycle import ServerLifecycle, _nothing
from katcp.server.loop_calls import return_future
from katcp.server.reply_outcomes import ReplyOutcomes
from katcp.server.transport import KATCPServer
from katcp.wire.handlers import copy_request_handlers
from katcp.wire.types import address_to_string
from katcp.wire.util import (object_repr, own_methods, refuse_async_generator,
                             uses_own)

log = logging.getLogger("katcp.server")

_REQUEST, _REPLY, _INFORM = Message.REQUEST, Message.REPLY, Message.INFORM

# KATCP major versions a device server can speak.
_SUPPORTED_KATCP_MAJORS = frozenset([4, 5])

# What a handler that is called (not awaited) may raise and the server answers for: also
# asyncio.CancelledError, no Exception, from work of its own that was cancelled (a loop
# it ran, say), which would end the handler thread (no request answered again) or the
# connection of an AsyncDeviceServer's client.
_HANDLER_ERRORS = (Exception, asyncio.CancelledError)


def _is_async_function(handler: Callable[..., Any]) -> bool:
    """Whether a (possibly decorated) handler is an ``async def`` or tornado coroutine.

    Only what says so exactly counts: ``__wrapped__`` (functools.wraps) and the function
    of a :func:`functools.partial`. A decorator that hides its function otherwise is
    not seen through; its coroutine then starts on the handler thread, which is safe
    too (see :class:`katcp.server.handler_thread.CoroutineResumptions`).
    """
    func: Optional[Callable[..., Any]] = handler
    while func is not None:
        if inspect.iscoroutinefunction(func) or tornado.gen.is_coroutine_function(func):
            return True
        if isinstance(func, functools.partial):
            func = func.func
        else:
            func = getattr(func, "__wrapped__", None)
    return False


# Bounded: handlers added at runtime (closures over a server, say) are not kept for good.
_is_async_function_cached = functools.lru_cache(maxsize=1024)(_is_async_function)


def _is_async_handler(handler: Callable[..., Any]) -> bool:
    """:func:`_is_async_function`, cached for the handlers that can be (hashable ones)."""
    try:
        return _is_async_function_cached(handler)
    except TypeError:  # unhashable, as a callable dataclass instance is
        return _is_async_function(handler)


# What the connection hooks return once they are done: a future resolved with None.
_done_future = return_future(_nothing)


class DeviceServerBase(ReplyOutcomes, DeviceSending, ServerLifecycle,
                       metaclass=DeviceServerMetaclass):
    """Base class for device servers.

    Subclasses should add .request_* methods for dealing with request messages. These
    methods each take the client request connection and msg objects as arguments and
    should return the reply message or raise an exception as a result.

    Subclasses can also add .inform_* and reply_* methods to handle those types of
    messages.

    Should a subclass need to generate inform messages it should do so using either the
    .inform() or .mass_inform() methods.

    Finally, this class should probably not be subclassed directly but rather via
    subclassing DeviceServer itself which implements common .request_* methods.

    Parameters
    ----------
    host : str
        Host to listen on.
    port : int
        Port to listen on.
    tb_limit : int or None, optional
        Maximum number of stack frames to send in error tracebacks (None: all).
    logger : logging.Logger object, optional
        Logger to log messages to; None (as not given) for the ``katcp.server`` logger.

    Raises
    ------
    ValueError
        If ``PROTOCOL_INFO.major`` is not a KATCP version the server speaks (4 or 5).
    TypeError
        If `tb_limit` is neither an int nor None.

    """

    PROTOCOL_INFO = ProtocolFlags(DEFAULT_KATCP_MAJOR, 0,
                                  {ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS})

    # Filled in by the metaclass: KATCP message name -> handler.
    _request_handlers: Dict[str, Callable[..., Any]]
    _inform_handlers: Dict[str, Callable[..., Any]]
    _reply_handlers: Dict[str, Callable[..., Any]]

    # What on_message (or the handler thread) hands each message to (see _receiver()).
    _receive: Optional[Callable[[Any, Message], Any]] = None

    def __init__(self, host: str, port: int, tb_limit: int = 20,
                 logger: Optional[logging.Logger] = log) -> None:
        major = self.PROTOCOL_INFO.major
        if major not in _SUPPORTED_KATCP_MAJORS:
            raise ValueError("Unsupported KATCP major version %r in PROTOCOL_INFO: "
                             "supported are %s" % (major, sorted(_SUPPORTED_KATCP_MAJORS)))
        self._logger = logger = log if logger is None else logger
        self._tb_limit = tb_limit
        self._server = KATCPServer(self, host, port, tb_limit, logger)
        self._handler_thread: Optional[MessageHandlerThread] = None
        copy_request_handlers(self)
        self.set_concurrency_options()

    @property
    def _katcp_major(self) -> int:
        # A server's PROTOCOL_INFO has a major version (checked by __init__).
        return cast(int, self.PROTOCOL_INFO.major)

    @property
    def ioloop(self) -> Any:
        """The tornado IOLoop the server runs on (None until known)."""
        return self._server.ioloop

    @property
    def bind_address(self) -> Optional[Tuple[str, int]]:
        """The (host, port) where the server is listening for connections."""
        return self._server.bind_address

    def on_message(self, client_conn: Any, msg: Message) -> Any:
        """Dummy implementation of on_message required by KATCPServer.

        Will be replaced by a handler with the appropriate concurrency semantics when
        set_concurrency_options is called (defaults are set in __init__()).
        """
        raise NotImplementedError("set_concurrency_options() sets on_message")

    def set_concurrency_options(self, thread_safe: bool = True,
                                handler_thread: bool = True) -> None:
        """Set concurrency options for this device server. Must be called before start().

        Parameters
        ----------
        thread_safe : bool
            If True, make the server public methods thread safe. Incurs performance
            overhead.
        handler_thread : bool
            Can only be set if thread_safe is True. Handle all requests (even from
            different clients) in a separate, single, request-handling thread. Blocking
            request handlers will prevent the server from handling new requests from any
            client, but sensor strategies should still function. This more or less
            mimics the behaviour of a server in library versions before 0.6.0.

        Raises
        ------
        AssertionError
            If `handler_thread` is True and `thread_safe` is False (as in 0.9.3).
        """
        if handler_thread and not thread_safe:
            # 0.9.3's assert, with its exception and text; also under -O.
            raise AssertionError("handler_thread=True requires thread_safe=True")
        # A name, looked up at each send to all: a replacement of the transport's method
        # made later (once the server runs too) is heard, as 0.9.3 looked it up.
        self._mass_send = ("mass_send_message_threadsafe" if thread_safe
                           else "mass_send_message")
        self._server.client_connection_factory = (
            ThreadsafeClientConnection if thread_safe else ClientConnection)
        receive = self._receive = self._receiver()
        if handler_thread:
            thread = self._handler_thread = MessageHandlerThread(
                receive, self.create_log_inform, self._logger, tb_limit=self._tb_limit)
            self.on_message = thread.on_message  # type: ignore[method-assign]
        else:
            self._handler_thread = None
            # Handlers run on the loop; None or a future comes straight back to the
            # transport, so no future is made for synchronous handlers.
            self.on_message = receive  # type: ignore[method-assign,assignment]

    def _receiver(self) -> Callable[[Any, Message], Any]:
        """What receives each message: :meth:`handle_message` as it is now.

        Where neither handle_message nor handle_request is replaced (by a subclass, on
        the class or on this instance), handle_request takes every message (a call less
        per request) and hands on the others as handle_message would. Decided by
        :meth:`set_concurrency_options` and again by :meth:`start`: a replacement made
        once the server runs may go unseen.
        """
        return self.handle_request if uses_own(self, _OWN_RECEIVING) else self.handle_message

    def _rebind_receiver(self) -> None:
        """Bind :meth:`_receiver` anew where set_concurrency_options() bound it (for start())."""
        previous, receive = self._receive, self._receiver()
        if receive == previous:
            return
        self._receive = receive
        # Unless what it was bound to was replaced itself since (a wrapper of on_message).
        thread = self._handler_thread
        if thread is not None:
            if thread.handler is previous:
                thread.handler = receive
        elif self.on_message is previous:
            self.on_message = receive  # type: ignore[method-assign,assignment]

    def __repr__(self) -> str:
        address = self.bind_address
        return object_repr(self, address=address_to_string(address) if address else None,
                           running=self.running(), clients=self._server.connection_count,
                           protocol=self.PROTOCOL_INFO)

    # -- message dispatch -------------------------------------------------------------

    def handle_message(self, client_conn: Any, msg: Message) -> Any:
        """Handle messages of all types from clients.

        Requests go to :meth:`handle_request` (whose result is returned), informs to
        :meth:`handle_inform` and replies to :meth:`handle_reply`, each looked up when the
        message comes (a replacement on the instance is used).

        Parameters
        ----------
        client_conn : ClientConnection
            The connection of the client that sent the message.
        msg : Message
            The message, of any type.

        Returns
        -------
        done_future : Future or None
            For a request, what :meth:`handle_request` returns; None otherwise.

        """
        mtype = msg.mtype
        if mtype == _REQUEST:
            return self.handle_request(client_conn, msg)
        if mtype == _INFORM:
            return self.handle_inform(client_conn, msg)
        return self.handle_reply(client_conn, msg)

    def handle_request(self, connection: Any, msg: Message) -> Any:
        """Dispatch request `msg`, from client `connection`, to its ``request_*`` method.

        An inform or reply given here goes to :meth:`handle_inform` or
        :meth:`handle_reply`, as :meth:`handle_message` sends it: where a device replaces
        neither method (in a subclass, or on the instance before :meth:`start`), the
        server hands every message to this one (a call less per request).

        Parameters
        ----------
        connection : ClientConnection
            The connection of the client that sent the request.
        msg : Message
            The request.

        Returns
        -------
        done_future : Future or None
            Returns Future for async request handlers that will resolve when done, or
            None for sync request handlers once they have completed.

        """
        if msg.mtype != _REQUEST:
            # Called as handle_message (see _receiver()); the class's, which never comes
            # back here for these.
            return DeviceServerBase.handle_message(self, connection, msg)
        handler = self._request_handlers.get(msg.name)
        if handler is None:
            connection.reply(Message.reply(msg.name, "invalid", "Unknown request."), msg)
            return None
        if (self._handler_thread is not None and _is_async_handler(handler)
                and not self._server.in_ioloop_thread()):
            # Coroutines belong on the loop. The handler thread moves on to the next
            # message; this connection's reading resumes when the coroutine is done.
            done = self._server.call_on_loop(DeviceServerBase.handle_request, self,
                                             connection, msg)
            return None if getattr(handler, "_concurrent_reply", False) else done
        req = ClientRequestConnection(connection, msg)
        try:
            reply = handler(self, req, msg)
        except _HANDLER_ERRORS:
            self._reply_with_error(req, sys.exc_info())
            return None
        if reply.__class__ is Message or isinstance(reply, Message):
            if self._handler_thread is not None:
                self._handler_thread.hold_until_handled()
            if reply.mtype == _REPLY and reply.name == msg.name and not req._replied:
                req.reply_with_message(reply)
            else:
                self._reply_with_result(req, reply)
            return None
        return self._handle_awaitable_reply(handler, req, reply)

    def handle_inform(self, connection: Any, msg: Message) -> None:
        """Dispatch an inform message to its ``inform_*`` method, as requests are.

        A handler may be an ``async def`` function (or return a future): it runs on the
        server's loop, and what it raises is logged, as a plain handler's is.

        Parameters
        ----------
        connection : ClientConnection
            The connection of the client that sent the inform.
        msg : Message
            The inform.

        """
        self._handle_other(self._inform_handlers, connection, msg)

    def handle_reply(self, connection: Any, msg: Message) -> None:
        """Dispatch a reply message to its ``reply_*`` method, as informs are.

        Parameters
        ----------
        connection : ClientConnection
            The connection of the client that sent the reply.
        msg : Message
            The reply.

        """
        self._handle_other(self._reply_handlers, connection, msg)

    def _handle_other(self, handlers: Dict[str, Callable[..., Any]], connection: Any,
                      msg: Message) -> None:
        handler = handlers.get(msg.name)
        if handler is None:
            self._logger.warning("%s message %r from %s has no handler",
                                 Message.TYPE_NAMES[msg.mtype].capitalize(), msg.name,
                                 connection.address)
            return
        try:
            done = handler(self, connection, msg)
            refuse_async_generator(done)
        except _HANDLER_ERRORS:
            self._log_handling_error(msg)
            return
        if done is not None and is_awaitable(done):
            # An async def handler's coroutine runs on the loop (made on the handler
            # thread, it has not started yet), as a request handler's does.
            self._await_on_loop(self._await_handled, msg, done)

    async def _await_handled(self, msg: Message, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception:
            self._log_handling_error(msg)

    def _log_handling_error(self, msg: Message) -> None:
        self._logger.exception("Error handling %s %r", Message.TYPE_NAMES[msg.mtype], msg.name)

    # -- connection hooks ----------------------------------------------------------

    def on_client_connect(self, client_conn: Any) -> Any:
        """Called after client connection is established.

        Subclasses should override if they wish to send clients message or perform
        house-keeping at this point.

        Parameters
        ----------
        client_conn : ClientConnection object
            The client connection that has been successfully established.

        Returns
        -------
        ready : Future
            Resolves when the device is ready to accept messages.

        Notes
        -----
        If this raises, or `ready` fails, the client is refused (as in katcp 0.9): the
        error is logged and sent to it in a ``#log error`` inform ("Device error
        initialising connection" and the traceback), nothing it sends is handled, and the
        connection is closed through :meth:`on_client_disconnect`, as the server closes
        any: the device forgets the client as it forgets one that leaves.

        """
        return _done_future()

    def on_client_disconnect(self, client_conn: Any, msg: str, connection_valid: bool) -> Any:
        """Called before a client connection is closed.

        Subclasses should override if they wish to send clients message or perform
        house-keeping at this point. The server cannot guarantee this will be called
        (for example, the client might drop the connection). The message parameter
        contains the reason for the disconnection.

        Parameters
        ----------
        client_conn : ClientConnection object
            Client connection being disconnected.
        msg : str
            Reason client is being disconnected.
        connection_valid : boolean
            True if connection is still open for sending, False otherwise.

        Returns
        -------
        done : Future
            Resolves when the client connection can be closed.

        """
        return _done_future()


# What the transport may skip by handing every message to handle_request (_receiver()).
_OWN_RECEIVING = own_methods(DeviceServerBase, "handle_message", "handle_request")
