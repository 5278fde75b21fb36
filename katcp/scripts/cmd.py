"""``katcp-cmd``: send one request to a KATCP device and print what comes back.

The options and the address come first, in any order; from the request name on, every word
is sent to the device as it is (see :func:`katcp.scripts._cli.split_command_line`). The exit
status tells how the request went: see ``EPILOG``.
"""

import contextlib
import functools
import sys
import time
from typing import List, NoReturn, Optional, Sequence, TextIO, Tuple

from katcp.scripts._cli import (
    EXIT_CONNECTION, EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_PIPE, ToolError, ToolParser,
    add_logging_options, configure_logging, exit_status_text, run_tool, seconds, split_command_line)
from katcp.scripts._connection import (
    ADDRESS_EXAMPLE, DEFAULT_ENV_VAR, ConnectionFailed, Deadline, LineConnection, ReplyTimeout,
    chosen_address, for_people, looks_like_address, shown_argument, typed_arguments)
from katcp.wire.message import Message
from katcp.wire.text import readable
from katcp.wire.types import ms_to_seconds

PROG = "katcp-cmd"
EPILOG = """\
The options and HOST:PORT come before the request, in any order. From the request name
on, every word is sent to the device as it is, even one that starts with '-'; '--' ends
the options explicitly.

environment:
  %s  HOST:PORT of the device, when the command line gives none

%s
examples:
  katcp-cmd localhost:5000 help add
  katcp-cmd --raw localhost:5000 sensor-value uptime
  katcp-cmd --watch localhost:5000 ambient.temperature period 1
  KATCP_SERVER=localhost:5000 katcp-cmd add 3 6
""" % (DEFAULT_ENV_VAR, exit_status_text({
    EXIT_OK: "the reply is ok",
    EXIT_FAIL: "the reply is fail or invalid",
    EXIT_CONNECTION: "cannot connect, connection lost, or no reply within the timeout",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (the way --watch ends)",
    EXIT_PIPE: "the output pipe was closed (katcp-cmd ... | head -1)"}))


def build_parser() -> ToolParser:
    """The command line of katcp-cmd."""
    parser = ToolParser(
        PROG, epilog=EPILOG,
        usage="%(prog)s [OPTIONS] [HOST:PORT] REQUEST [ARGUMENT ...]\n"
              "       %(prog)s --watch [OPTIONS] [HOST:PORT] SENSOR [STRATEGY [PARAMETER ...]]\n"
              "       %(prog)s --interactive [OPTIONS] [HOST:PORT]")
    parser.add_argument("--timeout", type=seconds,  default=5.0, metavar="SECONDS",
                        help="seconds to wait for the connection, then for the reply "
                             "however many informs come first (inf: no limit; default: "
                             "%(default)s)")
    parser.add_argument("--raw", action="store_true",
                        help="print messages exactly as they are on the wire")
    parser.add_argument("--watch", action="store_true",
                        help="stream sensor updates: the operands are SENSOR [STRATEGY "
                             "[PARAMETER ...]] (default strategy: event); stop with Ctrl-C")
    parser.add_argument("--interactive", action="store_true",
                        help="start the interactive shell (katcp-shell)")
    add_logging_options(parser)
    return parser


def _show(msg, line, raw, out, fmt=for_people):
    binary = getattr(out, "buffer", None) if raw else None
    if binary is not None:
        # The line's own bytes, which need not be UTF-8: the text layer would change them.
        out.flush()
        binary.write(line + b"\n")
        binary.flush()
        return
    out.write((readable(line) if raw else fmt(msg)) + "\n")
    out.flush()


def _request(conn, request, timeout, raw, out, show_informs=()):
    """Send `request`, print its informs and reply (and informs named in `show_informs`);
    return the reply, which must come within `timeout` seconds."""
    deadline = Deadline(timeout)
    conn.send(request)
    while True:
        line, msg = conn.read_message(deadline)
        if msg is None or msg.mtype == Message.REQUEST:
            continue
        ours = msg.name == request.name and (request.mid is None or msg.mid == request.mid)
        if ours or (msg.mtype == Message.INFORM and msg.name in show_informs):
            _show(msg, line, raw, out)
        if ours and msg.mtype == Message.REPLY:
            return msg


def _format_status(msg, timestamps_in_ms=False):
    # #sensor-status timestamp count name status value [name status value ...]
    args = [readable(a) for a in msg.arguments]
    try:
        seconds = float(args[0])
        if timestamps_in_ms:
            seconds = ms_to_seconds(seconds)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
        stamp += ("%.3f" % (seconds % 1))[1:]
    # OSError: a time beyond the platform's calendar (a device's nanoseconds, say), which
    # is no failure of the output.
    except (ValueError, IndexError, OverflowError, OSError):
        stamp = shown_argument(args[0]) if args else "?"
    fields = [shown_argument(field) for field in args[2:]]
    return "\n".join("%s %s %s %s" % (stamp, fields[i], fields[i + 1], fields[i + 2])
                     for i in range(0, len(fields) - 2, 3))


def run_request(address: Tuple[str, int], request: Message, timeout: float, raw: bool,
                out: TextIO = sys.stdout) -> int:
    """Send `request` to the device at `address`, print its informs and reply to `out`
    (as received if `raw`) and return the exit status: whether it succeeded."""
    with contextlib.closing(LineConnection(address, timeout)) as conn:
        reply = _request(conn, request, timeout, raw, out)
    return EXIT_OK if reply.reply_ok() else EXIT_FAIL


def run_watch(address: Tuple[str, int], request: Message, timeout: float, raw: bool,
              out: TextIO = sys.stdout) -> int:
    """Set a sampling strategy with `request` and print the updates until interrupted."""
    with contextlib.closing(LineConnection(address, timeout)) as conn:
        reply = _request(conn, request, timeout, raw, out, show_informs={"sensor-status"})
        if not reply.reply_ok():
            return EXIT_FAIL
        while True:
            line, msg = conn.read_message()
            if msg is None or msg.mtype != Message.INFORM:
                continue
            if msg.name == "sensor-status":
                _show(msg, line, raw, out,
                      functools.partial(_format_status, timestamps_in_ms=conn.timestamps_in_ms))
            elif msg.name == "disconnect":
                raise ConnectionFailed("server disconnected: %s" % for_people(msg))


def _make_request(parser: ToolParser, operands: Sequence[str], watch: bool) -> Message:
    if watch:
        return Message.request("sensor-sampling",
                               *typed_arguments([operands[0], *(operands[1:] or ["event"])]))
    try:
        return Message.request(operands[0], *typed_arguments(operands[1:]))
    except ValueError:
        parser.error("%r is not a request name (a letter, then letters, digits and '-')"
                     % operands[0])


def _no_address(parser: ToolParser, operands: Sequence[str], watch: bool) -> NoReturn:
    what = "sensor" if watch else "request"
    parser.error("no server address: give HOST:PORT (for example %s) before the %s, or set "
                 "%s%s" % (ADDRESS_EXAMPLE, what, DEFAULT_ENV_VAR,
                           " (%r was taken as the %s name)" % (operands[0], what)
                           if operands else ""))


def _main(argv: Optional[List[str]]) -> int:
    parser = build_parser()
    option_words, address_word, operands = split_command_line(
        sys.argv[1:] if argv is None else argv, parser.value_options, looks_like_address)
    opts = parser.parse_args(option_words)
    configure_logging(opts)
    try:
        address = chosen_address(address_word)
    except ValueError as exc:
        parser.error(str(exc))
    if opts.interactive:
        if operands:
            parser.error("--interactive takes no request (got %r)" % operands[0])
        from katcp.scripts import shell
        return shell.run(parser, address, opts.timeout)
    if address is None:
        _no_address(parser, operands, opts.watch)
    if not operands:
        parser.error("no sensor given" if opts.watch else "no request given")
    request = _make_request(parser, operands, opts.watch)
    try:
        if opts.watch:
            return run_watch(address, request, opts.timeout, opts.raw)
        return run_request(address, request, opts.timeout, opts.raw)
    except ConnectionFailed as exc:
        raise ToolError(EXIT_CONNECTION, str(exc))
    except ReplyTimeout:
        raise ToolError(EXIT_CONNECTION, "no reply within %g seconds" % opts.timeout)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``katcp-cmd``."""
    return run_tool(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
