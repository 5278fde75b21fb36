"""Tests for katcp.ioloop_manager: managed loop threads and thread-crossing wrappers."""

import asyncio
import concurrent.futures
import gc
import socket
import threading
import time
import weakref

import pytest
import tornado.gen
import tornado.ioloop
import tornado.util

from katcp.core import AsyncEvent
from katcp.ioloop_manager import (
    IOLoopManager,
    IOLoopThreadWrapper,
    ThreadSafeMethodAttrWrapper,
    with_relative_timeout,
)
from katcp.loop.crossing import call_on_loop

from subprocess_helpers import assert_quiet_exit, run_without_loop
from wait_helpers import announced_joins, as_if_given_the_ident_of, outcome_in_thread

WAIT = 5.0


@pytest.fixture
def managed():
    manager = IOLoopManager(managed_default=True)
    assert manager.start(timeout=WAIT)
    yield manager
    manager.stop().result(WAIT)
    manager.join(WAIT)


def loop_thread_ident(ioloop):
    idents = concurrent.futures.Future()
    ioloop.add_callback(lambda: idents.set_result(threading.get_ident()))
    return idents.result(WAIT)


def test_managed_loop_runs_in_own_daemon_thread(managed):
    ioloop = managed.get_ioloop()
    assert isinstance(ioloop, tornado.ioloop.IOLoop)
    assert loop_thread_ident(ioloop) != threading.get_ident()
    assert managed._ioloop_thread.daemon
    assert managed._ioloop_thread.is_alive()


def test_stop_runs_callback_then_stops_and_join_ends_thread():
    manager = IOLoopManager(managed_default=True)
    manager.setDaemon(False)
    manager.start(timeout=WAIT)
    thread = manager._ioloop_thread
    assert not thread.daemon
    ran_on = []

    async def callback():
        await asyncio.sleep(0.01)
        ran_on.append(threading.get_ident())

    manager.stop(callback=callback).result(WAIT)
    manager.join(WAIT)
    assert not thread.is_alive()
    assert ran_on == [thread.ident]


@pytest.mark.parametrize("callback", [None, lambda: None, lambda: tornado.gen.sleep(0)],
                         ids=["no-callback", "plain-callback", "awaitable-callback"])
def test_a_stopped_managed_loop_is_not_kept_alive(callback):
    # tornado holds a coroutine handed to add_callback until a done callback runs on
    # the loop; a stop that skipped it would keep every stopped loop in memory.
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=WAIT)
    loop = weakref.ref(manager.get_ioloop().asyncio_loop)
    manager.stop(callback=callback).result(WAIT)
    manager.join(WAIT)
    gc.collect()
    assert loop() is None


def test_managed_loop_can_be_restarted_after_join():
    manager = IOLoopManager(managed_default=True)
    for _ in range(2):
        manager.start(timeout=WAIT)
        assert loop_thread_ident(manager.get_ioloop()) == manager._ioloop_thread.ident
        manager.stop().result(WAIT)
        manager.join(WAIT)
        assert not manager._ioloop_thread.is_alive()


def test_thread_running_says_whether_the_managed_loops_thread_runs_untold_to_stop():
    manager = IOLoopManager(managed_default=True)
    assert not manager.thread_running()
    manager.start(timeout=WAIT)
    assert manager.thread_running()
    stopped = manager.stop()
    assert not manager.thread_running()  # told to stop, whether or not its thread ended
    stopped.result(WAIT)
    manager.join(WAIT)
    assert not manager.thread_running()


def _start_on(manager, coroutine_function):
    """Start a task of `coroutine_function()` on the manager's loop; return the task."""
    def start():
        return [asyncio.ensure_future(coroutine_function())]  # a list: not waited for
    return call_on_loop(manager.get_ioloop(), None, start).result(WAIT)[0]


def test_tasks_left_on_a_managed_loop_are_cancelled_and_finish_before_it_closes():
    # As asyncio.run ends. Closed with the loop, a pending task was destroyed unfinished
    # ("Task was destroyed but it is pending!"), its cleanup never run: a stop asked of
    # an unmanaged client on the loop just before the loop's own stop, say.
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=WAIT)
    cleaned_up = []

    async def pending_for_ever():
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await asyncio.sleep(0)  # a cleanup that takes loop turns of its own
            cleaned_up.append(threading.get_ident())

    task = _start_on(manager, pending_for_ever)
    manager.stop().result(WAIT)
    manager.join(WAIT)
    assert task.cancelled()
    assert cleaned_up == [manager._ioloop_thread.ident]


def test_a_task_that_will_not_end_holds_up_a_managed_loops_end_for_a_bounded_time(
        monkeypatch, caplog):
    monkeypatch.setattr(IOLoopManager, "_FINISH_TASKS_TIMEOUT", 0.05)
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=WAIT)

    async def stubborn():
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

    task = _start_on(manager, stubborn)
    manager.stop().result(WAIT)
    manager.join(WAIT)
    assert not manager._ioloop_thread.is_alive()
    assert not task.done()
    del task
    gc.collect()  # now asyncio reports it, as it reported every task left pending before
    (destroyed,) = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert destroyed.startswith("Task was destroyed but it is pending!")


def test_start_twice_raises(managed):
    with pytest.raises(RuntimeError):
        managed.start()


def test_a_second_start_before_the_loop_runs_raises_and_leaves_the_loop_alone(monkeypatch):
    # The loop is held before it says it runs: the second start() comes while its
    # thread is alive but the loop is not yet known to run.
    proceed = threading.Event()
    now_running = IOLoopManager._now_running

    def held(self):
        assert proceed.wait(WAIT)
        now_running(self)

    monkeypatch.setattr(IOLoopManager, "_now_running", held)
    manager = IOLoopManager(managed_default=True)
    before = set(threading.enumerate())
    manager.start()
    try:
        with pytest.raises(RuntimeError, match="IOLoop already started"):
            manager.start()
        proceed.set()
        assert manager.wait_running(WAIT)
        ioloop = manager.get_ioloop()
        current = concurrent.futures.Future()
        ioloop.add_callback(
            lambda: current.set_result(tornado.ioloop.IOLoop.current() is ioloop))
        assert current.result(WAIT)
        assert set(threading.enumerate()) - before == {manager._ioloop_thread}
    finally:
        proceed.set()
        manager.stop().result(WAIT)
        manager.join(WAIT)




def test_threads_starting_one_manager_at_once_run_its_loop_in_one_thread():
    # Without one start() at a time both found no thread: the second thread failed to
    # run the loop, then closed it under the first (rounds: the threads must meet).
    for _ in range(30):
        manager = IOLoopManager(managed_default=True)
        manager.get_ioloop()
        barrier = threading.Barrier(2)

        def start():
            barrier.wait(WAIT)
            return manager.start()

        before = set(threading.enumerate())
        starts = [outcome_in_thread(start) for _ in range(2)]
        concurrent.futures.wait(starts, WAIT)
        refused = [start for start in starts if start.exception(0) is not None]
        assert len(refused) == 1
        with pytest.raises(RuntimeError, match="IOLoop already started"):
            refused[0].result(0)
        assert manager.wait_running(WAIT)
        assert loop_thread_ident(manager.get_ioloop()) == manager._ioloop_thread.ident
        manager.stop().result(WAIT)
        manager.join(WAIT)
        assert not manager._ioloop_thread.is_alive()
        assert {thread for thread in set(threading.enumerate()) - before
                if thread.name == "katcp-ioloop"} == set()


def test_a_loop_another_thread_runs_or_a_closed_one_is_refused_as_a_managed_loop():
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    runner = threading.Thread(target=ioloop.start, daemon=True)
    ours, theirs = socket.socketpair()
    read = concurrent.futures.Future()
    try:
        runner.start()
        call_on_loop(ioloop, None, ioloop.add_handler, ours.fileno(),
                     lambda fd, events: read.set_result(ours.recv(10)), ioloop.READ
                     ).result(WAIT)
        manager = IOLoopManager(managed_default=True)
        manager.set_ioloop(ioloop, managed=True)
        before = set(threading.enumerate())
        with pytest.raises(RuntimeError, match="another thread runs it already"):
            manager.start()
        assert set(threading.enumerate()) == before
        # Its owner's loop still serves what is registered on it (its thread closed
        # the descriptors of a running loop it had failed to run).
        theirs.send(b"hello")
        assert read.result(WAIT) == b"hello"
        assert not manager.wait_running(0)
    finally:
        ioloop.add_callback(ioloop.stop)
        runner.join(WAIT)
        ioloop.close(all_fds=True)
        theirs.close()
    # Nor one that is closed: its thread failed with a traceback, unseen by start().
    before = set(threading.enumerate())
    with pytest.raises(RuntimeError, match="it is closed"):
        manager.start()
    assert set(threading.enumerate()) == before


def test_once_a_stop_is_asked_for_the_closing_loop_is_never_given_out_again():
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=WAIT)
    old = manager.get_ioloop()
    in_callback, release = threading.Event(), threading.Event()
    got_on_loop = []

    def callback():
        got_on_loop.append(manager.get_ioloop())  # the loop's own thread does not wait
        in_callback.set()
        release.wait(WAIT)

    first = manager.stop(callback=callback)
    assert in_callback.wait(WAIT)
    # While its callback runs: a second stop is that stop, not one more callback ...
    second = manager.stop(callback=lambda: got_on_loop.append("again"))
    assert not second.done()
    # ... and another thread waits for the loop to close, then gets a new one.
    thread = manager._ioloop_thread
    progressed = announced_joins(thread)
    getting = outcome_in_thread(manager.get_ioloop)
    getting.add_done_callback(lambda _: progressed.set())
    assert progressed.wait(WAIT)
    release.set()
    new = getting.result(WAIT)
    first.result(WAIT)
    second.result(WAIT)  # ended with that stop
    assert got_on_loop == [old]
    assert new is not old and not thread.is_alive()
    manager.start(timeout=WAIT)
    assert loop_thread_ident(new) == manager._ioloop_thread.ident
    manager.stop().result(WAIT)
    manager.join(WAIT)


def test_a_join_while_start_makes_the_thread_sees_no_thread_yet(monkeypatch):
    at_start, release = threading.Event(), threading.Event()

    class HeldThread(threading.Thread):
        def start(self):
            if self.name == "katcp-ioloop":
                at_start.set()
                release.wait(WAIT)
            super().start()

    monkeypatch.setattr(threading, "Thread", HeldThread)
    manager = IOLoopManager(managed_default=True)
    starting = outcome_in_thread(manager.start, WAIT)
    assert at_start.wait(WAIT)
    # Not threading's 'cannot join thread before it is started'.
    with pytest.raises(RuntimeError, match="^Cannot join if not started$"):
        manager.join(WAIT)
    release.set()
    assert starting.result(WAIT) is True
    manager.stop().result(WAIT)
    manager.join(WAIT)


def test_unmanaged_loop_is_not_stopped_and_join_does_nothing():
    result = concurrent.futures.Future()

    def user_thread():
        ioloop = tornado.ioloop.IOLoop(make_current=False)
        manager = IOLoopManager(managed_default=False)
        manager.set_ioloop(ioloop, managed=False)

        async def main():
            manager.start()
            await asyncio.sleep(0)
            # Its loop runs, in a thread that is not the manager's.
            thread_running = manager.thread_running()
            manager.stop()
            manager.join()
            await asyncio.sleep(0.01)
            # The manager did not stop the user's loop: we are still running.
            result.set_result((manager.get_ioloop() is ioloop, thread_running))
            ioloop.stop()

        ioloop.add_callback(main)
        ioloop.start()
        ioloop.close()

    thread = threading.Thread(target=user_thread)
    thread.start()
    assert result.result(WAIT) == (True, False)
    thread.join(WAIT)


def test_an_unmanaged_start_on_its_running_loop_answers_at_once_that_it_runs():
    # start() of an unmanaged manager does nothing but note that the loop runs, as in 0.9.3:
    # on the loop's own thread a wait with a timeout would stall the very loop it waits for.
    async def main():
        manager = IOLoopManager(managed_default=False)
        manager.get_ioloop()
        return manager.start(timeout=WAIT), manager.wait_running(0)

    assert asyncio.run(main()) == (True, True)


def test_user_coroutines_of_both_styles_and_asyncio_code_run_on_managed_loop(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())

    @tornado.gen.coroutine
    def tornado_style(x):
        yield tornado.gen.sleep(0.001)
        return x + 1

    async def native(x):
        await asyncio.sleep(0.001)
        queue = asyncio.Queue()
        await queue.put(x * 2)
        return await queue.get()

    async def mixed(x):
        value = await tornado_style(x)
        return await asyncio.wait_for(native(value), WAIT)

    assert wrapper.call_in_ioloop(tornado_style, (1,), {}) == 2
    assert wrapper.call_in_ioloop(native, (3,), {}) == 6
    assert wrapper.call_in_ioloop(mixed, (4,), {}) == 10


def test_call_in_ioloop_runs_on_loop_and_propagates_errors(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())
    loop_ident = loop_thread_ident(managed.get_ioloop())
    assert wrapper.call_in_ioloop(threading.get_ident, (), {}) == loop_ident

    def boom():
        raise ValueError("boom")

    async def async_boom():
        raise KeyError("async boom")

    with pytest.raises(ValueError, match="boom"):
        wrapper.call_in_ioloop(boom, (), {})
    with pytest.raises(KeyError, match="async boom"):
        wrapper.call_in_ioloop(async_boom, (), {})


def test_call_in_ioloop_timeout(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())
    wrapper.timeout_grace = 0.05
    # The class a timeout on the loop has, on every Python version, and a message.
    with pytest.raises(tornado.util.TimeoutError, match="No outcome of sleep from its ioloop"):
        wrapper.call_in_ioloop(asyncio.sleep, (1.0,), {}, timeout=0.05)


def test_call_in_ioloop_gives_the_timeout_error_of_the_call_itself(managed):
    ioloop = managed.get_ioloop()
    wrapper = IOLoopThreadWrapper(ioloop)

    def own_timeout(timeout):
        # Runs out a little after the caller's timeout, as a loop-side timer that
        # starts once the call has crossed over (and, here, a busy loop) does.
        failed = ioloop.asyncio_loop.create_future()
        ioloop.call_later(timeout + 0.3, failed.set_exception,
                          tornado.util.TimeoutError("Not ready after %s s" % timeout))
        return failed

    with pytest.raises(tornado.util.TimeoutError, match=r"^Not ready after 0.2 s$"):
        wrapper.decorate_callable(own_timeout)(timeout=0.2)


def test_a_blocking_call_waits_for_its_loop_to_start_without_polling(monkeypatch):
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    wrapper = IOLoopThreadWrapper(ioloop)
    wrapper.not_running_grace = WAIT
    asked = threading.Event()
    loop_running = wrapper._loop_running

    def announced_loop_running():
        asked.set()
        return loop_running()

    monkeypatch.setattr(wrapper, "_loop_running", announced_loop_running)
    sleeping = []
    sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda seconds: (
        sleeping.append(threading.get_ident()), sleep(seconds)))
    callers = []

    def call():
        callers.append(threading.get_ident())
        return wrapper.call_in_ioloop(threading.get_ident, (), {})

    outcome = outcome_in_thread(call)
    assert asked.wait(WAIT)  # the caller found the loop not running
    runner = threading.Thread(target=ioloop.start, daemon=True)
    runner.start()
    try:
        assert outcome.result(2 * WAIT) == runner.ident
        assert callers[0] not in sleeping
    finally:
        ioloop.add_callback(ioloop.stop)
        runner.join(WAIT)
        ioloop.close()


def test_a_blocking_call_on_a_closed_loop_fails_without_waiting():
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    wrapper = IOLoopThreadWrapper(ioloop)
    ioloop.close()
    wrapper.not_running_grace = 60.0
    # A failure, not a hang, if it waits out the grace.
    outcome = outcome_in_thread(wrapper.call_in_ioloop, threading.get_ident, (), {})
    with pytest.raises(RuntimeError, match="no thread runs its ioloop"):
        outcome.result(WAIT)


def test_call_from_loop_thread_runs_directly_and_refuses_to_deadlock(managed):
    ioloop = managed.get_ioloop()
    wrapper = IOLoopThreadWrapper(ioloop)
    outcome = concurrent.futures.Future()

    def on_loop():
        try:
            direct = wrapper.call_in_ioloop(threading.get_ident, (), {})
            done_future = ioloop.asyncio_loop.create_future()
            done_future.set_result("ready")
            ready = wrapper.call_in_ioloop(lambda: done_future, (), {})
            with pytest.raises(RuntimeError, match="deadlock"):
                wrapper.call_in_ioloop(asyncio.sleep, (0.01,), {})
            outcome.set_result((direct, ready))
        except BaseException as exc:
            outcome.set_exception(exc)

    ioloop.add_callback(on_loop)
    direct, ready = outcome.result(WAIT)
    assert direct == loop_thread_ident(ioloop)
    assert ready == "ready"


def test_wrappers_made_on_the_loop_thread_run_calls_directly_at_once(managed):
    # Made and used in one loop callback, before any callback of their own could run:
    # the calls must not hop to (and wait for) the loop that they are blocking.
    ioloop = managed.get_ioloop()
    outcome = concurrent.futures.Future()

    def on_loop():
        try:
            wrapper = IOLoopThreadWrapper(ioloop)
            direct = wrapper.call_in_ioloop(threading.get_ident, (), {}, timeout=WAIT)
            with pytest.raises(RuntimeError, match="deadlock"):
                wrapper.call_in_ioloop(asyncio.sleep, (0.01,), {}, timeout=WAIT)
            proxy = ThreadSafeMethodAttrWrapper(Subject(), ioloop)
            proxy._ioloop_wrapper.default_timeout = WAIT  # a failure, not a hang, if it hops
            outcome.set_result((direct, proxy.where()))
        except BaseException as exc:
            outcome.set_exception(exc)

    ioloop.add_callback(on_loop)
    loop_ident = loop_thread_ident(ioloop)
    assert outcome.result(2 * WAIT) == (loop_ident, loop_ident)


def test_a_thread_given_the_ident_of_the_ended_loop_thread_calls_as_any_other(monkeypatch):
    # Thread idents are reused: once the loop's thread has ended, a new thread may get its
    # ident. Its calls ran on that thread, as if it were the loop's.
    manager = IOLoopManager()
    ioloop = manager.get_ioloop()
    assert manager.start(timeout=WAIT)
    wrapper = IOLoopThreadWrapper(ioloop)
    assert wrapper.call_in_ioloop(threading.get_ident, (), {}) == loop_thread_ident(ioloop)
    loop_thread = manager._ioloop_thread
    manager.stop().result(WAIT)
    manager.join(WAIT)
    as_if_given_the_ident_of(monkeypatch, loop_thread)
    wrapper.not_running_grace = 0.05
    ran = []
    with pytest.raises(RuntimeError, match="no thread runs its ioloop"):
        wrapper.call_in_ioloop(ran.append, ("here",), {})
    assert ran == []


def test_wrapper_made_in_a_coroutine_on_an_unmanaged_loop_runs_directly():
    ioloop = tornado.ioloop.IOLoop(make_current=False)

    async def in_coroutine():
        proxy = ThreadSafeMethodAttrWrapper(Subject(), ioloop)
        proxy._ioloop_wrapper.default_timeout = WAIT
        return proxy.where()

    try:
        assert ioloop.run_sync(in_coroutine, timeout=2 * WAIT) == threading.get_ident()
    finally:
        ioloop.close()


def test_decorate_callable_keeps_name_and_passes_timeout(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())

    async def slow(delay, timeout=None):
        """Sleep a while."""
        await asyncio.sleep(delay)
        return timeout

    decorated = wrapper.decorate_callable(slow)
    assert decorated.__name__ == "slow"
    assert "Sleep a while." in decorated.__doc__
    assert decorated(0, timeout=1.0) == 1.0
    wrapper.timeout_grace = 0.05
    with pytest.raises(tornado.util.TimeoutError):
        decorated(1.0, timeout=0.05)


class Subject:
    def __init__(self):
        self.value = 42

    def where(self):
        return threading.get_ident()

    async def later(self, x):
        await asyncio.sleep(0)
        return x


def test_thread_safe_method_attr_wrapper(managed):
    ioloop = managed.get_ioloop()
    subject = Subject()
    proxy = ThreadSafeMethodAttrWrapper(subject, IOLoopThreadWrapper(ioloop))
    assert proxy.__subject__ is subject
    assert isinstance(proxy, Subject)
    assert proxy.value == 42
    assert proxy.where() == loop_thread_ident(ioloop)
    assert proxy.later("x") == "x"
    with pytest.raises(AttributeError):
        proxy.missing


def test_with_relative_timeout(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())

    async def check():
        quick = await with_relative_timeout(1.0, asyncio.sleep(0, result="quick"))
        unbounded = await with_relative_timeout(None, asyncio.sleep(0, result="none"))
        with pytest.raises(tornado.gen.TimeoutError):
            await with_relative_timeout(0.01, asyncio.sleep(1.0))
        return quick, unbounded

    assert wrapper.call_in_ioloop(check, (), {}) == ("quick", "none")


def test_with_relative_timeout_waits_for_ever_on_inf_and_not_at_all_on_nan(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())

    async def check():
        results = []
        for endless in (float("inf"), 1e300):
            results.append(await with_relative_timeout(endless, asyncio.sleep(0, endless)))
            # A concurrent.futures.Future too, resolved by another thread.
            resolved = concurrent.futures.Future()
            resolver = threading.Thread(target=resolved.set_result, args=(-endless,))
            resolver.start()
            results.append(await with_relative_timeout(endless, resolved))
            resolver.join(5)
        for never in (asyncio.get_running_loop().create_future(), concurrent.futures.Future()):
            with pytest.raises(tornado.gen.TimeoutError):
                await with_relative_timeout(float("nan"), never)
        return results

    inf = float("inf")
    assert wrapper.call_in_ioloop(check, (), {}, timeout=5) == [inf, -inf, 1e300, -1e300]


@pytest.mark.parametrize("endless", [float("inf"), 1e300])
def test_start_stop_and_join_take_an_endless_timeout(endless):
    manager = IOLoopManager()
    manager.start(timeout=endless)
    assert manager.wait_running(endless)
    manager.stop(timeout=endless).result(WAIT)
    manager.join(timeout=endless)
    assert not manager._ioloop_thread.is_alive()


def test_call_in_ioloop_passes_endless_and_nan_timeouts_to_the_call(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())
    event = AsyncEvent()

    def wait_then_set(timeout):
        waiting = event.until_set(timeout=timeout)
        asyncio.get_running_loop().call_soon(event.set)
        return waiting

    wait = wrapper.decorate_callable(event.until_set)
    # NaN: the call's own timeout error, at once (not the wrapper's after its grace).
    with pytest.raises(tornado.util.TimeoutError, match="^Timeout$"):
        wait(timeout=float("nan"))
    assert wrapper.decorate_callable(wait_then_set)(timeout=float("inf")) is True


def test_a_stop_whose_future_its_caller_cancelled_still_stops_the_loop():
    # As asyncio.wait_for does to a wrapped stop() future it gives up on, before the
    # loop thread has come to the stop.
    manager = IOLoopManager()
    manager.get_ioloop()
    manager.start(timeout=WAIT)
    busy, release = threading.Event(), threading.Event()

    def hold_the_loop():
        busy.set()
        release.wait(WAIT)

    manager.get_ioloop().add_callback(hold_the_loop)
    assert busy.wait(WAIT)
    stopping = manager.stop()
    assert stopping.cancel()
    release.set()
    manager.join(timeout=WAIT)
    assert not manager._ioloop_thread.is_alive()


# Each made in the main thread of a fresh interpreter, with no loop running and none set.
NO_LOOP_CASES = {
    "unmanaged AsyncDeviceServer started, then serving on the thread's loop": """
import asyncio, katcp
class Server(katcp.AsyncDeviceServer):
    VERSION_INFO = ("no-loop", 1, 0)
    BUILD_INFO = ("no-loop", 1, 0, "")
    def setup_sensors(self): pass
server = Server("127.0.0.1", 0)
server.start()
assert server.ioloop.asyncio_loop is asyncio.get_event_loop()
async def first_line():
    reader, writer = await asyncio.open_connection(*server.bind_address)
    line = await reader.readline()
    writer.close()
    return line
assert server.ioloop.run_sync(first_line, timeout=10).startswith(b"#version-connect")
""",
    "IOLoopManager(managed_default=False).get_ioloop()": """
import asyncio
from katcp.ioloop_manager import IOLoopManager
assert IOLoopManager(managed_default=False).get_ioloop().asyncio_loop is asyncio.get_event_loop()
""",
    "IOLoopThreadWrapper()": """
import asyncio
from katcp.ioloop_manager import IOLoopThreadWrapper
assert IOLoopThreadWrapper().ioloop.asyncio_loop is asyncio.get_event_loop()
""",
    "InspectingClientAsync(host, port)": """
import asyncio
from katcp.inspecting_client import InspectingClientAsync
assert InspectingClientAsync("127.0.0.1", 1).ioloop.asyncio_loop is asyncio.get_event_loop()
""",
}


@pytest.mark.parametrize("code", NO_LOOP_CASES.values(), ids=list(NO_LOOP_CASES))
def test_made_without_a_loop_in_the_main_thread_takes_the_threads_loop_without_warning(code):
    # As IOLoop.current() did in katcp 0.9: the loop made for the thread, and kept as
    # its event loop. Python 3.12 and 3.13 warned (an error here) when asyncio made it.
    assert_quiet_exit(run_without_loop(code))
