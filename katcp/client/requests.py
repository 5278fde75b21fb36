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
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from katcp.core import Message

# What set_result() raises on a future already done, for either kind of future.
_INVALID_STATE = (asyncio.InvalidStateError, concurrent.futures.InvalidStateError)

_NEVER = float("inf")  # the deadline of no timer


class CallbackRequest:
    """A request in flight delivering its informs and reply to user callbacks.

    Parameters
    ----------
    msg : Message
        The request.
    reply_cb, inform_cb : callable or None
        Called as ``cb(msg)``, or ``cb(msg, *user_data)``.
    user_data : tuple or None
    logger : :class:`logging.Logger`
        Logs what the callbacks raise.

    """

    __slots__ = ("msg", "reply_cb", "inform_cb", "user_data", "deadline", "_logger")

    thread_watched = False  # see ThreadRequest

    def __init__(self, msg: Message, reply_cb: Optional[Callable[..., Any]],
                 inform_cb: Optional[Callable[..., Any]], user_data: Optional[Tuple[Any, ...]],
                 logger: logging.Logger) -> None:
        self.msg = msg
        self.reply_cb = reply_cb
        self.inform_cb = inform_cb
        self.user_data = user_data
        self.deadline: Optional[float] = None
        self._logger = logger

    def on_inform(self, msg: Message) -> bool:
        """Deliver an inform of this request.

        Returns
        -------
        delivered : bool
            False without an inform callback: the client's own handlers take it.

        """
        return self._deliver(self.inform_cb, "inform", msg)

    def on_reply(self, msg: Message) -> bool:
        """Deliver the reply of this request (False: no reply callback, as on_inform)."""
        return self._deliver(self.reply_cb, "reply", msg)

    def _deliver(self, callback, kind, msg):
        if callback is None:
            return False
        try:
            callback(msg, *(self.user_data or ()))
        except Exception:
            self._logger.exception("Callback %s %s FAIL", kind, msg.name)
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

    __slots__ = ("msg", "future", "informs", "deadline")

    thread_watched = False  # see ThreadRequest

    def __init__(self, msg: Message, future: Any) -> None:
        self.msg = msg
        self.future = future
        self.informs: Optional[List[Message]] = None  # most requests have none
        self.deadline: Optional[float] = None

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
        return True


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
    msg_id, started : object, float
        The request's id and when it was sent, by the loop's clock (set on the loop).

    """

    __slots__ = ("msg_id", "started")

    thread_watched = True

    def __init__(self, msg: Message, future: Any) -> None:
        super().__init__(msg, future)
        self.msg_id: Any = None
        self.started = 0.0


class RequestTimeouts:
    """Deadlines of requests in flight, served by a single timer.

    Cheaper than a timer per request: a request that is answered is simply left here
    and skipped when its deadline comes up (or dropped sooner). An entry counts only
    while its request is still in `waiting` and its ``pending.deadline`` still equals
    the entry's deadline, so answering a request needs no work here.

    Deadlines mostly come in order (requests share a timeout): those go to the end of
    a queue, in order with no sorting; only one earlier than the queue's last goes to
    a heap.

    Parameters
    ----------
    clock : object
        Gives the time (``time()``) and the timer (``call_at(when, callback)``, which
        returns a handle with ``cancel()``): the client's asyncio loop.
    expire : callable
        ``expire(msg_id, start_time)`` for each request that timed out.
    waiting : dict
        Requests in flight by id; the owner changes it in place, never replaces it.

    """

    MIN_COMPACT_SIZE = 1024

    def __init__(self, clock: Any, expire: Callable[[Any, float], None],
                 waiting: Dict[Any, Any]) -> None:
        self.clock = clock
        self._expire = expire
        self._waiting = waiting
        # (deadline, msg_id, pending, start), in deadline order.
        self._queue: Deque[Tuple[float, Any, Any, float]] = collections.deque()
        # (deadline, seq, msg_id, pending, start): deadlines earlier than the queue's last.
        self._heap: List[Tuple[float, int, Any, Any, float]] = []
        self._seq = itertools.count()
        self._timer: Any = None
        self._timer_when = _NEVER
        self._compact_at = self.MIN_COMPACT_SIZE

    def add(self, msg_id: Any, pending: Any, timeout: float) -> None:
        """Give `pending` (known in `waiting` as `msg_id`) a deadline `timeout` from now."""
        start = self.clock.time()
        deadline = pending.deadline = start + timeout
        if pending.thread_watched:
            pending.msg_id = msg_id
            pending.started = start
            return
        queue = self._queue
        waiting = self._waiting
        # Requests mostly finish in the order sent, so the earliest deadline usually
        # belongs to one already answered: dropping it now lets it die young, which
        # is cheaper for the garbage collector than waiting for a compaction. (The
        # test of _live, inline: this runs for every request.)
        while queue:
            first = queue[0]
            if first[2].deadline == first[0] and waiting.get(first[1]) is first[2]:
                break
            queue.popleft()
        if not queue or queue[-1][0] <= deadline:
            queue.append((deadline, msg_id, pending, start))
            if len(queue) > self._compact_at:
                self._compact()
        else:
            heapq.heappush(self._heap, (deadline, next(self._seq), msg_id, pending, start))
            if len(self._heap) > self._compact_at:
                self._compact()
        if deadline < self._timer_when:
            self._arm(deadline)

    def watch(self, pending: ThreadRequest) -> None:
        """Serve the deadline of `pending` (a :class:`ThreadRequest`) by the timer after all.

        Nothing happens if it was answered meanwhile or its deadline was disarmed.
        """
        deadline, msg_id = pending.deadline, pending.msg_id
        if deadline is None or self._waiting.get(msg_id) is not pending:
            return
        heapq.heappush(self._heap, (deadline, next(self._seq), msg_id, pending, pending.started))
        if deadline < self._timer_when:
            self._arm(deadline)

    def _live(self, deadline, msg_id, pending):
        return pending.deadline == deadline and self._waiting.get(msg_id) is pending

    def _compact(self):
        live = self._live
        self._queue = collections.deque(entry for entry in self._queue if live(*entry[:3]))
        heap = self._heap = [entry for entry in self._heap if live(entry[0], *entry[2:4])]
        heapq.heapify(heap)
        self._compact_at = max(self.MIN_COMPACT_SIZE, 2 * max(len(self._queue), len(heap)))

    def _arm(self, when):
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.clock.call_at(when, self._fire)
        self._timer_when = when

    def _fire(self):
        self._timer = None
        self._timer_when = _NEVER
        queue, heap = self._queue, self._heap
        # asyncio may run a timer up to one clock tick early.
        now = self.clock.time() + 0.001
        while queue and queue[0][0] <= now:
            deadline, msg_id, pending, start = queue.popleft()
            if self._live(deadline, msg_id, pending):
                self._expire(msg_id, start)
        while heap and heap[0][0] <= now:
            deadline, _, msg_id, pending, start = heapq.heappop(heap)
            if self._live(deadline, msg_id, pending):
                self._expire(msg_id, start)
        if queue or heap:
            self._arm(min(queue[0][0] if queue else _NEVER, heap[0][0] if heap else _NEVER))

    def __len__(self) -> int:
        """Deadlines held, answered requests' included until dropped."""
        return len(self._queue) + len(self._heap)

    def clear(self) -> None:
        """Forget all deadlines."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_when = _NEVER
        self._queue = collections.deque()
        self._heap = []
        self._compact_at = self.MIN_COMPACT_SIZE


class RequestTable:
    """The requests in flight of one client, found by id or by name.

    Ids are wire message ids (bytes), or internal ints for requests sent without one.
    A reply with an id finds its request in :attr:`by_id` (the hot path: an answered
    request only leaves that dict; its other entries are dropped lazily); replies and
    informs without one go to the oldest request of their name.

    The by-name index is made only when first asked while requests are in flight
    (:attr:`by_id` keeps them in the order sent) and kept up to date from then on,
    until a request is sent with none in flight: a client whose messages all carry
    ids pays nothing for it.

    Parameters
    ----------
    expire : callable
        ``expire(msg_id, start_time)`` when a request's deadline passes (it is still in
        the table: the callee pops it).

    """

    __slots__ = ("by_id", "_by_name", "_expire", "_timeouts")

    def __init__(self, expire: Callable[[Any, float], None]) -> None:
        self.by_id: Dict[Any, Any] = {}
        self._by_name: Optional[Dict[str, Deque[Any]]] = None
        self._expire = expire
        self._timeouts: Optional[RequestTimeouts] = None

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
            if by_id:
                stack = by_name[name]
                while stack and stack[0] not in by_id:  # answered; see peek_by_name
                    stack.popleft()
                stack.append(msg_id)
            else:
                self._by_name = None  # nothing in flight: made again when next asked
        by_id[msg_id] = pending
        if timeout is not None:
            timeouts = self._timeouts
            if timeouts is None:
                raise RuntimeError("RequestTable.use_clock() was not called")
            timeouts.add(msg_id, pending, timeout)

    def watch(self, pending: ThreadRequest) -> None:
        """Time `pending` out by the loop's timer: its thread stopped watching the deadline."""
        if self._timeouts is not None:
            self._timeouts.watch(pending)

    def peek_by_name(self, name: str) -> Tuple[Any, Any]:
        """The oldest request in flight named `name`, as (msg_id, pending), or (None, None)."""
        by_id = self.by_id
        if not by_id:
            return None, None
        by_name = self._by_name
        if by_name is None:
            by_name = self._by_name = collections.defaultdict(collections.deque)
            for msg_id, pending in by_id.items():
                by_name[pending.msg.name].append(msg_id)
        stack = by_name.get(name)
        while stack:
            msg_id = stack[0]
            pending = by_id.get(msg_id)
            if pending is not None:
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
                "deadlines": 0 if self._timeouts is None else len(self._timeouts)}

    def drain(self) -> List[Any]:
        """Remove every request (and deadline) and return the requests."""
        waiting = list(self.by_id.values())
        self.by_id.clear()  # in place: the timeouts hold on to it
        self._by_name = None
        if self._timeouts is not None:
            self._timeouts.clear()
        return waiting
