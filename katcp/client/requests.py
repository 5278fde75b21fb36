"""Requests in flight, without I/O: by id, by name in the order sent, and their deadlines.

Nothing here reads or writes a socket, and time comes from a clock object (an asyncio loop
in the client, anything with ``time()`` and ``call_at()`` in a test).
"""

import asyncio
import collections
import concurrent.futures
import heapq
import itertools
import logging
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from katcp.core import Message
from katcp.loop.futures import run_returned
from katcp.loop.timer_heap import MIN_COMPACT_SIZE, compact

# What set_result() raises on a future already done, for either kind of future.
_INVALID_STATE = (asyncio.InvalidStateError, concurrent.futures.InvalidStateError)

_NEVER = float("inf")  # the deadline of no timer
# asyncio runs a timer up to one tick of its clock early (its _clock_resolution).
_CLOCK_TICK = time.get_clock_info("monotonic").resolution


class CallbackRequest:
    """A request in flight delivering its informs and reply to user callbacks.

    Parameters
    ----------
    msg : Message
        The request.
    reply_cb, inform_cb : callable or None
        Called as ``cb(msg)``, or ``cb(msg, *user_data)``; the coroutine (or future) an
        ``async def`` one returns is run, on the loop the callback is called on.
    user_data : tuple or None
    logger : :class:`logging.Logger`
        Logs what the callbacks raise.

    """

    __slots__ = ("msg", "reply_cb", "inform_cb", "user_data", "deadline", "started", "_logger")

    thread_watched = False  # see ThreadRequest

    def __init__(self, msg: Message, reply_cb: Optional[Callable[..., Any]],
                 inform_cb: Optional[Callable[..., Any]], user_data: Optional[Tuple[Any, ...]],
                 logger: logging.Logger) -> None:
        self.msg = msg
        self.reply_cb = reply_cb
        self.inform_cb = inform_cb
        self.user_data = user_data
        self.deadline: Optional[float] = None
        self.started = 0.0  # when a deadline was given, by the clock of RequestTimeouts
        self._logger = logger

    def on_inform(self, msg: Message) -> bool:
        """Deliver an inform of this request.

        Returns
        -------
        delivered : bool
            False without an inform callback: the client's own handlers take it.

        """
        # _deliver(), inline: this runs for each line of a long reply streamed to its
        # callback (the thousands of a fleet's sensor lists), where a call more shows.
        callback = self.inform_cb
        if callback is None:
            return False
        try:
            if self.user_data:
                result = callback(msg, *self.user_data)
            else:
                result = callback(msg)
        except Exception:
            self._logger.exception("Callback %s %s FAIL", "inform", msg.name)
            return True
        if result is not None:
            # An async def callback: its coroutine runs, its failure logged as above.
            run_returned(self._logger, result, "Callback %s %s FAIL", "inform", msg.name)
        return True

    def on_reply(self, msg: Message) -> bool:
        """Deliver the reply of this request (False: no reply callback, as on_inform)."""
        return self._deliver(self.reply_cb, "reply", msg)

    def abandoned(self) -> bool:
        """Whether nothing waits for the reply any more: never, for callbacks."""
        return False

    def _deliver(self, callback: Optional[Callable[..., Any]], kind: str, msg: Message) -> bool:
        if callback is None:
            return False
        try:
            result = callback(msg, *(self.user_data or ()))
        except Exception:
            self._logger.exception("Callback %s %s FAIL", kind, msg.name)
            return True
        if result is not None:
            run_returned(self._logger, result, "Callback %s %s FAIL", kind, msg.name)
        return True


class FutureRequest:
    """A request in flight whose (reply, informs) resolve a future of any kind.

    Parameters
    ----------
    msg : Message
        The request.
    future : :class:`asyncio.Future` or :class:`concurrent.futures.Future`
        Resolved with ``(reply, informs)`` on the thread that delivers the reply.

    """

    __slots__ = ("msg", "future", "informs", "deadline", "started")

    thread_watched = False  # see ThreadRequest

    def __init__(self, msg: Message, future: Any) -> None:
        self.msg = msg
        self.future = future
        self.informs: Optional[List[Message]] = None  # most requests have none
        self.deadline: Optional[float] = None
        self.started = 0.0  # when a deadline was given, by the clock of RequestTimeouts

    def on_inform(self, msg: Message) -> bool:
        """Collect an inform of this request (always delivered: True)."""
        if self.informs is None:
            self.informs = [msg]
        else:
            self.informs.append(msg)
        return True

    def on_reply(self, msg: Message) -> bool:
        """Resolve the future with the reply and the informs collected (True)."""
        future, informs = self.future, self.informs
        # An answered request may wait in the timeout heap for a while: it must not
        # keep the reply and informs (a sensor list of thousands) alive meanwhile.
        self.future = self.informs = None
        if future is not None:
            try:
                future.set_result((msg, [] if informs is None else informs))
            except _INVALID_STATE:
                pass  # cancelled by its owner meanwhile (asking done() first costs a lock)
            except RuntimeError:
                # Resolved, but its loop was closed under the client, which then failed
                # it on stop() (see ClientLifecycle._stop_on_closed_loop): what waits on
                # it there never runs again.
                pass
        return True

    def abandoned(self) -> bool:
        """Whether nothing waits for the reply any more: its future was cancelled."""
        future = self.future
        return future is not None and future.cancelled()


class ThreadRequest(FutureRequest):
    """A request made by a thread that blocks on its future until the deadline passes.

    That thread watches the deadline with its own wait, so the loop arms no timer for
    the request; only once the wait runs out does the thread ask the loop to serve
    the deadline (:meth:`RequestTable.watch`). A loop with no timer armed does less
    work per iteration.

    Parameters
    ----------
    msg : Message
        The request.
    future : :class:`concurrent.futures.Future`
        Resolved with ``(reply, informs)`` on the loop thread.

    Attributes
    ----------
    msg_id : object
        The request's id, set on the loop when it gets its deadline (unset before).

    """

    __slots__ = ("msg_id",)

    thread_watched = True


class RequestTimeouts:
    """Deadlines of requests in flight, served by a single timer.

    Cheaper than a timer per request, and than an entry per request: deadlines mostly
    come in the order the requests were sent (they share a timeout), and `waiting`
    keeps the requests in that order, so the earliest deadline in flight is that of
    the oldest request still waiting. Only a deadline earlier than one given before it
    gets an entry, in a heap. Answering a request needs no work here; a request whose
    ``deadline`` is None (none given, or timed out already) is never timed out.

    Parameters
    ----------
    clock : object
        Gives the time (``time()``) and the timer (``call_at(when, callback)``, which
        returns a handle with ``cancel()``): the client's asyncio loop.
    expire : callable
        ``expire(msg_id, start_time)`` for each request that timed out.
    waiting : dict
        Requests in flight by id, in the order sent; the owner changes it in place,
        never replaces it, and adds a request there before giving it a deadline.

    """

    def __init__(self, clock: Any, expire: Callable[[Any, float], None],
                 waiting: Dict[Any, Any]) -> None:
        self.clock = clock
        self._expire = expire
        self._waiting = waiting
        # The latest deadline given in order: a later request's deadline is in order
        # if it is no earlier.
        self._last = -_NEVER
        # (deadline, seq, msg_id, pending) of the deadlines given out of order.
        self._heap: List[Tuple[float, int, Any, Any]] = []
        self._seq = itertools.count()
        self._timer: Any = None
        self._timer_when = _NEVER
        self._compact_at = MIN_COMPACT_SIZE

    def add(self, msg_id: Any, pending: Any, timeout: float) -> None:
        """Give `pending` (known in `waiting` as `msg_id`) a deadline `timeout` from now.

        A :class:`ThreadRequest` gets its deadline but arms no timer: see :meth:`watch`.
        """
        start = pending.started = self.clock.time()
        deadline = pending.deadline = start + timeout
        if deadline >= self._last or len(self._waiting) == 1:
            self._last = deadline  # (alone in flight: in order whatever came before)
        else:
            heap = self._heap
            heapq.heappush(heap, (deadline, next(self._seq), msg_id, pending))
            if len(heap) > self._compact_at:
                self._compact_at = compact(heap, lambda entry: self._live(*entry))
        if pending.thread_watched:
            pending.msg_id = msg_id
        elif deadline < self._timer_when:
            self._arm(deadline)

    def watch(self, pending: ThreadRequest) -> None:
        """Serve the deadline of `pending` (a :class:`ThreadRequest`) by the timer after all.

        Nothing happens if it was answered meanwhile or has timed out already.
        """
        deadline = pending.deadline
        # msg_id is unset if the request never got that far (refused before it).
        if deadline is None or self._waiting.get(getattr(pending, "msg_id", None)) is not pending:
            return
        if deadline < self._timer_when:
            self._arm(deadline)

    def _live(self, deadline: float, _seq: Any, msg_id: Any, pending: Any) -> bool:
        return pending.deadline == deadline and self._waiting.get(msg_id) is pending

    @property
    def armed(self) -> bool:
        """Whether the timer is armed."""
        return self._timer is not None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.clock.call_at(when, self._fire)
        self._timer_when = when

    def _fire(self) -> None:
        self._timer = None
        self._timer_when = _NEVER
        # Not more: a deadline a little after the one that fired is not yet due.
        now = self.clock.time() + _CLOCK_TICK
        due: List[Tuple[float, Any, Any]] = []
        later = _NEVER
        # In order sent, deadlines in order: the first one not due ends the search
        # (one given out of order is earlier than all those after it).
        for msg_id, pending in self._waiting.items():
            deadline = pending.deadline
            if deadline is not None:
                if deadline > now:
                    later = deadline
                    break
                due.append((deadline, msg_id, pending))
        heap = self._heap
        if heap and heap[0][0] <= now:
            while heap and heap[0][0] <= now:
                deadline, _, msg_id, pending = heapq.heappop(heap)
                due.append((deadline, msg_id, pending))
            due.sort(key=_deadline_of)
        for deadline, msg_id, pending in due:
            # Checked again: expiring one may have answered (or disarmed) another.
            if self._live(deadline, None, msg_id, pending):
                pending.deadline = None  # served: never again, whatever the callee does
                self._expire(msg_id, pending.started)
        if heap and heap[0][0] < later:
            later = heap[0][0]
        if later < self._timer_when:
            self._arm(later)

    def deadlines(self) -> int:
        """Deadlines held: those of requests in flight and the heap's entries."""
        return (sum(1 for pending in self._waiting.values() if pending.deadline is not None)
                + len(self._heap))

    def clear(self) -> None:
        """Forget all deadlines."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_when = _NEVER
        self._last = -_NEVER
        self._heap = []
        self._compact_at = MIN_COMPACT_SIZE


# How many entries of answered requests a name's index may hold beyond twice the requests
# in flight before it is rebuilt.
_STALE_NAMES_ALLOWED = 16


def _deadline_of(entry: Tuple[float, Any, Any]) -> float:
    return entry[0]


class RequestTable:
    """The requests in flight of one client, found by id or by name.

    Ids are wire message ids (bytes), or internal text ids for requests sent without one.
    A reply with an id finds its request in :attr:`by_id` (the hot path: an answered
    request only leaves that dict; its other entries are dropped lazily); replies and
    informs without one go to the oldest request of their name sent without one: a
    server puts the id of a request in its reply and informs (KATCP 5.1 section 2.2), so
    a request sent with an id is never answered by name.

    The by-name index holds the requests sent without an id. It is made only when first
    asked while requests are in flight (:attr:`by_id` keeps them in the order sent) and
    kept up to date from then on, until a request is sent with none in flight: a client
    whose messages all carry ids pays nothing for it.

    Parameters
    ----------
    expire : callable
        ``expire(msg_id, start_time)`` when a request's deadline passes (it is still in
        the table: the callee pops it).

    """

    __slots__ = ("by_id", "_by_name", "_expire", "_timeouts", "_sweep_at")

    def __init__(self, expire: Callable[[Any, float], None]) -> None:
        self.by_id: Dict[Any, Any] = {}
        self._by_name: Optional[Dict[str, Deque[Any]]] = None
        self._expire = expire
        self._timeouts: Optional[RequestTimeouts] = None
        # Abandoned requests are dropped once more than this many are in flight.
        self._sweep_at = MIN_COMPACT_SIZE

    def use_clock(self, clock: Any) -> None:
        """Take deadlines from `clock` (the loop of a new connection)."""
        if self._timeouts is None or self._timeouts.clock is not clock:
            if self._timeouts is not None:
                self._timeouts.clear()
            self._timeouts = RequestTimeouts(clock, self._expire, self.by_id)

    def add(self, msg_id: Any, name: str, pending: Any, timeout: Optional[float]) -> None:
        """Register `pending` as request `msg_id` named `name`, with an optional timeout.

        `name` is the request's (``pending.msg.name``).
        """
        by_id = self.by_id
        by_name = self._by_name
        if by_name is not None:
            if not by_id:
                self._by_name = None  # nothing in flight: made again when next asked
            elif pending.msg.mid is None:
                stack = by_name[name]
                while stack and stack[0] not in by_id:  # answered; see peek_by_name
                    stack.popleft()
                stack.append(msg_id)
                if len(stack) > 2 * len(by_id) + _STALE_NAMES_ALLOWED:
                    # Answered requests behind one still waiting at the front (no timeout)
                    # are not dropped from the front: dropped here, a rebuild paid for by
                    # the requests added since the last. This one is not in by_id yet.
                    by_name[name] = collections.deque(
                        i for i in stack if i in by_id or i == msg_id)
        by_id[msg_id] = pending
        if len(by_id) > self._sweep_at:
            self._drop_abandoned()
        if timeout is not None:
            timeouts = self._timeouts
            if timeouts is None:
                raise RuntimeError("RequestTable.use_clock() was not called")
            timeouts.add(msg_id, pending, timeout)

    def _drop_abandoned(self) -> None:
        """Forget the requests that nothing waits for any more (their futures cancelled,
        as ``asyncio.wait_for`` does when it gives up): only a deadline would drop them
        otherwise, and one without any stayed for ever.

        Only those sent with a message id: their replies, should they come, go to the
        client's reply handlers. One sent without an id keeps its place until answered,
        as replies are matched to those in the order sent (dropped, its reply would
        answer the next request of its name). Done again once twice as many as are left
        are in flight (at least :data:`MIN_COMPACT_SIZE`), so the requests added since
        pay for each sweep.
        """
        by_id = self.by_id
        for msg_id in [msg_id for msg_id, pending in by_id.items()
                       if pending.msg.mid is not None and pending.abandoned()]:
            del by_id[msg_id]
        self._sweep_at = max(MIN_COMPACT_SIZE, 2 * len(by_id))

    def watch(self, pending: ThreadRequest) -> None:
        """Time `pending` out by the loop's timer: its thread stopped watching the deadline."""
        if self._timeouts is not None:
            self._timeouts.watch(pending)

    def peek_by_name(self, name: str) -> Tuple[Any, Any]:
        """The oldest request in flight named `name` and sent without a message id, as
        (msg_id, pending), or (None, None)."""
        by_id = self.by_id
        if not by_id:
            return None, None
        by_name = self._by_name
        if by_name is None:
            by_name = self._by_name = collections.defaultdict(collections.deque)
            for msg_id, pending in by_id.items():
                msg = pending.msg
                if msg.mid is None:
                    by_name[msg.name].append(msg_id)
        stack = by_name.get(name)
        while stack:
            msg_id = stack[0]
            pending = by_id.get(msg_id)
            # An answered request's entry is stale, also when a later request of
            # another name was given its id (a _next_id replaced to repeat ids).
            if pending is not None and pending.msg.name == name:
                return msg_id, pending
            stack.popleft()
        return None, None

    def held(self) -> Dict[str, int]:
        """What the table holds: requests, by-name entries and deadlines.

        Entries of answered requests are dropped lazily; this shows they do not pile
        up.
        """
        return {"requests": len(self.by_id),
                "names": 0 if self._by_name is None else sum(
                    len(stack) for stack in self._by_name.values()),
                "deadlines": 0 if self._timeouts is None else self._timeouts.deadlines()}

    def drain(self) -> List[Any]:
        """Remove every request (and deadline) and return the requests."""
        waiting = list(self.by_id.values())
        self.by_id.clear()  # in place: the timeouts hold on to it
        self._by_name = None
        self._sweep_at = MIN_COMPACT_SIZE
        if self._timeouts is not None:
            self._timeouts.clear()
        return waiting
