"""A tornado test case on a virtual clock that the test moves."""

import asyncio
import concurrent.futures
import threading
import time
import warnings
from typing import Any, Callable, Optional, Union

import tornado.gen
import tornado.ioloop
import tornado.testing
import tornado.util
from tornado.concurrent import Future, chain_future
from tornado.platform.asyncio import AsyncIOLoop

from katcp.loop.crossing import call_on_loop, on_loop


class _WarpedLoopTime:
    """The clock of a time-warped asyncio loop: stands still until set."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _alarm(ioloop: tornado.ioloop.IOLoop, seconds: float, fn: Callable[[], Any]
           ) -> threading.Timer:
    """Call `fn` on `ioloop` after `seconds` real seconds, whatever its clock says (a
    virtual one stands still); cancel the timer returned to call it off."""
    alarm = threading.Timer(seconds, ioloop.add_callback, (fn,))
    alarm.daemon = True
    alarm.start()
    return alarm


class _TimewarpIOLoop(AsyncIOLoop):
    """An IOLoop on a virtual clock whose ``run_sync`` timeout is in real seconds.

    Otherwise warping the clock past a test's timeout would end the test.
    """

    def time(self) -> float:
        # tornado's IOLoop.time() is the wall clock; here it is the warped asyncio clock.
        return self.asyncio_loop.time()

    def run_sync(self, func: Callable[..., Any], timeout: Optional[float] = None) -> Any:
        if timeout is None:
            return super().run_sync(func)

        async def bounded() -> Any:
            result: "Future[Any]" = Future()
            chain_future(tornado.gen.convert_yielded(func()), result)

            def expire() -> None:
                if not result.done():
                    result.set_exception(tornado.util.TimeoutError(
                        "Operation timed out after %s seconds" % timeout))

            watchdog = _alarm(self, timeout, expire)
            try:
                return await result
            finally:
                watchdog.cancel()

        return super().run_sync(bounded)


class TimewarpAsyncTestCase(tornado.testing.AsyncTestCase):
    """Tornado AsyncTestCase that supports time-warping.

    The ioloop's clock stands still until ``set_ioloop_time`` moves it, so timers and
    sampling strategies fire exactly when the test says, without real waiting.
    """

    # Loop iterations wake_ioloop() lets pass: the first runs the timers that the new
    # time made due, the others what those scheduled in turn (e.g. a sample hopping to
    # the loop with add_callback).
    WAKE_ITERATIONS = 3

    def setUp(self) -> None:
        # tornado deprecates overriding get_new_ioloop, but offers no other way to give a
        # test case its own kind of loop.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "get_new_ioloop is deprecated", DeprecationWarning)
            super().setUp()
        # AsyncTestCase runs its loop in the test's own thread.
        self.ioloop_thread_id = threading.get_ident()

    def get_new_ioloop(self) -> tornado.ioloop.IOLoop:
        ioloop = _TimewarpIOLoop(make_current=False)
        self._warped_clock = _WarpedLoopTime(1000000.0)
        # BaseEventLoop reads the clock through self.time(); an instance attribute wins.
        ioloop.asyncio_loop.time = self._warped_clock
        # asyncio's debug mode times each callback with that clock: a warp made inside
        # one would be reported as a callback that took as long as the warp.
        ioloop.asyncio_loop.slow_callback_duration = float("inf")
        return ioloop

    def wait(self, condition: Optional[Callable[[], bool]] = None,
             timeout: Optional[float] = None) -> Any:
        """As :meth:`tornado.testing.AsyncTestCase.wait` (deprecated there), but with the
        timeout in real seconds, as for ``gen_test``: on the virtual clock it never came."""
        if timeout is None:
            timeout = tornado.testing.get_async_test_timeout()
        if not timeout:
            return super().wait(condition, timeout)
        expired = False
        waiting = True

        def expire() -> None:
            nonlocal expired
            if waiting:  # not a wait that has returned since
                expired = True
                self.stop()

        watchdog = _alarm(self.io_loop, timeout, expire)
        try:
            result = super().wait(lambda: expired or condition is None or condition(),
                                  timeout=0)
        finally:
            waiting = False
            watchdog.cancel()
        if expired:
            raise self.failureException("Async operation timed out after %s seconds"
                                        % timeout)
        return result

    @property
    def ioloop_time(self) -> float:
        """The virtual time of the ioloop.

        Assigning it moves the loop's clock, as in 0.9.3, but does not wake the loop:
        timers that the new time makes due run once the loop next looks at its clock.
        :meth:`set_ioloop_time` also wakes it.
        """
        return self._warped_clock.now

    @ioloop_time.setter
    def ioloop_time(self, new_time: float) -> None:
        self._warped_clock.now = new_time

    def wake_ioloop(self) -> "Union[asyncio.Task[None], concurrent.futures.Future[None]]":
        """Let the ioloop run a few iterations so that it notices the new time.

        Safe from any thread: from another thread than the loop's, the request is
        handed to the loop, which wakes up for it.

        Returns
        -------
        woken : Future
            Resolves once the iterations have run; yield it from a test coroutine
            (calling without yielding is fine too). An :class:`asyncio.Task` on the
            loop's thread, a :class:`concurrent.futures.Future` on any other.
        """
        if on_loop(self.io_loop, self.ioloop_thread_id):
            loop: asyncio.AbstractEventLoop
            loop = self.io_loop.asyncio_loop  # type: ignore[attr-defined]
            return loop.create_task(self._let_loop_run())
        return call_on_loop(self.io_loop, None, self._let_loop_run)

    async def _let_loop_run(self) -> None:
        for _ in range(self.WAKE_ITERATIONS):
            await asyncio.sleep(0)

    def set_ioloop_time(self, new_time: float, wake_ioloop: bool = True
                        ) -> "Union[asyncio.Task[None], concurrent.futures.Future[None], None]":
        """Set the virtual time of the ioloop, from any thread.

        Returns
        -------
        woken : Future or None
            With `wake_ioloop`, resolves once the loop has run at the new time (see
            :meth:`wake_ioloop`).
        """
        self.ioloop_time = new_time
        if wake_ioloop:
            return self.wake_ioloop()
        return None


class TimewarpAsyncTestCaseTimeAdvancer(threading.Thread):
    """Advance the virtual time of a TimewarpAsyncTestCase from a background thread.

    Each step moves the virtual time on by `quantum` and lets the ioloop run at the new
    time; the next step waits until the loop has done so. The virtual time therefore
    passes at `rate` virtual seconds per real second at most, and slower when the loop
    takes longer than ``quantum / rate`` real seconds for a step (asyncio's debug mode).

    Parameters
    ----------
    test_instance : TimewarpAsyncTestCase
    quantum : float
        Virtual seconds per step.
    rate : float
        Virtual seconds per real second.
    """

    def __init__(self, test_instance: TimewarpAsyncTestCase, quantum: float = 0.05,
                 rate: float = 1000.0) -> None:
        super().__init__(name="timewarp-advancer", daemon=True)
        self.test_instance = test_instance
        self.quantum = quantum
        self.rate = rate
        self._stopped = threading.Event()
        self._started = threading.Event()
        # Set once the loop has run the last step, or by stop().
        self._step_done = threading.Event()

    def start(self) -> None:
        super().start()
        self._started.wait(1.0)

    def stop(self, timeout: Optional[float] = None) -> None:
        self._stopped.set()
        # After _stopped, so that run() sees one or the other once it clears _step_done.
        self._step_done.set()
        self.join(timeout)

    def run(self) -> None:
        self._started.set()
        ioloop = self.test_instance.io_loop
        step_wait = self.quantum / self.rate
        step_started = time.monotonic()
        while not self._stopped.wait(max(0.0, step_started + step_wait - time.monotonic())):
            step_started = time.monotonic()
            self._step_done.clear()
            if self._stopped.is_set():
                break
            # One step pending at most: steps queued faster than the loop runs them would
            # pile up without bound, each warping from a time that is no longer current.
            ioloop.add_callback(self._step)
            self._step_done.wait()

    def _step(self) -> None:
        test = self.test_instance
        woken = test.set_ioloop_time(test.ioloop_time + self.quantum)
        if woken is None:  # a test case's own set_ioloop_time that does not wake the loop
            self._step_done.set()
        else:
            woken.add_done_callback(lambda _: self._step_done.set())
