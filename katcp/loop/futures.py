"""Futures and events for coroutines on a tornado 6 (asyncio) loop: :class:`AsyncEvent`,
:class:`AsyncState`, the ``until_*`` combinators and timeout helpers.

tornado futures are asyncio futures: they may only be resolved on their own loop. Anything
resolved from another thread goes through :func:`katcp.loop.crossing.call_on_loop`.
"""

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar

import tornado.concurrent
import tornado.gen
import tornado.ioloop
import tornado.util

from katcp.loop.crossing import (call_on_loop, is_awaitable, on_loop, on_thread, running_loop,
                                 thread_wait_timeout)
from katcp.loop.policy import no_loop_to_run, thread_ioloop
from katcp.wire.util import async_generator_error, copy_outcome, plain_callback


logger = logging.getLogger("katcp.core")

_F = TypeVar("_F", bound=Callable[..., Any])

# Where a waiting future lives: its loop, and the thread running that loop (None when
# it was created off the loop, so that resolving it always crosses).
_Home = Tuple[tornado.ioloop.IOLoop, Optional[int]]


def _new_future(ioloop: Optional[tornado.ioloop.IOLoop] = None
                ) -> Tuple["asyncio.Future[Any]", _Home]:
    """A future on the running loop, else on `ioloop`, else the current loop; and its home."""
    loop = running_loop()
    if loop is not None:
        return loop.create_future(), (tornado.ioloop.IOLoop.current(), threading.get_ident())
    ioloop = ioloop or thread_ioloop()
    return ioloop.asyncio_loop.create_future(), (ioloop, None)  # type: ignore[attr-defined]


def set_result_if_pending(future: Any, result: Any) -> None:
    """Resolve `future` with `result`, unless it is done (resolved, failed or cancelled).

    Parameters
    ----------
    future : asyncio (tornado) or concurrent.futures Future
        On the calling thread's loop, if an asyncio future.
    result : object

    """
    if not future.done():
        future.set_result(result)


def _resolve(future: "asyncio.Future[Any]", home: _Home, result: Any) -> None:
    """Resolve `future` from any thread, on its own loop (a closed loop is left alone)."""
    if on_thread(home[1]) and not future.get_loop().is_closed():
        # On that loop already: at once, without the crossing's future of the outcome.
        set_result_if_pending(future, result)
    else:
        call_on_loop(home[0], home[1], set_result_if_pending, future, result)


def _followed_on(loop: asyncio.AbstractEventLoop, future: Any) -> Any:
    """`future` (anything a tornado coroutine may yield), to be followed on `loop`.

    A pending concurrent.futures.Future calls back in the thread that resolves it,
    where nothing may touch the loop: it is followed through asyncio.wrap_future,
    which crosses into the loop safely (and wakes it).
    """
    inner = tornado.gen.convert_yielded(future)
    if asyncio.isfuture(inner) or inner.done():
        return inner
    return asyncio.wrap_future(inner, loop=loop)


_TIMEOUT_ERROR = object()


def _time_out(future: "asyncio.Future[Any]", result: Any) -> None:
    if future.done():
        return
    if result is _TIMEOUT_ERROR:
        future.set_exception(tornado.util.TimeoutError("Timeout"))
    else:
        future.set_result(result)


def failed_future(exc: BaseException) -> "tornado.concurrent.Future[Any]":
    """A future failed with `exc`: how a function that returns a future (once a
    coroutine) reports an error found before it waits."""
    failed: "tornado.concurrent.Future[Any]" = tornado.concurrent.Future()
    failed.set_exception(exc)
    return failed


def expire_after(future: "asyncio.Future[Any]", seconds: float,
                 result: Any = _TIMEOUT_ERROR) -> None:
    """Fail `future` with tornado.util.TimeoutError after `seconds` (or resolve it with
    `result`, if given), unless it is decided by then; the timer goes as soon as it is.

    The rule of every wait's timeout on a loop: ``inf`` (or any number too large for a
    clock) never expires, NaN expires at once, as 0 or less does.
    """
    # NaN compares false: at once. asyncio keeps an infinite deadline (uvloop caps it).
    delay = seconds if seconds > 0.0 else 0.0
    handle = future.get_loop().call_later(delay, _time_out, future, result)
    future.add_done_callback(lambda _: handle.cancel())


def _detach_when_done(outcome: "asyncio.Future[Any]", inputs: Iterable[Any],
                      callback: Callable[..., Any]) -> None:
    """Once `outcome` is decided (or cancelled, or timed out), take `callback` off each of
    `inputs`: an input shared by many waits (an AsyncEvent's future) must not keep one
    callback for every wait that gave up on it."""
    def detach(_: Any) -> None:
        for future in inputs:
            if asyncio.isfuture(future):
                future.remove_done_callback(callback)
    outcome.add_done_callback(detach)


def bounded(future: Any, seconds: Optional[float]) -> Any:
    """`future`, or tornado.util.TimeoutError after `seconds` (None: no bound; any number
    as :func:`expire_after` takes it, so ``inf`` never times out).

    As :func:`tornado.gen.with_timeout`, except that nothing of the wait stays on `future`
    once it has timed out or was cancelled: waits on one shared future that time out, or
    are given up, leave it as it was, and cancelling this wait cancels it alone.
    """
    inner = tornado.gen.convert_yielded(future)
    if not asyncio.isfuture(inner):
        if seconds is None:
            return inner
        # A concurrent.futures.Future, followed on the current loop (as tornado's
        # with_timeout does), so that its timeout follows the same rule.
        inner = asyncio.wrap_future(inner, loop=thread_ioloop().asyncio_loop)
    if inner.done():
        return inner
    outer = inner.get_loop().create_future()
    copy = functools.partial(copy_outcome, target=outer)
    inner.add_done_callback(copy)
    _detach_when_done(outer, (inner,), copy)
    if seconds is not None:
        expire_after(outer, seconds)
    return outer


def with_timeout(future: "asyncio.Future[Any]", timeout: Optional[float]) -> Any:
    """`future`, a wait of the caller's own, bounded by `timeout`: once the bounded wait
    is over (timed out, cancelled), `future` is cancelled, and so unregistered."""
    if not timeout:
        return future
    wait = bounded(future, timeout)
    if wait is not future:
        wait.add_done_callback(lambda _: future.cancel())
    return wait


def _cancel_when_over(outcome: Any, futures: Iterable[Any]) -> Any:
    """`outcome`, a wait on `futures` (waits of the caller's own): once it is over
    (decided, timed out or cancelled), those of `futures` still pending are cancelled,
    which unregisters them."""
    def cancel_rest(_: Any) -> None:
        for future in futures:
            future.cancel()
    outcome.add_done_callback(cancel_rest)
    return outcome


def until_first(*futures: Any, timeout: Optional[float] = None,
                ioloop: Optional[tornado.ioloop.IOLoop] = None) -> Any:
    """As :func:`until_any`, for waits of the caller's own: once it is decided (or timed
    out, or cancelled), the others are cancelled, which unregisters them."""
    return _cancel_when_over(until_any(*futures, timeout=timeout, ioloop=ioloop), futures)


def until_all(*futures: Any, timeout: Optional[float] = None) -> Any:
    """As :func:`until_some` for all of `futures`, waits of the caller's own: once it is
    over early (timed out, cancelled, or one of them failed), those still pending are
    cancelled, which unregisters them."""
    return _cancel_when_over(until_some(*futures, timeout=timeout), futures)


def give_up(*waits: Any) -> None:
    """Cancel `waits`, the caller's own (None is skipped): a wait given up stays
    registered where it waits until it is cancelled.

    A wait whose loop is closed is left alone: that is a coroutine closed by the garbage
    collector after its loop (cancelling would call the closed loop and fail), and what
    it waits on never runs again.

    Parameters
    ----------
    *waits : asyncio (tornado) Future or None
        The waits given up.
    """
    for wait in waits:
        if wait is not None and not wait.get_loop().is_closed():
            wait.cancel()


def owning_relay(wait: Any, timeout_text: Optional[Callable[[], str]] = None,
                 keep_result: bool = True) -> Any:
    """A future resolving as `wait`, a wait of the caller's own; cancelling it cancels
    `wait`, which unregisters what `wait` waits on.

    Not :func:`katcp.wire.util.transform_future`: that one leaves its source alone when
    cancelled (a shared future goes on), and passes failures on unchanged.

    Parameters
    ----------
    wait : asyncio (tornado) Future
        The caller's own wait.
    timeout_text : callable or None, optional
        If given, a timeout error of `wait` is passed on as one reading
        ``timeout_text()``.
    keep_result : bool, optional
        Whether the relay resolves to `wait`'s result (else to None).

    Returns
    -------
    relay : asyncio (tornado) Future
        On `wait`'s loop; decided on return if `wait` is done already.
    """
    relay = wait.get_loop().create_future()

    def copy(done: Any) -> None:
        if relay.done() or done.cancelled():
            copy_outcome(done, relay)
        elif done.exception() is not None:
            exc = done.exception()
            if timeout_text is not None and isinstance(exc, tornado.util.TimeoutError):
                exc = tornado.util.TimeoutError(timeout_text())
            relay.set_exception(exc)
        else:
            relay.set_result(done.result() if keep_result else None)

    if wait.done():
        copy(wait)  # decided already: so is the relay, on return (as a coroutine's was)
        return relay
    wait.add_done_callback(copy)
    relay.add_done_callback(lambda _: wait.cancel())
    return relay


async def windowed(starts: Iterable[Callable[[], Any]], window: int) -> List[Any]:
    """The results of ``start()`` (an awaitable, or a plain value) for each of `starts`,
    in their order, with at most `window` of the awaitables pending at a time: the next
    one starts as soon as one is done.

    Many requests sent at once all wait at the device, each with its request timeout
    running, so the last ones time out although the device answers them all; a window
    keeps them pipelined, each waiting only behind the few sent before it. A start that
    fails (or whose awaitable does) ends its worker, the others going on; once all are
    done one such failure is raised, the others dropped: the starts should report their
    own failures in their results.
    """
    starts = list(starts)
    results: List[Any] = [None] * len(starts)
    turns = iter(range(len(starts)))  # shared: each free worker takes the next

    async def worker() -> None:
        for index in turns:
            result = starts[index]()
            if inspect.isawaitable(result):
                result = await result
            results[index] = result

    outcomes = await asyncio.gather(*[worker() for _ in range(min(window, len(starts)))],
                                    return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return results


# The names tests import.
_until_all = until_all
_windowed = windowed


class AsyncEvent:
    """tornado Future based event class.

    Like :class:`threading.Event`, but :meth:`until_set` returns a future to yield on.

    Parameters
    ----------
    ioloop : tornado.ioloop.IOLoop or None
        Loop on which waiting futures are created when not called from a running loop.
    """

    def __init__(self, ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        self._ioloop = ioloop
        self._flag = False
        # Each wait's future, until the event is set or the wait is over (timed out,
        # cancelled): a wait given up leaves nothing behind.
        self._waiters: Dict["asyncio.Future[Any]", _Home] = {}
        # set() may come from another thread while the loop registers a waiter.
        self._lock = threading.Lock()

    def is_set(self) -> bool:
        """Return True if the event is set."""
        return self._flag

    isSet = is_set

    @property
    def ioloop(self) -> Optional[tornado.ioloop.IOLoop]:
        """The loop on which :meth:`until_set` creates its futures when called outside
        any running loop (None: the calling thread's)."""
        return self._ioloop

    @ioloop.setter
    def ioloop(self, ioloop: Optional[tornado.ioloop.IOLoop]) -> None:
        self._ioloop = ioloop

    def set(self) -> None:
        """Set the event flag to true and resolve all waiting futures (any thread)."""
        with self._lock:
            self._flag = True
            waiters, self._waiters = self._waiters, {}
        for future, home in waiters.items():
            _resolve(future, home, True)

    def clear(self) -> None:
        """Reset the event flag."""
        self._flag = False

    def until_set(self, timeout: Optional[float] = None) -> "asyncio.Future[Any]":
        """Return a future that resolves (to True) when the event is set.

        Each wait gets a future of its own, which stays registered until the event is
        set, the wait times out or the future is cancelled: cancel a wait you give up
        without a timeout.

        Parameters
        ----------
        timeout : float or None
            Seconds after which the future fails with tornado.gen.TimeoutError.
        """
        future, home = _new_future(self._ioloop)
        if not self._add_waiter(future, home):
            return future
        return with_timeout(future, timeout)

    def _hand_over(self, successor: "AsyncEvent") -> None:
        """Have what waits for this event now wait for `successor` too: the first of the
        two set resolves it (for an event nothing will set any more).

        Parameters
        ----------
        successor : :class:`AsyncEvent`
        """
        with self._lock:
            waiters = list(self._waiters.items())
        for future, home in waiters:
            successor._add_waiter(future, home)

    def _add_waiter(self, future: "asyncio.Future[Any]", home: _Home) -> bool:
        """Resolve `future` once the event is set (at once if it is): whether it waits."""
        with self._lock:
            pending = not self._flag
            if pending:
                self._waiters[future] = home
        if not pending:
            _resolve(future, home, True)
            return False
        future.add_done_callback(self._forget)
        return True

    def _forget(self, future: "asyncio.Future[Any]") -> None:
        with self._lock:
            self._waiters.pop(future, None)

    def wait_with_ioloop(self, ioloop: tornado.ioloop.IOLoop,
                         timeout: Optional[float] = None) -> bool:
        """Block (from a thread other than `ioloop`'s) until the event is set.

        Parameters
        ----------
        ioloop : tornado.ioloop.IOLoop
            The loop on which the event is set.
        timeout : float or None
            Seconds to wait, or None to wait forever.

        Returns
        -------
        flag : bool
            The event flag after waiting.

        Raises
        ------
        RuntimeError
            If called on `ioloop`'s own thread, where waiting would block the loop
            that has to set the event.
        """
        if on_loop(ioloop):
            raise RuntimeError("wait_with_ioloop() would block the loop it waits on; "
                               "yield until_set() on the loop instead.")
        timeout = thread_wait_timeout(timeout)
        if timeout is not None and timeout <= 0:
            return self._flag
        waits: List["asyncio.Future[Any]"] = []

        def wait() -> "asyncio.Future[Any]":
            waits.append(self.until_set())
            return waits[-1]

        try:
            call_on_loop(ioloop, None, wait).result(timeout)
        except concurrent.futures.TimeoutError:
            # Given up: the loop's wait is cancelled there, which unregisters it (a wait
            # that timed out on the loop instead could fail unseen, were the loop to stop
            # before passing its outcome on).
            call_on_loop(ioloop, None, lambda: waits and waits[0].cancel())
        return self._flag


class AsyncCallbackEvent(AsyncEvent):
    """AsyncEvent that also calls ``callback(flag)`` whenever it is set or cleared.

    Parameters
    ----------
    callback : callable
        Called with True on :meth:`set` and False on :meth:`clear`.

    Raises
    ------
    TypeError
        If `callback` is an ``async def`` function (its coroutines would never run).
    """

    def __init__(self, callback: Callable[[bool], Any] = lambda x: x) -> None:
        super().__init__()
        self._callback = plain_callback(callback, "callback")

    def set(self) -> None:
        """Set the event and call the callback with True."""
        super().set()
        self._callback(True)

    def clear(self) -> None:
        """Clear the event and call the callback with False."""
        super().clear()
        self._callback(False)


class AsyncState:
    """Allow async waiting for a state to attain a certain value.

    Parameters
    ----------
    valid_states : sequence
        All the states the object may be in.
    initial_state : object, optional
        Starting state; defaults to the first of `valid_states`.
    ioloop : tornado.ioloop.IOLoop or None
        Loop on which waiting futures are created.
    """

    def __init__(self, valid_states: Iterable[Any], initial_state: Any = None,
                 ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        self._valid_states = tuple(valid_states)
        if initial_state is None:
            initial_state = self._valid_states[0]
        if initial_state not in self._valid_states:
            raise ValueError("Initial state %r is not one of %r."
                             % (initial_state, self._valid_states))
        self._ioloop = ioloop
        self._events = {state: AsyncEvent(ioloop) for state in self._valid_states}
        self._state = initial_state
        self._events[initial_state].set()

    @property
    def state(self) -> Any:
        """The current state."""
        return self._state

    @property
    def valid_states(self) -> Tuple[Any, ...]:
        """Tuple of the valid states."""
        return self._valid_states

    def _event(self, state: Any) -> AsyncEvent:
        try:
            return self._events[state]
        except KeyError:
            raise ValueError("State %r is not one of %r." % (state, self._valid_states)) from None

    def set_state(self, state: Any) -> None:
        """Change the state, resolving futures waiting for it.

        Parameters
        ----------
        state : object
            One of the valid states.
        """
        event = self._event(state)
        self._events[self._state].clear()
        self._state = state
        event.set()

    def _hand_over(self, successor: "AsyncState") -> None:
        """Have what waits for a state of this one now wait for it of `successor` too
        (for a state that will change no more: the object it is of was replaced).

        Parameters
        ----------
        successor : :class:`AsyncState`
            Of the same valid states.
        """
        for state, event in self._events.items():
            event._hand_over(successor._event(state))

    def until_state(self, state: Any, timeout: Optional[float] = None) -> Any:
        """Return a tornado Future that will resolve when the requested state is set.

        Parameters
        ----------
        state : object
            One of the valid states.
        timeout : float or None
            Seconds after which the future fails with tornado.gen.TimeoutError.

        Notes
        -----
        As for :meth:`AsyncEvent.until_set`, a wait given up without a timeout stays
        registered until the state is reached: cancel it.
        """
        return with_timeout(self._event(state).until_set(), timeout)

    def until_state_in(self, *states: Any, timeout: Optional[float] = None) -> Any:
        """Return a tornado Future, resolves when any of the requested states is set.

        As :meth:`until_state`, for any of `states`.
        """
        events = [self._event(state) for state in states]
        waiter = until_first(*[event.until_set() for event in events], ioloop=self._ioloop)
        return with_timeout(waiter, timeout)


def until_later(delay: float, ioloop: Optional[tornado.ioloop.IOLoop] = None
                ) -> "asyncio.Future[None]":
    """Return a future that resolves (to None) after `delay` seconds.

    Parameters
    ----------
    delay : float
        Delay in seconds.
    ioloop : tornado.ioloop.IOLoop or None
        Loop to use; defaults to the current loop.
    """
    ioloop = ioloop or thread_ioloop()
    future, _ = _new_future(ioloop)
    ioloop.call_later(delay, set_result_if_pending, future, None)
    return future


def until_any(*futures: Any, timeout: Optional[float] = None,
              ioloop: Optional[tornado.ioloop.IOLoop] = None) -> Any:
    """Return a future that resolves when any of the passed futures resolves.

    Resolves with the result (or exception) of the first future to finish; if one
    is already done, the returned future is resolved (with the first such) already.
    The other futures are left as they are; once the returned future is decided
    (or cancelled) nothing of it stays on them.

    Parameters
    ----------
    futures : futures
        The futures to wait on.
    timeout : float or None
        Seconds after which the returned future fails with tornado.gen.TimeoutError.
    ioloop : tornado.ioloop.IOLoop or None
        Loop to use; defaults to the current loop.
    """
    any_future, _ = _new_future(ioloop)
    converted = [_followed_on(any_future.get_loop(), future) for future in futures]
    for future in converted:
        if future.done():
            # Already decided: resolved on return, not on a later loop turn.
            copy_outcome(future, any_future)
            return any_future

    handle_done = functools.partial(copy_outcome, target=any_future)
    for future in converted:
        future.add_done_callback(handle_done)
    _detach_when_done(any_future, converted, handle_done)
    if timeout:
        expire_after(any_future, timeout)
    return any_future


def until_some(*args: Any, done_at_least: Optional[int] = None,
               timeout: Optional[float] = None, **kwargs: Any) -> Any:
    """Return a future that resolves when some of the passed futures resolve.

    The futures can be passed as either a sequence of *args* or a dict of *kwargs*
    (but not both).

    Parameters
    ----------
    done_at_least : None or int
        Number of futures that need to resolve before this resolves or None to wait
        for all (default None).
    timeout : None or float
        Timeout in seconds, or None for no timeout (the default).

    Returns
    -------
    future : tornado Future
        Resolves with a list of (index, value) tuples for the futures that resolved,
        in the order they resolved, index being the position (for *args*) or the key
        (for *kwargs*). It fails with the exception of a future that failed before
        enough resolved. Once it is decided (or cancelled) nothing of it stays on the
        futures still pending.

    Raises
    ------
    tornado.gen.TimeoutError
        If the timeout expires first.
    """
    some_future, _ = _new_future()
    if args and kwargs:
        some_future.set_exception(ValueError("You must provide args or kwargs, not both"))
        return some_future
    keyed = [(key, _followed_on(some_future.get_loop(), future))
             for key, future in (kwargs.items() if kwargs else enumerate(args))]
    needed = len(keyed) if done_at_least is None else min(done_at_least, len(keyed))
    results: List[Tuple[Any, Any]] = []

    def handle_done(key: Any, done_future: "asyncio.Future[Any]") -> None:
        if some_future.done():
            return
        if done_future.cancelled() or done_future.exception() is not None:
            copy_outcome(done_future, some_future)
            return
        results.append((key, done_future.result()))
        if len(results) >= needed:
            some_future.set_result(results)

    if needed <= 0:
        some_future.set_result(results)
        return some_future
    pending = []
    for key, future in keyed:
        if future.done():
            # Already decided: counted at once, in the order given.
            handle_done(key, future)
        else:
            pending.append((key, future))
    if some_future.done():
        return some_future
    callbacks = []
    for key, future in pending:
        callback = functools.partial(handle_done, key)
        callbacks.append(callback)
        future.add_done_callback(callback)

    def detach(_: Any) -> None:
        for (_key, future), callback in zip(pending, callbacks):
            if asyncio.isfuture(future):
                future.remove_done_callback(callback)

    some_future.add_done_callback(detach)
    if timeout:
        expire_after(some_future, timeout)
    return some_future


class _TimeoutManager:
    """One deadline shared by several waits (see :func:`future_timeout_manager`)."""

    __slots__ = ("_timeout", "_ioloop", "_t0")

    def __init__(self, timeout: Optional[float], ioloop: tornado.ioloop.IOLoop) -> None:
        self._timeout = timeout
        self._ioloop = ioloop
        self._t0 = ioloop.time()

    def remaining(self) -> Optional[float]:
        """Seconds left before the deadline (None without timeout)."""
        if not self._timeout:
            return None
        return self._timeout - (self._ioloop.time() - self._t0)

    def __call__(self, future: Any) -> Any:
        if not self._timeout:
            return future
        return bounded(future, self.remaining())


def future_timeout_manager(timeout: Optional[float] = None,
                           ioloop: Optional[tornado.ioloop.IOLoop] = None) -> _TimeoutManager:
    """Create Helper function for yielding with a cumulative timeout if required.

    Keeps track of time over multiple timeout calls so that a single timeout can be
    placed over multiple operations.

    Parameters
    ----------
    timeout : float or None
        Total timeout in seconds, or None for no timeout.
    ioloop : tornado.ioloop.IOLoop or None
        Loop whose clock is used; defaults to the current loop.

    Returns
    -------
    maybe_timeout : callable
        Accepts a future and wraps it as :func:`tornado.gen.with_timeout` would, with
        the remaining time; raises tornado.gen.TimeoutError when it expires. Its
        ``remaining()`` attribute returns the remaining time (None without timeout).
    """
    return _TimeoutManager(timeout, ioloop or thread_ioloop())


class LatencyTimer:
    """Track for how long already-resolved futures are yielded.

    Yielding a resolved future does not return control to the loop, so a long run of
    them starves other callbacks; this tells the caller when to yield
    ``tornado.gen.moment``.

    Parameters
    ----------
    max_loop_latency : float
        Seconds of uninterrupted work after which it is time to yield.
    ioloop : tornado.ioloop.IOLoop or None
        Loop whose clock is used; defaults to the current loop.
    """

    def __init__(self, max_loop_latency: float,
                 ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        self.max_loop_latency = max_loop_latency
        self._ioloop = ioloop or thread_ioloop()
        self._streak_start: Optional[float] = None

    def check_future(self, fut: Any) -> bool:
        """Call with each future that is to be yielded on.

        Parameters
        ----------
        fut : Future

        Returns
        -------
        done : bool
            Whether the future is already resolved.
        """
        done = fut.done()
        if not done:
            # Yielding a pending future gives the loop its turn.
            self._streak_start = None
        elif self._streak_start is None:
            self._streak_start = self._ioloop.time()
        return done

    def time_to_yield(self) -> bool:
        """Call after check_future(). If True, it is time to yield tornado.gen.moment."""
        if self._streak_start is None:
            return False
        if self._ioloop.time() - self._streak_start >= self.max_loop_latency:
            self._streak_start = None
            return True
        return False


def log_future_exceptions(logger: logging.Logger, f: Any, ignore: Tuple[type, ...] = ()) -> None:
    """Log any exceptions set to a future.

    Parameters
    ----------
    logger : logging.Logger
        Logger to log exceptions to.
    f : Future
        Future to watch.
    ignore : tuple of exception classes
        Exceptions that are not logged.
    """
    def log_cb(done: Any) -> None:
        exc = None if done.cancelled() else done.exception()
        if exc is not None and not isinstance(exc, ignore):
            logger.error("Unhandled exception returned by future", exc_info=exc)

    f.add_done_callback(log_cb)


def run_returned(logger: logging.Logger, returned: Any, text: str, *args: Any) -> None:
    """Run what a handler or callback returned to its end on the running loop, if it is
    a coroutine or a future, logging ``text % args`` (with the exception) if it fails.
    Off any running loop it goes to the calling thread's loop; a coroutine returned where
    none could run it (:func:`~katcp.loop.policy.no_loop_to_run`) is closed unrun, and
    that logged as a failure.

    For the coroutine of an ``async def`` handler or callback, whose outcome nobody else
    awaits. An async generator fails at once (see :func:`async_generator_error`); any
    other value is left alone.

    Parameters
    ----------
    logger : logging.Logger
    returned : object
        What the handler or callback returned.
    text : str
        The log message's format, e.g. ``'notify_connected(%s) failed'``.
    args
        Its arguments.
    """
    def log_failure(done: Any) -> None:
        if not done.cancelled() and done.exception() is not None:
            logger.error(text, *args, exc_info=done.exception())

    if inspect.iscoroutine(returned) and no_loop_to_run():
        # Told where no loop could ever run it (a client stopped after its loop was
        # closed under it, in a thread without a loop or with that closed one).
        returned.close()
        logger.error(text, *args, exc_info=RuntimeError(
            "no loop could run the coroutine %s (its own is closed)" % (returned.__qualname__,)))
    elif is_awaitable(returned):
        tornado.gen.convert_yielded(returned).add_done_callback(log_failure)
    elif inspect.isasyncgen(returned):
        logger.error(text, *args, exc_info=async_generator_error(returned))


def log_coroutine_exceptions(coro: _F) -> _F:
    """Coroutine (or any method that returns a future) decorator to log exceptions.

    Parameters
    ----------
    coro : callable
        Returns a future or a coroutine object; exceptions it ends with are logged
        to the ``katcp.core`` logger.
    """
    @functools.wraps(coro)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        future = tornado.gen.convert_yielded(coro(*args, **kwargs))
        log_future_exceptions(logger, future)
        return future

    return wrapped  # type: ignore[return-value]
