"""The replies a device server sends for what its request handlers return or raise."""

import asyncio
import concurrent.futures
import functools
import logging
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

from katcp.core import AsyncReply, FailReply, Message
from katcp.loop.call_queue import CallQueue
from katcp.loop.crossing import is_awaitable, run_into_future
from katcp.server.connection import ClientRequestConnection
from katcp.server.handler_thread import MessageHandlerThread
from katcp.server.loop_calls import log_call_failure, resolved_outcome
from katcp.server.stream_host import end_unawaited

if TYPE_CHECKING:
    from katcp.server.transport import KATCPServer

_REPLY = Message.REPLY


class _LoopWork(concurrent.futures.Future):
    """The outcome of work that :meth:`ReplyOutcomes._call_on_loop` handed to the
    loop from another thread, through the loop's call queue `calls`.

    On the handler thread the work is held back with the rest of the message (see
    :meth:`MessageHandlerThread.hold_until_handled`) so that the reply joins it in one
    wake-up of the loop; a thread that waits for the outcome lets it go first, as
    :meth:`CallQueue.call_with_outcome` does.
    """

    def __init__(self, calls: CallQueue) -> None:
        super().__init__()
        self._calls = calls

    def result(self, timeout: Optional[float] = None) -> Any:
        self._calls.release()
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        self._calls.release()
        return super().exception(timeout)


def reply_with_result(req: ClientRequestConnection, reply: Any, logger: logging.Logger) -> None:
    """Reply to `req` with what its handler returned, or its future resolved to.

    "A reply is necessary for every request" (spec section 2): what is not this request's
    reply is failed (katcp 0.9 failed it too, as its reply checks raised), unless the
    handler replied itself. Servers and the fake devices of :mod:`katcp.fake_clients`
    apply this one rule.

    Parameters
    ----------
    req : ClientRequestConnection
        The request to reply to.
    reply : object
        What its handler returned (or its future resolved to).
    logger : logging.Logger
        Where a handler's wrong return value is reported.

    """
    name = req.msg.name
    if req.replied:
        if reply is not None:
            logger.error("Request handler for %r replied, then returned %r too", name, reply)
        return
    if reply is None:
        logger.error("Request handler for %r gave None without replying", name)
    elif not isinstance(reply, Message):
        logger.error("Request handler for %r returned %r, not a Message", name, reply)
    elif reply.mtype != _REPLY or reply.name != name:
        logger.error("Request handler for %r returned %r, not its reply", name, reply)
    else:
        req.reply_with_message(reply)
        return
    req.reply_with_message(Message.reply(name, "fail", "Handler returned an invalid reply."))


class ReplyOutcomes:
    """How a :class:`~katcp.server.DeviceServerBase` replies to a request once its
    handler has raised, returned, or returned a future, coroutine or other awaitable
    (awaited on the loop, wherever the handler ran), and how handlers hand work to the
    loop (:meth:`_call_on_loop`).

    A mixin of DeviceServerBase rather than an object it calls: dispatch calls these as
    methods of the device (no call added per request), and each stays a method a
    subclass or a test may replace. It needs of the device its transport (``_server``),
    its handler thread (``_handler_thread``, None without one), its ``_logger`` and
    :meth:`create_exception_reply_and_log`.
    """

    _server: "KATCPServer"
    _handler_thread: Optional[MessageHandlerThread]
    _logger: logging.Logger

    if TYPE_CHECKING:
        def create_exception_reply_and_log(self, msg: Message, exc_info: Any) -> Message: ...

    def _reply_with_error(self, req: ClientRequestConnection, exc_info: Any) -> None:
        """Reply to `req` for a handler that raised (AsyncReply: it replies itself)."""
        exc = exc_info[1]
        if isinstance(exc, AsyncReply):
            return
        if isinstance(exc, FailReply):
            reply = Message.reply(req.msg.name, "fail", str(exc))
        else:
            reply = self.create_exception_reply_and_log(req.msg, exc_info)
        req.reply_with_message(reply)

    def _reply_with_result(self, req: ClientRequestConnection, reply: Any) -> None:
        """Reply to `req` with what a handler returned, or its future resolved to."""
        reply_with_result(req, reply, self._logger)

    def _handle_awaitable_reply(self, handler: Callable[..., Any],
                                req: ClientRequestConnection, reply: Any) -> Any:
        thread_future = isinstance(reply, concurrent.futures.Future)
        if not (thread_future or is_awaitable(reply)):
            self._reply_with_result(req, reply)
            return None
        concurrent_reply = getattr(handler, "_concurrent_reply", False)
        if not self._server.in_ioloop_thread():
            # Not on the loop (the handler thread, or a direct call from another thread).
            if reply.__class__ is _LoopWork:
                # Work queued for the loop: the reply is sent there, by a call queued
                # after it and after what the handler sent, rather than by a task that
                # awaits it after one more hop to the loop.
                done: concurrent.futures.Future = concurrent.futures.Future()
                if self._handler_thread is not None:
                    self._handler_thread.hold_until_handled()
                self._server.call_soon_threadsafe(self._reply_after_work, req, reply, done)
            else:
                # The future is awaited on the loop, by a coroutine made there: one made
                # here is never awaited if the loop closes before the call runs.
                done = self._await_on_loop(self._await_reply, req, reply)
            return None if concurrent_reply else done
        if (thread_future or asyncio.isfuture(reply)) and reply.done() and not reply.cancelled():
            # Already resolved (e.g. work done at once on the loop): reply now.
            self._reply_with_outcome(req, reply)
            return None
        task = self._server.spawn(self._await_reply(req, reply), owns=reply)
        return None if concurrent_reply else task

    def _reply_after_work(self, req: ClientRequestConnection, work: _LoopWork,
                          done: concurrent.futures.Future) -> None:
        """On the loop: reply to `req` with the outcome of `work` (which ran before this
        call, though what it returned may still be pending), then resolve `done`."""
        work.add_done_callback(
            lambda work: run_into_future(self._reply_with_outcome, (req, work), {}, done))
        # What fails in replying is logged, as a task awaiting the work would log it:
        # the handler thread uses `done` only to go on reading.
        done.add_done_callback(
            functools.partial(log_call_failure, self._logger, self._reply_with_outcome))

    def _reply_with_outcome(self, req: ClientRequestConnection, future: Any) -> None:
        """Reply to `req` with the outcome of its handler's resolved `future`."""
        if future.cancelled():
            # Said as _await_reply says it.
            if self._server.running():
                req.reply_with_message(Message.reply(req.msg.name, "fail",
                                                     "Request cancelled."))
            return
        try:
            result = future.result()
        except Exception:
            self._reply_with_error(req, sys.exc_info())
        else:
            self._reply_with_result(req, result)

    def _await_on_loop(self, awaiter: Callable[[Any, Any], Any], about: Any,
                       awaitable: Any) -> concurrent.futures.Future:
        """Have the loop run ``awaiter(about, awaitable)`` (see :meth:`_spawn_awaiting`),
        at once on its thread; return the future of that call.

        Should the loop refuse the call (it is closed: the server stopped meanwhile),
        `awaitable` is ended here, as the loop would end it after a stop.
        """
        done = self._server.call_on_loop(self._spawn_awaiting, awaiter, about, awaitable)
        if done.done() and done.exception() is not None:
            end_unawaited(awaitable)
        return done

    def _spawn_awaiting(self, awaiter: Callable[[Any, Any], Any], about: Any,
                        awaitable: Any) -> Any:
        """On the loop: a task running ``awaiter(about, awaitable)``, which awaits
        `awaitable` (what a handler returned, maybe on another thread) and deals with
        its outcome (e.g. replies to request `about`); none if the server has stopped
        since.

        A stop ends the handlers it finds waiting (their futures are cancelled): one
        whose future reached the loop after the stop is ended the same way.
        """
        if not self._server.running():
            end_unawaited(awaitable)
            return None
        return self._server.spawn(awaiter(about, awaitable), owns=awaitable)

    async def _await_reply(self, req: ClientRequestConnection, awaitable: Any) -> None:
        if isinstance(awaitable, concurrent.futures.Future):
            # Resolved in some other thread (e.g. by a thread pool).
            awaitable = asyncio.wrap_future(awaitable)
        try:
            reply = await awaitable
        except asyncio.CancelledError:
            if not self._server.running():
                raise  # the server's stop ends its handlers: nobody is left to reply to
            # The handler's own future was cancelled (by another request, say): every
            # request still gets a reply (spec 5.1 section 2.2).
            req.reply_with_message(Message.reply(req.msg.name, "fail", "Request cancelled."))
        except Exception:
            self._reply_with_error(req, sys.exc_info())
        else:
            self._reply_with_result(req, reply)

    def _call_on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's loop and return a future of its result.

        On the loop thread, or before the server runs, `fn` runs at once and the future
        is already resolved (a tornado Future on the loop, else a
        concurrent.futures.Future). From another thread while the server runs, `fn` hops
        to the loop and a concurrent.futures.Future is returned at once; from the handler
        thread the hop goes with the end of the message, its reply joining it (see
        :class:`_LoopWork`).
        """
        server = self._server
        if server.in_ioloop_thread():
            return resolved_outcome(fn, *args)
        if server.running():
            calls = CallQueue.of(server.ioloop)
            work = _LoopWork(calls)
            if self._handler_thread is not None:
                # The reply joins it in one wake-up of the loop (_handle_awaitable_reply).
                self._handler_thread.hold_until_handled()
            return calls.call_into(work, fn, *args)
        done: concurrent.futures.Future = concurrent.futures.Future()
        run_into_future(fn, args, {}, done)
        return done
