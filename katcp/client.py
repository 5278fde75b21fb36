"""Clients for the KAT device control language.

One connection coroutine per client (:meth:`DeviceClient._install`) owns the socket: it
connects, reads, dispatches and reconnects with a randomised exponential backoff. Requests in
flight are kept by message id (or in order by name when ids are not in use) and are failed
with a fail reply when the connection drops. The blocking and callback APIs are thin layers
over the same request machinery plus one hop into the event loop.

Writes go straight to the transport, except that everything handlers send while one received
chunk is being dispatched is joined into a single write.
"""

import asyncio
import collections
import concurrent.futures
import functools
import heapq
import inspect
import itertools
import logging
import random
import sys
import threading
import time
import traceback
from datetime import timedelta
from typing import Any, Dict, List, Optional, Tuple

import tornado.gen
import tornado.ioloop

from katcp.transport.buffers import SharedBufferProtocol
from katcp.core import (
    FLOAT_TS_KATCP_MAJOR,
    SEC_TS_KATCP_MAJOR,
    VERSION_CONNECT_KATCP_MAJOR,
    AsyncEvent,
    DeviceMetaclass,
    KatcpClientError,
    KatcpSyntaxError,
    KatcpVersionError,
    Message,
    MessageParser,
    ProtocolFlags,
    _seconds_to_ms,
    _whole_ms,
)
from katcp.ioloop_manager import IOLoopManager
from katcp.loop.crossing import run_into_future

log = logging.getLogger("katcp.client")

_get_ident = threading.get_ident
_REQUEST, _REPLY, _INFORM = Message.REQUEST, Message.REPLY, Message.INFORM


def address_to_string(addr_tuple):
    """Format a (host, port) tuple as ``'host:port'``.

    Parameters
    ----------
    addr_tuple : tuple
        (host, port).

    Returns
    -------
    address : str

    """
    host, port = addr_tuple
    return "%s:%s" % (host, port)


def make_threadsafe(meth):
    """Decorator for a DeviceClient method that should always run in ioloop.

    Used with :meth:`DeviceClient.enable_thread_safety`. If that is not called the
    method is unprotected and it is the user's responsibility to call it only from
    the ioloop; otherwise calls from other threads are passed to the ioloop. Only
    for methods without a return value.

    Parameters
    ----------
    meth : callable

    Returns
    -------
    meth : callable
        The same method, marked for wrapping.

    """
    meth.make_threadsafe = True
    return meth


def make_threadsafe_blocking(meth):
    """Decorator for a DeviceClient method that will block.

    Used with :meth:`DeviceClient.enable_thread_safety`. Calls from other threads run
    the method on the ioloop and block until it is done, returning its result (the
    result of the future, if it returns one); a ``timeout`` keyword argument limits
    the blocking time. Called on the ioloop, the method runs directly.

    Parameters
    ----------
    meth : callable

    Returns
    -------
    meth : callable
        The same method, marked for wrapping.

    """
    meth.make_threadsafe_blocking = True
    return meth


def request_check(client, exception, *msg_parms, **kwargs):
    """Make blocking request to client and raise exception if reply is not ok.

    Parameters
    ----------
    client : DeviceClient instance
    exception : Exception class to raise
    *msg_parms : Message parameters sent to the Message.request() call
    **kwargs : Keyword arguments
        Forwards kwargs['timeout'] to client.blocking_request().
        Forwards kwargs['mid'] to Message.request().

    Returns
    -------
    reply, informs : as returned by client.blocking_request

    Raises
    ------
    *exception* passed as parameter is raised if reply.reply_ok() is False

    """
    timeout = kwargs.get("timeout")
    req_msg = Message.request(*msg_parms, mid=kwargs.get("mid"))
    reply, informs = client.blocking_request(req_msg, timeout=timeout)
    if not reply.reply_ok():
        raise exception(
            'Unexpected failure reply "{2}"\n with device at {0}, request \n"{1}"'.format(
                client.bind_address_string, req_msg, reply
            )
        )
    return reply, informs


class _Flag:
    """A state flag waitable from other threads (``wait``) and on the loop (``until_set``)."""

    __slots__ = ("_event", "_async")

    def __init__(self):
        self._event = threading.Event()
        self._async = AsyncEvent()

    @property
    def _ioloop(self):
        """The loop on which waiters made outside any running loop are created."""
        return self._async._ioloop

    def bind(self, ioloop):
        """Create future waiters on `ioloop` when no loop is running in the caller."""
        self._async._ioloop = ioloop

    def is_set(self):
        return self._event.is_set()

    isSet = is_set  # katcp 0.9 code and tests use the threading.Event spelling

    def set(self):
        self._event.set()
        self._async.set()

    def clear(self):
        self._event.clear()
        self._async.clear()

    def wait(self, timeout=None):
        return self._event.wait(timeout)

    def until_set(self, timeout=None):
        future = self._async.until_set()
        if timeout is None:
            return future
        return tornado.gen.with_timeout(timedelta(seconds=timeout), future)


class _Backoff:
    """Randomised, bounded exponential delays between connection attempts."""

    INITIAL = 0.05
    MAXIMUM = 5.0
    STABLE_CONNECTION = 1.0

    def __init__(self):
        self._attempts = 0

    def reset(self):
        self._attempts = 0

    def next_delay(self, initial=INITIAL):
        """The next delay: `initial` after a reset, doubling per attempt up to MAXIMUM."""
        delay = min(self.MAXIMUM, initial * 2 ** self._attempts)
        self._attempts = min(self._attempts + 1, 30)
        # Jitter keeps many clients of a restarted server from reconnecting in lockstep.
        return delay * random.uniform(0.5, 1.0)


class _ClientProtocol(SharedBufferProtocol):
    """The socket side of a client connection: line splitting, parsing, buffered writes."""

    def __init__(self, client):
        self._client = client
        self._parse = MessageParser().parse
        self._loop = client._loop
        self._rbuf = b""
        self._wbuf = []
        self._batching = False
        self.transport = None
        self.closed = self._loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        # The transport reports an overfull buffer through pause_writing(), which
        # saves checking its size after every write.
        transport.set_write_buffer_limits(high=self._client.MAX_WRITE_BUFFER_SIZE)
        self._client._connection_made(self)

    def pause_writing(self):
        transport = self.transport
        if transport is not None:
            self._client._logger.error(
                "More than MAX_WRITE_BUFFER_SIZE (%d bytes) unsent; closing connection",
                self._client.MAX_WRITE_BUFFER_SIZE,
            )
            transport.abort()

    def connection_lost(self, exc):
        self.transport = None
        self._wbuf = []
        if not self.closed.done():
            self.closed.set_result(exc)
        self._client._connection_lost()

    def data_received(self, data):
        if self._rbuf:
            data = self._rbuf + data
        if data[-1:] == b"\n":
            self._rbuf = b""
            lines = data.splitlines()
        else:
            end = max(data.rfind(b"\n"), data.rfind(b"\r"))
            self._rbuf = data[end + 1:]
            if len(self._rbuf) > self._client.MAX_MSG_SIZE:
                self._too_big()
                return
            if end < 0:
                return
            lines = data[:end].splitlines()
        if len(data) > self._client.MAX_MSG_SIZE and any(
                len(line) > self._client.MAX_MSG_SIZE for line in lines):
            self._too_big()
            return
        many = len(lines) > 64
        if many:
            started = time.monotonic()
        parse = self._parse
        client = self._client
        handle_message = client.handle_message
        # Messages sent by handlers while this chunk is handled go out in one write.
        self._batching = True
        try:
            for line in lines:
                if not line:
                    continue
                try:
                    msg = parse(line)
                except KatcpSyntaxError as exc:
                    client._logger.error("Bad message from server: %s", exc)
                    continue
                try:
                    result = handle_message(msg)
                except Exception:
                    client._logger.exception("Error handling message %s", msg)
                    continue
                if result is not None and inspect.isawaitable(result):
                    tornado.gen.convert_yielded(result).add_done_callback(
                        client._log_handler_error)
        finally:
            self._batching = False
            if self._wbuf:
                self._flush()
        if (many and self.transport is not None
                and time.monotonic() - started > self._client.MAX_LOOP_LATENCY):
            # Give other loop work a turn before reading more pipelined data.
            self.transport.pause_reading()
            self._loop.call_soon(self._resume_reading)

    def _resume_reading(self):
        if self.transport is not None:
            self.transport.resume_reading()

    def _too_big(self):
        self._rbuf = b""
        if self.transport is not None:
            self._client._logger.error(
                "Message from server exceeds MAX_MSG_SIZE (%d bytes); closing connection",
                self._client.MAX_MSG_SIZE,
            )
            self.transport.abort()

    @property
    def socket(self):
        """The connected socket (for its addresses), or None once closed."""
        transport = self.transport
        return None if transport is None else transport.get_extra_info("socket")

    def write(self, data):
        """Send bytes; those sent while a received chunk is handled go in one write."""
        if self._batching:
            self._wbuf.append(data)
            return
        transport = self.transport
        if transport is not None:
            transport.write(data)

    def _flush(self):
        data = b"".join(self._wbuf)
        self._wbuf = []
        transport = self.transport
        if transport is not None:
            transport.write(data)

    def close(self):
        if self.transport is not None:
            self.transport.close()


class DeviceClient(metaclass=DeviceMetaclass):
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
    tb_limit : int
        Maximum number of stack frames to send in error traceback.
    logger : object
        Python Logger object to log to.
    auto_reconnect : bool
        Whether to automatically reconnect if the connection dies.

    Attributes
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop`
        The loop the client runs on (set by :meth:`start` or :meth:`set_ioloop`).
    protocol_flags : :class:`katcp.core.ProtocolFlags` or None
        The server's KATCP version and features, once known.
    versions : dict
        What the server's version informs said: name -> tuple of strings, e.g.
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

    """

    MAX_MSG_SIZE = 2 * 1024 * 1024
    """Maximum message size that can be received in bytes."""

    MAX_WRITE_BUFFER_SIZE = 4 * 1024 * 1024
    """Maximum outstanding bytes to be buffered by the client process."""

    MAX_LOOP_LATENCY = 0.03
    """Do not spend more than this many seconds reading pipelined socket data."""

    def __init__(self, host: str, port: int, tb_limit: int = 20, logger: logging.Logger = log,
                 auto_reconnect: bool = True) -> None:
        self._bindaddr = (host, port)
        self.bind_address_string = address_to_string(self._bindaddr)
        self._tb_limit = tb_limit
        self._logger = logger
        self._auto_reconnect = auto_reconnect
        self.auto_reconnect_delay = _Backoff.INITIAL
        self.last_connect_time = None
        self.ioloop: Any = None
        self.ioloop_thread_id = None
        self._loop = None
        self._ioloop_manager = IOLoopManager(managed_default=True, logger=logger)
        self._threadsafe = False
        self._msg_id_counter = itertools.count(1)
        self._protocol = None
        self._connect_future = None
        self._wakeup = None
        self._stopping = False
        self.versions: Dict[str, Any] = {}
        self.protocol_flags = None
        self._protocol_preset = False
        self._server_supports_ids = False
        self._running = _Flag()
        self._connected = _Flag()
        self._disconnected = _Flag()
        self._disconnected.set()
        self._received_protocol_info = _Flag()
        self._stopped = _Flag()
        self._stopped.set()
        self._waiting_to_retry = _Flag()

    # -- properties ------------------------------------------------------------------

    @property
    def bind_address(self):
        """(host, port) where the client is connecting."""
        return self._bindaddr

    @property
    def auto_reconnect(self):
        """Whether the client reconnects when its connection closes.

        Cleared when the server's KATCP version informs contradict each other, since
        reconnecting would meet the same server again.
        """
        return self._auto_reconnect

    @auto_reconnect.setter
    def auto_reconnect(self, value):
        self._auto_reconnect = value

    @property
    def _stream(self):
        """The current connection (None while disconnected), under its katcp 0.9 name."""
        return self._protocol

    def _flags(self):
        return (self._running, self._connected, self._disconnected,
                self._received_protocol_info, self._stopped, self._waiting_to_retry)

    def next(self):
        """Python 2 style iterator protocol shim (the reference API lists it)."""
        if hasattr(self, "__next__"):
            return type(self).__next__(self)
        raise TypeError("%s is not an iterator" % type(self).__name__)

    # -- loop and thread set-up ------------------------------------------------------

    def set_ioloop(self, ioloop=None):
        """Set the tornado.ioloop.IOLoop instance to use.

        This defaults to IOLoop.current(). If set_ioloop() is never called the IOLoop
        is managed: started in a new thread, and will be stopped if self.stop() is
        called.

        Parameters
        ----------
        ioloop : :class:`tornado.ioloop.IOLoop`, optional

        Notes
        -----
        Must be called before start() is called.

        """
        ioloop = ioloop or tornado.ioloop.IOLoop.current()
        self._ioloop_manager.set_ioloop(ioloop, managed=False)
        self.ioloop = ioloop

    def setDaemon(self, daemonic):
        """Set daemonic state of the managed ioloop thread to True / False.

        Calling this method for a non-managed ioloop has no effect. Must be called
        before start(), or it will also have no effect.

        Parameters
        ----------
        daemonic : bool

        """
        self._ioloop_manager.setDaemon(daemonic)

    def enable_thread_safety(self):
        """Enable thread-safety features.

        Must be called before start().

        """
        if self._threadsafe:
            return
        if self._running.is_set():
            raise RuntimeError("Cannot enable thread safety after start")
        for name in dir(type(self)):
            meth = getattr(self, name, None)
            if getattr(meth, "make_threadsafe", False):
                setattr(self, name, self._make_threadsafe(meth))
            elif getattr(meth, "make_threadsafe_blocking", False):
                setattr(self, name, self._make_threadsafe_blocking(meth))
        self._threadsafe = True

    def _in_loop_thread(self):
        return _get_ident() == self.ioloop_thread_id

    def _make_threadsafe(self, meth):
        @functools.wraps(meth)
        def wrapped(*args, **kwargs):
            if _get_ident() == self.ioloop_thread_id:
                return meth(*args, **kwargs)
            self._call_soon_threadsafe(functools.partial(meth, *args, **kwargs))
            return None

        return wrapped

    def _make_threadsafe_blocking(self, meth):
        @functools.wraps(meth)
        def wrapped(*args, **kwargs):
            if _get_ident() == self.ioloop_thread_id:
                return meth(*args, **kwargs)
            result = concurrent.futures.Future()
            self._call_soon_threadsafe(
                functools.partial(run_into_future, meth, args, kwargs, result))
            return result.result(kwargs.get("timeout"))

        return wrapped

    def _call_soon_threadsafe(self, callback):
        loop = self._loop
        if loop is None:
            raise KatcpClientError("Client not started")
        loop.call_soon_threadsafe(callback)

    def _check_loop_thread(self):
        """Refuse a call that would touch the loop's objects from another thread.

        Without :meth:`enable_thread_safety` a client belongs to its ioloop's thread,
        and katcp 0.9 raised AssertionError for calls from other threads; so does this
        (also under ``python -O``).
        """
        if self._loop is None:
            raise KatcpClientError("Client not started")
        if _get_ident() != self.ioloop_thread_id:
            raise AssertionError(
                "%s called from a thread other than its ioloop's; call "
                "enable_thread_safety() before start() to use it from other threads"
                % type(self).__name__)

    # -- lifecycle -------------------------------------------------------------------

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
        if self._running.is_set() or not self._stopped.is_set():
            raise RuntimeError("Device client already started.")
        self.ioloop = ioloop = self._ioloop_manager.get_ioloop()
        self._loop = loop = ioloop.asyncio_loop
        for flag in self._flags():
            flag.bind(ioloop)
        self._stopped.clear()
        self._stopping = False
        # Known now only when started from its own (unmanaged) loop, so that calls made
        # on the loop before _install() runs count as on the loop thread; otherwise
        # _install() records it (a stale id could belong to a new thread by now).
        if not self._ioloop_manager.managed() and asyncio._get_running_loop() is loop:
            self.ioloop_thread_id = _get_ident()
        else:
            self.ioloop_thread_id = None
        if self._ioloop_manager.managed():
            self._ioloop_manager.start()
        ioloop.add_callback(self._install)
        if timeout:
            return self.wait_running(timeout)
        return None

    def stop(self, timeout=None):
        """Stop a running client.

        If using a managed ioloop, this must be called from a different thread to the
        ioloop's. This method only returns once the client's main coroutine,
        _install(), has completed.

        If using an unmanaged ioloop, this can be called from the same thread as the
        ioloop. The until_stopped() method can be used to wait on completion of the
        main coroutine, _install().

        Parameters
        ----------
        timeout : float in seconds
            Seconds to wait for both client thread to have started, and for stopping.

        """
        if self.ioloop is None:
            return
        managed = self._ioloop_manager.managed()
        if managed and self._in_loop_thread():
            raise RuntimeError("Cannot stop a client with a managed ioloop from its "
                               "own ioloop thread; call stop() from another thread")
        if timeout and not self._in_loop_thread() and not self._stopped.is_set():
            self._running.wait(timeout)
        stopped = self._ioloop_manager.stop(callback=self._uninstall)
        if managed and stopped is not None:
            try:
                stopped.result(timeout)
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
        if self._ioloop_manager.managed():
            self._ioloop_manager.join(timeout)

    async def _uninstall(self):
        self._request_stop()
        await self._stopped.until_set()

    def _request_stop(self):
        self._stopping = True
        self._running.clear()
        self._wake()
        if self._connect_future is not None:
            self._connect_future.cancel()
        self._disconnect()

    def _wake(self):
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _sleep_unless_stopped(self, delay):
        self._wakeup = wakeup = self._loop.create_future()
        handle = self._loop.call_later(delay, self._wake)
        try:
            await wakeup
        finally:
            handle.cancel()
            self._wakeup = None

    async def _install(self):
        """Main client coroutine: connect, serve the connection, reconnect, until stopped."""
        self.ioloop_thread_id = _get_ident()
        if self._stopping:
            self._stopped.set()
            return
        backoff = _Backoff()
        attempt = self._begin_connect()
        # Running once the first attempt is under way: its first step (the connect()
        # call) is scheduled before whatever the running flag wakes, so code resumed by
        # until_running() comes after that attempt, never racing it.
        self._running.set()
        try:
            while True:
                try:
                    protocol = await attempt
                finally:
                    self._connect_future = None
                if protocol is not None:
                    connected_at = self._loop.time()
                    await protocol.closed
                    # Only a connection that lasted resets the backoff, so a server
                    # that drops us at once (e.g. mixed version informs) is not hammered.
                    if self._loop.time() - connected_at >= _Backoff.STABLE_CONNECTION:
                        backoff.reset()
                if self._stopping or not self._auto_reconnect:
                    break
                self._waiting_to_retry.set()
                try:
                    await self._sleep_unless_stopped(
                        backoff.next_delay(self.auto_reconnect_delay))
                finally:
                    self._waiting_to_retry.clear()
                if self._stopping:
                    break
                attempt = self._begin_connect()
        except Exception:
            self._logger.exception("Client main coroutine failed")
        finally:
            self._running.clear()
            self._stopped.set()

    def _begin_connect(self):
        """Run :meth:`_connect` as a task (which stop() cancels) and return the task."""
        self._connect_future = asyncio.ensure_future(self._connect())
        return self._connect_future

    async def _connect(self):
        """One connection attempt: the new connection's protocol, or None."""
        host, port = self._bindaddr
        try:
            _transport, protocol = await self._loop.create_connection(
                lambda: _ClientProtocol(self), host, port)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            return None
        except OSError as exc:
            # The text, not the exception: a log record kept by a handler would keep
            # its traceback's frames, and through them this client, alive.
            self._logger.warning("Failed to connect to %s: %s", self.bind_address_string,
                                 str(exc))
            return None
        if self._stopping:
            protocol.close()
            return None
        return protocol

    def _connection_made(self, protocol):
        # Called from the protocol before any data is read, so the greeting informs
        # always meet a fresh protocol-detection state.
        self._protocol = protocol
        self.last_connect_time = self._loop.time()
        if not self._protocol_preset:
            self.protocol_flags = None
            self._server_supports_ids = False
            self._received_protocol_info.clear()
        self._disconnected.clear()
        self._connected.set()
        self._notify_connected(True)

    def _connection_lost(self):
        self._protocol = None
        self._connected.clear()
        if not self._protocol_preset:
            # Protocol information belongs to a connection: wait_protocol() must wait for
            # the next one's.
            self._received_protocol_info.clear()
        self._disconnected.set()
        self._connection_closed()
        self._notify_connected(False)

    def _connection_closed(self):
        """Hook for subclasses: the connection has just closed."""

    def _notify_connected(self, connected):
        try:
            self.notify_connected(connected)
        except Exception:
            self._logger.exception("notify_connected(%s) failed", connected)

    def notify_connected(self, connected):
        """Event handler that is called whenever the connection status changes.

        Override in derived class for desired behaviour.

        .. note::

           This function should never block. Doing so will cause the client to
           cease processing data from the server until notify_connected completes.

        Parameters
        ----------
        connected : bool
            Whether the client has just connected (True) or just disconnected (False).

        """

    def disconnect(self):
        """Force client connection to close, reconnect if auto-connect set.

        Safe to call from any thread.

        """
        if _get_ident() == self.ioloop_thread_id:
            self._disconnect()
        else:
            self._call_soon_threadsafe(self._disconnect)

    def _disconnect(self):
        if self._protocol is not None:
            self._protocol.close()

    # -- state queries and waits -----------------------------------------------------

    def running(self):
        """Whether the client is running.

        Returns
        -------
        running : bool

        """
        return self._running.is_set()

    def is_connected(self) -> bool:
        """Check if the socket is currently connected.

        Returns
        -------
        connected : bool

        """
        return self._connected.is_set()

    def _check_not_loop_thread(self, name, alternative):
        if self._in_loop_thread():
            raise RuntimeError("%s() would block the client's own ioloop; use %s() instead"
                               % (name, alternative))

    def _wait_flag(self, flag, name, alternative, timeout):
        if flag.is_set():
            return True
        self._check_not_loop_thread(name, alternative)
        return flag.wait(timeout)

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
        return self._wait_flag(self._running, "wait_running", "until_running", timeout)

    def wait_connected(self, timeout: Optional[float] = None) -> bool:
        """Wait until the client is connected.

        Parameters
        ----------
        timeout : float in seconds
            Seconds to wait for the client to connect.

        Returns
        -------
        connected : bool

        Notes
        -----
        Do not call this from the ioloop, use until_connected().

        """
        return self._wait_flag(self._connected, "wait_connected", "until_connected", timeout)

    def wait_disconnected(self, timeout=None):
        """Wait until the client is disconnected.

        Parameters
        ----------
        timeout : float in seconds
            Seconds to wait for the client to disconnect.

        Returns
        -------
        disconnected : bool

        Notes
        -----
        Do not call this from the ioloop, use until_disconnected().

        """
        return self._wait_flag(self._disconnected, "wait_disconnected", "until_disconnected",
                               timeout)

    def wait_protocol(self, timeout: Optional[float] = None) -> bool:
        """Wait until katcp protocol information has been received from server.

        Parameters
        ----------
        timeout : float in seconds
            Seconds to wait for the client to connect.

        Returns
        -------
        received : bool
            Whether protocol information was received. If True, the server's
            protocol information is available in self.protocol_flags.

        Notes
        -----
        Do not call this from the ioloop, use until_protocol().

        """
        return self._wait_flag(self._received_protocol_info, "wait_protocol", "until_protocol",
                               timeout)

    def until_running(self, timeout=None):
        """Return future that resolves when the client is running.

        Notes
        -----
        Must be called from the same ioloop as the client.

        """
        return self._running.until_set(timeout)

    def until_connected(self, **kwargs):
        """Return future that resolves when the client is connected.

        Parameters
        ----------
        timeout : float, optional (keyword)

        """
        return self._connected.until_set(kwargs.get("timeout"))

    def until_disconnected(self, **kwargs):
        """Return future that resolves when the client is disconnected.

        Parameters
        ----------
        timeout : float, optional (keyword)

        """
        return self._disconnected.until_set(kwargs.get("timeout"))

    def until_protocol(self, **kwargs):
        """Return future that resolves after receipt of katcp protocol info.

        If the returned future resolves, the server's protocol information is
        available in the ProtocolFlags instance self.protocol_flags.

        Parameters
        ----------
        timeout : float, optional (keyword)

        """
        return self._received_protocol_info.until_set(kwargs.get("timeout"))

    def until_stopped(self, timeout=None):
        """Return future that resolves when the client has stopped.

        Parameters
        ----------
        timeout : float in seconds
            Seconds to wait for the client to stop.

        Notes
        -----
        If already running, stop() must be called before this. Must be called from
        the same ioloop as the client. Stopped means the main coroutine has ended,
        or was never started.

        """
        return self._stopped.until_set(timeout)

    # -- protocol version ------------------------------------------------------------

    def preset_protocol_flags(self, protocol_flags):
        """Preset server protocol flags.

        Sets the assumed server protocol flags and disables automatic server
        version detection.

        Parameters
        ----------
        protocol_flags : katcp.core.ProtocolFlags instance

        """
        self._protocol_preset = True
        self._set_protocol(protocol_flags)

    def _set_protocol(self, protocol_flags):
        self.protocol_flags = protocol_flags
        self._server_supports_ids = bool(protocol_flags.message_ids)
        self._received_protocol_info.set()

    def _set_protocol_from_inform(self, protocol_flags, msg):
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
            self.protocol_flags = None
            self._server_supports_ids = False
            self._received_protocol_info.clear()
            self._disconnect()

    def convert_seconds(self, time_seconds):
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
            return _whole_ms(time_seconds)
        return _seconds_to_ms(time_seconds)

    def inform_version_connect(self, msg):
        """Process a #version-connect message."""
        if len(msg.arguments) < 2:
            return
        name, *values = [_decode(arg) for arg in msg.arguments]
        self.versions[name] = tuple(values)
        if name == "katcp-protocol":
            self._set_protocol_from_inform(ProtocolFlags.parse_version(values[0]), msg)

    def inform_version(self, msg):
        """Handle katcp v4 and below version inform."""
        if msg.arguments:
            self.versions["katcp-device-version"] = (_decode(msg.arguments[0]),)
        self._set_protocol_from_inform(ProtocolFlags(4, 0, set()), msg)

    def inform_build_state(self, msg):
        """Handle katcp v4 and below build-state inform."""
        if msg.arguments:
            self.versions["katcp-device-build-state"] = (_decode(msg.arguments[0]),)
        self._set_protocol_from_inform(ProtocolFlags(4, 0, set()), msg)

    # -- sending ---------------------------------------------------------------------

    def _next_mid(self):
        return b"%d" % next(self._msg_id_counter)

    def _get_mid_and_update_msg(self, msg, use_mid):
        """Return the id that tracks `msg`, giving `msg` that id if it should carry one.

        An id is always drawn from the counter when `msg` has none (so ids visible on
        the wire follow the number of requests made, as the reference client's do).

        """
        if msg.mid is not None:
            return msg.mid
        mid = self._next_mid()
        if use_mid is None:
            use_mid = self._server_supports_ids
        if use_mid:
            msg.mid = mid
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
        self._get_mid_and_update_msg(msg, use_mid)
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
        assert msg.mtype == Message.REQUEST
        if msg.mid is not None and not self._server_supports_ids:
            raise KatcpVersionError("Message IDs not supported by server")
        self.send_message(msg)

    def send_message(self, msg: Message) -> None:
        """Send any kind of message.

        Call it from the client's ioloop, or from any thread once
        :meth:`enable_thread_safety` has been called. Failures are logged, not raised.

        Parameters
        ----------
        msg : Message object
            The message to send.

        Raises
        ------
        AssertionError
            If called from another thread without thread safety enabled.

        """
        data = bytes(msg) + b"\n"
        if _get_ident() == self.ioloop_thread_id:
            self._write(data)
        elif self._threadsafe:
            self._call_soon_threadsafe(functools.partial(self._write, data))
        else:
            self._check_loop_thread()  # raises: another thread, and not thread safe

    def _write(self, data):
        protocol = self._protocol
        if protocol is None:
            self._logger.warning("Cannot send message: client not connected to %s",
                                 self.bind_address_string)
            return
        protocol.write(data)

    # -- receiving -------------------------------------------------------------------

    def _log_handler_error(self, future):
        if not future.cancelled() and future.exception() is not None:
            self._logger.error("Message handler failed", exc_info=future.exception())

    def handle_message(self, msg):
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

    def handle_inform(self, msg):
        """Dispatch an inform message to the appropriate method.

        Parameters
        ----------
        msg : Message object
            The inform message to dispatch.

        """
        handler = self._inform_handlers.get(msg.name)
        if handler is None:
            return self.unhandled_inform(msg)
        return handler(self, msg)

    def handle_reply(self, msg):
        """Dispatch a reply message to the appropriate method.

        Parameters
        ----------
        msg : Message object
            The reply message to dispatch.

        """
        handler = self._reply_handlers.get(msg.name)
        if handler is None:
            return self.unhandled_reply(msg)
        return handler(self, msg)

    def handle_request(self, msg):
        """Dispatch a request message to the appropriate method.

        A handler may return a reply Message, which is sent; an exception it raises
        is answered with a fail reply carrying the traceback.

        Parameters
        ----------
        msg : Message object
            The request message to dispatch.

        """
        handler = self._request_handlers.get(msg.name)
        if handler is None:
            return self.unhandled_request(msg)
        try:
            reply = handler(self, msg)
        except Exception:
            reason = "".join(traceback.format_exception(*sys.exc_info(), limit=self._tb_limit))
            reply = Message.reply_to_request(msg, "fail", reason)
        if isinstance(reply, Message):
            self.send_message(reply)
        return None

    def unhandled_inform(self, msg):
        """Fallback method for inform messages without a registered handler.

        Parameters
        ----------
        msg : Message object
            The inform message that wasn't processed by any handlers.

        """

    def unhandled_reply(self, msg):
        """Fallback method for reply messages without a registered handler.

        Parameters
        ----------
        msg : Message object
            The reply message that wasn't processed by any handlers.

        """
        self._logger.debug("Unhandled reply %s", msg)

    def unhandled_request(self, msg):
        """Fallback method for requests without a registered handler.

        Parameters
        ----------
        msg : Message object
            The request message that wasn't processed by any handlers.

        """
        self._logger.debug("Unhandled request %s", msg)


def _decode(arg):
    return arg.decode("utf-8", errors="replace") if isinstance(arg, bytes) else str(arg)


_SEND_REQUEST = DeviceClient.send_request
_SEND_MESSAGE = DeviceClient.send_message


class _PendingRequest:
    """A request in flight, delivering its informs and reply to user callbacks."""

    __slots__ = ("msg", "reply_cb", "inform_cb", "user_data", "deadline")

    def __init__(self, msg, reply_cb, inform_cb, user_data):
        self.msg = msg
        self.reply_cb = reply_cb
        self.inform_cb = inform_cb
        self.user_data = user_data
        self.deadline = None

    def on_inform(self, client, msg):
        if self.inform_cb is None:
            return DeviceClient.handle_inform(client, msg)
        try:
            if self.user_data is None:
                self.inform_cb(msg)
            else:
                self.inform_cb(msg, *self.user_data)
        except Exception:
            client._logger.exception("Callback inform %s FAIL", msg.name)
        return None

    def on_reply(self, client, msg):
        if self.reply_cb is None:
            return DeviceClient.handle_reply(client, msg)
        try:
            if self.user_data is None:
                self.reply_cb(msg)
            else:
                self.reply_cb(msg, *self.user_data)
        except Exception:
            client._logger.exception("Callback reply %s FAIL", msg.name)
        return None


class _FutureRequest:
    """A request in flight whose (reply, informs) resolve a future of any kind."""

    __slots__ = ("msg", "future", "informs", "deadline")

    def __init__(self, msg, future):
        self.msg = msg
        self.future = future
        self.informs = None  # most requests have none: the list is made on the first
        self.deadline = None

    def on_inform(self, client, msg):
        if self.informs is None:
            self.informs = [msg]
        else:
            self.informs.append(msg)

    def on_reply(self, client, msg):
        future = self.future
        if not future.done():
            future.set_result((msg, [] if self.informs is None else self.informs))


class _RequestTimeouts:
    """Deadlines of requests in flight: one heap served by a single loop timer.

    Cheaper than a loop timer per request: a request that is answered is simply
    left in the heap and skipped when its deadline comes up (or dropped sooner). An
    entry counts only while its request is still in ``waiting`` and its
    ``pending.deadline`` still equals the entry's deadline, so answering a request
    needs no work here.

    Parameters
    ----------
    loop : asyncio event loop
    expire : callable
        ``expire(msg_id, start_time)`` for each request that timed out.
    waiting : dict
        Requests in flight by id; the owner changes it in place, never replaces it.

    """

    MIN_COMPACT_SIZE = 1024

    def __init__(self, loop, expire, waiting):
        self._loop = loop
        self._expire = expire
        self._waiting = waiting
        self._heap = []
        self._seq = itertools.count()
        self._timer = None
        self._timer_when = None
        self._compact_at = self.MIN_COMPACT_SIZE

    def add(self, msg_id, pending, timeout):
        start = self._loop.time()
        deadline = pending.deadline = start + timeout
        heap = self._heap
        live = self._live
        # Requests mostly finish in the order sent, so the earliest deadline usually
        # belongs to one already answered: dropping it now lets it die young, which
        # is cheaper for the garbage collector than waiting for a compaction.
        while heap and not live(heap[0]):
            heapq.heappop(heap)
        heapq.heappush(heap, (deadline, next(self._seq), msg_id, pending, start))
        timer_when = self._timer_when
        if timer_when is None or deadline < timer_when:
            self._arm(deadline)
        if len(heap) > self._compact_at:
            heap = self._heap = [entry for entry in heap if live(entry)]
            heapq.heapify(heap)
            self._compact_at = max(self.MIN_COMPACT_SIZE, 2 * len(heap))

    def _live(self, entry):
        deadline, _, msg_id, pending, _ = entry
        return pending.deadline == deadline and self._waiting.get(msg_id) is pending

    def _arm(self, when):
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._fire)
        self._timer_when = when

    def _fire(self):
        self._timer = self._timer_when = None
        heap = self._heap
        # asyncio may run a timer up to one clock tick early.
        now = self._loop.time() + 0.001
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._live(entry):
                self._expire(entry[2], entry[4])
        if heap:
            self._arm(heap[0][0])

    def clear(self):
        """Forget all deadlines."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_when = None
        self._heap = []
        self._compact_at = self.MIN_COMPACT_SIZE


class AsyncClient(DeviceClient):
    """Implement async and callback-based requests on top of DeviceClient.

    This client will use message IDs if the server supports them.

    Parameters
    ----------
    host : string
        Host to connect to.
    port : int
        Port to connect to.
    tb_limit : int, optional
        Maximum number of stack frames to send in error traceback.
    timeout : float in seconds, optional
        Default number of seconds to wait before a callback callback_request times
        out. Can be overridden in individual calls to callback_request. None means
        requests never time out.
    logger : object, optional
        Python Logger object to log to.
    auto_reconnect : bool, optional
        Whether to automatically reconnect if the connection dies.

    """

    def __init__(self, host: str, port: int, tb_limit: int = 20, timeout: float = 5.0,
                 logger: logging.Logger = log, auto_reconnect: bool = True) -> None:
        super().__init__(host, port, tb_limit=tb_limit, logger=logger,
                         auto_reconnect=auto_reconnect)
        self._request_timeout = timeout
        # id -> pending request; ids are wire mids, or internal ids for mid-less requests.
        self._async_queue: Dict[Any, Any] = {}
        # request name -> ids in the order sent, to match mid-less replies and informs.
        self._async_id_stack: Dict[str, Any] = collections.defaultdict(collections.deque)
        self._timeouts = None

    # -- bookkeeping -----------------------------------------------------------------

    def _connection_made(self, protocol):
        if self._timeouts is None or self._timeouts._loop is not self._loop:
            self._timeouts = _RequestTimeouts(self._loop, self._handle_timeout,
                                              self._async_queue)
        super()._connection_made(protocol)

    def _peek_by_name(self, name):
        """The oldest request in flight named `name`, as (msg_id, pending), or (None, None).

        A finished request only leaves ``_async_queue`` (answering a reply with an id
        is the hot path); its id stays in the by-name stack until dropped here or
        when the next request of that name is registered.
        """
        stack = self._async_id_stack.get(name)
        queue = self._async_queue
        while stack:
            msg_id = stack[0]
            pending = queue.get(msg_id)
            if pending is not None:
                return msg_id, pending
            stack.popleft()
        return None, None

    def _start_request(self, msg, pending, timeout, use_mid):
        """Register and send a request on the loop; failures resolve it with a fail reply."""
        assert msg.mtype == _REQUEST
        mid = msg.mid
        supports_ids = self._server_supports_ids
        if mid is None:
            # An id is drawn even for a mid-less request, so wire ids follow the
            # request count as the reference's do. Kept as an int it keys a mid-less
            # request without clashing with any wire mid (bytes).
            msg_id = next(self._msg_id_counter)
            if use_mid or (use_mid is None and supports_ids):
                msg.mid = mid = msg_id = b"%d" % msg_id
        else:
            msg_id = mid
        protocol = self._protocol
        if protocol is None:
            pending.on_reply(self, Message.reply(msg.name, "fail", "Client not connected",
                                                 mid=mid))
            return
        if mid is not None and not supports_ids:
            # The reference client answers with a '?'-typed message here; kept so
            # programs see the same reply text (see the v4 wire transcript).
            pending.on_reply(self, Message.request(
                msg.name, "fail", "Message IDs not supported by server", mid=msg_id))
            return
        queue = self._async_queue
        if msg_id in queue:
            raise RuntimeError("Message id %r already in use by a request in flight"
                               % (msg_id,))
        if (getattr(self.send_request, "__func__", None) is _SEND_REQUEST
                and getattr(self.send_message, "__func__", None) is _SEND_MESSAGE):
            # Neither is overridden (by a subclass or on the instance): sent before
            # the bookkeeping, which then overlaps the server's work; the reply can
            # only be read on a later loop iteration.
            protocol.write(msg.__bytes__() + b"\n")
            self._register_request(msg_id, msg.name, pending, timeout)
            return
        self._register_request(msg_id, msg.name, pending, timeout)
        try:
            self.send_request(msg)
        except KatcpClientError as exc:
            self._async_queue.pop(msg_id, None)
            pending.on_reply(self, Message.request(msg.name, "fail", str(exc), mid=mid))

    def _register_request(self, msg_id, name, pending, timeout):
        queue = self._async_queue
        stack = self._async_id_stack[name]
        while stack and stack[0] not in queue:  # answered; see _peek_by_name
            stack.popleft()
        queue[msg_id] = pending
        stack.append(msg_id)
        if timeout is not None:
            self._timeouts.add(msg_id, pending, timeout)

    def _handle_timeout(self, msg_id, start_time):
        pending = self._async_queue.pop(msg_id, None)
        if pending is None:  # answered meanwhile
            return
        msg = pending.msg
        reason = "Request %s timed out after %f seconds." % (
            msg.name, self._loop.time() - start_time)
        pending.on_reply(self, Message.reply(msg.name, "fail", reason, mid=msg.mid))

    def _fail_waiting_requests(self, reason):
        waiting = list(self._async_queue.values())
        self._async_queue.clear()  # in place: the timeouts hold on to it
        self._async_id_stack.clear()
        if self._timeouts is not None:
            self._timeouts.clear()
        for pending in waiting:
            msg = pending.msg
            pending.on_reply(self, Message.reply(msg.name, "fail", reason, mid=msg.mid))

    def _connection_closed(self):
        if self._stopping:
            reason = "Client stopped before reply was received"
        else:
            reason = "Connection closed before reply was received"
        self._fail_waiting_requests(reason)

    # -- request API -----------------------------------------------------------------

    @make_threadsafe_blocking
    def future_request(self, msg: Message, timeout: Optional[float] = None,
                       use_mid: Optional[bool] = None) -> Any:
        """Send a request message, with future replies.

        Parameters
        ----------
        msg : Message object
            The request Message to send.
        timeout : float in seconds
            How long to wait for a reply. The default is the the timeout set when
            creating the AsyncClient.
        use_mid : boolean, optional
            Whether to use message IDs. Default is to use message IDs if the server
            supports them.

        Returns
        -------
        A tornado.concurrent.Future that resolves with:

        reply : Message object
            The reply message received.
        informs : list of Message objects
            A list of the inform messages received.

        Called from another thread with thread safety enabled, it blocks and returns
        (reply, informs) instead.

        Raises
        ------
        AssertionError
            If called from another thread without thread safety enabled.

        """
        self._check_loop_thread()
        if timeout is None:
            timeout = self._request_timeout
        future = self._loop.create_future()
        try:
            self._start_request(msg, _FutureRequest(msg, future), timeout, use_mid)
        except Exception as exc:
            future.set_exception(exc)
        return future

    @make_threadsafe
    def callback_request(self, msg, reply_cb=None, inform_cb=None, user_data=None,
                         timeout=None, use_mid=None):
        """Send a request message.

        Parameters
        ----------
        msg : Message object
            The request message to send.
        reply_cb : function
            The reply callback with signature ``reply_cb(msg)`` or
            ``reply_cb(msg, *user_data)``.
        inform_cb : function
            The inform callback with signature ``inform_cb(msg)`` or
            ``inform_cb(msg, *user_data)``.
        user_data : tuple
            Optional user data to send to the reply and inform callbacks.
        timeout : float in seconds
            How long to wait for a reply. The default is the the timeout set when
            creating the AsyncClient.
        use_mid : boolean, optional
            Whether to use message IDs. Default is to use message IDs if the server
            supports them.

        Raises
        ------
        AssertionError
            If called from another thread without thread safety enabled.

        Notes
        -----
        Without a `reply_cb` the reply goes to the client's reply handlers
        (:meth:`handle_reply`), as informs do without an `inform_cb`.

        """
        self._check_loop_thread()
        if timeout is None:
            timeout = self._request_timeout
        pending = _PendingRequest(msg, reply_cb, inform_cb, user_data)
        self._start_request(msg, pending, timeout, use_mid)

    def blocking_request(self, msg: Message, timeout: Optional[float] = None,
                         use_mid: Optional[bool] = None) -> Tuple[Message, List[Message]]:
        """Send a request message and wait for its reply.

        Parameters
        ----------
        msg : Message object
            The request Message to send.
        timeout : float in seconds
            How long to wait for a reply. The default is the the timeout set when
            creating the AsyncClient.
        use_mid : boolean, optional
            Whether to use message IDs. Default is to use message IDs if the server
            supports them.

        Returns
        -------
        reply : Message object
            The reply message received.
        informs : list of Message objects
            A list of the inform messages received.

        Raises
        ------
        RuntimeError
            If called from the client's ioloop thread (it would deadlock), or if no
            reply (not even a timeout reply) arrives within timeout + 1 seconds.

        """
        if _get_ident() == self.ioloop_thread_id:
            raise RuntimeError("blocking_request() cannot be called from the client's "
                               "ioloop thread; use future_request() instead")
        if timeout is None:
            timeout = self._request_timeout
        loop = self._loop
        if loop is None:
            raise KatcpClientError("Client not started")
        result = concurrent.futures.Future()
        # The loop answers with a timeout reply after `timeout`; the extra second
        # only catches a loop that has stopped answering at all.
        wait = None if timeout is None else timeout + 1
        # Nothing between waking the loop and blocking: the loop thread needs the GIL.
        loop.call_soon_threadsafe(self._blocking_request_on_loop, msg, timeout, use_mid, result)
        try:
            return result.result(wait)
        except concurrent.futures.TimeoutError:
            raise RuntimeError("Unexpected error: Async request handler did not call "
                               "reply handler within timeout period") from None

    def _blocking_request_on_loop(self, msg, timeout, use_mid, result):
        try:
            self._start_request(msg, _FutureRequest(msg, result), timeout, use_mid)
        except BaseException as exc:
            if not result.done():
                result.set_exception(exc)

    # -- dispatch --------------------------------------------------------------------

    def handle_inform(self, msg):
        """Handle inform messages related to any current requests.

        Inform messages not related to the current request go up to the base class
        method.

        Parameters
        ----------
        msg : Message object
            The inform message to dispatch.

        """
        if msg.mid is not None:
            pending = self._async_queue.get(msg.mid)
        else:
            _msg_id, pending = self._peek_by_name(msg.name)
            if pending is not None and pending.msg.mid is not None:
                # We sent a mid, so a mid-less inform is not part of that reply.
                pending = None
        if pending is None:
            return super().handle_inform(msg)
        return pending.on_inform(self, msg)

    def handle_reply(self, msg):
        """Handle a reply message related to the current request.

        Reply messages not related to the current request go up to the base class
        method.

        Parameters
        ----------
        msg : Message object
            The reply message to dispatch.

        """
        mid = msg.mid
        if mid is not None:
            # Its by-name and timeout entries are dropped later (see _peek_by_name
            # and _RequestTimeouts): the reply is handled with the least work possible.
            pending = self._async_queue.pop(mid, None)
        else:
            msg_id, pending = self._peek_by_name(msg.name)
            if pending is not None:
                if pending.msg.mid is None:
                    self._async_queue.pop(msg_id, None)
                else:
                    # We sent a mid, so a mid-less reply is not the answer. As in the
                    # reference client it still disarms that request's timer, so the
                    # request now waits for its own reply (or the connection's end).
                    pending.deadline = None
                    pending = None
        if pending is None:
            return super().handle_reply(msg)
        return pending.on_reply(self, msg)

    def stop(self, *args, **kwargs):
        """Stop a running client.

        If using a managed ioloop, this must be called from a different thread to the
        ioloop's. This method only returns once the client's main coroutine,
        _install(), has completed.

        If using an unmanaged ioloop, this can be called from the same thread as the
        ioloop. The until_stopped() method can be used to wait on completion of the
        main coroutine, _install().

        Requests still waiting for replies get a fail reply.

        Parameters
        ----------
        timeout : float in seconds
            Seconds to wait for both client thread to have started, and for stopping.

        """
        return super().stop(*args, **kwargs)


class CallbackClient(AsyncClient):
    """Thread-safe asynchronous client: callback, future and blocking requests.

    Parameters
    ----------
    host : string
        Host to connect to.
    port : int
        Port to connect to.
    tb_limit : int, optional
        Maximum number of stack frames to send in error traceback.
    timeout : float in seconds, optional
        Default request timeout.
    logger : object, optional
        Python Logger object to log to.
    auto_reconnect : bool, optional
        Whether to automatically reconnect if the connection dies.

    """

    def __init__(self, host: str, port: int, tb_limit: int = 20, timeout: float = 5.0,
                 logger: logging.Logger = log, auto_reconnect: bool = True) -> None:
        super().__init__(host, port, tb_limit=tb_limit, timeout=timeout, logger=logger,
                         auto_reconnect=auto_reconnect)
        self.enable_thread_safety()


class BlockingClient(CallbackClient):
    """Thread-safe client for synchronous communication with a server.

    Parameters
    ----------
    host : string
        Host to connect to.
    port : int
        Port to connect to.
    tb_limit : int, optional
        Maximum number of stack frames to send in error traceback.
    timeout : float in seconds, optional
        Default request timeout.
    logger : object, optional
        Python Logger object to log to.
    auto_reconnect : bool, optional
        Whether to automatically reconnect if the connection dies.

    """
