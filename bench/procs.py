"""Servers under test, each in its own process.

A separate process lets the benchmark read the server's own CPU time and
memory, and keeps the load generator off the server's GIL. The parent talks
to the child over a socket pair: the child's main thread waits for commands
while the server runs on its event loop thread.

Kinds: ``'line'`` (the baseline :class:`bench.baseline.LineServer`),
``'async'`` (``katcp.AsyncDeviceServer``) and ``'threaded'``
(``katcp.DeviceServer`` with its handler thread).
"""

import asyncio
import concurrent.futures
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import traceback
import tracemalloc
from multiprocessing.connection import Connection

from bench import baseline, profiling

LOOP_ENV = "KATCP_EVENT_LOOP"
"""katcp's event loop switch (:mod:`katcp.loop.policy`); the children get it too."""
START_TIMEOUT = 120.0
CALL_TIMEOUT = 300.0


def raise_fd_limit(wanted=16384):
    """Raise this process's open-file soft limit towards ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def rss_bytes():
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# -- child side -------------------------------------------------------------------


class _Host:
    """Common commands of a server living in the child process."""

    port = None

    def cmd_cpu(self):
        # CLOCK_PROCESS_CPUTIME_ID: all threads, ns resolution (os.times ticks at 10 ms)
        return time.process_time()

    def cmd_rss(self):
        return rss_bytes()

    def cmd_trace_start(self):
        tracemalloc.start()

    def cmd_trace_stop(self):
        """Python heap bytes allocated and still held since ``trace_start``."""
        current = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return current


class LineHost(_Host):
    """The baseline line server on an asyncio loop thread."""

    def __init__(self, nsensors):
        self.server = baseline.LineServer(baseline.sensor_specs(nsensors))
        self.loop = asyncio.new_event_loop()
        started = concurrent.futures.Future()

        def serve():
            asyncio.set_event_loop(self.loop)
            listener = self.loop.run_until_complete(self.server.start())
            started.set_result(listener.sockets[0].getsockname()[1])
            self.loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        self.port = started.result(START_TIMEOUT)

    def cmd_produce(self, count, duration):
        async def produce():
            done = self.loop.create_future()
            self.server.produce(count, duration, done)
            return await done
        return asyncio.run_coroutine_threadsafe(produce(), self.loop).result(CALL_TIMEOUT)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


def _bench_server_class(base):
    """A katcp device server class serving :func:`baseline.sensor_specs`."""
    from katcp import ProtocolFlags, Sensor

    types = {"integer": Sensor.INTEGER, "float": Sensor.FLOAT,
             "boolean": Sensor.BOOLEAN, "string": Sensor.STRING}

    class BenchServer(base):
        VERSION_INFO = ("bench-api", 1, 0)
        BUILD_INFO = ("bench-impl", 1, 0, "")
        PROTOCOL_INFO = ProtocolFlags(5, 1, {
            ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS,
            ProtocolFlags.BULK_SET_SENSOR_SAMPLING})

        def __init__(self, specs, *args, **kwargs):
            # setup_sensors() runs inside the base __init__
            self._specs = specs
            super().__init__(*args, **kwargs)

        def setup_sensors(self):
            """Add the benchmark sensors with fixed readings."""
            for spec in self._specs:
                sensor = Sensor(types[spec.stype], spec.name, spec.description,
                                spec.units, spec.params or None)
                sensor.set_value(spec.value, Sensor.NOMINAL, baseline.T0)
                self.add_sensor(sensor)

    return BenchServer


class KatcpHost(_Host):
    """A katcp device server: ``'async'`` or ``'threaded'``."""

    def __init__(self, kind, nsensors):
        import katcp
        self.kind = kind
        self.rounds = 0  # as LineServer.rounds
        self.specs = baseline.sensor_specs(nsensors)
        if kind == "threaded":
            self.server = _bench_server_class(katcp.DeviceServer)(
                self.specs, "127.0.0.1", 0)
            self.server.start(timeout=START_TIMEOUT)
        else:
            self.server = self._start_async(_bench_server_class(katcp.AsyncDeviceServer))
        self.port = self.server.bind_address[1]
        self.sensors = [self.server.get_sensor(s.name) for s in self.specs]

    def _start_async(self, cls):
        # AsyncDeviceServer adopts the current IOLoop, so it is built on the
        # thread that then runs that loop, as an application would do.
        from tornado.ioloop import IOLoop
        created = concurrent.futures.Future()

        def serve():
            asyncio.set_event_loop(asyncio.new_event_loop())
            ioloop = IOLoop.current()
            try:
                server = cls(self.specs, "127.0.0.1", 0)
                server.start()
            except Exception as exc:
                created.set_exception(exc)
                return
            ioloop.add_callback(created.set_result, server)
            profiling.run_profiled(ioloop.start, "server-async")
            self._loop_done.set()

        self._loop_done = threading.Event()
        threading.Thread(target=serve, daemon=True).start()
        server = created.result(START_TIMEOUT)
        server.wait_running(START_TIMEOUT)
        return server

    def cmd_produce(self, count, duration):
        ioloop = self.server.ioloop
        work = [(sensor, spec.stype) for sensor, spec in zip(self.sensors, self.specs)][:count]
        done = concurrent.futures.Future()
        value = baseline.stream_value

        # plain call_soon between rounds, as the line server does (tornado's
        # add_callback would also write to the loop's wake-up pipe each time)
        loop = ioloop.asyncio_loop

        def start():
            deadline = loop.time() + duration
            first = self.rounds + 1

            def one_round(counter):
                for sensor, stype in work:
                    sensor.set_value(value(stype, counter))
                self.rounds = counter
                if loop.time() < deadline:
                    loop.call_soon(one_round, counter + 1)
                else:
                    done.set_result(counter - first + 1)

            one_round(first)

        ioloop.add_callback(start)
        return done.result(CALL_TIMEOUT)

    def stop(self):
        self.server.stop(timeout=10).result(10)
        if self.kind == "async":
            # our own loop: stop it so that a profile of it gets written
            self.server.ioloop.add_callback(self.server.ioloop.stop)
            self._loop_done.wait(10)


class FleetHost(_Host):
    """Several ``katcp.AsyncDeviceServer`` on one loop thread: part of a fleet.

    Parameters
    ----------
    nsensors : int
        Sensors per server.
    count : int
        Servers in this process; ``port`` is the list of their ports.
    """

    def __init__(self, nsensors, count):
        import katcp
        from tornado.ioloop import IOLoop
        self.specs = baseline.sensor_specs(nsensors)
        cls = _bench_server_class(katcp.AsyncDeviceServer)
        self.loop = asyncio.new_event_loop()
        self._updater = None
        self.rounds = 0
        created = concurrent.futures.Future()

        def serve():
            asyncio.set_event_loop(self.loop)
            ioloop = IOLoop.current()
            try:
                servers = [cls(self.specs, "127.0.0.1", 0) for _ in range(count)]
                for server in servers:
                    server.start()
            except Exception as exc:
                created.set_exception(exc)
                return
            ioloop.add_callback(created.set_result, servers)
            self.loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        self.servers = created.result(START_TIMEOUT)
        for server in self.servers:
            server.wait_running(START_TIMEOUT)
        self.port = [server.bind_address[1] for server in self.servers]

    def cmd_start_updates(self, every, period):
        """Every ``period`` s give each server's sensors ``0, every, 2 every...`` new values."""
        work = [(server.get_sensor(spec.name), spec.stype)
                for server in self.servers for spec in self.specs[::every]]
        value = baseline.stream_value

        def one_round():
            self.rounds += 1
            for sensor, stype in work:
                sensor.set_value(value(stype, self.rounds))
            self._updater = self.loop.call_later(period, one_round)

        self.loop.call_soon_threadsafe(one_round)

    def cmd_stop_updates(self):
        """Stop updating; return the number of rounds made."""
        done = concurrent.futures.Future()

        def stop():
            if self._updater is not None:
                self._updater.cancel()
            done.set_result(self.rounds)

        self.loop.call_soon_threadsafe(stop)
        return done.result(CALL_TIMEOUT)

    def stop(self):
        for server in self.servers:
            server.stop(timeout=10).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def install_loop(name):
    """Make this process's new event loops ``name`` loops (``'asyncio'`` or ``'uvloop'``).

    Plain asyncio code (``asyncio.run()``, the line server, the load generator)
    follows the event loop policy, katcp's managed loops ``KATCP_EVENT_LOOP``, and
    server processes started afterwards inherit both choices.
    """
    if name == "uvloop":
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(None)
    os.environ[LOOP_ENV] = name


def child_main(kind, nsensors, conn, count=1):
    """Serve in this process, obeying commands from ``conn`` until 'stop'."""
    raise_fd_limit()
    install_loop(os.environ.get(LOOP_ENV, "asyncio"))
    try:
        host = (LineHost(nsensors) if kind == "line" else
                FleetHost(nsensors, count) if kind == "fleet" else KatcpHost(kind, nsensors))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", (host.port, os.getpid())))
    while True:
        try:
            cmd, args = conn.recv()
        except EOFError:
            return
        if cmd == "stop":
            try:
                host.stop()
            finally:
                conn.send(("ok", None))
            return
        try:
            conn.send(("ok", getattr(host, "cmd_" + cmd)(*args)))
        except Exception:
            conn.send(("error", traceback.format_exc()))


# -- parent side ----------------------------------------------------------------------


class ServerProcess:
    """A benchmark server running in a child process.

    The child is a fresh interpreter (``python -m bench.procs``), so it
    inherits no threads or loops from the caller and needs no ``__main__``
    guard there; commands travel over a socket pair.

    Parameters
    ----------
    kind : {'line', 'async', 'threaded', 'fleet'}
        Which server (``'fleet'``: `count` async katcp servers, see :class:`FleetHost`).
    nsensors : int
        Number of sensors (:func:`baseline.sensor_specs`), per server.
    loop : {'asyncio', 'uvloop'}
        The event loop of the child's servers.
    count : int
        Number of servers, for ``'fleet'``; ``port`` is then a list.
    """

    def __init__(self, kind, nsensors, loop="asyncio", count=1):
        self.kind = kind
        self.loop = loop
        ours, theirs = socket.socketpair()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        env[LOOP_ENV] = loop
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.procs", kind, str(nsensors),
             str(theirs.fileno()), str(count)], pass_fds=[theirs.fileno()], env=env)
        theirs.close()
        self._conn = Connection(ours.detach())
        self._lock = threading.Lock()
        self.port, self.pid = self._receive(START_TIMEOUT)
        self.address = ("127.0.0.1", self.port)

    def _receive(self, timeout):
        if not self._conn.poll(timeout):
            raise TimeoutError("%s server process did not answer" % self.kind)
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError("%s server process failed:\n%s" % (self.kind, value))
        return value

    def call(self, cmd, *args):
        """Run a command in the child and return its result (thread-safe)."""
        with self._lock:
            self._conn.send((cmd, args))
            return self._receive(CALL_TIMEOUT)

    def cpu(self):
        """User + system CPU seconds the server process has used."""
        return self.call("cpu")

    def rss(self):
        """Resident memory of the server process in bytes."""
        return self.call("rss")

    def produce(self, count, duration):
        """Update the first ``count`` sensors in rounds; return the rounds."""
        return self.call("produce", count, duration)

    def close(self):
        """Stop the server and its process."""
        if self.process.poll() is None:
            try:
                self.call("stop")
                self.process.wait(10)
            except (OSError, EOFError, TimeoutError, RuntimeError,
                    subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(10)
        self._conn.close()


class ServerPool:
    """Server processes shared by the benchmarks of one run, by kind and size.

    Parameters
    ----------
    loop : {'asyncio', 'uvloop'}
        The event loop of every server the pool starts.
    """

    def __init__(self, loop="asyncio"):
        self.loop = loop
        self._servers = {}

    def get(self, kind, nsensors):
        """The server of ``kind`` with ``nsensors`` sensors, started on first use."""
        key = (kind, nsensors)
        if key not in self._servers:
            self._servers[key] = ServerProcess(kind, nsensors, self.loop)
        return self._servers[key]

    def close(self):
        """Stop every server."""
        for server in self._servers.values():
            server.close()
        self._servers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    child_main(sys.argv[1], int(sys.argv[2]), Connection(int(sys.argv[3])), int(sys.argv[4]))
