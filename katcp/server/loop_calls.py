"""A device server's calls from other threads to its loop, in order with its sends."""

import asyncio
import concurrent.futures
import functools
import inspect
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional

import tornado.gen
import tornado.ioloop
from tornado.concurrent import Future

from katcp.loop.call_queue import CallQueue
from katcp.loop.crossing import call_on_loop, thread_ident
from katcp.wire.util import plain_callback, refuse_coroutine


def return_future(fn: Callable[..., Any]) -> Callable[..., Future]:
    """Decorator that turns a synchronous function into one returning a future.

    This should only be applied to non-blocking functions. Will do set_result() with the
    return value, or set_exception() if an exception is raised.

    Parameters
    ----------
    fn : callable

    Returns
    -------
    decorated : callable
        Calls `fn` and returns a resolved :class:`tornado.concurrent.Future`.

    Raises
    ------
    TypeError
        If `fn` is an ``async def`` function: its future would resolve with the
        coroutine, never run. The future fails with it if `fn` returns a coroutine.

    """
    plain_callback(fn, "fn")

    @functools.wraps(fn)
    def decorated(*args: Any, **kwargs: Any) -> Future:
        return resolved_outcome(_plain_result, fn, *args, **kwargs)
    return decorated


def _plain_result(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    returned = fn(*args, **kwargs)
    refuse_coroutine(returned, "return_future's fn")
    return returned


def resolved_outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    """Call ``fn(*args, **kwargs)`` now: a :class:`tornado.concurrent.Future` resolved with
    what it returned, or failed with what it raised (:func:`return_future`, undecorated,
    for calls made once).

    Parameters
    ----------
    fn : callable
    args, kwargs
        Its arguments.

    Returns
    -------
    outcome : :class:`tornado.concurrent.Future`

    """
    future: Future = Future()
    try:
        future.set_result(fn(*args, **kwargs))
    except Exception as exc:
        future.set_exception(exc)
    return future


def log_call_failure(logger: logging.Logger, fn: Callable[..., Any], done: Any) -> None:
    """Log the exception of `done`, the future of a call of `fn` made on the loop, if any.

    Parameters
    ----------
    logger : logging.Logger
    fn : callable
        What was called (named in the log).
    done : future
        Its outcome (resolved).

    """
    if not done.cancelled() and done.exception() is not None:
        logger.error("Error calling %r", fn, exc_info=done.exception())


class LoopCalls:
    """The ways into a :class:`~katcp.server.KATCPServer`'s loop from any thread.

    A mixin of KATCPServer (its methods stay the server's, so that a subclass or a test
    replacing one is heard). The loop the server is installed on is set here, by
    :meth:`_use_loop`, in the forms its calls and sends use. It needs of the server its
    loop (``ioloop``), its logger, :meth:`in_ioloop_thread` and :meth:`get_ioloop`.
    """

    ioloop: Any
    _logger: logging.Logger

    # The loop the server is installed on (None before its first start), set by
    # _use_loop(): its thread, its call queue, and its asyncio loop.
    ioloop_thread_id: Optional[int] = None
    _call_queue: Optional[CallQueue] = None
    _asyncio_loop: Optional[asyncio.AbstractEventLoop] = None

    if TYPE_CHECKING:
        def in_ioloop_thread(self) -> bool: ...

        def get_ioloop(self) -> tornado.ioloop.IOLoop: ...

    def call_on_loop(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Run ``fn(*args)`` on the server's loop (at once on its thread).

        Returns
        -------
        done : :class:`concurrent.futures.Future`
            Resolves with what `fn` returned, or what its future or coroutine resolved
            to, or with the exception.

        """
        return call_on_loop(self.ioloop, self.ioloop_thread_id, fn, *args)

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` for the loop, in order with the other calls queued for it.

        For calls from other threads that give nothing back (sends, replies to the
        transport); they go through the loop's one :class:`~katcp.loop.call_queue.CallQueue`.
        """
        self._queue().call(fn, *args)

    def _use_loop(self, ioloop: Any) -> None:
        """Take `ioloop` as the server's loop from now on: called on its thread, as the
        server is installed on it (a restarted server may run on another loop)."""
        self.ioloop_thread_id = thread_ident()
        self._call_queue = CallQueue.of(ioloop)
        self._asyncio_loop = ioloop.asyncio_loop

    def _queue(self) -> CallQueue:
        """The call queue of the server's loop (chosen now if :meth:`start` has not yet)."""
        queue = self._call_queue
        if queue is None:
            # The loop manager keeps the loop it chose, and the loop its queue: the same
            # queue at each call until the server is installed.
            return CallQueue.of(self.get_ioloop())
        return queue

    def call_from_thread(self, fn: Callable[[], Any]) -> Any:
        """Allow thread-safe calls to ioloop functions.

        In the IOLoop thread `fn` is called at once and an already resolved
        tornado.concurrent.Future returned; from another thread `fn` is handed to the
        loop and a concurrent.futures.Future returned. Either resolves with what `fn`
        returned or with the exception it raised, which is also logged. An ``async def``
        `fn` is run: the future resolves as its coroutine does, once it does.

        From another thread `fn` runs in order with what that thread handed the loop
        before and after it (sensor readings, sends: see
        :meth:`~katcp.loop.call_queue.CallQueue.call_with_outcome`), as katcp 0.9.3's
        ``add_callback`` ran it.

        Parameters
        ----------
        fn : callable
            Called without arguments.

        Returns
        -------
        result : Future

        """
        done: Any
        if self.in_ioloop_thread():
            done = resolved_outcome(fn)
            returned = None if done.exception() else done.result()
            if inspect.iscoroutine(returned):
                # Run, as from another thread (call_with_outcome). A future stays the
                # result, as in katcp 0.9.3.
                done = tornado.gen.convert_yielded(returned)
        else:
            done = self._queue().call_with_outcome(fn)
        done.add_done_callback(functools.partial(log_call_failure, self._logger, fn))
        return done
