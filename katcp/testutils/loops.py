"""Helpers for tests that drive an ioloop or a thread from the test's own thread."""

from typing import Any, Callable, Optional

import tornado.ioloop

from katcp.loop.crossing import call_on_loop, on_loop, wait_for_loop


def call_in_ioloop(ioloop: tornado.ioloop.IOLoop, fn: Callable[..., Any], *args: Any,
                   **kwargs: Any) -> Any:
    """Run fn in ioloop and block until the result is available.

    Every argument goes to `fn`, a ``timeout`` keyword too (as for
    ``res.until_synced(timeout=5)``): a call that may hang should carry its own timeout.

    Parameters
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop`
        The (running) loop to call `fn` on.
    fn : callable
        Called as ``fn(*args, **kwargs)``; it may return a plain value, a future or
        a coroutine.

    Returns
    -------
    result : object
        What `fn` returned, or what its future resolved to; what it raised is raised.

    Raises
    ------
    RuntimeError
        If called on the ioloop's own thread: the loop could not run `fn` while blocked;
        or once no thread runs the loop (it stopped, or never started), which would never
        give the outcome.
    """
    if on_loop(ioloop):
        raise RuntimeError("call_in_ioloop() would block the loop that must run %r; call "
                           "it directly or yield its future instead" % (fn,))
    return wait_for_loop(call_on_loop(ioloop, None, fn, *args, **kwargs), ioloop, None,
                         lambda: "call_in_ioloop(%r): no thread runs its ioloop %r (any "
                                 "more)" % (fn, ioloop))


def start_thread_with_cleanup(test_instance: Any, thread_object: Any, timeout: float = 1,
                              start_timeout: Optional[float] = None) -> None:
    """Start thread_object and add cleanup functions to test_instance.

    Parameters
    ----------
    test_instance : :class:`unittest.TestCase`
        Gets a cleanup that stops `thread_object`, then joins it (with `timeout`).
    thread_object : object
        Has ``start``, ``stop`` and ``join`` methods: a katcp server or client, a
        :class:`threading.Thread` subclass with a ``stop`` method, a
        :class:`katcp.testutils.TimewarpAsyncTestCaseTimeAdvancer`.
    timeout : float, optional
        Seconds to wait for the thread to end at cleanup.
    start_timeout : float, optional
        If given, passed as ``start(timeout=start_timeout)``; if None, ``start()`` is
        called without arguments, as not every thread object's start takes a timeout.
    """
    if start_timeout is None:
        thread_object.start()
    else:
        thread_object.start(timeout=start_timeout)

    def cleanup() -> None:
        thread_object.stop()
        thread_object.join(timeout=timeout)

    test_instance.addCleanup(cleanup)
