"""``katcp-web``: watch a KATCP device in the browser.

Serves one page on 127.0.0.1 (unless ``--listen`` says otherwise) that shows the device's
sensors as they change, its identity, connection state and requests. With ``--control``
the page can also send requests.
"""

import argparse
import asyncio
import signal
from typing import List, Optional

from katcp.loop import policy
from katcp.sampling import SampleStrategy, check_strategy
from katcp.scripts._cli import (
    EXIT_CONNECTION, EXIT_INTERRUPTED, EXIT_OK, ToolParser, add_logging_options, address_type,
    cannot_listen, configure_logging, exit_status_text, run_tool)
from katcp.web import DEFAULT_LISTEN, WebServer
from katcp.wire.types import address_text

PROG = "katcp-web"


def _strategy(text: str) -> str:
    # Refused here, a strategy would be refused by the device for every sensor, and again
    # after every reconnection, while the page waited for updates.
    words = text.split()  # as KATCPClientResource.set_sampling_strategies splits it
    if not words:
        raise argparse.ArgumentTypeError("no strategy given")
    name = words[0]
    try:
        check_strategy(name, words[1:])
    except ValueError as exc:
        known = sorted(SampleStrategy.SAMPLING_LOOKUP.values())
        raise argparse.ArgumentTypeError(
            str(exc) if name in known else "%s Known: %s." % (exc, ", ".join(known)))
    return text


def build_parser() -> ToolParser:
    """The command line of katcp-web."""
    parser = ToolParser(PROG, epilog="It follows the device when it goes away and comes back. "
                        "Stop it with Ctrl-C or SIGTERM.\n\n" + exit_status_text({
                            EXIT_OK: "stopped by SIGTERM",
                            EXIT_CONNECTION: "cannot listen on the --listen address"}))
    parser.add_argument("device", type=address_type(), metavar="HOST:PORT",
                        help="address of the KATCP device")
    parser.add_argument("--listen", type=address_type(any_port=True, form="ADDR:PORT"),
                        metavar="ADDR:PORT", default=DEFAULT_LISTEN,
                        help="where to serve the page (default: %s:%d, this machine only; "
                             "port 0 picks a free port)" % DEFAULT_LISTEN)
    parser.add_argument("--control", action="store_true",
                        help="let the page send requests to the device (default: watch only)")
    parser.add_argument("--strategy", type=_strategy, default="event",
                        help="sampling strategy for every sensor, with its parameters in "
                             "the same word ('period 0.5'; default: %(default)s)")
    add_logging_options(parser)
    return parser


async def _serve(opts) -> int:
    web = WebServer(opts.device, listen=opts.listen, control=opts.control, strategy=opts.strategy)
    loop = asyncio.get_running_loop()
    stopped_by: "asyncio.Future[int]" = loop.create_future()

    def stop(signum: int) -> None:
        if not stopped_by.done():
            stopped_by.set_result(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        web.start()
    except OSError as exc:
        raise cannot_listen(opts.listen[0], opts.listen[1], exc)
    try:
        print("katcp-web serving %s for %s%s" % (
            web.url, address_text(opts.device),
            " (control enabled)" if opts.control else ""), flush=True)
        return EXIT_INTERRUPTED if await stopped_by == signal.SIGINT else EXIT_OK
    finally:
        web.stop()


def _main(argv: Optional[List[str]]) -> int:
    opts = build_parser().parse_args(argv)
    # Tornado serves the page: its access log is part of what -v shows.
    configure_logging(opts, loggers=("katcp", "tornado"))
    policy.install()  # KATCP_EVENT_LOOP=uvloop runs the web server on uvloop
    return asyncio.run(_serve(opts))


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``katcp-web``."""
    return run_tool(PROG, _main, argv, output_needed=False)


if __name__ == "__main__":
    raise SystemExit(main())
