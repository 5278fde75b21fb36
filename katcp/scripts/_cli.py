"""What the command-line tools share: option parsing, exit codes, logging options, and the
Unix conventions for Ctrl-C and for a reader that closes the output pipe.

Exit codes (the same meaning in every tool; each tool's ``--help`` lists those it uses):

=== ==========================================================================
0   success
1   a request failed (reply ``fail`` or ``invalid``)
2   network: cannot connect or listen, connection lost, or no reply in time
64  usage error: the command line is wrong (``EX_USAGE`` of ``sysexits.h``)
74  the output cannot be written: stdout closed, a full disk (``EX_IOERR``)
130 interrupted by Ctrl-C (128 + SIGINT)
141 the output pipe was closed by its reader (128 + SIGPIPE, as for ``yes | head``)
=== ==========================================================================
"""

import argparse
import errno
import logging
import os
import sys
import textwrap
from typing import (
    Any, Callable, Iterable, List, Mapping, NoReturn, Optional, Sequence, Set, TextIO, Tuple)

from katcp.scripts import TOOLS
from katcp.scripts._connection import AddressError, check_address
from katcp.version import __version__
from katcp.wire.types import address_text

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_CONNECTION = 2
EXIT_USAGE = 64
EXIT_IOERR = 74
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class ToolError(Exception):
    """A failure that ends the tool with a one-line message and an exit status.

    Parameters
    ----------
    status : int
        Exit status, one of the ``EXIT_*`` codes.
    message : str
        What went wrong, for people (printed after the program's name).
    """

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ToolParser(argparse.ArgumentParser):
    """Argument parser of a katcp tool.

    Usage errors are one line and exit with :data:`EXIT_USAGE` (not argparse's 2, which
    katcp-cmd has always used for connection errors), every tool has ``--version``,
    options may not be abbreviated, and the parser knows which options take a value (for
    :func:`split_command_line`).
    """

    def __init__(self, prog: str, version: str = "%(prog)s (katcp) " + __version__,
                 **kwargs: Any):
        # Filled by add_argument, which argparse already calls while adding -h.
        self.value_options: Set[str] = set()
        kwargs.setdefault("description", TOOLS.get(prog))
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(prog=prog, allow_abbrev=False, **kwargs)
        self.add_argument("--version", action="version", version=version)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.option_strings and action.nargs != 0:
            self.value_options.update(action.option_strings)
        return action

    def error(self, message: str) -> NoReturn:
        # One line that says what is wrong; --help has the rest.
        self.exit(EXIT_USAGE, "%s: error: %s\n" % (self.prog, message))


def exit_status_text(specific: Mapping[int, str]) -> str:
    """The "exit status" section of a tool's ``--help``: its own codes and the common ones."""
    meanings = {EXIT_USAGE: "usage error: the command line is wrong",
                EXIT_IOERR: "cannot write the output (stdout closed, a full disk)",
                EXIT_INTERRUPTED: "interrupted by Ctrl-C"}
    meanings.update(specific)
    return "exit status:\n" + "".join(
        textwrap.fill(meanings[code], 88, initial_indent="  %-4d " % code,
                      subsequent_indent=" " * 7) + "\n" for code in sorted(meanings))


def split_command_line(argv: Sequence[str], value_options: Iterable[str],
                       is_address: Callable[[str], bool] = lambda word: False
                       ) -> Tuple[List[str], Optional[str], List[str]]:
    """Split a command line into options, an address and the operands.

    The rule: options (with their values) and the address may come in any order; the first
    other word starts the operands, and everything from it on is taken as it is, even words
    that start with ``-``. ``--`` ends the options explicitly: the word after it is the first
    operand.

    Parameters
    ----------
    argv : sequence of str
        The command line without the program name.
    value_options : iterable of str
        The option strings that take a value (``--timeout 5``; ``--timeout=5`` is one word).
    is_address : callable
        Tells whether a word before the operands is the address (only one is taken).

    Returns
    -------
    options : list of str
        The options and their values, for the argument parser.
    address : str or None
        The address word, if there was one.
    operands : list of str
    """
    takes_value = set(value_options)
    options: List[str] = []
    address = None
    position = 0
    while position < len(argv):
        word = argv[position]
        if word == "--":
            position += 1
            break
        if word.startswith("-") and word != "-":
            options.append(word)
            if word in takes_value and position + 1 < len(argv):
                position += 1
                options.append(argv[position])
        elif address is None and is_address(word):
            address = word
        else:
            break
        position += 1
    return options, address, list(argv[position:])


def seconds(text: str) -> float:
    """Argument type: a number of seconds above 0; ``inf`` (or more than a thread can wait,
    :data:`threading.TIMEOUT_MAX`) is no limit, as for every katcp timeout (see
    :func:`katcp.loop.crossing.thread_wait_timeout`)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(
            "expected a number of seconds above 0 (or inf), got %r" % text)
    return value


def address_type(any_port: bool = False, form: str = "HOST:PORT"
                 ) -> Callable[[str], Tuple[str, int]]:
    """Argument type: an address, as :func:`check_address` reads it, with its explanation."""
    def address(text: str) -> Tuple[str, int]:
        try:
            return check_address(text, any_port, form)
        except AddressError as exc:
            raise argparse.ArgumentTypeError(str(exc))
    return address


def add_logging_options(parser: ToolParser, default: str = "WARNING") -> None:
    """Add ``-v``/``--verbose`` and ``--log-level`` (read by :func:`configure_logging`)."""
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more of what katcp does: -v for INFO, -vv for DEBUG "
                             "(default level: %s)" % default)
    parser.add_argument("--log-level", type=_log_level, metavar="LEVEL",
                        help="log level of katcp: %s (overrides -v)" % ", ".join(LOG_LEVELS))
    parser.set_defaults(default_log_level=default)


def _log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError("unknown log level %r (use one of %s)" % (
            text, ", ".join(LOG_LEVELS)))
    return text.upper()


def configure_logging(opts: argparse.Namespace, loggers: Iterable[str] = ("katcp",)) -> None:
    """Log to stderr: the named loggers at the level the options chose, others at WARNING."""
    if opts.log_level is not None:
        level = getattr(logging, opts.log_level)
    else:
        level = max(logging.DEBUG,
                    getattr(logging, opts.default_log_level) - 10 * opts.verbose)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stderr)
    for name in loggers:
        logging.getLogger(name).setLevel(level)


def cannot_listen(host: str, port: int, exc: OSError) -> ToolError:
    """The one-line error of a server tool that cannot listen on ``host:port``."""
    hint = ""
    if exc.errno == errno.EADDRINUSE:
        hint = " (another program has it: choose another port, or port 0 for any free one)"
    return ToolError(EXIT_CONNECTION, "cannot listen on %s: %s%s" % (
        address_text((host or "all interfaces", port)), exc.strerror or exc, hint))


def _discard(stream: TextIO) -> None:
    # Point a standard stream that failed at the null device: Python flushes it at exit,
    # where what is left in its buffer would fail again, print "Exception ignored ...",
    # and turn the exit status into 120.
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # closed (None), or a caller's stream
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _tell(text: str) -> None:
    # To stderr, if there is one that takes it: else the exit status says it alone.
    if sys.stderr is None:
        return
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except OSError:
        _discard(sys.stderr)


def _tolerate_any_text() -> None:
    # Devices send any text, which the terminal's encoding may not hold (a Latin-1 locale):
    # escaped, it cannot end the tool with a UnicodeEncodeError (in the shell, its reader
    # thread). Input that is not in the encoding is read as surrogate escapes, as argv is,
    # so that its bytes reach the device as they are.
    for stream, errors in ((sys.stdout, "backslashreplace"), (sys.stderr, "backslashreplace"),
                           (sys.stdin, "surrogateescape")):
        reconfigure = getattr(stream, "reconfigure", None)  # not on a replaced stream
        if reconfigure is not None:
            reconfigure(errors=errors)


def run_tool(prog: str, body: Callable[[Optional[List[str]]], int],
             argv: Optional[List[str]], output_needed: bool = True) -> int:
    """Run a tool's `body` and turn the ways it can end into exit statuses, tracebacks never.

    Text that the standard streams' encoding cannot hold is written escaped
    (``backslashreplace``) and read as surrogate escapes, from here on. Output that cannot
    be written ends the tool: with :data:`EXIT_PIPE` for a pipe that its reader closed,
    quietly, as ``SIGPIPE`` would; with :data:`EXIT_IOERR` and a message otherwise (stdout
    closed, a full disk). Its errors go to stderr if it takes them. A server, whose output
    is a line saying where it listens, runs with stdout closed (`output_needed` False).

    Parameters
    ----------
    prog : str
        The tool's name, which starts its error messages.
    body : callable
        Takes `argv` and returns the exit status, or raises :class:`ToolError`.
    argv : list of str or None
        The command line without the program name (None: ``sys.argv[1:]``).
    output_needed : bool
        Whether a closed stdout ends the tool at once (a closed stdout makes ``print()``
        do nothing).

    Returns
    -------
    status : int
    """
    _tolerate_any_text()
    if sys.stdout is None and output_needed:
        # Closed (>&-): Python has no stream for it, and its descriptor may be the next
        # socket opened, so nothing may write there.
        _tell("%s: cannot write output: stdout is closed\n" % prog)
        return EXIT_IOERR
    try:
        try:
            return body(argv)
        finally:
            # Here rather than at exit, where a failure is only "Exception ignored".
            if sys.stdout is not None:
                sys.stdout.flush()
    except ToolError as exc:
        _tell("%s: %s\n" % (prog, exc))
        return exc.status
    except KeyboardInterrupt:
        # The terminal has echoed ^C; end its line so that the shell prompt starts afresh.
        if sys.stderr is not None and sys.stderr.isatty():
            _tell("\n")
        return EXIT_INTERRUPTED
    except OSError as exc:
        # Only stdout can raise it here: socket errors are ConnectionFailed by then, and
        # failures to listen ToolError.
        _discard(sys.stdout)
        if isinstance(exc, BrokenPipeError):
            return EXIT_PIPE
        _tell("%s: cannot write output: %s\n" % (prog, exc.strerror or exc))
        return EXIT_IOERR
