"""DeviceServerBase: message dispatch to request_*, inform_* and reply_* methods."""

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import logging
import sys
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, cast

import tornado.gen
from tornado.concurrent import Future

from katcp.core import (DEFAULT_KATCP_MAJOR, AsyncReply, DeviceServerMetaclass, FailReply,
                        Message, ProtocolFlags, steal_docstring_from)
from katcp.loop.call_queue import CallQueue
from katcp.loop.crossing import (is_awaitable, run_into_future, running_loop,
                                 thread_wait_timeout)
from katcp.server.connection import (ClientConnection, ClientRequestConnection,
                                     ThreadsafeClientConnection, check_message,
                                     client_connection_of)
from katcp.server.handler_thread import MessageHandlerThread
from katcp.server.loop_calls import log_call_failure, return_future
from katcp.server.stream_host import exception_text
from katcp.server.transport import KATCPServer
from katcp.wire.types import address_to_string, format_timestamp
from katcp.wire.util import object_repr, own_methods, uses_own

log = logging.getLogger("katcp.server")

_REQUEST, _REPLY, _INFORM = Message.REQUEST, Message.REPLY, Message.INFORM
_new_request = object.__new__

# KATCP major versions a device server can speak.
_SUPPORTED_KATCP_MAJORS = frozenset([4, 5])


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


def _nothing() -> None:
    pass


# What the connection hooks return once they are done: a future resolved with None.
_done_future = return_future(_nothing)


class _LoopWork(concurrent.futures.Future):
    """The outcome of work that :meth:`DeviceServerBase._call_on_loop` handed to the
    loop from another thread, through the loop's call queue `calls`.

    On the handler thread the work is held back with the rest of the message (see
    :meth:`MessageHandlerThread.hold_until_handled`) so that the reply joins it in one
    wake-up of the loop; a thread that waits for the outcome lets it go first, as
    :meth:`CallQueue.call_with_outcome` does.
    """

    def __init__(self, calls: CallQueue) -> None:
        super().__init__()
        self._calls = calls

    def result(self, timeout: Optional[float] = None) -> Any:
        self._calls.release()
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        self._calls.release()
        return super().exception(timeout)


def reply_with_result(req: ClientRequestConnection, reply: Any, logger: logging.Logger) -> None:
    """Reply to `req` with what its handler returned, or its future resolved to.

    "A reply is necessary for every request" (spec section 2): what is not this request's
    reply is failed (katcp 0.9 failed it too, as its reply checks raised), unless the
    handler replied itself. Servers and the fake devices of :mod:`katcp.fake_clients`
    apply this one rule.
    """
    name = req.msg.name
    if req.replied:
        if reply is not None:
            logger.error("Request handler for %r replied, then returned %r too", name, reply)
        return
    if reply is None:
        logger.error("Request handler for %r gave None without replying", name)
    elif not isinstance(reply, Message):
        logger.error("Request handler for %r returned %r, not a Message", name, reply)
    elif reply.mtype != _REPLY or reply.name != name:
        logger.error("Request handler for %r returned %r, not its reply", name, reply)
    else:
        req.reply_with_message(reply)
        return
    req.reply_with_message(Message.reply(name, "fail", "Handler returned an invalid reply."))


class DeviceServerBase(metaclass=DeviceServerMetaclass):
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
        # handle_request() reads the handler table for every request: from the instance,
        # not through it from the class (about 200 instructions less on CPython 3.11).
        # The class's table itself, so handlers added to it later are heard; a table the
        # instance was given before this is kept.
        self._request_handlers = self._request_handlers
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

        """
        if handler_thread and not thread_safe:
            raise ValueError("handler_thread=True requires thread_safe=True")
        self._mass_send = (self._server.mass_send_message_threadsafe if thread_safe
                           else self._server.mass_send_message)
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

    @steal_docstring_from(KATCPServer.set_ioloop)
    def set_ioloop(self, ioloop: Any = None) -> None:
        self._server.set_ioloop(ioloop)

    @steal_docstring_from(KATCPServer.setDaemon)
    def setDaemon(self, daemonic: bool) -> None:
        self._server.setDaemon(daemonic)

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
        # ClientRequestConnection(connection, msg) without the calls of the class and of
        # its __init__ (which this does as it does): this makes the req of every request.
        req = _new_request(ClientRequestConnection)
        req.client_connection = connection
        req.msg = msg
        req._replied = False
        try:
            reply = handler(self, req, msg)
        except Exception:
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

    def _reply_with_error(self, req: ClientRequestConnection, exc_info: Any) -> None:
        """Reply to `req` for a handler that raised (AsyncReply: it replies itself)."""
        exc = exc_info[1]
        if isinstance(exc, AsyncReply):
            return
        if isinstance(exc, FailReply):
            reply = Message.reply(req.msg.name, "fail", str(exc))
        else:
            reply = self.create_exception_reply_and_log(req.msg, exc_info)
        req.reply_with_message(reply)

    def _reply_with_result(self, req: ClientRequestConnection, reply: Any) -> None:
        """Reply to `req` with what a handler returned, or its future resolved to."""
        reply_with_result(req, reply, self._logger)

    def _handle_awaitable_reply(self, handler: Callable[..., Any],
                                req: ClientRequestConnection, reply: Any) -> Any:
        thread_future = isinstance(reply, concurrent.futures.Future)
        if not (thread_future or is_awaitable(reply)):
            self._reply_with_result(req, reply)
            return None
        concurrent_reply = getattr(handler, "_concurrent_reply", False)
        if not self._server.in_ioloop_thread():
            # Not on the loop (the handler thread, or a direct call from another thread).
            if reply.__class__ is _LoopWork:
                # Work queued for the loop: the reply is sent there, by a call queued
                # after it and after what the handler sent, rather than by a task that
                # awaits it after one more hop to the loop.
                done: concurrent.futures.Future = concurrent.futures.Future()
                if self._handler_thread is not None:
                    self._handler_thread.hold_until_handled()
                self._server.call_soon_threadsafe(self._reply_after_work, req, reply, done)
            else:
                # The future is awaited on the loop, by a coroutine made there: one made
                # here is never awaited if the loop closes before the call runs.
                done = self._server.call_on_loop(self._spawn_await_reply, req, reply)
            return None if concurrent_reply else done
        if (thread_future or asyncio.isfuture(reply)) and reply.done() and not reply.cancelled():
            # Already resolved (e.g. work done at once on the loop): reply now.
            self._reply_with_outcome(req, reply)
            return None
        task = self._server.spawn(self._await_reply(req, reply))
        return None if concurrent_reply else task

    def _reply_after_work(self, req: ClientRequestConnection, work: _LoopWork,
                          done: concurrent.futures.Future) -> None:
        """On the loop: reply to `req` with the outcome of `work` (which ran before this
        call, though what it returned may still be pending), then resolve `done`."""
        work.add_done_callback(
            lambda work: run_into_future(self._reply_with_outcome, (req, work), {}, done))
        # What fails in replying is logged, as a task awaiting the work would log it:
        # the handler thread uses `done` only to go on reading.
        done.add_done_callback(
            functools.partial(log_call_failure, self._logger, self._reply_with_outcome))

    def _reply_with_outcome(self, req: ClientRequestConnection, future: Any) -> None:
        """Reply to `req` with the outcome of its handler's resolved `future`."""
        if future.cancelled():
            # Said as _await_reply says it.
            if self._server.running():
                req.reply_with_message(Message.reply(req.msg.name, "fail",
                                                     "Request cancelled."))
            return
        try:
            result = future.result()
        except Exception:
            self._reply_with_error(req, sys.exc_info())
        else:
            self._reply_with_result(req, result)

    def _spawn_await_reply(self, req: ClientRequestConnection, awaitable: Any) -> Any:
        """On the loop: a task that replies to `req` once `awaitable` (what a handler
        returned on another thread) resolves; none if the server has stopped since.

        A stop ends the handlers it finds waiting (their futures are cancelled): one
        whose future reached the loop after the stop is ended the same way.
        """
        if not self._server.running():
            end = getattr(awaitable, "cancel", None) or getattr(awaitable, "close", None)
            if end is not None:
                end()
            return None
        return self._server.spawn(self._await_reply(req, awaitable))

    async def _await_reply(self, req: ClientRequestConnection, awaitable: Any) -> None:
        if isinstance(awaitable, concurrent.futures.Future):
            # Resolved in some other thread (e.g. by a thread pool).
            awaitable = asyncio.wrap_future(awaitable)
        try:
            reply = await awaitable
        except asyncio.CancelledError:
            if not self._server.running():
                raise  # the server's stop ends its handlers: nobody is left to reply to
            # The handler's own future was cancelled (by another request, say): every
            # request still gets a reply (spec 5.1 section 2.2).
            req.reply_with_message(Message.reply(req.msg.name, "fail", "Request cancelled."))
        except Exception:
            self._reply_with_error(req, sys.exc_info())
        else:
            self._reply_with_result(req, reply)

    def _call_on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's loop and return a future of its result.

        On the loop thread, or before the server runs, `fn` runs at once and the future
        is already resolved (a tornado Future on the loop, else a
        concurrent.futures.Future). From another thread while the server runs, `fn` hops
        to the loop and a concurrent.futures.Future is returned at once; from the handler
        thread the hop goes with the end of the message, its reply joining it (see
        :class:`_LoopWork`).
        """
        server = self._server
        if server.in_ioloop_thread():
            return return_future(fn)(*args)
        if server.running():
            calls = CallQueue.of(server.ioloop)
            work = _LoopWork(calls)
            if self._handler_thread is not None:
                # The reply joins it in one wake-up of the loop (_handle_awaitable_reply).
                self._handler_thread.hold_until_handled()
            return calls.call_into(work, fn, *args)
        done: concurrent.futures.Future = concurrent.futures.Future()
        run_into_future(fn, args, {}, done)
        return done

    def handle_inform(self, connection: Any, msg: Message) -> None:
        """Dispatch an inform message to its ``inform_*`` method, as requests are.

        Parameters
        ----------
        connection : ClientConnection
            The connection of the client that sent the inform.
        msg : Message
            The inform.

        """
        self._handle_other(self._inform_handlers, connection, msg)

    def handle_reply(self, connection: Any, msg: Message) -> None:
        """Dispatch a reply message to its ``reply_*`` method, as requests are.

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
            handler(self, connection, msg)
        except Exception:
            self._logger.exception("Error handling %s %r", Message.TYPE_NAMES[msg.mtype], msg.name)

    # -- sending ----------------------------------------------------------------------

    def inform(self, connection: Any, msg: Message) -> None:
        """Send an inform message to a particular client: ``connection.inform(msg)``.

        For informs of the device's own accord: an inform that is part of the answer to
        a request goes with :meth:`reply_inform`, which gives it the request's message id.
        See :meth:`ClientConnection.inform`.

        Parameters
        ----------
        connection : ClientConnection
            The client to send it to.
        msg : Message
            The inform.

        """
        client_connection_of(connection).inform(msg)

    def mass_inform(self, msg: Message) -> None:
        """Send an inform message to all clients (see :meth:`ClientConnection.mass_inform`).

        Parameters
        ----------
        msg : Message
            The inform.

        Raises
        ------
        TypeError
            If `msg` is not a Message.
        ValueError
            If `msg` is not an inform.

        """
        if msg.__class__ is not Message or msg.mtype != _INFORM:
            check_message(msg, _INFORM, "mass_inform")
        self._mass_send(msg)

    def reply(self, connection: Any, reply: Message, orig_req: Message) -> None:
        """Send an asynchronous reply to an earlier request on `connection`.

        See :meth:`ClientConnection.reply`.

        Parameters
        ----------
        connection : ClientConnection
            The client to send it to.
        reply : Message
            The reply; it is given the message id of `orig_req`.
        orig_req : Message
            The request it answers.

        """
        client_connection_of(connection).reply(reply, orig_req)

    def reply_inform(self, connection: Any, inform: Message, orig_req: Message) -> None:
        """Send an inform as part of the reply to an earlier request on `connection`.

        See :meth:`ClientConnection.reply_inform`.

        Parameters
        ----------
        connection : ClientConnection
            The client to send it to.
        inform : Message
            The inform; it is given the message id of `orig_req`.
        orig_req : Message
            The request it is part of the answer to.

        """
        client_connection_of(connection).reply_inform(inform, orig_req)

    def create_log_inform(self, level_name: str, msg: str, name: str,
                          timestamp: Optional[float] = None) -> Message:
        """Create a katcp logging inform message.

        Usually this will be called from inside a DeviceLogger object, but it is also
        used by the methods in this class when errors need to be reported to the client.

        Parameters
        ----------
        level_name : str
            KATCP log level name, e.g. 'error'.
        msg : str
            The log text.
        name : str
            Name of the logger.
        timestamp : float, optional
            Seconds since the Unix epoch; defaults to now.

        Returns
        -------
        inform : Message
            A ``#log`` inform.

        """
        if timestamp is None:
            timestamp = time.time()
        return Message.inform("log", level_name, format_timestamp(timestamp, self._katcp_major),
                              name, msg)

    def create_exception_reply_and_log(self, msg: Message, exc_info: Any) -> Message:
        """Create a fail reply carrying a traceback, and log the error.

        Parameters
        ----------
        msg : Message object
            The request that failed.
        exc_info : tuple
            As returned by sys.exc_info().

        Returns
        -------
        reply : Message
            ``!name fail <traceback>`` (limited to tb_limit frames).

        """
        reason = exception_text(exc_info, self._tb_limit)
        self._logger.error("Request %s FAIL: %s", msg.name, reason)
        return Message.reply(msg.name, "fail", reason)

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

    # -- running ----------------------------------------------------------------------

    def start(self, timeout: Optional[float] = None) -> Optional[bool]:
        """Start the server (and its handler thread, if it has one).

        As :meth:`KATCPServer.start`: with a `timeout`, waits that long for the server
        to run and returns whether it does. Of threads starting the server at once, one
        starts it and the others get RuntimeError at once; a start that fails leaves
        nothing running and can be tried again.

        Parameters
        ----------
        timeout : float or None, optional
            Seconds to wait for the server (and its handler thread) to be running
            (None: do not wait).

        Returns
        -------
        running : bool or None
            With a `timeout`, whether the server is running.

        Raises
        ------
        RuntimeError
            If the server is started, or another thread is starting it.
        OSError
            If the listening socket cannot be bound.

        """
        server = self._server
        handler_thread = self._handler_thread
        # One start at a time, and none while started: the others get RuntimeError at
        # once, before a handler thread is made.
        server.start_with(self._started_alongside(handler_thread))
        if not timeout:
            return None
        if handler_thread is not None:
            handler_thread.wait_running(timeout)
        return server.wait_running(timeout)

    @contextlib.contextmanager
    def _started_alongside(self, handler_thread: Optional[MessageHandlerThread]
                           ) -> Iterator[None]:
        """Start what runs with the server, around its run (see KATCPServer.start_with)."""
        # Replacements made since set_concurrency_options() (on the instance) count.
        self._rebind_receiver()
        if handler_thread is None:
            yield
            return
        # The thread's loop is known before a message can arrive.
        handler_thread.set_ioloop(self._server.get_ioloop())
        handler_thread.start()
        try:
            yield
        except BaseException:
            # Not serving (its port is taken, say): leave nothing running, so that it
            # can be started again. The thread just started has a queue of its own,
            # which no message can have reached: it ends at once.
            handler_thread.stop(None)
            handler_thread.join()
            raise

    @steal_docstring_from(KATCPServer.stop)
    def stop(self, timeout: Optional[float] = 1.0) -> concurrent.futures.Future:
        stopped = self._server.stop(timeout)
        if self._handler_thread is not None:
            self._handler_thread.stop(None)
        return stopped

    @steal_docstring_from(KATCPServer.join)
    def join(self, timeout: Optional[float] = None) -> None:
        self._server.join(timeout)
        if self._handler_thread is not None:
            self._handler_thread.join(timeout)

    def __repr__(self) -> str:
        address = self.bind_address
        return object_repr(self, address=address_to_string(address) if address else None,
                           running=self.running(), clients=self._server.connection_count,
                           protocol=self.PROTOCOL_INFO)

    def __enter__(self) -> Any:
        """``with server:`` starts the server and, outside a running loop, waits (up to
        10 s) until it runs (a wait that fails or is interrupted stops it again);
        leaving stops it and joins its threads.

        On the server's own loop thread (``with`` in a coroutine on the loop it runs
        on) leaving only stops it: the loop finishes the stop once it is given back
        (``async with`` waits for that).
        """
        self.start()
        if running_loop() is None:
            try:
                if not self.wait_running(10.0):
                    raise RuntimeError("%r did not start within 10 s" % (self,))
            except BaseException:
                # No __exit__ follows a failed entry (Ctrl-C in the wait, say).
                self.__exit__(*sys.exc_info())
                raise
        return self

    def __exit__(self, exc_type: Any, *exc_rest: Any) -> None:
        if self._server.in_ioloop_thread():
            # A join would have the loop wait for itself.
            self.stop(timeout=None)
            return
        try:
            self.stop(timeout=10.0)
            self.join(timeout=10.0)
        except Exception:
            if exc_type is None:
                raise
            # The with block's own exception is the one its caller must see.
            self._logger.exception("Error stopping %r after an error in its with block",
                                   self)

    async def __aenter__(self) -> Any:
        """``async with server:`` runs the server on the running loop (as
        :meth:`set_ioloop` would, unless a loop was set) and starts it; leaving stops it
        and waits until it has stopped (a handler thread is told to stop, and ends once
        the message it is handling is handled).
        """
        if self._server.manages_ioloop:
            self.set_ioloop()
        self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await asyncio.wrap_future(self.stop(timeout=None))

    @steal_docstring_from(KATCPServer.running)
    def running(self) -> bool:
        return self._server.running()

    @steal_docstring_from(KATCPServer.wait_running)
    def wait_running(self, timeout: Optional[float] = None) -> bool:
        return self._server.wait_running(timeout)

    def sync_with_ioloop(self, timeout: Optional[float] = None) -> Optional[Future]:
        """Block for ioloop to complete a loop if called from another thread.

        Returns a future if called from inside the ioloop.

        Raises concurrent.futures.TimeoutError if timed out while blocking.

        Parameters
        ----------
        timeout : float or None, optional

        """
        if self._server.in_ioloop_thread():
            return tornado.gen.sleep(0)  # resolves once the loop has gone round
        self._server.call_on_loop(_nothing).result(thread_wait_timeout(timeout))
        return None


# What the transport may skip by handing every message to handle_request (_receiver()).
_OWN_RECEIVING = own_methods(DeviceServerBase, "handle_message", "handle_request")
