"""A device server's sending: to one client or all, from the loop or any thread."""

import asyncio
import functools
import threading
from typing import Any, Callable, Dict, Optional

from katcp.core import Message
from katcp.loop.crossing import on_thread
from katcp.server.loop_calls import LoopCalls
from katcp.server.stream import _Connection
from katcp.wire.message import line_from_bytes, wire_line
from katcp.wire.util import own_methods, uses_own

_REPLY = Message.REPLY
_get_ident = threading.get_ident
_get_running_loop = asyncio._get_running_loop


class Sending(LoopCalls):
    """The send variants of a :class:`~katcp.server.KATCPServer`.

    A mixin of KATCPServer rather than an object it calls: a send is a method call on the
    server (one call per reply, none added), and each variant stays a method a subclass
    or a test may replace. It needs of the server, besides what :class:`LoopCalls`
    needs, its connections (for the sends to all); the loop it sends through is
    :class:`LoopCalls`'s.
    """

    _connections: Dict[_Connection, Any]

    def send_message(self, stream: _Connection, msg: Message) -> None:
        """Send an arbitrary message to a particular client.

        Parameters
        ----------
        stream : connection handle
            The connection to send the message to.
        msg : Message object
            The message to send.

        Notes
        -----
        This method should only be called in the IOLoop thread. From another thread
        the message is handed to the loop, as by :meth:`send_message_threadsafe`.

        Failed sends disconnect the client connection. They do not raise exceptions,
        but they are logged. Sends also fail if more than self.MAX_WRITE_BUFFER_SIZE
        bytes are queued for sending, implying that client is falling behind.

        """
        # Another thread's send (a worker replying for an AsyncDeviceServer handler, even
        # while the loop is still in that handler) goes to the loop, after what that
        # thread handed it before; made here, it would race the loop for the write batch.
        # katcp.loop.crossing.on_thread()'s running-loop form, inlined (a call of
        # running_loop() costs 1.3% of a request's instructions): this sends every reply.
        # Asked of the running loop rather than threading.get_ident(), which makes an int
        # and costs about twice as much.
        loop = self._asyncio_loop
        if loop is not None and _get_running_loop() is not loop:
            # Not through send_message_threadsafe(), which hands a replaced send_message
            # the message: a replacement has had it already, as its caller.
            self._hand_to_loop(stream, msg)
            return
        # wire_line(), inlined: its call costs 1.4% of a request's instructions, and this
        # sends every reply.
        try:
            line = msg._line()
        except AttributeError:
            line = None
        if line.__class__ is not bytes:
            line = line_from_bytes(msg)
        stream.send(line)

    def wire_sender(self, stream: _Connection,
                    threadsafe: bool) -> Optional[Callable[[bytes], None]]:
        """A function that sends ready wire bytes (whole lines) to one client.

        The bytes join the connection's write batch like any message. For bulk replies
        and sensor informs, whose lines are formatted once and shared.

        Parameters
        ----------
        stream : connection handle
        threadsafe : bool
            Whether the function may be called from any thread (else: only from the
            IOLoop thread).

        Returns
        -------
        send : callable or None
            ``send(data)``, `data` being bytes of complete lines, newlines included; None
            where :meth:`send_message` or :meth:`send_message_threadsafe` is replaced (by
            a subclass, on the class or on this server), through which every message must
            then go, as Message objects.

        """
        if not uses_own(self, _OWN_SENDS):
            return None
        if threadsafe:
            return functools.partial(self._send_wire_threadsafe, stream)
        return stream.send

    def _send_wire_threadsafe(self, stream: _Connection, data: bytes) -> None:
        if on_thread(self.ioloop_thread_id):
            stream.send(data)
        else:
            self.call_soon_threadsafe(stream.send, data)

    def mass_send_message(self, msg: Message) -> None:
        """Send a message to all connected clients.

        Parameters
        ----------
        msg : Message object

        Notes
        -----
        This method should only be called in the IOLoop thread. From another thread
        the message is handed to the loop, as by :meth:`mass_send_message_threadsafe`.

        """
        thread_id = self.ioloop_thread_id
        # katcp.loop.crossing.on_thread()'s ident form, inlined: this sends every mass
        # inform. Its check that the recorded thread has not ended is left out: on a
        # thread given that ident after the loop thread ended, no loop runs to be sent to
        # anyway.
        if thread_id is not None and _get_ident() != thread_id:
            # This one, not self.mass_send_message: a replacement has had the message
            # already, as its caller.
            self.call_soon_threadsafe(Sending.mass_send_message, self, msg)
            return
        if not uses_own(self, _OWN_SEND):
            # 0.9.3 sent it to each client through send_message(), which is replaced.
            for conn in list(self._connections):
                self.send_message(conn, msg)
            return
        data = bytes(msg) + b"\n"
        for conn in list(self._connections):
            conn.send(data)

    def send_message_threadsafe(self, stream: _Connection, msg: Message) -> None:
        """Like :meth:`send_message`, from any thread, without waiting for the send.

        Where :meth:`send_message` is replaced (by a subclass, on the class or on this
        server), the message goes through it, on the loop's thread, as 0.9.3's
        ``send_message_from_thread()`` sent every message of a thread-safe connection.
        """
        # on_thread()'s running-loop form, inlined as in send_message(): this sends every
        # reply of a thread-safe connection.
        loop = self._asyncio_loop
        if loop is not None and _get_running_loop() is loop:
            self.send_message(stream, msg)
            return
        send = self.send_message
        # wire.util.uses_own()'s test, inlined: this sends every reply of a threaded server.
        try:
            own = send.__func__ is _SEND_MESSAGE  # type: ignore[attr-defined]
        except AttributeError:
            own = False  # a replacement that is no method (a mock, a function on the server)
        if not own:
            self.call_soon_threadsafe(send, stream, msg)
            return
        self._hand_to_loop(stream, msg)

    def _hand_to_loop(self, stream: _Connection, msg: Message) -> None:
        """Have the loop send `msg`, made into bytes here, on another thread."""
        data = wire_line(msg)
        if msg.mtype == _REPLY:
            # The client waits for it: written as soon as the loop has it, not a turn later.
            self.call_soon_threadsafe(stream.send_now, data)
        else:
            self.call_soon_threadsafe(stream.send, data)

    def mass_send_message_threadsafe(self, msg: Message) -> None:
        """Like :meth:`mass_send_message`, from any thread, without waiting for the send."""
        if on_thread(self.ioloop_thread_id):
            self.mass_send_message(msg)
        else:
            self.call_soon_threadsafe(self.mass_send_message, msg)

    def send_message_from_thread(self, stream: _Connection, msg: Message) -> Any:
        """Thread-safe version of send_message() returning a Future instance.

        Parameters
        ----------
        stream : connection handle
        msg : Message object

        Returns
        -------
        sent : Future
            As :meth:`call_from_thread`: resolves as soon as send_message() returns
            (not when the message is delivered).

        """
        return self.call_from_thread(lambda: self.send_message(stream, msg))

    def mass_send_message_from_thread(self, msg: Message) -> Any:
        """Thread-safe version of mass_send_message() returning a Future instance.

        Parameters
        ----------
        msg : Message object

        Returns
        -------
        sent : Future
            As :meth:`send_message_from_thread`.

        """
        return self.call_from_thread(lambda: self.mass_send_message(msg))


# What a send of ready bytes, or of one message to all, skips; and what a thread's sends go
# through once replaced.
_OWN_SEND = own_methods(Sending, "send_message")
_SEND_MESSAGE = _OWN_SEND[0][1]
_OWN_SENDS = own_methods(Sending, "send_message", "send_message_threadsafe")
