"""A minimal synchronous KATCP line connection for the command-line tools.

The one-shot tools need exact control over timeouts and exit codes rather than the
reconnecting behaviour of the library's clients, so they speak the wire protocol directly
with the pure codec of :mod:`katcp.core`.
"""

import inspect
import logging
import os
import re
import socket
import textwrap
import time
from typing import Iterable, List, Mapping, Optional, Tuple

from katcp.core import KatcpSyntaxError, Message, MessageParser, ProtocolFlags
from katcp.loop.crossing import thread_wait_timeout
from katcp.transport.framing import LineFramer
from katcp.wire.flags import SEC_TS_KATCP_MAJOR
from katcp.wire.text import readable
from katcp.wire.types import address_text

DEFAULT_ENV_VAR = "KATCP_SERVER"
ADDRESS_EXAMPLE = "localhost:5000"
MAX_LINE = 2 * 1024 * 1024  # as the library's client (MAX_MSG_SIZE)
TEXT_INDENT = "    "

log = logging.getLogger("katcp.scripts")

# The informs a server greets with: #version-connect (v5), #version and #build-state (v4).
_GREETINGS = frozenset(["version-connect", "version", "build-state"])


class ConnectionFailed(Exception):
    """The server could not be reached, or went away."""


class ReplyTimeout(Exception):
    """No reply arrived within the timeout."""


class AddressError(ValueError):
    """A text that is not a usable ``HOST:PORT``; the message says why and what is expected."""

    def __init__(self, text: str, reason: str, form: str = "HOST:PORT"):
        super().__init__("bad address %r: %s; expected %s, such as %s" % (
            text, reason, form, ADDRESS_EXAMPLE))


def check_address(text: str, any_port: bool = False, form: str = "HOST:PORT"
                  ) -> Tuple[str, int]:
    """Split ``HOST:PORT`` into ``(host, port)``.

    Parameters
    ----------
    text : str
        ``host:port``, ``:port`` (127.0.0.1) or ``[ipv6]:port`` (the form in which
        :func:`katcp.wire.types.address_text` writes an address).
    any_port : bool
        Accept port 0 (any free port: for an address to listen on).
    form : str
        The name of the expected form, for error messages.

    Returns
    -------
    address : tuple of (str, int)

    Raises
    ------
    AddressError
        If `text` is not such an address; the message says what is wrong.
    """
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise AddressError(text, "no ']' after the IPv6 host", form)
        if not host:
            raise AddressError(text, "no host between the brackets", form)
        if not rest:
            raise AddressError(text, "no port", form)
        if not rest.startswith(":"):
            raise AddressError(text, "%r after the host's ']' (expected ':PORT')" % rest, form)
        port = rest[1:]
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            raise AddressError(text, "no port", form)
        if ":" in host:
            raise AddressError(text, "an IPv6 host needs brackets ([::1]:5000)", form)
    if "[" in host or "]" in host:
        raise AddressError(text, "a bracket in the host (an IPv6 host goes in brackets: "
                                 "[::1]:5000)", form)
    if any(char.isspace() for char in host):
        raise AddressError(text, "spaces in the host", form)
    if not re.fullmatch(r"[0-9]+", port):
        raise AddressError(text, "port %r is not a number" % port, form)
    lowest = 0 if any_port else 1
    if not lowest <= int(port) <= 65535:
        raise AddressError(text, "port %s is out of range %d-65535" % (port, lowest), form)
    return host or "127.0.0.1", int(port)


def looks_like_address(word: str) -> bool:
    """Whether a word on a command line is meant as ``HOST:PORT``.

    Request and sensor names never contain ``:``, so such a word is an address (which
    :func:`check_address` then accepts or explains).
    """
    return ":" in word


def environment_address(environ: Mapping[str, str] = os.environ) -> Optional[Tuple[str, int]]:
    """The address in ``$KATCP_SERVER``, or None when it is unset or empty.

    Raises
    ------
    ValueError
        If the variable holds something else than ``HOST:PORT`` (the message says so).
    """
    text = environ.get(DEFAULT_ENV_VAR, "")
    if not text:
        return None
    try:
        return check_address(text)
    except AddressError as exc:
        raise ValueError("%s: %s" % (DEFAULT_ENV_VAR, exc)) from None


def chosen_address(word: Optional[str]) -> Optional[Tuple[str, int]]:
    """The address given on the command line (`word`), else the one in ``$KATCP_SERVER``.

    Raises
    ------
    ValueError
        If the one chosen is not ``HOST:PORT`` (the message says what is wrong).
    """
    return check_address(word) if word is not None else environment_address()


def typed_arguments(words: Iterable[str]) -> List[bytes]:
    """The bytes that words typed on a command line or read from input stand for.

    Text is sent as UTF-8, KATCP's encoding. Bytes that were not text in the encoding of the
    command line or the input come as surrogate escapes (Python reads ``sys.argv`` so, and
    the tools their input); they are sent as they were typed, where plain encoding would
    send ``?``.

    Parameters
    ----------
    words : iterable of str
        Request arguments, as the command line or the input gave them.

    Returns
    -------
    arguments : list of bytes
    """
    return [word.encode("utf-8", "surrogateescape") for word in words]


class Deadline:
    """The end of a wait made of several blocking waits: for the reply to a request,
    however many informs come first.

    A timeout given to each wait would start again with every line the device sends: a
    device that logs now and then, or reports progress on the request, would never time
    out.

    Parameters
    ----------
    timeout : float or None
        Seconds from now; None or ``inf`` (more than a thread can wait) for no limit.
    """

    def __init__(self, timeout: Optional[float]):
        bound = thread_wait_timeout(timeout)
        self._end = None if bound is None else time.monotonic() + bound

    def remaining(self) -> Optional[float]:
        """Seconds left, the timeout of the next wait (None: no limit).

        Raises
        ------
        ReplyTimeout
            If the deadline has passed.
        """
        if self._end is None:
            return None
        left = self._end - time.monotonic()
        if left <= 0:
            raise ReplyTimeout()
        return left


class LineConnection:
    """Blocking KATCP connection: send messages, read parsed messages with a deadline.

    Parameters
    ----------
    address : tuple of (str, int)
        The device's host and port.
    timeout : float or None
        Seconds to wait for the connection (None or ``inf``: no limit).
    """

    def __init__(self, address, timeout):
        try:
            self._sock = socket.create_connection(address, timeout=thread_wait_timeout(timeout))
        except OSError as exc:
            raise ConnectionFailed("cannot connect to %s: %s" % (address_text(address), exc))
        log.info("connected to %s", address_text(address))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._parser = MessageParser()
        self._framer = LineFramer(MAX_LINE)
        self._lines: List[bytes] = []
        # Whether the server's greeting said it writes timestamps in milliseconds (KATCP
        # v4 and below); read where the greeting passes through read_message().
        self.timestamps_in_ms = False

    def close(self) -> None:
        self._sock.close()

    def shutdown(self) -> None:
        """End the connection both ways: a thread blocked in :meth:`read_line` wakes up."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already disconnected
            pass

    def send(self, msg: Message) -> None:
        line = bytes(msg)
        log.debug("sent %s", readable(line))
        try:
            self._sock.sendall(line + b"\n")
        except OSError as exc:
            raise ConnectionFailed("connection lost while sending: %s" % exc)

    def read_line(self, deadline: Optional[Deadline] = None) -> bytes:
        """Return the next non-empty raw line (without terminator).

        Parameters
        ----------
        deadline : Deadline or None
            When to stop waiting (None: never), with :class:`ReplyTimeout`.
        """
        while not self._lines:
            if self._framer.overflow:
                raise ConnectionFailed("line from the server longer than %d bytes" % MAX_LINE)
            try:
                self._sock.settimeout(None if deadline is None else deadline.remaining())
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise ReplyTimeout()
            except OSError as exc:
                raise ConnectionFailed("connection lost: %s" % exc)
            if not chunk:
                raise ConnectionFailed("connection closed by the server")
            self._lines.extend(line for line in self._framer.feed(chunk) if line.strip())
        line = self._lines.pop(0)
        log.debug("received %s", readable(line))
        return line

    def read_message(self, deadline: Optional[Deadline] = None
                     ) -> Tuple[bytes, Optional[Message]]:
        """Return ``(raw_line, Message or None)``; None for a line that does not parse.

        `deadline` is as for :meth:`read_line`.
        """
        line = self.read_line(deadline)
        try:
            msg = self._parser.parse(line)
        except KatcpSyntaxError:
            return line, None
        if msg.mtype == Message.INFORM and msg.name in _GREETINGS:
            self._note_greeting(msg)
        return line, msg

    def _note_greeting(self, msg: Message) -> None:
        if msg.name != "version-connect":  # #version, #build-state: a v4 server
            self.timestamps_in_ms = True
        elif msg.arguments[:1] == [b"katcp-protocol"] and len(msg.arguments) > 1:
            try:
                flags = ProtocolFlags.parse_version(msg.arguments[1])
            except ValueError:
                return
            self.timestamps_in_ms = (flags.major or SEC_TS_KATCP_MAJOR) < SEC_TS_KATCP_MAJOR


def shown_argument(arg: str) -> str:
    """An argument's text as people see it: quoted and escaped (``repr``) where it must be.

    An argument that is empty or holds spaces is quoted, so that one can tell where it ends;
    one with characters that are not printable is escaped (a device's ESC sequences and
    backspaces would act on the terminal: retitle or clear it, hide text).

    Parameters
    ----------
    arg : str
        The argument's (unescaped) text.

    Returns
    -------
    shown : str
    """
    if arg and arg.isprintable() and " " not in arg:
        return arg
    return repr(arg)


def _printable_lines(text: str) -> str:
    # A text's lines, as shown_argument shows arguments: what is not printable escaped.
    if text.replace("\n", "").isprintable():
        return text
    return "".join(char if char.isprintable() or char == "\n" else repr(char)[1:-1]
                   for char in text)


def for_people(msg: Message) -> str:
    """Format a message for people: type symbol and name, then the unescaped arguments.

    Arguments are shown by :func:`shown_argument`. Texts are shown as text: the description
    of a ``#help`` inform, and a last argument of several lines, follow the message
    unquoted, their further lines indented (characters that are not printable escaped).
    """
    args = [readable(arg) for arg in msg.arguments]
    is_help = msg.mtype == Message.INFORM and msg.name == "help" and len(args) == 2
    text = args.pop() if args and args[-1].strip() and (is_help or "\n" in args[-1]) else None
    shown = [shown_argument(arg) for arg in args]
    head = " ".join([readable(Message.TYPE_SYMBOLS[msg.mtype]) + msg.name] + shown)
    if text is None:
        return head
    first, _, rest = _printable_lines(inspect.cleandoc(text)).partition("\n")
    return "%s %s%s" % (head, first, "\n" + textwrap.indent(rest, TEXT_INDENT) if rest else "")
