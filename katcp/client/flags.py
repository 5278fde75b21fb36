"""The flags of a client's state, waited for from threads and awaited on its loop."""

import threading
from typing import Any, Optional

import tornado.ioloop

from katcp.core import AsyncEvent
from katcp.loop.crossing import thread_wait_timeout


class StateFlag(threading.Event):
    """A :class:`threading.Event` that can also be awaited on the loop (``until_set``).

    Parameters
    ----------
    condition : :class:`threading.Condition`, optional
        Shared with other flags (a client's six share one: a fleet of clients is made
        faster). Each waiter waits for its own flag, whatever woke it.
    """

    def __init__(self, condition: Optional[threading.Condition] = None) -> None:
        # Not threading.Event.__init__, which would make a condition of its own.
        self._cond = condition or threading.Condition(threading.Lock())
        self._flag = False
        self._settings = 0  # how often set(): a waiter is released by any setting
        self._async = AsyncEvent()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the flag is set, or `timeout` seconds pass; return the flag.

        As :meth:`threading.Event.wait`: True also if the flag was set while waiting
        and cleared again before the waiter woke. `timeout` as every katcp wait takes it
        (:func:`~katcp.loop.crossing.thread_wait_timeout`): NaN does not wait, ``inf``
        waits for ever.
        """
        timeout = thread_wait_timeout(timeout)
        with self._cond:
            settings = self._settings
            return self._cond.wait_for(
                lambda: self._flag or self._settings != settings, timeout)

    @property
    def _ioloop(self) -> Optional[tornado.ioloop.IOLoop]:
        """The loop on which waiters made outside any running loop are created (the name
        katcp 0.9's AsyncEvent flags had)."""
        return self._async._ioloop

    def bind(self, ioloop: tornado.ioloop.IOLoop) -> None:
        """Create future waiters on `ioloop` when no loop is running in the caller."""
        self._async._ioloop = ioloop

    # katcp 0.9 code and tests use this spelling; threading.Event's own warns (deprecated).
    isSet = threading.Event.is_set

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._settings += 1
            self._cond.notify_all()
        self._async.set()

    def clear(self) -> None:
        super().clear()
        self._async.clear()

    def until_set(self, timeout: Optional[float] = None) -> Any:
        """A future on the bound loop that resolves once the flag is set.

        Parameters
        ----------
        timeout : float or None, optional
            Seconds after which the future fails with :class:`tornado.util.TimeoutError`.

        Returns
        -------
        set : Future
            Resolves (to True) once the flag is set.

        """
        # The event's own timeout: a wait that times out is unregistered at once.
        return self._async.until_set(timeout)
