"""The tutorial's "Writing your own Async Server": the tutorial server on AsyncDeviceServer.

Usage: ``python examples/async_server.py [PORT]`` (0 picks a free port and prints it).
Ctrl-C shuts it down cleanly (clients get ``#disconnect``).
"""

import asyncio
import signal
import sys

from katcp import AsyncDeviceServer

import tutorial_server

server_host = "127.0.0.1"
server_port = 5000


class MyServer(AsyncDeviceServer, tutorial_server.MyServer):
    """The tutorial server's requests and sensors, with handlers on the ioloop."""


async def on_shutdown(server):
    print('Shutting down')
    await asyncio.wrap_future(server.stop())


async def main():
    server = MyServer(server_host, server_port)
    # Run on this asyncio loop (the tornado ioloop of the thread wraps it).
    server.set_ioloop()
    server.start()
    print("PORT %d" % server.bind_address[1], flush=True)
    # Hook up to SIGINT so that ctrl-C results in a clean shutdown
    interrupted = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupted.set)
    await interrupted.wait()
    await on_shutdown(server)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server_port = int(sys.argv[1])
    asyncio.run(main())
