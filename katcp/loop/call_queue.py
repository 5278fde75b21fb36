"""The one queue of fire-and-forget calls handed to a loop by other threads.

Informs sent from a handler thread, replies resolved there and sensor updates made in
any thread all reach the loop through the :class:`CallQueue` of that loop. The calls run
in the order they were queued, and a burst of them costs one wake-up of the loop (one
``call_soon_threadsafe``), not one each. A call that must give its outcome back and keep
its place among them is queued with :meth:`CallQueue.call_with_outcome`.

Work that comes in many small pieces (sensor readings set in a tight loop) is queued with
:meth:`CallQueue.call_batched`: pieces queued one after another, with nothing else
between them, are handed to the loop in one call, and a piece queued after any other
call starts a new one behind it, so nothing overtakes what was queued before it.
"""

import concurrent.futures
import logging
import threading
import weakref
from typing import Any, Callable, List, Optional, Tuple

import tornado.ioloop

from katcp.loop.crossing import run_into_future, running_loop
from katcp.loop.per_loop import one_per_loop

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

    __slots__ = ("_loop_ref", "_lock", "_calls", "_held", "_batch", "count", "__weakref__")

    def __init__(self, asyncio_loop: Any) -> None:
        # Weak: a queue kept after its loop is gone (by a stopped server) does not keep it.
        self._loop_ref = weakref.ref(asyncio_loop)
        self._lock = threading.Lock()
        self._calls: List[_Call] = []
        self._held = _Held()
        # The call of the last call_batched(), whose items may grow while it is the last
        # call queued.
        self._batch: Optional[_Call] = None
        #: How many calls and batched items were queued so far (a thread's held calls
        #: once released). While it is the mark :meth:`call_batched` returned, nothing
        #: was queued after that item.
        self.count = 0

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
        return one_per_loop(ioloop, "_katcp_call_queue", _new_queue)

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
            self.count += 1
            if len(calls) > 1:
                return  # the wake-up that runs them is already scheduled
        self._wake()

    def call_with_outcome(self, fn: Callable[..., Any], *args: Any
                          ) -> "concurrent.futures.Future[Any]":
        """Queue ``fn(*args)`` as :meth:`call` does, and return a future of its outcome.

        The call keeps its place among what this thread queues here (sensor readings,
        sends): it runs after what the thread queued before it and before what it queues
        after it. A :func:`katcp.loop.crossing.call_on_loop` call does not: calls queued
        here after it may join a wake-up of the loop scheduled before it. A thread that
        holds its calls back (:meth:`hold`) is released first, so that it may wait for
        the outcome.

        Parameters
        ----------
        fn : callable
            Called on the loop thread; it may return a value, a future or a coroutine.
        *args : objects

        Returns
        -------
        result : :class:`concurrent.futures.Future`
            Resolves as :func:`~katcp.loop.crossing.call_on_loop`'s does; a call to a
            closed loop fails with :class:`RuntimeError`.

        """
        self.release()
        return self.call_into(concurrent.futures.Future(), fn, *args)

    def call_into(self, result: "concurrent.futures.Future[Any]", fn: Callable[..., Any],
                  *args: Any) -> "concurrent.futures.Future[Any]":
        """Queue ``fn(*args)`` as :meth:`call` does, its outcome to resolve `result`.

        As :meth:`call_with_outcome`, but into a future the caller made, and without
        releasing what this thread holds back (the call is held with it).

        Parameters
        ----------
        result : :class:`concurrent.futures.Future`
            Not yet running; failed at once with :class:`RuntimeError` if the loop is
            closed (nothing would ever run the call).
        fn : callable
        *args : objects

        Returns
        -------
        result : :class:`concurrent.futures.Future`
            `result`.

        """
        loop = self._loop_ref()
        if loop is None or loop.is_closed():
            result.set_running_or_notify_cancel()
            result.set_exception(RuntimeError("Event loop is closed"))
            return result
        self.call(run_into_future, fn, args, {}, result)
        return result

    def call_batched(self, fn: Callable[[List[Any]], Any], item: Any) -> Optional[int]:
        """Queue ``fn(items)``, `item` among `items`, joining the last call if it is one.

        While the last call queued is a batch of `fn` (the same object), `item` is added
        to its `items`: a burst of items costs one call on the loop. Once anything else
        was queued, a new batch starts behind it, so items keep their place among the
        other calls.

        Parameters
        ----------
        fn : callable
            Called on the loop with the list of items.
        item : object

        Returns
        -------
        mark : int or None
            :attr:`count` just after `item` was queued: while :attr:`count` is still
            `mark`, nothing was queued after `item` (though its batch may have been
            taken to run already). None for an item held back (:meth:`hold`), which
            other threads' calls may overtake.

        """
        held = self._held.calls
        if held is not None:
            held.append((fn, ([item],)))
            return None
        with self._lock:
            calls = self._calls
            batch = self._batch
            self.count = mark = self.count + 1
            if calls and calls[-1] is batch and batch[0] is fn:
                batch[1][0].append(item)
                return mark
            batch = self._batch = (fn, ([item],))
            calls.append(batch)
            if len(calls) > 1:
                return mark
        self._wake()
        return mark

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
            self.count += len(held)
            if len(calls) > len(held):
                return
        self._wake()

    def loop_closed(self) -> None:
        """Drop the calls queued and not yet run, the loop being closed now.

        Called by what closes the loop (:class:`~katcp.ioloop_manager.IOLoopManager`,
        for the loops it runs), and by a wake-up that the loop refuses: a loop that
        stopped before the wake-up of calls queued just then ran, and closed, runs none
        of them, and no later call would wake it (one is thought to be on its way). The
        outcomes of :meth:`call_with_outcome` calls among them fail with
        :class:`RuntimeError`, as they do for calls made to the closed loop.
        """
        with self._lock:
            calls, self._calls = self._calls, []
            self._batch = None
        for fn, args in calls:
            if fn is run_into_future and args[3].set_running_or_notify_cancel():
                args[3].set_exception(RuntimeError("Event loop is closed"))

    def _wake(self) -> None:
        loop: Optional[Any] = self._loop_ref()
        try:
            if loop is None:
                raise RuntimeError("the loop is gone")
            # Queued on the loop thread itself (a future resolved there calls back), the
            # call needs no call_soon_threadsafe(): its write to the loop's self-pipe is
            # a syscall, and a wake-up of epoll_wait, that the loop does not need.
            on_loop = running_loop() is loop
            (loop.call_soon if on_loop else loop.call_soon_threadsafe)(self._run)
        except RuntimeError:
            # The loop is closed (or gone): the calls are dropped, and their outcomes fail
            # (nor are the batch's items, and what they hold, kept, as _run() does).
            self.loop_closed()

    def _run(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
            self._batch = None  # not kept (nor what its items hold) once it runs
        for fn, args in calls:
            try:
                fn(*args)
            except Exception:
                log.exception("Error in %r, called on the loop from another thread", fn)


def _new_queue(ioloop: Any) -> CallQueue:
    return CallQueue(ioloop.asyncio_loop)
