"""A running device server of either kind, for tests that check both on a real socket."""

import asyncio
import threading

import tornado.ioloop

TIMEOUT = 10


def start_async(cls, prepare=None):
    """An AsyncDeviceServer on a loop thread of its own (as an application runs one),
    given to `prepare` (if any) before it starts."""
    ready = threading.Event()
    box = {}

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        server = box["server"] = cls("127.0.0.1", 0)
        if prepare is not None:
            prepare(server)
        server.start()
        ready.set()
        tornado.ioloop.IOLoop.current().start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(TIMEOUT)
    server = box["server"]
    assert server.wait_running(TIMEOUT)
    return server


def started(kind, threaded_class, async_class, prepare=None):
    """A running server of `threaded_class` (`kind` 'threaded'), else of `async_class`,
    given to `prepare` (if any) before it starts."""
    if kind != "threaded":
        return start_async(async_class, prepare)
    server = threaded_class("127.0.0.1", 0)
    if prepare is not None:
        prepare(server)
    server.start()
    assert server.wait_running(TIMEOUT)
    return server


class ResolvedWhileEntered(asyncio.Future):
    """A future that the loop resolves, and runs its done callbacks for, while the
    coroutine that yielded it has not yet left its context on the handler thread."""

    def add_done_callback(self, fn, *, context=None):
        super().add_done_callback(fn, context=context)
        if getattr(self, "_raced", False):
            return
        self._raced = True
        loop = self.get_loop()
        attempted = threading.Event()

        def resolve():
            self.set_result(None)
            # Behind the done callbacks that set_result scheduled.
            loop.call_soon(loop.call_soon, attempted.set)

        loop.call_soon_threadsafe(resolve)
        assert attempted.wait(TIMEOUT)
