"""A tiny raw-socket KATCP line client for the server tests (independent of katcp.client)."""

import re
import socket

DEFAULT_TIMEOUT = 10.0


class LineClient:
    """Blocking line-oriented TCP client; every wait is bounded by a socket timeout."""

    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT, rcvbuf=None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.eof = False

    @property
    def local_address(self):
        return "%s:%d" % self.sock.getsockname()[:2]

    def send(self, line):
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.sock.sendall(line + b"\n")

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise EOFError("connection closed by server")
        self.buf += data

    def readline(self):
        """Return the next line (bytes, without the newline)."""
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def readlines(self, n):
        return [self.readline() for _ in range(n)]

    def read_until(self, predicate):
        """Read lines up to and including the first one for which predicate(line) holds."""
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if predicate(line):
                return lines

    def read_to_eof(self):
        """Return all lines up to the server closing the connection."""
        lines = []
        try:
            while True:
                lines.append(self.readline())
        except (EOFError, ConnectionResetError):
            if self.buf:
                lines.append(self.buf)
                self.buf = b""
        return lines

    def request(self, line):
        """Send a request and return (informs, reply) as decoded text lines.

        Lines that are not part of the reply (async informs) are returned with informs.
        """
        if isinstance(line, bytes):
            line = line.decode("utf-8", "surrogateescape")
        self.send(line.encode("utf-8", "surrogateescape"))
        name = re.match(r"\?([A-Za-z0-9\-]+(\[\d+\])?)", line).group(1)
        lines = self.read_until(lambda ln: ln.startswith(b"!" + name.encode() + b" ")
                                or ln == b"!" + name.encode())
        text = [ln.decode("utf-8", "replace") for ln in lines]
        return text[:-1], text[-1]

    def greeting(self, n=3):
        return [ln.decode("utf-8") for ln in self.readlines(n)]

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
