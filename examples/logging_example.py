"""Device logs end to end: a server's ``self.log``, ``?log-level``, ``#log`` at a client.

Usage: ``python examples/logging_example.py`` (runs a server and a client in one process).
"""

import logging
import sys

from katcp import BlockingClient, DeviceServer, Message
from katcp.kattypes import Float, request, return_reply
from katcp.server import DeviceLogger


class LoggingServer(DeviceServer):
    VERSION_INFO = ("logging-example", 1, 0)
    BUILD_INFO = ("logging-example", 0, 1, "")

    def setup_sensors(self):
        pass

    @request(Float(), Float())
    @return_reply(Float())
    def request_add(self, req, x, y):
        """Add two numbers, logging what happens."""
        self.log.info("adding %g and %g", x, y)
        if x + y > 100:
            self.log.warn("large sum %g", x + y)
        return ("ok", x + y)


class LogWatchingClient(BlockingClient):
    """Shows the server's #log informs and passes them to the Python logger "device"."""

    def inform_log(self, msg):
        print("  received %s" % msg)
        DeviceLogger.log_to_python(logging.getLogger("device"), msg)


def main():
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="  logged %(levelname)s %(name)s: %(message)s")
    server = LoggingServer("127.0.0.1", 0)
    server.start(timeout=5)
    client = LogWatchingClient(*server.bind_address)
    client.start(timeout=5)
    try:
        client.wait_protocol(timeout=5)
        for request in [("log-level",), ("add", 2, 3), ("add", 200, 300),
                        ("log-level", "info"), ("add", 2, 3)]:
            print("?" + " ".join(str(arg) for arg in request))
            reply, informs = client.blocking_request(Message.request(*request))
            print("  %s" % reply)
    finally:
        client.stop()
        client.join(timeout=5)
        server.stop()
        server.join(timeout=5)


if __name__ == "__main__":
    main()
