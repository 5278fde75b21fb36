"""An asyncio-native device server: ``async def`` handlers and ``asyncio.run``.

Usage: ``python examples/asyncio_server.py [PORT]`` (0 picks a free port and prints it).
The server runs until ``?halt`` or Ctrl-C.
"""

import asyncio
import signal
import sys

from katcp import AsyncDeviceServer, Sensor
from katcp.kattypes import Float, Int, Str, request, return_reply


class CounterServer(AsyncDeviceServer):
    """A device whose handlers are coroutines running on the asyncio event loop."""

    VERSION_INFO = ("asyncio-example", 1, 0)
    BUILD_INFO = ("asyncio-example", 0, 1, "")

    def setup_sensors(self):
        """A counter sensor and the text of the last greeting."""
        self._counter = Sensor.integer("counter", "Times ?increment was called.", "",
                                       default=0, initial_status=Sensor.NOMINAL)
        self._greeting = Sensor.string("greeting", "Last ?greet text.", "")
        self.add_sensor(self._counter)
        self.add_sensor(self._greeting)

    @request(Int(default=1))
    @return_reply(Int())
    async def request_increment(self, req, step):
        """Add STEP (default 1) to the counter and return the new value."""
        value = self._counter.value() + step
        self._counter.set_value(value)
        return ("ok", value)

    @request(Float(min=0, max=10))
    @return_reply(Float())
    async def request_wait(self, req, seconds):
        """Wait SECONDS without blocking other clients, then reply."""
        req.inform("waiting %g seconds" % seconds)
        await asyncio.sleep(seconds)
        return ("ok", seconds)

    @request(Str())
    @return_reply(Str())
    async def request_greet(self, req, name):
        """Greet NAME."""
        text = "Hello, %s!" % name
        self._greeting.set_value(text)
        return ("ok", text)


async def main(port):
    server = CounterServer("127.0.0.1", port)
    # Use the running asyncio loop (tornado's IOLoop.current() wraps it).
    server.set_ioloop()
    server.start()
    print("PORT %d" % server.bind_address[1], flush=True)
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    loop.add_signal_handler(signal.SIGTERM, interrupted.set)
    # A signal stops the server from outside; ?halt stops it from inside, which shows as
    # running() turning false once the listener had started.
    while not interrupted.is_set():
        try:
            await asyncio.wait_for(interrupted.wait(), timeout=0.2)
        except asyncio.TimeoutError:
            if not server.running():
                break
    if server.running():
        await asyncio.wrap_future(server.stop())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
