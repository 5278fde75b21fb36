"""Mocks and callbacks whose calls a test can wait for."""

import functools
import threading
import time
from typing import Any, Callable, Generator, List, Optional, Tuple
from unittest import mock

import tornado.gen
import tornado.ioloop
from tornado.concurrent import Future

from katcp.loop.call_queue import CallQueue
from katcp.loop.crossing import on_loop
from katcp.loop.futures import set_result_if_pending
from katcp.object_proxies import ObjectWrapper


class AtomicIaddCallback(ObjectWrapper):
    """Wrap an object so that ``+=`` is atomic and calls a callback with the new value.

    ``+=`` changes the wrapped object as it would unwrapped: a list is extended in
    place, an immutable value (a number) is replaced.
    """

    def __init__(self, ob: Any, callback: Callable[[Any], Any] = lambda x: x,
                 mutex: Any = None) -> None:
        super().__init__(ob)
        object.__setattr__(self, "_callback", callback)
        object.__setattr__(self, "_mutex", mutex or threading.Lock())

    def __iadd__(self, other: Any) -> "AtomicIaddCallback":
        with self._mutex:
            # The proxies' in-place rule: a list is extended in place, a number replaced.
            super().__iadd__(other)  # type: ignore[misc]  # set on AbstractProxy by setattr
            self._callback(self.__subject__)
        return self


class WaitingMock(mock.Mock):
    """A Mock whose calls can be waited for from another thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Not through Mock.__setattr__, which a spec_set limits to the spec's names.
        object.__setattr__(self, "_condition", threading.Condition())

    def _mock_call(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super()._mock_call(*args, **kwargs)
        finally:
            # Also when a side effect raises: the call has been counted.
            with self._condition:
                self._condition.notify_all()

    def assert_wait_call_count(self, count: int, timeout: float = 1.0) -> None:
        """Wait for mock to be called >= *count* times within *timeout* seconds.

        Raises
        ------
        AssertionError
            If ``call_count`` does not reach `count` in time.
        RuntimeError
            If ``call_count`` reached `count` but ``call_args_list`` still holds
            fewer calls when the time is up (calls counted but not recorded).
        """
        deadline = time.monotonic() + timeout
        if not self._wait_until(lambda: self.call_count >= count, deadline):
            raise AssertionError("Waited %s s for %d calls, got %d"
                                 % (timeout, count, self.call_count))
        if not self._wait_until(lambda: len(self.call_args_list) >= count, deadline):
            raise RuntimeError(
                "Mock call_count is %d but call_args_list has only %d calls after "
                "%s s" % (self.call_count, len(self.call_args_list), timeout))

    def _wait_until(self, predicate: Callable[[], bool], deadline: float) -> bool:
        # Woken by each call; also re-checks now and then, for counts that tests
        # (or the mock internals, between counting and recording) change directly.
        with self._condition:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.05))
        return True


class AsyncWaitingMock(mock.Mock):
    """A Mock whose calls can be waited for from a coroutine on the ioloop.

    The mock may be called from any thread: a waiter is woken on its own loop.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Not through Mock.__setattr__ (see WaitingMock).
        waiters: List[Tuple[int, "Future[None]", tornado.ioloop.IOLoop]] = []
        object.__setattr__(self, "_waiters", waiters)
        # A call in another thread between a waiter's check of call_count and its
        # registration would otherwise leave it waiting for the whole timeout.
        object.__setattr__(self, "_waiters_lock", threading.Lock())

    def _mock_call(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super()._mock_call(*args, **kwargs)
        finally:
            with self._waiters_lock:
                due = [waiter for waiter in self._waiters if self.call_count >= waiter[0]]
                for waiter in due:
                    self._waiters.remove(waiter)
            for _, future, ioloop in due:
                if on_loop(ioloop):
                    set_result_if_pending(future, None)
                else:
                    CallQueue.of(ioloop).call(set_result_if_pending, future, None)

    @tornado.gen.coroutine
    def assert_wait_call_count(self, count: int, timeout: float = 1.0
                               ) -> Generator[Any, Any, None]:
        """Wait for mock to be called >= *count* times within *timeout* seconds."""
        future: "Future[None]" = Future()
        ioloop = tornado.ioloop.IOLoop.current()
        waiter = (count, future, ioloop)
        with self._waiters_lock:
            if self.call_count >= count:
                return
            self._waiters.append(waiter)
        try:
            yield tornado.gen.with_timeout(ioloop.time() + timeout, future)
        except tornado.gen.TimeoutError:
            raise AssertionError("Waited %s s for %d calls, got %d"
                                 % (timeout, count, self.call_count))
        finally:
            with self._waiters_lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)


def counting_callback(event: Optional[threading.Event] = None, number_of_calls: int = 1
                      ) -> Callable[[Callable[..., Any]], Any]:
    """Decorate callback to set event once it's called certain number of times.

    The decorated callback gets ``done`` (the event), ``wait(timeout)`` and ``assert_wait``
    attributes.
    """
    done = event if event is not None else threading.Event()

    def decorator(callback: Callable[..., Any]) -> Any:
        lock = threading.Lock()
        calls = [0]

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            finally:
                with lock:
                    calls[0] += 1
                    if calls[0] >= number_of_calls:
                        done.set()

        def assert_wait(timeout: float = 1) -> None:
            if not done.wait(timeout):
                raise AssertionError("Callback called %d of %d times within %s s"
                                     % (calls[0], number_of_calls, timeout))

        wrapped: Any = functools.wraps(callback)(counted)
        wrapped.done = done
        wrapped.wait = done.wait
        wrapped.assert_wait = assert_wait
        def reset() -> None:
            calls[0] = 0
            done.clear()

        wrapped.reset = reset
        return wrapped

    return decorator
