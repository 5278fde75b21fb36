"""Workloads 2-4: request/reply against a server process.

The load generator (:mod:`bench.loadgen`) is the same for the katcp server
and the baseline line server, so only the server differs.

* ``requests``: sequential ``?watchdog`` on one connection.
* ``pipeline``: ``?watchdog[id]`` with 50 in flight per connection, on 1, 10
  and 100 connections.
* ``sensor_bulk``: ``?sensor-value`` and ``?sensor-list`` of all sensors
  (10 000), after checking that both servers send the same bytes.
"""

import asyncio
import time

from bench import loadgen
from bench.harness import Row, benchmark, interleave, median, medians

WARMUP_REQUESTS = 50


async def _cpu(server):
    return await asyncio.get_running_loop().run_in_executor(None, server.cpu)


async def _sequential_sample(server, count):
    client = await loadgen.connect(server.address)
    try:
        await loadgen.sequential_rate(client, WARMUP_REQUESTS)
        cpu0 = await _cpu(server)
        rate = await loadgen.sequential_rate(client, count)
        return {"rate": rate, "cpu_per_request": (await _cpu(server) - cpu0) / count}
    finally:
        await loadgen.close_all([client])


@benchmark("requests")
def run_sequential(ctx):
    """Sequential request round trips: async and threaded katcp servers."""
    size = ctx.size
    servers = {kind: ctx.pool.get(kind, size.stream_sensors)
               for kind in ("async", "threaded", "line")}
    samples = interleave({
        kind: (lambda s=server: asyncio.run(_sequential_sample(s, size.sequential)))
        for kind, server in servers.items()}, size.repeats)
    m = {kind: medians(samples[kind]) for kind in servers}
    extra = {"requests": size.sequential, "samples": samples}
    rows = []
    for kind, target in (("async", 0.9), ("threaded", 0.6)):
        rows += [
            Row("requests.sequential.%s" % kind, "req/s", m[kind]["rate"],
                m["line"]["rate"], ("ratio", ">=", target), extra),
            Row("requests.sequential.%s.server_cpu" % kind, "us/req",
                m[kind]["cpu_per_request"] * 1e6, m["line"]["cpu_per_request"] * 1e6),
        ]
    return rows


async def _pipeline_sample(server, width, depth, seconds):
    clients = await loadgen.connect_many(server.address, width, loadgen.PipelineClient)
    try:
        for client in clients:
            client.start(depth)
        # let every connection reach its steady state before counting
        await asyncio.sleep(min(0.2, seconds / 4))
        cpu0 = await _cpu(server)
        r0, t0 = sum(c.replies for c in clients), time.perf_counter()
        await asyncio.sleep(seconds)
        r1, t1 = sum(c.replies for c in clients), time.perf_counter()
        cpu = await _cpu(server) - cpu0
        for client in clients:
            client.stop()
        await asyncio.wait_for(asyncio.gather(*[c.drained for c in clients]), 60)
        return {"rate": (r1 - r0) / (t1 - t0), "cpu_per_request": cpu / max(r1 - r0, 1)}
    finally:
        await loadgen.close_all(clients)


@benchmark("pipeline")
def run_pipeline(ctx):
    """Pipelined requests with message ids at each connection count."""
    size = ctx.size
    katcp_server = ctx.pool.get("async", size.stream_sensors)
    line_server = ctx.pool.get("line", size.stream_sensors)
    rows = []
    for width in size.pipeline_widths:
        def sample(server, width=width):
            return asyncio.run(_pipeline_sample(
                server, width, size.pipeline_depth, size.pipeline_seconds))
        samples = interleave({"katcp": lambda: sample(katcp_server),
                              "line": lambda: sample(line_server)}, size.repeats)
        k, b = medians(samples["katcp"]), medians(samples["line"])
        rows += [
            Row("pipeline.conns_%d" % width, "req/s", k["rate"], b["rate"],
                ("ratio", ">=", 0.5), {"connections": width, "in_flight": size.pipeline_depth,
                                       "samples": samples}),
            Row("pipeline.conns_%d.server_cpu" % width, "us/req",
                k["cpu_per_request"] * 1e6, b["cpu_per_request"] * 1e6),
        ]
    return rows


async def _bulk_sample(address, request, collect=False):
    client = await loadgen.connect(address, lambda: loadgen.LoadClient(collect=collect))
    try:
        t0 = time.perf_counter()
        reply = await client.request(request)
        elapsed = time.perf_counter() - t0
        assert b" ok " in reply, reply
        return client.lines if collect else elapsed
    finally:
        await loadgen.close_all([client])


def _first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return {"line": i, "katcp": x.decode(errors="replace"),
                    "baseline": y.decode(errors="replace")}
    if len(a) != len(b):
        return {"line_counts": [len(a), len(b)]}
    return None


@benchmark("sensor_bulk")
def run_sensor_bulk(ctx):
    """?sensor-value and ?sensor-list of every sensor, from both kinds of server.

    Rows of the ``AsyncDeviceServer`` are ``sensor_bulk.*``, those of the threaded
    ``DeviceServer`` ``sensor_bulk.threaded.*``.
    """
    size = ctx.size
    line_server = ctx.pool.get("line", size.bulk_sensors)
    rows = []
    for kind, prefix in (("async", "sensor_bulk."), ("threaded", "sensor_bulk.threaded.")):
        rows += _bulk_rows(ctx, ctx.pool.get(kind, size.bulk_sensors), line_server, prefix)
    return rows


def _bulk_rows(ctx, katcp_server, line_server, prefix):
    size = ctx.size
    rows = []
    for request in (b"?sensor-value\n", b"?sensor-list\n"):
        name = request[1:].strip().decode()
        katcp_lines, line_lines = [
            asyncio.run(_bulk_sample(s.address, request, collect=True))
            for s in (katcp_server, line_server)]
        difference = _first_difference(katcp_lines, line_lines)
        if difference:
            ctx.say("   %s: servers differ: %s" % (name, difference))
        samples = interleave({
            "katcp": lambda: asyncio.run(_bulk_sample(katcp_server.address, request)),
            "line": lambda: asyncio.run(_bulk_sample(line_server.address, request)),
        }, size.repeats)
        rows.append(Row(prefix + name, "s", median(samples["katcp"]),
                        median(samples["line"]), ("ratio", "<=", 2.0),
                        {"sensors": size.bulk_sensors, "same_bytes": difference is None,
                         "first_difference": difference, "bytes": sum(
                             len(line) + 1 for line in katcp_lines),
                         "samples": samples}))
    return rows
