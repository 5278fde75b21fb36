"""One accepted connection of a device server: line framing, paused reading, batched writes."""

import asyncio
import functools
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple

from katcp.core import DEFAULT_KATCP_MAJOR, KatcpSyntaxError
from katcp.transport.buffers import SharedBufferProtocol
from katcp.transport.framing import LineFramer, WriteBatcher
from katcp.wire.message import needs_byte_checks
from katcp.wire.types import ADDRESS

if TYPE_CHECKING:
    from katcp.server.stream_host import StreamHost

_NO_LINES: Tuple[bytes, ...] = ()

# What the device's on_message returns that is waited for as it is: futures of the loop (a
# handler thread's, a handler's task). Anything else goes through StreamHost.handling().
_LOOP_FUTURES = frozenset((asyncio.Future, asyncio.Task))

# Lines of a long pipeline handled between checks of the time taken, and the time after
# which the rest waits a loop turn (as the clients' MAX_LOOP_LATENCY).
_SLICE = 32
_TURN_BUDGET = 0.03
_monotonic = time.monotonic


# A client's further messages wait while more than a quarter of the server's
# MAX_WRITE_BUFFER_SIZE (as it was when the client connected) is unsent to it; past all of
# it, the client is taken for one that does not read.
_PAUSE_FRACTION = 4


def _pause_level(host: "StreamHost") -> int:
    """Bytes unsent to a client past which its further messages wait."""
    return _pause_level_of(host.max_write_buffer_size)


# One int object per limit, shared by every connection (two per connection otherwise: the
# write batcher's and the transport's, 64 bytes of each idle connection).
@functools.lru_cache(maxsize=8)
def _pause_level_of(max_write_buffer_size: int) -> int:
    return max(1, max_write_buffer_size // _PAUSE_FRACTION)


class _Connection(SharedBufferProtocol, WriteBatcher):
    """One accepted TCP connection: line framing, paused reading and batched writes.

    Its :meth:`send` and :meth:`flush` are the write batcher's.

    An asyncio protocol on the IOLoop's asyncio loop: a chunk of input is split, parsed
    and dispatched in one callback, and the replies it produced are written with one
    ``transport.write``. While the device is busy with a message, what arrives waits
    unhandled, and reading pauses once something does (not before: a request answered
    before its client sends more costs no pause and resume).
    """

    # Thousands of these may sit idle: no __dict__, and lines kept only while unhandled.
    __slots__ = ("_host", "transport", "client_conn", "closing", "_framer", "_lines",
                 "_next_line", "_busy", "_eof", "_drained", "_write_paused", "_yielded",
                 "_checked")

    def __init__(self, host: "StreamHost") -> None:
        self._host = host
        self.transport: Any = None
        self.client_conn: Any = None
        # Nothing more is handled or written once True (the connection is closing).
        self.closing = False
        self._framer: Optional[LineFramer] = None  # made when the first bytes arrive
        # Received lines not yet handled, from index _next_line on (_NO_LINES: none).
        self._lines: Sequence[bytes] = _NO_LINES
        self._next_line = 0
        self._busy = True  # until on_client_connect is done
        # The client ended its side while a message was being handled: close when done.
        self._eof = False
        self._drained: Optional[asyncio.Future] = None
        # The transport holds more than the client has taken so far: no further message
        # is handled until it has taken most of it (TCP flow control then holds the
        # client back, as it does while a message is handled).
        self._write_paused = False
        # Handling stopped to give other connections a turn; it goes on next loop turn.
        self._yielded = False
        # Nothing received so far holds a byte parse() must search each line for: one
        # search of each chunk instead (see needs_byte_checks()). Once something does,
        # every line is searched from then on.
        self._checked = True
        # The connection is its own write batcher (one object less per connection):
        # send() is the hot path of KATCPServer.send_message(), write_out() its end.
        WriteBatcher.__init__(self, None, host.call_soon, _pause_level(host))

    @property
    def address(self) -> str:
        """The peer's address, ``host:port`` (made when asked: idle connections keep less).

        In the KATCP address format, an IPv6 host in brackets (``[::1]:5000``).
        """
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        if not peer:
            return "<katcp connection at 0x%x>" % (id(self),)
        return ADDRESS.encode(peer[:2], DEFAULT_KATCP_MAJOR).decode()

    @property
    def end_with_empty_line(self) -> bool:
        """Whether a close ends with an empty line.

        An orderly close does; a close for a protocol violation (an over-long line) does
        not, as in katcp 0.9.
        """
        return self._framer is None or not self._framer.overflow

    # -- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=_pause_level(self._host))
        try:
            ready = self._host.connection_made(self)
        except Exception:
            self._host.connect_failed(self, sys.exc_info())  # busy for good: nothing read
            return
        if ready is None:
            self._busy = False
        else:
            ready.add_done_callback(self._connected)

    # The loop's receive buffer kept by the host when the server was installed, not by
    # each connection (one attribute less per connection), read with one attribute
    # read more.

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._host.receive_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._host.receive_view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        framer = self._framer
        if framer is None:
            framer = self._framer = LineFramer(self._host.max_msg_size)
        elif framer.overflow:
            return  # the connection is being closed for an over-long line
        if self._checked and needs_byte_checks(data):
            self._checked = False
        lines = self._lines
        if lines:
            lines.extend(framer.feed(data))  # type: ignore[attr-defined]
        else:
            self._lines = framer.feed(data)
            self._next_line = 0
        if not self._busy:
            self._process()
        else:
            # Per-connection serialisation: read no further until the message is handled.
            self.transport.pause_reading()
        if framer.overflow:
            self._host.line_too_long(self)

    def eof_received(self) -> Optional[bool]:
        if self._busy or self._write_paused or self._yielded:
            # As if reading had paused: the end is seen once the messages received are
            # handled (and their replies sent), not before.
            self._eof = True
            return True
        return None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if not self.closing:
            self._lost()

    def _lost(self) -> None:
        self.closing = True
        self._host.lost(self)

    def pause_writing(self) -> None:
        # drain() pauses us on purpose (and handles no more messages).
        if self._drained is None:
            self._write_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        # After drain() this means "all sent".
        if self._drained is not None:
            # Closing: what is left to handle is dropped with the connection.
            if not self._drained.done():
                self._drained.set_result(None)
        elif self._write_paused:
            self._write_paused = False
            self._continue()

    # -- input --------------------------------------------------------------------------

    def _process(self) -> None:
        lines = self._lines
        index = self._next_line
        count = len(lines)
        host = self._host
        on_message = host.device.on_message
        parse = host.parse
        # Replies to the whole chunk go out together, in one write (or more, should a
        # client that does not read make them pass the write limit meanwhile): hold()
        # and release(), inline as this runs for every chunk received.
        self._held = True
        try:
            # A long pipeline is handled in slices, between which the time is checked:
            # past _TURN_BUDGET the rest waits a loop turn, so that one client cannot
            # hold up the others (and the sensors' sampling) for long.
            started = _monotonic() if count - index > _SLICE else 0.0
            stop = index + _SLICE if count - index > _SLICE else count
            while True:
                while index < stop and not self.closing and not self._write_paused:
                    line = lines[index]
                    index += 1
                    if not line:
                        continue
                    try:
                        # Read per line: a handler that ran the loop may have let in
                        # lines of a chunk that needs the searches.
                        msg = parse(line, self._checked)
                    except KatcpSyntaxError:
                        # Only truly empty lines are skipped (above): like katcp 0.9.3, a
                        # line of blanks is answered with an error like any bad line.
                        host.syntax_error(self, line)
                        continue
                    try:
                        ready = on_message(self.client_conn, msg)
                    except Exception:
                        host.handling_failed(self, msg)
                        continue
                    if ready is None:
                        continue
                    if ready.__class__ not in _LOOP_FUTURES:
                        # No future of the loop: a coroutine (an async def
                        # handle_message), a future resolved in another thread, ...
                        ready = host.handling(self, msg, ready)
                        if ready is None:
                            continue
                    if not ready.done():
                        # Per-connection serialisation: handle no further until it is
                        # handled.
                        self._busy = True
                        ready.add_done_callback(self._done)
                        break
                if index < stop or index >= count or self._busy:
                    break  # all handled, or handling must wait
                if _monotonic() - started > _TURN_BUDGET:
                    self._yielded = True
                    self.transport.pause_reading()
                    self._call_soon(self._resume_turn)
                    break
                stop = index + _SLICE if count - index > _SLICE else count
        finally:
            # Lines that arrived meanwhile (a handler ran the loop) were appended.
            if index >= len(lines):
                self._lines = _NO_LINES
            else:
                self._next_line = index
            self._held = False
            if self._chunks:
                self.flush()

    def _connected(self, ready: Any) -> None:
        exc = None if ready.cancelled() else ready.exception()
        if exc is not None:
            # Busy for good: nothing the client sent is handled.
            self._host.connect_failed(self, (type(exc), exc, exc.__traceback__))
            return
        self._busy = False
        self._continue()

    def _done(self, ready: Any) -> None:
        if not ready.cancelled() and ready.exception() is not None:
            self._host.logger.error("Error handling message from %s",
                                    self.address, exc_info=ready.exception())
        self._busy = False
        self._continue()

    def _resume_turn(self) -> None:
        self._yielded = False
        self._continue()

    def _continue(self) -> None:
        """Handle what waited, then read on (or close, if the client has ended its side)."""
        if self._busy or self._write_paused or self._yielded or self.closing:
            return
        self._process()
        if self._busy or self._write_paused or self._yielded or self.closing:
            return
        if self._eof:
            # A turn later: from resume_writing(), inside asyncio's write callback (which
            # itself ends a closing transport it has just emptied), a close would have
            # connection_lost() called twice, the second call failing.
            self._call_soon(self.transport.close)
        else:
            self.transport.resume_reading()

    # -- output -------------------------------------------------------------------------

    def write_out(self, data: bytes) -> None:
        if self.closing:
            return  # what is sent after the goodbye is dropped
        transport = self.transport
        paused = self._write_paused
        transport.write(data)
        if transport.is_closing() and not self.closing:
            # The write failed (the peer is gone): stop handling its requests now rather
            # than when connection_lost() comes round.
            self._lost()
        elif paused and transport.get_write_buffer_size() > self._limit * _PAUSE_FRACTION:
            # Written while its requests wait for it to take what it was sent: informs
            # fill it up, and the client is not reading.
            self._host.buffer_full(self)

    def close(self) -> None:
        """Close the connection; the server notices and disconnects the client."""
        if self.transport is not None:
            self.transport.close()

    def drain(self) -> "asyncio.Future[None]":
        """Return a future that resolves when everything written so far is sent."""
        drained = self._drained = self._host.create_future()
        if self.transport.is_closing() or self.transport.get_write_buffer_size() == 0:
            drained.set_result(None)
        else:
            # With no slack the transport pauses us now and resumes us once it is empty.
            self.transport.set_write_buffer_limits(high=0, low=0)
        return drained

    def __repr__(self) -> str:
        address = self.address
        return address if address.startswith("<") else "<katcp connection %s>" % (address,)
