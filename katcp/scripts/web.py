"""``katcp-web``: watch a KATCP device in the browser.

Serves one page on 127.0.0.1 (unless ``--listen`` says otherwise) that shows the device's
sensors as they change, its identity, connection state and requests. With ``--control``
the page can also send requests.
"""

import argparse
import asyncio
import logging
import signal
from typing import List, Optional

from katcp.loop import policy
from katcp.scripts._connection import parse_address
from katcp.web import DEFAULT_LISTEN, WebServer


def _address(text, any_port=False):
    address = parse_address(text, any_port)
    if address is None:
        raise argparse.ArgumentTypeError("expected %s, got %r" % (
            "ADDR:PORT" if any_port else "HOST:PORT", text))
    return address


def _listen_address(text):
    return _address(text, any_port=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="katcp-web",
        description="Serve a live web page of a KATCP device's sensors and requests.")
    parser.add_argument("device", type=_address, metavar="HOST:PORT",
                        help="address of the KATCP device")
    parser.add_argument("--listen", type=_listen_address, metavar="ADDR:PORT",
                        default=DEFAULT_LISTEN,
                        help="where to serve the page (default: %s:%d, this machine only; "
                             "port 0 picks a free port)" % DEFAULT_LISTEN)
    parser.add_argument("--control", action="store_true",
                        help="let the page send requests to the device (default: watch only)")
    parser.add_argument("--strategy", default="event",
                        help="sampling strategy for every sensor (default: %(default)s)")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    return parser


async def _serve(opts):
    web = WebServer(opts.device, listen=opts.listen, control=opts.control, strategy=opts.strategy)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    web.start()
    print("katcp-web serving %s for %s:%d%s" % (
        web.url, opts.device[0], opts.device[1], " (control enabled)" if opts.control else ""),
        flush=True)
    try:
        await done.wait()
    finally:
        web.stop()


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``katcp-web``."""
    opts = build_parser().parse_args(argv)
    logging.basicConfig(level=opts.log_level,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    policy.install()  # KATCP_EVENT_LOOP=uvloop runs the web server on uvloop
    asyncio.run(_serve(opts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
