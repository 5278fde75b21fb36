"""``python -m katcp``: which katcp this is, and its command-line tools."""

import platform
from typing import List, Optional

import tornado

from katcp.scripts import TOOLS
from katcp.scripts._cli import EXIT_OK, ToolParser, run_tool
from katcp.version import __version__

PROG = "python -m katcp"


def _main(argv: Optional[List[str]]) -> int:
    ToolParser(PROG, version="katcp " + __version__,
               description="Print the version of katcp and list its command-line tools."
               ).parse_args(argv)
    print("katcp %s (Python %s, tornado %s)" % (
        __version__, platform.python_version(), tornado.version))
    print("Command-line tools (each has --help):")
    width = max(len(name) for name in TOOLS)
    for name, summary in TOOLS.items():
        print("  %-*s  %s" % (width, name, summary))
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m katcp``."""
    return run_tool(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
