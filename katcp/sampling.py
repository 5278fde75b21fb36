"""Strategies for sampling sensor values.

A strategy watches one sensor for one client and calls ``inform_callback(sensor, reading)``
whenever the client should be told the sensor's value. Strategies run on the tornado ioloop;
``Sensor.set()`` may be called from any thread, and the strategies hand such updates to their
loop in batches (:meth:`~katcp.loop.call_queue.CallQueue.call_batched`): one hop to the loop
carries the readings of every sensor set since the last one, each handled in order, so none
is lost. A reading set after anything else was queued for the loop (an inform, a reply) is
handled after it, so what one thread does reaches the client in the order it did it.

Periods are measured and timers set on the asyncio loop's monotonic clock
(``ioloop.asyncio_loop.time()``, which tornado's ``IOLoop.time()`` is not: that is the wall
clock), so a step of the wall clock (an NTP step, a VM resumed) neither stops sampling nor
sends a burst; readings keep the wall-clock timestamps they were set with. A virtual clock
that replaces the asyncio loop's ``time`` (:class:`katcp.testutils.TimewarpAsyncTestCase`)
drives the strategies.
"""

import asyncio
import collections
import functools
import heapq
import itertools
import logging
import math
import operator
import threading
import weakref
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Type

import tornado.ioloop

from katcp.core import Message, Reading, Sensor
from katcp.loop.call_queue import CallQueue
from katcp.loop.crossing import on_thread
from katcp.loop.per_loop import one_per_loop
from katcp.loop.policy import thread_ioloop
from katcp.loop.timer_heap import MIN_COMPACT_SIZE, compact
from katcp.wire.text import as_bytes, readable
from katcp.wire.util import own_methods, plain_callback, uses_own

InformCallback = Callable[[Sensor, Reading], None]

log = logging.getLogger("katcp.sampling")

_get_ident = threading.get_ident

# Timestamps beyond this are nonsense for a sensor (seconds). Kept as 0.9 API: nothing
# here uses it.
AGE_OF_UNIVERSE = 4.32329886e+17


# Sensor's own status_line(), which _EventFanOut's lines bypass (see wire_strategy()).
_OWN_STATUS_LINE = own_methods(Sensor, "status_line")


def sensor_status_inform(sensor: Sensor, reading: Reading, major: int) -> Message:
    """Format the ``#sensor-status`` inform of `reading` for KATCP version `major`.

    Parameters
    ----------
    sensor : Sensor
    reading : Reading
        The reading to report.
    major : int
        KATCP major version: timestamps are in seconds from v5, in milliseconds before.

    Returns
    -------
    msg : Message
    """
    ts, status_name, formatted = sensor.format_reading(reading, major)
    return Message(Message.INFORM, "sensor-status",
                   (ts, b"1", sensor.name.encode("utf-8"), status_name, formatted))


def sensor_status_line(sensor: Sensor, reading: Reading, major: int) -> bytes:
    """The ``#sensor-status`` inform of `reading` as wire bytes, newline included.

    The same bytes as ``bytes(sensor_status_inform(...)) + b"\\n"``, from the sensor's
    line of the reading (:meth:`Sensor.status_line`), which is formatted once per reading.

    Parameters
    ----------
    sensor : Sensor
    reading : Reading
        A reading of `sensor`.
    major : int
        KATCP major version: timestamps are in seconds from v5, in milliseconds before.

    Returns
    -------
    line : bytes
    """
    return b"#sensor-status " + sensor.status_line(reading, major) + b"\n"


def format_inform_v5(sensor: Sensor, timestamp: float, status: int, value: Any) -> Message:
    """Format a KATCP v5 ``#sensor-status`` inform (timestamps in seconds)."""
    return sensor_status_inform(sensor, Reading(timestamp, status, value), 5)


def format_inform_v4(sensor: Sensor, timestamp: float, status: int, value: Any) -> Message:
    """Format a KATCP v4 ``#sensor-status`` inform (timestamps in milliseconds)."""
    return sensor_status_inform(sensor, Reading(timestamp, status, value), 4)


def _as_reading(reading: Any) -> Reading:
    """`reading` as a :class:`Reading`: a sensor's ``read()`` (or a subclass's ``notify()``)
    may give a plain (timestamp, status, value) tuple, which strategies compare by field."""
    return reading if isinstance(reading, Reading) else Reading._make(reading)


def update_in_ioloop(update: Callable[[Any, Sensor, Reading], None]
                     ) -> Callable[[Any, Sensor, Reading], None]:
    """Decorator that ensures an update() method is run in the tornado ioloop.

    Does this by checking the thread identity. Requires that the object to which the method
    is bound has the attributes ``_ioloop_thread_id`` (the result of thread.get_ident() in the
    ioloop thread) and ``ioloop`` (the ioloop instance in use). Also assumes the signature
    ``update(self, sensor, reading)`` for the method.

    Parameters
    ----------
    update : callable
        The method, ``update(self, sensor, reading)``.

    Returns
    -------
    wrapped_update : callable
        Calls `update` at once on the loop thread; from any other thread, queues the
        call for the loop (in order with what that thread queued before).
    """
    @functools.wraps(update)
    def wrapped_update(self: Any, sensor: Sensor, reading: Reading) -> None:
        if on_thread(self._ioloop_thread_id):
            update(self, sensor, reading)
        else:
            CallQueue.of(self.ioloop).call(update, self, sensor, reading)

    return wrapped_update


def _observe_tokens(tokens: List[List[Any]]) -> None:
    """Run on the loop by the call queue: each token's strategy observes its readings."""
    for token in tokens:
        # Each pop() is one step, so no lock is needed: once the count is taken, no
        # reading can join the token any more (see SampleStrategy.update). Emptied, it
        # does not keep its strategy alive.
        upto = token.pop()
        token.pop()._observe_upto(upto)


def _parse_period(param: Any, what: str) -> float:
    try:
        # A float is taken as it is: the text of a KATCP v4 server's parameter is the
        # client's milliseconds (see katcp.server.sampling_requests), quoted in errors.
        value = float(param) if isinstance(param, float) else float(readable(param))
    except ValueError:
        raise ValueError("Invalid %s %r: not a number." % (what, readable(param)))
    if not value >= 0 or value == float("inf"):
        raise ValueError("Invalid %s %r: must be a finite number >= 0." % (what, readable(param)))
    return value


class SampleStrategy:
    """Base class for strategies for sampling sensors.

    Parameters
    ----------
    inform_callback : callable, signature inform_callback(sensor_obj, reading)
        Callback to receive inform messages.
    sensor : Sensor object
        Sensor to sample.
    params : list of objects
        Custom sampling parameters.
    ioloop : tornado.ioloop.IOLoop, optional
        The loop the strategy runs on (default: ``IOLoop.current()``), a keyword argument.

    Raises
    ------
    TypeError
        If `inform_callback` is an ``async def`` function (its coroutines would never
        run).
    """

    NONE, AUTO, PERIOD, EVENT, DIFFERENTIAL, EVENT_RATE, DIFFERENTIAL_RATE = range(7)

    # The KATCP name of each strategy constant, in the order of the constants.
    SAMPLING_LOOKUP = dict(enumerate(["none", "auto", "period", "event", "differential",
                                      "event-rate", "differential-rate"]))
    # Kept as 0.9 API: nothing here uses it.
    SAMPLING_LOOKUP_REV = {name: constant for constant, name in SAMPLING_LOOKUP.items()}

    #: True if a strategy must be attached to its sensor as an observer
    OBSERVE_UPDATES = False

    #: Number of parameters the strategy takes; None (a subclass that does not say) takes
    #: any number, which it may check itself, as the 0.9.3 base class took them.
    NUM_PARAMS: Optional[int] = None

    # The strategy's constant, which get_sampling() returns: each strategy sets it.
    _SAMPLING: Optional[int] = None

    # Whether the last timed sample failed (see _log_sample_error).
    _sample_failing = False

    # Set from any thread when the sensor's values are no longer to be sent (its server
    # removed it, and the loop cancels the strategy soon): a timed sample, which reads
    # the sensor's value when it runs, then sends nothing. Readings handed to the
    # strategy before are still sent.
    _withdrawn = False

    # Readings set by other threads and not yet observed, oldest first (None while there
    # are none: a strategy keeps no deque between bursts).
    _pending: Optional[Deque[Reading]] = None
    # How many readings were ever put in _pending, and how many of them were observed.
    _queued = 0
    _observed = 0
    # The last token queued, [strategy, n]: observe the readings up to the n-th queued
    # (emptied once taken to run). While the call queue's count is still the mark it was
    # queued at, nothing was queued after it, so it may take the next reading too.
    _token: Optional[List[Any]] = None
    _token_mark: Optional[int] = None

    def __init__(self, inform_callback: InformCallback, sensor: Sensor, *params: Any,
                 ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        if self.NUM_PARAMS is not None and len(params) != self.NUM_PARAMS:
            raise _parameter_count_error(self.SAMPLING_LOOKUP[self.get_sampling()],
                                         self.NUM_PARAMS, len(params))
        self._inform_callback = plain_callback(inform_callback, "inform_callback")
        self._sensor = sensor
        self._params = [as_bytes(p) for p in params]
        self.ioloop = ioloop or thread_ioloop()
        # The clock and timers of every period (see the module's docstring).
        self._clock_loop = self.ioloop.asyncio_loop  # type: ignore[attr-defined]
        self._ioloop_thread_id: Optional[int] = None
        self._call_queue = CallQueue.of(self.ioloop)
        self._pending_lock = threading.Lock()
        # Also the class's default, but read for every update, and an attribute of the
        # instance is found faster (CPython 3.11 specialises no read of a class default).
        self._pending = None
        self._cancelled = False
        self._setup(*params)

    def _setup(self, *params: Any) -> None:
        """Check and keep the strategy's own parameters (``NUM_PARAMS`` of them, if set)."""

    @classmethod
    def get_strategy(cls, strategyName: Any, inform_callback: InformCallback, sensor: Sensor,
                     *params: Any, ioloop: Optional[tornado.ioloop.IOLoop] = None
                     ) -> "SampleStrategy":
        """Factory method to create a strategy object.

        Parameters
        ----------
        strategyName : str or bytes
            Name of strategy.
        inform_callback : callable, signature inform_callback(sensor, reading)
            Callback to receive inform messages.
        sensor : Sensor object
            Sensor to sample.
        params : list of objects
            Custom sampling parameters for specified strategy.
        ioloop : tornado.ioloop.IOLoop instance, optional
            Tornado ioloop to use, otherwise tornado.ioloop.IOLoop.current() (keyword only).

        Returns
        -------
        strategy : :class:`SampleStrategy` object
            The created sampling strategy.

        Raises
        ------
        ValueError
            For an unknown strategy or parameters it cannot use.
        """
        return _strategy_class(strategyName)(inform_callback, sensor, *params, ioloop=ioloop)

    def get_sampling(self) -> int:
        """The Strategy constant for this sampling strategy.

        Sub-classes set ``_SAMPLING`` to their constant (or override this method).

        Returns
        -------
        strategy : Strategy constant
            The strategy type constant for this strategy.
        """
        if self._SAMPLING is None:
            raise NotImplementedError("%s sets no _SAMPLING" % (type(self).__name__,))
        return self._SAMPLING

    def get_sampling_formatted(self) -> Tuple[bytes, List[bytes]]:
        """The current sampling strategy and parameters.

        The strategy is returned as a byte string and the values in the parameter list are
        formatted as byte strings as they were given.

        Returns
        -------
        strategy_name : bytes
            KATCP name for the strategy.
        params : list of bytes
            KATCP formatted parameters for the strategy.
        """
        return (self.SAMPLING_LOOKUP[self.get_sampling()].encode("ascii"), list(self._params))

    def attach(self) -> None:
        """Attach strategy to its sensor and send initial update."""
        self._sensor.attach(self)
        self._update_now()

    def _update_now(self) -> None:
        """Update with the sensor's current reading, as attach() does first.

        A read() that raises (a sensor that polls hardware, say) is logged as a failed
        timed sample is (:meth:`_sample_failed`): the strategy stays attached and
        observes the next readings, rather than failing the request that started it.
        """
        try:
            reading = self._sensor.read()
        except Exception:
            self._sample_failed()
            return
        self.update(self._sensor, reading)

    def _sample_failed(self) -> None:
        """Called in an ``except`` block when a sample of the sensor's current reading
        failed; strategies with timers of their own arm the next sample here."""
        self._log_sample_error()

    def detach(self) -> None:
        """Detach strategy from its sensor."""
        self._sensor.detach(self)

    def cancel(self) -> None:
        """Detach strategy from its sensor and cancel ioloop callbacks."""
        self._cancelled = True
        if self.OBSERVE_UPDATES:
            self.detach()
        self.cancel_timeouts()

    def cancel_timeouts(self) -> None:
        """Override this method to cancel any outstanding ioloop timeouts."""

    def start(self) -> None:
        """Start operating the strategy.

        Subclasses that override start() should call the super method before it does
        anything that uses the ioloop. This will attach to the sensor as an observer if
        :attr:`OBSERVE_UPDATES` is True, and sets ``_ioloop_thread_id`` using
        thread.get_ident(). Must be called in the ioloop thread.
        """
        self._ioloop_thread_id = threading.get_ident()
        if self.OBSERVE_UPDATES:
            self.attach()

    def inform(self, reading: Reading) -> None:
        """Inform strategy creator of the sensor status."""
        self._inform_callback(self._sensor, reading)

    def _log_sample_error(self) -> None:
        """Log the error of a timed sample, which is not raised so that sampling goes on.

        Only the first of consecutive failures is an error (with its traceback): a sensor
        that fails every read would otherwise fill the log at the sampling rate.
        """
        name, kind = self._sensor.name, type(self).__name__
        if self._sample_failing:
            log.debug("Sampling sensor %r with the %s strategy failed again", name, kind,
                      exc_info=True)
            return
        self._sample_failing = True
        log.exception("Error sampling sensor %r with the %s strategy (until a sample "
                      "succeeds, further errors are logged at debug level)", name, kind)

    def _log_sample_recovered(self) -> None:
        self._sample_failing = False
        log.info("Sampling sensor %r with the %s strategy succeeded again",
                 self._sensor.name, type(self).__name__)

    def update(self, sensor: Sensor, reading: Reading) -> None:
        """Callback used by the sensor's notify() method.

        Called whenever the sensor value is set, in whatever thread set it; the reading is
        handed to :meth:`observe` in the ioloop thread.

        Parameters
        ----------
        sensor : Sensor object
            The sensor which was just updated.
        reading : (timestamp, status, value) tuple
            Sensor reading as would be returned by sensor.read()
        """
        if reading.__class__ is not Reading:
            reading = _as_reading(reading)
        # katcp.loop.crossing.on_thread()'s ident form, inlined: this runs for every
        # update of every sampled sensor.
        if _get_ident() == self._ioloop_thread_id:
            if self._pending:
                # Readings from other threads still on their way are older than this one.
                self._observe_pending()
            self.observe(reading)
            return
        # One hop to the loop per burst: a thread setting sensors in a tight loop wakes the
        # loop once, yet every reading is observed (as katcp 0.9 did, a hop each), in the
        # order of everything the thread queued for the loop.
        queue = self._call_queue
        with self._pending_lock:
            pending = self._pending
            if pending is None:
                pending = self._pending = collections.deque()
            pending.append(reading)
            self._queued = queued = self._queued + 1
            # The mark is None until the first token is queued.
            if self._token_mark == queue.count:
                try:
                    self._token[1] = queued  # type: ignore[index]
                    return
                except IndexError:
                    pass  # taken to run already
            token = self._token = [self, queued]
            # Under the lock: the readings of two threads keep the order of their tokens.
            self._token_mark = queue.call_batched(_observe_tokens, token)

    def _observe_upto(self, upto: int) -> None:
        """Observe the readings from other threads up to the `upto`-th queued, if not yet."""
        if self._observed >= upto:
            return
        pending = self._pending
        # Not None while readings are pending; it stays the same deque until they are all
        # observed (an observe() that sets this sensor on the loop observes all of them).
        popleft = pending.popleft  # type: ignore[union-attr]
        observe = self.observe
        while self._observed < upto:
            reading = popleft()
            # Counted before observe(), which may observe the next ones itself.
            self._observed += 1
            if self._cancelled:
                return
            try:
                observe(reading)
            except Exception:
                # Nobody to raise to: the thread that set the sensor has moved on. The
                # next readings, of this sensor and of others in the batch, go on.
                log.exception("Error handling a reading of sensor %r set by another thread "
                              "(%s strategy)", self._sensor.name, type(self).__name__)
        if not pending:
            with self._pending_lock:
                if not pending and self._pending is pending:
                    self._pending = None

    def _observe_pending(self) -> None:
        """Observe every reading set by other threads and not yet observed, oldest first."""
        with self._pending_lock:
            upto = self._queued
        self._observe_upto(upto)

    def observe(self, reading: Reading) -> None:
        """Handle a sensor reading in the ioloop thread (strategies override this)."""


class SampleNone(SampleStrategy):
    """Sampling strategy which never sends any updates."""

    NUM_PARAMS = 0
    _SAMPLING = SampleStrategy.NONE


class SampleAuto(SampleStrategy):
    """Strategy which sends updates whenever the sensor itself is updated."""

    OBSERVE_UPDATES = True
    NUM_PARAMS = 0
    _SAMPLING = SampleStrategy.AUTO

    def observe(self, reading: Reading) -> None:
        self.inform(reading)


def _parse_difference(sensor: Sensor, param: Any) -> float:
    if sensor.stype not in ("integer", "float", "timestamp"):
        raise ValueError("Differential strategies only apply to integer, float and "
                         "timestamp sensors, not %s sensor '%s'." % (sensor.stype, sensor.name))
    text = readable(param)
    try:
        if sensor.stype != "integer":
            threshold = float(text)
        else:
            try:
                threshold = int(text)
            except ValueError:
                # A whole number written as a float ('1.0') too: the resource clients
                # send numeric strategy parameters as floats, as katcp 0.9's did.
                whole = float(text)
                if not whole.is_integer():
                    raise
                threshold = int(whole)
    except ValueError:
        raise ValueError("Invalid differential threshold %r for %s sensor '%s'."
                         % (text, sensor.stype, sensor.name))
    if not threshold > 0:
        # As in katcp 0.9: a zero difference would report every update, like 'auto'.
        raise ValueError("Differential threshold must be positive, not %r." % text)
    return threshold


def _beyond_threshold(strategy: Any, value: Any, last_value: Any) -> bool:
    """The value test of the differential strategies: a change by more than the threshold.

    A change between NaN and a number is one too (its difference, NaN, exceeds nothing);
    NaN to NaN is none. The NaN test runs only for changes within the threshold.
    """
    try:
        difference = abs(value - last_value)
        return difference > strategy._threshold or (
            difference != difference and (value != value) != (last_value != last_value))
    except (TypeError, ArithmeticError):
        # A Decimal (float and timestamp sensors take them) does not mix with a float, and
        # a NaN one does not compare: such values are compared as the floats they are sent as.
        return _beyond_threshold(strategy, float(value), float(last_value))


class _SampleChanges(SampleStrategy):
    """Sends each update whose status or value differs from the last one sent, at once."""

    OBSERVE_UPDATES = True
    _last_sent: Optional[Reading] = None
    # Whether a value differs from the last one sent; the differential strategies set theirs.
    _differs: Callable[[Any, Any], bool] = operator.ne

    def _is_news(self, reading: Reading) -> bool:
        last = self._last_sent
        return (last is None or self._differs(reading.value, last.value)
                or reading.status != last.status)

    def observe(self, reading: Reading) -> None:
        # _is_news() inlined: this runs for every update of every sensor sampled on events
        # (tests/test_sampling_rules.py checks that the two agree).
        last = self._last_sent
        if (last is None or self._differs(reading.value, last.value)
                or reading.status != last.status):
            self._last_sent = reading
            self.inform(reading)


class SampleDifferential(_SampleChanges):
    """Differential sampling strategy for integer, float and timestamp sensors.

    Sends an update when the value has changed by more than the threshold since the last
    update sent, or when the status changes.
    """

    NUM_PARAMS = 1
    _SAMPLING = SampleStrategy.DIFFERENTIAL

    _differs = _beyond_threshold

    def _setup(self, *params: Any) -> None:
        self._threshold = _parse_difference(self._sensor, params[0])


class _PeriodicScheduler:
    """One loop timer shared by every periodic sampler on an ioloop.

    A timer per sample would cost a tornado timeout (and its wrappers) for every inform;
    instead deadlines live in one heap and a single timer fires for the earliest, sending
    every sample due within ``TOLERANCE`` of it in the same loop iteration. A cancelled
    deadline stays in the heap until it is due, or until the heap is compacted
    (:mod:`katcp.loop.timer_heap`).
    """

    TOLERANCE = 0.001

    @classmethod
    def for_ioloop(cls, ioloop: tornado.ioloop.IOLoop) -> "_PeriodicScheduler":
        return one_per_loop(ioloop, "_katcp_periodic_scheduler", cls)

    def __init__(self, ioloop: tornado.ioloop.IOLoop) -> None:
        # Deadlines are times of the monotonic clock (see the module's docstring).
        self._clock_loop = ioloop.asyncio_loop  # type: ignore[attr-defined]
        self._heap: List[List[Any]] = []
        self._sequence = itertools.count()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_when: Optional[float] = None
        self._compact_at = MIN_COMPACT_SIZE

    def schedule(self, when: float, callback: Callable[[float], None]) -> List[Any]:
        """Call ``callback(when)`` at ``when`` of ``ioloop.asyncio_loop.time()``; return a
        handle for cancel()."""
        entry = [when, next(self._sequence), callback]
        heapq.heappush(self._heap, entry)
        if self._timer_when is None or when < self._timer_when:
            self._arm(when)
        return entry

    def cancel(self, entry: List[Any]) -> None:
        """Cancel the call that schedule() returned `entry` for."""
        # Lazy deletion: the entry is dropped when it reaches the top of the heap, or when
        # the heap is compacted (here, where entries die: nothing is checked per sample).
        entry[2] = None
        if len(self._heap) > self._compact_at:
            self._compact_at = compact(self._heap, _is_scheduled)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._clock_loop.call_at(when, self._run)

    def _run(self) -> None:
        # Samplers due now schedule their next deadlines from their callbacks: until the
        # run ends those are only pushed (no deadline is earlier than -inf), and the run
        # arms one timer for the earliest left, not one per sampler (each cancelling the
        # last, which the loop keeps until its time).
        self._timer = None
        self._timer_when = -math.inf
        heap = self._heap
        horizon = self._clock_loop.time() + self.TOLERANCE
        try:
            while heap and heap[0][0] <= horizon:
                when, _, callback = heapq.heappop(heap)
                if callback is not None:
                    callback(when)
        finally:
            # Even after a callback raised: the timer is every other sampler's too.
            while heap and heap[0][2] is None:
                heapq.heappop(heap)
            if heap:
                self._arm(heap[0][0])
            else:
                self._timer_when = None


def _is_scheduled(entry: List[Any]) -> bool:
    return entry[2] is not None


class SamplePeriod(SampleStrategy):
    """Periodic sampling strategy: sends the current reading every period seconds.

    The schedule does not drift: each deadline is the previous one plus the period.
    """

    NUM_PARAMS = 1
    _SAMPLING = SampleStrategy.PERIOD

    def _setup(self, *params: Any) -> None:
        self._period = _parse_period(params[0], "period")
        if self._period <= 0:
            raise ValueError("The sampling period must be > 0, not %r." % readable(params[0]))
        self._scheduler: Optional[_PeriodicScheduler] = None
        self._timeout: Optional[List[Any]] = None

    def start(self) -> None:
        super().start()
        self._scheduler = _PeriodicScheduler.for_ioloop(self.ioloop)
        self._tick(self._clock_loop.time())

    def _tick(self, deadline: float) -> None:
        try:
            reading = self._sensor.read()
            # Tested once read: a value set after the strategy was withdrawn is not sent.
            if not self._withdrawn:
                self.inform(reading)
        except Exception:
            # A sensor that failed to read (or a callback that failed) once is sampled
            # again a period on.
            self._log_sample_error()
        else:
            if self._sample_failing:
                self._log_sample_recovered()
        if self._cancelled:
            # By its own inform callback: cancel() found no next sample to drop.
            return
        next_time = deadline + self._period
        now = self._clock_loop.time()
        if next_time <= now:
            # Fell more than a period behind (a busy loop): skip the missed samples
            # rather than sending a burst.
            next_time = now + self._period
        assert self._scheduler is not None  # set by start()
        self._timeout = self._scheduler.schedule(next_time, self._tick)

    def cancel_timeouts(self) -> None:
        if self._timeout is not None:
            assert self._scheduler is not None  # set by start(), with the timeout
            self._scheduler.cancel(self._timeout)
            self._timeout = None


class SampleEventRate(_SampleChanges):
    """Event-rate sampling strategy.

    Report the value whenever it changes (value or status) or if more than longest-period
    seconds have passed since the last reported update. However, do not report the value
    until at least shortest-period seconds have passed since the last reported update; a
    change within that time is sent (with the newest reading) once it has passed.
    A longest-period of 0 means no periodic updates.
    """

    NUM_PARAMS = 2
    _SAMPLING = SampleStrategy.EVENT_RATE

    def _setup(self, *params: Any) -> None:
        self._shortest = _parse_period(params[-2], "shortest period")
        self._longest = _parse_period(params[-1], "longest period")
        if self._longest and self._shortest > self._longest:
            raise ValueError("The shortest period (%s) must not exceed the longest (%s)."
                             % (readable(params[-2]), readable(params[-1])))
        # When the last reading was sent; -inf lets the first one go out at once.
        self._last_sent_time = float("-inf")
        self._held_reading: Optional[Reading] = None
        self._shortest_timeout: Optional[asyncio.TimerHandle] = None
        self._longest_timeout: Optional[asyncio.TimerHandle] = None

    def observe(self, reading: Reading) -> None:
        if not self._is_news(reading):
            # A held change that was undone before it could be sent is not sent.
            self._held_reading = None
            return
        earliest = self._last_sent_time + self._shortest
        if self._clock_loop.time() >= earliest:
            self._report(reading)
            return
        self._held_reading = reading
        if self._shortest_timeout is None:
            self._shortest_timeout = self._clock_loop.call_at(earliest, self._send_held)

    def _send_held(self) -> None:
        self._shortest_timeout = None
        if self._held_reading is None or self._cancelled:
            return
        earliest = self._last_sent_time + self._shortest
        if self._clock_loop.time() < earliest:
            # A change was sent at once after this timer was set (the loop came to it
            # late), so the shortest period runs from that one.
            self._shortest_timeout = self._clock_loop.call_at(earliest, self._send_held)
            return
        reading, self._held_reading = self._held_reading, None
        self._report_timed(reading)

    def _report(self, reading: Reading) -> None:
        self._last_sent = reading
        self._last_sent_time = now = self._clock_loop.time()
        self._held_reading = None
        # Armed before informing, so that a callback that raises does not end the
        # periodic updates.
        if self._longest:
            self._arm_longest(now + self._longest)
        self.inform(reading)

    def _arm_longest(self, when: float) -> None:
        if self._longest_timeout is not None:
            self._longest_timeout.cancel()
        self._longest_timeout = self._clock_loop.call_at(when, self._send_current)

    def _send_current(self) -> None:
        self._longest_timeout = None
        if not self._cancelled:
            self._report_timed(None)

    def _report_timed(self, reading: Optional[Reading]) -> None:
        """_report() `reading` (None: the current one) from a timer, logging any error."""
        try:
            if reading is None:
                reading = _as_reading(self._sensor.read())
                # Tested once read, as SamplePeriod does.
                if self._withdrawn:
                    return
            self._report(reading)
        except Exception:
            self._sample_failed()
        else:
            if self._sample_failing:
                self._log_sample_recovered()

    def _sample_failed(self) -> None:
        self._log_sample_error()
        if self._longest and self._longest_timeout is None and not self._cancelled:
            # read() failed, so nothing was sent: the sensor is read again a longest
            # period on.
            self._arm_longest(self._clock_loop.time() + self._longest)

    def cancel_timeouts(self) -> None:
        for timeout in (self._shortest_timeout, self._longest_timeout):
            if timeout is not None:
                timeout.cancel()
        self._shortest_timeout = self._longest_timeout = None


class SampleDifferentialRate(SampleEventRate):
    """Differential-rate sampling strategy for integer, float and timestamp sensors.

    Like event-rate, but a value change counts only when it exceeds the difference from the
    last reported value (status changes always count).
    """

    NUM_PARAMS = 3
    _SAMPLING = SampleStrategy.DIFFERENTIAL_RATE

    _differs = _beyond_threshold

    def _setup(self, *params: Any) -> None:
        super()._setup(*params)
        self._threshold = _parse_difference(self._sensor, params[0])


class SampleEvent(SampleEventRate):
    """Strategy which sends updates when the sensor value or status changes.

    Changes of the timestamp alone are not reported. The special case of
    :class:`SampleEventRate` with neither a shortest nor a longest period, so it takes no
    parameters and sends each change at once.
    """

    NUM_PARAMS = 0
    _SAMPLING = SampleStrategy.EVENT

    # No periods, so no timers: each change is sent as _SampleChanges sends it.
    observe = _SampleChanges.observe
    _shortest = _longest = 0.0
    _held_reading: Optional[Reading] = None
    _shortest_timeout: Optional[asyncio.TimerHandle] = None
    _longest_timeout: Optional[asyncio.TimerHandle] = None

    def _setup(self, *params: Any) -> None:
        """No parameters to check."""


def _nobody(sensor: Sensor, reading: Reading) -> None:
    """The inform callback of a fan-out, which sends to its members itself."""


def _group_sender_of(send: Callable[[bytes], None]) -> Optional[Callable[..., Any]]:
    """``group_sender(owners)`` where `send` is a write batcher's bound send().

    A batcher class may offer ``group_sender`` to make one function that sends to many of
    them, doing what its send() does; None for any other sender (a thread-safe wrapper,
    or the send() of a subclass that changed it ...).
    """
    # Not wire.util.uses_own(), which asks an object whether methods known when a module
    # was imported are still its own: here the class is found at run time (whichever
    # offers group_sender), and it is the sender held that must be its send(), not just
    # the owner's attribute of that name (any callable may be a sender).
    func = getattr(send, "__func__", None)
    for cls in type(getattr(send, "__self__", None)).__mro__:
        if "group_sender" in vars(cls):
            return cls.group_sender if func is vars(cls).get("send") else None  # type: ignore
    return None


class _EventFanOut(SampleEvent):
    """The wire-sending event strategies of one sensor, observing it as one.

    With many clients sampling a sensor on events, each change is checked and formatted
    once and its bytes handed to every client's sender, rather than each client's
    strategy doing it all again. Members join from :meth:`_WireSampleEvent.attach` and
    leave when cancelled; the fan-out detaches from the sensor once it is empty.

    Joining and leaving cost the same however many members there are: they only mark the
    send targets stale, and the first change after them makes the targets anew (work of
    the order of sending that change to every member, done once for any number of joins
    and leaves).

    A member that joins while readings set by other threads are still on their way to
    the fan-out is in once they are observed: they are older than the reading it is sent
    first (``sensor.read()``), so they are not news to it.
    """

    _by_sensor: "weakref.WeakKeyDictionary[Sensor, dict]" = weakref.WeakKeyDictionary()

    @classmethod
    def join(cls, member: "_WireSampleEvent") -> "_EventFanOut":
        fans = cls._by_sensor.setdefault(member._sensor, {})
        key = (member.ioloop, member._major)
        fan = fans.get(key)
        if fan is None:
            fan = fans[key] = cls(member._sensor, member.ioloop, member._major)
            fan.start()
        send = member._send
        # Classified once, here: not again for each rebuild of the targets.
        entry = (send, _group_sender_of(send))
        with fan._pending_lock:
            queued = fan._queued
        if fan._observed >= queued:
            fan._admit(member, entry)
        else:
            fan._waiting[member] = (queued, entry)
        return fan

    def __init__(self, sensor: Sensor, ioloop: tornado.ioloop.IOLoop, major: int) -> None:
        super().__init__(_nobody, sensor, ioloop=ioloop)
        self._major = major
        # Each member's sender and the group sender of its batcher class (None: none).
        self._members: Dict[Any, Tuple[Callable[[bytes], None],
                                       Optional[Callable[..., Any]]]] = {}
        # The members' senders, the write batchers among them in one group sender; None
        # once members joined or left, until the next change makes them anew.
        self._targets: Optional[Tuple[Callable[[bytes], None], ...]] = ()
        # Members whose last inform may not be the fan-out's (they joined since its last
        # one): their own test decides whether the next change is news to them. Their
        # senders by member, so that a member leaving or being sent to is found at once.
        self._fresh: Dict[Any, Callable[[bytes], None]] = {}
        # Members that joined while readings from other threads were pending, with how
        # many had been queued then and their entry of _members, in the order they
        # joined: each is in once those readings are observed (see join()).
        self._waiting: Dict[Any, Tuple[int, Tuple[Callable[[bytes], None],
                                                  Optional[Callable[..., Any]]]]] = {}

    def _admit(self, member: "_WireSampleEvent",
               entry: Tuple[Callable[[bytes], None], Optional[Callable[..., Any]]]) -> None:
        self._members[member] = entry
        self._fresh[member] = entry[0]
        self._targets = None

    def _observe_upto(self, upto: int) -> None:
        waiting = self._waiting
        # Joined in order, so the first waits for the fewest readings.
        while waiting:
            member, (queued, entry) = next(iter(waiting.items()))
            if queued > upto:
                break
            SampleEvent._observe_upto(self, queued)
            # Unless observing a reading (re-entering) has admitted it already.
            if waiting.pop(member, None) is not None:
                self._admit(member, entry)
        SampleEvent._observe_upto(self, upto)

    def _sample_failed(self) -> None:
        """Nothing logged: a member reads the sensor itself when it joins, and logs its
        own failure (the fan-out's first reading only marks what is news)."""

    def _retarget(self) -> Tuple[Callable[[bytes], None], ...]:
        groups: Dict[Callable[..., Any], List[Any]] = {}
        targets = []
        for send, group_sender in self._members.values():
            if group_sender is None:
                targets.append(send)
            else:
                groups.setdefault(group_sender, []).append(send.__self__)  # type: ignore
        for group_sender, owners in groups.items():
            # A group of one is called directly: one call either way.
            targets.append(owners[0].send if len(owners) == 1 else group_sender(owners))
        self._targets = tuple(targets)
        return self._targets

    def leave(self, member: "_WireSampleEvent") -> None:
        if self._waiting.pop(member, None) is None:
            if self._members.pop(member, None) is None:
                return
            self._fresh.pop(member, None)
            self._targets = None
        if not self._members and not self._waiting:
            self.cancel()
            fans = self._by_sensor.get(self._sensor)
            if fans is not None and fans.get((self.ioloop, self._major)) is self:
                del fans[(self.ioloop, self._major)]

    def update(self, sensor: Sensor, reading: Reading) -> None:
        # SampleStrategy.update() (its inlined on_thread() test too) and observe() inlined
        # for the loop thread: this runs for every update of the sensor.
        if _get_ident() != self._ioloop_thread_id:
            SampleStrategy.update(self, sensor, reading)
            return
        if reading.__class__ is not Reading:
            reading = _as_reading(reading)
        if self._pending:
            self._observe_pending()
        last = self._last_sent
        # _SampleChanges._is_news(), with SampleEvent's _differs (operator.ne) written as
        # `!=` (tests/test_sampling_rules.py checks that the two agree).
        if last is None or reading.value != last.value or reading.status != last.status:
            self._last_sent = reading
            targets = self._targets
            if targets is None:
                # Members joined or left since the last change.
                self.inform(reading)
                return
            # inform(), inlined for the usual case.
            line = sensor._status_inform(reading, self._major)
            for send in targets:
                send(line)

    def inform(self, reading: Reading) -> None:
        # Made once for every member, so not kept as the sensor's status_line() is.
        line = self._sensor._status_inform(reading, self._major)
        fresh = self._fresh
        if fresh:
            self._fresh = {}
            # Taken before sending: a send that sets the sensor on the loop can admit a
            # waiting member, which was sent that newer reading and must not get this one.
            others = [send for member, (send, _) in self._members.items()
                      if member not in fresh]
            for member, send in fresh.items():
                if member._is_news(reading):
                    member._last_sent = reading
                    send(line)
            for send in others:
                send(line)
            return
        targets = self._targets
        if targets is None:
            targets = self._retarget()
        for send in targets:
            send(line)


class _WireSampleEvent(SampleEvent):
    """The event strategy of a server's client: ``#sensor-status`` bytes to a sender.

    Every change is still sent (nothing is coalesced beyond what :class:`SampleEvent`
    does); the work per change is shared through an :class:`_EventFanOut`.
    """

    def __init__(self, send: Callable[[bytes], None], major: int, sensor: Sensor, *params: Any,
                 ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        self._send = send
        self._major = major
        self._fan_out: Optional[_EventFanOut] = None
        super().__init__(self._send_status, sensor, *params, ioloop=ioloop)

    def _send_status(self, sensor: Sensor, reading: Reading) -> None:
        self._send(sensor_status_line(sensor, reading, self._major))

    def attach(self) -> None:
        # The first reading goes to this client alone; later ones come from the fan-out.
        self._fan_out = _EventFanOut.join(self)
        self._update_now()

    def detach(self) -> None:
        if self._fan_out is not None:
            self._fan_out.leave(self)
            self._fan_out = None


def wire_strategy(strategy_name: Any, send: Callable[[bytes], None], major: int,
                  sensor: Sensor, *params: Any,
                  ioloop: Optional[tornado.ioloop.IOLoop] = None) -> SampleStrategy:
    """A strategy that sends ``#sensor-status`` informs as bytes, as a server does.

    As :meth:`SampleStrategy.get_strategy`, but the strategy hands each inform's bytes
    (:func:`sensor_status_line`) to `send` on the loop thread. Event strategies of the
    same sensor share the work of each change (:class:`_EventFanOut`), unless the
    sensor has a :meth:`~katcp.Sensor.status_line` of its own (its class's, or one set
    on it) when the strategy is made.

    Parameters
    ----------
    strategy_name : str or bytes
    send : callable
        ``send(data)``, called on the loop thread.
    major : int
        KATCP major version of the informs.
    sensor : Sensor
    params : list of objects
        The strategy's parameters.
    ioloop : tornado.ioloop.IOLoop, optional

    Returns
    -------
    strategy : SampleStrategy

    """
    if readable(strategy_name) == "event" and uses_own(sensor, _OWN_STATUS_LINE):
        # Where the sensor has a status_line() of its own (its class's, or one set on it,
        # as mock.patch.object(sensor, ...) does), its lines are made by it, each
        # client's on its own: the fan-out makes the line its own way (tested here
        # rather than for each change, where the lookup cost 2% of the work).
        return _WireSampleEvent(send, major, sensor, *params, ioloop=ioloop)

    def send_status(sensor: Sensor, reading: Reading) -> None:
        send(sensor_status_line(sensor, reading, major))
    return SampleStrategy.get_strategy(strategy_name, send_status, sensor, *params,
                                       ioloop=ioloop)


_STRATEGY_CLASSES = {SampleStrategy.SAMPLING_LOOKUP[cls._SAMPLING]: cls for cls in (
    SampleNone, SampleAuto, SamplePeriod, SampleEvent, SampleDifferential, SampleEventRate,
    SampleDifferentialRate)}


def _strategy_class(strategy_name: Any) -> Type[SampleStrategy]:
    name = readable(strategy_name)
    strategy_class = _STRATEGY_CLASSES.get(name)
    if strategy_class is None:
        # The text of katcp 0.9, which clients may show or match.
        raise ValueError("Unknown strategy name: %s." % (name,))
    return strategy_class


def _parameter_count_error(name: str, expected: int, given: int) -> ValueError:
    return ValueError("The '%s' strategy takes %d parameter%s, %d given." % (
        name, expected, "" if expected == 1 else "s", given))


def check_strategy(strategy_name: Any, params: Sequence[Any]) -> None:
    """Check a strategy's name and the number of its parameters, as a server will.

    It says early what a ``?sensor-sampling`` request would be refused for; the values of
    the parameters are left to the strategy (a server checks them on a sensor).

    Parameters
    ----------
    strategy_name : str or bytes
        The strategy's KATCP name (``event``, ``period``, ...).
    params : sequence
        Its parameters.

    Raises
    ------
    ValueError
        For an unknown name or a wrong number of parameters, with the text of the
        server's ``fail`` reply.
    """
    strategy_class = _strategy_class(strategy_name)
    expected = strategy_class.NUM_PARAMS
    if expected is not None and len(params) != expected:
        raise _parameter_count_error(readable(strategy_name), expected, len(params))
