"""Workload 8: many devices at once, as a telescope's control system sees its dishes.

A ``KATCPClientResourceContainer`` mirrors N device servers (``katcp.AsyncDeviceServer``
with 500 sensors each, served by a few :class:`bench.procs.FleetHost` processes):

* **sync**: from ``start()`` until every child resource is synced, against a minimal
  client (raw asyncio, no katcp code) that connects to all N and fetches ``?help`` and
  ``?sensor-list`` from each;
* **follow**: 10% of each device's sensors change once a second; the container sets the
  ``auto`` strategy on each of them (one ``set_sampling_strategy`` per sensor, as an
  application does) and mirrors the updates; the minimal client asks for the same
  sensors in one bulk ``?sensor-sampling`` per device and keeps the latest line of each.

Each client runs in a fresh process of its own (``python -m bench.bench_fleet``), so its
CPU time and memory are its alone: CPU per mirrored update and per mirrored sensor, and
resident memory per mirrored sensor. N is 16 and 64, to show that both stay flat as
devices are added.
"""

import asyncio
import gc
import json
import os
import subprocess
import sys
import time

from bench import baseline
from bench.harness import Row, benchmark, interleave, medians
from bench.procs import ServerProcess, rss_bytes

TIMEOUT = 300.0
FOLLOW_EVERY = 10
"""Every tenth sensor of each device changes (10%)."""


# -- the clients, each run in a child process ------------------------------------------


def _followed_names(nsensors):
    return [spec.name for spec in baseline.sensor_specs(nsensors)[::FOLLOW_EVERY]]


async def _follow_window(seconds, period):
    """Let one round of updates pass, then measure CPU over ``seconds``."""
    await asyncio.sleep(period)
    start, cpu0, t0 = time.time(), time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    return start, time.process_time() - cpu0, time.perf_counter() - t0


async def _katcp_client(ports, nsensors, seconds, period):
    from tornado.ioloop import IOLoop

    from katcp.resource import escape_name
    from katcp.resource_client import KATCPClientResourceContainer

    gc.collect()
    rss0 = rss_bytes()
    spec = {"name": "fleet", "clients": {
        "dev%03d" % i: {"address": ("127.0.0.1", port), "controlled": True}
        for i, port in enumerate(ports)}}
    container = KATCPClientResourceContainer(spec)
    container.set_ioloop(IOLoop.current())
    cpu0, t0 = time.process_time(), time.perf_counter()
    container.start()
    await container.until_synced(timeout=TIMEOUT)
    sync, sync_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    gc.collect()
    rss1 = rss_bytes()
    children = list(dict.values(container.children))
    followed = _followed_names(nsensors)
    await asyncio.gather(*[child.set_sampling_strategy(name, "auto")
                           for child in children for name in followed])
    start, cpu, elapsed = await _follow_window(seconds, period)
    fresh = sum(child.sensor[escape_name(name)].reading.timestamp >= start
                for child in children for name in followed)
    container.stop()
    await asyncio.gather(*container.until_stopped(TIMEOUT).values())
    return {"sync": sync, "sync_cpu": sync_cpu, "rss_synced": rss1 - rss0,
            "sensors": sum(len(child.sensor) for child in children),
            "followed": len(children) * len(followed), "fresh": fresh,
            "follow_cpu": cpu, "follow_seconds": elapsed}


class _MirrorClient(asyncio.BufferedProtocol):
    """The minimal mirror: sensor-list lines and latest sensor-status lines by name."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.transport = None
        self.greeted = loop.create_future()
        self.sensors = {}
        self.latest = {}
        self.requests = set()
        self._buffer = memoryview(bytearray(65536))
        self._tail = b""
        self._pending = []

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self._buffer

    def buffer_updated(self, nbytes):
        lines = (self._tail + self._buffer[:nbytes].tobytes()).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            if line.startswith(b"#sensor-status "):
                self.latest[line.split(b" ", 4)[3]] = line
            elif line.startswith(b"#sensor-list "):
                self.sensors[line.split(b" ", 2)[1]] = line
            elif line.startswith(b"#help "):
                self.requests.add(line.split(b" ", 2)[1])
            elif line[:1] == b"!":
                self._pending.pop(0).set_result(line)
            elif line.startswith(b"#version-connect katcp-device"):
                self.greeted.set_result(None)

    def connection_lost(self, exc):
        pass

    def request(self, line):
        future = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        self.transport.write(line)
        return future


async def _minimal_client(ports, nsensors, seconds, period):
    loop = asyncio.get_running_loop()

    async def sync(port):
        _, client = await loop.create_connection(_MirrorClient, "127.0.0.1", port)
        await client.greeted
        await asyncio.gather(client.request(b"?help\n"), client.request(b"?sensor-list\n"))
        return client

    gc.collect()
    rss0 = rss_bytes()
    cpu0, t0 = time.process_time(), time.perf_counter()
    clients = await asyncio.wait_for(asyncio.gather(*[sync(port) for port in ports]), TIMEOUT)
    sync_time, sync_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    gc.collect()
    rss1 = rss_bytes()
    followed = _followed_names(nsensors)
    request = b"?sensor-sampling %s auto\n" % ",".join(followed).encode()
    await asyncio.gather(*[client.request(request) for client in clients])
    start, cpu, elapsed = await _follow_window(seconds, period)
    fresh = sum(float(client.latest[name.encode()].split(b" ", 2)[1]) >= start
                for client in clients for name in followed)
    for client in clients:
        client.transport.close()
    return {"sync": sync_time, "sync_cpu": sync_cpu, "rss_synced": rss1 - rss0,
            "sensors": sum(len(client.sensors) for client in clients),
            "followed": len(clients) * len(followed), "fresh": fresh,
            "follow_cpu": cpu, "follow_seconds": elapsed}


def client_main(variant, ports, nsensors, seconds, period):
    """Run one client in this process and print its measurements as JSON."""
    from bench.procs import install_loop, raise_fd_limit
    raise_fd_limit()
    install_loop(os.environ.get("KATCP_EVENT_LOOP", "asyncio"))
    fn = _katcp_client if variant == "katcp" else _minimal_client
    print(json.dumps(asyncio.run(fn(ports, nsensors, seconds, period))))


# -- the parent side ---------------------------------------------------------------------


def _client_sample(variant, ports, nsensors, seconds, period):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_fleet", variant, json.dumps(ports), str(nsensors),
         str(seconds), str(period)], env=env, capture_output=True, text=True,
        timeout=TIMEOUT + 60)
    if out.returncode:
        raise RuntimeError("fleet %s client failed:\n%s" % (variant, out.stderr))
    result = json.loads(out.stdout.strip().splitlines()[-1])
    expected = len(ports) * nsensors
    if result["sensors"] != expected:
        raise RuntimeError("fleet %s client mirrored %d sensors of %d"
                           % (variant, result["sensors"], expected))
    return result


def _measure(ctx, devices):
    size = ctx.size
    processes = min(size.fleet_processes, devices)
    hosts = [ServerProcess("fleet", size.fleet_sensors, ctx.pool.loop,
                           count=devices // processes) for _ in range(processes)]
    try:
        ports = [port for host in hosts for port in host.port]
        for host in hosts:
            host.call("start_updates", FOLLOW_EVERY, size.fleet_period)
        args = (ports, size.fleet_sensors, size.fleet_seconds, size.fleet_period)
        samples = interleave({"katcp": lambda: _client_sample("katcp", *args),
                              "minimal": lambda: _client_sample("minimal", *args)},
                             size.fleet_repeats)
        for host in hosts:
            host.call("stop_updates")
    finally:
        for host in hosts:
            host.close()
    return {key: _derived(medians(s)) for key, s in samples.items()}, samples


def _derived(m):
    m["fresh_fraction"] = m["fresh"] / m["followed"]
    # updates mirrored in the window: one per followed sensor and period
    m["cpu_per_update"] = m["follow_cpu"] / m["follow_seconds"] / m["followed"]
    m["cpu_per_sensor"] = m["follow_cpu"] / m["follow_seconds"] / m["sensors"]
    m["memory_per_sensor"] = m["rss_synced"] / m["sensors"]
    return m


@benchmark("fleet")
def run_fleet(ctx):
    """A resource container of many devices: sync, then follow 10% of sensors at 1 Hz."""
    size = ctx.size
    rows = []
    per_devices = {}
    for devices in size.fleet_devices:
        ctx.say("   %d devices" % devices)
        m, samples = _measure(ctx, devices)
        per_devices[devices] = m["katcp"]
        k, b = m["katcp"], m["minimal"]
        prefix = "fleet.devices_%d." % devices
        extra = {"devices": devices, "sensors_per_device": size.fleet_sensors,
                 "followed_per_device": len(_followed_names(size.fleet_sensors)),
                 "period": size.fleet_period, "window": size.fleet_seconds}
        rows += [
            Row(prefix + "sync", "s", k["sync"], b["sync"], ("ratio", "<=", 2.0),
                dict(extra, samples=samples)),
            Row(prefix + "sync_cpu", "s", k["sync_cpu"], b["sync_cpu"], None, extra),
            Row(prefix + "fresh_fraction", "frac", k["fresh_fraction"], b["fresh_fraction"],
                ("value", ">=", 1.0), extra),
            Row(prefix + "cpu_per_update", "us", k["cpu_per_update"] * 1e6,
                b["cpu_per_update"] * 1e6, None, extra),
            Row(prefix + "cpu_per_mirrored_sensor", "us/s", k["cpu_per_sensor"] * 1e6,
                b["cpu_per_sensor"] * 1e6, None, extra),
            Row(prefix + "memory_per_mirrored_sensor", "B", k["memory_per_sensor"],
                b["memory_per_sensor"], None, extra),
        ]
    few, many = min(per_devices), max(per_devices)
    if few != many:
        # flat: the katcp client's figures with many devices against those with few
        extra = {"devices": [many, few]}
        rows += [
            Row("fleet.flat.cpu_per_update", "us", per_devices[many]["cpu_per_update"] * 1e6,
                per_devices[few]["cpu_per_update"] * 1e6, ("ratio", "<=", 1.5), extra),
            Row("fleet.flat.memory_per_mirrored_sensor", "B",
                per_devices[many]["memory_per_sensor"], per_devices[few]["memory_per_sensor"],
                ("ratio", "<=", 1.25), extra),
        ]
    return rows


if __name__ == "__main__":
    client_main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]),
                float(sys.argv[5]))
