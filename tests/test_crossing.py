"""The one thread crossing (katcp.loop.crossing): outcomes, exceptions, cancellation."""

import asyncio
import concurrent.futures
import fractions
import os
import threading

import pytest
import tornado.gen
from tornado.platform.asyncio import AsyncIOLoop

from katcp.ioloop_manager import IOLoopManager
from katcp.loop import crossing
from katcp.loop.crossing import (call_on_loop, on_loop, on_thread, run_into_future, running_loop,
                                 thread_ident, thread_wait_timeout, wait_for_loop, wait_off_loop)
from katcp.wire.util import copy_outcome

from subprocess_helpers import outcome_in_forked_child
from wait_helpers import as_if_given_the_ident_of, outcome_in_thread

WAIT = 10.0


@pytest.fixture
def loop(loop_manager):
    """(ioloop, id of the thread running it)."""
    ioloop = loop_manager.get_ioloop()
    thread_id = call_on_loop(ioloop, None, threading.get_ident).result(WAIT)
    assert thread_id != threading.get_ident()
    return ioloop, thread_id


def test_a_plain_result_comes_back_from_the_loop_thread(loop):
    ioloop, thread_id = loop
    future = call_on_loop(ioloop, thread_id, lambda a, b=0: (threading.get_ident(), a + b),
                          2, b=3)
    assert future.result(WAIT) == (thread_id, 5)


def test_the_outcome_of_a_returned_coroutine_is_awaited(loop):
    ioloop, thread_id = loop

    async def later():
        await asyncio.sleep(0)
        return "done"

    @tornado.gen.coroutine
    def old_style():
        yield tornado.gen.moment
        return "old"

    assert call_on_loop(ioloop, thread_id, later).result(WAIT) == "done"
    assert call_on_loop(ioloop, thread_id, old_style).result(WAIT) == "old"


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt(), SystemExit(3)])
def test_every_exception_reaches_the_caller(loop, error):
    ioloop, thread_id = loop

    def fail():
        raise error

    async def fail_later():
        await asyncio.sleep(0)
        raise error

    # asyncio itself lets KeyboardInterrupt and SystemExit out of a task, so those are
    # checked for plain functions only.
    for fn in (fail, fail_later) if isinstance(error, Exception) else (fail,):
        future = call_on_loop(ioloop, thread_id, fn)
        assert future.exception(WAIT) is error
    # The loop survived and still runs calls.
    assert call_on_loop(ioloop, thread_id, lambda: 1).result(WAIT) == 1


def test_a_cancelled_loop_future_fails_the_caller_with_cancelled_error(loop):
    ioloop, thread_id = loop

    def cancelled():
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        return future

    with pytest.raises(concurrent.futures.CancelledError):
        call_on_loop(ioloop, thread_id, cancelled).result(WAIT)


def _outcome(future):
    if future.cancelled():
        return "cancelled"
    return ("failed", future.exception()) if future.exception() else ("ok", future.result())


def _futures_done_as(kind):
    error = ValueError("bad")
    done = []
    for how in ("ok", "failed", "cancelled"):
        future = kind()
        if how == "ok":
            future.set_result(3)
        elif how == "failed":
            future.set_exception(error)
        else:
            future.cancel()
        done.append(future)
    return done, [("ok", 3), ("failed", error), "cancelled"]


@pytest.mark.parametrize("source_kind", ["asyncio", "concurrent"])
def test_copy_outcome_gives_any_future_the_outcome_of_any_other(source_kind):
    loop = asyncio.new_event_loop()
    try:
        kind = loop.create_future if source_kind == "asyncio" else concurrent.futures.Future
        sources, outcomes = _futures_done_as(kind)
        for source, outcome in zip(sources, outcomes):
            pending = loop.create_future()
            copy_outcome(source, pending)
            assert _outcome(pending) == outcome
            plain = concurrent.futures.Future()
            copy_outcome(source, plain)
            assert _outcome(plain) == outcome
            # A running concurrent future cannot be cancelled: it fails as cancelled.
            running = concurrent.futures.Future()
            assert running.set_running_or_notify_cancel()
            copy_outcome(source, running)
            if outcome == "cancelled":
                assert isinstance(running.exception(), concurrent.futures.CancelledError)
            else:
                assert _outcome(running) == outcome
            # A target decided already is left as it is.
            decided = loop.create_future()
            decided.set_result("first")
            copy_outcome(source, decided)
            assert decided.result() == "first"
    finally:
        loop.close()


def test_a_call_cancelled_before_it_starts_never_runs():
    calls = []
    result = concurrent.futures.Future()
    assert result.cancel()
    run_into_future(calls.append, (1,), {}, result)
    assert calls == [] and result.cancelled()


def test_a_call_from_the_loop_thread_runs_at_once(loop):
    ioloop, thread_id = loop

    def nested():
        ran = []
        inner = call_on_loop(ioloop, thread_id, ran.append, "now")
        # No hop: it already ran, before this function returns.
        return inner.done(), ran, on_thread(thread_id)

    assert call_on_loop(ioloop, thread_id, nested).result(WAIT) == (True, ["now"], True)


def test_on_thread_is_false_elsewhere(loop):
    _, thread_id = loop
    assert not on_thread(thread_id)
    assert not on_thread(None)
    assert on_thread(threading.get_ident())


def _ident_of_an_ended_thread():
    """The id thread_ident() made in a thread that has ended since, and that thread."""
    made = []
    thread = threading.Thread(target=lambda: made.append(thread_ident()))
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    (ident,) = made
    return ident, thread


def test_an_id_from_thread_ident_stands_for_its_thread_alone(loop, monkeypatch):
    ioloop, _ = loop
    # On the thread that made it.
    assert call_on_loop(ioloop, None, lambda: on_thread(thread_ident())).result(WAIT)
    ident, ended = _ident_of_an_ended_thread()
    assert ident == ended.ident and isinstance(ident, int)
    as_if_given_the_ident_of(monkeypatch, ended)
    assert crossing._get_ident() == ident
    assert not on_thread(ident)
    assert not on_loop(ioloop, ident)
    # A bare ident stands for any thread that has it.
    assert on_thread(int(ident))


def test_an_id_made_on_a_thread_is_the_same_each_time():
    assert thread_ident() is thread_ident()
    assert thread_ident() == threading.get_ident()
    assert on_thread(thread_ident())


def test_on_loop_knows_the_loop_thread_before_its_id_is_recorded(loop):
    ioloop, thread_id = loop
    assert call_on_loop(ioloop, None, on_loop, ioloop).result(WAIT)
    assert call_on_loop(ioloop, None, on_loop, ioloop, thread_id).result(WAIT)
    assert not on_loop(ioloop) and not on_loop(ioloop, thread_id)
    other = AsyncIOLoop(make_current=False)
    try:
        assert not call_on_loop(ioloop, None, on_loop, other).result(WAIT)
    finally:
        other.close()


def test_on_loop_is_true_on_the_recorded_thread_while_the_loop_does_not_run_there(loop):
    # As on the thread of a loop that has stopped, or of one not started yet.
    ioloop, _ = loop
    assert running_loop() is None
    assert on_loop(ioloop, thread_ident())


def _closed_ioloop():
    # Not made current: that would leave this thread a spare asyncio loop, never closed.
    ioloop = AsyncIOLoop(make_current=False)
    ioloop.close()
    return ioloop


def test_a_call_to_a_closed_loop_fails_at_once():
    future = call_on_loop(_closed_ioloop(), None, lambda: 1)
    with pytest.raises(RuntimeError):
        future.result(0)


def test_a_call_from_the_thread_that_ran_a_closed_loop_fails_and_never_runs():
    # A test case's cleanup, after its teardown closed the loop this thread ran: what the
    # call would start on the loop (a task, say) could never run.
    calls = []
    future = call_on_loop(_closed_ioloop(), threading.get_ident(), calls.append, 1)
    with pytest.raises(RuntimeError, match="closed"):
        future.result(0)
    assert calls == []


def test_calls_queued_while_the_loop_stops_are_not_lost():
    # Calls made until the stop request reaches the loop still run before it stops.
    manager = IOLoopManager()
    ioloop = manager.get_ioloop()
    manager.start(timeout=WAIT)
    futures = [call_on_loop(ioloop, None, lambda i=i: i) for i in range(50)]
    stopped = manager.stop()
    assert [future.result(WAIT) for future in futures] == list(range(50))
    stopped.result(WAIT)
    manager.join(WAIT)


def test_running_loop_names_the_loop_of_the_calling_thread(loop):
    ioloop, thread_id = loop
    assert running_loop() is None
    assert call_on_loop(ioloop, thread_id, running_loop).result(WAIT) is ioloop.asyncio_loop


def test_thread_waits_take_endless_timeouts_as_none_and_nan_as_no_wait():
    assert [thread_wait_timeout(t) for t in (None, float("inf"), 1e300,
                                             threading.TIMEOUT_MAX, 2.5, 0, -1)] == [
        None, None, None, threading.TIMEOUT_MAX, 2.5, 0, -1]
    assert thread_wait_timeout(float("nan")) == 0.0


@pytest.mark.parametrize("timeout", ["5", b"5", 1j, [1]])
def test_thread_waits_refuse_a_timeout_that_is_not_a_real_number(timeout):
    with pytest.raises(TypeError) as error:
        thread_wait_timeout(timeout)
    assert str(error.value) == (
        "timeout must be a number of seconds or None, not %r." % (timeout,))


def test_thread_waits_take_any_real_number_as_a_timeout():
    assert thread_wait_timeout(True) is True
    assert thread_wait_timeout(fractions.Fraction(1, 2)) == fractions.Fraction(1, 2)


class _RecordingFlag:
    """A flag that is never set yet whose waits end at once, recording their timeouts."""

    def __init__(self):
        self.timeouts = []

    def is_set(self):
        return False

    def wait(self, timeout=None):
        self.timeouts.append(timeout)
        return True


@pytest.mark.parametrize("endless", [float("inf"), 1e300])
def test_waits_off_the_loop_take_an_endless_timeout(loop, endless):
    ioloop, thread_id = loop
    flag = _RecordingFlag()
    # threading's waits raise OverflowError for more than TIMEOUT_MAX: no bound instead.
    assert wait_off_loop(flag, thread_id, endless, "refused") is True
    assert flag.timeouts == [None]
    later = call_on_loop(ioloop, thread_id, tornado.gen.sleep, 0.01)
    assert wait_for_loop(later, ioloop, endless, lambda: "stopped", grace=0.001,
                         thread_id=thread_id) is None


def test_waits_off_the_loop_with_a_nan_timeout_do_not_wait(loop):
    ioloop, thread_id = loop
    assert wait_off_loop(threading.Event(), thread_id, float("nan"), "refused") is False
    never = concurrent.futures.Future()
    waited = outcome_in_thread(wait_for_loop, never, ioloop, float("nan"), lambda: "stopped",
                               None, thread_id)
    # Its own outcome (exception() itself raises TimeoutError should it still wait).
    assert isinstance(waited.exception(WAIT), concurrent.futures.TimeoutError)


class _DeliveredAsItsLoopStops(concurrent.futures.Future):
    """An outcome delivered by the last thing its loop did before it stopped, just after
    a waiter saw that it had not come."""

    def done(self):
        done = super().done()
        if not done:
            self.set_result("came")
        return done


def test_an_outcome_that_came_as_its_loop_stopped_is_returned():
    ioloop = _closed_ioloop()
    assert wait_for_loop(_DeliveredAsItsLoopStops(), ioloop, None, lambda: "stopped",
                         grace=0.01) == "came"


class _WaitedOnItsOwnClock:
    """An outcome waited for on a clock of its own, which each wait that times out moves
    on by its timeout (a wait without one, which would block for ever, fails): the
    waits are recorded, none takes time. It comes at wait number `comes_at`, if any."""

    def __init__(self, comes_at=None):
        self.now = 0.0
        self.waits = []
        self.comes_at = comes_at

    def monotonic(self):
        return self.now

    def done(self):
        return self.comes_at is not None and len(self.waits) >= self.comes_at

    def result(self, timeout=None):
        self.waits.append(timeout)
        assert len(self.waits) < 20, "waits on and on: %r" % (self.waits,)
        if self.done():
            return "came"
        self.now += timeout
        raise concurrent.futures.TimeoutError()

    def cancel(self):
        return False


def _wait_on_its_own_clock(monkeypatch, outcome, ioloop, timeout, thread_id=None):
    monkeypatch.setattr(crossing, "time", outcome)
    return wait_for_loop(outcome, ioloop, timeout, lambda: "stopped", grace=0.25,
                         thread_id=thread_id)


def test_a_long_wait_checks_every_grace_that_the_loop_runs_until_its_timeout(loop,
                                                                            monkeypatch):
    ioloop, thread_id = loop
    outcome = _WaitedOnItsOwnClock()
    with pytest.raises(concurrent.futures.TimeoutError):
        _wait_on_its_own_clock(monkeypatch, outcome, ioloop, 0.875, thread_id)
    # The last wait is what is left of the timeout.
    assert outcome.waits == [0.25, 0.25, 0.25, 0.125]


def test_a_wait_shorter_than_the_grace_waits_once(loop, monkeypatch):
    ioloop, thread_id = loop
    outcome = _WaitedOnItsOwnClock()
    with pytest.raises(concurrent.futures.TimeoutError):
        _wait_on_its_own_clock(monkeypatch, outcome, ioloop, 0.125, thread_id)
    assert outcome.waits == [0.125]


@pytest.mark.parametrize("forked", [False, True])
@pytest.mark.parametrize("known", ["unknown", "recorded", "bare"])
def test_a_wait_without_timeout_goes_on_while_the_loop_runs(loop, monkeypatch, forked, known):
    # In the child of a fork, a loop whose thread is not known is taken to run, as is
    # one whose thread is alive.
    ioloop, thread_id = loop
    thread_id = {"unknown": None, "bare": thread_id,
                 "recorded": call_on_loop(ioloop, None, thread_ident).result(WAIT)}[known]
    monkeypatch.setattr(crossing, "_forked", forked)
    outcome = _WaitedOnItsOwnClock(comes_at=3)
    assert _wait_on_its_own_clock(monkeypatch, outcome, ioloop, None, thread_id) == "came"
    assert outcome.waits == [0.25, 0.25, 0.25]


def test_in_a_forked_child_a_loop_whose_bare_thread_id_is_of_no_thread_runs_no_more(
        loop, monkeypatch):
    ioloop, _ = loop
    ident, _ = _ident_of_an_ended_thread()
    monkeypatch.setattr(crossing, "_forked", True)
    outcome = _WaitedOnItsOwnClock()
    with pytest.raises(RuntimeError, match="stopped"):
        _wait_on_its_own_clock(monkeypatch, outcome, ioloop, None, int(ident))
    # Once more, without waiting: what the loop did before it stopped may have come.
    assert outcome.waits == [0.25, 0]


def test_a_loop_whose_recorded_thread_ended_runs_no_more_in_a_forked_child(loop, monkeypatch):
    # In the child of a fork the loop still says it runs, and a thread of the child may
    # have been given the ident of the parent's loop thread: a record (as thread_ident()
    # made it on that thread) of a thread that ended, and a live thread of the same ident.
    ioloop, _ = loop
    _, ended = _ident_of_an_ended_thread()
    release = threading.Event()
    given_its_ident = threading.Thread(target=release.wait, args=(WAIT,))
    given_its_ident.start()
    try:
        record = crossing._ThreadIdent(given_its_ident.ident)
        record.thread = ended
        monkeypatch.setattr(crossing, "_forked", True)
        with pytest.raises(RuntimeError, match="no thread runs the loop"):
            wait_for_loop(concurrent.futures.Future(), ioloop, 1.0,
                          lambda: "no thread runs the loop", grace=0.01, thread_id=record)
    finally:
        release.set()
        given_its_ident.join(WAIT)


if hasattr(os, "fork"):
    def test_in_a_forked_child_a_loop_its_parent_ran_in_another_thread_runs_no_more(loop):
        ioloop, thread_id = loop
        never = concurrent.futures.Future()  # nothing in the child can resolve it

        def wait_in_child():
            return wait_for_loop(never, ioloop, None, lambda: "no thread runs the loop",
                                 grace=0.05, thread_id=thread_id)

        assert ioloop.asyncio_loop.is_running()  # in the child too
        assert (outcome_in_forked_child(wait_in_child, WAIT)
                == "RuntimeError: no thread runs the loop")

    # The loop's thread known to the waiter, or not (an IOLoopThreadWrapper that has not
    # learnt it yet): a loop whose thread is unknown is taken to run.
    @pytest.mark.parametrize("thread_known", [True, False], ids=["known", "unknown"])
    def test_in_a_forked_child_a_loop_of_a_thread_of_its_own_still_runs(thread_known):
        def wait_in_child():
            manager = IOLoopManager()
            ioloop = manager.get_ioloop()
            manager.start(timeout=WAIT)
            # Delivered after several checks that the loop runs.
            later = call_on_loop(ioloop, None, tornado.gen.sleep, 0.3)
            try:
                return wait_for_loop(later, ioloop, None, lambda: "no thread runs the loop",
                                     grace=0.05,
                                     thread_id=manager.thread_id() if thread_known else None)
            finally:
                manager.stop().result(WAIT)
                manager.join(WAIT)

        assert outcome_in_forked_child(wait_in_child, WAIT) == "returned None"
