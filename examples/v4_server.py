"""The tutorial's "Server Protocol Backwards Compatibility": a KATCP v4 device server.

Usage: ``python examples/v4_server.py [PORT]`` (0 picks a free port and prints it).
Timestamps are in milliseconds and clients are greeted with ``#version`` and ``#build-state``.
"""

import sys
import time
from functools import partial

from katcp import DeviceServer, ProtocolFlags, Sensor
from katcp.kattypes import Float, Timestamp, request, return_reply

server_host = "127.0.0.1"
server_port = 5000

# Bind the KATCP major version of the request and return_reply decorators
# to version 4
request = partial(request, major=4)
return_reply = partial(return_reply, major=4)


class MyServer(DeviceServer):

    VERSION_INFO = ("example-api", 1, 0)
    BUILD_INFO = ("example-implementation", 0, 1, "")

    # Optionally set the KATCP protocol version as 4.
    PROTOCOL_INFO = ProtocolFlags(4, 0, set([
        ProtocolFlags.MULTI_CLIENT,
    ]))

    def setup_sensors(self):
        """Setup some server sensors."""
        self._add_result = Sensor.float("add.result",
            "Last ?add result.", "", [-10000, 10000])
        self._time_result = Sensor.timestamp("time.result",
            "Last ?time result.", "")
        self.add_sensor(self._add_result)
        self.add_sensor(self._time_result)

    @request(Float(), Float())
    @return_reply(Float())
    def request_add(self, req, x, y):
        """Add two numbers"""
        r = x + y
        self._add_result.set_value(r)
        return ("ok", r)

    @request()
    @return_reply(Timestamp())
    def request_time(self, req):
        """Return the current time in milliseconds since the Unix Epoch."""
        r = time.time()
        self._time_result.set_value(r)
        return ("ok", r)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server_port = int(sys.argv[1])
    server = MyServer(server_host, server_port)
    server.start()
    print("PORT %d" % server.bind_address[1], flush=True)
    server.join()
