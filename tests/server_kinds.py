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
