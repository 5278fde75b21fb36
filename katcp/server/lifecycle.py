"""A device server's life: where it runs, its start and stop, and the waits for them."""

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
from typing import TYPE_CHECKING, Any, Iterator, Optional

import tornado.gen
from tornado.concurrent import Future

from katcp.core import steal_docstring_from
from katcp.loop.crossing import running_loop, thread_wait_timeout
from katcp.server.handler_thread import MessageHandlerThread
from katcp.server.transport import KATCPServer


def _nothing() -> None:
    pass


class ServerLifecycle:
    """How a :class:`~katcp.server.DeviceServerBase` runs: the loop it runs on, its
    start and stop (its transport's and its handler thread's together), ``with`` and
    ``async with``, and the waits for it to run and for its loop to go round.

    A mixin of DeviceServerBase (its methods stay the device's, so that a subclass or a
    test replacing one is heard; ``with`` calls :meth:`start`, :meth:`stop` and
    :meth:`join` as the device's). It needs of the device its transport (``_server``),
    its handler thread (``_handler_thread``, None without one), its ``_logger`` and
    ``_rebind_receiver()``, which binds anew what receives its messages as the server
    starts.
    """

    _server: KATCPServer
    _handler_thread: Optional[MessageHandlerThread]
    _logger: logging.Logger

    if TYPE_CHECKING:
        def _rebind_receiver(self) -> None: ...

    @steal_docstring_from(KATCPServer.set_ioloop)
    def set_ioloop(self, ioloop: Any = None) -> None:
        self._server.set_ioloop(ioloop)

    @steal_docstring_from(KATCPServer.setDaemon)
    def setDaemon(self, daemonic: bool) -> None:
        self._server.setDaemon(daemonic)

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
