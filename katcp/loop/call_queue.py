"""The one queue of fire-and-forget calls handed to a loop by other threads.

Informs sent from a handler thread, replies resolved there and sensor updates made in
any thread all reach the loop through the :class:`CallQueue` of that loop. The calls run
in the order they were queued, and a burst of them costs one wake-up of the loop (one
``call_soon_threadsafe``), not one each. A call that must give its outcome back uses
:func:`katcp.loop.crossing.call_on_loop` instead.
"""

import logging
import threading
import weakref
from typing import Any, Callable, List, Optional, Tuple

import tornado.ioloop

__all__ = ["CallQueue"]

log = logging.getLogger("katcp.loop")

_Call = Tuple[Callable[..., Any], Tuple[Any, ...]]


class _Held(threading.local):
    """The calls a thread holds back (see :meth:`CallQueue.hold`): None while it does not."""

    calls: Optional[List[_Call]] = None


class CallQueue:
    """Calls queued from any thread, run in order on one asyncio loop.

    Get the queue of a loop with :meth:`of`: every user of a loop shares it.

    Parameters
    ----------
    asyncio_loop : :class:`asyncio.AbstractEventLoop`

    """

    __slots__ = ("_loop_ref", "_lock", "_calls", "_held", "__weakref__")

    _queues: "weakref.WeakKeyDictionary[Any, CallQueue]" = weakref.WeakKeyDictionary()
    _queues_lock = threading.Lock()

    def __init__(self, asyncio_loop: Any) -> None:
        # A weak reference: the registry's values must not keep its keys (loops) alive.
        self._loop_ref = weakref.ref(asyncio_loop)
        self._lock = threading.Lock()
        self._calls: List[_Call] = []
        self._held = _Held()

    @classmethod
    def of(cls, ioloop: tornado.ioloop.IOLoop) -> "CallQueue":
        """Return the call queue of `ioloop`, made on first use.

        Parameters
        ----------
        ioloop : :class:`tornado.ioloop.IOLoop`

        Returns
        -------
        queue : :class:`CallQueue`

        """
        loop = ioloop.asyncio_loop  # type: ignore[attr-defined]
        queue = cls._queues.get(loop)
        if queue is None:
            with cls._queues_lock:
                queue = cls._queues.setdefault(loop, cls(loop))
        return queue

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` to run on the loop, after the calls queued before it.

        Safe from any thread, the loop's included (the call then runs on a later loop
        turn). Exceptions raised by `fn` are logged. Calls queued once the loop is
        closed are dropped: nothing would ever run them.

        Parameters
        ----------
        fn : callable
        *args : objects

        """
        held = self._held.calls
        if held is not None:
            held.append((fn, args))
            return
        with self._lock:
            calls = self._calls
            calls.append((fn, args))
            if len(calls) > 1:
                return  # the wake-up that runs them is already scheduled
        self._wake()

    def hold(self) -> None:
        """Hold back the calls this thread queues from now on, until :meth:`release`.

        For a thread that is about to queue several calls in a row (a reply and the end
        of handling its request, say): released together, they wake the loop once, and
        the loop does not run the first of them while the thread still works on the rest.
        Other threads' calls are not held. Holding again while holding changes nothing.
        """
        if self._held.calls is None:
            self._held.calls = []

    def release(self) -> None:
        """Queue the calls held back since :meth:`hold`, in their order, and stop holding."""
        held = self._held.calls
        if held is None:
            return
        self._held.calls = None
        if not held:
            return
        with self._lock:
            calls = self._calls
            calls.extend(held)
            if len(calls) > len(held):
                return
        self._wake()

    def _wake(self) -> None:
        loop: Optional[Any] = self._loop_ref()
        try:
            if loop is None:
                raise RuntimeError("the loop is gone")
            loop.call_soon_threadsafe(self._run)
        except RuntimeError:
            with self._lock:
                self._calls = []

    def _run(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for fn, args in calls:
            try:
                fn(*args)
            except Exception:
                log.exception("Error in %r, called on the loop from another thread", fn)
