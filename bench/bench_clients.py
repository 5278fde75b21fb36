"""Workload 7: katcp clients against the baseline line server.

Every client talks to the same raw line server (:mod:`bench.baseline`) in a
child process, so only the client differs, and the CPU time of this process
during a sample is the client's. Requests give a timeout, as scripts do.

* ``BlockingClient.blocking_request`` vs :class:`baseline.ThreadHopLineClient`,
  the floor of the thread crossing that DESIGN.md prescribes for blocking
  clients, and vs :class:`baseline.BlockingLineClient` (one thread, no
  crossing).
* ``AsyncClient.future_request`` on the caller's loop vs
  :class:`baseline.StreamsLineClient` (asyncio streams) and
  :class:`baseline.AsyncLineClient` (a buffered protocol, the floor).

The six clients are sampled in turn in one interleaved series, so each ratio
compares samples taken side by side.
"""

import asyncio
import time

from bench import baseline
from bench.harness import Row, benchmark, interleave, medians

TIMEOUT = 10.0
"""The timeout every request gives, as a script would."""

WARMUP_REQUESTS = 50


def _timed(run, n):
    """Rate and CPU per request of ``run(n)`` (CPU of this process, all threads)."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    run(n)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"rate": n / elapsed, "cpu_per_request": cpu / n}


class _Clients:
    """The six clients, connected to one server; ``variants()`` samples each."""

    def __init__(self, address):
        import katcp
        from tornado.ioloop import IOLoop
        self.katcp = katcp
        # the caller's loop for the asynchronous clients (asyncio or uvloop: the policy)
        self.loop = asyncio.new_event_loop()
        self.socket = baseline.BlockingLineClient(*address)
        self.hop = baseline.ThreadHopLineClient(*address, timeout=TIMEOUT)
        self.blocking = katcp.BlockingClient(*address)
        self.blocking.start()
        self.blocking.wait_protocol(timeout=TIMEOUT)

        async def connect():
            _, line = await self.loop.create_connection(baseline.AsyncLineClient, *address)
            await asyncio.wait_for(line.greeted, TIMEOUT)
            streams = await baseline.StreamsLineClient.connect(*address)
            client = katcp.AsyncClient(*address)
            client.set_ioloop(IOLoop.current())
            client.start()
            await client.until_protocol(timeout=TIMEOUT)
            return line, streams, client

        self.async_line, self.streams, self.future = self.loop.run_until_complete(connect())

    def _blocking_request(self, n):
        request, client = self.katcp.Message.request, self.blocking
        for _ in range(n):
            reply, _ = client.blocking_request(request("watchdog"), timeout=TIMEOUT)
            assert reply.reply_ok(), reply

    def _line_requests(self, line_client):
        def run(n):
            for _ in range(n):
                reply = line_client.request(b"?watchdog\n")
                assert reply.startswith(b"!watchdog ok"), reply
        return run

    async def _future_requests(self, n):
        request, client = self.katcp.Message.request, self.future
        for _ in range(n):
            reply, _ = await client.future_request(request("watchdog"), timeout=TIMEOUT)
            assert reply.reply_ok(), reply

    @staticmethod
    async def _async_line_requests(client, n):
        for _ in range(n):
            reply = await client.request(b"?watchdog\n")
            assert reply.startswith(b"!watchdog ok"), reply

    def variants(self, count):
        """Sampling functions by name: each returns ``{'rate', 'cpu_per_request'}``."""
        run = self.loop.run_until_complete
        runs = {
            "blocking_request": self._blocking_request,
            "thread_hop": self._line_requests(self.hop),
            "socket": self._line_requests(self.socket),
            "future_request": lambda n: run(self._future_requests(n)),
            "asyncio_protocol": lambda n: run(self._async_line_requests(self.async_line, n)),
            "asyncio_streams": lambda n: run(self._async_line_requests(self.streams, n)),
        }
        for fn in runs.values():
            fn(WARMUP_REQUESTS)
        return {name: (lambda fn=fn: _timed(fn, count)) for name, fn in runs.items()}

    def close(self):
        self.blocking.stop()
        self.blocking.join(timeout=TIMEOUT)
        async def stop():
            self.future.stop()
            self.async_line.transport.close()
            self.streams.close()
            await self.future.until_stopped(timeout=TIMEOUT)

        self.loop.run_until_complete(stop())
        self.loop.close()
        self.socket.close()
        self.hop.close()


@benchmark("clients")
def run_clients(ctx):
    """Sequential ?watchdog rate and client CPU of the katcp and baseline clients."""
    size = ctx.size
    server = ctx.pool.get("line", size.stream_sensors)
    clients = _Clients(server.address)
    try:
        samples = interleave(clients.variants(size.client_requests), size.client_repeats)
    finally:
        clients.close()
    m = {name: medians(s) for name, s in samples.items()}
    extra = {"requests": size.client_requests, "timeout": TIMEOUT}

    def rate(name, baseline_name, target=None):
        return Row("clients.%s" % name, "req/s", m[name.split(".")[0]]["rate"],
                   m[baseline_name]["rate"], target, extra)

    def cpu(name, baseline_name, target=None):
        return Row("clients.%s.client_cpu" % name, "us/req",
                   m[name]["cpu_per_request"] * 1e6, m[baseline_name]["cpu_per_request"] * 1e6,
                   target, extra)

    return [
        # the prescribed crossing's floor, measured the same way
        rate("blocking_request.vs_thread_hop", "thread_hop", ("ratio", ">=", 0.9)),
        # CPU against the asynchronous client's: what the crossing costs on top
        cpu("blocking_request", "future_request", ("ratio", "<=", 1.5)),
        rate("blocking_request", "socket"),
        rate("thread_hop", "socket"),
        cpu("thread_hop", "socket"),
        Row("clients.future_request", "req/s", m["future_request"]["rate"],
            m["asyncio_streams"]["rate"], ("ratio", ">=", 1.0),
            dict(extra, samples={k: samples[k] for k in (
                "future_request", "asyncio_streams", "asyncio_protocol")})),
        rate("future_request.vs_protocol", "asyncio_protocol"),
        cpu("future_request", "asyncio_protocol"),
    ]
