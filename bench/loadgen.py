"""The load generator: raw asyncio KATCP clients with no katcp code.

The same clients drive the katcp server and the baseline line server, so
only the server differs between the two sides of a benchmark.
"""

import asyncio
import collections
import time


class LoadClient(asyncio.Protocol):
    """One connection: requests resolved in order, informs counted.

    Parameters
    ----------
    collect : bool
        Keep every line after the greeting (to compare servers' bytes).
    """

    def __init__(self, collect=False):
        loop = asyncio.get_running_loop()
        self.transport = None
        self.greeted = loop.create_future()
        self.closed = loop.create_future()
        self.informs = 0
        self.lines = [] if collect else None
        # lag of #sensor-status informs: receive time minus their timestamp
        self.track_lag = False
        self.max_lag = 0.0
        self._tail = b""
        self._pending = collections.deque()

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(exc)
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))

    def data_received(self, data):
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        last_inform = None
        for line in lines:
            kind = line[:1]
            if kind == b"#":
                if not self.greeted.done():
                    if line.startswith(b"#version-connect katcp-device"):
                        self.greeted.set_result(None)
                    continue
                self.informs += 1
                last_inform = line
            if self.lines is not None:
                self.lines.append(line)
            if kind == b"!":
                self._pending.popleft().set_result(line)
        if self.track_lag and last_inform is not None:
            lag = time.time() - float(last_inform.split(b" ", 2)[1])
            if lag > self.max_lag:
                self.max_lag = lag

    def request(self, line):
        """Send ``line`` (bytes with newline); return a future for the reply."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        self.transport.write(line)
        return future

    def close(self):
        """Close the connection."""
        self.transport.close()


async def connect(address, factory=LoadClient, greet=True):
    """Open a connection and wait for the server's greeting."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(factory, *address)
    if greet:
        await asyncio.wait_for(client.greeted, 30)
    return client


async def connect_many(address, count, factory=LoadClient, batch=100):
    """Open ``count`` greeted connections, ``batch`` at a time."""
    clients = []
    for start in range(0, count, batch):
        clients += await asyncio.gather(
            *[connect(address, factory) for _ in range(min(batch, count - start))])
    return clients


async def close_all(clients):
    """Close connections and wait until they are closed."""
    for client in clients:
        client.close()
    await asyncio.gather(*[c.closed for c in clients])


class PipelineClient(LoadClient):
    """Keeps ``depth`` requests with message ids in flight until stopped."""

    def __init__(self):
        super().__init__()
        self.replies = 0
        self.running = False
        self.in_flight = 0
        self.drained = None
        self._next_id = 0

    def _requests(self, count):
        first = self._next_id
        self._next_id += count
        self.in_flight += count
        return b"".join([b"?watchdog[%d]\n" % (i + 1) for i in range(first, first + count)])

    def start(self, depth):
        """Begin: send ``depth`` requests, then one more per reply."""
        self.running = True
        self.drained = asyncio.get_running_loop().create_future()
        self.transport.write(self._requests(depth))

    def stop(self):
        """Stop refilling; ``drained`` resolves when nothing is in flight."""
        self.running = False
        if not self.in_flight and not self.drained.done():
            self.drained.set_result(None)

    def data_received(self, data):
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        done = 0
        for line in lines:
            if line[:1] == b"!":
                done += 1
            elif not self.greeted.done() and line.startswith(b"#version-connect katcp-device"):
                self.greeted.set_result(None)
        if not done:
            return
        self.replies += done
        self.in_flight -= done
        if self.running:
            self.transport.write(self._requests(done))
        elif not self.in_flight and not self.drained.done():
            self.drained.set_result(None)


async def sequential_rate(client, count, line=b"?watchdog\n"):
    """Requests per second of ``count`` requests sent one after the other."""
    t0 = time.perf_counter()
    for _ in range(count):
        await client.request(line)
    return count / (time.perf_counter() - t0)


async def latencies(client, count, line=b"?watchdog\n"):
    """Round-trip times of ``count`` sequential requests, in seconds."""
    out = []
    perf = time.perf_counter
    for _ in range(count):
        t0 = perf()
        await client.request(line)
        out.append(perf() - t0)
    return out
