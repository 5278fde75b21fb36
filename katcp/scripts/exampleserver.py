"""``katcp-exampleserver``: a small device server to try clients against.

It is the server of the tutorial (``?add``, ``?time``, ``?pick-fruit``, ``?raw-reverse``) plus a
few sensors that change over time, so that sampling strategies have something to report.
"""

import argparse
import math
import random
import signal
import threading
import time
from typing import Any, List, Optional, Tuple

from katcp import AsyncReply, DeviceServer, Message, ProtocolFlags, Sensor
from katcp.kattypes import Discrete, Float, Timestamp, request, return_reply
from katcp.scripts._cli import (
    EXIT_CONNECTION, EXIT_OK, ToolParser, add_logging_options, cannot_listen, configure_logging,
    exit_status_text, run_tool)
from katcp.scripts._connection import AddressError, check_address
from katcp.server import ClientRequestConnection
from katcp.wire.types import address_text

PROG = "katcp-exampleserver"

FRUIT = ["apple", "banana", "pear", "kiwi"]


class ExampleServer(DeviceServer):
    """The tutorial's device server with a slowly varying temperature sensor.

    Parameters
    ----------
    host : str
        Address to listen on ("" for all interfaces, "127.0.0.1" for loopback only).
    port : int
        Port to listen on (0 picks a free port: see ``bind_address`` after start).
    """

    VERSION_INFO = ("example-api", 1, 0)
    BUILD_INFO = ("katcp-example-server", 0, 1, "")
    PROTOCOL_INFO = ProtocolFlags(5, 0, {ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS})

    UPDATE_PERIOD = 0.5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stop_updates = threading.Event()

    def setup_sensors(self) -> None:
        """Set up the sensors of the example device."""
        self._add_result = Sensor.float("add.result", "Last ?add result.", "", [-10000, 10000])
        self._time_result = Sensor.timestamp("time.result", "Last ?time result.", "")
        self._fruit_result = Sensor.discrete("fruit.result", "Last ?pick-fruit result.", "", FRUIT)
        self._temperature = Sensor.float(
            "ambient.temperature", "Air temperature near the device.", "degC",
            [-40.0, 60.0], default=20.0, initial_status=Sensor.NOMINAL)
        self._uptime = Sensor.integer("uptime", "Seconds since the server started.", "s",
                                      [0, 2 ** 31 - 1], default=0, initial_status=Sensor.NOMINAL)
        for sensor in (self._add_result, self._time_result, self._fruit_result,
                       self._temperature, self._uptime):
            self.add_sensor(sensor)

    def start(self, *args: Any, **kwargs: Any) -> None:
        super().start(*args, **kwargs)
        self._stop_updates.clear()
        threading.Thread(target=self._update_sensors, name="example-sensor-updater",
                         daemon=True).start()

    def stop(self, *args: Any, **kwargs: Any) -> Any:
        self._stop_updates.set()
        return super().stop(*args, **kwargs)

    def _update_sensors(self):
        # Sensor.set_value is thread safe, so a plain thread can drive the "hardware".
        started = time.time()
        while not self._stop_updates.wait(self.UPDATE_PERIOD):
            elapsed = time.time() - started
            temperature = 20.0 + 5.0 * math.sin(elapsed / 60.0) + random.gauss(0, 0.05)
            status = Sensor.NOMINAL if temperature < 24.5 else Sensor.WARN
            self._temperature.set_value(temperature, status)
            self._uptime.set_value(int(elapsed))

    @request(Float(), Float())
    @return_reply(Float())
    def request_add(self, req: ClientRequestConnection, x: float, y: float) -> Tuple[str, float]:
        """Add two numbers."""
        r = x + y
        self._add_result.set_value(r)
        return ("ok", r)

    @request()
    @return_reply(Timestamp())
    def request_time(self, req: ClientRequestConnection) -> Tuple[str, float]:
        """Return the current time in seconds since the Unix Epoch."""
        r = time.time()
        self._time_result.set_value(r)
        return ("ok", r)

    @request()
    @return_reply(Discrete(FRUIT))
    def request_pick_fruit(self, req: ClientRequestConnection) -> Tuple[str, str]:
        """Pick a random fruit (replies after a short delay)."""
        r = random.choice(FRUIT + [None])
        if r is None:
            return ("fail", "No fruit.")
        delay = random.uniform(0.1, 0.5)
        req.inform("Picking will take %.1f seconds" % delay)

        def pick_handler() -> None:
            self._fruit_result.set_value(r)
            req.reply("ok", r)

        self.ioloop.add_callback(self.ioloop.call_later, delay, pick_handler)
        raise AsyncReply()

    def request_raw_reverse(self, req: ClientRequestConnection, msg: Message) -> Message:
        """Reply with the request's arguments in reverse order."""
        return req.make_reply("ok", *msg.arguments[::-1])


def _host(text: str) -> str:
    # An IPv6 host as addresses write it, in brackets, or without them.
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if "[" in host or "]" in host:
        raise argparse.ArgumentTypeError(
            "expected a host name or an IP address (127.0.0.1, ::1 or [::1]), got %r" % text)
    return host


def _port(text: str) -> int:
    try:
        return check_address(":" + text, any_port=True)[1]
    except AddressError:
        raise argparse.ArgumentTypeError(
            "expected a port number from 0 (any free port) to 65535, got %r" % text)


def build_parser() -> ToolParser:
    """The command line of katcp-exampleserver."""
    parser = ToolParser(PROG, epilog="Stop it with Ctrl-C, SIGTERM or the ?halt request.\n\n"
                        + exit_status_text({
                            EXIT_OK: "stopped by ?halt or SIGTERM",
                            EXIT_CONNECTION: "cannot listen on the address (port in use, "
                                             "or not an address of this machine)"}))
    parser.add_argument("--host", type=_host, default="127.0.0.1",
                        help="address to listen on (default: %(default)s; '' for all; an "
                             "IPv6 address with or without brackets)")
    parser.add_argument("--port", type=_port, default=5000,
                        help="port to listen on, 0 for any free port (default: %(default)s)")
    add_logging_options(parser, default="INFO")
    return parser


def _main(argv: Optional[List[str]]) -> int:
    opts = build_parser().parse_args(argv)
    configure_logging(opts)
    server = ExampleServer(opts.host, opts.port)
    try:
        server.start(timeout=5.0)
    except OSError as exc:
        raise cannot_listen(opts.host, opts.port, exc)
    try:
        print("katcp example server listening on %s" % address_text(server.bind_address),
              flush=True)
        signal.signal(signal.SIGTERM, lambda signum, frame: server.stop())
        while server.running():
            server.join(timeout=0.5)
    finally:
        # Not once stopped (by ?halt or SIGTERM): stop() then waits its whole timeout for
        # the server to run, as in 0.9.3.
        if server.running():
            server.stop()
        server.join(timeout=5.0)
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    """Run the example server until interrupted or sent ``?halt``."""
    return run_tool(PROG, _main, argv, output_needed=False)


if __name__ == "__main__":
    raise SystemExit(main())
