"""What a request handler talks to: a client's connection and a request on it."""

import warnings
from typing import Any, Callable, List, Optional

from katcp.core import Message
from katcp.wire.util import own_methods, uses_own

_REPLY, _INFORM = Message.REPLY, Message.INFORM
# Message.reply_to_request() without its own call: this makes most replies.
_answer = Message._answer


def client_connection_of(connection: Any) -> Any:
    """The client connection meant by `connection`, which old handlers give as a req."""
    # Handlers written for katcp < 0.5 pass their req object where a connection is meant.
    if isinstance(connection, ClientRequestConnection):
        warnings.warn("Pass req.client_connection (not req) to the server's inform(), "
                      "reply() and reply_inform()", DeprecationWarning, stacklevel=3)
        return connection.client_connection
    return connection


def check_message(msg: Any, mtype: int, method: str) -> None:
    """Refuse what `method` is given to send unless it is a :class:`Message` of `mtype`.

    A device sends informs and replies only (KATCP 5.1 section 2.1: requests go from
    client to device), each by the method meant for it; what is handed to the wrong one
    is refused at the call, never sent. The senders call this only for what is not a
    plain :class:`Message` of the right type (two compares are all the reply of every
    request pays); a subclass or a stand-in with the right ``mtype`` passes here.

    Parameters
    ----------
    msg : object
        What the sender was given.
    mtype : int
        The type of message `method` sends (``Message.INFORM`` or ``Message.REPLY``).
    method : str
        The sender's name, for the error.

    Raises
    ------
    TypeError
        If `msg` is not a :class:`Message` (nor a stand-in with the right ``mtype``).
    ValueError
        If `msg` is a message of another type.
    """
    if getattr(msg, "mtype", None) == mtype:
        return  # a subclass of Message, or a stand-in, of the right type
    if not isinstance(msg, Message):
        raise TypeError("%s() takes a katcp Message, not %r." % (method, msg))
    raise ValueError("%s() sends %s messages only, not %r." % (
            method, Message.TYPE_NAMES[mtype].lower(), msg))


def _answer_to(msg: Message, orig_req: Message) -> Message:
    """Give `msg` (a reply or reply inform) the id of `orig_req`, whose name it must have."""
    if msg.name != orig_req.name:
        raise ValueError("Message name %r does not match request name %r." % (
            msg.name, orig_req.name))
    msg.mid = orig_req.mid
    return msg


class ClientConnection:
    """Encapsulates the connection between a single client and the server.

    Parameters
    ----------
    server : :class:`KATCPServer`
        The transport that owns the connection.
    conn_id : object
        The transport's handle for the connection.

    """

    # The server's methods that send: only from the loop thread here.
    _SEND = "send_message"
    _SEND_TO_ALL = "mass_send_message"
    _THREADSAFE = False

    def __init__(self, server: Any, conn_id: Any) -> None:
        self._server = server
        self._conn_id = conn_id
        # The address is asked of the server when wanted, and the server's send method
        # (_SEND) looked up per message, rather than kept: thousands of idle
        # connections each keep less.
        self._address: Optional[str] = None
        self._disconnect_called = False
        # reply() asks it for every reply: from the instance, not through it from the
        # class (about 200 instructions less on CPython 3.11).
        self._threadsafe = self._THREADSAFE

    @property
    def address(self) -> str:
        """The client's address, ``host:port`` (as the server's ``get_address`` says)."""
        if self._address is not None:
            return self._address
        return self._server.get_address(self._conn_id)

    @address.setter
    def address(self, address: str) -> None:
        self._address = address

    def inform(self, msg: Message) -> None:
        """Send an inform message to a particular client.

        Should only be used for asynchronous informs. Informs that are part of the
        response to a request should use :meth:`reply_inform` so that the message
        identifier from the original request can be attached to the inform.

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        Raises
        ------
        TypeError
            If `msg` is not a Message.
        ValueError
            If `msg` is not an inform.

        """
        if msg.__class__ is not Message or msg.mtype != _INFORM:
            check_message(msg, _INFORM, "inform")
        getattr(self._server, self._SEND)(self._conn_id, msg)

    def reply_inform(self, inform: Message, orig_req: Message) -> None:
        """Send an inform as part of the reply to an earlier request.

        Parameters
        ----------
        inform : Message object
            The inform message to send.
        orig_req : Message object
            The request message being replied to. The inform message's id is
            overridden with the id from orig_req before the inform is sent.

        Raises
        ------
        TypeError
            If `inform` is not a Message.
        ValueError
            If `inform` is not an inform, or the names of `inform` and `orig_req` differ
            (nothing is sent).

        """
        if inform.__class__ is not Message or inform.mtype != _INFORM:
            check_message(inform, _INFORM, "reply_inform")
        getattr(self._server, self._SEND)(self._conn_id, _answer_to(inform, orig_req))

    def reply(self, reply: Message, orig_req: Message) -> None:
        """Send an asynchronous reply to an earlier request.

        As :meth:`reply_inform`, for the reply: `reply` gets the id of `orig_req`,
        whose name it must have (else ValueError, and nothing is sent); a `reply` that
        is not a reply Message is refused as there.
        """
        if reply.__class__ is not Message or reply.mtype != _REPLY:
            check_message(reply, _REPLY, "reply")
        if reply.name != orig_req.name:
            raise ValueError("Message name %r does not match request name %r." % (
                reply.name, orig_req.name))
        reply.mid = orig_req.mid
        # Named here rather than looked up by _SEND: getattr() costs about 0.2 us more,
        # and this sends every reply.
        if self._threadsafe:
            self._server.send_message_threadsafe(self._conn_id, reply)
        else:
            self._server.send_message(self._conn_id, reply)

    def mass_inform(self, msg: Message) -> None:
        """Send an inform message to all clients.

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        Raises
        ------
        TypeError
            If `msg` is not a Message.
        ValueError
            If `msg` is not an inform.

        """
        if msg.__class__ is not Message or msg.mtype != _INFORM:
            check_message(msg, _INFORM, "mass_inform")
        getattr(self._server, self._SEND_TO_ALL)(msg)

    def wire_sender(self, threadsafe: Optional[bool] = None) -> Optional[Callable[[bytes], None]]:
        """A function that sends ready wire bytes (whole lines), or None.

        None where messages must go through :meth:`inform` as objects: a subclass
        overrides it, it is replaced on the class or the instance, or the server is not a
        :class:`KATCPServer` (a test double).

        Parameters
        ----------
        threadsafe : bool or None, optional
            Whether the function may be called from any thread; None: as :meth:`inform`
            may be. False is for callers on the IOLoop thread (sampling strategies).

        Returns
        -------
        send : callable or None
            ``send(data)``; what it sends joins the connection's write batch.

        """
        make = getattr(self._server, "wire_sender", None)
        if make is None or not uses_own(self, _OWN_CONNECTION_INFORM):
            return None
        if threadsafe is None:
            threadsafe = self._THREADSAFE
        return make(self._conn_id, threadsafe)

    def on_client_disconnect_was_called(self) -> None:
        """Prevent multiple calls to on_client_disconnect handler.

        Call this when an on_client_disconnect handler has been called.
        """
        self._disconnect_called = True

    def disconnect(self, reason: str) -> Any:
        """Disconnect this client connection for specified reason.

        Parameters
        ----------
        reason : str
            Sent to the client in a ``#disconnect`` inform.

        Returns
        -------
        done : Future
            Resolves once the connection is closed (an asyncio Task if called in the
            ioloop thread, else a concurrent.futures.Future).

        """
        server = self._server

        def spawn() -> Any:
            return server.spawn(server.disconnect_client(self._conn_id, reason))
        if server.in_ioloop_thread():
            return spawn()
        # Spawned on the loop from here too: a stop ends what the server spawned and has
        # not finished, closing the connection (a goodbye it does not know of stays
        # under way, the connection open, after the stop).
        return server.call_on_loop(spawn)


class ThreadsafeClientConnection(ClientConnection):
    """A :class:`ClientConnection` whose sending methods may be called from any thread.

    From another thread a message is handed to the loop and sent there; the call does
    not wait for that.
    """

    _SEND = "send_message_threadsafe"
    _SEND_TO_ALL = "mass_send_message_threadsafe"
    _THREADSAFE = True


class ClientRequestConnection:
    """Encapsulates specific KATCP request and associated client connection.

    Parameters
    ----------
    client_connection : :class:`ClientConnection`
        The connection the request arrived on.
    req_msg : Message object
        The request message.

    """

    # With a __dict__, as 0.9.3's plain class: a request keeps attributes a handler gives
    # it (``req.started = time.time()``), and tests replace its methods on the instance
    # (``req.reply = mock.Mock()``, ``mock.patch.object(req, "inform")``).
    __slots__ = ("client_connection", "msg", "_replied", "__dict__")

    def __init__(self, client_connection: Any, req_msg: Message) -> None:
        self.client_connection = client_connection
        self.msg = req_msg
        self._replied = False

    @property
    def replied(self) -> bool:
        """Whether the reply was sent."""
        return self._replied

    @property
    def mid(self) -> Any:
        """The message id of the request (bytes or None)."""
        return self.msg.mid

    def inform(self, *args: Any) -> None:
        """Send an inform that is part of the reply, carrying the request's id.

        Parameters
        ----------
        args : list of objects
            Inform arguments (the name is the request's name).

        """
        self.client_connection.inform(Message.reply_inform(self.msg, *args))

    def inform_lines(self, lines: List[bytes]) -> bool:
        """Send one inform per line of ready arguments, all in one write batch.

        Each of `lines` holds an inform's arguments as the wire has them (escaped and
        joined with spaces, as :meth:`katcp.Sensor.status_line` makes them); the
        request's name and id are put in front.

        Parameters
        ----------
        lines : list of bytes

        Returns
        -------
        sent : bool
            False, and nothing is sent, where informs must go one by one through
            :meth:`inform` (it is overridden, or replaced on the class or the instance,
            or the connection takes only messages).

        """
        conn = self.client_connection
        send = None
        if uses_own(self, _OWN_INFORM) and isinstance(conn, ClientConnection):
            send = conn.wire_sender()
        if send is None:
            return False
        if lines:
            msg = self.msg
            head = b"#" + msg.name.encode("ascii")
            if msg.mid is not None:
                head += b"[" + msg.mid + b"]"
            head += b" "
            send(head + (b"\n" + head).join(lines) + b"\n")
        return True

    def inform_after_reply(self, *args: Any) -> None:
        """Send an inform carrying the request's id, even after the reply was sent.

        Parameters
        ----------
        args : list of objects
            Inform arguments.

        """
        self.inform(*args)

    def make_reply(self, *args: Any) -> Message:
        """Return a reply Message to the request (not sent).

        Parameters
        ----------
        args : list of objects
            Reply arguments, normally starting with 'ok' or 'fail'.

        Returns
        -------
        reply : Message

        """
        return _answer(_REPLY, self.msg, args)

    def reply(self, *args: Any) -> None:
        """Send the reply to the request.

        Parameters
        ----------
        args : list of objects
            Reply arguments, normally starting with 'ok' or 'fail'.

        """
        self.reply_with_message(_answer(_REPLY, self.msg, args))

    def reply_again(self, *args: Any) -> None:
        """Send another reply to the request, even though one was already sent.

        Parameters
        ----------
        args : list of objects
            Reply arguments.

        """
        self._replied = False
        self.reply(*args)

    def reply_with_message(self, rep_msg: Message) -> None:
        """Send a pre-created reply message to the client connection.

        Will check that rep_msg.name matches the bound request.

        Parameters
        ----------
        rep_msg : Message object
            The reply to send.

        Raises
        ------
        TypeError
            If `rep_msg` is not a Message.
        ValueError
            If `rep_msg` is not a reply, or not named as the request.
        RuntimeError
            If the reply was sent already.

        """
        if self._replied:
            raise RuntimeError("Reply to request %r already sent." % (self.msg.name,))
        if rep_msg.name != self.msg.name:
            raise ValueError("Reply name %r does not match request name %r." % (
                rep_msg.name, self.msg.name))
        # The connection's reply() refuses what is not a reply, before it sends: only
        # then is the request answered.
        self.client_connection.reply(rep_msg, self.msg)
        self._replied = True


# What bypasses inform() when overridden or replaced (on the class or the instance) must
# not: inform_lines() and wire_sender() send without it only while these are in use.
_OWN_INFORM = own_methods(ClientRequestConnection, "inform")
_OWN_CONNECTION_INFORM = own_methods(ClientConnection, "inform")
