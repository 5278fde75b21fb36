"""The request-handling thread of a threaded DeviceServer."""

import asyncio
import logging
import queue
import threading
import traceback

from tornado.concurrent import Future

log = logging.getLogger("katcp.server")

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


