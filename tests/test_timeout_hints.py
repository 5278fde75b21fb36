"""A KATCPClientResource uses the server's ``?request-timeout-hint`` for its requests.

The device's ``?stall`` request never replies, so each request ends by its own timeout.
Only the order in which they end is asserted (a short hint against long explicit
timeouts), never how fast a timer fired.
"""

import asyncio

import tornado.testing

from katcp import ProtocolFlags
from katcp.kattypes import request_timeout_hint
from katcp.resource_client import KATCPClientResource
from katcp.server import DeviceServer

WAIT = 10.0
HINT = 0.3


class HintedDevice(DeviceServer):
    VERSION_INFO = ("hint-test", 1, 0)
    BUILD_INFO = ("hint-test", 1, 0, "")
    PROTOCOL_INFO = ProtocolFlags(5, 1, {
        ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS,
        ProtocolFlags.REQUEST_TIMEOUT_HINTS})

    _release = None

    def setup_sensors(self):
        pass

    def _released(self):
        if self._release is None:
            self._release = asyncio.Event()
        return self._release

    def release(self):
        """Let the stalled requests finish (from any thread)."""
        self.ioloop.add_callback(lambda: self._released().set())

    @request_timeout_hint(HINT)
    async def request_stall(self, req, msg):
        """Reply only once released (the test releases it when done)."""
        await self._released().wait()
        return req.make_reply("ok")

    async def request_stall_unhinted(self, req, msg):
        """The same, without a hint."""
        await self._released().wait()
        return req.make_reply("ok")


class TestTimeoutHints(tornado.testing.AsyncTestCase):

    def setUp(self):
        super().setUp()
        self.server = HintedDevice("127.0.0.1", 0)
        self.server.start(timeout=WAIT)
        self.server.wait_running(WAIT)
        self.addCleanup(self.server.join, WAIT)
        self.addCleanup(self.server.stop)
        self.addCleanup(self.server.release)
        self.resource = KATCPClientResource(dict(
            name="dev", address=self.server.bind_address, controlled=True))
        self.resource.start()
        self.addCleanup(self.resource.stop)

    @tornado.testing.gen_test(timeout=3 * WAIT)
    async def test_hint_is_read_and_used_as_the_default_timeout(self):
        await self.resource.until_synced(timeout=WAIT)
        assert self.resource.req.stall.timeout_hint == HINT
        assert self.resource.req.stall_unhinted.timeout_hint is None
        finished = []

        async def call(label, req, **kwargs):
            reply = await req(**kwargs)
            finished.append((label, reply.succeeded, reply.reply.arguments[0]))

        # The hinted request has no timeout of its own: the hint must end it first.
        await asyncio.gather(
            call("hinted", self.resource.req.stall),
            call("explicit", self.resource.req.stall_unhinted, timeout=1.5),
            call("overridden", self.resource.req.stall, timeout=2.5))
        assert finished == [("hinted", False, b"fail"), ("explicit", False, b"fail"),
                            ("overridden", False, b"fail")]
