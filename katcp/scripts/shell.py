"""``katcp-shell``: an interactive prompt connected to a KATCP device.

Type requests without the leading ``?`` (``sensor-value cpu.temp``); request names, sensor
names, sampling strategies and the request after ``help`` complete with Tab, history is kept
in ``~/.katcp_shell_history``, and informs that the device sends by itself (sensor updates,
logs) are shown as they arrive. Fed from a pipe, it runs the requests of its input and its
exit status tells whether they all succeeded.
"""

import argparse
import cmd
import contextlib
import io
import os
import queue
import shlex
import signal
import sys
import threading
from typing import Any, List, Optional, Tuple

from katcp.loop.crossing import thread_wait_timeout
from katcp.sampling import SampleStrategy
from katcp.scripts._cli import (
    EXIT_CONNECTION, EXIT_FAIL, EXIT_OK, EXIT_PIPE, ToolError, ToolParser, add_logging_options,
    configure_logging, exit_status_text, run_tool, seconds)
from katcp.scripts._connection import (
    ADDRESS_EXAMPLE, DEFAULT_ENV_VAR, ConnectionFailed, Deadline, LineConnection, ReplyTimeout,
    chosen_address, for_people, typed_arguments)
from katcp.scripts._interrupt import prompt_interrupts
from katcp.wire.message import Message
from katcp.wire.text import readable
from katcp.wire.types import address_text

PROG = "katcp-shell"
HISTORY_FILE = os.path.expanduser("~/.katcp_shell_history")
SENSOR_REQUESTS = {"sensor-value", "sensor-list", "sensor-sampling"}
STRATEGIES = sorted(SampleStrategy.SAMPLING_LOOKUP.values())
EPILOG = """\
At the prompt, type a request without its '?' (help, sensor-value uptime); Tab completes
request and sensor names, strategies after 'sensor-sampling SENSOR' and the request after
'help'. Ctrl-C cancels the line (or stops waiting for a reply); 'quit' or Ctrl-D leaves.
With its input from a pipe or a file, the shell runs each line as a request.

environment:
  %s  HOST:PORT of the device, when the command line gives none
  HOME          the history is kept in $HOME/.katcp_shell_history

%s""" % (DEFAULT_ENV_VAR, exit_status_text({
    EXIT_OK: "left with quit or Ctrl-D; with piped input: every request succeeded",
    EXIT_FAIL: "with piped input: a request failed (fail, invalid, or not a request)",
    EXIT_CONNECTION: "cannot connect, the connection was lost, or (piped input) a reply "
                     "did not come within the timeout",
    EXIT_PIPE: "the output pipe was closed"}))


class DeviceSession:
    """A connection whose reader thread routes replies to the caller and prints the rest."""

    def __init__(self, address, timeout, out):
        self._conn = LineConnection(address, timeout)
        self.timeout = timeout
        self._out = out
        self._out_lock = threading.Lock()
        self._pending_name = None
        self._responses: "queue.Queue[Optional[Message]]" = queue.Queue()
        self._closing = threading.Event()
        self.lost = threading.Event()
        # Why the output cannot be written (a closed pipe, a full disk), once it cannot.
        self.output_error: Optional[OSError] = None
        self._reader = threading.Thread(target=self._read_loop, name="katcp-shell-reader",
                                        daemon=True)
        self._reader.start()

    def _read_loop(self):
        # Ctrl-C is for the main thread, which may sit in readline's select(): delivered to
        # this thread, the signal would wait unnoticed until the next key press.
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            while True:
                _, msg = self._conn.read_message()
                if msg is None:
                    continue
                if msg.name == self._pending_name and msg.mtype != Message.REQUEST:
                    self._responses.put(msg)
                else:
                    self.show(msg)
        except (ConnectionFailed, ReplyTimeout, OSError) as exc:
            # The end of a connection that close() shut down is no news.
            if not self._closing.is_set():
                self.lost.set()
                self.show_text("*** %s" % exc)
        finally:
            self._responses.put(None)

    @property
    def ended(self) -> bool:
        """Whether the connection was lost or the output cannot be written any more."""
        return self.lost.is_set() or self.output_error is not None

    def show(self, msg: Message) -> None:
        self.show_text(for_people(msg))

    def show_text(self, text: str) -> None:
        with self._out_lock:
            if self.output_error is not None:
                return
            try:
                self._out.write(text + "\n")
                self._out.flush()
            except OSError as exc:
                # Raised here, in the reader thread, it would be taken for the connection's
                # end: the session ends, and the main thread reports it (run()).
                self.output_error = exc

    def request(self, name: str, *args: Any, show: bool = True) -> Tuple[Message, List[Message]]:
        """Send a request; return ``(reply, informs)``.

        Raises
        ------
        ReplyTimeout
            If the reply does not come within the session's timeout.
        ConnectionFailed
            If the connection is lost.
        ValueError
            If `name` is not a request name.
        """
        request = Message.request(name, *args)
        self._drop_stale_responses()
        self._pending_name = name
        try:
            deadline = Deadline(self.timeout)
            self._conn.send(request)
            informs: List[Message] = []
            while True:
                try:
                    msg = self._responses.get(timeout=deadline.remaining())
                except queue.Empty:
                    raise ReplyTimeout()
                if msg is None:
                    self._responses.put(None)  # for the next request too
                    raise ConnectionFailed("connection closed")
                if show:
                    self.show(msg)
                if msg.mtype == Message.REPLY:
                    return msg, informs
                informs.append(msg)
        finally:
            self._pending_name = None

    def _drop_stale_responses(self):
        # Late informs and replies of a request that timed out or was interrupted.
        while True:
            try:
                msg = self._responses.get_nowait()
            except queue.Empty:
                return
            if msg is None:
                self._responses.put(None)
                return

    def close(self) -> None:
        """Disconnect; the reader thread ends quietly before the socket is closed."""
        self._closing.set()
        self._conn.shutdown()
        self._reader.join(thread_wait_timeout(self.timeout))
        self._conn.close()


class KatcpShell(cmd.Cmd):
    """The prompt: every line is a request, ``quit`` or Ctrl-D leaves.

    :attr:`status` is the worst outcome so far: EXIT_OK, EXIT_FAIL (a request failed) or
    EXIT_CONNECTION (no reply in time, or the connection was lost).
    """

    intro = "Connected. Type a request (e.g. 'help'), Tab completes, 'quit' leaves."
    prompt = "katcp> "
    # Request names contain '-': let cmd.Cmd see 'sensor-list' as one command word.
    identchars = cmd.IDENTCHARS + "-"

    def __init__(self, session, stdin=None, stdout=None):
        super().__init__(stdin=stdin, stdout=stdout)
        self.use_rawinput = stdin is None
        self.session = session
        self.request_names: List[str] = []
        self.sensor_names: List[str] = []
        self.status = EXIT_OK

    def refresh_names(self) -> None:
        """Fetch request and sensor names for completion."""
        for name, target in (("help", self.request_names), ("sensor-list", self.sensor_names)):
            try:
                _, informs = self.session.request(name, show=False)
            except (ReplyTimeout, ConnectionFailed):
                continue
            target[:] = sorted(readable(m.arguments[0]) for m in informs if m.arguments)

    def run(self, interactive: bool) -> None:
        """Read and run lines until the end; at a terminal, Ctrl-C only cancels the line."""
        intro = self.intro
        while True:
            try:
                self.cmdloop(intro)
                return
            except KeyboardInterrupt:
                if not interactive:
                    raise
                self.stdout.write("\n")
                intro = ""

    def _note(self, status: int, text: Optional[str] = None) -> None:
        self.status = max(self.status, status)
        if text is not None:
            self.session.show_text("*** " + text)

    def emptyline(self) -> bool:
        return False

    def precmd(self, line: str) -> str:
        # cmd.Cmd reads a leading '?' as its own help; here it is KATCP's request marker.
        return line.lstrip().lstrip("?")

    def postcmd(self, stop: bool, line: str) -> bool:
        return stop or self.session.ended

    def do_help(self, arg: str) -> bool:
        """Send ?help (KATCP's help, not the shell's)."""
        return self.default(("help " + arg).strip())

    # typeshed says None, but cmd.Cmd.onecmd returns it: the flag that ends cmdloop().
    def default(self, line: str) -> bool:  # type: ignore[override]
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self._note(EXIT_FAIL, str(exc))
            return False
        name, args = words[0], words[1:]
        try:
            reply, _ = self.session.request(name, *typed_arguments(args))
        except ReplyTimeout:
            self._note(EXIT_CONNECTION, "no reply to ?%s within %g seconds" % (
                name, self.session.timeout))
        except ConnectionFailed as exc:
            self._note(EXIT_CONNECTION, str(exc))
        except ValueError:
            self._note(EXIT_FAIL, "%r is not a request name" % name)
        else:
            if not reply.reply_ok():
                self._note(EXIT_FAIL)
        if name in ("sensor-list", "help") and not args:
            self.refresh_names()
        return False

    def do_quit(self, arg: str) -> bool:
        """Leave the shell."""
        return True

    do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:
        """Ctrl-D: leave the shell (ending the prompt's line at a terminal)."""
        if self.use_rawinput:
            self.stdout.write("\n")
        return True

    def completenames(self, text: str, *ignored: Any) -> List[str]:
        marker = "?" if text.startswith("?") else ""
        names = self.request_names + ([] if marker else ["quit"])
        return [marker + name + " " for name in names if name.startswith(text[len(marker):])]

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> List[str]:
        """Complete a request's argument: sensor, strategy, or the request named by help."""
        before = line[:begidx].split()
        request = before[0].lstrip("?") if before else ""
        candidates: List[str] = []
        if len(before) == 1 and request == "help":
            candidates = self.request_names
        elif len(before) == 1 and request in SENSOR_REQUESTS:
            candidates = self.sensor_names
        elif len(before) == 2 and request == "sensor-sampling":
            candidates = STRATEGIES
        return [name + " " for name in candidates if name.startswith(text)]

    # cmd.Cmd would complete its own help topics after 'help' (and after '?').
    complete_help = completedefault


def _setup_readline():
    try:
        import readline
    except ImportError:
        return None
    readline.set_completer_delims(" \t")
    with contextlib.suppress(OSError):  # no history yet
        readline.read_history_file(HISTORY_FILE)
    return readline


def build_parser() -> ToolParser:
    """The command line of katcp-shell."""
    parser = ToolParser(PROG, epilog=EPILOG)
    parser.add_argument("address", nargs="?", metavar="HOST:PORT",
                        help="the device (default: $%s)" % DEFAULT_ENV_VAR)
    parser.add_argument("--timeout", type=seconds, default=5.0, metavar="SECONDS",
                        help="seconds to wait for the connection, then for each reply "
                             "however many informs come first (inf: no limit; default: "
                             "%(default)s)")
    add_logging_options(parser)
    return parser


def run(parser: argparse.ArgumentParser, address: Optional[Tuple[str, int]],
        timeout: float) -> int:
    """Run the shell on `address` (None: a usage error of `parser`); return the exit status."""
    if address is None:
        parser.error("no server address: give HOST:PORT (for example %s) or set %s" % (
            ADDRESS_EXAMPLE, DEFAULT_ENV_VAR))
    try:
        session = DeviceSession(address, timeout, sys.stdout)
    except ConnectionFailed as exc:
        raise ToolError(EXIT_CONNECTION, str(exc))
    # A closed stdin (<&-) has no stream: no input, as from /dev/null.
    stdin = sys.stdin if sys.stdin is not None else io.StringIO()
    interactive = stdin.isatty()
    readline = _setup_readline() if interactive else None
    shell = KatcpShell(session, stdin=None if interactive else stdin)
    if interactive:
        shell.intro = "Connected to %s. Type a request (e.g. 'help'), Tab completes, " \
                      "'quit' leaves." % address_text(address)
    else:
        shell.intro = shell.prompt = ""
    try:
        shell.refresh_names()
        with prompt_interrupts(interactive):
            shell.run(interactive)
    finally:
        session.close()
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(HISTORY_FILE)
    if session.output_error is not None:
        raise session.output_error  # for run_tool, which tells a closed pipe from the rest
    if session.lost.is_set():
        return EXIT_CONNECTION
    return EXIT_OK if interactive else shell.status


def _main(argv: Optional[List[str]]) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    configure_logging(opts)
    try:
        address = chosen_address(opts.address)
    except ValueError as exc:
        parser.error(str(exc))
    return run(parser, address, opts.timeout)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``katcp-shell``."""
    return run_tool(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
