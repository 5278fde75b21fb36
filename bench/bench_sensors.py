"""Workloads 5-6: sensor sampling, with the server's CPU measured.

* ``streaming``: 1000 sensors on the event strategy updated in rounds, as
  fast as the server's loop allows, for 3 s, to 1 and to 10 clients. Server
  CPU per delivered #sensor-status inform, and each client's lag (receive
  time minus the inform's timestamp) and delivered/expected count.
* ``periodic``: 1000 sensors with period 0.01 s on one client for 3 s:
  delivered fraction of the ideal count, server CPU per inform, and the time
  to set the 1000 strategies (pipelined ``?sensor-sampling`` requests).

The server's producer runs on the server's own loop (the katcp side calls
``Sensor.set_value``; the line server formats and writes the same informs),
so the CPU time of the server process covers producing and delivering.
"""

import asyncio
import time

from bench import baseline, loadgen
from bench.harness import Row, benchmark, interleave, medians


async def _in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def _subscribe(client, names, strategy):
    """Set ``strategy`` on every sensor with pipelined requests."""
    futures = [client.request(b"?sensor-sampling[%d] %s %s\n" % (i + 1, name, strategy))
               for i, name in enumerate(names)]
    replies = await asyncio.wait_for(asyncio.gather(*futures), 120)
    bad = [r for r in replies if b" ok " not in r]
    assert not bad, bad[:3]


async def _stream_sample(server, nclients, nsensors, seconds):
    names = [s.name.encode() for s in baseline.sensor_specs(nsensors)]
    clients = await loadgen.connect_many(server.address, nclients)
    try:
        for client in clients:
            await _subscribe(client, names, b"event")
        for client in clients:
            client.informs = 0
            client.track_lag = True
        cpu0 = await _in_thread(server.cpu)
        rounds = await _in_thread(server.produce, nsensors, seconds)
        stopped = time.perf_counter()
        # a reply comes after every inform queued before it: the client is drained
        await asyncio.wait_for(asyncio.gather(
            *[c.request(b"?watchdog\n") for c in clients if not c.closed.done()]), 120)
        drain = time.perf_counter() - stopped
        cpu = await _in_thread(server.cpu) - cpu0
        delivered = sum(c.informs for c in clients)
        expected = rounds * nsensors * nclients
        return {"cpu_per_inform": cpu / max(delivered, 1),
                "informs_per_s": delivered / seconds,
                "delivered_fraction": delivered / expected,
                # a client short of updates yet still connected fell behind silently
                "silently_behind": sum(c.informs < rounds * nsensors and not c.closed.done()
                                       for c in clients),
                "max_lag": max(c.max_lag for c in clients),
                "drain": drain,
                "disconnected": sum(c.closed.done() for c in clients)}
    finally:
        await loadgen.close_all([c for c in clients if not c.closed.done()])


def _worst(samples, field, side):
    return float(max(s[field] for s in samples[side]))


@benchmark("streaming")
def run_streaming(ctx):
    """Event-strategy streaming to 1 and to 10 clients, from both kinds of server.

    Rows of the ``AsyncDeviceServer`` are ``streaming.clients_N.*``, those of the
    threaded ``DeviceServer`` ``streaming.threaded.clients_N.*`` (the cost per inform
    and whether each client got every update).
    """
    size = ctx.size
    line_server = ctx.pool.get("line", size.stream_sensors)
    rows = []
    for kind, name in (("async", "streaming."), ("threaded", "streaming.threaded.")):
        katcp_server = ctx.pool.get(kind, size.stream_sensors)
        kind_rows = _streaming_rows(size, katcp_server, line_server, name)
        if kind == "threaded":
            kind_rows = [row for row in kind_rows if row.name.rpartition(".")[2] in (
                "cpu_per_inform", "delivered_fraction", "silently_behind_clients")]
        rows += kind_rows
    return rows


def _streaming_rows(size, katcp_server, line_server, name):
    rows = []
    for nclients in size.stream_clients:
        def sample(server, nclients=nclients):
            return asyncio.run(_stream_sample(server, nclients, size.stream_sensors,
                                              size.stream_seconds))
        samples = interleave({"katcp": lambda: sample(katcp_server),
                              "line": lambda: sample(line_server)}, size.repeats)
        k, b = medians(samples["katcp"]), medians(samples["line"])
        prefix = "%sclients_%d." % (name, nclients)
        extra = {"sensors": size.stream_sensors, "seconds": size.stream_seconds,
                 "katcp": k, "line": b, "samples": samples}
        rows += [
            Row(prefix + "cpu_per_inform", "us", k["cpu_per_inform"] * 1e6,
                # the target: within 2x of the batched floor
                b["cpu_per_inform"] * 1e6, ("ratio", "<=", 2.0), extra),
            Row(prefix + "informs_per_s", "msg/s", k["informs_per_s"], b["informs_per_s"]),
            Row(prefix + "max_lag", "s", k["max_lag"], b["max_lag"]),
            Row(prefix + "drain_after_stop", "s", k["drain"], b["drain"]),
            Row(prefix + "delivered_fraction", "frac", k["delivered_fraction"],
                b["delivered_fraction"]),
            Row(prefix + "disconnected_clients", "n",
                _worst(samples, "disconnected", "katcp"), _worst(samples, "disconnected", "line")),
            # every client receives every update or is visibly disconnected
            Row(prefix + "silently_behind_clients", "n",
                _worst(samples, "silently_behind", "katcp"),
                _worst(samples, "silently_behind", "line"), ("value", "<=", 0)),
        ]
    return rows


async def _periodic_sample(server, nsensors, period, seconds):
    names = [s.name.encode() for s in baseline.sensor_specs(nsensors)]
    client = await loadgen.connect(server.address)
    try:
        t0 = time.perf_counter()
        await _subscribe(client, names, b"period %r" % period)
        set_time = time.perf_counter() - t0
        cpu0 = await _in_thread(server.cpu)
        client.informs = 0
        w0 = time.perf_counter()
        await asyncio.sleep(seconds)
        delivered, w1 = client.informs, time.perf_counter()
        cpu = await _in_thread(server.cpu) - cpu0
        ideal = nsensors * (w1 - w0) / period
        return {"delivered_fraction": delivered / ideal,
                "cpu_per_inform": cpu / max(delivered, 1),
                "set_time": set_time}
    finally:
        await loadgen.close_all([client])


@benchmark("periodic")
def run_periodic(ctx):
    """Period strategy on many sensors for one client."""
    size = ctx.size
    katcp_server = ctx.pool.get("async", size.periodic_sensors)
    line_server = ctx.pool.get("line", size.periodic_sensors)

    def sample(server):
        return asyncio.run(_periodic_sample(server, size.periodic_sensors,
                                            size.periodic_period, size.periodic_seconds))

    samples = interleave({"katcp": lambda: sample(katcp_server),
                          "line": lambda: sample(line_server)}, size.repeats)
    k, b = medians(samples["katcp"]), medians(samples["line"])
    extra = {"sensors": size.periodic_sensors, "period": size.periodic_period,
             "seconds": size.periodic_seconds, "samples": samples}
    return [
        Row("periodic.delivered_fraction", "frac", k["delivered_fraction"],
            b["delivered_fraction"], ("value", ">=", 0.99), extra),
        Row("periodic.cpu_per_inform", "us", k["cpu_per_inform"] * 1e6,
            b["cpu_per_inform"] * 1e6, ("ratio", "<=", 1.5)),
        Row("periodic.set_strategies", "s", k["set_time"], b["set_time"],
            ("value", "<=", 0.2)),
    ]
