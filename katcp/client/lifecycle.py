"""A client's life: its loop and thread, the connection coroutine, reconnection, waits.

One connection coroutine per client (:meth:`ClientLifecycle._install`) owns the socket:
it connects, waits for the connection to close and reconnects with a randomised
exponential backoff, until the client is stopped. :class:`ClientLifecycle` composes the
parts with a job of their own: :class:`Reconnection` (when to try again, and how failed
attempts are logged), :class:`ThreadGate` (which calls from other threads reach the loop)
and the :class:`~katcp.client.flags.StateFlag` flags of its state.
"""

import asyncio
import concurrent.futures
import functools
import logging
import threading
from typing import Any, Awaitable, Callable, Optional, Tuple

import tornado.ioloop
import tornado.util

from katcp.client.flags import StateFlag
from katcp.client.protocol import ClientProtocol
from katcp.core import KatcpClientError, Message
from katcp.ioloop_manager import IOLoopManager, current_ioloop
from katcp.loop.backoff import ExponentialRandomBackoff
from katcp.loop.crossing import (call_on_loop, on_thread, post_to_loop, thread_ident,
                                 thread_wait_timeout, wait_for_call, wait_off_loop)
from katcp.loop.futures import run_returned
from katcp.transport.buffers import loop_receive_view
from katcp.transport.sockets import shut_down_socket
# katcp.client.address_to_string (0.9.3's home of it) is this one.
from katcp.wire.types import address_to_string, is_port


log = logging.getLogger("katcp.client")

# katcp.loop.crossing.running_loop() without its Python call (asyncio's is C), for the
# running-loop form of katcp.loop.crossing.on_thread()'s test.
_running_loop = asyncio._get_running_loop

RECONNECT_DELAY = 0.05
"""Default seconds before the first reconnection attempt (``auto_reconnect_delay``)."""
RECONNECT_DELAY_MAX = 5.0
"""Upper bound of the (doubling, randomised) delay between reconnection attempts."""
STABLE_CONNECTION = 1.0
"""Seconds a connection must last for the next reconnection to start the backoff over
(as does a connection closed by :meth:`ClientLifecycle.disconnect`)."""
_WARN_EVERY_FAILURES = 5
"""Of a run of failed connection attempts the first and every this many are warnings."""

_STOPPED = "Client stopped: start() it again before calling it from another thread"


def check_port(port: Any) -> None:
    """Refuse a port that no connection attempt could ever reach.

    A port is an integer from 0 to 65535, or a str or bytes that the resolver takes at
    each attempt (``"7147"``, a service name such as ``"http"``), as katcp 0.9 passed it
    on. Other values (70000, -1, 7147.5, None) never connected in katcp 0.9 either; the
    client would only retry them for ever.

    Parameters
    ----------
    port : object

    Raises
    ------
    ValueError
        If `port` is neither a port number nor a str or bytes; the message names it.
    """
    if not (is_port(port) or isinstance(port, (str, bytes))):
        raise ValueError("Cannot connect to port %r: a port is an integer from 0 to 65535 "
                         "(or a service name)" % (port,))


def reconnect_backoff(delay_initial: float) -> ExponentialRandomBackoff:
    """The delays between reconnection attempts: doubling from `delay_initial`, at most
    :data:`RECONNECT_DELAY_MAX`, each drawn from the upper half of its nominal value.

    A zero `delay_initial` retries at once, then from the backoff's ``delay_floor``
    (see :class:`~katcp.loop.backoff.ExponentialRandomBackoff`).

    The jitter keeps many clients of a restarted server from reconnecting in lockstep.
    """
    return ExponentialRandomBackoff(delay_initial, RECONNECT_DELAY_MAX, exp_fac=2.0,
                                    randomicity=0.5)


class Reconnection:
    """When a client tries connecting again: its current attempt, the backoff between
    attempts, which connections restart it, and how loudly failed attempts are logged.

    One for each run of a client's connection coroutine.

    Parameters
    ----------
    loop : :class:`asyncio.AbstractEventLoop`
        The client's loop, which runs the attempts and waits.
    delay_initial : callable
        ``delay_initial()`` gives the seconds of the first wait (the client's
        ``auto_reconnect_delay``): read now, and again at each restart of the backoff,
        so that a delay the user changes while the client runs is heeded.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 delay_initial: Callable[[], float]) -> None:
        self._wakeup: "asyncio.Future[None]" = loop.create_future()  # ends a wait
        self._attempt: Optional["asyncio.Future[Any]"] = None
        self._delay_initial = delay_initial
        self._backoff = reconnect_backoff(delay_initial())
        self._failures = 0  # consecutive, since the last connection
        self._closed_by_user: Optional[ClientProtocol] = None

    def attempt(self, connect: Awaitable[Any]) -> "asyncio.Future[Any]":
        """Run `connect`, one connection attempt, as a task (which :meth:`interrupt`
        cancels); return the task."""
        self._attempt = attempt = asyncio.ensure_future(connect)
        return attempt

    async def wait(self) -> None:
        """Wait before the next attempt (each wait longer than the last, up to
        :data:`RECONNECT_DELAY_MAX`), or until :meth:`interrupt`."""
        await asyncio.wait([self._wakeup], timeout=self._backoff.delay)
        self._backoff.failed()

    def interrupt(self) -> None:
        """The client is stopping: end the wait, and cancel the attempt, in progress."""
        if not self._wakeup.done():
            self._wakeup.set_result(None)
        if self._attempt is not None:
            self._attempt.cancel()

    def connected(self) -> None:
        """An attempt connected: failures are counted afresh."""
        self._failures = 0

    def attempt_failed(self, logger: logging.Logger, address: str, exc: Exception) -> None:
        """Log that an attempt to connect to `address` failed with `exc`.

        A device switched off fails every retry for as long as it is off: of a run of
        failed attempts the first and every :data:`_WARN_EVERY_FAILURES`-th are
        warnings, the others debug.
        """
        # The text, not the exception: a log record kept by a handler would keep its
        # traceback's frames, and through them the client, alive.
        reason = str(exc) if isinstance(exc, OSError) else "%s: %s" % (type(exc).__name__, exc)
        failures = self._failures = self._failures + 1
        if failures == 1:
            logger.warning("Failed to connect to %s: %s", address, reason)
        else:
            level = logging.WARNING if failures % _WARN_EVERY_FAILURES == 0 else logging.DEBUG
            logger.log(level, "Failed to connect to %s: %s (%d attempts so far)",
                       address, reason, failures)

    def closing_by_user(self, protocol: ClientProtocol) -> None:
        """The user is closing `protocol`'s connection (see ClientLifecycle.disconnect)."""
        self._closed_by_user = protocol

    def closed(self, protocol: ClientProtocol, lasted: float) -> None:
        """`protocol`'s connection closed after `lasted` seconds.

        Only a connection that lasted :data:`STABLE_CONNECTION` restarts the backoff from
        ``delay_initial()``, so a server that drops us at once is not hammered. Completing
        the greeting does not count: a server that greets and hangs up (full, or failing)
        would then be retried every initial delay for ever. A connection the user closed
        did not fail, and restarts the backoff too.
        """
        closed_by_user = self._closed_by_user is protocol
        self._closed_by_user = None
        if closed_by_user or lasted >= STABLE_CONNECTION:
            self._backoff.delay_initial = self._delay_initial()
            self._backoff.success()


class ThreadGate:
    """Lets other threads' calls onto a client's loop, or refuses them all.

    Refusing until start() has queued the client's first step on its loop, and from stop()
    until the next start(): a call taken later could land on a loop that has just stopped,
    where nothing would ever run it, or run before the loop's thread is known. Taking a
    call and refusing them are atomic.

    Parameters
    ----------
    client : ClientLifecycle
        Whose ``ioloop`` the calls go to. Read once a call is taken, under the gate's
        lock: a restart may run the client on a new loop, and a call must not go to the
        last run's loop, read before the gate was opened for the new one.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._refusing = True

    def open(self) -> None:
        """Take calls from other threads from now on."""
        with self._lock:
            self._refusing = False

    def close(self) -> None:
        """Refuse calls from other threads from now on; a call taken already runs first."""
        with self._lock:
            self._refusing = True

    def post(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Run ``fn(*args)`` on the client's loop later (see
        :func:`~katcp.loop.crossing.post_to_loop`).

        Raises
        ------
        KatcpClientError
            If the client was never started.
        RuntimeError
            If closed, as a closed loop does.
        """
        with self._lock:
            if self._refusing:
                self._client._require_started()
                raise RuntimeError(_STOPPED)
            post_to_loop(self._client.ioloop, fn, *args)

    def call(self, thread_id: Optional[int], fn: Callable[..., Any], /, *args: Any,
             **kwargs: Any) -> "concurrent.futures.Future[Any]":
        """Run ``fn(*args, **kwargs)`` on the client's loop, whose thread is `thread_id`
        (at once on it); a future of it (see :func:`~katcp.loop.crossing.call_on_loop`).

        While closed, a call from another thread gets a future failed with RuntimeError,
        as for a closed loop.
        """
        if on_thread(thread_id):
            # Taken whatever the gate says, and run outside its lock: `fn` may call back
            # into the client (a connection that ends at once calls notify_connected(),
            # which may stop the client), and the lock is not reentrant.
            return call_on_loop(self._client.ioloop, thread_id, fn, *args, **kwargs)
        with self._lock:
            if self._refusing:
                refused: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
                refused.set_exception(RuntimeError(_STOPPED))
                return refused
            return call_on_loop(self._client.ioloop, thread_id, fn, *args, **kwargs)


class ClientLifecycle:
    """Start, connect, reconnect, wait and stop: the part of :class:`DeviceClient` that
    keeps a connection to the server.

    See :class:`katcp.client.DeviceClient` for the parameters and attributes.
    """

    MAX_MSG_SIZE = 2 * 1024 * 1024
    """Maximum message size that can be received in bytes."""

    MAX_WRITE_BUFFER_SIZE = 4 * 1024 * 1024
    """Maximum outstanding bytes to be buffered by the client process."""

    MAX_LOOP_LATENCY = 0.03
    """Do not spend more than this many seconds reading pipelined socket data."""

    ENTER_TIMEOUT = 10.0
    """Seconds that entering ``with`` or ``async with`` waits for the connection."""

    def __init__(self, host: str, port: int, logger: Optional[logging.Logger],
                 auto_reconnect: bool) -> None:
        check_port(port)
        self._bindaddr = (host, port)
        self.bind_address_string = address_to_string(self._bindaddr)
        self._logger = logger = log if logger is None else logger
        self._auto_reconnect = auto_reconnect
        self.auto_reconnect_delay = RECONNECT_DELAY
        self.last_connect_time: Optional[float] = None
        self.ioloop: Any = None
        self._ioloop_thread_id: Optional[int] = None  # as recorded by _begin()
        self._loop: Any = None
        self._ioloop_manager = IOLoopManager(managed_default=True, logger=logger)
        self._protocol: Optional[ClientProtocol] = None
        self._reconnection: Optional[Reconnection] = None  # _install()'s current (or last) run
        self._stopping = False
        self._gate = ThreadGate(self)  # opened by start() once _begin() is queued
        self._start_lock = threading.Lock()
        condition = threading.Condition(threading.Lock())
        (self._running, self._connected, self._disconnected, self._received_protocol_info,
         self._stopped, self._waiting_to_retry) = (StateFlag(condition) for _ in range(6))
        self._disconnected.set()
        self._stopped.set()

    def _state_flags(self) -> Tuple[StateFlag, ...]:
        # Not kept in an attribute: CPython 3.11 keeps at most 29 of an instance in the
        # object itself, where each is read faster, and an AsyncClient has that many (one
        # more gives it a dict of them; test_client_cost checks).
        return (self._running, self._connected, self._disconnected,
                self._received_protocol_info, self._stopped, self._waiting_to_retry)

    @property
    def bind_address(self) -> Tuple[str, int]:
        """(host, port) where the client is connecting."""
        return self._bindaddr

    @property
    def auto_reconnect(self) -> bool:
        """Whether the client reconnects when its connection closes.

        Cleared when the server's KATCP version informs contradict each other, since
        reconnecting would meet the same server again.
        """
        return self._auto_reconnect

    @auto_reconnect.setter
    def auto_reconnect(self, value: bool) -> None:
        self._auto_reconnect = value

    @property
    def _stream(self) -> Optional[ClientProtocol]:
        """The current connection (None while disconnected), under its katcp 0.9 name."""
        return self._protocol

    # -- the loop and its thread -----------------------------------------------------

    @property
    def ioloop_thread_id(self) -> Optional[int]:
        """The id (``threading.get_ident()``) of the thread running the client's loop, if
        known: None once a managed loop's thread has ended, whose id a new thread may be
        given (see :meth:`katcp.ioloop_manager.IOLoopManager.loop_thread_id`)."""
        return self._ioloop_manager.loop_thread_id(self._ioloop_thread_id)

    @ioloop_thread_id.setter
    def ioloop_thread_id(self, thread_id: Optional[int]) -> None:
        self._ioloop_thread_id = thread_id

    def set_ioloop(self, ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        """Run the client on `ioloop` (default: the current loop, see
        :func:`katcp.ioloop_manager.current_ioloop`); call before start().

        Without it the client manages its own loop: started in a new thread by
        start(), and stopped by stop().
        """
        if not self._stopped.is_set():
            raise RuntimeError("Cannot set the ioloop once started")
        ioloop = ioloop or current_ioloop()
        self._ioloop_manager.set_ioloop(ioloop, managed=False)
        self.ioloop = ioloop

    def setDaemon(self, daemonic: bool) -> None:
        """Set daemonic state of the managed ioloop thread (see IOLoopManager.setDaemon)."""
        self._ioloop_manager.setDaemon(daemonic)

    def _require_started(self) -> None:
        if self._loop is None:
            raise KatcpClientError("Client not started")

    def _post_to_loop(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the loop later, from any thread (nothing comes back).

        Raises KatcpClientError if the client was never started, and RuntimeError once it
        is stopping or stopped, as a closed loop does (:meth:`ThreadGate.post`).
        """
        self._gate.post(fn, *args)

    def _call_on_loop(self, fn: Callable[..., Any], *args: Any,
                      **kwargs: Any) -> "concurrent.futures.Future[Any]":
        """Run ``fn(*args, **kwargs)`` on the loop (at once on its thread); a future of it.

        From another thread once the client is stopping or stopped, the future fails
        with RuntimeError, as for a closed loop.
        """
        self._require_started()
        return self._gate.call(self.ioloop_thread_id, fn, *args, **kwargs)

    def _call_and_wait(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the loop from another thread and block for its
        outcome, as :meth:`_call_on_loop`; a ``timeout`` keyword argument is `fn`'s own
        and also bounds the wait, with a grace for `fn` to deliver the outcome of its
        own timeout (:func:`~katcp.loop.crossing.wait_for_call`).

        Raises RuntimeError should the loop stop before the outcome comes (a loop shared
        with others, stopped by its owner): nothing would ever deliver it.
        """
        called = self._call_on_loop(fn, *args, **kwargs)
        return wait_for_call(called, self.ioloop, kwargs.get("timeout"), fn,
                             functools.partial(self._not_running_text, fn),
                             thread_id=self.ioloop_thread_id)

    def _not_running_text(self, what: Any) -> str:
        return ("%s of the client for %s cannot end: no thread runs the client's ioloop any "
                "more (was it stopped under the client?)"
                % (getattr(what, "__name__", what), self.bind_address_string))

    def _on_loop_thread(self) -> bool:
        """Whether the caller runs on the thread of the client's loop.

        :func:`katcp.loop.crossing.on_thread`'s test, its running-loop form first: where
        the client's loop is running, that is its thread, asked in one call of C where the
        thread recorded (:attr:`ioloop_thread_id`) takes three of Python. The latter
        answers before the loop runs.
        """
        loop = self._loop
        return (loop is not None and _running_loop() is loop) or on_thread(self.ioloop_thread_id)

    def _check_loop_thread(self) -> None:
        """Refuse a call that would touch the loop's objects from another thread.

        Without :meth:`enable_thread_safety` a client belongs to its ioloop's thread,
        and katcp 0.9 raised AssertionError for calls from other threads; so does this
        (also under ``python -O``).
        """
        self._require_started()
        if not self._on_loop_thread():
            raise AssertionError("%s called from a thread other than its ioloop's; call "
                                 "enable_thread_safety() before start() to use it from other "
                                 "threads" % type(self).__name__)

    # -- start and stop --------------------------------------------------------------

    def start(self, timeout: Optional[float] = None) -> Optional[bool]:
        """Start the client in a new thread.

        Parameters
        ----------
        timeout : float in seconds
            Seconds to wait for client thread to start. Do not specify a timeout if
            start() is being called from the same ioloop that this client will be
            installed on, since it will block the ioloop without progressing.

        Returns
        -------
        running : bool or None
            Whether the client is running, if a timeout was given.

        """
        # One start at a time: threads starting the client at once must not each make a
        # loop of their own (all but one are refused). stop() asks the loop to stop under
        # the same lock, so a start() either comes first (and is stopped) or finds the
        # stop asked for, and runs on a loop of its own (see IOLoopManager.get_ioloop).
        with self._start_lock:
            if self._running.is_set() or not self._stopped.is_set():
                raise RuntimeError("Device client already started.")
            manager = self._ioloop_manager
            ioloop = manager.get_ioloop()
            loop = ioloop.asyncio_loop  # type: ignore[attr-defined]
            if loop.is_closed():
                # tornado drops (without a word) what is handed to a closed loop: the
                # client would be neither running nor stopped.
                raise RuntimeError("Cannot start the client on a closed ioloop: "
                                   "set_ioloop() one that runs")
            self.ioloop = ioloop
            self._loop = loop
            for flag in self._state_flags():
                flag.bind(ioloop)
            self._stopped.clear()
            self._stopping = False
            try:
                # The last run's thread is forgotten: until _begin() records the new one,
                # the loop manager tells (a call on an unmanaged loop's own thread counts).
                self.ioloop_thread_id = None
                # A managed loop still running (its client's coroutine ended on its own,
                # as without auto_reconnect) runs the client again.
                if manager.managed() and not manager.thread_running():
                    manager.start()
                # add_callback, not the crossing's post_to_loop: tornado runs the coroutine
                # that _begin() returns as a task.
                ioloop.add_callback(self._begin)
            except BaseException:
                self._stopped.set()  # nothing started: stopped, and may be started again
                raise
            # Only now open to other threads: their calls queue behind _begin(), which tells
            # the loop's thread, and so run as on the loop thread.
            self._gate.open()
        return self.wait_running(timeout) if timeout else None

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop a running client.

        If using a managed ioloop, this must be called from a different thread to the
        ioloop's. This method only returns once the client's main coroutine,
        _install(), has completed.

        If using an unmanaged ioloop, this can be called from the same thread as the
        ioloop. The until_stopped() method can be used to wait on completion of the
        main coroutine, _install().

        Requests still waiting for replies (see :class:`AsyncClient`) get a fail reply.

        A client whose loop has been closed under it (stopped and closed by its owner
        while the client ran) is stopped at once, in the calling thread: its connection
        is shut down without the loop, and it may be started again on another loop.

        Parameters
        ----------
        timeout : float in seconds
            Seconds to wait for both client thread to have started, and for stopping.

        Raises
        ------
        RuntimeError
            If the client was neither started nor given a loop (:meth:`set_ioloop`), as
            in 0.9.3; or if called on its managed loop's own thread.

        """
        if self.ioloop is None:
            raise RuntimeError("Call start() before stop()")
        managed = self._ioloop_manager.managed()
        if managed and on_thread(self.ioloop_thread_id):
            raise RuntimeError("Cannot stop a client with a managed ioloop from its "
                               "own ioloop thread; call stop() from another thread")
        # Before the loop is asked to stop: every call taken until now runs first.
        self._gate.close()
        if timeout and not on_thread(self.ioloop_thread_id) and not self._stopped.is_set():
            self._running.wait(thread_wait_timeout(timeout))
        with self._start_lock:
            # Again, should a start() have come in meanwhile: it is stopped now.
            self._gate.close()
            stopped = self._ioloop_manager.stop(callback=self._uninstall)
        loop = self._loop
        # Asked after the stop: a loop that closed meanwhile never runs _uninstall(). Not
        # under the lock: notify_connected() is told here, and may stop the client too.
        if loop is not None and loop.is_closed() and not self._stopped.is_set():
            self._stop_on_closed_loop()
        if managed and stopped is not None:
            try:
                stopped.result(thread_wait_timeout(timeout))
            except concurrent.futures.TimeoutError:
                self._logger.warning("Timed out waiting for client %s to stop",
                                     self.bind_address_string)

    def join(self, timeout: Optional[float] = None) -> None:
        """Rejoin the client thread.

        Parameters
        ----------
        timeout : float in seconds
            Seconds to wait for thread to finish.

        Notes
        -----
        Does nothing if the ioloop is not managed. Use until_stopped() instead.

        """
        manager = self._ioloop_manager
        if manager.managed():
            manager.join(timeout)

    def _stop_on_closed_loop(self) -> None:
        """End the client's run here, its loop having been closed under it: nothing will
        run :meth:`_uninstall` there, nor the rest of the connection coroutine, so this
        thread does what they would.

        The connection is shut down without a goodbye (see
        :func:`~katcp.transport.sockets.shut_down_socket`) and counts as lost, which fails
        the requests in flight; the client is stopped, and may be started again on
        another loop. Its last run's connection coroutine, should it be collected later,
        leaves the new run alone.
        """
        self._stopping = True
        self._reconnection = None  # what tells the last run it has ended (see _install)
        protocol = self._protocol
        if protocol is not None:
            if protocol.transport is not None:
                shut_down_socket(protocol.transport)
            # notify_connected() and request callbacks are told here; a coroutine they
            # return cannot run (see run_returned).
            self._connection_lost()
        self._running.clear()
        self._stopped.set()

    async def _uninstall(self) -> None:
        self._stopping = True
        self._running.clear()
        if self._reconnection is not None:
            self._reconnection.interrupt()
        self._disconnect()
        await self._stopped.until_set()

    # -- the connection coroutine ----------------------------------------------------

    def _begin(self) -> Any:
        """Note the loop's thread, then run :meth:`_install` (whose first step comes a
        loop turn later): calls queued after start(), which run before that step, must
        already be known to run on the loop thread."""
        self.ioloop_thread_id = thread_ident()
        return self._install()

    async def _install(self) -> None:
        """Main client coroutine: connect, serve the connection, reconnect, until stopped."""
        if self._stopping:
            self._stopped.set()
            return
        self._reconnection = reconnection = Reconnection(
            self._loop, lambda: self.auto_reconnect_delay)
        attempt = reconnection.attempt(self._connect())
        # Running once the first attempt is under way: its first step (the connect()
        # call) is scheduled before whatever the running flag wakes, so code resumed by
        # until_running() comes after that attempt, never racing it.
        self._running.set()
        try:
            while True:
                protocol = await attempt
                if protocol is not None:
                    # The loop's monotonic clock (not last_connect_time's, which a step
                    # of the wall clock would move).
                    connected_at = self._loop.time()
                    await protocol.closed
                    reconnection.closed(protocol, self._loop.time() - connected_at)
                if self._stopping or not self._auto_reconnect:
                    break
                self._waiting_to_retry.set()
                try:
                    await reconnection.wait()  # stop() ends it early
                finally:
                    self._waiting_to_retry.clear()
                if self._stopping or not self._auto_reconnect:  # (cleared meanwhile)
                    break
                attempt = reconnection.attempt(self._connect())
        except Exception:
            self._logger.exception("Client main coroutine failed")
        finally:
            # Unless stop() ended this run already, its loop having been closed under it
            # (see _stop_on_closed_loop): the client may run again elsewhere by now.
            if self._reconnection is reconnection:
                protocol = self._protocol
                if protocol is not None and protocol.transport is not None:
                    # Cancelled while connected (its loop's tasks cancelled, as a test
                    # case's teardown does): the connection is not left open.
                    if self._loop.is_closed():
                        # Collected after its loop was closed under it, which can run
                        # nothing (abort() raised "Event loop is closed" in the collector).
                        shut_down_socket(protocol.transport)
                    else:
                        protocol.transport.abort()
                self._running.clear()
                self._stopped.set()

    async def _connect(self) -> Optional[ClientProtocol]:
        """One connection attempt: the new connection's protocol, or None."""
        try:
            _transport, protocol = await self.connect_transport(self._new_protocol)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            return None
        except Exception as exc:
            # Any error of an attempt is a failed attempt, retried: not only OSError
            # but what the resolver raises before any I/O (a host name with an empty
            # label gives UnicodeError, a host that is no str TypeError) and what a
            # connect_transport() override raises.
            if self._reconnection is not None:
                self._reconnection.attempt_failed(self._logger, self.bind_address_string,
                                                  exc)
            return None
        if self._reconnection is not None:
            self._reconnection.connected()
        if self._stopping:
            protocol.close()
            return None
        return protocol

    def _open_protocol(self) -> Optional[ClientProtocol]:
        """The connection, unless there is none or it is closing (which takes no more
        writes): a client whose connection closes counts as not connected from then."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            return None
        return protocol

    def _new_protocol(self) -> ClientProtocol:
        return ClientProtocol(self._loop, self, self._connection_made,
                              self._connection_lost, self._logger,
                              address=self.bind_address_string, max_msg_size=self.MAX_MSG_SIZE,
                              max_write_buffer_size=self.MAX_WRITE_BUFFER_SIZE,
                              max_loop_latency=self.MAX_LOOP_LATENCY,
                              receive_view=loop_receive_view(self.ioloop))

    async def connect_transport(
            self, protocol_factory: Callable[[], ClientProtocol]) -> Tuple[Any, ClientProtocol]:
        """Open one connection to the server: the transport hook.

        The client's connection coroutine calls this for each connection attempt. It
        opens a TCP connection to :attr:`bind_address` on the client's loop; override it
        to connect the client to something else (a fake device in tests, say): call
        ``protocol_factory()`` for the protocol, then ``protocol.connection_made(t)``
        with an :class:`asyncio.Transport`-like `t` (``write``, ``close``, ``abort``,
        ``set_write_buffer_limits``, ``pause_reading``, ``resume_reading``,
        ``get_extra_info``, and ``is_closing`` if it may close on its own), and give
        received bytes to ``protocol.data_received`` and the end to
        ``protocol.connection_lost(None)``.

        Parameters
        ----------
        protocol_factory : callable
            Returns a new :class:`asyncio.Protocol` for the connection.

        Returns
        -------
        transport, protocol : tuple
            The connected transport and protocol.

        Raises
        ------
        Exception
            If the connection cannot be made (OSError, or any other error): logged,
            and retried if auto_reconnect.

        """
        return await self._loop.create_connection(protocol_factory, *self._bindaddr)

    def handle_message(self, msg: Message) -> Any:
        """Handle a message received from the server (the client classes dispatch it).

        Parameters
        ----------
        msg : Message

        """
        raise NotImplementedError

    def _connection_made(self, protocol: ClientProtocol) -> None:
        # Called from the protocol before any data is read, so the greeting informs
        # always meet a fresh protocol-detection state (see DeviceClient).
        self._protocol = protocol
        # The documented clock (0.9.3's): tornado's ioloop.time(), the wall clock.
        self.last_connect_time = self.ioloop.time()
        self._disconnected.clear()
        self._connected.set()
        self._notify_connected(True)

    def _connection_lost(self) -> None:
        self._protocol = None
        self._connected.clear()
        self._disconnected.set()
        self._connection_closed()
        self._notify_connected(False)

    def _connection_closed(self) -> None:
        """Hook for subclasses: the connection has just closed."""

    def _notify_connected(self, connected: bool) -> None:
        try:
            done = self.notify_connected(connected)
        except Exception:
            self._logger.exception("notify_connected(%s) failed", connected)
            return
        if done is not None:
            # An async def override: its coroutine runs, its failure logged as above.
            run_returned(self._logger, done, "notify_connected(%s) failed", connected)

    def notify_connected(self, connected: bool) -> Any:
        """Event handler that is called whenever the connection status changes.

        Override in derived class for desired behaviour. An ``async def`` override is
        run on the client's loop; what it raises is logged.

        .. note::

           This function should never block. Doing so will cause the client to
           cease processing data from the server until notify_connected completes.

        Parameters
        ----------
        connected : bool
            Whether the client has just connected (True) or just disconnected (False).

        """

    def disconnect(self) -> None:
        """Force client connection to close, reconnect if auto-connect set.

        Safe to call from any thread. The reconnection comes after
        ``auto_reconnect_delay``, however short the connection was: closing it was not
        a failure of the server's.

        """
        self._call_on_loop(self._disconnect, True)

    def _disconnect(self, by_user: bool = False) -> None:
        protocol = self._protocol
        if protocol is not None:
            if by_user and self._reconnection is not None:
                self._reconnection.closing_by_user(protocol)
            protocol.close()

    # -- state queries and waits -----------------------------------------------------

    def running(self) -> bool:
        """Whether the client is running.

        Returns
        -------
        running : bool

        """
        return self._running.is_set()

    def stopped(self) -> bool:
        """Whether the client is stopped: its main coroutine has ended, or was never
        started (see :meth:`until_stopped`).

        Not the same as not running: as the client stops (asked to, or on its own after
        a lost connection without auto_reconnect), running is cleared some time before
        it is stopped.

        Returns
        -------
        stopped : bool

        """
        return self._stopped.is_set()

    def is_connected(self) -> bool:
        """Check if the socket is currently connected.

        Returns
        -------
        connected : bool

        """
        return self._connected.is_set()

    def _wait_flag(self, flag: StateFlag, name: str, timeout: Optional[float]) -> bool:
        return wait_off_loop(flag, self.ioloop_thread_id, timeout, "wait_%s() would block the "
                             "client's own ioloop; use until_%s() instead", name, name)

    def wait_running(self, timeout: Optional[float] = None) -> bool:
        """Wait until the client is running.

        Parameters
        ----------
        timeout : float in seconds
            Seconds to wait for the client to start running.

        Returns
        -------
        running : bool

        Notes
        -----
        Do not call this from the ioloop, use until_running().

        """
        return self._wait_flag(self._running, "running", timeout)

    def wait_connected(self, timeout: Optional[float] = None) -> bool:
        """Wait until the client is connected (as :meth:`wait_running` otherwise).

        Returns
        -------
        connected : bool

        """
        return self._wait_flag(self._connected, "connected", timeout)

    def wait_disconnected(self, timeout: Optional[float] = None) -> bool:
        """Wait until the client is disconnected (as :meth:`wait_running` otherwise).

        Returns
        -------
        disconnected : bool

        """
        return self._wait_flag(self._disconnected, "disconnected", timeout)

    def wait_protocol(self, timeout: Optional[float] = None) -> bool:
        """Wait until katcp protocol information has been received from server.

        As :meth:`wait_running` otherwise.

        Returns
        -------
        received : bool
            Whether protocol information was received. If True, the server's
            protocol information is available in self.protocol_flags.

        """
        return self._wait_flag(self._received_protocol_info, "protocol", timeout)

    def until_running(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves when the client is running.

        Parameters
        ----------
        timeout : float, optional
            Seconds after which the future fails with :class:`tornado.util.TimeoutError`.

        Notes
        -----
        Must be called from the same ioloop as the client.

        """
        return self._running.until_set(timeout)

    def until_connected(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves when the client is connected (see until_running)."""
        return self._connected.until_set(timeout)

    def until_disconnected(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves when the client is disconnected (see until_running)."""
        return self._disconnected.until_set(timeout)

    def until_protocol(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves after receipt of katcp protocol info.

        If the returned future resolves, the server's protocol information is
        available in the ProtocolFlags instance self.protocol_flags. See
        :meth:`until_running` for `timeout`.

        """
        return self._received_protocol_info.until_set(timeout)

    def until_stopped(self, timeout: Optional[float] = None) -> Any:
        """Return future that resolves when the client has stopped.

        Stopped means the main coroutine has ended, or was never started. If already
        running, stop() must be called before this. See :meth:`until_running` for
        `timeout`.

        """
        return self._stopped.until_set(timeout)

    # -- with and async with ------------------------------------------------------------

    def __enter__(self) -> Any:
        """``with client:`` starts the client; leaving stops it (and joins its thread).

        A client with a loop of its own (no :meth:`set_ioloop`) is also waited for
        until it is connected and knows the server's protocol, up to
        :attr:`ENTER_TIMEOUT` seconds; on an unmanaged loop it is only started, as
        its thread must go on to run the loop.

        Raises
        ------
        tornado.util.TimeoutError
            If not connected in time (the client is stopped first, as when the wait is
            interrupted: Ctrl-C, say).

        """
        self.start()
        if self._ioloop_manager.managed():
            try:
                if not self.wait_protocol(self.ENTER_TIMEOUT):
                    raise tornado.util.TimeoutError(self._not_connected_text())
            except BaseException:
                # No __exit__ follows a failed entry: nothing else would stop the client.
                # An error stopping it is logged, not raised in place of this one.
                try:
                    self.__exit__(None, None, None)
                except Exception:
                    self._logger.exception("Error stopping the client after a failed entry")
                raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop(self.ENTER_TIMEOUT)
        self.join(self.ENTER_TIMEOUT)

    async def __aenter__(self) -> Any:
        """``async with client:`` runs the client on the running loop (as
        :meth:`set_ioloop` would, unless a loop still open was set; a closed one, such
        as an earlier ``asyncio.run()``'s, is replaced) and waits until it is
        connected and knows the server's protocol (up to :attr:`ENTER_TIMEOUT`
        seconds); leaving stops it and waits until it has stopped.

        Raises
        ------
        tornado.util.TimeoutError
            If not connected in time (the client is stopped first).

        """
        ioloop = self.ioloop
        if self._ioloop_manager.managed() or (
                ioloop is not None and ioloop.asyncio_loop.is_closed()):
            # Also instead of a closed loop, such as that of an earlier asyncio.run().
            self.set_ioloop()
        self.start()
        try:
            await self.until_protocol(self.ENTER_TIMEOUT)
        except tornado.util.TimeoutError:
            await self.__aexit__(None, None, None)
            raise tornado.util.TimeoutError(self._not_connected_text()) from None
        except BaseException:
            # Given up (cancelled, as by asyncio.wait_for): no __aexit__ follows.
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.stop()
        await self.until_stopped()

    def _not_connected_text(self) -> str:
        state = "connected but the server sent no protocol information" \
            if self.is_connected() else "not connected"
        return "Client for %s: %s after %g s" % (self.bind_address_string, state,
                                                 self.ENTER_TIMEOUT)
