"""Workload 7: katcp clients against the baseline line server.

Both sides talk to the same raw line server (:mod:`bench.baseline`) in a
child process, so only the client differs.

* ``BlockingClient.blocking_request`` vs :class:`baseline.BlockingLineClient`,
  and vs :class:`baseline.ThreadHopLineClient`, the limit of the thread
  crossing that DESIGN.md prescribes for blocking clients.
* ``AsyncClient.future_request`` on the caller's loop vs
  :class:`baseline.AsyncLineClient`.
"""

import asyncio
import time

from bench import baseline
from bench.harness import Row, benchmark, interleave, median

TIMEOUT = 30.0
WARMUP_REQUESTS = 50


def _blocking_samples(address, count, repeats):
    import katcp
    base = baseline.BlockingLineClient(*address)
    hop = baseline.ThreadHopLineClient(*address, timeout=TIMEOUT)
    client = katcp.BlockingClient(*address)
    client.start()
    try:
        client.wait_protocol(timeout=TIMEOUT)

        def katcp_rate(n=count):
            t0 = time.perf_counter()
            for _ in range(n):
                reply, _ = client.blocking_request(katcp.Message.request("watchdog"),
                                                   timeout=TIMEOUT)
                assert reply.reply_ok(), reply
            return n / (time.perf_counter() - t0)

        def line_rate(line_client):
            def rate(n=count):
                t0 = time.perf_counter()
                for _ in range(n):
                    reply = line_client.request(b"?watchdog\n")
                    assert reply.startswith(b"!watchdog ok"), reply
                return n / (time.perf_counter() - t0)
            return rate

        variants = {"katcp": katcp_rate, "baseline": line_rate(base), "thread_hop": line_rate(hop)}
        for rate in variants.values():
            rate(WARMUP_REQUESTS)
        return interleave(variants, repeats)
    finally:
        client.stop()
        client.join(timeout=TIMEOUT)
        base.close()
        hop.close()


async def _async_samples(address, count, repeats):
    import katcp
    from tornado.ioloop import IOLoop
    loop = asyncio.get_running_loop()
    _, base = await loop.create_connection(baseline.AsyncLineClient, *address)
    await asyncio.wait_for(base.greeted, TIMEOUT)
    client = katcp.AsyncClient(*address)
    client.set_ioloop(IOLoop.current())
    client.start()
    try:
        await client.until_protocol(timeout=TIMEOUT)

        async def katcp_rate(n=count):
            t0 = time.perf_counter()
            for _ in range(n):
                reply, _ = await client.future_request(katcp.Message.request("watchdog"),
                                                       timeout=TIMEOUT)
                assert reply.reply_ok(), reply
            return n / (time.perf_counter() - t0)

        async def base_rate(n=count):
            t0 = time.perf_counter()
            for _ in range(n):
                reply = await base.request(b"?watchdog\n")
                assert reply.startswith(b"!watchdog ok"), reply
            return n / (time.perf_counter() - t0)

        await katcp_rate(WARMUP_REQUESTS)
        await base_rate(WARMUP_REQUESTS)
        samples = {"katcp": [], "baseline": []}
        for i in range(repeats):
            order = ("katcp", "baseline") if i % 2 == 0 else ("baseline", "katcp")
            for key in order:
                samples[key].append(await (katcp_rate() if key == "katcp" else base_rate()))
        return samples
    finally:
        client.stop()
        base.transport.close()


@benchmark("clients")
def run_clients(ctx):
    """Sequential ?watchdog rate of the katcp clients vs the baseline clients."""
    size = ctx.size
    server = ctx.pool.get("line", size.stream_sensors)
    blocking = _blocking_samples(server.address, size.client_requests, size.client_repeats)
    future = asyncio.run(_async_samples(server.address, size.client_requests,
                                        size.client_repeats))
    return [
        Row("clients.blocking_request", "req/s", median(blocking["katcp"]),
            median(blocking["baseline"]), ("ratio", ">=", 0.7),
            {"requests": size.client_requests, "samples": blocking}),
        # The same katcp rate against the thread-crossing limit, and that limit
        # against the blocking socket: how much of the gap katcp's code accounts for.
        Row("clients.blocking_request.vs_thread_hop", "req/s", median(blocking["katcp"]),
            median(blocking["thread_hop"]), None, {"requests": size.client_requests}),
        Row("clients.thread_hop_limit", "req/s", median(blocking["thread_hop"]),
            median(blocking["baseline"]), None, {"requests": size.client_requests}),
        Row("clients.future_request", "req/s", median(future["katcp"]),
            median(future["baseline"]), ("ratio", ">=", 0.9),
            {"requests": size.client_requests, "samples": future}),
    ]
