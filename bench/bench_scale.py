"""Workload 8: many idle connections to one server.

2000 idle connections are opened (each gets its greeting); the server's
Python heap growth (tracemalloc, while connecting) and resident memory growth
per connection are reported, and an active client's
``?watchdog`` latency is measured alone and while the idle connections are
open (median and 99th percentile). Then every idle connection sends one
``?watchdog`` at once (a burst) and the answered fraction is reported. The
line server goes through the same steps for comparison.
"""

import asyncio
import functools

from bench import loadgen
from bench.harness import Row, benchmark, median, medians

BURST_TIMEOUT = 60.0


def _p99(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _burst(clients):
    """Send one ``?watchdog`` on every connection at once; return the answered fraction."""
    replies = await asyncio.wait_for(asyncio.gather(
        *[c.request(b"?watchdog\n") for c in clients], return_exceptions=True), BURST_TIMEOUT)
    return sum(isinstance(r, bytes) and r.endswith(b" ok") for r in replies) / len(clients)


async def _scale_sample(server, idle_count, latency_requests):
    active = await loadgen.connect(server.address)
    idle = []
    try:
        await loadgen.latencies(active, latency_requests)  # warm up
        alone = await loadgen.latencies(active, latency_requests)
        call = functools.partial(asyncio.get_running_loop().run_in_executor, None)
        rss0 = await call(server.rss)
        await call(server.call, "trace_start")
        idle = await loadgen.connect_many(server.address, idle_count)
        traced = await call(server.call, "trace_stop")
        rss1 = await call(server.rss)
        loaded = await loadgen.latencies(active, latency_requests)
        burst = await _burst(idle)
        await loadgen.close_all(idle)
        idle = []
        # alone both before and after, so that drift in machine load cancels out
        alone += await loadgen.latencies(active, latency_requests)
        return {"alone": median(alone), "loaded": median(loaded),
                "alone_p99": _p99(alone), "loaded_p99": _p99(loaded),
                "burst_answered": burst,
                "heap_bytes_per_conn": traced / idle_count,
                # RSS understates when freed memory of earlier work is reused
                "rss_bytes_per_conn": (rss1 - rss0) / idle_count}
    finally:
        await loadgen.close_all(idle + [active])


def _most(samples, side):
    return max(s["rss_bytes_per_conn"] for s in samples[side])


@benchmark("scale")
def run_scale(ctx):
    """Idle connections: memory per connection and active-client latency."""
    size = ctx.size
    servers = {"katcp": ctx.pool.get("async", size.stream_sensors),
               "line": ctx.pool.get("line", size.stream_sensors)}
    samples = {key: [] for key in servers}
    for i in range(size.repeats):
        for key in (("katcp", "line") if i % 2 == 0 else ("line", "katcp")):
            samples[key].append(asyncio.run(_scale_sample(
                servers[key], size.idle_connections, size.latency_requests)))
    k, b = medians(samples["katcp"]), medians(samples["line"])
    extra = {"idle_connections": size.idle_connections, "katcp": k, "line": b,
             "samples": samples}
    return [
        # baseline column: the same katcp server's latency with no idle clients
        Row("scale.latency_loaded_vs_alone", "s", k["loaded"], k["alone"],
            ("ratio", "<=", 2.0), extra),
        Row("scale.p99_loaded_vs_alone", "s", k["loaded_p99"], k["alone_p99"],
            ("ratio", "<=", 2.0)),
        # the worst sample: every connection of every burst must be answered
        Row("scale.burst_answered", "frac", min(x["burst_answered"] for x in samples["katcp"]),
            min(x["burst_answered"] for x in samples["line"]), ("value", ">=", 1.0)),
        Row("scale.latency_loaded", "s", k["loaded"], b["loaded"]),
        # the line server is the minimal asyncio server: at most 1.25x its memory
        Row("scale.heap_bytes_per_connection", "B", k["heap_bytes_per_conn"],
            b["heap_bytes_per_conn"], ("ratio", "<=", 1.25)),
        Row("scale.rss_bytes_per_connection", "B", _most(samples, "katcp"),
            _most(samples, "line")),
    ]
