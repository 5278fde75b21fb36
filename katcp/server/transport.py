"""The TCP side of a device server: listening, accepting and serving, on the server's loop.

Each accepted connection's line framing, parsing and batched writes are in
:mod:`katcp.server.stream`, the registry of connections and the rules of their life
(made, refused, dropped, disconnected) in :mod:`katcp.server.stream_host`; the server's
sending in :mod:`katcp.server.sending` and its calls from other threads in
:mod:`katcp.server.loop_calls`.
"""

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import inspect
import logging
import socket
import threading
from typing import Any, ContextManager, Dict, Iterator, Optional, Tuple

import tornado.ioloop

from katcp.ioloop_manager import IOLoopManager
from katcp.loop.crossing import call_on_loop, on_thread, thread_wait_timeout, wait_off_loop
from katcp.loop.policy import thread_ioloop
from katcp.server.connection import ClientConnection
from katcp.server.loop_calls import log_call_failure
from katcp.server.sending import Sending
from katcp.server.stream import _Connection
from katcp.server.stream_host import StreamHost
from katcp.wire.util import check_tb_limit

log = logging.getLogger("katcp.server")

# accept() errors that mean "out of resources", after which accepting pauses.
_ACCEPT_RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class KATCPServer(Sending):
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
    tb_limit : int or None, optional
        Maximum number of stack frames in tracebacks sent to clients (None: all).
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
                 logger: Optional[logging.Logger] = log) -> None:
        check_tb_limit(tb_limit)
        self._bind_request = (host, port)
        self._tb_limit = tb_limit
        self._logger = logger = log if logger is None else logger
        self._host = StreamHost(self, device)
        self._ioloop_manager = IOLoopManager(managed_default=True, logger=logger)
        self.ioloop: Any = None
        self._listener: Optional[socket.socket] = None
        self._bindaddr: Optional[Tuple[str, int]] = None
        # The host's registry, bound here for the sends to all.
        self._connections = self._host.connections
        # Each accept under way, with its socket until a transport has it (then None).
        self._accepting: Dict["asyncio.Task[Any]", Optional[socket.socket]] = {}
        self._running = threading.Event()
        # No run under way: never started, or the last stop's shutdown has ended.
        self._stopped = threading.Event()
        self._stopped.set()
        self._start_lock = threading.Lock()
        # Each task spawned and not yet done, with the coroutine it owns (or None).
        self._tasks: Dict["asyncio.Task[Any]", Any] = {}
        # The shutdown of this run's stop, once one has begun (on the loop).
        self._shutdown_task: "Optional[asyncio.Future[None]]" = None

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
        ioloop = ioloop or thread_ioloop()
        self._ioloop_manager.set_ioloop(ioloop, managed=False)
        self.ioloop = ioloop

    def use_current_ioloop(self) -> None:
        """Run on the current IOLoop of the thread that calls :meth:`start`, unmanaged."""
        self._ioloop_manager.set_ioloop(None, managed=False)
        self.ioloop = None

    def get_ioloop(self) -> tornado.ioloop.IOLoop:
        """The IOLoop the server runs on, chosen now if :meth:`start` has not yet."""
        return self._ioloop_manager.get_ioloop()

    # katcp 0.9.3's attribute, which code reads and assigns (a wrapper of the device,
    # say): the device is held by the stream host, which hands it the messages.
    @property
    def _device(self) -> Any:
        """The device served (its messages and connections are handed to it)."""
        return self._host.device

    @_device.setter
    def _device(self, device: Any) -> None:
        self._host.device = device

    @property
    def manages_ioloop(self) -> bool:
        """Whether the server runs an IOLoop of its own, in a thread it starts (the
        default), rather than one set by :meth:`set_ioloop` or
        :meth:`use_current_ioloop`."""
        return self._ioloop_manager.managed()

    @property
    def connection_count(self) -> int:
        """The number of clients connected now."""
        return len(self._connections)

    def in_ioloop_thread(self) -> bool:
        """Return True if called in the IOLoop thread of this server."""
        return on_thread(self._loop_thread_id())

    def _loop_thread_id(self) -> Optional[int]:
        """The id of the thread that runs the server's loop now, if any is known (see
        :meth:`katcp.ioloop_manager.IOLoopManager.loop_thread_id`): the loop manager
        knows it before the server is installed, and knows when a managed loop's thread
        has ended.
        """
        return self._ioloop_manager.loop_thread_id(self.ioloop_thread_id)

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

        Raises
        ------
        RuntimeError
            If the server is started (and its last stop has not ended), or another
            thread is starting it: of threads starting it at once, one does.
        OSError
            If the listening socket cannot be bound; nothing is left started.

        """
        self.start_with(contextlib.nullcontext())
        return self.wait_running(timeout) if timeout else None

    def start_with(self, companion: ContextManager[Any]) -> None:
        """Start as :meth:`start` does (without waiting), with `companion` around the run.

        For what starts with the server (a device server's handler thread): `companion`
        is entered once this thread holds the one start that may be under way, and the
        listener is bound and the server installed inside it, so that what fails there
        is raised into it (for it to undo its start) and out of this.

        Parameters
        ----------
        companion : context manager

        Raises
        ------
        RuntimeError
            As :meth:`start` (`companion` is then not entered).
        OSError
            If the listening socket cannot be bound; nothing is left started.

        """
        with self._starting(), \
                self._ioloop_manager.closing_a_loop_made_for_a_failed_start(), companion:
            self._start_run()

    @contextlib.contextmanager
    def _starting(self) -> Iterator[None]:
        """Hold the one start that may be under way (what :meth:`start` does in it).

        Of threads starting the server at once, one starts it and the others get
        RuntimeError at once: they neither wait for it nor make a second listener, loop
        thread or handler thread. A start is refused until the last stop has ended.

        Raises
        ------
        RuntimeError
            If another thread is starting the server, or it is started (and not stopped
            since).

        """
        if not self._start_lock.acquire(blocking=False):
            raise RuntimeError("Server already starting (in another thread)")
        try:
            if not self._stopped.is_set():
                raise RuntimeError("Server already started")
            yield
        finally:
            self._start_lock.release()

    def _start_run(self) -> None:
        """Bind the listener and install the server on its loop (under :meth:`_starting`).

        Raises what binding raises (the port is taken, say), leaving nothing started.
        """
        sock = self._bind()
        try:
            ioloop = self.ioloop = self._ioloop_manager.get_ioloop()
            # Before anything is installed: a loop whose last stop has not ended yet
            # refuses to start, and the start fails clean.
            self._ioloop_manager.start(None)
        except BaseException:
            sock.close()
            raise
        self._stopped.clear()
        # The last run's shutdown has ended, or was left on a loop closed since.
        self._shutdown_task = None
        # Before _install() only the loop manager can tell whether we run on the loop.
        if on_thread(self._ioloop_manager.thread_id()):
            self._install(sock)
        else:
            installed = call_on_loop(ioloop, None, self._install, sock)
            installed.add_done_callback(
                functools.partial(log_call_failure, self._logger, self._install))

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
        self._use_loop(self.ioloop)
        self._listener = sock
        self._host.install(self.ioloop)
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
            self._accepting[task] = sock
            task.add_done_callback(self._accepted)

    def _new_connection(self) -> _Connection:
        # Called by the accept's task just before it makes the transport, which owns the
        # socket from then on (and closes it, should the accept be cancelled later).
        task = asyncio.current_task()
        if task in self._accepting:
            self._accepting[task] = None
        return _Connection(self._host)

    def _accepted(self, task: "asyncio.Task[Any]") -> None:
        sock = self._accepting.pop(task)
        if sock is not None:
            # No transport ever had it: the accept failed, or was cancelled before it
            # started (as a test case's teardown cancels what is pending on its loop).
            sock.close()
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
            Resolves when the server is stopped. If its loop is closed, it has already
            failed with RuntimeError, as any call to a closed loop does; the server is
            stopped all the same, its listening socket closed and its clients'
            connections shut down.

        """
        if timeout and not self.in_ioloop_thread():
            self._running.wait(thread_wait_timeout(timeout))
        stopped = self._ioloop_manager.stop(None, callback=self._begin_shutdown)
        ioloop = self.ioloop
        # Asked after the stop: a loop that closed meanwhile never runs the shutdown.
        if ioloop is not None and ioloop.asyncio_loop.is_closed():
            self._stop_on_closed_loop()
        if stopped is None:
            stopped = concurrent.futures.Future()
            stopped.set_result(None)
        return stopped

    def _stop_on_closed_loop(self) -> None:
        """End the server's run here, its loop being closed: nothing will run the
        shutdown there, nor anything else of the server's, so this thread may.

        The listener and the sockets of accepts under way are closed, and the server is
        stopped (may be started again, on another loop). The connections are shut down
        without a goodbye (see :meth:`StreamHost.shut_down_on_closed_loop`).
        """
        for sock in self._accepting.values():
            if sock is not None:
                sock.close()
        self._accepting.clear()
        self._close_listener()
        self._host.shut_down_on_closed_loop()
        self._running.clear()
        self._stopped.set()

    def _begin_shutdown(self) -> "asyncio.Future[None]":
        shutdown = self._shutdown_task
        if shutdown is not None and not shutdown.done():
            # A stop under way (on a loop the server does not run, which stops it again)
            # stands for this one: another shutdown would find nothing left to do and
            # say the server had stopped while that one still says goodbye.
            return shutdown
        # The listener is closed at once, and the connections dropped should the rest (a
        # goodbye to each client) be cancelled before it is done, as a test case's
        # teardown cancels what is pending on its loop: nothing is left open.
        self._close_listener()
        shutdown = self._shutdown_task = asyncio.ensure_future(self._shutdown())
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
        # Accepts the shutdown did not wait for end too, rather than serve a stopped server.
        for task in self._accepting:
            task.cancel()
        self._host.abort_all()
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

        Raises
        ------
        RuntimeError
            If called on the server's own (unmanaged) loop thread before the server has
            stopped: the loop would wait on itself. Yield the future :meth:`stop`
            returned instead. Also if the (unmanaged) loop is closed before the server
            has stopped: nothing would end the wait (:meth:`stop` on a closed loop stops
            the server at once). A loop that is not running, yet not closed, is waited
            for: its program may start it (again).

        Notes
        -----
        If the ioloop is not managed, this function will block until the server port
        is closed, meaning a new server can be started on the same port.

        """
        if self._ioloop_manager.managed():
            self._ioloop_manager.join(timeout)
        else:
            ioloop = self.ioloop
            if (ioloop is not None and ioloop.asyncio_loop.is_closed()
                    and not self._stopped.is_set()):
                raise RuntimeError("join() cannot end: the server's ioloop is closed, so "
                                   "it cannot stop there (stop() stops it at once)")
            wait_off_loop(self._stopped, self._loop_thread_id(), timeout,
                          "join() would block the server's own ioloop until it stops; "
                          "wait for the future that stop() returned instead")

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

        Raises
        ------
        RuntimeError
            If called on the server's own loop thread while it is not running: the loop
            would wait on itself.

        """
        return wait_off_loop(self._running, self._loop_thread_id(), timeout,
                             "wait_running() would block the server's own ioloop")

    # -- connections ------------------------------------------------------------

    def get_address(self, stream: _Connection) -> Optional[str]:
        """Text representation of the network address of a connection stream.

        Notes
        -----
        This method is thread-safe

        """
        return stream.address

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
        await self._host.disconnect(conn, reason, connection_valid)

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

    def spawn(self, coro: Any, owns: Any = None) -> "asyncio.Task[Any]":
        """Run coroutine `coro` on the loop as a task the server keeps until it is done.

        Must be called on the loop thread. `owns` is a coroutine that `coro` awaits (a
        handler's): should the task be cancelled before it runs (by a stop), nothing else
        would ever await it, so it is closed (else Python warns that it "was never
        awaited").
        """
        task = asyncio.ensure_future(coro)
        self._tasks[task] = owns
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: "asyncio.Task[Any]") -> None:
        owned = self._tasks.pop(task, None)
        if (owned is not None and task.cancelled() and inspect.iscoroutine(owned)
                and inspect.getcoroutinestate(owned) == inspect.CORO_CREATED):
            owned.close()
