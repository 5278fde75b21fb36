"""The event-loop switch (katcp.loop.policy): managed loops on uvloop or asyncio.

A threaded device server and a blocking client, each on its own managed loop, talk over a
real socket on 127.0.0.1 with the switch set each way; the loops they run on are checked.
"""

import asyncio
import socket
import sys
import threading

import pytest
import tornado
import tornado.gen
import uvloop

import katcp
from katcp.ioloop_manager import IOLoopManager
from katcp.loop import policy
from server_kinds import ResolvedWhileEntered
from wait_helpers import outcome_in_thread

WAIT = 10.0


@pytest.fixture
def switch(monkeypatch):
    """No choice made (asyncio's own policy, no variable); the process's restored after."""
    monkeypatch.setattr(policy, "_chosen", None)
    monkeypatch.delenv(policy.ENV, raising=False)
    before = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(None)
    yield monkeypatch
    asyncio.set_event_loop_policy(before)


class _Server(katcp.DeviceServer):
    VERSION_INFO = ("switch-test", 1, 0)
    BUILD_INFO = ("switch-test", 1, 0, "")

    def setup_sensors(self):
        pass


def _round_trip():
    """Start a threaded server and a blocking client on managed loops; make one request."""
    server = _Server("127.0.0.1", 0)
    server.start(timeout=WAIT)
    client = katcp.BlockingClient(*server.bind_address)
    client.start()
    try:
        client.wait_protocol(timeout=WAIT)
        reply, informs = client.blocking_request(katcp.Message.request("help", "watchdog"),
                                                 timeout=WAIT)
        loops = (server.ioloop.asyncio_loop, client.ioloop.asyncio_loop)
    finally:
        client.stop()
        client.join(timeout=WAIT)
        server.stop(timeout=WAIT)
        server.join(timeout=WAIT)
    return reply, informs, loops


def test_use_uvloop_puts_managed_server_and_client_loops_on_uvloop(switch):
    policy.use_uvloop()
    reply, informs, loops = _round_trip()
    assert reply.reply_ok() and [m.arguments[0] for m in informs] == [b"watchdog"]
    assert all(isinstance(loop, uvloop.Loop) for loop in loops)


def test_asyncio_is_the_default(switch):
    assert policy.event_loop_name() == "asyncio"
    reply, _, loops = _round_trip()
    assert reply.reply_ok()
    assert not any(isinstance(loop, uvloop.Loop) for loop in loops)


def test_environment_variable_selects_the_loop(switch):
    switch.setenv(policy.ENV, "uvloop")
    manager = IOLoopManager()
    loop = manager.get_ioloop()
    try:
        assert isinstance(loop.asyncio_loop, uvloop.Loop)
    finally:
        loop.close()
    switch.setenv(policy.ENV, " AsyncIO ")
    assert policy.event_loop_name() == "asyncio"


def test_use_uvloop_overrides_the_environment(switch):
    switch.setenv(policy.ENV, "uvloop")
    policy.use_uvloop(False)
    loop = policy.new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_unknown_loop_name_is_refused(switch):
    switch.setenv(policy.ENV, "trio")
    with pytest.raises(ValueError, match="KATCP_EVENT_LOOP='trio'"):
        policy.new_event_loop()


def test_missing_uvloop_says_which_extra_to_install(switch):
    switch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    with pytest.raises(ImportError, match=r"katcp\[uvloop\]"):
        policy.use_uvloop()
    assert policy.event_loop_name() == "asyncio"


def test_uvloop_on_a_tornado_older_than_6_2_says_so(switch):
    # Its IOLoop takes no asyncio loop: every managed loop failed with "initialize() got
    # multiple values for argument 'asyncio_loop'".
    switch.setattr(tornado, "version_info", (6, 1, 0, 0))
    with pytest.raises(ImportError, match=r"on uvloop need tornado 6\.2 or newer"):
        policy.use_uvloop()
    switch.setenv(policy.ENV, "uvloop")
    with pytest.raises(ImportError, match=r"on uvloop need tornado 6\.2 or newer"):
        policy.new_ioloop()


def test_install_makes_asyncio_run_use_the_selected_loop(switch):
    async def kind():
        return type(asyncio.get_running_loop())

    policy.use_uvloop()
    policy.install()
    assert issubclass(asyncio.run(kind()), uvloop.Loop)



class _CoroutineServer(_Server):
    @tornado.gen.coroutine
    def _after_loop_future(self, req):
        yield ResolvedWhileEntered(loop=self.ioloop.asyncio_loop)
        raise tornado.gen.Return(req.make_reply("ok"))

    def request_raced(self, req, msg):
        """A plain handler returning a coroutine's future (started on the handler thread)."""
        return self._after_loop_future(req)


def test_coroutines_started_on_the_handler_thread_resume_on_uvloop(switch):
    # The handler thread's coroutine resumptions are diverted through the IOLoop object,
    # not the uvloop loop (whose attributes cannot be replaced).
    policy.use_uvloop()
    server = _CoroutineServer("127.0.0.1", 0)
    server.start(timeout=WAIT)
    try:
        assert isinstance(server.ioloop.asyncio_loop, uvloop.Loop)
        with socket.create_connection(server.bind_address, timeout=WAIT) as sock:
            lines = sock.makefile("rb")
            for mid in range(1, 6):
                sock.sendall(b"?raced[%d]\n" % mid)
                while True:
                    line = lines.readline()
                    assert line, "connection closed"
                    if line.startswith(b"!"):
                        break
                assert line == b"!raced[%d] ok\n" % mid
    finally:
        server.stop(timeout=WAIT)
        server.join(timeout=WAIT)


def _thread_ioloop_in_a_fresh_thread(monkeypatch):
    """Call thread_ioloop() twice in a new thread, which has no event loop; spy on how.

    Returns the loops it returned, the loops katcp's policy made, the thread's set event
    loop, and the number of asyncio.get_event_loop() calls made while the thread had no
    loop (each of which makes one: deprecated in the main thread on Python 3.12+).
    """
    made = []
    new_event_loop = policy.new_event_loop
    loopless_gets = []
    get_event_loop = asyncio.get_event_loop

    def spy_new_event_loop():
        made.append(new_event_loop())
        return made[-1]

    def spy_get_event_loop():
        if (asyncio._get_running_loop() is None
                and asyncio.get_event_loop_policy()._local._loop is None):
            loopless_gets.append(True)
        return get_event_loop()

    monkeypatch.setattr(policy, "new_event_loop", spy_new_event_loop)
    monkeypatch.setattr(asyncio, "get_event_loop", spy_get_event_loop)

    def in_thread():
        ioloops = [policy.thread_ioloop(), policy.thread_ioloop()]
        thread_loop = asyncio.get_event_loop_policy()._local._loop
        asyncio.set_event_loop(None)
        for loop in made:
            loop.close()
        return [ioloop.asyncio_loop for ioloop in ioloops], thread_loop

    loops, thread_loop = outcome_in_thread(in_thread).result(WAIT)
    return loops, made, thread_loop, len(loopless_gets)


def test_thread_ioloop_makes_the_threads_loop_itself(switch):
    loops, made, thread_loop, loopless_gets = _thread_ioloop_in_a_fresh_thread(switch)
    # One loop, made by katcp's policy and set as the thread's, returned both times;
    # asyncio.get_event_loop() was never left to make it.
    assert len(made) == 1
    assert loops == [made[0], made[0]] and thread_loop is made[0]
    assert loopless_gets == 0


def test_thread_ioloop_makes_a_loop_of_the_selected_kind(switch):
    switch.setenv(policy.ENV, "uvloop")
    loops, made, thread_loop, loopless_gets = _thread_ioloop_in_a_fresh_thread(switch)
    assert isinstance(thread_loop, uvloop.Loop) and loops == [thread_loop, thread_loop]


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_the_loop_thread_ioloop_made_goes_with_its_thread(switch, kind):
    switch.setenv(policy.ENV, kind)
    made = []
    for _ in range(20):
        # A short-lived thread with no loop that calls katcp off any loop (a 0.9-style
        # script's worker): each such thread used to leave an open loop behind for ever.
        thread = threading.Thread(target=lambda: made.append(policy.thread_ioloop()))
        thread.start()
        thread.join(WAIT)
        assert not thread.is_alive()
    assert len({id(ioloop) for ioloop in made}) == 20
    assert all(ioloop.asyncio_loop.is_closed() for ioloop in made)
    assert not set(tornado.ioloop.IOLoop._ioloop_for_asyncio) & {
        ioloop.asyncio_loop for ioloop in made}


def test_a_loop_made_for_a_thread_and_running_elsewhere_when_it_ends_is_left_open(switch):
    made = []
    handed, running = threading.Event(), threading.Event()

    def maker():
        made.append(policy.thread_ioloop())
        handed.set()
        # Ends only once another thread runs the loop.
        running.wait(WAIT)

    thread = threading.Thread(target=maker)
    thread.start()
    assert handed.wait(WAIT)
    ioloop = made[0]
    ioloop.add_callback(running.set)
    runner = threading.Thread(target=ioloop.start)
    runner.start()
    try:
        thread.join(WAIT)
        assert not thread.is_alive()
        assert running.is_set() and not ioloop.asyncio_loop.is_closed()
    finally:
        ioloop.add_callback(ioloop.stop)
        runner.join(WAIT)
        ioloop.close()


def test_a_loop_made_for_a_thread_and_closed_by_it_is_not_closed_again(monkeypatch):
    # A second close() of a tornado IOLoop raises (KeyError), which as the thread ended
    # went to sys.unraisablehook, printed as an error no test saw.
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    made = []

    def maker():
        made.append(policy.thread_ioloop())
        made[0].close()

    thread = threading.Thread(target=maker)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert made[0].asyncio_loop.is_closed()
    assert unraisable == []
