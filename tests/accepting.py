"""A listening socket served on the running asyncio loop, for the tests' fake peers."""

import asyncio
import socket


async def closed(writer):
    """Wait until a closed stream's transport is gone, so no socket outlives its loop."""
    try:
        await writer.wait_closed()
    except (ConnectionError, asyncio.CancelledError):
        pass


class Acceptor:
    """Accept connections on 127.0.0.1 and run ``handle(reader, writer)`` for each.

    Not asyncio's Server: :meth:`stop` closes every connection accepted, its handler
    started or not, and Python 3.13.0's Server raises in the ``__del__`` of a transport it
    still counts once it has been closed and waited for (a connection accepted as it
    closed, collected during a later test).
    """

    def __init__(self, handle):
        self._handle = handle
        self._handlers = {}  # handler task -> its writer
        self._accepting = None

    async def start(self, port=0):
        """Listen on `port` (0: any) on the running loop; return the port."""
        listener = socket.create_server(("127.0.0.1", port))
        listener.setblocking(False)
        self._accepting = asyncio.ensure_future(self._accept(listener))
        return listener.getsockname()[1]

    async def _accept(self, listener):
        loop = asyncio.get_running_loop()
        with listener:
            while True:
                sock, _ = await loop.sock_accept(listener)
                try:
                    reader, writer = await asyncio.open_connection(sock=sock)
                except BaseException:
                    sock.close()
                    raise
                handler = asyncio.ensure_future(self._handle(reader, writer))
                self._handlers[handler] = writer
                handler.add_done_callback(self._forget)

    def _forget(self, handler):
        del self._handlers[handler]

    async def stop(self):
        """Stop listening, end the handlers and close every connection."""
        accepting, self._accepting = self._accepting, None
        if accepting is None:
            return
        accepting.cancel()
        await asyncio.gather(accepting, return_exceptions=True)
        # A cancelled handler that never ran closes nothing: its writer is closed here.
        handlers = dict(self._handlers)
        for handler, writer in handlers.items():
            handler.cancel()
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        for writer in handlers.values():
            await closed(writer)
