"""Event-loop management: a managed tornado IOLoop thread and thread-crossing wrappers.

Every katcp client and server runs on a :class:`tornado.ioloop.IOLoop`, which in tornado 6
wraps an asyncio loop, so ``async def`` coroutines, ``tornado.gen.coroutine`` coroutines and
plain asyncio code all run on it.  A *managed* loop is started by :class:`IOLoopManager` in its
own thread; an *unmanaged* loop belongs to the user.

Other threads never touch loop objects directly: they hand work to the loop through
:mod:`katcp.loop.crossing` and wait for the outcome on a :class:`concurrent.futures.Future`.
"""

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import logging
import sys
import textwrap
import threading
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Set, Union

import tornado.gen
import tornado.ioloop
import tornado.util

from katcp.loop.call_queue import CallQueue
from katcp.loop.crossing import (NOT_RUNNING_GRACE, TIMEOUT_GRACE, call_on_loop, is_awaitable,
                                 on_loop, post_to_loop, running_loop, thread_ident,
                                 thread_wait_timeout, wait_for_call)
# Public in its own module, not part of this documented one.
from katcp.loop.futures import bounded as _bounded
from katcp.loop.policy import new_ioloop, thread_ioloop
from katcp.object_proxies import ObjectWrapper
from katcp.wire.util import transformed_future

log = logging.getLogger("katcp.ioloop_manager")


def with_relative_timeout(timeout: Optional[float], future: Any,
                          io_loop: Optional[tornado.ioloop.IOLoop] = None) -> Any:
    """Wrap a future so that it raises a timeout error after `timeout` seconds.

    Parameters
    ----------
    timeout : float or None
        Seconds to wait for `future`; None means wait forever and returns `future` unchanged.
        ``inf`` waits for ever too; NaN times out at once (as every katcp timeout).
    future : Future or awaitable
        The future (tornado or asyncio) or coroutine to wait for.
    io_loop : :class:`tornado.ioloop.IOLoop`, optional
        Unused; kept for compatibility (tornado 6 always uses the current loop).

    Returns
    -------
    future : Future
        Resolves like `future`, or raises :class:`tornado.util.TimeoutError` on timeout.

    """
    if timeout is None:
        return tornado.gen.convert_yielded(future)
    # Nothing of a timed-out wait stays on `future` (a client's flags share theirs).
    return _bounded(future, timeout)


def _interactive_shell_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The asyncio loop on which an IPython shell runs its ``await`` cells, if any.

    Terminal IPython (autoawait with its asyncio runner) runs each cell that awaits on
    a loop of its own, in the main thread, and runs no loop between cells. Nothing is
    imported here: a program that has not imported IPython has no such shell.
    """
    shell_module = sys.modules.get("IPython.core.interactiveshell")
    if shell_module is None or threading.current_thread() is not threading.main_thread():
        return None
    shell_class = shell_module.InteractiveShell
    if not shell_class.initialized():
        return None
    shell = shell_class.instance()
    if not shell.autoawait or shell.loop_runner is not shell_module._asyncio_runner:
        return None
    return sys.modules["IPython.core.async_helpers"].get_asyncio_loop()


def current_ioloop() -> tornado.ioloop.IOLoop:
    """The loop that an object started now, without a loop of its own, should run on.

    The running loop, if the caller runs on one. Otherwise, in an interactive IPython
    shell that runs ``await`` cells on an asyncio loop of its own (terminal IPython),
    that loop (made the thread's current event loop), so that ``r.start()`` in one cell
    and ``await r.until_synced()`` in a later one meet on the same loop. Otherwise the
    thread's loop, made if it has none (:func:`katcp.loop.policy.thread_ioloop`), as
    :meth:`tornado.ioloop.IOLoop.current` was in katcp 0.9.

    Returns
    -------
    ioloop : :class:`tornado.ioloop.IOLoop`

    """
    if running_loop() is None:
        shell_loop = _interactive_shell_loop()
        if shell_loop is not None:
            # Also the thread's event loop, so that IOLoop.current() and plain asyncio
            # code in later cells find the same loop.
            asyncio.set_event_loop(shell_loop)
    return thread_ioloop()


def _shielded(future: "concurrent.futures.Future[Any]") -> "concurrent.futures.Future[Any]":
    """A future of `future`'s outcome whose cancelling, from any thread, leaves `future`
    alone (as :func:`asyncio.shield` does for a coroutine)."""
    return transformed_future(lambda result: result, future)


class IOLoopManager:
    """Own an IOLoop, optionally running it in a dedicated (managed) thread.

    Parameters
    ----------
    managed_default : bool, optional
        Whether the loop is managed unless :meth:`set_ioloop` says otherwise: a managed
        loop is created by :meth:`get_ioloop` and run by :meth:`start` in a new (daemon)
        thread of its own. Otherwise the current loop of the calling thread is used and
        never started or stopped here. The default, as in katcp 0.9, gives the classic
        ``iom = IOLoopManager(); ioloop = iom.get_ioloop(); iom.start()`` recipe a loop
        that runs in the background.
    logger : :class:`logging.Logger`, optional
        Logger for errors raised by stop callbacks.

    """

    #: Seconds the tasks left on a managed loop that has stopped get to finish once
    #: cancelled, before the loop closes.
    _FINISH_TASKS_TIMEOUT = 1.0

    def __init__(self, managed_default: bool = True, logger: Optional[logging.Logger] = log) -> None:
        self._logger = log if logger is None else logger
        self._ioloop: Optional[tornado.ioloop.IOLoop] = None
        self._managed_default = managed_default
        self._ioloop_managed = managed_default
        self._ioloop_thread: Optional[threading.Thread] = None
        # The managed loop is told to stop, and will close: from the moment stop() hands
        # that to the loop, so that nothing started meanwhile runs on the closing loop.
        self._stop_requested = False
        self._stop_future: "Optional[concurrent.futures.Future[Any]]" = None  # that stop's
        self._stop_lock = threading.RLock()  # a callback run at once may stop again
        # One start() at a time: two that both found no thread would each run the loop.
        self._start_lock = threading.Lock()
        self._thread_id: Optional[int] = None  # of the thread running the loop, once known
        self._daemonic = True
        self._running = threading.Event()
        # Strong references while stop callbacks run.
        self._stop_tasks: "Set[asyncio.Future[Any]]" = set()

    def thread_id(self) -> Optional[int]:
        """The id (``threading.get_ident()``) of the thread running the loop, if known.

        A managed loop's thread records it before running the loop; an unmanaged loop
        is known to run in the calling thread when it is running there, or in the
        thread that ran :meth:`start`'s first callback. This is where the
        :func:`katcp.loop.crossing.on_thread` checks of the clients get their id.

        Returns
        -------
        thread_id : int or None

        """
        if self._thread_id is None and self._ioloop is not None and on_loop(self._ioloop):
            return threading.get_ident()
        return self._thread_id

    def loop_thread_id(self, recorded: Optional[int]) -> Optional[int]:
        """The id of the thread that runs the loop now, given the one a user of the loop
        recorded (the thread that ran its first callback there), if any.

        For a managed loop, and before anything was recorded, :meth:`thread_id`: once a
        managed loop's thread has ended, its id stands for no thread of the loop, as a
        new thread may be given it. An unmanaged loop runs in the thread recorded.

        Parameters
        ----------
        recorded : int or None
            The thread id the caller recorded for the loop, or None if it has none.

        Returns
        -------
        thread_id : int or None
            The loop's thread now, or None if no thread is known to run it.

        """
        if recorded is None or self._ioloop_managed:
            # thread_id()'s answer once the thread is recorded, without its call: a
            # blocking request asks this.
            thread_id = self._thread_id
            return self.thread_id() if thread_id is None else thread_id
        return recorded

    def managed(self) -> bool:
        """Whether the loop is (or will be) run by this manager in its own thread.

        Returns
        -------
        managed : bool

        """
        return self._ioloop_managed

    def setDaemon(self, daemonic: bool) -> None:
        """Set daemonic state of the managed ioloop thread to True / False.

        Calling this method for a non-managed ioloop has no effect. Must be called
        before :meth:`start`, or it will also have no effect.

        Parameters
        ----------
        daemonic : bool
            Whether the managed thread is a daemon thread.

        """
        self._daemonic = bool(daemonic)

    def get_ioloop(self) -> tornado.ioloop.IOLoop:
        """Return the loop, creating it on first use.

        Returns
        -------
        ioloop : :class:`tornado.ioloop.IOLoop`
            A new loop (not yet running) if managed, of the kind
            :mod:`katcp.loop.policy` selects (asyncio or uvloop), else the calling
            thread's loop (made if it has none: :func:`katcp.loop.policy.thread_ioloop`).

        """
        thread = self._ioloop_thread
        if (self._stop_requested and thread is not None and thread.is_alive()
                and thread is not threading.current_thread()):
            # The managed loop of a stop that has been asked for is closing: a restart
            # gets a loop of its own once that one is closed, never the closing one.
            thread.join()
        if self._ioloop is None:
            self._ioloop = new_ioloop() if self._ioloop_managed else thread_ioloop()
        return self._ioloop

    @contextlib.contextmanager
    def closing_a_loop_made_for_a_failed_start(self) -> Iterator[None]:
        """Close the managed loop made inside this block, should the block raise.

        For a start that fails before the loop runs (a server's port is taken): the
        loop made for it would else stay open for ever, unused (its descriptors with it:
        tornado keeps every IOLoop until it is closed). A loop made before the block
        (which someone may hold) or started in it is left alone.
        """
        made_here = self._ioloop is None and self._ioloop_managed
        thread = self._ioloop_thread
        try:
            yield
        except BaseException:
            ioloop = self._ioloop
            if made_here and ioloop is not None and self._ioloop_thread is thread:
                self._ioloop = None
                ioloop.close(all_fds=True)
            raise

    def set_ioloop(self, ioloop: Optional[tornado.ioloop.IOLoop] = None,
                   managed: Optional[bool] = None) -> None:
        """Set the loop to use, and whether this manager runs it.

        Parameters
        ----------
        ioloop : :class:`tornado.ioloop.IOLoop`, optional
            The loop; None means create a new loop (managed) or use the current loop.
        managed : bool, optional
            True to run the loop in a new thread on :meth:`start` and stop it on
            :meth:`stop`; False if the caller runs the loop. None (the default) means
            the `managed_default` given to the constructor.

        """
        if self._running.is_set():
            raise RuntimeError("Cannot set the ioloop once started")
        self._ioloop = ioloop
        self._ioloop_managed = self._managed_default if managed is None else managed

    def start(self, timeout: Optional[float] = None) -> Optional[bool]:
        """Start the managed loop thread (if managed) and note when the loop runs.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the loop to be running. Called on an unmanaged loop that
            runs, the answer is at once; do not give a timeout on the thread of an
            unmanaged loop that is not yet running: it cannot start while blocked.

        Returns
        -------
        running : bool or None
            Whether the loop is running, if a timeout was given.

        Raises
        ------
        RuntimeError
            If the loop runs, or its managed thread is started and not told to stop
            (a second start() before the loop runs would run it in a second thread);
            or if a loop to be managed is run by another thread already, or closed.

        """
        with self._start_lock:
            if self._running.is_set() or (self._ioloop_managed and self.thread_running()):
                raise RuntimeError("IOLoop already started")
            ioloop = self.get_ioloop()
            if self._ioloop_managed:
                loop = ioloop.asyncio_loop  # type: ignore[attr-defined]
                if loop.is_running():
                    # Its thread would fail to run it, then close it under its owner
                    # (closing every descriptor registered on it).
                    raise RuntimeError("Cannot manage %r: another thread runs it already "
                                       "(set_ioloop(ioloop, managed=False) to use it as "
                                       "it is)" % (ioloop,))
                if loop.is_closed():  # its thread would fail, with a traceback of its own
                    raise RuntimeError("Cannot manage %r: it is closed" % (ioloop,))
                self._stop_requested = False
                thread = threading.Thread(target=self._run_managed_ioloop, args=(ioloop,),
                                          name="katcp-ioloop", daemon=self._daemonic)
                thread.start()
                # Only a started thread is shown: join() from another thread meanwhile
                # would fail on one not yet started.
                self._ioloop_thread = thread
        if not self._ioloop_managed and on_loop(ioloop):
            # Called on the running loop: it runs, and a wait for a callback to say so
            # would stall it for the whole timeout.
            self._now_running()
        else:
            # Dropped, as nothing would run it, if the loop was closed meanwhile (its
            # start failed): wait_running() then says it does not run.
            CallQueue.of(ioloop).call(self._now_running)
        return self.wait_running(timeout) if timeout else None

    def wait_running(self, timeout: Optional[float] = None) -> bool:
        """Wait until the loop runs (after :meth:`start`).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait; None waits forever. Do not wait from the thread of an
            unmanaged loop that is not yet running: it cannot start while blocked.

        Returns
        -------
        running : bool
            Whether the loop is running.

        """
        return self._running.wait(thread_wait_timeout(timeout))

    def _now_running(self) -> None:
        self._thread_id = thread_ident()
        self._running.set()

    def _run_managed_ioloop(self, ioloop: tornado.ioloop.IOLoop) -> None:
        self._thread_id = thread_ident()
        try:
            ioloop.start()
        finally:
            self._running.clear()
            self._finish_tasks(ioloop.asyncio_loop)  # type: ignore[attr-defined]
            self._thread_id = None
            # all_fds closes sockets of clients/servers that were not shut down cleanly,
            # so nothing outlives the loop that owned it.
            ioloop.close(all_fds=True)
            CallQueue.of(ioloop).loop_closed()
            if self._ioloop is ioloop:
                self._ioloop = None

    def _finish_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the tasks still pending on a managed loop that has stopped, and let
        them finish (for up to :attr:`_FINISH_TASKS_TIMEOUT` seconds), as ``asyncio.run``
        does: closed with the loop, a pending task is destroyed unfinished (asyncio logs
        it), its cleanup never run. A stop asked of an unmanaged client on this loop just
        before the loop's own stop is such a task, say."""
        if loop.is_running() or loop.is_closed():
            return  # start() failed: the loop is someone else's business
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        try:
            loop.run_until_complete(asyncio.wait(tasks, timeout=self._FINISH_TASKS_TIMEOUT))
        except Exception:
            self._logger.exception("Error finishing the tasks of stopped ioloop %r", loop)

    def stop(self, timeout: Optional[float] = None, callback: Optional[Callable[[], Any]] = None
             ) -> "Optional[concurrent.futures.Future[Any]]":
        """Stop the loop (if managed), after running an optional callback on it.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the loop to have started before stopping it.
        callback : callable, optional
            Called on the loop before it stops; if it returns an awaitable, that
            is awaited first (exceptions are logged).

        Returns
        -------
        stopped : :class:`concurrent.futures.Future` or None
            Resolves once the callback has run and the stop was requested; that of
            the stop under way if a managed loop is already stopping (its callback
            stands for this one); None if there is no loop. Fails at once with
            RuntimeError if the loop is closed, which then no longer counts as running
            (another loop may be set and started).

        """
        if timeout:
            self._running.wait(thread_wait_timeout(timeout))
        with self._stop_lock:
            ioloop = self._ioloop
            thread = self._ioloop_thread
            managed = self._ioloop_managed
            if managed and self._stop_requested and thread is not None and thread.is_alive():
                # Already stopping: the callback of that stop stands for this one's.
                return None if self._stop_future is None else _shielded(self._stop_future)
            if ioloop is None or (managed and (thread is None or not thread.is_alive())):
                # No loop, or a managed one never started (its start failed, say) or
                # already stopped: nothing would run the callback, nothing is left to stop.
                return None
            if managed:
                # Before the callback, which runs at once when called on the loop thread.
                self._stop_requested = True
                self._stop_future = None
            stopping = call_on_loop(ioloop, self._thread_id, self._run_stop_callback, callback,
                                    ioloop, managed)
            if ioloop.asyncio_loop.is_closed():  # type: ignore[attr-defined]
                # Asked after the call: nothing runs the stop there, now or ever. The loop
                # runs no more, and another may be set and started.
                self._running.clear()
            if managed:
                self._stop_future = stopping
            # A caller may give up its wait (cancel what it got, as asyncio.wait_for does
            # to a wrapped future): the stop goes on all the same.
            return _shielded(stopping)

    def thread_running(self) -> bool:
        """Whether the managed loop's thread runs, and has not been told to stop.

        While it does, :meth:`start` is refused (the loop is started); a client whose
        coroutine ended on its own on a managed loop that still runs is started again
        on it.

        Returns
        -------
        running : bool
            False for an unmanaged loop.

        """
        thread = self._ioloop_thread
        return thread is not None and thread.is_alive() and not self._stop_requested

    def _run_stop_callback(self, callback: Optional[Callable[[], Any]],
                           ioloop: tornado.ioloop.IOLoop, managed: bool) -> "asyncio.Task[None]":
        # The callback is called at once, so that what it does without waiting is done
        # even if the task that awaits the rest is cancelled before it runs (as a test
        # case's teardown cancels what is pending on its loop).
        try:
            result = callback() if callback is not None else None
        except Exception:
            self._logger.exception("Error in ioloop stop callback")
            result = None
        # A task of its own: cancelled unstarted, a coroutine is not left unawaited.
        result = tornado.gen.convert_yielded(result) if is_awaitable(result) else None
        # A task held here rather than a bare coroutine: nothing else keeps it alive
        # while it waits.
        task = asyncio.ensure_future(self._stop_after_callback(result, ioloop, managed))
        self._stop_tasks.add(task)
        task.add_done_callback(self._stop_tasks.discard)
        return task

    async def _stop_after_callback(self, pending: Any, ioloop: tornado.ioloop.IOLoop,
                                   managed: bool) -> None:
        try:
            if pending is not None:
                await pending
        except Exception:
            self._logger.exception("Error in ioloop stop callback")
        self._running.clear()
        if managed:
            # Not stop() itself: the loop must still run the turn that delivers this
            # task's outcome to the caller of stop(), which comes next.
            ioloop.add_callback(ioloop.stop)

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait for the managed loop thread to finish; does nothing if unmanaged.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the thread.

        """
        if not self._ioloop_managed:
            return
        if self._ioloop_thread is None:
            raise RuntimeError("Cannot join if not started")
        self._ioloop_thread.join(thread_wait_timeout(timeout))


class IOLoopThreadWrapper:
    """Call functions on an IOLoop from other threads and block for their results.

    Parameters
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop`, optional
        The loop to call into; defaults to the current loop.

    """

    default_timeout = None
    #: Seconds a blocking call waits for a loop that is not running (yet) before it fails:
    #: long enough for a loop thread that was just started to get going.
    not_running_grace = NOT_RUNNING_GRACE
    #: Seconds a blocking call with a timeout waits beyond it. The function, given the same
    #: timeout (as by :meth:`decorate_callable`), starts it a moment later on the loop: its
    #: own outcome, such as a timeout error that says what it waited for, is what the
    #: caller should get.
    timeout_grace = TIMEOUT_GRACE

    def __init__(self, ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        self.ioloop = ioloop = ioloop or thread_ioloop()
        self._thread_id: Optional[int] = None
        CallQueue.of(ioloop).call(self._install)

    def _install(self) -> None:
        self._thread_id = thread_ident()

    def call_in_ioloop(self, fn: Callable[..., Any], args: Sequence[Any], kwargs: Dict[str, Any],
                       timeout: Optional[float] = None) -> Any:
        """Run ``fn(*args, **kwargs)`` on the loop and return its result.

        If `fn` returns a future or coroutine, its result is returned (or its
        exception raised). From the loop thread itself `fn` is called directly.

        Parameters
        ----------
        fn : callable
        args : tuple
        kwargs : dict
        timeout : float, optional
            Seconds `fn` has to give its outcome; defaults to :attr:`default_timeout`. The
            caller blocks up to :attr:`timeout_grace` seconds longer, for the outcome of
            an `fn` that is given the same timeout.

        Returns
        -------
        result : object
            What `fn` returned, or what its future resolved to.

        Raises
        ------
        tornado.util.TimeoutError
            If there is no outcome by then (the class of `fn`'s own timeout errors, on
            every Python version), saying so.
        RuntimeError
            If called on the loop thread and `fn` returns an unfinished future,
            which the loop could never finish while blocked; or if no thread runs
            the loop (for :attr:`not_running_grace` seconds), instead of blocking
            forever.

        """
        timeout = timeout or self.default_timeout
        # Not the thread id alone: a wrapper made on the loop thread is used there before
        # _install has run, and hopping would leave the call waiting on its own loop.
        if on_loop(self.ioloop, self._thread_id):
            return self._call_on_own_thread(fn, args, kwargs)
        self._wait_until_running(fn)
        result = call_on_loop(self.ioloop, None, fn, *args, **kwargs)
        return wait_for_call(result, self.ioloop, timeout, fn,
                             functools.partial(self._not_running_text, fn),
                             self.not_running_grace, self._thread_id, self.timeout_grace)

    def _loop_running(self) -> bool:
        return self.ioloop.asyncio_loop.is_running()  # type: ignore[attr-defined]

    def _wait_until_running(self, fn: Callable[..., Any]) -> None:
        """Give a loop that is not running yet :attr:`not_running_grace` seconds to start
        (the loop runs the call that says so once it does); else fail."""
        if self._loop_running():
            return
        started = threading.Event()
        try:
            post_to_loop(self.ioloop, started.set)
        except RuntimeError:
            # Closed: it will never run.
            raise RuntimeError(self._not_running_text(fn)) from None
        if not started.wait(thread_wait_timeout(self.not_running_grace)) \
                and not self._loop_running():
            raise RuntimeError(self._not_running_text(fn))

    def _not_running_text(self, fn: Callable[..., Any]) -> str:
        return ("Cannot call %s: no thread runs its ioloop %r (start an IOLoopManager, or run "
                "the loop, before making blocking calls)" % (getattr(fn, "__name__", fn),
                                                              self.ioloop))

    @staticmethod
    def _call_on_own_thread(fn: Callable[..., Any], args: Sequence[Any],
                            kwargs: Dict[str, Any]) -> Any:
        result = fn(*args, **kwargs)
        if not is_awaitable(result):
            return result
        if not asyncio.isfuture(result) or not result.done():
            if inspect.iscoroutine(result):
                result.close()
            raise RuntimeError("Cannot block on %r from its own ioloop thread: the loop would "
                               "deadlock; yield the future instead" % (fn,))
        return result.result()

    def decorate_callable(self, callable_: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate a callable to use :meth:`call_in_ioloop`.

        Parameters
        ----------
        callable_ : callable

        Returns
        -------
        decorated : callable
            Blocks until `callable_` has run on the loop (and its future, if any,
            resolved); a ``timeout`` keyword argument is passed on to `callable_` and
            limits the wait as :meth:`call_in_ioloop`'s `timeout`, so that the caller
            gets the outcome of `callable_`'s own timeout.

        """

        @functools.wraps(callable_)
        def decorated(*args: Any, **kwargs: Any) -> Any:
            return self.call_in_ioloop(callable_, args, kwargs, kwargs.get("timeout"))

        decorated.__doc__ = (
            "Wrapped async call. Will call in ioloop.\n\n"
            "This call will block until the original callable has finished running on the "
            "ioloop, and will pass on the return value. If the original callable returns a "
            "future, this call will wait for the future to resolve and return the value or "
            "raise the exception that the future resolves with.\n\n"
            "Original Callable Docstring\n---------------------------\n\n"
            + textwrap.dedent(callable_.__doc__ or ""))
        return decorated


#: What the thread-safe wrappers accept as the loop of their subject.
LoopLike = Union["IOLoopThreadWrapper", IOLoopManager, tornado.ioloop.IOLoop]


def ioloop_thread_wrapper(loop: LoopLike) -> IOLoopThreadWrapper:
    """An :class:`IOLoopThreadWrapper` for `loop`, however the loop is given.

    Parameters
    ----------
    loop : :class:`IOLoopThreadWrapper`, :class:`IOLoopManager` or IOLoop
        The loop (a :class:`tornado.ioloop.IOLoop`), its manager, or a wrapper of it
        (returned as it is).

    Returns
    -------
    wrapper : :class:`IOLoopThreadWrapper`

    Raises
    ------
    TypeError
        If `loop` is none of these.

    """
    if isinstance(loop, IOLoopThreadWrapper):
        return loop
    if isinstance(loop, IOLoopManager):
        return IOLoopThreadWrapper(loop.get_ioloop())
    if isinstance(loop, tornado.ioloop.IOLoop):
        return IOLoopThreadWrapper(loop)
    raise TypeError("Expected an IOLoopThreadWrapper, an IOLoopManager or a tornado IOLoop "
                    "for the loop of a thread-safe wrapper, not %r" % (loop,))


class ThreadSafeMethodAttrWrapper(ObjectWrapper):
    """Proxy an object so that its methods run on an IOLoop, blocking the caller.

    The subject is ``wrapper.__subject__``; dunder lookups (``__class__``, ``__doc__``,
    ``repr()``, ``dir()``) go to it, so the wrapper looks like the subject to users.

    Parameters
    ----------
    subject : object
        The wrapped object; its callable attributes are wrapped with
        ``ioloop_wrapper.decorate_callable``.
    ioloop_wrapper : :class:`IOLoopThreadWrapper`, :class:`IOLoopManager` or IOLoop
        The loop that owns `subject`, as :func:`ioloop_thread_wrapper` accepts it.

    Raises
    ------
    TypeError
        If `ioloop_wrapper` is not one of these.

    """

    # Must be defined on the class so that AbstractWrapper stores it on the wrapper
    # rather than on the subject.
    _ioloop_wrapper: Any = None

    def __init__(self, subject: Any, ioloop_wrapper: LoopLike) -> None:
        self._ioloop_wrapper = ioloop_thread_wrapper(ioloop_wrapper)
        super().__init__(subject)

    def __getattr__(self, attr: str) -> Any:
        val = getattr(self.__subject__, attr)
        if callable(val):
            return self._ioloop_wrapper.decorate_callable(val)
        return val

    def _getattr(self, attr: str) -> Any:
        """Read attribute `attr` of the subject on its ioloop, blocking for the value.

        Plain attributes are read in the calling thread; a subclass uses this for a
        property whose getter must run on the loop.
        """
        return self._ioloop_wrapper.call_in_ioloop(getattr, (self.__subject__, attr), {})
