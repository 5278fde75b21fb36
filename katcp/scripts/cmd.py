"""``katcp-cmd``: send one request to a KATCP device and print what comes back.

Exit status: 0 when the reply is ``ok``, 1 on ``fail`` or ``invalid``, 2 when the device
cannot be reached, goes away or does not reply in time.
"""

import argparse
import contextlib
import sys
import time
from typing import List, Optional, Sequence, TextIO, Tuple

from katcp.scripts._connection import (
    ConnectionFailed, LineConnection, ReplyTimeout, for_people, split_address_argument)
from katcp.wire.message import Message
from katcp.wire.text import readable

EXIT_OK, EXIT_FAIL, EXIT_CONNECTION = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="katcp-cmd", description="Send a KATCP request and print the informs and the reply.",
        epilog="HOST:PORT may be omitted when the KATCP_SERVER environment variable holds it. "
               "Exit status: 0 ok, 1 fail/invalid, 2 connection error or timeout.")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the connection and the reply "
                             "(default: %(default)s)")
    parser.add_argument("--raw", action="store_true",
                        help="print messages exactly as they are on the wire")
    parser.add_argument("--watch", action="store_true",
                        help="stream sensor updates: arguments are SENSOR [STRATEGY [PARAMS]] "
                             "(default strategy: event); stop with Ctrl-C")
    parser.add_argument("--interactive", action="store_true",
                        help="start the interactive shell (katcp-shell)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="[HOST:PORT] REQUEST [ARGS...]")
    return parser


def _show(msg, line, raw, out, fmt=for_people):
    out.write((readable(line) if raw else fmt(msg)) + "\n")
    out.flush()


def _request(conn, request, raw, out, show_informs=()):
    """Send `request`, print its informs and reply (and informs named in `show_informs`);
    return the reply."""
    conn.send(request)
    while True:
        line, msg = conn.read_message()
        if msg is None or msg.mtype == Message.REQUEST:
            continue
        ours = msg.name == request.name and (request.mid is None or msg.mid == request.mid)
        if ours or (msg.mtype == Message.INFORM and msg.name in show_informs):
            _show(msg, line, raw, out)
        if ours and msg.mtype == Message.REPLY:
            return msg


def _format_status(msg):
    # #sensor-status timestamp count name status value [name status value ...]
    args = [readable(a) for a in msg.arguments]
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(args[0])))
        stamp += ("%.3f" % (float(args[0]) % 1))[1:]
    except (ValueError, IndexError, OverflowError):
        stamp = args[0] if args else "?"
    fields = args[2:]
    return "\n".join("%s %s %s %s" % (stamp, fields[i], fields[i + 1], fields[i + 2])
                     for i in range(0, len(fields) - 2, 3))


def run_request(address: Tuple[str, int], request_args: Sequence[str], timeout: float, raw: bool,
                out: TextIO = sys.stdout) -> int:
    with contextlib.closing(LineConnection(address, timeout)) as conn:
        reply = _request(conn, Message.request(*request_args), raw, out)
    return EXIT_OK if reply.reply_ok() else EXIT_FAIL


def run_watch(address: Tuple[str, int], watch_args: Sequence[str], timeout: float, raw: bool,
              out: TextIO = sys.stdout) -> int:
    request = Message.request("sensor-sampling", watch_args[0], *(watch_args[1:] or ["event"]))
    with contextlib.closing(LineConnection(address, timeout)) as conn:
        try:
            reply = _request(conn, request, raw, out, show_informs={"sensor-status"})
            if not reply.reply_ok():
                return EXIT_FAIL
            conn.set_timeout(None)
            while True:
                line, msg = conn.read_message()
                if msg is None or msg.mtype != Message.INFORM:
                    continue
                if msg.name == "sensor-status":
                    _show(msg, line, raw, out, _format_status)
                elif msg.name == "disconnect":
                    raise ConnectionFailed("server disconnected: %s" % for_people(msg))
        except KeyboardInterrupt:
            return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``katcp-cmd``."""
    parser = build_parser()
    opts = parser.parse_args(argv)
    address, rest = split_address_argument(opts.args)
    if opts.interactive:
        from katcp.scripts import shell
        return shell.main(([("%s:%d" % address)] if address else []) +
                          ["--timeout", str(opts.timeout)])
    if address is None:
        parser.error("no server address: give HOST:PORT or set KATCP_SERVER")
    if not rest:
        parser.error("no request given" if not opts.watch else "no sensor given")
    try:
        if opts.watch:
            return run_watch(address, rest, opts.timeout, opts.raw)
        return run_request(address, rest, opts.timeout, opts.raw)
    except ConnectionFailed as exc:
        sys.stderr.write("katcp-cmd: %s\n" % exc)
    except ReplyTimeout:
        sys.stderr.write("katcp-cmd: no reply within %g seconds\n" % opts.timeout)
    except ValueError as exc:
        sys.stderr.write("katcp-cmd: %s\n" % exc)
        return EXIT_FAIL
    return EXIT_CONNECTION


if __name__ == "__main__":
    raise SystemExit(main())
