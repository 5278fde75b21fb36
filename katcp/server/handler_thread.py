"""The request-handling thread of a threaded DeviceServer."""

import asyncio
import contextvars
import functools
import logging
import queue
import sys
import threading
import types
import weakref
from typing import Any, Callable, Dict, Optional, Set

import tornado.gen
import tornado.ioloop
from tornado.concurrent import Future

from katcp.core import Message
from katcp.loop.call_queue import CallQueue
from katcp.loop.crossing import call_on_loop, thread_wait_timeout
from katcp.loop.per_loop import one_per_loop
from katcp.loop.policy import event_loop_policy
from katcp.server.stream import _Connection
from katcp.server.stream_host import end_unawaited, exception_text, log_handling_error

log = logging.getLogger("katcp.server")

_STOP = object()

_get_ident = threading.get_ident


def _runner_resume_code(handle_yield: Callable[..., Any]) -> Optional[types.CodeType]:
    """The code of the callback that tornado's gen.Runner hands to ``add_future``.

    That callback (``inner``, made in ``Runner.handle_yield``) resumes its coroutine with
    ``runner.ctx_run(runner.run)``. None if this tornado makes it otherwise: such
    resumptions are then left as they are. Tornado 6.0 resumes with ``runner.run()``,
    in no context of the coroutine's, so it has no race to divert (and no ``ctx_run``).
    """
    for const in handle_yield.__code__.co_consts:
        if (isinstance(const, types.CodeType) and const.co_name == "inner"
                and const.co_freevars == ("self",) and "ctx_run" in const.co_names):
            return const
    return None


_RUNNER_RESUME = _runner_resume_code(tornado.gen.Runner.handle_yield)


class _Resumption:
    """``ctx_run(fn)``, run on the loop once no other thread is inside that context.

    A coroutine's context can be entered by one thread at a time. The handler thread
    is still inside it (a few bytecodes from leaving) when the loop may already run
    the resumption it scheduled: that attempt is then made again on a later loop turn,
    through `calls`, which keeps it ahead of whatever the handler thread queues next.
    """

    __slots__ = ("_ctx_run", "_fn", "_calls", "_entered")

    def __init__(self, ctx_run: Callable[..., Any], fn: Callable[[], Any],
                 calls: CallQueue) -> None:
        self._ctx_run = ctx_run
        self._fn = fn
        self._calls = calls
        self._entered = False

    def __call__(self, _future: Any = None) -> None:
        self._entered = False
        try:
            self._ctx_run(self._enter)
        except RuntimeError:
            if self._entered:
                raise  # the resumption's own error, not the context's
            self._calls.call(self)

    def _enter(self) -> Any:
        self._entered = True
        return self._fn()


class CoroutineResumptions:
    """Resume coroutines started on a handler thread only once that thread left them.

    A tornado coroutine (``tornado.gen.coroutine``) called on a handler thread runs its
    first step there, in a context of its own, and asks the server's loop (the
    handler thread's current IOLoop) to resume it: ``add_callback(ctx.run, runner.run)``
    after ``yield gen.moment``, ``add_future(future, inner)`` after yielding a future.
    Handing that call over wakes the loop and lets it run at once, while the handler
    thread has not yet left the context; the loop then cannot enter it, tornado logs
    "cannot enter context" and the coroutine is never resumed (its request never
    replied to).

    While a handler thread is inside a handler call, :meth:`call` diverts exactly those
    two calls made by that thread on the loop's IOLoop: the resumption goes to the
    loop's :class:`~katcp.loop.call_queue.CallQueue` (in order with the thread's
    informs and replies) and, should the thread still be inside the context when the
    loop runs it, is tried again on a later loop turn (see :class:`_Resumption`). Any
    other call, and every call of any other thread, goes to the IOLoop unchanged.

    The diversion is the IOLoop instance's own ``add_callback`` and ``add_future``
    attributes, set while a handler thread runs on it (:meth:`attach`): the IOLoop a
    coroutine resumes on is whatever ``IOLoop.current()`` returns, which is the
    server's IOLoop on the handler thread (its futures must belong to that loop), so
    there is no per-thread object to intercept instead; tornado itself, its classes
    and the asyncio (or uvloop) loop are left alone. Set for the thread's lifetime
    rather than per handler call, it costs a handler call two set operations; other
    threads' calls of those two methods pass through a thread-id check.

    Get the one instance of an IOLoop with :meth:`of`.

    Parameters
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop`

    """

    def __init__(self, ioloop: tornado.ioloop.IOLoop) -> None:
        # Weak: kept on the IOLoop (see of()), it would else make a cycle with it.
        self._ioloop_ref = weakref.ref(ioloop)
        self._class = type(ioloop)
        self._calls = CallQueue.of(ioloop)
        self._lock = threading.Lock()
        # Ids of the threads inside a handler call: only their calls are diverted.
        self._threads: Set[int] = set()
        # Handler threads attached, and whether the diversion is on the IOLoop.
        self._attached = 0
        self._installed = False

    @classmethod
    def of(cls, ioloop: tornado.ioloop.IOLoop) -> "CoroutineResumptions":
        """Return the instance for `ioloop`, made on first use.

        Parameters
        ----------
        ioloop : :class:`tornado.ioloop.IOLoop`

        Returns
        -------
        resumptions : :class:`CoroutineResumptions`

        """
        return one_per_loop(ioloop, "_katcp_coroutine_resumptions", cls)

    def attach(self) -> None:
        """Set the diversion on the IOLoop for the calling handler thread's lifetime.

        Each :meth:`attach` is matched by one :meth:`detach`; the IOLoop has the
        diversion while any handler thread on it is attached.
        """
        with self._lock:
            self._attached += 1
            if self._attached > 1:
                return
            ioloop = self._ioloop_ref()
            attrs: Dict[str, Any] = {} if ioloop is None else vars(ioloop)
            # Not over attributes someone else set on this IOLoop.
            self._installed = (ioloop is not None and "add_callback" not in attrs
                               and "add_future" not in attrs)
            if self._installed:
                attrs["add_callback"] = self._add_callback
                attrs["add_future"] = self._add_future

    def detach(self) -> None:
        """Undo one :meth:`attach`: the last one takes the diversion off the IOLoop."""
        with self._lock:
            self._attached -= 1
            if self._attached or not self._installed:
                return
            self._installed = False
            ioloop = self._ioloop_ref()
            if ioloop is not None:
                attrs = vars(ioloop)
                # Only the diversion's own: something set over it since (a test's
                # mock.patch.object) is left for its owner to undo.
                if attrs.get("add_callback") == self._add_callback:
                    del attrs["add_callback"]
                if attrs.get("add_future") == self._add_future:
                    del attrs["add_future"]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Return ``fn(*args)``: a handler call, whose coroutines the diversion resumes.

        Called on an attached handler thread (see :meth:`attach`).

        Parameters
        ----------
        fn : callable
            The handler call.

        Returns
        -------
        result : object
            What `fn` returned (what it raised propagates).

        """
        ident = _get_ident()
        threads = self._threads
        threads.add(ident)
        try:
            return fn(*args)
        finally:
            threads.discard(ident)

    def _add_callback(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        ioloop = self._ioloop_ref()
        if ioloop is None:
            return
        if (_get_ident() in self._threads and len(args) == 1 and not kwargs
                and type(getattr(callback, "__self__", None)) is contextvars.Context):
            # callback(fn) is ctx.run(fn): a coroutine's resumption (gen.moment).
            self._calls.call(_Resumption(callback, args[0], self._calls))
            return
        self._class.add_callback(ioloop, callback, *args, **kwargs)

    def _add_future(self, future: Any, callback: Callable[[Any], Any]) -> None:
        ioloop = self._ioloop_ref()
        if ioloop is None:
            return
        code = getattr(callback, "__code__", None)
        if (code is not None and code is _RUNNER_RESUME and _get_ident() in self._threads
                and callback.__closure__ is not None):
            runner = callback.__closure__[0].cell_contents
            callback = _Resumption(runner.ctx_run, runner.run, self._calls)
        self._class.add_future(ioloop, future, callback)


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
    tb_limit : int or None, optional
        How many frames of a traceback the client is sent and the log is given when
        `handler` raises (all of them by default). A device server passes its own.

    """

    def __init__(self, handler: Callable[[Any, Message], Any],
                 log_inform_formatter: Callable[[str, str, str], Message],
                 logger: Optional[logging.Logger] = log, *,
                 tb_limit: Optional[int] = None) -> None:
        self.handler = handler
        self.log_inform_formatter = log_inform_formatter
        self._logger = log if logger is None else logger
        self.tb_limit = tb_limit
        # The queue of the thread started last: each start() after the first gets a new
        # one, so that nothing queued for an earlier thread is handled by a later one.
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._running = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._stop_queued = False  # for the thread started last
        # Guards _thread, _queue and _stop_queued, which change together (never held
        # while waiting); _start_lock lets one start() at a time in.
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        # The loop's one call queue (set when the thread runs), which also carries the
        # replies sent from this thread: a message counts as handled only after its
        # reply went out.
        self._calls: Optional[CallQueue] = None
        self.ioloop: Optional[tornado.ioloop.IOLoop] = None

    def set_ioloop(self, ioloop: tornado.ioloop.IOLoop) -> None:
        """Set the loop that hears when each message is handled.

        Parameters
        ----------
        ioloop : :class:`tornado.ioloop.IOLoop`

        """
        self.ioloop = ioloop

    def on_message(self, client_conn: Any, msg: Message) -> Future:
        """Handle message.

        Returns
        -------
        ready : Future
            A future that will resolve once we're ready, else None.

        Notes
        -----
        on_message should not be called again until ready has resolved.

        """
        ioloop: Any = self.ioloop
        # The loop's create_future(): Future() would first look the running loop up.
        ready: Future = Future() if ioloop is None else ioloop.asyncio_loop.create_future()
        self._queue.put((client_conn, msg, ready))
        return ready

    def start(self, timeout: Optional[float] = None) -> None:
        """Start the handler thread.

        Messages queued for a thread started earlier (after its :meth:`stop`) are never
        handled by this one.

        Parameters
        ----------
        timeout : float or None, optional
            Seconds to wait for the thread to be running.

        Raises
        ------
        RuntimeError
            If the thread is started and not stopped, or another thread is starting it.

        """
        if not self._start_lock.acquire(blocking=False):
            raise RuntimeError("Message handler thread already starting (in another thread)")
        try:
            with self._lock:
                thread = self._thread
                if thread is not None and thread.is_alive() and not self._stop_queued:
                    raise RuntimeError("Message handler thread already started")
            if thread is not None:
                # Told to stop and finishing its message (a restart right after stop()):
                # one handler thread at a time, so start once it has.
                thread.join()
            with self._lock:
                if thread is not None:
                    self._queue = queue.SimpleQueue()
                self._stop_queued = False
                # Started under the lock: stop() and join() never see it unstarted.
                thread = self._thread = threading.Thread(
                    target=self.run, name="katcp-request-handler", daemon=True)
                thread.start()
        finally:
            self._start_lock.release()
        if timeout:
            self._running.wait(thread_wait_timeout(timeout))

    def run(self) -> None:
        """Handle queued messages until stopped."""
        if self.ioloop is None:
            raise RuntimeError("set_ioloop() must be called before the thread runs")
        # Futures created by handlers in this thread belong to the server's loop: it is
        # the thread's event loop, checked before each message, as a handler may have
        # changed it (asyncio.run() in a blocking handler leaves none).
        loop = self.ioloop.asyncio_loop  # type: ignore[attr-defined]
        policy, local = _set_event_loop(loop)
        self._running.set()
        # This thread's own queue: a later start() makes a new one only once this
        # thread has ended.
        get = self._queue.get
        handler = self.handler
        calls = self._calls = CallQueue.of(self.ioloop)
        call = calls.call
        resumptions = CoroutineResumptions.of(self.ioloop)
        resumptions.attach()
        handle = resumptions.call
        try:
            for client_conn, msg, ready in iter(get, _STOP):
                if self._stop_queued:
                    # Told to stop: the server is closing the connections, and what was
                    # not being handled yet gets no reply (nor side effects).
                    break
                # Read from the policy's per-thread state (as thread_ioloop() does) and
                # set only if changed: setting costs 3% of a request's instructions.
                if getattr(local, "_loop", None) is not loop or event_loop_policy() is not policy:
                    policy, local = _set_event_loop(loop)
                try:
                    done = handle(handler, client_conn, msg)
                except BaseException:
                    # Not only Exception: SystemExit or asyncio.CancelledError raised by a
                    # handler would end this thread, and the server answer no request
                    # again.
                    self._report_error(client_conn, msg)
                    done = None
                if done is not None and not hasattr(done, "add_done_callback"):
                    # No future: a coroutine (an async def handle_message), say.
                    done = self._handling(client_conn, msg, done)
                if done is None:
                    call(_handled, ready, client_conn)
                else:
                    done.add_done_callback(
                        functools.partial(_when_handled, call, ready, client_conn))
                calls.release()  # what hold_until_handled() held back, with the above
        finally:
            resumptions.detach()
            self._running.clear()

    def _handling(self, client_conn: Any, msg: Message, returned: Any) -> Any:
        """The handler returned `returned` for `msg`, which is no future: return the
        future of its handling.

        It is handed to the loop, as the loop's own connection does with what the
        device returns there (:meth:`StreamHost.handling`): a coroutine or other
        awaitable runs on the loop as a task the server keeps (it cannot run here, and
        a stop ends it); anything else is logged, and the message taken as handled.
        Should the loop refuse it (it is closed: the server stopped meanwhile), it is
        ended.
        """
        stream = getattr(client_conn, "_conn_id", None)
        if type(stream) is _Connection:
            done = call_on_loop(self.ioloop, None, stream._host.handling, stream, msg,
                                returned)
        else:
            # A connection factory's own class, without katcp's connection to find
            # the server by: the awaitable runs on the loop, unkept.
            done = call_on_loop(self.ioloop, None, tornado.gen.convert_yielded, returned)
        if done.done() and done.exception() is not None:
            end_unawaited(returned)
        return done

    def hold_until_handled(self) -> None:
        """Let what this thread hands to the loop from now on go with the end of the message.

        Called by the handler, on this thread, once the handler's own work is done (its
        reply is about to be sent), or once it hands work to the loop whose reply the loop
        is to send: the reply (or that work and its reply) and the message's end then
        reach the loop in one call, waking it once, rather than the loop handling the
        reply while this thread still finishes the message. A handler that waits for
        work it handed to the loop must :meth:`CallQueue.release` it first. Does nothing
        on any other thread.
        """
        calls = self._calls
        if calls is not None and self._thread is threading.current_thread():
            calls.hold()

    def _report_error(self, client_conn: Any, msg: Message) -> None:
        reason = exception_text(sys.exc_info(), self.tb_limit)
        # Each step on its own, and none may end the thread: with it the server would
        # answer no request again (a logger that fails, a client gone meanwhile).
        try:
            log_handling_error(self._logger, msg, client_conn.address, reason)
        except Exception:
            log.exception("Error logging an error of %r (the logger given failed); it "
                          "was: %s", msg.name, reason)
        try:
            client_conn.inform(self.log_inform_formatter("error", reason, "root"))
        except Exception:
            log.exception("Error telling the client of an error handling %r", msg.name)

    def stop(self, timeout: Optional[float] = 1.0) -> None:
        """Stop the handler thread (from another thread).

        The thread ends once the message it is handling, if any, is handled: the messages
        still queued are dropped, and no thread started later handles them.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the thread to have started.

        """
        if timeout:
            self._running.wait(thread_wait_timeout(timeout))
        with self._lock:
            thread = self._thread
            # One stop per thread: it ends at the first, and a second left in the queue
            # must not end the next start's thread.
            if thread is not None and thread.is_alive() and not self._stop_queued:
                self._stop_queued = True
                self._queue.put(_STOP)

    def join(self, timeout: Optional[float] = None) -> None:
        """Rejoin the handler thread.

        Parameters
        ----------
        timeout : float or None, optional
            Time in seconds to wait for the thread to finish.

        """
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(thread_wait_timeout(timeout))

    def running(self) -> bool:
        """Whether the handler thread is running."""
        return self._running.is_set()

    def isAlive(self) -> bool:
        """Whether the handler thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def wait_running(self, timeout: Optional[float] = None) -> bool:
        """Wait up to `timeout` seconds (None: forever) for the thread; return whether it runs."""
        return self._running.wait(thread_wait_timeout(timeout))


def _set_event_loop(loop: Any) -> Any:
    """Set `loop` as the thread's event loop; return the policy and its per-thread state."""
    asyncio.set_event_loop(loop)
    policy = event_loop_policy()
    return policy, getattr(policy, "_local", None)


def _when_handled(call: Callable[..., None], ready: Future, client_conn: Any,
                  done: Any) -> None:
    """Resolve `ready` on the loop, through `call`, once the handler's future is done."""
    call(_handled, ready, client_conn, done)


def _handled(ready: Future, client_conn: Any, done: Any = None) -> None:
    """Resolve `ready`, on the loop; its connection reads on now, not a loop turn later.

    It fails as the handler's future `done` failed (if given), so that the connection
    logs the error as it does for a future the device returns on the loop.

    The connection waits for `ready` with a done callback, which the future would run on
    the loop's next turn: a turn more per request, in which the loop does nothing else.
    """
    if ready.done():
        return
    exc = None if done is None or done.cancelled() else done.exception()
    # The connection a katcp ClientConnection is for, whose _done() waits for `ready`
    # (a connection factory's own class may keep anything there).
    stream = getattr(client_conn, "_conn_id", None)
    if type(stream) is not _Connection or not ready.remove_done_callback(stream._done):
        stream = None
    if exc is None:
        ready.set_result(None)
    else:
        ready.set_exception(exc)
    if stream is not None:
        stream._done(ready)


