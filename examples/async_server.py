"""The tutorial's "Writing your own Async Server": the tutorial server on AsyncDeviceServer.

Usage: ``python examples/async_server.py [PORT]`` (0 picks a free port and prints it).
Ctrl-C shuts it down cleanly (clients get ``#disconnect``).
"""

import signal
import sys

import tornado
import tornado.gen
import tornado.ioloop

from katcp import AsyncDeviceServer

import tutorial_server

server_host = "127.0.0.1"
server_port = 5000


class MyServer(AsyncDeviceServer, tutorial_server.MyServer):
    """The tutorial server's requests and sensors, with handlers on the ioloop."""


@tornado.gen.coroutine
def on_shutdown(ioloop, server):
    print('Shutting down')
    yield server.stop()
    ioloop.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server_port = int(sys.argv[1])
    ioloop = tornado.ioloop.IOLoop.current()
    server = MyServer(server_host, server_port)
    # Hook up to SIGINT so that ctrl-C results in a clean shutdown
    signal.signal(signal.SIGINT, lambda sig, frame: ioloop.add_callback_from_signal(
        on_shutdown, ioloop, server))

    def start():
        server.start()
        print("PORT %d" % server.bind_address[1], flush=True)

    ioloop.add_callback(start)
    ioloop.start()
