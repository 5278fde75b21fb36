"""The asyncio protocol of one client connection: framing, parsing, dispatch and writes."""

import asyncio
import logging
import time
from typing import Any, Callable, Optional

from katcp.core import KatcpSyntaxError, Message, MessageParser
from katcp.loop.futures import run_returned
from katcp.transport.buffers import SharedBufferProtocol
from katcp.transport.framing import LineFramer, WriteBatcher
from katcp.wire.message import needs_byte_checks
from katcp.wire.text import quoted_line


# The parser's own parse(), which takes `checked` (see ClientProtocol.data_received).
_OWN_PARSE = MessageParser.parse

# Received chunks of more lines than this are timed, so that a long pipelined burst
# can give the rest of the loop a turn (see MAX_LOOP_LATENCY).
_TIMED_CHUNK_LINES = 64


def _line_alone(parse: Callable[..., Message]) -> Callable[[bytes, bool], Message]:
    return lambda line, checked: parse(line)


def _never_closing() -> bool:
    return False


def _closing_check(transport: Any) -> Callable[[], bool]:
    """The transport's ``is_closing``: a transport of :meth:`connect_transport`'s own
    may lack it (it is not required there), and then never counts as closing."""
    closing: Callable[[], bool] = getattr(transport, "is_closing", _never_closing)
    try:
        closing()
    except NotImplementedError:  # asyncio.BaseTransport's own, not overridden
        return _never_closing
    return closing


class ClientProtocol(SharedBufferProtocol, WriteBatcher):
    """The socket side of a client connection.

    Received bytes are split into lines, parsed and handed to the receiver's
    ``handle_message``; what handlers send while one received chunk is handled goes out
    in one write, anything else is written at once. The protocol is its own write
    batcher (as the server's connections are): a request goes from :meth:`write` to the
    transport in one call.

    Parameters
    ----------
    loop : :class:`asyncio.AbstractEventLoop`
        The loop running the connection.
    receiver : object
        Its ``handle_message(msg)`` is called for each message received, looked up for
        each (a replacement on the instance is used at once, as in katcp 0.9.3); it may
        return an awaitable, whose failure is logged.
    made : callable
        ``made(protocol)`` once connected, before any data is read.
    lost : callable
        ``lost()`` once the connection has closed.
    logger : :class:`logging.Logger`
    address : str
        The server's address, ``host:port``, as the log records name it.
    max_msg_size : int
        Longest line accepted; a longer one closes the connection.
    max_write_buffer_size : int
        Most unsent bytes allowed; more closes the connection.
    max_loop_latency : float
        Seconds a chunk of many pipelined lines may take before reading pauses for a
        loop turn.
    receive_view : memoryview
        The receive buffer of the loop (:func:`katcp.transport.buffers.loop_receive_view`).

    Attributes
    ----------
    closed : :class:`asyncio.Future`
        Resolves (with the closing exception or None) when the connection is lost.
    transport : :class:`asyncio.Transport` or None
        The connection's transport, None before it is made and once it is closing:
        nothing more is written to it.

    """

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 receiver: Any,
                 made: Callable[["ClientProtocol"], None], lost: Callable[[], None],
                 logger: logging.Logger, *, address: str, max_msg_size: int,
                 max_write_buffer_size: int, max_loop_latency: float,
                 receive_view: memoryview) -> None:
        self._loop = loop
        self._receive_view = receive_view
        self._receiver = receiver
        self._made = made
        self._lost = lost
        self._logger = logger
        # Clients share a logger (a resource container's all do): records say which server.
        self._address = address
        self._max_write_buffer_size = max_write_buffer_size
        self._max_loop_latency = max_loop_latency
        parser = MessageParser()
        # A parse() of a subclass's own, or of a mock patched in for the class (0.9.3's
        # took the line alone): given the line alone.
        self._parse: Callable[[bytes, bool], Message] = (
            parser.parse if getattr(type(parser), "parse", None) is _OWN_PARSE
            else _line_alone(parser.parse))
        # Nothing received so far holds a byte parse() must search each line for: one
        # search of each chunk instead, as the server's connections do (see
        # katcp.wire.message.needs_byte_checks). Once something does, every line is
        # searched from then on.
        self._checked = True
        self._framer = LineFramer(max_msg_size)
        # coalesce=False: a request goes out at once (latency); only writes made while
        # a received chunk is handled are joined (see data_received).
        WriteBatcher.__init__(self, None, loop.call_soon, max_write_buffer_size,
                              coalesce=False)
        self.transport: Optional[asyncio.Transport] = None
        self._transport_closing: Callable[[], bool] = _never_closing
        self.closed: "asyncio.Future[Optional[Exception]]" = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._transport_closing = _closing_check(transport)
        # The transport reports an overfull buffer through pause_writing(), which
        # saves checking its size after every write.
        transport.set_write_buffer_limits(high=self._max_write_buffer_size)
        self._made(self)

    def eof_received(self) -> None:
        # The server's end: asyncio closes the transport when this returns, but
        # connection_lost() comes only on a later loop turn (or, with data unsent, once
        # that is written): what is sent until then must not go to it.
        transport = self.transport
        if transport is not None:
            self._forget_closed(transport)

    def pause_writing(self) -> None:
        self._abort("More than MAX_WRITE_BUFFER_SIZE (%d bytes) unsent",
                    self._max_write_buffer_size)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.transport = None
        self.clear()
        if not self.closed.done():
            self.closed.set_result(exc)
        self._lost()

    def data_received(self, data: bytes) -> None:
        framer = self._framer
        # A chunk that is no bytes (from a transport of connect_transport()'s own) has its
        # lines checked too: parse() checks the type only of lines not vouched for.
        checked = self._checked
        if checked and (data.__class__ is not bytes or needs_byte_checks(data)):
            checked = self._checked = False
        lines = framer.feed(data)
        many = len(lines) > _TIMED_CHUNK_LINES
        if many:
            started = time.monotonic()
        parse = self._parse
        # Its handle_message is looked up for each message (a replacement is heard at
        # once), with no call of the client's in between.
        receiver = self._receiver
        self._held = True  # hold(), inline: this runs for every reply
        try:
            for line in lines:
                if not line:
                    continue
                try:
                    msg = parse(line, checked)
                except KatcpSyntaxError as exc:
                    self._logger.error("Bad message from server %s: %s: %s",
                                       self._address, quoted_line(line), exc)
                    continue
                try:
                    result = receiver.handle_message(msg)
                except Exception:
                    self._logger.exception("Error handling message %s from server %s",
                                           msg, self._address)
                    continue
                if result is not None:
                    run_returned(self._logger, result, "Message handler failed (server %s)",
                                 self._address)
        finally:
            self._held = False
            if self._chunks:
                self.flush()
        if framer.overflow:
            self._abort("Message from server exceeds MAX_MSG_SIZE (%d bytes)", framer.max_line)
        elif (many and self.transport is not None
              and time.monotonic() - started > self._max_loop_latency):
            # Give other loop work a turn before reading more pipelined data.
            self.transport.pause_reading()
            self._loop.call_soon(self._resume_reading)

    def _resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def _abort(self, problem: str, limit: int) -> None:
        """Log `problem` (a limit exceeded) and drop the connection without sending more."""
        transport = self.transport
        if transport is not None:
            self._logger.error(problem + "; closing the connection to %s", limit,
                               self._address)
            # Forgotten at once: what is sent until connection_lost() comes round is
            # dropped, not written to the aborted transport (which logs each write).
            self.transport = None
            transport.abort()

    @property
    def socket(self) -> Any:
        """The connected socket (for its addresses), or None once closed."""
        return None if self.transport is None else self.transport.get_extra_info("socket")

    def write(self, data: bytes) -> None:
        """Send bytes: at once, or with the others sent while a received chunk is handled.

        Parameters
        ----------
        data : bytes

        """
        if self._held:
            self.send(data)
            return
        # write_out(), inline: this runs for every request.
        transport = self.transport
        if transport is not None:
            transport.write(data)
            if self._transport_closing():
                self._forget_closed(transport)

    def write_out(self, data: bytes) -> None:
        """Write a batch to the transport (nothing once the connection is lost)."""
        transport = self.transport
        if transport is not None:
            transport.write(data)
            if self._transport_closing():
                self._forget_closed(transport)

    def _forget_closed(self, transport: Any) -> None:
        """Forget (and abort) `transport`, which asyncio closes or has closed.

        Closed by asyncio (the server's end read, or a failed send): forgotten now, as by
        :meth:`close`, so that nothing more is written to it (each write would be dropped,
        and logged from the fifth on) and the client counts as not connected; aborted, as
        :meth:`close` does with what is unsent: a server that stopped reading would hold
        up ``connection_lost()`` for ever.
        """
        self.transport = None
        transport.abort()

    def close(self) -> None:
        """Close the connection.

        What the socket has taken is still sent. What the server has not taken (it
        stopped reading) is dropped: the close waits for nothing, so that a client can
        always disconnect and stop. What is sent from now on is dropped too.
        """
        transport = self.transport
        if transport is None:
            return
        # Forgotten at once, as by _abort(): a closing transport logs each write.
        self.transport = None
        try:
            unsent = transport.get_write_buffer_size()
        except (AttributeError, NotImplementedError):
            unsent = 0  # a transport of connect_transport()'s own that does not say
        if unsent:
            # A close would wait for the server to read it all, which it may never do.
            transport.abort()
        else:
            transport.close()
