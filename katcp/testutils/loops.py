"""Helpers for tests that drive an ioloop or a thread from the test's own thread."""

import asyncio
import concurrent.futures

import tornado.gen

__all__ = ["call_in_ioloop", "start_thread_with_cleanup"]


def _resolve_once(future, result):
    if not future.done():
        future.set_result(result)


def call_in_ioloop(ioloop, fn, *args, **kwargs):
    """Run fn in ioloop and block until the result is available.

    ``fn`` may return a plain value, a future or a coroutine. Must not be called from the
    ioloop's own thread.
    """
    timeout = kwargs.pop("timeout", None)
    result = concurrent.futures.Future()

    def _dispatch():
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            result.set_exception(exc)
            return
        if tornado.gen.is_future(value) or asyncio.iscoroutine(value) or \
                hasattr(value, "__await__"):
            future = tornado.gen.convert_yielded(value)
            future.add_done_callback(lambda f: _copy_result(f, result))
        else:
            result.set_result(value)

    ioloop.add_callback(_dispatch)
    return result.result(timeout)


def _copy_result(source, target):
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


def start_thread_with_cleanup(test_instance, thread_object, timeout=1, start_timeout=None):
    """Start thread_object and add cleanup functions to test_instance.

    The thread object needs ``start(timeout=...)``, ``stop`` and ``join`` methods
    (katcp servers and clients have them): it is started with
    ``start(timeout=start_timeout)``, and stopped then joined (with `timeout`) when the
    test cleans up.
    """
    thread_object.start(timeout=start_timeout)

    def cleanup():
        thread_object.stop()
        thread_object.join(timeout=timeout)

    test_instance.addCleanup(cleanup)
