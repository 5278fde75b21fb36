"""What a device server's connection streams need of it, and the rules of a connection's life.

A :class:`~katcp.server.stream._Connection` talks to its server only through the
:class:`StreamHost` it is made with: the parser, the device, the loop's ``call_soon`` and
the events of its life (made, refused, an over-long line, a bad line, a failed handler, a
full write buffer, lost). Their rules live here, with the registry of the connections.
"""

import asyncio
import concurrent.futures
import logging
import sys
import traceback
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

import tornado.gen

from katcp.core import Message, MessageParser
from katcp.loop.crossing import is_awaitable
from katcp.loop.policy import thread_ioloop
from katcp.transport.buffers import loop_receive_view
from katcp.transport.sockets import shut_down_socket
from katcp.wire.text import quoted_line

if TYPE_CHECKING:
    from katcp.server.stream import _Connection
    from katcp.server.transport import KATCPServer


def _unset_call_soon(*args: Any) -> Any:
    raise RuntimeError("The server is not installed on a loop")


def _drop_unsent(transport: Any) -> None:
    """Close `transport` at once, dropping what it has not sent.

    Not one closing with nothing unsent: there is nothing to drop, and asyncio's
    transport, should its write callback have ended it (having sent the last of what was
    written before a close), fails an abort.
    """
    if not transport.is_closing() or transport.get_write_buffer_size():
        transport.abort()


def exception_text(exc_info: Any, limit: Optional[int]) -> str:
    """The text of a traceback sent to a client: `exc_info` limited to `limit` frames."""
    # Ends with a newline, as the traceback module formats it (and as katcp 0.9 sent it).
    return "".join(traceback.format_exception(*exc_info, limit=limit))


def end_unawaited(awaitable: Any) -> None:
    """End what a handler returned that nobody will await: cancel a future, close a
    coroutine (which Python would else warn was never awaited)."""
    end = getattr(awaitable, "cancel", None) or getattr(awaitable, "close", None)
    if end is not None:
        end()


def log_handling_error(logger: logging.Logger, msg: Message, address: str,
                       reason: str) -> None:
    """Log that handling a message from a client raised, naming the message and the client.

    Used on the loop and on a handler thread alike, so that both say the same.

    Parameters
    ----------
    logger : logging.Logger
        The server's logger.
    msg : Message
        The message whose handling raised.
    address : str
        The client's address, ``host:port``.
    reason : str
        The traceback.

    """
    logger.error("Error handling %s%s from %s: %s", Message.TYPE_SYMBOLS[msg.mtype].decode(),
                 msg.name, address, reason)


class StreamHost:
    """A :class:`~katcp.server.KATCPServer` as its connection streams see it.

    One per server, made with it. A stream binds what it uses per message (the parser,
    the loop's ``call_soon``) when it is set up, and reads the device's ``on_message``
    per chunk of input, as set_concurrency_options() may replace it before a start.
    What the server's subclasses and tests may replace or assign
    (``client_connection_factory``, ``spawn``, ``disconnect_client``, ``flush_on_close``,
    the size limits, and ``_logger`` and ``_tb_limit`` as katcp 0.9.3's server had them)
    is still called or read on the server, when needed. The device is held here (read
    per chunk of input); the server's ``_device`` is it.

    Parameters
    ----------
    server : KATCPServer
        The server whose connections these are.
    device : DeviceServerBase-like
        As passed to the server.

    """

    def __init__(self, server: "KATCPServer", device: Any) -> None:
        self._server = server
        self.device = device
        self.parse = MessageParser().parse  # bound once, shared by the connections
        # The loop's call_soon, bound once for all connections (set by install()).
        self.call_soon: Callable[..., Any] = _unset_call_soon
        # What the connections read into (see _Connection.get_buffer): the buffer of the
        # loop, set by install().
        self.receive_view = memoryview(bytearray())
        # Each connection, with the ClientConnection the device knows it by.
        self.connections: Dict["_Connection", Any] = {}

    def install(self, ioloop: Any) -> None:
        """Serve connections of `ioloop`, the IOLoop the server is installed on.

        Its connections then share the loop's receive buffer.
        """
        self.call_soon = ioloop.asyncio_loop.call_soon
        self.receive_view = loop_receive_view(ioloop)

    @property
    def logger(self) -> logging.Logger:
        """The server's logger (as it is now)."""
        return self._server._logger

    @property
    def _tb_limit(self) -> Optional[int]:
        """The server's limit of stack frames in tracebacks sent to clients (as it is now)."""
        return self._server._tb_limit

    @property
    def max_msg_size(self) -> int:
        """The server's MAX_MSG_SIZE (as it is now)."""
        return self._server.MAX_MSG_SIZE

    @property
    def max_write_buffer_size(self) -> int:
        """The server's MAX_WRITE_BUFFER_SIZE (as it is now)."""
        return self._server.MAX_WRITE_BUFFER_SIZE

    def create_future(self) -> "asyncio.Future[Any]":
        """A future of the server's loop."""
        return self._server.ioloop.asyncio_loop.create_future()

    def connection_made(self, conn: "_Connection") -> Any:
        """Register a new connection and tell the device; what on_client_connect raises
        is raised (see :meth:`connect_failed`)."""
        server = self._server
        client_conn = conn.client_conn = server.client_connection_factory(server, conn)
        self.connections[conn] = client_conn
        ready = self.device.on_client_connect(client_conn)
        if ready is None:
            return None
        if isinstance(ready, concurrent.futures.Future):
            # Resolved in another thread: what then resumes the connection runs on the loop.
            return asyncio.wrap_future(ready)
        if not is_awaitable(ready):
            self.logger.warning("on_client_connect for %s returned %r, not a future: the "
                                "connection is taken as ready", conn.address, ready)
            return None
        # Kept by the server, as a handler's is: a stop ends it, rather than leave it
        # waiting for a client long gone.
        return self._server.spawn(tornado.gen.convert_yielded(ready))

    def connect_failed(self, conn: "_Connection", exc_info: Any) -> None:
        """The device's on_client_connect raised, or its future failed: refuse the client.

        As katcp 0.9: logged, and told to the client in a ``#log error`` inform ("Device
        error initialising connection" and the traceback); nothing the client sent is
        handled. The connection is then closed as the server closes any, through
        on_client_disconnect(), so that the device forgets the client as it forgets any
        that leaves (a DeviceServer's ``?client-list`` no longer lists it; the client gets
        ``#disconnect``).
        """
        reason = exception_text(exc_info, self._tb_limit)
        self.logger.error("Device error initialising connection %s: %s", conn.address, reason)
        self._send_error_log(conn, "Device error initialising connection " + reason)
        if conn.client_conn is None:
            # The connection factory raised: no client connection, so no device to say
            # goodbye nor registry to forget it; it is closed here, or never.
            self._server.flush_on_close(conn)
            conn.transport.close()
            return
        # The connection stays busy, so nothing it sends is handled; what it sent and is
        # left unread may turn the close into a reset, as with any close by the server.
        self._drop(conn, "Device error initialising connection.")

    def syntax_error(self, conn: "_Connection", line: bytes) -> None:
        """`line` from the client does not parse (called in the parser's ``except``):
        logged, and told to the client in a ``#log error`` inform."""
        exc_info = sys.exc_info()
        # The parse error alone: the traceback is the parser's, the client's is the line.
        self.logger.error("Bad message from client %s: %s: %s",
                          conn.address, quoted_line(line), exc_info[1])
        self._send_error_log(conn, exception_text(exc_info, self._tb_limit))

    def handling_failed(self, conn: "_Connection", msg: Message) -> None:
        """The device's on_message raised handling `msg` (called in its ``except``)."""
        # As on the handler thread: logged and told to the client, whose connection
        # stays (one failing message must not cost it the replies to the next ones).
        reason = exception_text(sys.exc_info(), self._tb_limit)
        log_handling_error(self.logger, msg, conn.address, reason)
        self._send_error_log(conn, reason)

    def handling(self, conn: "_Connection", msg: Message, returned: Any) -> Any:
        """The device's on_message returned `returned` for `msg`, which is no future of
        the loop: return a future of the loop that resolves once `msg` is handled, or None
        if it is handled.

        A :class:`concurrent.futures.Future` (of a thread pool's) is waited for on the
        loop; a coroutine or other awaitable (of an ``async def`` handle_message) runs on
        the loop as a task the server keeps (a stop ends it); anything else is logged, and
        the message taken as handled.
        """
        if isinstance(returned, concurrent.futures.Future):
            # Resolved in another thread: what then resumes the connection runs on the loop.
            return asyncio.wrap_future(returned)
        if asyncio.isfuture(returned):
            return returned
        if is_awaitable(returned):
            return self._server.spawn(returned, owns=returned)
        self.logger.warning("Handling %s from %s returned %r, not a future: it is taken "
                            "as handled", msg.name, conn.address, returned)
        return None

    def _send_error_log(self, conn: "_Connection", reason: str) -> None:
        # Through send_message(), as every message the server sends (a test may replace it).
        self._server.send_message(conn, self.device.create_log_inform("error", reason, "root"))

    def line_too_long(self, conn: "_Connection") -> None:
        """The client sent a line longer than :attr:`max_msg_size`: read no more of it,
        and disconnect it."""
        limit = self.max_msg_size
        self.logger.error("Message from %s exceeds %d bytes; disconnecting",
                          conn.address, limit)
        conn.transport.pause_reading()
        self._drop(conn, "Message exceeds maximum size of %d bytes." % limit)

    def buffer_full(self, conn: "_Connection") -> None:
        """The client does not read what it is sent (more than
        :attr:`max_write_buffer_size` unsent): disconnect it, without a goodbye."""
        self.logger.warning("Client %s is not reading: more than %d bytes unsent; "
                            "disconnecting", conn.address, self.max_write_buffer_size)
        # Nothing more can be sent, so handling its further requests is pointless.
        conn.closing = True
        self._drop(conn, "Write buffer full.", False)

    def lost(self, conn: "_Connection") -> None:
        """The client has gone (or a write to it failed): forget it, without a goodbye."""
        self._drop(conn, "Connection closed by client.", False)

    def _drop(self, conn: "_Connection", reason: str, connection_valid: bool = True) -> None:
        # Through the server's spawn() and disconnect_client(), which subclasses and
        # tests may replace.
        server = self._server
        server.spawn(server.disconnect_client(conn, reason, connection_valid))

    async def disconnect(self, conn: "_Connection", reason: str,
                         connection_valid: bool = True) -> None:
        """Close a connection, letting the device say goodbye first.

        What :meth:`KATCPServer.disconnect_client
        <katcp.server.KATCPServer.disconnect_client>` does, with its parameters.
        """
        client_conn = self.connections.pop(conn, None)
        if client_conn is None:
            return
        transport = conn.transport
        connection_valid = connection_valid and not transport.is_closing()
        if not connection_valid:
            conn.closing = True
        try:
            try:
                ready = self.device.on_client_disconnect(client_conn, reason,
                                                         connection_valid)
                if ready is not None:
                    await self._with_timeout(ready)
            except Exception:
                self.logger.exception("Error in on_client_disconnect for %s", conn.address)
            if connection_valid and not transport.is_closing():
                try:
                    await self._with_timeout(self._server.flush_on_close(conn))
                except Exception:
                    # An unresponsive peer must not stop the close: drop what is unsent.
                    _drop_unsent(transport)
        except asyncio.CancelledError:
            # Ended by the server's stop (or a test case's teardown) while the device
            # said goodbye: the connection, already forgotten, is closed here or never.
            conn.closing = True
            _drop_unsent(transport)
            raise
        conn.closing = True
        if connection_valid:
            transport.close()
        else:
            _drop_unsent(transport)  # close() would wait to send what the peer does not read

    def _with_timeout(self, future: Any) -> Any:
        server = self._server
        return tornado.gen.with_timeout(server.ioloop.time() + server.DISCONNECT_TIMEOUT, future)

    def abort_all(self) -> None:
        """Drop every connection at once, without a goodbye (the shutdown was cancelled)."""
        connections = self.connections
        for conn in list(connections):
            del connections[conn]
            conn.closing = True  # no goodbye: connection_lost() starts none either
            _drop_unsent(conn.transport)

    def shut_down_on_closed_loop(self) -> None:
        """Shut every connection down from this thread, the server's loop being closed.

        Without a goodbye, which nothing could send: asyncio closes no transport of a
        closed loop, so each one's socket is closed only when it is collected. The device
        hears of each through ``on_client_disconnect(..., connection_valid=False)``, so
        that it forgets the client and its sampling strategies.
        """
        connections = list(self.connections.items())
        self.connections.clear()
        if connections:
            # The future on_client_disconnect() returns is made on this thread's loop
            # (which nothing needs to run): made here if the thread has none.
            thread_ioloop()
        for conn, client_conn in connections:
            conn.closing = True
            shut_down_socket(conn.transport)
            try:
                self.device.on_client_disconnect(client_conn, "Device server shutting down.",
                                                 False)
            except Exception:
                self.logger.exception("Error in on_client_disconnect for %s", conn.address)
