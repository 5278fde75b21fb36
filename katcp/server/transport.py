"""The TCP side of a device server: accepting, line framing, parsing and sending."""

import asyncio
import concurrent.futures
import errno
import functools
import logging
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, Optional, Sequence, Set, Tuple

import tornado.gen
import tornado.ioloop
from tornado.concurrent import Future

from katcp.core import DEFAULT_KATCP_MAJOR, KatcpSyntaxError, Message, MessageParser
from katcp.ioloop_manager import IOLoopManager
from katcp.loop.call_queue import CallQueue
from katcp.loop.crossing import call_on_loop, is_awaitable, on_thread
from katcp.server.connection import ClientConnection
from katcp.transport.buffers import SharedBufferProtocol
from katcp.transport.framing import LineFramer, WriteBatcher
from katcp.wire.types import ADDRESS

log = logging.getLogger("katcp.server")

_REPLY = Message.REPLY
_get_ident = threading.get_ident

# accept() errors that mean "out of resources", after which accepting pauses.
_ACCEPT_RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


def return_future(fn: Callable[..., Any]) -> Callable[..., Future]:
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
    def decorated(*args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future
    return decorated


def _unset_call_soon(*args: Any) -> Any:
    raise RuntimeError("The server is not installed on a loop")


def exception_text(exc_info: Any, limit: Optional[int]) -> str:
    """The text of a traceback sent to a client: `exc_info` limited to `limit` frames."""
    # Ends with a newline, as the traceback module formats it (and as katcp 0.9 sent it).
    return "".join(traceback.format_exception(*exc_info, limit=limit))


_NO_LINES: Tuple[bytes, ...] = ()

# Lines of a long pipeline handled between checks of the time taken, and the time after
# which the rest waits a loop turn (as the clients' MAX_LOOP_LATENCY).
_SLICE = 32
_TURN_BUDGET = 0.03
_monotonic = time.monotonic


# A client's further messages wait while more than a quarter of the server's
# MAX_WRITE_BUFFER_SIZE (as it was when the client connected) is unsent to it; past all of
# it, the client is taken for one that does not read.
_PAUSE_FRACTION = 4


def _pause_level(server: "KATCPServer") -> int:
    """Bytes unsent to a client past which its further messages wait."""
    return max(1, server.MAX_WRITE_BUFFER_SIZE // _PAUSE_FRACTION)


class _Connection(SharedBufferProtocol, WriteBatcher):
    """One accepted TCP connection: line framing, paused reading and batched writes.

    Its :meth:`send` and :meth:`flush` are the write batcher's.

    An asyncio protocol on the IOLoop's asyncio loop: a chunk of input is split, parsed
    and dispatched in one callback, and the replies it produced are written with one
    ``transport.write``. While the device is busy with a message, what arrives waits
    unhandled, and reading pauses once something does (not before: a request answered
    before its client sends more costs no pause and resume).
    """

    # Thousands of these may sit idle: no __dict__, and lines kept only while unhandled.
    __slots__ = ("_server", "transport", "client_conn", "closing", "_framer", "_lines",
                 "_next_line", "_busy", "_eof", "_drained", "_write_paused", "_yielded")

    def __init__(self, server: "KATCPServer") -> None:
        self._server = server
        self.transport: Any = None
        self.client_conn: Any = None
        # Nothing more is handled or written once True (the connection is closing).
        self.closing = False
        self._framer: Optional[LineFramer] = None  # made when the first bytes arrive
        # Received lines not yet handled, from index _next_line on (_NO_LINES: none).
        self._lines: Sequence[bytes] = _NO_LINES
        self._next_line = 0
        self._busy = True  # until on_client_connect is done
        # The client ended its side while a message was being handled: close when done.
        self._eof = False
        self._drained: Optional[asyncio.Future] = None
        # The transport holds more than the client has taken so far: no further message
        # is handled until it has taken most of it (TCP flow control then holds the
        # client back, as it does while a message is handled).
        self._write_paused = False
        # Handling stopped to give other connections a turn; it goes on next loop turn.
        self._yielded = False
        # The connection is its own write batcher (one object less per connection):
        # send() is the hot path of KATCPServer.send_message(), write_out() its end.
        WriteBatcher.__init__(self, None, server._call_soon, _pause_level(server))

    @property
    def address(self) -> str:
        """The peer's address, ``host:port`` (made when asked: idle connections keep less).

        In the KATCP address format, an IPv6 host in brackets (``[::1]:5000``).
        """
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        if not peer:
            return "<katcp connection at 0x%x>" % (id(self),)
        return ADDRESS.encode(peer[:2], DEFAULT_KATCP_MAJOR).decode()

    @property
    def end_with_empty_line(self) -> bool:
        """Whether a close ends with an empty line.

        An orderly close does; a close for a protocol violation (an over-long line) does
        not, as in katcp 0.9.
        """
        return self._framer is None or not self._framer.overflow

    # -- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=_pause_level(self._server))
        ready = self._server._connection_made(self)
        if ready is None:
            self._busy = False
        else:
            ready.add_done_callback(self._done)

    def data_received(self, data: bytes) -> None:
        framer = self._framer
        if framer is None:
            framer = self._framer = LineFramer(self._server.MAX_MSG_SIZE)
        elif framer.overflow:
            return  # the connection is being closed for an over-long line
        lines = self._lines
        if lines:
            lines.extend(framer.feed(data))  # type: ignore[attr-defined]
        else:
            self._lines = framer.feed(data)
            self._next_line = 0
        if not self._busy:
            self._process()
        else:
            # Per-connection serialisation: read no further until the message is handled.
            self.transport.pause_reading()
        if framer.overflow:
            self._server._line_too_long(self)

    def eof_received(self) -> Optional[bool]:
        if self._busy or self._write_paused or self._yielded:
            # As if reading had paused: the end is seen once the messages received are
            # handled (and their replies sent), not before.
            self._eof = True
            return True
        return None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if not self.closing:
            self._lost()

    def _lost(self) -> None:
        self.closing = True
        self._server.spawn(self._server.disconnect_client(
            self, "Connection closed by client.", False))

    def pause_writing(self) -> None:
        # drain() pauses us on purpose (and handles no more messages).
        if self._drained is None:
            self._write_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        # After drain() this means "all sent".
        if self._drained is not None:
            # Closing: what is left to handle is dropped with the connection.
            if not self._drained.done():
                self._drained.set_result(None)
        elif self._write_paused:
            self._write_paused = False
            self._continue()

    # -- input --------------------------------------------------------------------------

    def _process(self) -> None:
        lines = self._lines
        index = self._next_line
        count = len(lines)
        server = self._server
        on_message = server._device.on_message
        parse = server._parse
        # Replies to the whole chunk go out together, in one write (or more, should a
        # client that does not read make them pass the write limit meanwhile): hold()
        # and release(), inline as this runs for every chunk received.
        self._held = True
        try:
            # A long pipeline is handled in slices, between which the time is checked:
            # past _TURN_BUDGET the rest waits a loop turn, so that one client cannot
            # hold up the others (and the sensors' sampling) for long.
            started = _monotonic() if count - index > _SLICE else 0.0
            stop = index + _SLICE if count - index > _SLICE else count
            while True:
                while index < stop and not self.closing and not self._write_paused:
                    line = lines[index]
                    index += 1
                    if not line:
                        continue
                    try:
                        msg = parse(line)
                    except KatcpSyntaxError:
                        # Only truly empty lines are skipped (above): like katcp 0.9.3, a
                        # line of blanks is answered with an error like any bad line.
                        server._send_syntax_error(self)
                        continue
                    try:
                        ready = on_message(self.client_conn, msg)
                    except Exception:
                        server._handling_failed(self)
                        continue
                    if ready is not None and not ready.done():
                        # Per-connection serialisation: handle no further until it is
                        # handled.
                        self._busy = True
                        ready.add_done_callback(self._done)
                        break
                if index < stop or index >= count or self._busy:
                    break  # all handled, or handling must wait
                if _monotonic() - started > _TURN_BUDGET:
                    self._yielded = True
                    self.transport.pause_reading()
                    server._call_soon(self._resume_turn)
                    break
                stop = index + _SLICE if count - index > _SLICE else count
        finally:
            # Lines that arrived meanwhile (a handler ran the loop) were appended.
            if index >= len(lines):
                self._lines = _NO_LINES
            else:
                self._next_line = index
            self._held = False
            if self._chunks:
                self.flush()

    def _done(self, ready: Any) -> None:
        if not ready.cancelled() and ready.exception() is not None:
            self._server._logger.error("Error handling message from %s",
                                       self.address, exc_info=ready.exception())
        self._busy = False
        self._continue()

    def _resume_turn(self) -> None:
        self._yielded = False
        self._continue()

    def _continue(self) -> None:
        """Handle what waited, then read on (or close, if the client has ended its side)."""
        if self._busy or self._write_paused or self._yielded or self.closing:
            return
        self._process()
        if self._busy or self._write_paused or self._yielded or self.closing:
            return
        if self._eof:
            self.transport.close()
        else:
            self.transport.resume_reading()

    # -- output -------------------------------------------------------------------------

    def write_out(self, data: bytes) -> None:
        if self.closing:
            return  # what is sent after the goodbye is dropped
        transport = self.transport
        paused = self._write_paused
        transport.write(data)
        if transport.is_closing() and not self.closing:
            # The write failed (the peer is gone): stop handling its requests now rather
            # than when connection_lost() comes round.
            self._lost()
        elif paused and transport.get_write_buffer_size() > self._limit * _PAUSE_FRACTION:
            # Written while its requests wait for it to take what it was sent: informs
            # fill it up, and the client is not reading.
            self._server._buffer_full(self)

    def close(self) -> None:
        """Close the connection; the server notices and disconnects the client."""
        if self.transport is not None:
            self.transport.close()

    def drain(self) -> "asyncio.Future[None]":
        """Return a future that resolves when everything written so far is sent."""
        drained = self._drained = self._server.ioloop.asyncio_loop.create_future()
        if self.transport.is_closing() or self.transport.get_write_buffer_size() == 0:
            drained.set_result(None)
        else:
            # With no slack the transport pauses us now and resumes us once it is empty.
            self.transport.set_write_buffer_limits(high=0, low=0)
        return drained

    def __repr__(self) -> str:
        address = self.address
        return address if address.startswith("<") else "<katcp connection %s>" % (address,)


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

    A client that sends a longer line (ended or not) is sent ``#disconnect`` and its
    connection is closed; nothing it sent after that line is handled.
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

    def __init__(self, device: Any, host: str, port: int, tb_limit: int = 20,
                 logger: logging.Logger = log) -> None:
        self._device = device
        self._bind_request = (host, port)
        self._tb_limit = tb_limit
        self._logger = logger
        self._parser = MessageParser()
        self._parse = self._parser.parse  # bound once, shared by the connections
        self._ioloop_manager = IOLoopManager(managed_default=True, logger=logger)
        self.ioloop: Any = None
        self.ioloop_thread_id: Optional[int] = None
        self._listener: Optional[socket.socket] = None
        self._bindaddr: Optional[Tuple[str, int]] = None
        self._connections: Dict[_Connection, Any] = {}
        self._accepting: Set["asyncio.Task[Any]"] = set()
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._call_queue: Optional[CallQueue] = None
        self._tasks: Set["asyncio.Task[Any]"] = set()
        # The loop's call_soon, bound once for all connections (set by _install).
        self._call_soon: Callable[..., Any] = _unset_call_soon

    # -- loop management ------------------------------------------------------

    @property
    def bind_address(self) -> Optional[Tuple[str, int]]:
        """The (host, port) where the server is listening for connections."""
        return self._bindaddr

    def setDaemon(self, daemonic: bool) -> None:
        """Whether the thread of a managed IOLoop is a daemon thread (the default).

        Has an effect only before :meth:`start`, and only on a loop the server runs
        itself (see :meth:`set_ioloop`).
        """
        self._ioloop_manager.setDaemon(daemonic)

    def set_ioloop(self, ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        """Run on `ioloop` (default: ``IOLoop.current()``), which the caller runs.

        Without this the server runs an IOLoop of its own in a new thread, which
        :meth:`stop` stops. Must be called before :meth:`start`.
        """
        ioloop = ioloop or tornado.ioloop.IOLoop.current()
        self._ioloop_manager.set_ioloop(ioloop, managed=False)
        self.ioloop = ioloop

    def use_current_ioloop(self) -> None:
        """Run on the current IOLoop of the thread that calls :meth:`start`, unmanaged."""
        self._ioloop_manager.set_ioloop(None, managed=False)
        self.ioloop = None

    def get_ioloop(self) -> tornado.ioloop.IOLoop:
        """The IOLoop the server runs on, chosen now if :meth:`start` has not yet."""
        return self._ioloop_manager.get_ioloop()

    def in_ioloop_thread(self) -> bool:
        """Return True if called in the IOLoop thread of this server."""
        return on_thread(self.ioloop_thread_id)

    def start(self, timeout: Optional[float] = None) -> Optional[bool]:
        """Install the server on its IOLoop, optionally starting the IOLoop.

        The listening socket is bound before this returns, so :attr:`bind_address`
        is available immediately.

        Parameters
        ----------
        timeout : float or None, optional
            Seconds to wait for the server to be running (None: do not wait).

        Returns
        -------
        running : bool or None
            With a `timeout`, whether the server is running.

        """
        if self._running.is_set():
            raise RuntimeError("Server already started")
        self._stopped.clear()
        sock = self._bind()
        ioloop = self.ioloop = self._ioloop_manager.get_ioloop()
        # Before _install() only the loop manager can tell whether we run on the loop.
        if on_thread(self._ioloop_manager.thread_id()):
            self._install(sock)
        else:
            installed = call_on_loop(ioloop, None, self._install, sock)
            installed.add_done_callback(functools.partial(self._log_failure, self._install))
        self._ioloop_manager.start(None)
        if timeout:
            return self._running.wait(timeout)
        return None

    def _bind(self) -> socket.socket:
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

    def _install(self, sock: socket.socket) -> None:
        self.ioloop_thread_id = threading.get_ident()
        # A restarted server may run on a new loop: the queue of that loop.
        self._call_queue = CallQueue.of(self.ioloop)
        self._listener = sock
        self._call_soon = self.ioloop.asyncio_loop.call_soon
        # Through the IOLoop, so that an IOLoop closed with all_fds=True (as a tornado
        # test case's is) closes the listener of a server that was never stopped.
        self.ioloop.add_handler(sock, self._accept_event, tornado.ioloop.IOLoop.READ)
        self._running.set()

    def _accept_event(self, listener: socket.socket, events: int) -> None:
        self._accept_ready()

    def _accept_ready(self) -> None:
        # Our own accept loop rather than asyncio's Server: shutdown must be able to wait
        # for every connection accepted before the listener closed, and asyncio's leaves
        # one accepted in that moment open, unowned, forever.
        loop = self.ioloop.asyncio_loop
        listener = self._listener
        assert listener is not None
        for _ in range(self._ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_RESOURCE_ERRNOS:
                    # Out of descriptors or memory: back off instead of spinning.
                    self._logger.error("Cannot accept connections: %s", exc)
                    self.ioloop.remove_handler(listener)
                    loop.call_later(self._ACCEPT_RETRY_DELAY, self._resume_accepting)
                return
            sock.setblocking(False)
            task = loop.create_task(loop.connect_accepted_socket(self._new_connection, sock))
            self._accepting.add(task)
            task.add_done_callback(self._accepted)

    def _new_connection(self) -> _Connection:
        return _Connection(self)

    def _accepted(self, task: "asyncio.Task[Any]") -> None:
        self._accepting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._logger.error("Failed to set up an accepted connection: %s", task.exception())

    def _resume_accepting(self) -> None:
        if self._listener is not None:
            self.ioloop.add_handler(self._listener, self._accept_event,
                                    tornado.ioloop.IOLoop.READ)

    def stop(self, timeout: Optional[float] = 1.0) -> concurrent.futures.Future:
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
        stopped = self._ioloop_manager.stop(None, callback=self._begin_shutdown)
        if stopped is None:
            stopped = concurrent.futures.Future()
            stopped.set_result(None)
        return stopped

    def _begin_shutdown(self) -> "asyncio.Future[None]":
        # The listener is closed at once, and the connections dropped should the rest (a
        # goodbye to each client) be cancelled before it is done, as a test case's
        # teardown cancels what is pending on its loop: nothing is left open.
        self._close_listener()
        shutdown = asyncio.ensure_future(self._shutdown())
        shutdown.add_done_callback(self._shutdown_ended)
        return shutdown

    def _close_listener(self) -> None:
        if self._listener is not None:
            self.ioloop.remove_handler(self._listener)
            self._listener.close()
            self._listener = None

    def _shutdown_ended(self, shutdown: "asyncio.Future[None]") -> None:
        if not shutdown.cancelled():
            return
        for conn in list(self._connections):
            del self._connections[conn]
            conn.closing = True  # no goodbye: connection_lost() starts none either
            conn.transport.abort()
        self._running.clear()
        self._stopped.set()

    async def _shutdown(self) -> None:
        if self._accepting:
            await asyncio.gather(*self._accepting, return_exceptions=True)
        self._running.clear()
        conns = list(self._connections)
        if conns:
            await asyncio.gather(*[self.disconnect_client(conn, "Device server shutting down.")
                                   for conn in conns], return_exceptions=True)
        # Handlers still waiting (on a future that never resolves, say) have nobody left
        # to reply to: end them rather than leave them pending on a stopped loop.
        if self._tasks:
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(list(self._tasks), timeout=self.DISCONNECT_TIMEOUT)
        self._stopped.set()

    def join(self, timeout: Optional[float] = None) -> None:
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

    def running(self) -> bool:
        """Whether the server is running: listening and serving its clients."""
        return self._running.is_set()

    def wait_running(self, timeout: Optional[float] = None) -> bool:
        """Wait until the server is running.

        Parameters
        ----------
        timeout : float or None, optional

        Returns
        -------
        running : bool

        """
        return self._running.wait(timeout)

    # -- connections ------------------------------------------------------------

    def get_address(self, stream: _Connection) -> Optional[str]:
        """Text representation of the network address of a connection stream.

        Notes
        -----
        This method is thread-safe

        """
        return stream.address

    def _connection_made(self, conn: _Connection) -> Any:
        client_conn = conn.client_conn = self.client_connection_factory(self, conn)
        self._connections[conn] = client_conn
        try:
            ready = self._device.on_client_connect(client_conn)
        except Exception:
            self._logger.exception("Error in on_client_connect for %s", conn.address)
            return None
        if ready is None:
            return None
        if isinstance(ready, concurrent.futures.Future):
            # Resolved in another thread: what then resumes the connection runs on the loop.
            return asyncio.wrap_future(ready)
        if not is_awaitable(ready):
            self._logger.warning("on_client_connect for %s returned %r, not a future: the "
                                 "connection is taken as ready", conn.address, ready)
            return None
        return tornado.gen.convert_yielded(ready)

    def _send_syntax_error(self, conn: _Connection) -> None:
        self._send_error_log(conn, exception_text(sys.exc_info(), self._tb_limit))

    def _handling_failed(self, conn: _Connection) -> None:
        # As on the handler thread: logged and told to the client, whose connection
        # stays (one failing message must not cost it the replies to the next ones).
        reason = exception_text(sys.exc_info(), self._tb_limit)
        self._logger.error("Error handling message from %s: %s", conn.address, reason)
        self._send_error_log(conn, reason)

    def _send_error_log(self, conn: _Connection, reason: str) -> None:
        conn.send(bytes(self._device.create_log_inform("error", reason, "root")) + b"\n")

    def _line_too_long(self, conn: _Connection) -> None:
        self._logger.error("Message from %s exceeds %d bytes; disconnecting",
                           conn.address, self.MAX_MSG_SIZE)
        conn.transport.pause_reading()
        self.spawn(self.disconnect_client(
            conn, "Message exceeds maximum size of %d bytes." % self.MAX_MSG_SIZE))

    def _buffer_full(self, conn: _Connection) -> None:
        self._logger.warning("Client %s is not reading: more than %d bytes unsent; "
                             "disconnecting", conn.address, self.MAX_WRITE_BUFFER_SIZE)
        # Nothing more can be sent, so handling its further requests is pointless.
        conn.closing = True
        self.spawn(self.disconnect_client(conn, "Write buffer full.", False))

    async def disconnect_client(self, conn: _Connection, reason: str,
                                connection_valid: bool = True) -> None:
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
        connection_valid = connection_valid and not transport.is_closing()
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

    def _with_timeout(self, future: Any) -> Any:
        return tornado.gen.with_timeout(self.ioloop.time() + self.DISCONNECT_TIMEOUT, future)

    def flush_on_close(self, stream: _Connection) -> "asyncio.Future[None]":
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

    def spawn(self, coro: Any) -> "asyncio.Task[Any]":
        """Run coroutine `coro` on the loop as a task the server keeps until it is done.

        Must be called on the loop thread.
        """
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def call_on_loop(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Run ``fn(*args)`` on the server's loop (at once on its thread).

        Returns
        -------
        done : :class:`concurrent.futures.Future`
            Resolves with what `fn` returned, or what its future or coroutine resolved
            to, or with the exception.

        """
        return call_on_loop(self.ioloop, self.ioloop_thread_id, fn, *args)

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` for the loop, in order with the other calls queued for it.

        For calls from other threads that give nothing back (sends, replies to the
        transport); they go through the loop's one :class:`~katcp.loop.call_queue.CallQueue`.
        """
        queue = self._call_queue
        if queue is None:
            queue = self._call_queue = CallQueue.of(self.get_ioloop())
        queue.call(fn, *args)

    # -- sending ------------------------------------------------------------------

    def send_message(self, stream: _Connection, msg: Message) -> None:
        """Send an arbitrary message to a particular client.

        Parameters
        ----------
        stream : connection handle
            The connection to send the message to.
        msg : Message object
            The message to send.

        Notes
        -----
        This method should only be called in the IOLoop thread. From another thread
        the message is handed to the loop, as by :meth:`send_message_threadsafe`
        (katcp 0.9 failed an assertion).

        Failed sends disconnect the client connection. They do not raise exceptions,
        but they are logged. Sends also fail if more than self.MAX_WRITE_BUFFER_SIZE
        bytes are queued for sending, implying that client is falling behind.

        """
        # A reply made while the loop handles the connection's input (held) is on the
        # loop thread: the usual case costs no thread check. Another thread's send (a
        # worker replying for an AsyncDeviceServer handler), made here, would touch the
        # loop's objects and wait until something else woke the loop.
        try:
            held = stream._held
        except AttributeError:  # a stand-in stream (a test's)
            held = False
        if not held:
            thread_id = self.ioloop_thread_id
            if thread_id is not None and _get_ident() != thread_id:
                self.send_message_threadsafe(stream, msg)
                return
        # msg.__bytes__() rather than bytes(msg), whose lookup of it costs about as much
        # again: this sends every reply.
        stream.send(msg.__bytes__() + b"\n")

    def wire_sender(self, stream: _Connection, threadsafe: bool) -> Callable[[bytes], None]:
        """A function that sends ready wire bytes (whole lines) to one client.

        The bytes join the connection's write batch like any message. For bulk replies
        and sensor informs, whose lines are formatted once and shared.

        Parameters
        ----------
        stream : connection handle
        threadsafe : bool
            Whether the function may be called from any thread (else: only from the
            IOLoop thread).

        Returns
        -------
        send : callable
            ``send(data)``, `data` being bytes of complete lines, newlines included.

        """
        if threadsafe:
            return functools.partial(self._send_wire_threadsafe, stream)
        return stream.send

    def _send_wire_threadsafe(self, stream: _Connection, data: bytes) -> None:
        if on_thread(self.ioloop_thread_id):
            stream.send(data)
        else:
            self.call_soon_threadsafe(stream.send, data)

    def mass_send_message(self, msg: Message) -> None:
        """Send a message to all connected clients.

        Parameters
        ----------
        msg : Message object

        Notes
        -----
        This method should only be called in the IOLoop thread. From another thread
        the message is handed to the loop, as by :meth:`mass_send_message_threadsafe`.

        """
        thread_id = self.ioloop_thread_id
        if thread_id is not None and _get_ident() != thread_id:
            self.call_soon_threadsafe(self.mass_send_message, msg)
            return
        data = bytes(msg) + b"\n"
        for conn in list(self._connections):
            conn.send(data)

    def send_message_threadsafe(self, stream: _Connection, msg: Message) -> None:
        """Like :meth:`send_message`, from any thread, without waiting for the send."""
        data = msg.__bytes__() + b"\n"  # on the caller's thread; __bytes__(): see send_message()
        if on_thread(self.ioloop_thread_id):
            stream.send(data)
        elif msg.mtype == _REPLY:
            # The client waits for it: written as soon as the loop has it, not a turn later.
            self.call_soon_threadsafe(stream.send_now, data)
        else:
            self.call_soon_threadsafe(stream.send, data)

    def mass_send_message_threadsafe(self, msg: Message) -> None:
        """Like :meth:`mass_send_message`, from any thread, without waiting for the send."""
        if on_thread(self.ioloop_thread_id):
            self.mass_send_message(msg)
        else:
            self.call_soon_threadsafe(self.mass_send_message, msg)

    def call_from_thread(self, fn: Callable[[], Any]) -> Any:
        """Allow thread-safe calls to ioloop functions.

        In the IOLoop thread `fn` is called at once and an already resolved
        tornado.concurrent.Future returned; from another thread `fn` is handed to the
        loop (:func:`katcp.loop.crossing.call_on_loop`) and a concurrent.futures.Future
        returned. Either resolves with what `fn` returned or with the exception it
        raised, which is also logged.

        Parameters
        ----------
        fn : callable
            Called without arguments.

        Returns
        -------
        result : Future

        """
        done: Any
        if self.in_ioloop_thread():
            done = return_future(fn)()
        else:
            done = self.call_on_loop(fn)
        done.add_done_callback(functools.partial(self._log_failure, fn))
        return done

    def _log_failure(self, fn: Callable[..., Any], done: Any) -> None:
        if not done.cancelled() and done.exception() is not None:
            self._logger.error("Error calling %r", fn, exc_info=done.exception())

    def send_message_from_thread(self, stream: _Connection, msg: Message) -> Any:
        """Thread-safe version of send_message() returning a Future instance.

        Parameters
        ----------
        stream : connection handle
        msg : Message object

        Returns
        -------
        sent : Future
            As :meth:`call_from_thread`: resolves as soon as send_message() returns
            (not when the message is delivered).

        """
        return self.call_from_thread(lambda: self.send_message(stream, msg))

    def mass_send_message_from_thread(self, msg: Message) -> Any:
        """Thread-safe version of mass_send_message() returning a Future instance.

        Parameters
        ----------
        msg : Message object

        Returns
        -------
        sent : Future
            As :meth:`send_message_from_thread`.

        """
        return self.call_from_thread(lambda: self.mass_send_message(msg))
