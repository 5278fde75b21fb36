"""``katcp-shell``: an interactive prompt connected to a KATCP device.

Type requests without the leading ``?`` (``sensor-value cpu.temp``); request names and sensor
names complete with Tab, history is kept in ``~/.katcp_shell_history``, and informs that the
device sends by itself (sensor updates, logs) are shown as they arrive.
"""

import argparse
import cmd
import contextlib
import os
import queue
import shlex
import sys
import threading
from typing import Any, List, Optional, Tuple

from katcp.wire.message import Message
from katcp.wire.text import readable

from katcp.scripts._connection import (
    ConnectionFailed, LineConnection, ReplyTimeout, for_people, split_address_argument)

HISTORY_FILE = os.path.expanduser("~/.katcp_shell_history")
SENSOR_REQUESTS = {"sensor-value", "sensor-list", "sensor-sampling"}


class DeviceSession:
    """A connection whose reader thread routes replies to the caller and prints the rest."""

    def __init__(self, address, timeout, out):
        self._conn = LineConnection(address, timeout)
        self._conn.set_timeout(None)
        self._timeout = timeout
        self._out = out
        self._out_lock = threading.Lock()
        self._pending_name = None
        self._responses: "queue.Queue[Optional[Message]]" = queue.Queue()
        self.closed = threading.Event()
        threading.Thread(target=self._read_loop, name="katcp-shell-reader", daemon=True).start()

    def _read_loop(self):
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
            self.show_text("*** %s" % exc)
        finally:
            self.closed.set()
            self._responses.put(None)

    def show(self, msg: Message) -> None:
        self.show_text(for_people(msg))

    def show_text(self, text: str) -> None:
        with self._out_lock:
            self._out.write(text + "\n")
            self._out.flush()

    def request(self, name: str, *args: Any, show: bool = True) -> Tuple[Message, List[Message]]:
        """Send a request; return ``(reply, informs)`` or raise ReplyTimeout."""
        self._pending_name = name
        try:
            self._conn.send(Message.request(name, *args))
            informs: List[Message] = []
            while True:
                try:
                    msg = self._responses.get(timeout=self._timeout)
                except queue.Empty:
                    raise ReplyTimeout()
                if msg is None:
                    raise ConnectionFailed("connection closed")
                if show:
                    self.show(msg)
                if msg.mtype == Message.REPLY:
                    return msg, informs
                informs.append(msg)
        finally:
            self._pending_name = None

    def close(self) -> None:
        self._conn.close()


class KatcpShell(cmd.Cmd):
    """The prompt: every line is a request, ``quit`` or Ctrl-D leaves."""

    intro = "Connected. Type a request (e.g. 'help'), Tab completes, 'quit' leaves."
    prompt = "katcp> "

    def __init__(self, session, stdin=None, stdout=None):
        super().__init__(stdin=stdin, stdout=stdout)
        self.use_rawinput = stdin is None
        self.session = session
        self.request_names = []
        self.sensor_names = []

    def refresh_names(self) -> None:
        """Fetch request and sensor names for completion."""
        for name, target in (("help", self.request_names), ("sensor-list", self.sensor_names)):
            try:
                _, informs = self.session.request(name, show=False)
            except (ReplyTimeout, ConnectionFailed):
                continue
            target[:] = sorted(readable(m.arguments[0]) for m in informs if m.arguments)

    def emptyline(self) -> bool:
        return False

    def precmd(self, line: str) -> str:
        # cmd.Cmd reads a leading '?' as its own help; here it is KATCP's request marker.
        return line.lstrip().lstrip("?")

    def do_help(self, arg: str) -> bool:
        """Send ?help (KATCP's help, not the shell's)."""
        return self.default(("help " + arg).strip())

    # typeshed says None, but cmd.Cmd.onecmd returns it: the flag that ends cmdloop().
    def default(self, line: str) -> bool:  # type: ignore[override]
        if line == "EOF":
            self.stdout.write("\n")
            return True
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.stdout.write("*** %s\n" % exc)
            return False
        name = words[0].lstrip("?")
        try:
            self.session.request(name, *words[1:])
        except ReplyTimeout:
            self.session.show_text("*** no reply to ?%s within the timeout" % name)
        except (ConnectionFailed, ValueError) as exc:
            self.session.show_text("*** %s" % exc)
        if name in ("sensor-list", "help") and len(words) == 1:
            self.refresh_names()
        return self.session.closed.is_set()

    def do_quit(self, arg: str) -> bool:
        """Leave the shell."""
        return True

    do_exit = do_quit

    def completenames(self, text: str, *ignored: Any) -> List[str]:
        return [n for n in self.request_names + ["quit"] if n.startswith(text)]

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> List[str]:
        first = line.split()[0].lstrip("?") if line.split() else ""
        if first in SENSOR_REQUESTS:
            return [n for n in self.sensor_names if n.startswith(text)]
        return []


def _setup_readline():
    try:
        import readline
    except ImportError:
        return None
    readline.set_completer_delims(" \t")
    with contextlib.suppress(OSError):  # no history yet
        readline.read_history_file(HISTORY_FILE)
    return readline


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``katcp-shell``."""
    parser = argparse.ArgumentParser(
        prog="katcp-shell", description="Interactive prompt connected to a KATCP device.")
    parser.add_argument("address", nargs="?", help="HOST:PORT (default: $KATCP_SERVER)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for a reply (default: %(default)s)")
    opts = parser.parse_args(argv)
    address, _ = split_address_argument([opts.address] if opts.address else [])
    if address is None:
        parser.error("no server address: give HOST:PORT or set KATCP_SERVER")
    try:
        session = DeviceSession(address, opts.timeout, sys.stdout)
    except ConnectionFailed as exc:
        sys.stderr.write("katcp-shell: %s\n" % exc)
        return 2
    interactive = sys.stdin.isatty()
    readline = _setup_readline() if interactive else None
    shell = KatcpShell(session, stdin=None if interactive else sys.stdin)
    if not interactive:
        shell.intro = shell.prompt = ""
    shell.refresh_names()
    try:
        shell.cmdloop()
    except KeyboardInterrupt:
        sys.stdout.write("\n")
    finally:
        session.close()
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(HISTORY_FILE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
