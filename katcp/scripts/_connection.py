"""A minimal synchronous KATCP line connection for the command-line tools.

The one-shot tools need exact control over timeouts and exit codes rather than the
reconnecting behaviour of the library's clients, so they speak the wire protocol directly
with the pure codec of :mod:`katcp.core`.
"""

import os
import re
import socket
from typing import List, Mapping, Optional, Sequence, Tuple

from katcp.core import KatcpSyntaxError, Message, MessageParser
from katcp.transport.framing import LineFramer
from katcp.wire.text import readable

ADDRESS_RE = re.compile(r"^(?P<host>\[[^\]]*\]|[^:\s]*):(?P<port>\d{1,5})$")
DEFAULT_ENV_VAR = "KATCP_SERVER"
MAX_LINE = 2 * 1024 * 1024  # as the library's client (MAX_MSG_SIZE)


class ConnectionFailed(Exception):
    """The server could not be reached, or went away."""


class ReplyTimeout(Exception):
    """No reply arrived within the timeout."""


def parse_address(text: str, any_port: bool = False) -> Optional[Tuple[str, int]]:
    """Split ``HOST:PORT`` into ``(host, port)``, or return None if it is not one.

    Parameters
    ----------
    text : str
        ``host:port``, ``:port`` (localhost) or ``[ipv6]:port``.
    any_port : bool
        Accept port 0 (any free port: for an address to listen on).

    Returns
    -------
    address : tuple of (str, int) or None
    """
    match = ADDRESS_RE.match(text)
    if match is None:
        return None
    host = match.group("host").strip("[]") or "127.0.0.1"
    port = int(match.group("port"))
    if port > 65535 or (port == 0 and not any_port):
        return None
    return host, port


def split_address_argument(args: Sequence[str], environ: Mapping[str, str] = os.environ
                           ) -> Tuple[Optional[Tuple[str, int]], List[str]]:
    """Take the server address from the first argument or ``$KATCP_SERVER``.

    Returns
    -------
    address : tuple of (str, int) or None
        None when neither the arguments nor the environment name a server.
    rest : list of str
        The remaining arguments.
    """
    if args:
        address = parse_address(args[0])
        if address is not None:
            return address, list(args[1:])
    return parse_address(environ.get(DEFAULT_ENV_VAR, "")), list(args)


class LineConnection:
    """Blocking KATCP connection: send messages, read parsed messages with a deadline."""

    def __init__(self, address, timeout):
        try:
            self._sock = socket.create_connection(address, timeout=timeout)
        except OSError as exc:
            raise ConnectionFailed("cannot connect to %s:%d: %s" % (address + (exc,)))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._parser = MessageParser()
        self._framer = LineFramer(MAX_LINE)
        self._lines: List[bytes] = []

    def close(self) -> None:
        self._sock.close()

    def send(self, msg: Message) -> None:
        try:
            self._sock.sendall(bytes(msg) + b"\n")
        except OSError as exc:
            raise ConnectionFailed("connection lost while sending: %s" % exc)

    def set_timeout(self, timeout: Optional[float]) -> None:
        self._sock.settimeout(timeout)

    def read_line(self) -> bytes:
        """Return the next non-empty raw line (without terminator)."""
        while not self._lines:
            if self._framer.overflow:
                raise ConnectionFailed("line from the server longer than %d bytes" % MAX_LINE)
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise ReplyTimeout()
            except OSError as exc:
                raise ConnectionFailed("connection lost: %s" % exc)
            if not chunk:
                raise ConnectionFailed("connection closed by the server")
            self._lines.extend(line for line in self._framer.feed(chunk) if line.strip())
        return self._lines.pop(0)

    def read_message(self) -> Tuple[bytes, Optional[Message]]:
        """Return ``(raw_line, Message or None)``; None for a line that does not parse."""
        line = self.read_line()
        try:
            return line, self._parser.parse(line)
        except KatcpSyntaxError:
            return line, None


def for_people(msg: Message) -> str:
    """Format a message for people: type symbol and name, then unescaped arguments."""
    args = [readable(arg) for arg in msg.arguments]
    shown = [repr(arg) if (not arg or any(c.isspace() for c in arg)) else arg for arg in args]
    return " ".join([readable(Message.TYPE_SYMBOLS[msg.mtype]) + msg.name] + shown)
