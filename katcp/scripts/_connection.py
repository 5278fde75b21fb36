"""A minimal synchronous KATCP line connection for the command-line tools.

The one-shot tools need exact control over timeouts and exit codes rather than the
reconnecting behaviour of the library's clients, so they speak the wire protocol directly
with the pure codec of :mod:`katcp.core`.
"""

import os
import re
import socket

from katcp.core import KatcpSyntaxError, Message, MessageParser

ADDRESS_RE = re.compile(r"^(?P<host>\[[^\]]*\]|[^:\s]*):(?P<port>\d{1,5})$")
DEFAULT_ENV_VAR = "KATCP_SERVER"


class ConnectionFailed(Exception):
    """The server could not be reached, or went away."""


class ReplyTimeout(Exception):
    """No reply arrived within the timeout."""


def parse_address(text):
    """Split ``HOST:PORT`` into ``(host, port)``, or return None if it is not one.

    Parameters
    ----------
    text : str
        ``host:port``, ``:port`` (localhost) or ``[ipv6]:port``.

    Returns
    -------
    address : tuple of (str, int) or None
    """
    match = ADDRESS_RE.match(text)
    if match is None:
        return None
    host = match.group("host").strip("[]") or "127.0.0.1"
    port = int(match.group("port"))
    if not 0 < port < 65536:
        return None
    return host, port


def split_address_argument(args, environ=os.environ):
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
    address = parse_address(environ.get(DEFAULT_ENV_VAR, ""))
    return address, list(args)


class LineConnection:
    """Blocking KATCP connection: send messages, read parsed messages with a deadline."""

    def __init__(self, address, timeout):
        try:
            self._sock = socket.create_connection(address, timeout=timeout)
        except OSError as exc:
            raise ConnectionFailed("cannot connect to %s:%d: %s" % (address + (exc,)))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._parser = MessageParser()
        self._buffer = b""
        self._lines = []

    def close(self):
        self._sock.close()

    def send(self, msg):
        try:
            self._sock.sendall(bytes(msg) + b"\n")
        except OSError as exc:
            raise ConnectionFailed("connection lost while sending: %s" % exc)

    def set_timeout(self, timeout):
        self._sock.settimeout(timeout)

    def read_line(self):
        """Return the next non-empty raw line (without terminator)."""
        while not self._lines:
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise ReplyTimeout()
            except OSError as exc:
                raise ConnectionFailed("connection lost: %s" % exc)
            if not chunk:
                raise ConnectionFailed("connection closed by the server")
            lines = re.split(b"[\r\n]", self._buffer + chunk)
            self._buffer = lines.pop()
            self._lines.extend(line for line in lines if line.strip())
        return self._lines.pop(0)

    def read_message(self):
        """Return ``(raw_line, Message or None)``; None for a line that does not parse."""
        line = self.read_line()
        try:
            return line, self._parser.parse(line)
        except KatcpSyntaxError:
            return line, None


def readable(msg):
    """Format a message for people: type symbol and name, then unescaped arguments."""
    symbol = {Message.REQUEST: "?", Message.REPLY: "!", Message.INFORM: "#"}[msg.mtype]
    args = [arg.decode("utf-8", "replace") for arg in msg.arguments]
    shown = [repr(arg) if (not arg or any(c.isspace() for c in arg)) else arg for arg in args]
    return " ".join([symbol + msg.name] + shown)
