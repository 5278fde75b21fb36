"""The one thread crossing: call a function on an IOLoop from any thread.

A foreign thread never touches loop objects. It asks the loop, through
``call_soon_threadsafe``, to run a function there, and gets the outcome back on a
:class:`concurrent.futures.Future`: the function's return value, or what the future or
coroutine it returned resolved to. A call made on the loop's own thread runs at once.

One exception policy: whatever the function raises (any :class:`BaseException`) ends
up on the result future, so the caller sees it and nothing is lost on the loop.
"""

import asyncio
import concurrent.futures
import inspect
import numbers
import os
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

import tornado.gen
import tornado.util

from katcp.wire.util import copy_outcome

__all__ = ["thread_ident", "on_thread", "on_loop", "running_loop", "call_on_loop",
           "post_to_loop", "run_into_future", "is_awaitable", "wait_off_loop",
           "wait_for_loop", "wait_for_call", "thread_wait_timeout", "check_timeout",
           "NOT_RUNNING_GRACE", "TIMEOUT_GRACE"]

NOT_RUNNING_GRACE = 2.0
"""Seconds a thread waits for a loop's outcome before it first checks that the loop still
runs (and between checks): long enough for a loop thread that was just started to get
going."""

TIMEOUT_GRACE = 1.0
"""Seconds a thread waits beyond a call's timeout for the loop to deliver the call's own
outcome: the call, given the same timeout, starts a moment later on the loop, and its
timeout error (which says what it waited for) is what the caller should get."""

_get_ident = threading.get_ident

# Whether this process is the child of an os.fork(): only the thread that forked lives
# on in it, yet a loop that another thread of the parent ran still says it is running.
_forked = False


def _note_fork() -> None:
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_note_fork)


def check_timeout(timeout: Any) -> None:
    """Refuse a timeout that is neither None nor a real number of seconds.

    The one check of every katcp timeout a caller gives: made at the call, before
    anything is sent or handed to a loop, where a wrong one would otherwise fail later
    (on the loop, after the request went out) or never.

    Parameters
    ----------
    timeout : object

    Raises
    ------
    TypeError
        If `timeout` is neither None nor a real number.
    """
    if timeout is not None and not isinstance(timeout, numbers.Real):
        raise TypeError("timeout must be a number of seconds or None, not %r." % (timeout,))


def thread_wait_timeout(timeout: Optional[float]) -> Optional[float]:
    """`timeout` as a blocking wait of a thread takes it, by the rule of every katcp
    timeout (see :func:`katcp.loop.futures.expire_after` for the loop's).

    A thread's waits refuse more than :data:`threading.TIMEOUT_MAX` seconds (``inf``
    raises OverflowError), which means no bound here; and a NaN times out at once
    (``threading.Condition.wait_for`` would spin on it).

    Parameters
    ----------
    timeout : float or None
        Seconds to wait; None waits for ever.

    Returns
    -------
    timeout : float or None
        None (no bound) for None and for more than ``threading.TIMEOUT_MAX``; 0.0 for NaN;
        else `timeout` itself.

    Raises
    ------
    TypeError
        If `timeout` is neither None nor a real number (see :func:`check_timeout`).

    """
    if timeout.__class__ is not float and timeout.__class__ is not int:
        check_timeout(timeout)
    if timeout is None or timeout > threading.TIMEOUT_MAX:
        return None
    if timeout != timeout:
        return 0.0
    return timeout


class _ThreadIdent(int):
    """A thread's ``threading.get_ident()``, as :func:`thread_ident` made it there."""

    thread: threading.Thread


class _ThisThread(threading.local):
    """The calling thread's own _ThreadIdent, once made: another thread given the same
    ident after this one has ended starts without one."""

    # A class default, so that on_thread() reads it plainly: it asks on every request.
    ident: Optional[_ThreadIdent] = None


_this_thread = _ThisThread()


def thread_ident() -> int:
    """The calling thread's id, to record as the id of the thread that runs a loop.

    Equal to ``threading.get_ident()``, yet it stands for this thread alone: idents are
    reused, and a thread started after this one has ended may be given the same one,
    which :func:`on_thread` does not take for this thread.

    Returns
    -------
    thread_id : int

    """
    ident = _this_thread.ident
    if ident is None:
        ident = _this_thread.ident = _ThreadIdent(_get_ident())
        ident.thread = threading.current_thread()
    return ident


def on_thread(thread_id: Optional[int]) -> bool:
    """Whether the caller runs on the thread whose ``threading.get_ident()`` is `thread_id`.

    Owners of a loop record the id of the thread that runs it; this is how every
    thread-facing API asks "am I on the loop thread?". An id made by
    :func:`thread_ident` stands for the thread that made it, not for a later thread
    given the same ident once that one has ended; a bare ident stands for any thread
    it is the ident of.

    Parameters
    ----------
    thread_id : int or None
        The loop thread's id (None while no thread runs the loop).

    Returns
    -------
    on_thread : bool

    Notes
    -----
    The home of the test. Where a call of it costs measurably per message, it is
    inlined, each copy naming this function, in one of two forms:

    - the ident form, ``threading.get_ident() == thread_id``, which leaves out the
      check that the recorded thread has not ended (a sensor update, a send to all);
    - the running-loop form, ``asyncio._get_running_loop() is loop`` (as
      :func:`on_loop` asks when no thread is known), where the owner holds its asyncio
      loop: cheaper still, as it makes no int (a reply sent).

    """
    # The ident first: most calls are made elsewhere, and end there.
    return _get_ident() == thread_id and (
        _this_thread.ident is thread_id or type(thread_id) is int)


def running_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The asyncio loop running in the calling thread, or None.

    Where no loop thread id is known yet (a future made off any loop, an unmanaged loop
    before it records its thread), this is how "am I on that loop?" is asked.
    """
    # Not get_running_loop(): off the loop it raises, which costs 15 times as much.
    return asyncio._get_running_loop()


def on_loop(ioloop: Any, thread_id: Optional[int] = None) -> bool:
    """Whether the caller runs on `ioloop`'s thread.

    The recorded thread id answers once known; until then (its owner learns it in a
    callback that may not have run yet) the loop running in the calling thread does,
    so a call made on the loop is never sent to wait for that very loop.

    Parameters
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop`
        The loop in question.
    thread_id : int or None, optional
        The id of the thread known to run `ioloop`, if any.

    Returns
    -------
    on_loop : bool

    """
    return on_thread(thread_id) or running_loop() is ioloop.asyncio_loop


def wait_off_loop(flag: Any, thread_id: Optional[int], timeout: Optional[float],
                  refusal: str, *args: Any) -> bool:
    """Wait until `flag` is set, unless the caller is the loop thread that has to set it.

    Blocking from the loop thread on the loop's own work deadlocks (or, with a timeout,
    stalls the loop and then fails): such a wait raises instead. A flag that is set
    already is reported at once, from any thread.

    Parameters
    ----------
    flag : :class:`threading.Event` or alike
        Has ``is_set()`` and ``wait(timeout)``; set by work on the loop.
    thread_id : int or None
        Id of the thread running that loop (see :func:`on_thread`).
    timeout : float or None
        Seconds to wait; None (or ``inf``) waits for ever, NaN not at all
        (:func:`thread_wait_timeout`).
    refusal : str
        The error's text, %-formatted with `args` (only when raised).

    Returns
    -------
    flag : bool
        Whether `flag` is set (False: the wait timed out).

    Raises
    ------
    RuntimeError
        If called on the loop thread while `flag` is not set.

    """
    if flag.is_set():
        return True
    if on_thread(thread_id):
        raise RuntimeError(refusal % args)
    return flag.wait(thread_wait_timeout(timeout))


def is_awaitable(value: Any) -> bool:
    """Whether `value` is a future (tornado, asyncio) or another awaitable."""
    return asyncio.isfuture(value) or inspect.isawaitable(value)


def run_into_future(fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
                    result_future: "concurrent.futures.Future[Any]") -> None:
    """Call ``fn(*args, **kwargs)`` on the loop thread and deliver its outcome.

    Must run on the loop thread. If `fn` returns a future or a coroutine, its outcome
    is delivered when it resolves.

    Parameters
    ----------
    fn : callable
    args : tuple
    kwargs : dict
    result_future : :class:`concurrent.futures.Future`
        Receives the result or the exception; if it was cancelled before the call
        started, `fn` is not called.

    """
    if not result_future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
        if not is_awaitable(result):
            result_future.set_result(result)
            return
        loop_future = tornado.gen.convert_yielded(result)
    except BaseException as exc:
        result_future.set_exception(exc)
        return
    loop_future.add_done_callback(lambda done: copy_outcome(done, result_future))


def call_on_loop(ioloop: Any, thread_id: Optional[int], fn: Callable[..., Any],
                 *args: Any, **kwargs: Any) -> "concurrent.futures.Future[Any]":
    """Run ``fn(*args, **kwargs)`` on `ioloop` and return a future of its outcome.

    Parameters
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop`
        The loop to run `fn` on.
    thread_id : int or None
        Id of the thread running `ioloop`: a call from that thread runs `fn` at once
        (unless the loop is closed).
    fn : callable
        Called on the loop thread; it may return a value, a future or a coroutine.

    Returns
    -------
    result : :class:`concurrent.futures.Future`
        Resolves with what `fn` returned (or its future resolved to), or with the
        exception it raised. A call to a closed loop fails with :class:`RuntimeError`.

    """
    result: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
    loop = ioloop.asyncio_loop
    # Not at once on a closed loop, though the caller is the thread that ran it (a test
    # case's cleanup after its teardown closed the loop): what `fn` starts there would
    # never run. Handed to the loop instead, the call fails as from any other thread.
    if on_thread(thread_id) and not loop.is_closed():
        run_into_future(fn, args, kwargs, result)
        return result
    try:
        loop.call_soon_threadsafe(run_into_future, fn, args, kwargs, result)
    except RuntimeError as exc:
        # The loop is closed: nothing will ever run the call.
        result.set_running_or_notify_cancel()
        result.set_exception(exc)
    return result


def post_to_loop(ioloop: Any, fn: Callable[..., Any], *args: Any) -> None:
    """Hand ``fn(*args)`` to `ioloop`'s thread and return at once; nothing comes back.

    For calls whose outcome is delivered another way: fire-and-forget calls, or a call
    that resolves a future of its own (one crossing and no second future on a hot path).
    What `fn` raises is reported by the loop's exception handler.

    Parameters
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop`
    fn : callable

    Raises
    ------
    RuntimeError
        If the loop is closed.

    """
    ioloop.asyncio_loop.call_soon_threadsafe(fn, *args)


def _loop_runs(ioloop: Any, thread_id: Optional[int]) -> bool:
    """Whether some thread of this process runs `ioloop`, known to run in the thread whose
    id is `thread_id` (None: not known)."""
    if not ioloop.asyncio_loop.is_running():
        return False
    if not _forked or thread_id is None:
        return True
    recorded = getattr(thread_id, "thread", None)
    if recorded is not None:
        return recorded.is_alive()  # not a thread of the child given the same ident
    return any(thread.ident == thread_id for thread in threading.enumerate())


def wait_for_loop(result: "concurrent.futures.Future[Any]", ioloop: Any,
                  timeout: Optional[float], not_running: Callable[[], str],
                  grace: Optional[float] = None, thread_id: Optional[int] = None) -> Any:
    """Block until `result`, an outcome that `ioloop` delivers, is ready; fail if the
    loop stops meanwhile rather than wait for ever.

    Every :data:`NOT_RUNNING_GRACE` seconds (or `grace`) without an outcome, the waiter
    checks that some thread still runs the loop (a read, nothing of the loop is touched);
    once none does, nothing will ever deliver it. In the child of an :func:`os.fork`, a
    loop whose thread was another thread of the parent is run by none.

    Parameters
    ----------
    result : :class:`concurrent.futures.Future`
        Resolved on the loop thread (see :func:`call_on_loop`).
    ioloop : :class:`tornado.ioloop.IOLoop`
        The loop that resolves `result`.
    timeout : float or None
        Seconds to wait in all; None (or ``inf``) waits as long as the loop runs, NaN not
        at all (:func:`thread_wait_timeout`).
    not_running : callable
        Returns the text of the error raised once the loop has stopped.
    grace : float, optional
        Seconds between checks; defaults to :data:`NOT_RUNNING_GRACE`.
    thread_id : int, optional
        The id of the thread known to run the loop, if any (see :func:`on_thread`).

    Returns
    -------
    outcome : object
        ``result.result()``.

    Raises
    ------
    concurrent.futures.TimeoutError
        After `timeout` seconds (or as `result`'s own exception).
    RuntimeError
        With the text of `not_running`, once no thread runs the loop (`result` is
        cancelled, should it not have started).

    """
    try:
        return _wait_while_loop_runs(result.result, result.done, ioloop, timeout, grace,
                                     thread_id)
    except _NotRunning:
        result.cancel()
        raise RuntimeError(not_running()) from None


class _NotRunning(Exception):
    """No thread runs the loop that was waited for."""


def _wait_while_loop_runs(wait: Callable[[Optional[float]], Any], done: Callable[[], bool],
                          ioloop: Any, timeout: Optional[float], grace: Optional[float],
                          thread_id: Optional[int]) -> Any:
    """Wait for something `ioloop` does, as long as some thread runs it: the rule of the
    waits of :func:`wait_for_loop`.

    Parameters
    ----------
    wait : callable
        ``wait(seconds)`` returns what was waited for once it came, or raises
        TimeoutError if it did not come within `seconds` (``Future.result``).
    done : callable
        ``done()`` says whether it came: a TimeoutError `wait` raised then is what came.
    ioloop, timeout, grace, thread_id
        As for :func:`wait_for_loop`.

    Returns
    -------
    outcome : object
        What `wait` returned.

    Raises
    ------
    concurrent.futures.TimeoutError
        Once `timeout` has run out; or what came, if it is one.
    _NotRunning
        Once no thread runs the loop (checked every `grace` seconds,
        :data:`NOT_RUNNING_GRACE` by default).

    """
    if grace is None:
        grace = NOT_RUNNING_GRACE
    timeout = thread_wait_timeout(timeout)
    # The usual case waits once, as a bare wait would: the rest is for a long wait.
    first = grace if timeout is None or timeout > grace else timeout
    try:
        return wait(first)
    except concurrent.futures.TimeoutError:
        # Also the class of a timeout error that came (Python 3.11+).
        if done() or first == timeout:
            raise
    deadline = None if timeout is None else time.monotonic() + timeout - first
    while True:
        if not _loop_runs(ioloop, thread_id):
            try:
                # What the loop did before it stopped may have come since the last wait.
                return wait(0)
            except concurrent.futures.TimeoutError:
                if done():
                    raise
            raise _NotRunning
        seconds = grace
        if deadline is not None:
            seconds = min(seconds, max(deadline - time.monotonic(), 0.0))
        try:
            return wait(seconds)
        except concurrent.futures.TimeoutError:
            if done() or (deadline is not None and time.monotonic() >= deadline):
                raise


def wait_for_call(result: "concurrent.futures.Future[Any]", ioloop: Any,
                  timeout: Optional[float], fn: Any, not_running: Callable[[], str],
                  grace: Optional[float] = None, thread_id: Optional[int] = None,
                  timeout_grace: Optional[float] = None) -> Any:
    """Block for the outcome of a call `fn` that was given `timeout` itself, as
    :func:`wait_for_loop` does, but up to `timeout_grace` seconds longer.

    The call starts its own timeout a moment after the caller starts waiting, and its
    outcome then (a fail reply, or a timeout error that says what it waited for) is what
    the caller should get, not a wait that ran out first.

    Parameters
    ----------
    result : :class:`concurrent.futures.Future`
        The call's outcome, resolved on the loop thread (see :func:`call_on_loop`).
    ioloop : :class:`tornado.ioloop.IOLoop`
        The loop that resolves `result`.
    timeout : float or None
        The call's own timeout, by the rule of :func:`thread_wait_timeout` (None or
        ``inf``: the wait is bounded only by the loop running; NaN or less than 0: as 0).
    fn : object
        The call, named in the error.
    not_running, grace, thread_id
        As for :func:`wait_for_loop`.
    timeout_grace : float, optional
        Seconds waited beyond `timeout`; :data:`TIMEOUT_GRACE` (as it is at the call) by
        default.

    Returns
    -------
    outcome : object
        ``result.result()``.

    Raises
    ------
    tornado.util.TimeoutError
        If there is no outcome by then (the class of the call's own timeout errors, on
        every Python version), saying so.
    RuntimeError
        As :func:`wait_for_loop`, once no thread runs the loop.

    """
    if timeout_grace is None:
        timeout_grace = TIMEOUT_GRACE
    wait = thread_wait_timeout(timeout)
    if wait is not None:
        # A call given a negative timeout times out at once, as one given 0.
        wait = max(wait, 0.0) + timeout_grace
    try:
        return wait_for_loop(result, ioloop, wait, not_running, grace, thread_id)
    except concurrent.futures.TimeoutError:
        # Also the class of a timeout that `fn` itself raised (Python 3.11+).
        if result.done():
            raise
        raise tornado.util.TimeoutError(
            "No outcome of %s from its ioloop within %s s (and %s s of grace)"
            % (getattr(fn, "__name__", fn), timeout, timeout_grace)) from None
