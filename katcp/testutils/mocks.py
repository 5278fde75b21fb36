"""Mocks and callbacks whose calls a test can wait for."""

import functools
import threading
import time
from unittest import mock

import tornado.gen
import tornado.ioloop
from tornado.concurrent import Future

from katcp.object_proxies import ObjectWrapper
from katcp.testutils.loops import _resolve_once

__all__ = ["AtomicIaddCallback", "WaitingMock", "AsyncWaitingMock", "counting_callback"]


class AtomicIaddCallback(ObjectWrapper):
    """Wrap an object so that ``+=`` is atomic and calls a callback with the new value."""

    def __init__(self, ob, callback=lambda x: x, mutex=None):
        super().__init__(ob)
        object.__setattr__(self, "_callback", callback)
        object.__setattr__(self, "_mutex", mutex or threading.Lock())

    def __iadd__(self, other):
        with self._mutex:
            new = self.__subject__ + other
            object.__setattr__(self, "__subject__", new)
            self._callback(new)
        return self


class WaitingMock(mock.Mock):
    """A Mock whose calls can be waited for from another thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._condition = threading.Condition()

    def _mock_call(self, *args, **kwargs):
        try:
            return super()._mock_call(*args, **kwargs)
        finally:
            # Also when a side effect raises: the call has been counted.
            with self._condition:
                self._condition.notify_all()

    def reset_mock(self, visited=None, *args, **kwargs):
        super().reset_mock(visited, *args, **kwargs)

    def assert_wait_call_count(self, count, timeout=1.0):
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

    def _wait_until(self, predicate, deadline):
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
    """A Mock whose calls can be waited for from a coroutine on the ioloop."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._waiters = []

    def _mock_call(self, *args, **kwargs):
        try:
            return super()._mock_call(*args, **kwargs)
        finally:
            for count, future in list(self._waiters):
                if self.call_count >= count:
                    self._waiters.remove((count, future))
                    _resolve_once(future, None)

    @tornado.gen.coroutine
    def assert_wait_call_count(self, count, timeout=1.0):
        """Wait for mock to be called >= *count* times within *timeout* seconds."""
        if self.call_count >= count:
            return
        future = Future()
        self._waiters.append((count, future))
        try:
            yield tornado.gen.with_timeout(
                tornado.ioloop.IOLoop.current().time() + timeout, future)
        except tornado.gen.TimeoutError:
            raise AssertionError("Waited %s s for %d calls, got %d"
                                 % (timeout, count, self.call_count))


def counting_callback(event=None, number_of_calls=1):
    """Decorate callback to set event once it's called certain number of times.

    The decorated callback gets ``done`` (the event), ``wait(timeout)`` and ``assert_wait``
    attributes.
    """
    if event is None:
        event = threading.Event()

    def decorator(callback):
        lock = threading.Lock()
        calls = [0]

        @functools.wraps(callback)
        def wrapped(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            finally:
                with lock:
                    calls[0] += 1
                    if calls[0] >= number_of_calls:
                        event.set()

        def assert_wait(timeout=1):
            if not event.wait(timeout):
                raise AssertionError("Callback called %d of %d times within %s s"
                                     % (calls[0], number_of_calls, timeout))

        wrapped.done = event
        wrapped.wait = event.wait
        wrapped.assert_wait = assert_wait
        wrapped.reset = lambda: (calls.__setitem__(0, 0), event.clear())
        return wrapped

    return decorator
