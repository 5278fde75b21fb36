"""The TCP side of a device server: accepting, line framing, parsing and sending."""

import asyncio
import collections
import concurrent.futures
import errno
import functools
import logging
import socket
import sys
import threading
import traceback

import tornado.gen
import tornado.ioloop
from tornado.concurrent import Future

from katcp.core import KatcpSyntaxError, MessageParser
from katcp.ioloop_manager import IOLoopManager
from katcp.server.connection import ClientConnection
from katcp.transport.buffers import SharedBufferProtocol

log = logging.getLogger("katcp.server")

_get_ident = threading.get_ident

# accept() errors that mean "out of resources", after which accepting pauses.
_ACCEPT_RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

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


def _exception_text(exc_info, limit):
    # Ends with a newline, as the traceback module formats it (and as katcp 0.9 sent it).
    return "".join(traceback.format_exception(*exc_info, limit=limit))


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


