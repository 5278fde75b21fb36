"""An asyncio client: AsyncClient on the running loop, ``await`` on each request.

Usage: ``python examples/asyncio_client.py [PORT]`` (default 5000), against
``katcp-exampleserver`` or ``examples/quickstart_server.py``.
"""

import asyncio
import sys

from katcp import AsyncClient, Message


async def main(port):
    client = AsyncClient("127.0.0.1", port)
    client.set_ioloop()  # the running asyncio loop, instead of a thread of its own
    client.start()
    try:
        await client.until_protocol(timeout=5)
        reply, informs = await client.future_request(Message.request("add", 3, 6))
        print(reply)
        print("succeeded:", reply.reply_ok(), "sum:", float(reply.arguments[1]))
        # A fail reply is a reply like any other, not an exception.
        reply, informs = await client.future_request(Message.request("add", 3, "six"))
        print(reply)
        print("succeeded:", reply.reply_ok(), "reason:", reply.arguments[1].decode())
    finally:
        client.stop()
        await client.until_stopped(timeout=5)


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
