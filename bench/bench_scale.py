"""Workload 8: many idle connections to one server.

2000 idle connections are opened (each gets its greeting), the server's
resident memory is read before and after, and an active client's
``?watchdog`` latency is measured alone and while the idle connections are
open. The line server goes through the same steps for comparison.
"""

import asyncio

from bench import loadgen
from bench.harness import Row, benchmark, median, medians


async def _scale_sample(server, idle_count, latency_requests):
    active = await loadgen.connect(server.address)
    idle = []
    try:
        await loadgen.latencies(active, latency_requests)  # warm up
        alone = median(await loadgen.latencies(active, latency_requests))
        rss0 = await asyncio.get_running_loop().run_in_executor(None, server.rss)
        idle = await loadgen.connect_many(server.address, idle_count)
        rss1 = await asyncio.get_running_loop().run_in_executor(None, server.rss)
        loaded = median(await loadgen.latencies(active, latency_requests))
        return {"alone": alone, "loaded": loaded,
                "bytes_per_conn": (rss1 - rss0) / idle_count}
    finally:
        await loadgen.close_all(idle + [active])


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
        Row("scale.latency_loaded", "s", k["loaded"], b["loaded"]),
        Row("scale.bytes_per_connection", "B", k["bytes_per_conn"], b["bytes_per_conn"]),
    ]
