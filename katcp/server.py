"""Servers for the KAT device control language.

:class:`KATCPServer` is the transport: it accepts TCP connections on a tornado IOLoop, splits
the byte stream into lines, parses them and hands each :class:`~katcp.core.Message` to a
device (:class:`DeviceServerBase` and subclasses), which dispatches it to a ``request_*``,
``inform_*`` or ``reply_*`` method. Replies and informs are buffered per connection and
written once per loop iteration.
"""

import asyncio
import collections
import concurrent.futures
import errno
import functools
import inspect
import logging
import queue
import re
import socket
import sys
import threading
import time
import traceback
import warnings
from typing import Any, Dict, List, Optional, Union

import tornado.gen
import tornado.ioloop
from tornado.concurrent import Future

from katcp.transport.buffers import SharedBufferProtocol
from katcp.core import (
    DEFAULT_KATCP_MAJOR,
    INTERFACE_CHANGED_KATCP_MAJOR,
    SEC_TS_KATCP_MAJOR,
    VERSION_CONNECT_KATCP_MAJOR,
    AsyncReply,
    DeviceServerMetaclass,
    FailReply,
    KatcpSyntaxError,
    Message,
    MessageParser,
    ProtocolFlags,
    Sensor,
    _format_timestamp,
    _ms_to_seconds,
    _seconds_to_ms,
)
from katcp.ioloop_manager import IOLoopManager
from katcp.loop.crossing import run_into_future
from katcp.kattypes import (Int, Str, has_katcp_protocol_flags, minimum_katcp_version,
                            request, return_reply)
from katcp.sampling import SampleStrategy, format_inform_v4, format_inform_v5
from katcp.version import __version__

log = logging.getLogger("katcp.server")

_get_ident = threading.get_ident

BASE_REQUESTS = frozenset([
    "halt", "help", "log-level", "restart", "client-list", "sensor-list",
    "sensor-sampling", "sensor-sampling-clear", "sensor-value", "watchdog", "version-list",
    "new-command", "raise-fail", "raise-exception",
])
"""List of basic KATCP requests that a minimal device server should implement."""

_REQUEST, _REPLY, _INFORM = Message.REQUEST, Message.REPLY, Message.INFORM

# KATCP major versions a device server can speak.
_SUPPORTED_KATCP_MAJORS = frozenset([4, 5])


# accept() errors that mean "out of resources", after which accepting pauses.
_ACCEPT_RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

def construct_name_filter(pattern):
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
    if isinstance(pattern, bytes):
        pattern = pattern.decode("utf-8")
    if pattern.startswith("/") and pattern.endswith("/"):
        search = re.compile(pattern[1:-1]).search
        return False, lambda name: search(name) is not None
    return True, lambda name: name == pattern


def return_future(fn):
    """Decorator that turns a synchronous function into one returning a future.

    This should only be applied to non-blocking functions. Will do set_result() with the
    return value, or set_exception() if an exception is raised.

    Parameters
    ----------
    fn : callable

    Returns
    -------
    decorated : callable
        Calls `fn` and returns a resolved :class:`tornado.concurrent.Future`.

    """
    @functools.wraps(fn)
    def decorated(*args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future
    return decorated


def _done_future(result=None):
    future = Future()
    future.set_result(result)
    return future


_ASYNC_HANDLERS: Dict[Any, bool] = {}


def _is_async_handler(handler):
    """Whether a (possibly decorated) handler is an ``async def`` or tornado coroutine."""
    try:
        return _ASYNC_HANDLERS[handler]
    except KeyError:
        pass
    func = handler
    result = False
    while func is not None:
        if inspect.iscoroutinefunction(func) or tornado.gen.is_coroutine_function(func):
            result = True
            break
        func = getattr(func, "__wrapped__", None)
    _ASYNC_HANDLERS[handler] = result
    return result


def _client_connection(connection):
    # Handlers written for katcp < 0.5 pass their req object where a connection is meant.
    if isinstance(connection, ClientRequestConnection):
        warnings.warn("Pass req.client_connection (not req) to the server's inform(), "
                      "reply() and reply_inform()", DeprecationWarning, stacklevel=3)
        return connection.client_connection
    return connection


def _exception_text(exc_info, limit):
    # Ends with a newline, as the traceback module formats it (and as katcp 0.9 sent it).
    return "".join(traceback.format_exception(*exc_info, limit=limit))


def _answer_to(msg, orig_req):
    """Give `msg` (a reply or reply inform) the id of `orig_req`, whose name it must have."""
    if msg.name != orig_req.name:
        raise ValueError("Message name %r does not match request name %r." % (
            msg.name, orig_req.name))
    msg.mid = orig_req.mid
    return msg


# ---------------------------------------------------------------------------
# Client connections
# ---------------------------------------------------------------------------

class ClientConnection:
    """Encapsulates the connection between a single client and the server.

    Parameters
    ----------
    server : :class:`KATCPServer`
        The transport that owns the connection.
    conn_id : object
        The transport's handle for the connection.

    """

    def __init__(self, server, conn_id):
        self._server = server
        self._conn_id = conn_id
        self.address = server.get_address(conn_id)
        self._disconnect_called = False

    def inform(self, msg):
        """Send an inform message to a particular client.

        Should only be used for asynchronous informs. Informs that are part of the
        response to a request should use :meth:`reply_inform` so that the message
        identifier from the original request can be attached to the inform.

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        self._server.send_message(self._conn_id, msg)

    def reply_inform(self, inform, orig_req):
        """Send an inform as part of the reply to an earlier request.

        Parameters
        ----------
        inform : Message object
            The inform message to send.
        orig_req : Message object
            The request message being replied to. The inform message's id is
            overridden with the id from orig_req before the inform is sent.

        Raises
        ------
        ValueError
            If the names of `inform` and `orig_req` differ (nothing is sent).

        """
        self._server.send_message(self._conn_id, _answer_to(inform, orig_req))

    def reply(self, reply, orig_req):
        """Send an asynchronous reply to an earlier request.

        Parameters
        ----------
        reply : Message object
            The reply message to send.
        orig_req : Message object
            The request message being replied to. The reply message's id is
            overridden with the id from orig_req before the reply is sent.

        Raises
        ------
        ValueError
            If the names of `reply` and `orig_req` differ (nothing is sent).

        """
        self._server.send_message(self._conn_id, _answer_to(reply, orig_req))

    def mass_inform(self, msg):
        """Send an inform message to all clients.

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        self._server.mass_send_message(msg)

    def on_client_disconnect_was_called(self):
        """Prevent multiple calls to on_client_disconnect handler.

        Call this when an on_client_disconnect handler has been called.
        """
        self._disconnect_called = True

    def disconnect(self, reason):
        """Disconnect this client connection for specified reason.

        Parameters
        ----------
        reason : str
            Sent to the client in a ``#disconnect`` inform.

        Returns
        -------
        done : Future
            Resolves once the connection is closed (an asyncio Task if called in the
            ioloop thread, else a concurrent.futures.Future).

        """
        server = self._server
        coro = server.disconnect_client(self._conn_id, reason)
        if server.in_ioloop_thread():
            return server._spawn(coro)
        return asyncio.run_coroutine_threadsafe(coro, server.ioloop.asyncio_loop)


class ThreadsafeClientConnection(ClientConnection):
    """Make ClientConnection compatible with messages sent from other threads."""

    def inform(self, msg):
        """Send an inform message to a particular client (from any thread).

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        self._server.send_message_threadsafe(self._conn_id, msg)

    def reply_inform(self, inform, orig_req):
        """Send an inform as part of the reply to an earlier request (from any thread).

        Parameters
        ----------
        inform : Message object
            The inform message to send.
        orig_req : Message object
            The request message being replied to; its id is copied to `inform`.

        """
        self._server.send_message_threadsafe(self._conn_id, _answer_to(inform, orig_req))

    def reply(self, reply, orig_req):
        """Send an asynchronous reply to an earlier request (from any thread).

        Parameters
        ----------
        reply : Message object
            The reply message to send.
        orig_req : Message object
            The request message being replied to; its id is copied to `reply`.

        """
        self._server.send_message_threadsafe(self._conn_id, _answer_to(reply, orig_req))

    def mass_inform(self, msg):
        """Send an inform message to all clients (from any thread).

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        self._server.mass_send_message_threadsafe(msg)


class ClientRequestConnection:
    """Encapsulates specific KATCP request and associated client connection.

    Parameters
    ----------
    client_connection : :class:`ClientConnection`
        The connection the request arrived on.
    req_msg : Message object
        The request message.

    """

    __slots__ = ("client_connection", "msg", "_replied")

    def __init__(self, client_connection, req_msg):
        self.client_connection = client_connection
        self.msg = req_msg
        self._replied = False

    @property
    def mid(self):
        """The message id of the request (bytes or None)."""
        return self.msg.mid

    def inform(self, *args):
        """Send an inform that is part of the reply, carrying the request's id.

        Parameters
        ----------
        args : list of objects
            Inform arguments (the name is the request's name).

        """
        self.client_connection.inform(Message.reply_inform(self.msg, *args))

    def inform_after_reply(self, *args):
        """Send an inform carrying the request's id, even after the reply was sent.

        Parameters
        ----------
        args : list of objects
            Inform arguments.

        """
        self.inform(*args)

    def make_reply(self, *args):
        """Return a reply Message to the request (not sent).

        Parameters
        ----------
        args : list of objects
            Reply arguments, normally starting with 'ok' or 'fail'.

        Returns
        -------
        reply : Message

        """
        return Message.reply_to_request(self.msg, *args)

    def reply(self, *args):
        """Send the reply to the request.

        Parameters
        ----------
        args : list of objects
            Reply arguments, normally starting with 'ok' or 'fail'.

        """
        self.reply_with_message(Message.reply_to_request(self.msg, *args))

    def reply_again(self, *args):
        """Send another reply to the request, even though one was already sent.

        Parameters
        ----------
        args : list of objects
            Reply arguments.

        """
        self._replied = False
        self.reply(*args)

    def reply_with_message(self, rep_msg):
        """Send a pre-created reply message to the client connection.

        Will check that rep_msg.name matches the bound request.

        Parameters
        ----------
        rep_msg : Message object
            The reply to send.

        """
        if self._replied:
            raise RuntimeError("Reply to request %r already sent." % (self.msg.name,))
        if rep_msg.name != self.msg.name:
            raise ValueError("Reply name %r does not match request name %r." % (
                rep_msg.name, self.msg.name))
        self._replied = True
        self.client_connection.reply(rep_msg, self.msg)


# ---------------------------------------------------------------------------
# Transport
# ---------------------------------------------------------------------------

class _Connection(SharedBufferProtocol):
    """One accepted TCP connection: line splitting, paused reading and a write buffer.

    An asyncio protocol on the IOLoop's asyncio loop: a chunk of input is split, parsed
    and dispatched in one callback, and the replies it produced are written with one
    ``transport.write``. Reading pauses while the device is busy with a message.
    """

    def __init__(self, server):
        self._server = server
        self._device_on_message = server._device.on_message
        self._parse = server._parser.parse
        self._call_soon = server.ioloop.asyncio_loop.call_soon
        self.transport = None
        self.address = None
        self.client_conn = None
        self.closing = False
        self._wbuf = []
        self._wbuf_size = 0
        self._max_wbuf_size = server.MAX_WRITE_BUFFER_SIZE
        self._partial = b""
        self._lines = collections.deque()
        self._busy = True  # until on_client_connect is done
        self._processing = False
        self._drained = None
        # An orderly close ends with an empty line; a close for a protocol violation
        # (an over-long line) does not, as in katcp 0.9.
        self.end_with_empty_line = True

    # -- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=self._server.MAX_WRITE_BUFFER_SIZE)
        peer = transport.get_extra_info("peername")
        self.address = "%s:%s" % peer[:2] if peer else repr(self)
        ready = self._server._connection_made(self)
        if ready is None:
            self._busy = False
        else:
            ready.add_done_callback(self._done)

    def data_received(self, data):
        if self._partial:
            data = self._partial + data
        if b"\r" in data:
            data = data.replace(b"\r", b"\n")
        lines = data.split(b"\n")
        self._partial = lines.pop()
        self._lines.extend(lines)
        if not self._busy:
            self._process()
        if len(self._partial) > self._server.MAX_MSG_SIZE:
            self._server._message_too_long(self)

    def connection_lost(self, exc):
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if not self.closing:
            self._lost()

    def _lost(self):
        self.closing = True
        self._server._spawn(self._server.disconnect_client(
            self, "Connection closed by client.", False))

    def pause_writing(self):
        # Past MAX_WRITE_BUFFER_SIZE the client is not reading (the limit is set in
        # connection_made); drain() pauses us on purpose.
        if self._drained is None:
            self._server._buffer_full(self)

    def resume_writing(self):
        # After drain() this means "all sent".
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- input --------------------------------------------------------------------------

    def _process(self):
        lines = self._lines
        on_message = self._device_on_message
        parse = self._parse
        self._processing = True
        try:
            while lines and not self.closing:
                line = lines.popleft()
                if not line:
                    continue
                try:
                    msg = parse(line)
                except KatcpSyntaxError:
                    # Only truly empty lines are skipped (above): like katcp 0.9.3, a
                    # line of blanks is answered with an error like any bad line.
                    self._server._send_syntax_error(self)
                    continue
                ready = on_message(self.client_conn, msg)
                if ready is not None and not ready.done():
                    # Per-connection serialisation: read no further until it is handled.
                    self._busy = True
                    self.transport.pause_reading()
                    ready.add_done_callback(self._done)
                    break
        finally:
            self._processing = False
        # Replies to the whole chunk go out now, in one write.
        self.flush()

    def _done(self, ready):
        if not ready.cancelled() and ready.exception() is not None:
            self._server._logger.error("Error handling message from %s",
                                       self.address, exc_info=ready.exception())
        self._busy = False
        self._process()
        if not self._busy and not self.closing:
            self.transport.resume_reading()

    # -- output -------------------------------------------------------------------------

    def send(self, data):
        """Queue bytes; the first queued chunk schedules a flush for this loop iteration.

        While a chunk of input is being processed no flush is scheduled: processing ends
        with one, or more than MAX_WRITE_BUFFER_SIZE bytes queued meanwhile flush at once
        (so that a client that does not read is noticed before the chunk is done).
        """
        if self.closing:
            return
        wbuf = self._wbuf
        wbuf.append(data)
        if len(wbuf) == 1:
            if not self._processing:
                self._call_soon(self.flush)
            self._wbuf_size = len(data)
        else:
            self._wbuf_size += len(data)
            if self._wbuf_size > self._max_wbuf_size:
                self.flush()

    def flush(self):
        """Hand the buffered bytes to the transport in one write."""
        wbuf = self._wbuf
        if not wbuf:
            return
        data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        wbuf.clear()
        self._wbuf_size = 0
        transport = self.transport
        transport.write(data)
        if transport.is_closing() and not self.closing:
            # The write failed (the peer is gone): stop handling its requests now rather
            # than when connection_lost() comes round.
            self._lost()

    def close(self):
        """Close the connection; the server notices and disconnects the client."""
        if self.transport is not None:
            self.transport.close()

    def drain(self):
        """Return a future that resolves when everything written so far is sent."""
        drained = self._drained = self._server.ioloop.asyncio_loop.create_future()
        if self.transport.is_closing() or self.transport.get_write_buffer_size() == 0:
            drained.set_result(None)
        else:
            # With no slack the transport pauses us now and resumes us once it is empty.
            self.transport.set_write_buffer_limits(high=0, low=0)
        return drained

    def __repr__(self):
        return "<katcp connection %s>" % (self.address,)


class KATCPServer:
    """Tornado IO backend for a KATCP Device.

    Listens for connections on a server socket, reads KATCP messages off the wire and
    passes them on to a DeviceServer-like class.

    All class CONSTANT attributes can be changed until start() is called.

    Parameters
    ----------
    device : DeviceServerBase-like
        Must provide on_message(client_conn, msg), on_client_connect(client_conn),
        on_client_disconnect(client_conn, msg, connection_valid) and
        create_log_inform(level_name, msg, name).
    host : str
        Host to listen on ('' for all interfaces).
    port : int
        Port to listen on (0 for an ephemeral port, chosen at the first start and kept
        when the server is started again).
    tb_limit : int, optional
        Maximum number of stack frames in tracebacks sent to clients.
    logger : logging.Logger object, optional

    """

    # Connections accepted per readiness callback, and the pause after running out of
    # file descriptors.
    _ACCEPT_BATCH = 100
    _ACCEPT_RETRY_DELAY = 1.0

    DISCONNECT_TIMEOUT = 1
    """How long to wait for the device on_client_disconnect() to complete."""

    MAX_MSG_SIZE = 2 * 1024 * 1024
    """Maximum message size that can be received in bytes.

    If more than MAX_MSG_SIZE bytes are read from the client without encountering a
    message terminator (i.e. newline), the connection is closed.
    """

    MAX_WRITE_BUFFER_SIZE = 4 * 1024 * 1024
    """Maximum outstanding bytes to be buffered by the server process.

    If more than MAX_WRITE_BUFFER_SIZE bytes are outstanding, the client connection is
    closed.
    """

    client_connection_factory = ClientConnection
    """Factory that produces a ClientConnection compatible instance.

    signature: client_connection_factory(server, conn_id). Should be set before
    calling start().
    """

    def __init__(self, device, host, port, tb_limit=20, logger=log):
        self._device = device
        self._bind_request = (host, port)
        self._tb_limit = tb_limit
        self._logger = logger
        self._parser = MessageParser()
        self._ioloop_manager = IOLoopManager(managed_default=True, logger=logger)
        self.ioloop = None
        self.ioloop_thread_id = None
        self._listener = None
        self._bindaddr = None
        self._connections = {}
        self._accepting = set()
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._outbox = []
        self._outbox_lock = threading.Lock()
        self._call_soon_threadsafe = None
        self._tasks = set()

    # -- loop management ------------------------------------------------------

    @property
    def bind_address(self):
        """The (host, port) where the server is listening for connections."""
        return self._bindaddr

    def setDaemon(self, daemonic):
        """Set daemonic state of the managed ioloop thread to True / False.

        Calling this method for a non-managed ioloop has no effect. Must be called
        before start(), or it will also have no effect.

        Parameters
        ----------
        daemonic : bool

        """
        self._ioloop_manager.setDaemon(daemonic)

    def set_ioloop(self, ioloop=None):
        """Set the tornado IOLoop to use.

        Sets the tornado.ioloop.IOLoop instance to use, defaulting to IOLoop.current().
        If set_ioloop() is never called the IOLoop is started in a new thread, and will
        be stopped if self.stop() is called.

        Parameters
        ----------
        ioloop : :class:`tornado.ioloop.IOLoop`, optional

        Notes
        -----
        Must be called before start() is called.

        """
        self._set_unmanaged_ioloop(ioloop or tornado.ioloop.IOLoop.current())

    def _set_unmanaged_ioloop(self, ioloop):
        # ioloop None defers the choice to IOLoop.current() at start() time.
        self._ioloop_manager.set_ioloop(ioloop, managed=False)
        self.ioloop = ioloop

    def in_ioloop_thread(self):
        """Return True if called in the IOLoop thread of this server."""
        return _get_ident() == self.ioloop_thread_id

    def start(self, timeout=None):
        """Install the server on its IOLoop, optionally starting the IOLoop.

        The listening socket is bound before this returns, so :attr:`bind_address`
        is available immediately.

        Parameters
        ----------
        timeout : float or None, optional
            Time in seconds to wait for server thread to start.

        Returns
        -------
        running : bool or None
            Whether the server is running, if a timeout was given.

        """
        if self._running.is_set():
            raise RuntimeError("Server already started")
        self._stopped.clear()
        sock = self._bind()
        ioloop = self.ioloop = self._ioloop_manager.get_ioloop()
        if self._in_running_loop(ioloop):
            self._install(sock)
        else:
            ioloop.add_callback(self._install, sock)
        self._ioloop_manager.start(None)
        if timeout:
            return self._running.wait(timeout)
        return None

    @staticmethod
    def _in_running_loop(ioloop):
        try:
            return asyncio.get_running_loop() is ioloop.asyncio_loop
        except RuntimeError:
            return False

    def _bind(self):
        host, port = self._bind_request
        family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except Exception:
            sock.close()
            raise
        self._bindaddr = sock.getsockname()[:2]
        # A restarted server listens where it did before (port 0 picks a port only once),
        # so that clients reconnecting to the old address find it again.
        self._bind_request = (host, self._bindaddr[1])
        return sock

    def _install(self, sock):
        self.ioloop_thread_id = _get_ident()
        loop = self.ioloop.asyncio_loop
        with self._outbox_lock:
            # Calls queued for a previous run's loop that stopped before draining them
            # are for connections now gone; left queued, they would keep any later call
            # from scheduling a drain (a restarted server would never answer).
            self._outbox = []
        self._call_soon_threadsafe = loop.call_soon_threadsafe
        self._listener = sock
        loop.add_reader(sock.fileno(), self._accept_ready)
        self._running.set()

    def _accept_ready(self):
        # Our own accept loop rather than asyncio's Server: shutdown must be able to wait
        # for every connection accepted before the listener closed, and asyncio's leaves
        # one accepted in that moment open, unowned, forever.
        loop = self.ioloop.asyncio_loop
        for _ in range(self._ACCEPT_BATCH):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_RESOURCE_ERRNOS:
                    # Out of descriptors or memory: back off instead of spinning.
                    self._logger.error("Cannot accept connections: %s", exc)
                    loop.remove_reader(self._listener.fileno())
                    loop.call_later(self._ACCEPT_RETRY_DELAY, self._resume_accepting)
                return
            sock.setblocking(False)
            task = loop.create_task(loop.connect_accepted_socket(lambda: _Connection(self), sock))
            self._accepting.add(task)
            task.add_done_callback(self._accepted)

    def _accepted(self, task):
        self._accepting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._logger.error("Failed to set up an accepted connection: %s",
                               task.exception())

    def _resume_accepting(self):
        if self._listener is not None:
            self.ioloop.asyncio_loop.add_reader(self._listener.fileno(), self._accept_ready)

    def stop(self, timeout=1.0):
        """Stop a running server (from another thread).

        Sends ``#disconnect`` to every client (via the device's
        on_client_disconnect()), closes all connections and the listening socket, and
        stops the IOLoop if it is managed.

        Parameters
        ----------
        timeout : float or None, optional
            Seconds to wait for server to have started.

        Returns
        -------
        stopped : thread-safe Future
            Resolves when the server is stopped

        """
        if timeout and not self.in_ioloop_thread():
            self._running.wait(timeout)
        stopped = self._ioloop_manager.stop(None, callback=self._shutdown)
        if stopped is None:
            stopped = concurrent.futures.Future()
            stopped.set_result(None)
        return stopped

    async def _shutdown(self):
        if self._listener is not None:
            self.ioloop.asyncio_loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        if self._accepting:
            await asyncio.gather(*self._accepting, return_exceptions=True)
        self._running.clear()
        conns = list(self._connections)
        if conns:
            await asyncio.gather(*[
                self.disconnect_client(conn, "Device server shutting down.")
                for conn in conns], return_exceptions=True)
        self._stopped.set()

    def join(self, timeout=None):
        """Rejoin the server thread.

        Parameters
        ----------
        timeout : float or None, optional
            Time in seconds to wait for the thread to finish.

        Notes
        -----
        If the ioloop is not managed, this function will block until the server port
        is closed, meaning a new server can be started on the same port.

        """
        if self._ioloop_manager.managed():
            self._ioloop_manager.join(timeout)
        else:
            self._stopped.wait(timeout)

    def running(self):
        """Whether the handler thread is running."""
        return self._running.is_set()

    def wait_running(self, timeout=None):
        """Wait until the handler thread is running.

        Parameters
        ----------
        timeout : float or None, optional

        Returns
        -------
        running : bool

        """
        return self._running.wait(timeout)

    # -- connections ------------------------------------------------------------

    def get_address(self, stream):
        """Text representation of the network address of a connection stream.

        Notes
        -----
        This method is thread-safe

        """
        return stream.address

    def _connection_made(self, conn):
        client_conn = conn.client_conn = self.client_connection_factory(self, conn)
        self._connections[conn] = client_conn
        try:
            ready = self._device.on_client_connect(client_conn)
        except Exception:
            self._logger.exception("Error in on_client_connect for %s", conn.address)
            return None
        return None if ready is None else tornado.gen.convert_yielded(ready)

    def _send_syntax_error(self, conn):
        reason = _exception_text(sys.exc_info(), self._tb_limit)
        conn.send(bytes(self._device.create_log_inform("error", reason, "root")) + b"\n")

    def _message_too_long(self, conn):
        self._logger.error("Message from %s exceeds %d bytes; disconnecting",
                           conn.address, self.MAX_MSG_SIZE)
        conn.transport.pause_reading()
        conn.end_with_empty_line = False
        self._spawn(self.disconnect_client(
            conn, "Message exceeds maximum size of %d bytes." % self.MAX_MSG_SIZE))

    def _buffer_full(self, conn):
        self._logger.warning("Client %s is not reading: more than %d bytes unsent; "
                             "disconnecting", conn.address, self.MAX_WRITE_BUFFER_SIZE)
        # Nothing more can be sent, so handling its further requests is pointless.
        conn.closing = True
        self._spawn(self.disconnect_client(conn, "Write buffer full.", False))

    async def disconnect_client(self, conn, reason, connection_valid=True):
        """Close a connection, letting the device say goodbye first.

        Parameters
        ----------
        conn : connection handle
            As passed to :attr:`client_connection_factory`.
        reason : str
            Reason for the disconnection, passed to the device's
            on_client_disconnect() (DeviceServer sends it as ``#disconnect``).
        connection_valid : bool, optional
            Whether messages can still be sent on the connection.

        """
        client_conn = self._connections.pop(conn, None)
        if client_conn is None:
            return
        transport = conn.transport
        if transport.is_closing():
            connection_valid = False
        if not connection_valid:
            conn.closing = True
        try:
            ready = self._device.on_client_disconnect(client_conn, reason, connection_valid)
            if ready is not None:
                await self._with_timeout(ready)
        except Exception:
            self._logger.exception("Error in on_client_disconnect for %s", conn.address)
        if connection_valid and not transport.is_closing():
            try:
                await self._with_timeout(self.flush_on_close(conn))
            except Exception:
                # An unresponsive peer must not stop the close: drop what is unsent.
                transport.abort()
        conn.closing = True
        if connection_valid:
            transport.close()
        else:
            transport.abort()  # close() would wait to send what the peer does not read

    def _with_timeout(self, future):
        return tornado.gen.with_timeout(self.ioloop.time() + self.DISCONNECT_TIMEOUT, future)

    def flush_on_close(self, stream):
        """Flush the connection's write buffer and prevent further writes.

        Returns a future that resolves when the stream is flushed.

        Parameters
        ----------
        stream : connection handle

        Returns
        -------
        flushed : Future

        """
        # The empty line is what katcp 0.9 sends before an orderly close.
        if stream.end_with_empty_line:
            stream.send(b"\n")
        stream.flush()
        stream.closing = True
        return stream.drain()

    def _spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- sending ------------------------------------------------------------------

    def send_message(self, stream, msg):
        """Send an arbitrary message to a particular client.

        Parameters
        ----------
        stream : connection handle
            The connection to send the message to.
        msg : Message object
            The message to send.

        Notes
        -----
        This method can only be called in the IOLoop thread.

        Failed sends disconnect the client connection. They do not raise exceptions,
        but they are logged. Sends also fail if more than self.MAX_WRITE_BUFFER_SIZE
        bytes are queued for sending, implying that client is falling behind.

        """
        stream.send(bytes(msg) + b"\n")

    def mass_send_message(self, msg):
        """Send a message to all connected clients.

        Parameters
        ----------
        msg : Message object

        Notes
        -----
        This method can only be called in the IOLoop thread.

        """
        data = bytes(msg) + b"\n"
        for conn in list(self._connections):
            conn.send(data)

    def send_message_threadsafe(self, stream, msg):
        """Send a message from any thread without waiting (no future is created).

        Parameters
        ----------
        stream : connection handle
        msg : Message object

        """
        if _get_ident() == self.ioloop_thread_id:
            stream.send(bytes(msg) + b"\n")
        else:
            self._call_batched(stream.send, bytes(msg) + b"\n")

    def mass_send_message_threadsafe(self, msg):
        """Send a message to all clients from any thread without waiting.

        Parameters
        ----------
        msg : Message object

        """
        if _get_ident() == self.ioloop_thread_id:
            self.mass_send_message(msg)
        else:
            self._call_batched(self.mass_send_message, msg)

    def _call_batched(self, fn, *args):
        # Calls from other threads are queued in order and drained by one loop callback,
        # so a burst of informs costs one wake-up of the loop rather than one each.
        with self._outbox_lock:
            self._outbox.append((fn, args))
            if len(self._outbox) > 1:
                return
        try:
            self._call_soon_threadsafe(self._drain_outbox)
        except RuntimeError:
            pass  # the loop is closed: the server has stopped, nothing can be sent

    def _drain_outbox(self):
        with self._outbox_lock:
            items = self._outbox
            self._outbox = []
        for fn, args in items:
            try:
                fn(*args)
            except Exception:
                self._logger.exception("Error in call from another thread")

    def call_from_thread(self, fn):
        """Allow thread-safe calls to ioloop functions.

        Uses add_callback if not in the IOLoop thread, otherwise calls directly.
        Returns an already resolved tornado.concurrent.Future if in ioloop, otherwise a
        concurrent.Future. Logs unhandled exceptions. Resolves with an exception if one
        occurred.

        Parameters
        ----------
        fn : callable
            Called without arguments.

        Returns
        -------
        result : Future

        """
        if self.in_ioloop_thread():
            future = Future()
            try:
                future.set_result(fn())
            except Exception as exc:
                self._logger.exception("Error calling %r", fn)
                future.set_exception(exc)
            return future
        future = concurrent.futures.Future()

        def run():
            try:
                future.set_result(fn())
            except Exception as exc:
                self._logger.exception("Error calling %r", fn)
                future.set_exception(exc)
        self.ioloop.add_callback(run)
        return future

    def send_message_from_thread(self, stream, msg):
        """Thread-safe version of send_message() returning a Future instance.

        Parameters
        ----------
        stream : connection handle
        msg : Message object

        Returns
        -------
        sent : Future
            Resolves as soon as the call to send_message() completes (not when the
            message is delivered). A resolved tornado Future if called in the ioloop,
            else a concurrent.futures.Future.

        Notes
        -----
        This method is thread-safe.

        """
        return self.call_from_thread(lambda: self.send_message(stream, msg))

    def mass_send_message_from_thread(self, msg):
        """Thread-safe version of send_message() returning a Future instance.

        See return value and notes for send_message_from_thread().

        Parameters
        ----------
        msg : Message object

        Returns
        -------
        sent : Future

        """
        return self.call_from_thread(lambda: self.mass_send_message(msg))


# ---------------------------------------------------------------------------
# Request handling thread
# ---------------------------------------------------------------------------

_STOP = object()


class MessageHandlerThread:
    """Provides backwards compatibility for server expecting its own thread.

    Parameters
    ----------
    handler : callable
        handler(client_conn, msg), called in this thread for every message; it may
        return a future, and the message counts as handled when that resolves.
    log_inform_formatter : callable
        log_inform_formatter(level_name, msg, name) -> #log Message, used to tell a
        client about an unhandled error.
    logger : logging.Logger object, optional

    """

    def __init__(self, handler, log_inform_formatter, logger=log):
        self.handler = handler
        self.log_inform_formatter = log_inform_formatter
        self._logger = logger
        self._queue = queue.SimpleQueue()
        self._running = threading.Event()
        self._thread = None
        self.ioloop = None
        self._call_batched = None

    def set_ioloop(self, ioloop, call_batched=None):
        """Set the loop that receives the results.

        Parameters
        ----------
        ioloop : :class:`tornado.ioloop.IOLoop`
        call_batched : callable, optional
            ``call_batched(fn, *args)`` schedules fn on the loop; defaults to add_callback.

        """
        self.ioloop = ioloop
        self._call_batched = call_batched or ioloop.add_callback

    def on_message(self, client_conn, msg):
        """Handle message.

        Returns
        -------
        ready : Future
            A future that will resolve once we're ready, else None.

        Notes
        -----
        on_message should not be called again until ready has resolved.

        """
        ready = Future()
        self._queue.put((client_conn, msg, ready))
        return ready

    def start(self, timeout=None):
        """Start the handler thread.

        Parameters
        ----------
        timeout : float or None, optional
            Seconds to wait for the thread to be running.

        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("Message handler thread already started")
        self._thread = threading.Thread(target=self.run, name="katcp-request-handler",
                                        daemon=True)
        self._thread.start()
        if timeout:
            self._running.wait(timeout)

    def run(self):
        """Handle queued messages until stopped."""
        if self.ioloop is not None:
            # Futures created by handlers in this thread belong to the server's loop.
            asyncio.set_event_loop(self.ioloop.asyncio_loop)
        self._running.set()
        get = self._queue.get
        handler = self.handler
        try:
            while True:
                item = get()
                if item is _STOP:
                    break
                client_conn, msg, ready = item
                try:
                    done = handler(client_conn, msg)
                except Exception:
                    self._report_error(client_conn)
                    done = None
                if done is None:
                    self._call_batched(_resolve, ready)
                else:
                    done.add_done_callback(
                        lambda _, ready=ready: self._call_batched(_resolve, ready))
        finally:
            self._running.clear()

    def _report_error(self, client_conn):
        reason = traceback.format_exc()
        self._logger.error("Error handling message: %s", reason)
        client_conn.inform(self.log_inform_formatter("error", reason, "root"))

    def stop(self, timeout=1.0):
        """Stop the handler thread (from another thread).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for server to have started.

        """
        if timeout:
            self._running.wait(timeout)
        self._queue.put(_STOP)

    def join(self, timeout=None):
        """Rejoin the handler thread.

        Parameters
        ----------
        timeout : float or None, optional
            Time in seconds to wait for the thread to finish.

        """
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def running(self):
        """Whether the handler thread is running."""
        return self._running.is_set()

    def isAlive(self):
        """Whether the handler thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def wait_running(self, timeout=None):
        """Wait until the handler thread is running.

        Parameters
        ----------
        timeout : float or None, optional

        Returns
        -------
        running : bool

        """
        return self._running.wait(timeout)


def _resolve(future):
    if not future.done():
        future.set_result(None)


# ---------------------------------------------------------------------------
# Device servers
# ---------------------------------------------------------------------------

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
    tb_limit : int, optional
        Maximum number of stack frames to send in error tracebacks.
    logger : logging.Logger object, optional
        Logger to log messages to.

    Raises
    ------
    ValueError
        If ``PROTOCOL_INFO.major`` is not a KATCP version the server speaks (4 or 5).

    """

    PROTOCOL_INFO = ProtocolFlags(DEFAULT_KATCP_MAJOR, 0, set([
        ProtocolFlags.MULTI_CLIENT,
        ProtocolFlags.MESSAGE_IDS,
    ]))

    def __init__(self, host: str, port: int, tb_limit: int = 20,
                 logger: logging.Logger = log) -> None:
        major = self.PROTOCOL_INFO.major
        if major not in _SUPPORTED_KATCP_MAJORS:
            raise ValueError("Unsupported KATCP major version %r in PROTOCOL_INFO: "
                             "supported are %s" % (major, sorted(_SUPPORTED_KATCP_MAJORS)))
        self._logger = logger
        self._tb_limit = tb_limit
        self._server = KATCPServer(self, host, port, tb_limit, logger)
        self._handler_thread = None
        self._dispatch = {_REQUEST: self.handle_request, _REPLY: self.handle_reply,
                          _INFORM: self.handle_inform}
        self.set_concurrency_options()

    @property
    def ioloop(self):
        """The tornado IOLoop the server runs on (None until known)."""
        return self._server.ioloop

    @property
    def bind_address(self):
        """The (host, port) where the server is listening for connections."""
        return self._server.bind_address

    def on_message(self, client_conn, msg):
        """Dummy implementation of on_message required by KATCPServer.

        Will be replaced by a handler with the appropriate concurrency semantics when
        set_concurrency_options is called (defaults are set in __init__()).
        """
        raise NotImplementedError("set_concurrency_options() sets on_message")

    def set_concurrency_options(self, thread_safe=True, handler_thread=True):
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
        self._thread_safe = thread_safe
        self._server.client_connection_factory = (
            ThreadsafeClientConnection if thread_safe else ClientConnection)
        if handler_thread:
            self._handler_thread = MessageHandlerThread(
                self.handle_message, self.create_log_inform, self._logger)
            self.on_message = self._handler_thread.on_message
        else:
            self._handler_thread = None
            # Handlers run on the loop; None or a future comes straight back to the
            # transport, so no future is made for synchronous handlers.
            self.on_message = self.handle_message

    def set_ioloop(self, ioloop=None):
        """Set the tornado IOLoop to use.

        Sets the tornado.ioloop.IOLoop instance to use, defaulting to IOLoop.current().
        If set_ioloop() is never called the IOLoop is started in a new thread, and will
        be stopped if self.stop() is called.

        Parameters
        ----------
        ioloop : :class:`tornado.ioloop.IOLoop`, optional

        Notes
        -----
        Must be called before start() is called.

        """
        self._server.set_ioloop(ioloop)

    def setDaemon(self, daemonic):
        """Set daemonic state of the managed ioloop thread to True / False.

        Calling this method for a non-managed ioloop has no effect. Must be called
        before start(), or it will also have no effect.

        Parameters
        ----------
        daemonic : bool

        """
        self._server.setDaemon(daemonic)

    # -- message dispatch -------------------------------------------------------------

    def handle_message(self, client_conn, msg):
        """Handle messages of all types from clients.

        Parameters
        ----------
        client_conn : ClientConnection object
            The client connection the message was from.
        msg : Message object
            The message to process.

        Returns
        -------
        done : Future or None
            For requests, as returned by :meth:`handle_request`.

        """
        return self._dispatch[msg.mtype](client_conn, msg)

    def handle_request(self, connection, msg):
        """Dispatch a request message to the appropriate method.

        Parameters
        ----------
        connection : ClientConnection object
            The client connection the message was from.
        msg : Message object
            The request message to process.

        Returns
        -------
        done_future : Future or None
            Returns Future for async request handlers that will resolve when done, or
            None for sync request handlers once they have completed.

        """
        handler = self._request_handlers.get(msg.name)
        if handler is None:
            connection.reply(Message.reply(msg.name, "invalid", "Unknown request."), msg)
            return None
        req = ClientRequestConnection(connection, msg)
        if self._handler_thread is not None and _is_async_handler(handler):
            # Coroutines belong on the loop. The handler thread moves on to the next
            # message; this connection's reading resumes when the coroutine is done.
            done = self._run_on_loop(self._call_handler, handler, req)
            return None if getattr(handler, "_concurrent_reply", False) else done
        return self._call_handler(handler, req)

    def _run_on_loop(self, fn, *args):
        """From another thread, run fn (which may return a future) on the loop.

        Returns a concurrent.futures.Future of fn's result (or of its future's).
        """
        done = concurrent.futures.Future()
        self._server.ioloop.add_callback(run_into_future, fn, args, {}, done)
        return done

    def _call_handler(self, handler, req):
        try:
            reply = handler(self, req, req.msg)
        except Exception:
            self._reply_with_error(req, sys.exc_info())
            return None
        if reply.__class__ is Message or isinstance(reply, Message):
            req.reply_with_message(reply)
            return None
        return self._handle_awaitable_reply(handler, req, reply)

    def _reply_with_error(self, req, exc_info):
        """Reply to `req` for a handler that raised (AsyncReply: it replies itself)."""
        exc = exc_info[1]
        if isinstance(exc, AsyncReply):
            return
        if isinstance(exc, FailReply):
            reply = Message.reply(req.msg.name, "fail", str(exc))
        else:
            reply = self.create_exception_reply_and_log(req.msg, exc_info)
        req.reply_with_message(reply)

    def _reply_with_result(self, req, reply):
        """Reply to `req` with what a handler's future resolved to."""
        if reply is not None:
            req.reply_with_message(reply)
        elif not req._replied:
            self._logger.error("Async request handler for %r resolved to None without "
                               "replying", req.msg.name)

    def _handle_awaitable_reply(self, handler, req, reply):
        if reply is None:
            if not req._replied:
                self._logger.error("Request handler for %r returned None without "
                                   "replying", req.msg.name)
            return None
        thread_future = isinstance(reply, concurrent.futures.Future)
        if not (thread_future or asyncio.isfuture(reply) or inspect.isawaitable(reply)):
            self._logger.error("Request handler for %r returned %r, not a Message",
                               req.msg.name, reply)
            req.reply_with_message(Message.reply(
                req.msg.name, "fail", "Handler returned an invalid reply."))
            return None
        concurrent_reply = getattr(handler, "_concurrent_reply", False)
        if not self._server.in_ioloop_thread():
            # Not on the loop (the handler thread, or a direct call from another thread):
            # the future is awaited on the loop.
            done = self._run_on_loop(
                lambda: self._server._spawn(self._await_reply(req, reply)))
            return None if concurrent_reply else done
        if (thread_future or asyncio.isfuture(reply)) and reply.done() \
                and not reply.cancelled():
            # Already resolved (e.g. work done at once on the loop): reply now.
            try:
                result = reply.result()
            except Exception:
                self._reply_with_error(req, sys.exc_info())
            else:
                self._reply_with_result(req, result)
            return None
        task = self._server._spawn(self._await_reply(req, reply))
        return None if concurrent_reply else task

    async def _await_reply(self, req, awaitable):
        if isinstance(awaitable, concurrent.futures.Future):
            # Resolved in some other thread (e.g. by a thread pool).
            awaitable = asyncio.wrap_future(awaitable)
        try:
            reply = await awaitable
        except Exception:
            self._reply_with_error(req, sys.exc_info())
        else:
            self._reply_with_result(req, reply)

    def _call_on_loop(self, fn, *args):
        """Run ``fn(*args)`` on the server's loop and return a future of its result.

        On the loop thread, or before the server runs, `fn` runs at once and the future
        is already resolved (a tornado Future on the loop, else a
        concurrent.futures.Future). From another thread while the server runs, `fn` hops
        to the loop and a concurrent.futures.Future is returned at once.
        """
        server = self._server
        if server.in_ioloop_thread():
            return return_future(fn)(*args)
        if server.running():
            return self._run_on_loop(fn, *args)
        done = concurrent.futures.Future()
        run_into_future(fn, args, {}, done)
        return done

    def handle_inform(self, connection, msg):
        """Dispatch an inform message to the appropriate method.

        Parameters
        ----------
        connection : ClientConnection object
            The client connection the message was from.
        msg : Message object
            The inform message to process.

        """
        self._handle_other(self._inform_handlers, connection, msg)

    def handle_reply(self, connection, msg):
        """Dispatch a reply message to the appropriate method.

        Parameters
        ----------
        connection : ClientConnection object
            The client connection the message was from.
        msg : Message object
            The reply message to process.

        """
        self._handle_other(self._reply_handlers, connection, msg)

    def _handle_other(self, handlers, connection, msg):
        handler = handlers.get(msg.name)
        if handler is None:
            self._logger.warning("%s message %r from %s has no handler",
                                 Message.TYPE_NAMES[msg.mtype].capitalize(), msg.name,
                                 connection.address)
            return
        try:
            handler(self, connection, msg)
        except Exception:
            self._logger.exception("Error handling %s %r", Message.TYPE_NAMES[msg.mtype],
                                   msg.name)

    # -- sending ----------------------------------------------------------------------

    def inform(self, connection, msg):
        """Send an inform message to a particular client.

        Should only be used for asynchronous informs. Informs that are part of the
        response to a request should use reply_inform() so that the message identifier
        from the original request can be attached to the inform.

        Parameters
        ----------
        connection : ClientConnection object
            The client to send the message to.
        msg : Message object
            The inform message to send.

        """
        _client_connection(connection).inform(msg)

    def mass_inform(self, msg: Message) -> None:
        """Send an inform message to all clients.

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        if self._thread_safe:
            self._server.mass_send_message_threadsafe(msg)
        else:
            self._server.mass_send_message(msg)

    def reply(self, connection, reply, orig_req):
        """Send an asynchronous reply to an earlier request.

        Parameters
        ----------
        connection : ClientConnection object
            The client to send the reply to.
        reply : Message object
            The reply message to send.
        orig_req : Message object
            The request message being replied to. The reply message's id is overridden
            with the id from orig_req before the reply is sent.

        """
        _client_connection(connection).reply(reply, orig_req)

    def reply_inform(self, connection, inform, orig_req):
        """Send an inform as part of the reply to an earlier request.

        Parameters
        ----------
        connection : ClientConnection object
            The client to send the inform to.
        inform : Message object
            The inform message to send.
        orig_req : Message object
            The request message being replied to. The inform message's id is
            overridden with the id from orig_req before the inform is sent.

        """
        _client_connection(connection).reply_inform(inform, orig_req)

    def create_log_inform(self, level_name, msg, name, timestamp=None):
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
        timestamp_msg = _format_timestamp(timestamp, self.PROTOCOL_INFO.major)
        return Message.inform("log", level_name, timestamp_msg, name, msg)

    def create_exception_reply_and_log(self, msg, exc_info):
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
        reason = _exception_text(exc_info, self._tb_limit)
        self._logger.error("Request %s FAIL: %s", msg.name, reason)
        return Message.reply(msg.name, "fail", reason)

    # -- connection hooks ----------------------------------------------------------

    def on_client_connect(self, client_conn):
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

        """
        return _done_future()

    def on_client_disconnect(self, client_conn, msg, connection_valid):
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

    def start(self, timeout: Optional[float] = None) -> Any:
        """Start the server in a new thread.

        Parameters
        ----------
        timeout : float or None, optional
            Time in seconds to wait for server thread to start.

        Returns
        -------
        running : bool or None
            Whether the server is running, if a timeout was given.

        """
        if self._handler_thread is not None:
            self._handler_thread.set_ioloop(self._server._ioloop_manager.get_ioloop(),
                                            self._server._call_batched)
            self._handler_thread.start(timeout)
        return self._server.start(timeout)

    def stop(self, timeout: Optional[float] = 1.0) -> Any:
        """Stop a running server (from another thread).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for server to have started.

        Returns
        -------
        stopped : thread-safe Future
            Resolves when the server is stopped

        """
        stopped = self._server.stop(timeout)
        if self._handler_thread is not None:
            self._handler_thread.stop(None)
        return stopped

    def join(self, timeout: Optional[float] = None) -> None:
        """Rejoin the server thread.

        Parameters
        ----------
        timeout : float or None, optional
            Time in seconds to wait for the thread to finish.

        """
        self._server.join(timeout)
        if self._handler_thread is not None:
            self._handler_thread.join(timeout)

    def running(self) -> bool:
        """Whether the server is running."""
        return self._server.running()

    def wait_running(self, timeout: Optional[float] = None) -> bool:
        """Wait until the server is running.

        Parameters
        ----------
        timeout : float or None, optional

        Returns
        -------
        running : bool

        """
        return self._server.wait_running(timeout)

    def sync_with_ioloop(self, timeout=None):
        """Block for ioloop to complete a loop if called from another thread.

        Returns a future if called from inside the ioloop.

        Raises concurrent.futures.TimeoutError if timed out while blocking.

        Parameters
        ----------
        timeout : float or None, optional

        """
        if self._server.in_ioloop_thread():
            future = Future()
            self.ioloop.add_callback(future.set_result, None)
            return future
        done = concurrent.futures.Future()
        self.ioloop.add_callback(done.set_result, None)
        done.result(timeout)
        return None


class DeviceLogger:
    """Object for logging messages from a DeviceServer.

    Log messages are logged at a particular level and under a particular name. Names use
    dotted notation to form a virtual hierarchy of loggers with the device.

    Parameters
    ----------
    device_server : DeviceServerBase object
        The device server this logger should use for sending out logs.
    root_logger : str
        The name of the root logger.
    python_logger : logging.Logger object, optional
        Python logger that also receives the messages; ?log-level sets its level.

    """

    # Level values are indexes into LEVELS.
    ALL, TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF = range(8)

    LEVELS = ["all", "trace", "debug", "info", "warn", "error", "fatal", "off"]

    PYTHON_LEVEL = {
        ALL: logging.NOTSET,
        TRACE: 0,
        DEBUG: logging.DEBUG,
        INFO: logging.INFO,
        WARN: logging.WARN,
        ERROR: logging.ERROR,
        FATAL: logging.FATAL,
        OFF: logging.FATAL + 10,
    }

    def __init__(self, device_server, root_logger="root", python_logger=None):
        self._device_server = device_server
        self._python_logger = python_logger
        self._log_level = self.WARN
        self._root_logger_name = root_logger

    def level_name(self, level=None):
        """Return the name of the given level value.

        If level is None, return the name of the current level.

        Parameters
        ----------
        level : logging level constant
            The logging level constant whose name to retrieve.

        Returns
        -------
        level_name : str
            The name of the logging level.

        """
        if level is None:
            level = self._log_level
        return self.LEVELS[level]

    def level_from_name(self, level_name):
        """Return the level constant for a given name.

        If the level_name is not known, raise a ValueError.

        Parameters
        ----------
        level_name : str or bytes
            The logging level name whose logging level constant to retrieve.

        Returns
        -------
        level : logging level constant
            The logging level constant associated with the name.

        """
        if isinstance(level_name, bytes):
            level_name = level_name.decode("utf-8", "replace")
        try:
            return self.LEVELS.index(level_name)
        except ValueError:
            raise ValueError("Unknown logging level name '%s'" % (level_name,)) from None

    def set_log_level(self, level):
        """Set the logging level.

        Parameters
        ----------
        level : logging level constant
            The value to set the logging level to.

        """
        self._log_level = level
        if self._python_logger is not None:
            self._python_logger.setLevel(self.PYTHON_LEVEL[level])

    def set_log_level_by_name(self, level_name):
        """Set the logging level using a level name.

        Parameters
        ----------
        level_name : str or bytes
            The name of the logging level.

        """
        self.set_log_level(self.level_from_name(level_name))

    def log(self, level, msg, *args, **kwargs):
        """Log a message and inform all clients.

        Parameters
        ----------
        level : logging level constant
            The level to log the message at.
        msg : str
            The text format for the log message.
        args : list of objects
            Arguments to pass to log format string. Final message text is created
            using: msg % args.
        kwargs : additional keyword parameters
            Allowed keywords are 'name' and 'timestamp'. The name is the name of the
            logger to log the message to. If not given the name defaults to the root
            logger. The timestamp is a float in seconds. If not given the timestamp
            defaults to the current time.

        """
        timestamp = kwargs.get("timestamp")
        if self._python_logger is not None:
            python_msg = msg
            if timestamp is not None:
                python_msg = "msg=%s timestamp=%.2f" % (msg, timestamp)
            self._python_logger.log(self.PYTHON_LEVEL[level], python_msg, *args)
        if level >= self._log_level:
            name = kwargs.get("name")
            if name is None:
                name = self._root_logger_name
            try:
                inform_msg = msg % args if args else msg
            except TypeError:
                inform_msg = "%s %s" % (msg, args)
            self._device_server.mass_inform(self._device_server.create_log_inform(
                self.level_name(level), inform_msg, name, timestamp=timestamp))

    def trace(self, msg, *args, **kwargs):
        """Log a trace message."""
        self.log(self.TRACE, msg, *args, **kwargs)

    def debug(self, msg, *args, **kwargs):
        """Log a debug message."""
        self.log(self.DEBUG, msg, *args, **kwargs)

    def info(self, msg, *args, **kwargs):
        """Log an info message."""
        self.log(self.INFO, msg, *args, **kwargs)

    def warn(self, msg, *args, **kwargs):
        """Log an warning message."""
        self.log(self.WARN, msg, *args, **kwargs)

    def error(self, msg, *args, **kwargs):
        """Log an error message."""
        self.log(self.ERROR, msg, *args, **kwargs)

    def fatal(self, msg, *args, **kwargs):
        """Log a fatal error message."""
        self.log(self.FATAL, msg, *args, **kwargs)

    @classmethod
    def log_to_python(cls, logger, msg):
        """Log a KATCP logging message to a Python logger.

        Parameters
        ----------
        logger : logging.Logger object
            The Python logger to log the given message to.
        msg : Message object
            The #log message to create a log entry from.

        """
        level, timestamp, name, message = [
            arg.decode("utf-8", "replace") for arg in msg.arguments[:4]]
        try:
            python_level = cls.PYTHON_LEVEL[cls.LEVELS.index(level)]
        except ValueError:
            python_level = logging.INFO
        logger.log(python_level, "%s %s: %s", timestamp, name, message)


# Strategies that KATCP v4 does not have.
_STRATEGIES_AFTER_V4 = frozenset([b"event-rate", b"differential-rate"])

# Time parameters of each sampling strategy, which a v4 server exchanges in milliseconds.
_V4_TIME_PARAMS = {b"period": (0,), b"event-rate": (0, 1), b"differential-rate": (1, 2)}


def _format_ms(seconds_param):
    ms = _seconds_to_ms(float(seconds_param))
    return b"%d" % ms if ms == int(ms) else repr(ms).encode("ascii")


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

    def __init__(self, *args, **kwargs):
        self._restart_queue = None
        self._sensors = {}
        # client connection -> {sensor: sampling strategy}, only touched on the loop
        self._strategies = {}
        self._client_conns = set()
        self._interface_changed_pending = False
        self.extra_versions = {}
        super().__init__(*args, **kwargs)
        self.log = DeviceLogger(self, python_logger=self._logger)
        self.setup_sensors()

    def setup_sensors(self):
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

    def version(self):
        """Return a version string of the form type-major.minor."""
        return "%s-%s.%s" % tuple(self.VERSION_INFO[:3])

    def build_state(self):
        """Return build state string of the form name-major.minor[(a|b|rc)n]."""
        return "%s-%s.%s%s" % (tuple(self.BUILD_INFO[:3]) + (
            "".join(str(part) for part in self.BUILD_INFO[3:]),))

    def set_restart_queue(self, restart_queue):
        """Set the restart queue.

        When the device server should be restarted, it will be added to the queue.

        Parameters
        ----------
        restart_queue : Queue.Queue object
            The queue to add the device server to when it should be restarted.

        """
        self._restart_queue = restart_queue

    # -- connections ----------------------------------------------------------------

    def on_client_connect(self, client_conn):
        """Inform client of build state and version on connect.

        Parameters
        ----------
        client_conn : ClientConnection object
            The client connection that has been successfully established.

        Returns
        -------
        ready : Future
            Resolves when the device is ready to accept messages.

        """
        others = list(self._client_conns)
        self._client_conns.add(client_conn)
        self._strategies[client_conn] = {}
        if self.PROTOCOL_INFO.major >= VERSION_CONNECT_KATCP_MAJOR:
            client_conn.inform(Message.inform(
                "version-connect", "katcp-protocol", str(self.PROTOCOL_INFO)))
            client_conn.inform(Message.inform(
                "version-connect", "katcp-library", "katcp-python-%s" % __version__))
            client_conn.inform(Message.inform(
                "version-connect", "katcp-device", self.version(), self.build_state()))
        else:
            client_conn.inform(Message.inform("version", self.version()))
            client_conn.inform(Message.inform("build-state", self.build_state()))
            connected = Message.inform("client-connected", client_conn.address)
            for other in others:
                other.inform(connected)
        return _done_future()

    def on_client_disconnect(self, client_conn, msg, connection_valid):
        """Inform client it is about to be disconnected.

        Parameters
        ----------
        client_conn : ClientConnection object
            The client connection being disconnected.
        msg : str
            Reason client is being disconnected.
        connection_valid : bool
            True if connection is still open for sending, False otherwise.

        Returns
        -------
        done : Future
            Resolves when the client connection can be closed.

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
        ``#interface-changed sensor-list``.

        Parameters
        ----------
        sensor : Sensor object
            The sensor object to register with the device server.

        """
        self._sensors[sensor.name] = sensor
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

        """
        name = sensor if isinstance(sensor, str) else sensor.name
        try:
            sensor = self._sensors.pop(name)
        except KeyError:
            raise ValueError("Unknown sensor '%s'." % (name,)) from None
        if self.running():
            self._server.call_from_thread(lambda: self._cancel_sensor_strategies(sensor))
        else:
            self._cancel_sensor_strategies(sensor)
        self._interface_changed()

    def _cancel_sensor_strategies(self, sensor):
        for strategies in self._strategies.values():
            strategy = strategies.pop(sensor, None)
            if strategy is not None:
                strategy.cancel()

    def _interface_changed(self):
        # Several changes in one loop iteration give one inform.
        if (not self.SEND_INTERFACE_CHANGED or self._interface_changed_pending
                or not self.running()
                or self.PROTOCOL_INFO.major < INTERFACE_CHANGED_KATCP_MAJOR):
            return
        self._interface_changed_pending = True
        self.ioloop.add_callback(self._send_interface_changed)

    def _send_interface_changed(self):
        self._interface_changed_pending = False
        self._server.mass_send_message(Message.inform("interface-changed", "sensor-list"))

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
        """Whether the sensor with specified name is known."""
        return sensor_name in self._sensors

    def clear_strategies(self, client_conn, remove_client=False):
        """Clear the sensor strategies of a client connection.

        Parameters
        ----------
        client_connection : ClientConnection instance
            The connection that should have its sampling strategies cleared
        remove_client : bool, optional
            Remove the client connection from the strategies data-structure. Useful for
            clients that disconnect.

        """
        strategies = (self._strategies.pop(client_conn, None) if remove_client
                      else self._strategies.get(client_conn))
        if not strategies:
            return
        for strategy in strategies.values():
            strategy.cancel()
        strategies.clear()

    def _matching_sensors(self, msg):
        exact, name_filter = construct_name_filter(msg.arguments[0] if msg.arguments
                                                   else None)
        sensors = [(name, sensor) for name, sensor in sorted(self._sensors.items())
                   if name_filter(name)]
        if exact and not sensors:
            raise FailReply("Unknown sensor name.")
        return sensors

    # -- standard requests ----------------------------------------------------------

    def request_halt(self, req, msg):
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
        self.ioloop.add_callback(self.stop)
        raise AsyncReply

    def request_help(self, req, msg):
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
            for name, handler in sorted(handlers.items()):
                req.inform(name, handler.__doc__ or "")
            return req.make_reply("ok", len(handlers))
        name = msg.arguments[0].decode("utf-8")
        handler = handlers.get(name)
        if handler is None:
            return req.make_reply("fail", "Unknown request method.")
        req.inform(name, (handler.__doc__ or "").strip())
        return req.make_reply("ok", "1")

    def request_log_level(self, req, msg):
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

    def request_restart(self, req, msg):
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

    def request_client_list(self, req, msg):
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
    def request_version_list(self, req, msg):
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
            ("katcp-library", ("katcp-python-%s" % __version__, __version__)),
            ("katcp-device", (self.version(), self.build_state())),
        ] + sorted(self.extra_versions.items())
        for name, (version, build_state) in versions:
            if build_state is None:
                req.inform(name, version)
            else:
                req.inform(name, version, build_state)
        return req.make_reply("ok", len(versions))

    def request_sensor_list(self, req, msg):
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
        sensors = self._matching_sensors(msg)
        for name, sensor in sensors:
            req.inform(name, sensor.description, sensor.units, sensor.stype,
                       *sensor.formatted_params)
        return req.make_reply("ok", len(sensors))

    def request_sensor_value(self, req, msg):
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
        sensors = self._matching_sensors(msg)
        major = self.PROTOCOL_INFO.major
        inform = req.inform
        for name, sensor in sensors:
            timestamp, status, value = sensor.read_formatted(major)
            inform(timestamp, b"1", name, status, value)
        return req.make_reply("ok", len(sensors))

    def request_sensor_sampling(self, req, msg):
        """Configure or query the way a sensor is sampled.

        Sampled values are reported asynchronously using the #sensor-status
        message.

        Parameters
        ----------
        names : str
            One or more names of sensors whose sampling strategy will be queried
            or configured. If specifying multiple sensors, these must be provided
            as a comma-separated list. A query can only be done on a single sensor.
            However, configuration can be done on many sensors with a single
            request, as long as they all use the same strategy.
            Note: prior to KATCP v5.1 only a single sensor could be configured.
            Multiple sensors are only allowed if the device server sets the protocol
            version to KATCP v5.1 or higher and enables the BULK_SET_SENSOR_SAMPLING
            flag in its PROTOCOL_INFO class attribute.
        strategy : {'none', 'auto', 'event', 'differential', 'differential-rate',
                    'period', 'event-rate'}, optional
            Type of strategy to use to report the sensor value. The
            differential strategy types may only be used with integer or float
            sensors. If this parameter is supplied, it sets the new strategy.
        params : list of str, optional
            Additional strategy parameters (dependent on the strategy type).
            For the differential strategy, the parameter is an integer or float
            giving the amount by which the sensor value may change before an
            updated value is sent.
            For the period strategy, the parameter is the sampling period
            in float seconds.
            The event strategy has no parameters. Note that this has changed
            from KATCPv4.
            For the event-rate strategy, a minimum period between updates and
            a maximum period between updates (both in float seconds) must be
            given. If the event occurs more than once within the minimum period,
            only one update will occur. Whether or not the event occurs, the
            sensor value will be updated at least once per maximum period.
            For the differential-rate strategy there are 3 parameters. The first
            is the same as the differential strategy parameter. The second and
            third are the minimum and maximum periods, respectively, as with the
            event-rate strategy.

        Informs
        -------
        timestamp : float
            Timestamp of the sensor reading in seconds since the Unix
            epoch, or milliseconds for katcp versions <= 4.
        count : {1}
            Number of sensors described in this #sensor-status inform. Will
            always be one. It exists to keep this inform compatible with
            #sensor-value.
        name : str
            Name of the sensor whose value is being reported.
        value : object
            Value of the named sensor. Type depends on the type of the sensor.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether the sensor-sampling request succeeded.
        names : str
            Name(s) of the sensor queried or configured. If multiple sensors,
            this will be a comma-separated list.
        strategy : {'none', 'auto', 'event', 'differential', 'differential-rate',
                    'period', 'event-rate'}.
            Name of the new or current sampling strategy for the sensor(s).
        params : list of str
            Additional strategy parameters (see description under Parameters).

        Examples
        --------
        ::

            ?sensor-sampling cpu.power.on
            !sensor-sampling ok cpu.power.on none

            ?sensor-sampling cpu.power.on period 0.5
            #sensor-status 1244631611.415231 1 cpu.power.on nominal 1
            !sensor-sampling ok cpu.power.on period 0.5

        if BULK_SET_SENSOR_SAMPLING is enabled then:

            ?sensor-sampling cpu.power.on,fan.speed
            !sensor-sampling fail Cannot_query_multiple_sensors

            ?sensor-sampling cpu.power.on,fan.speed period 0.5
            #sensor-status 1244631611.415231 1 cpu.power.on nominal 1
            #sensor-status 1244631611.415200 1 fan.speed nominal 10.0
            !sensor-sampling ok cpu.power.on,fan.speed period 0.5

        """
        # Strategies are started and cancelled in the loop thread: from another thread
        # (the handler thread) the work hops to the loop, and a future is returned.
        return self._call_on_loop(self._sensor_sampling, req, msg)

    def _sensor_sampling(self, req, msg):
        if not msg.arguments:
            raise FailReply("No sensor name given.")
        names_arg = msg.arguments[0].decode("utf-8")
        bulk = self.PROTOCOL_INFO.bulk_set_sensor_sampling
        names = names_arg.split(",") if bulk else [names_arg]
        strategy_and_params = msg.arguments[1:]
        if not strategy_and_params and len(names) > 1:
            raise FailReply("Cannot query multiple sensors.")
        unknown = [name for name in names if name not in self._sensors]
        if unknown:
            if bulk:
                raise FailReply("Unknown sensor names: %r." % (unknown,))
            raise FailReply("Unknown sensor name: %s." % (names_arg,))
        sensors = [self._sensors[name] for name in names]
        client_strategies = self._strategies.setdefault(req.client_connection, {})
        if not strategy_and_params:
            strategy = client_strategies.get(sensors[0])
            if strategy is None:
                return req.make_reply("ok", names_arg, "none")
            strategy_name, params = strategy.get_sampling_formatted()
            if self.PROTOCOL_INFO.major < SEC_TS_KATCP_MAJOR:
                params = self._params_to_ms(strategy_name, params)
            return req.make_reply("ok", names_arg, strategy_name, *params)
        strategy_name, params = strategy_and_params[0], strategy_and_params[1:]
        if (self.PROTOCOL_INFO.major < SEC_TS_KATCP_MAJOR
                and strategy_name in _STRATEGIES_AFTER_V4):
            raise FailReply("Strategy %s not allowed for version %d of katcp" % (
                strategy_name.decode("utf-8", "replace"), self.PROTOCOL_INFO.major))
        sampling_params = params
        # The reply echoes the parameters as the client gave them.
        if self.PROTOCOL_INFO.major < SEC_TS_KATCP_MAJOR:
            sampling_params = self._params_to_seconds(strategy_name, params)
        inform_callback = self._inform_callback(req.client_connection)
        try:
            new_strategies = [
                SampleStrategy.get_strategy(strategy_name, inform_callback, sensor,
                                            *sampling_params, ioloop=self.ioloop)
                for sensor in sensors]
        except (ValueError, TypeError) as exc:
            raise FailReply(str(exc))
        for sensor, strategy in zip(sensors, new_strategies):
            old = client_strategies.pop(sensor, None)
            if old is not None:
                old.cancel()
            if strategy.get_sampling() != SampleStrategy.NONE:
                client_strategies[sensor] = strategy
                strategy.start()
        return req.make_reply("ok", names_arg, strategy_name, *params)

    @staticmethod
    def _params_to_seconds(strategy_name, params):
        params = list(params)
        for i in _V4_TIME_PARAMS.get(strategy_name, ()):
            if i < len(params):
                try:
                    params[i] = _ms_to_seconds(params[i])
                except ValueError:
                    raise FailReply("Invalid time parameter %r." % (
                        params[i].decode("utf-8", "replace"),))
        return params

    @staticmethod
    def _params_to_ms(strategy_name, params):
        params = list(params)
        for i in _V4_TIME_PARAMS.get(strategy_name, ()):
            if i < len(params):
                params[i] = _format_ms(params[i])
        return params

    def _inform_callback(self, client_conn):
        major = self.PROTOCOL_INFO.major
        format_inform = format_inform_v5 if major >= SEC_TS_KATCP_MAJOR else format_inform_v4
        inform = client_conn.inform

        def inform_callback(sensor, reading):
            inform(format_inform(sensor, *reading))
        return inform_callback

    @request()
    def request_sensor_sampling_clear(self, req):
        """Set all sampling strategies for this client to none.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the list of devices succeeded.

        Examples
        --------
        ?sensor-sampling-clear
        !sensor-sampling-clear ok

        """
        # Strategies are cancelled in the loop thread; from another thread the work hops
        # to the loop, and a future is returned.
        def clear():
            self.clear_strategies(req.client_connection)
            return req.make_reply("ok")
        return self._call_on_loop(clear)

    def request_watchdog(self, req, msg):
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
    def request_request_timeout_hint(self, req, request):
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
        if request:
            if request not in handlers:
                raise FailReply("Unknown request method")
            hints = [(request, getattr(handlers[request], "request_timeout_hint", None) or 0)]
        else:
            hints = [(name, getattr(handler, "request_timeout_hint", None))
                     for name, handler in sorted(handlers.items())]
            hints = [(name, hint) for name, hint in hints if hint]
        for name, hint in hints:
            req.inform(name, float(hint))
        return ("ok", len(hints))


class AsyncDeviceServer(DeviceServer):
    """DeviceServer that is automatically configured for async use.

    Same as instantiating a :class:`DeviceServer` instance and calling methods
    set_concurrency_options(thread_safe=False, handler_thread=False) and
    set_ioloop(tornado.ioloop.IOLoop.current()) before starting.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_concurrency_options(thread_safe=False, handler_thread=False)
        # The loop is taken as IOLoop.current() when start() is called.
        self._server._set_unmanaged_ioloop(None)
