"""katcp clients against real katcp DeviceServer / AsyncDeviceServer instances."""

import asyncio
import concurrent.futures
import queue
import threading

import pytest
import tornado.gen

from katcp import AsyncClient, AsyncDeviceServer, BlockingClient, DeviceServer, Message, Sensor
from katcp.ioloop_manager import IOLoopManager, IOLoopThreadWrapper
from katcp.kattypes import Int, Str, concurrent_reply, request, return_reply

WAIT = 5.0


class Device(DeviceServer):
    VERSION_INFO = ("client-test-api", 1, 0)
    BUILD_INFO = ("client-test-build", 0, 1, "")

    def setup_sensors(self):
        self.add_sensor(Sensor.integer("an.int", "An integer.", "", [0, 10], default=3,
                                       initial_status=Sensor.NOMINAL))

    @request(Int(), Int())
    @return_reply(Int())
    def request_add(self, req, a, b):
        """Add two integers."""
        return ("ok", a + b)

    @request(Int())
    @return_reply(Int())
    @tornado.gen.coroutine
    def request_count(self, req, n):
        """Send n informs, then reply."""
        for i in range(n):
            req.inform(i)
        yield tornado.gen.sleep(0.001)
        return ("ok", n)

    @request(Str())
    @return_reply()
    def request_broadcast(self, req, text):
        """Send an inform to all clients."""
        self.mass_inform(Message.inform("news", text))
        return ("ok",)


class AsyncDevice(Device, AsyncDeviceServer):
    """Handlers on the loop; concurrent requests may reply out of order."""

    _release = None

    def _released(self):
        if self._release is None:
            self._release = asyncio.Event()
        return self._release

    @concurrent_reply
    @request(Str())
    @return_reply(Str())
    async def request_hold(self, req, tag):
        """Reply with the tag once ?release has been called (at once for "now")."""
        if tag != "now":
            await self._released().wait()
        return ("ok", tag)

    @request()
    @return_reply()
    async def request_release(self, req):
        """Let every held request reply."""
        self._released().set()
        return ("ok",)


def start_server(cls, port=0):
    server = cls("127.0.0.1", port)
    server.start(timeout=WAIT)
    return server


def stop_server(server):
    server.stop(timeout=WAIT)
    server.join(timeout=WAIT)


@pytest.fixture
def device():
    server = start_server(Device)
    yield server
    stop_server(server)


@pytest.fixture
def device_to_stop():
    """A server the test stops itself."""
    server = start_server(Device)
    yield server
    if server.running():
        stop_server(server)


@pytest.fixture
def user_loop():
    """A loop run by the test (unmanaged from katcp's point of view) in its own thread."""
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=WAIT)
    yield IOLoopThreadWrapper(manager.get_ioloop())
    manager.stop().result(WAIT)
    manager.join(WAIT)


@pytest.fixture
def async_device(user_loop):
    def start():
        # AsyncDeviceServer serves on the loop current where it is started.
        server = AsyncDevice("127.0.0.1", 0)
        server.start()
        return server

    server = user_loop.call_in_ioloop(start, (), {})
    yield server
    server.stop(timeout=WAIT).result(WAIT)


@pytest.fixture
def blocking(device):
    client = BlockingClient("127.0.0.1", device.bind_address[1])
    client.start()
    assert client.wait_protocol(WAIT)
    yield client
    client.stop(timeout=WAIT)
    client.join(timeout=WAIT)


def test_blocking_client_with_device_server(blocking):
    flags = blocking.protocol_flags
    assert flags.major == 5 and flags.message_ids
    assert blocking.versions["katcp-device"][0] == "client-test-api-1.0"
    reply, informs = blocking.blocking_request(Message.request("add", 3, 4))
    assert str(reply) == "!add[1] ok 7" and informs == []
    reply, informs = blocking.blocking_request(Message.request("count", 3))
    assert str(reply) == "!count[2] ok 3"
    assert [str(m) for m in informs] == ["#count[2] 0", "#count[2] 1", "#count[2] 2"]
    reply, informs = blocking.blocking_request(Message.request("sensor-value", "an.int"))
    assert reply.reply_ok() and len(informs) == 1
    assert informs[0].arguments[2:] == [b"an.int", b"nominal", b"3"]
    reply, informs = blocking.blocking_request(Message.request("help"), use_mid=False)
    assert reply.mid is None and reply.reply_ok()
    assert int(reply.arguments[1]) == len(informs) > 5
    reply, _ = blocking.blocking_request(Message.request("add", "x", 1))
    assert reply.arguments[0] == b"fail"


def test_many_threads_share_one_blocking_client(blocking):
    errors = []

    def worker(n):
        try:
            for i in range(20):
                reply, informs = blocking.blocking_request(Message.request("count", n % 3))
                assert reply.arguments == [b"ok", b"%d" % (n % 3)] and len(informs) == n % 3
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert errors == []


def test_mass_informs_reach_handle_inform(device):
    news = queue.Queue()

    class Client(BlockingClient):
        def inform_news(self, msg):
            news.put(msg.arguments[0])

    client = Client("127.0.0.1", device.bind_address[1])
    client.start()
    try:
        assert client.wait_protocol(WAIT)
        reply, informs = client.blocking_request(Message.request("broadcast", "hello"))
        assert reply.reply_ok() and informs == []
        assert news.get(timeout=WAIT) == b"hello"
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)


def test_out_of_order_replies_matched_by_mid(async_device, user_loop):
    async def run():
        # The client shares the server's loop: the documented set_ioloop() use.
        client = AsyncClient("127.0.0.1", async_device.bind_address[1], timeout=WAIT)
        client.set_ioloop(user_loop.ioloop)
        client.start()
        await client.until_protocol(timeout=WAIT)
        # The first request is held until after the second was answered: an order the
        # server guarantees, not a race between timers.
        slow = client.future_request(Message.request("hold", "slow"))
        fast = client.future_request(Message.request("hold", "now"))
        fast_reply, _ = await fast
        assert not slow.done()
        await client.future_request(Message.request("release"))
        slow_reply, _ = await slow
        client.stop()
        await client.until_stopped(timeout=WAIT)
        return str(slow_reply), str(fast_reply)

    slow_reply, fast_reply = user_loop.call_in_ioloop(run, (), {}, timeout=WAIT * 2)
    assert fast_reply == "!hold[2] ok now"
    assert slow_reply == "!hold[1] ok slow"


def test_reconnects_to_a_new_server_on_the_same_port(device_to_stop):
    device = device_to_stop
    port = device.bind_address[1]
    connected = queue.Queue()

    class Client(BlockingClient):
        def notify_connected(self, is_connected):
            connected.put(is_connected)

    client = Client("127.0.0.1", port)
    client.start()
    try:
        assert connected.get(timeout=WAIT) is True
        stop_server(device)
        assert connected.get(timeout=WAIT) is False
        replacement = start_server(Device, port)
        try:
            assert connected.get(timeout=WAIT) is True
            assert client.wait_protocol(WAIT)
            reply, _ = client.blocking_request(Message.request("add", 1, 1))
            assert reply.arguments == [b"ok", b"2"]
        finally:
            stop_server(replacement)
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)


def test_requests_in_flight_when_the_server_stops_get_replies(device_to_stop):
    device = device_to_stop
    port = device.bind_address[1]
    client = BlockingClient("127.0.0.1", port, timeout=1.0)
    client.start()
    try:
        assert client.wait_protocol(WAIT)
        results = concurrent.futures.ThreadPoolExecutor(4)
        futures = [results.submit(client.blocking_request, Message.request("count", 1))
                   for _ in range(20)]
        stop_server(device)
        for future in futures:
            reply, _ = future.result(WAIT)
            assert reply.arguments[0] in (b"ok", b"fail")
        results.shutdown()
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)
