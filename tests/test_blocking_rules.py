"""Requests in flight whose owners gave up on them, and blocking requests from threads.

* A ``future_request`` whose future its owner cancelled still takes its reply off the
  wire quietly (nothing logged) and the connection carries on.
* ``blocking_request`` from several threads at once gets each thread its own reply.
* A server's ``join()`` and ``wait_running()`` on its own loop's thread raise rather than
  block that loop (also before the server runs); ``sync_with_ioloop()`` there gives a
  future to wait on. Its ``join()`` raises too once its loop is closed; a loop that is
  only stopped it waits for, also from a thread given the ident of the loop's ended
  thread.
"""

import asyncio
import logging
import re
import threading

import pytest
from tornado.ioloop import IOLoop
from tornado.platform.asyncio import AsyncIOLoop

from katcp import AsyncClient, AsyncDeviceServer, BlockingClient, DeviceServer, Message
from katcp.kattypes import Int, request, return_reply
from katcp.loop import crossing
from katcp.loop.crossing import call_on_loop

from wait_helpers import as_if_given_the_ident_of, outcome_in_thread

WAIT = 10.0


class _Echo(DeviceServer):
    VERSION_INFO = ("blocking-rules", 1, 0)
    BUILD_INFO = ("blocking-rules", 1, 0, "")

    def setup_sensors(self):
        pass

    @request(Int())
    @return_reply(Int())
    def request_echo(self, req, value):
        """Reply with the value given."""
        return ("ok", value)


class _Slow(_Echo, AsyncDeviceServer):
    """Also answers ?slow, once the test says so (on the test's loop)."""

    def setup_sensors(self):
        self.asked = asyncio.Event()
        self.answer = None

    async def request_slow(self, req, msg):
        """Reply once the test says so."""
        self.answer = asyncio.get_running_loop().create_future()
        self.asked.set()
        await self.answer
        return req.make_reply("ok")


def test_cancelled_request_takes_its_reply_quietly(caplog):
    async def main():
        device = _Slow("127.0.0.1", 0)
        device.set_ioloop(IOLoop.current())
        device.start()
        client = AsyncClient("127.0.0.1", device.bind_address[1])
        client.set_ioloop(IOLoop.current())
        client.start()
        try:
            await client.until_protocol(timeout=WAIT)
            gave_up = client.future_request(Message.request("slow"), timeout=WAIT)
            await asyncio.wait_for(device.asked.wait(), WAIT)
            gave_up.cancel()
            device.answer.set_result(None)
            reply, _ = await client.future_request(Message.request("echo", 7), timeout=WAIT)
            assert reply.arguments == [b"ok", b"7"]
            assert gave_up.cancelled()
        finally:
            client.stop()
            await client.until_stopped(timeout=WAIT)
            await asyncio.wrap_future(device.stop(timeout=WAIT))

    with caplog.at_level(logging.WARNING, logger="katcp"):
        asyncio.run(main())
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_blocking_requests_from_many_threads_get_their_own_replies():
    device = _Echo("127.0.0.1", 0)
    device.start()
    device.wait_running(WAIT)
    client = BlockingClient("127.0.0.1", device.bind_address[1])
    client.start()
    replies = {}
    try:
        client.wait_protocol(WAIT)

        def ask(worker):
            replies[worker] = [client.blocking_request(
                Message.request("echo", 100 * worker + i), timeout=WAIT)[0].arguments[1]
                for i in range(50)]

        threads = [threading.Thread(target=ask, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert replies == {worker: [b"%d" % (100 * worker + i) for i in range(50)]
                           for worker in range(4)}
    finally:
        client.stop()
        client.join(WAIT)
        device.stop(timeout=WAIT).result(WAIT)


def test_server_join_on_its_own_loop_raises_until_the_server_has_stopped():
    async def main():
        device = _Slow("127.0.0.1", 0)  # made on the running loop: it runs there
        device.start()
        stopped = device.stop()
        with pytest.raises(RuntimeError, match="would block the server's own ioloop"):
            device.join(timeout=WAIT)
        await asyncio.wrap_future(stopped)
        device.join()

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_server_waits_on_its_own_loop_before_it_runs():
    async def main():
        device = _Slow("127.0.0.1", 0)
        with pytest.raises(RuntimeError, match="would block the server's own ioloop"):
            device.wait_running(WAIT)
        order = []
        IOLoop.current().add_callback(order.append, "queued before")
        await device.sync_with_ioloop(timeout=WAIT)
        assert order == ["queued before"]
        device.start()
        assert device.wait_running(WAIT)
        await asyncio.wrap_future(device.stop())

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_a_thread_with_the_id_of_an_ended_loop_thread_is_not_on_the_loop():
    # Thread ids are reused: a thread started after the server's loop thread has ended
    # may get its id.
    device = _Echo("127.0.0.1", 0)
    try:
        assert device.start(timeout=WAIT)
        device.stop().result(WAIT)
        device.join(WAIT)
        device._server.ioloop_thread_id = threading.get_ident()
        assert not device.wait_running(0)
        assert device.start(timeout=WAIT)
    finally:
        device.stop().result(WAIT)
        device.join(WAIT)


def _run_in_a_thread(ioloop):
    thread = threading.Thread(target=ioloop.start, daemon=True)
    thread.start()
    return thread


def _a_server_whose_loop_thread_stopped_its_loop():
    """A started server on a loop of its own thread, which then stopped (not closed) it."""
    ioloop = AsyncIOLoop(make_current=False)
    device = _Echo("127.0.0.1", 0)
    device.set_ioloop(ioloop)
    loop_thread = _run_in_a_thread(ioloop)
    assert device.start(timeout=WAIT)
    ioloop.add_callback(ioloop.stop)
    loop_thread.join(WAIT)
    return ioloop, device, loop_thread


def test_server_join_waits_for_a_loop_that_is_stopped_not_closed(monkeypatch):
    # The loop's thread stopped it (not closed) before the server was stopped: its program
    # may run it again, which finishes the stop, so join() waits for that, as the docs say
    # ("block until the server port is closed"). Called from a thread given the ended loop
    # thread's ident, it waits too: it is not the loop thread, which would wait on itself.
    # The clients' blocking calls give up after this grace once no thread runs the loop:
    # join() does not, within a timeout of many graces.
    monkeypatch.setattr(crossing, "NOT_RUNNING_GRACE", 0.01)
    ioloop, device, loop_thread = _a_server_whose_loop_thread_stopped_its_loop()
    stopped = device.stop()
    try:
        as_if_given_the_ident_of(monkeypatch, loop_thread)
        joined = outcome_in_thread(device.join)
        assert device.join(timeout=0.2) is None  # timed out: no refusal
        assert not stopped.done() and not joined.done()
    finally:
        # Run again, the loop finishes the stop, and join() returns.
        loop_thread = _run_in_a_thread(ioloop)
        stopped.result(WAIT)
        assert joined.result(WAIT) is None
        device.join(WAIT)
        ioloop.add_callback(ioloop.stop)
        loop_thread.join(WAIT)
        ioloop.close()


def test_server_join_on_a_closed_loop_of_a_server_not_stopped_raises():
    # Nothing can stop it there any more (stop() would, at once): no endless wait.
    ioloop, device, loop_thread = _a_server_whose_loop_thread_stopped_its_loop()
    ioloop.close()
    with pytest.raises(RuntimeError, match=re.escape(
            "join() cannot end: the server's ioloop is closed, so it cannot stop there "
            "(stop() stops it at once)")):
        outcome_in_thread(device.join).result(WAIT)
    assert isinstance(device.stop().exception(0), RuntimeError)
    assert device.join(WAIT) is None


def test_server_join_on_its_own_loop_thread_is_refused():
    ioloop = AsyncIOLoop(asyncio_loop=asyncio.new_event_loop(), make_current=False)
    device = _Echo("127.0.0.1", 0)
    device.set_ioloop(ioloop)
    loop_thread = _run_in_a_thread(ioloop)
    try:
        assert device.start(timeout=WAIT)
        refused = call_on_loop(ioloop, None, device.join).exception(WAIT)
        assert str(refused) == (
            "join() would block the server's own ioloop until it stops; wait for the "
            "future that stop() returned instead")
    finally:
        device.stop().result(WAIT)
        device.join(WAIT)
        ioloop.add_callback(ioloop.stop)
        loop_thread.join(WAIT)
        ioloop.close()


def test_server_join_with_a_timeout_returns_while_its_own_loop_runs():
    device = _Echo("127.0.0.1", 0)
    assert device.start(timeout=WAIT)
    try:
        assert outcome_in_thread(device.join, 0.01).result(WAIT) is None
        assert device.running()
    finally:
        device.stop().result(WAIT)
        device.join(WAIT)
