"""The flags of a client's state, waited for from threads and awaited on its loop."""

import threading
from typing import Any, Optional

import tornado.ioloop

from katcp.core import AsyncEvent
from katcp.loop.crossing import thread_wait_timeout


class StateFlag:
    """A flag that threads wait for (as a :class:`threading.Event`) and the loop awaits
    (``until_set``).

    The flag itself is its :class:`~katcp.core.AsyncEvent`'s; the condition only wakes
    the threads waiting for it.

    Parameters
    ----------
    condition : :class:`threading.Condition`, optional
        Shared with other flags (a client's six share one: a fleet of clients is made
        faster). Each waiter waits for its own flag, whatever woke it.
    """

    def __init__(self, condition: Optional[threading.Condition] = None) -> None:
        self._cond = condition or threading.Condition(threading.Lock())
        self._settings = 0  # how often set(): a waiter is released by any setting
        self._event = AsyncEvent()

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._event.is_set()

    # katcp 0.9 code and tests use this spelling.
    isSet = is_set

    def set(self) -> None:
        """Set the flag, releasing every waiter (thread or future); from any thread."""
        self._event.set()
        with self._cond:
            self._settings += 1
            self._cond.notify_all()

    def clear(self) -> None:
        """Clear the flag: waits begun from now on wait for the next setting."""
        self._event.clear()

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
                lambda: self._event.is_set() or self._settings != settings, timeout)

    @property
    def _ioloop(self) -> Optional[tornado.ioloop.IOLoop]:
        """The loop on which waiters made outside any running loop are created (the name
        katcp 0.9's AsyncEvent flags had)."""
        return self._event.ioloop

    def bind(self, ioloop: tornado.ioloop.IOLoop) -> None:
        """Create future waiters on `ioloop` when no loop is running in the caller."""
        self._event.ioloop = ioloop

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
        return self._event.until_set(timeout)
