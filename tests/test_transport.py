"""katcp._transport: connections sharing one receive buffer keep their own bytes."""

import asyncio
import os

import pytest

from katcp.transport.buffers import SharedBufferProtocol, loop_receive_view

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0


class Collector(SharedBufferProtocol):
    def __init__(self, expected_size):
        self.chunks = []
        self.received = 0
        self.expected_size = expected_size
        loop = asyncio.get_running_loop()
        self._receive_view = loop_receive_view(loop)
        self.done = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        assert type(data) is bytes
        self.chunks.append(data)
        self.received += len(data)
        if self.received >= self.expected_size and not self.done.done():
            self.done.set_result(b"".join(self.chunks))


def test_concurrent_connections_on_one_loop_receive_only_their_own_bytes():
    # More than the shared buffer holds, so reads on the two connections interleave.
    payloads = [os.urandom(3 * 1024 * 1024) for _ in range(2)]

    async def main():
        loop = asyncio.get_running_loop()
        senders = asyncio.Queue()

        async def serve(reader, writer):
            await senders.put(writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        protocols = []
        for payload in payloads:
            _, protocol = await loop.create_connection(
                lambda size=len(payload): Collector(size), "127.0.0.1", port)
            protocols.append(protocol)
        writers = [await asyncio.wait_for(senders.get(), WAIT) for _ in payloads]
        for writer, payload in zip(writers, payloads):
            writer.write(payload)
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(protocol.done for protocol in protocols)), WAIT)
        finally:
            for writer in writers:
                writer.close()
            for protocol in protocols:
                protocol.transport.close()
            server.close()
            await server.wait_closed()

    received = asyncio.run(main())
    # The server socket order need not match the connect order; compare as sets.
    assert sorted(received) == sorted(payloads)
