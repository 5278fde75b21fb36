"""What a request handler talks to: a client's connection and a request on it."""

import asyncio
import warnings

from katcp.core import Message

def _client_connection(connection):
    # Handlers written for katcp < 0.5 pass their req object where a connection is meant.
    if isinstance(connection, ClientRequestConnection):
        warnings.warn("Pass req.client_connection (not req) to the server's inform(), "
                      "reply() and reply_inform()", DeprecationWarning, stacklevel=3)
        return connection.client_connection
    return connection

def _answer_to(msg, orig_req):
    """Give `msg` (a reply or reply inform) the id of `orig_req`, whose name it must have."""
    if msg.name != orig_req.name:
        raise ValueError("Message name %r does not match request name %r." % (
            msg.name, orig_req.name))
    msg.mid = orig_req.mid
    return msg


# ---------------------------------------------------------------------------
# Client connections
# ---------------------------------------------------------------------------

class ClientConnection:
    """Encapsulates the connection between a single client and the server.

    Parameters
    ----------
    server : :class:`KATCPServer`
        The transport that owns the connection.
    conn_id : object
        The transport's handle for the connection.

    """

    def __init__(self, server, conn_id):
        self._server = server
        self._conn_id = conn_id
        self.address = server.get_address(conn_id)
        self._disconnect_called = False

    def inform(self, msg):
        """Send an inform message to a particular client.

        Should only be used for asynchronous informs. Informs that are part of the
        response to a request should use :meth:`reply_inform` so that the message
        identifier from the original request can be attached to the inform.

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        self._server.send_message(self._conn_id, msg)

    def reply_inform(self, inform, orig_req):
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
        ValueError
            If the names of `inform` and `orig_req` differ (nothing is sent).

        """
        self._server.send_message(self._conn_id, _answer_to(inform, orig_req))

    def reply(self, reply, orig_req):
        """Send an asynchronous reply to an earlier request.

        Parameters
        ----------
        reply : Message object
            The reply message to send.
        orig_req : Message object
            The request message being replied to. The reply message's id is
            overridden with the id from orig_req before the reply is sent.

        Raises
        ------
        ValueError
            If the names of `reply` and `orig_req` differ (nothing is sent).

        """
        self._server.send_message(self._conn_id, _answer_to(reply, orig_req))

    def mass_inform(self, msg):
        """Send an inform message to all clients.

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        self._server.mass_send_message(msg)

    def on_client_disconnect_was_called(self):
        """Prevent multiple calls to on_client_disconnect handler.

        Call this when an on_client_disconnect handler has been called.
        """
        self._disconnect_called = True

    def disconnect(self, reason):
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
        coro = server.disconnect_client(self._conn_id, reason)
        if server.in_ioloop_thread():
            return server._spawn(coro)
        return asyncio.run_coroutine_threadsafe(coro, server.ioloop.asyncio_loop)


class ThreadsafeClientConnection(ClientConnection):
    """Make ClientConnection compatible with messages sent from other threads."""

    def inform(self, msg):
        """Send an inform message to a particular client (from any thread).

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        self._server.send_message_threadsafe(self._conn_id, msg)

    def reply_inform(self, inform, orig_req):
        """Send an inform as part of the reply to an earlier request (from any thread).

        Parameters
        ----------
        inform : Message object
            The inform message to send.
        orig_req : Message object
            The request message being replied to; its id is copied to `inform`.

        """
        self._server.send_message_threadsafe(self._conn_id, _answer_to(inform, orig_req))

    def reply(self, reply, orig_req):
        """Send an asynchronous reply to an earlier request (from any thread).

        Parameters
        ----------
        reply : Message object
            The reply message to send.
        orig_req : Message object
            The request message being replied to; its id is copied to `reply`.

        """
        self._server.send_message_threadsafe(self._conn_id, _answer_to(reply, orig_req))

    def mass_inform(self, msg):
        """Send an inform message to all clients (from any thread).

        Parameters
        ----------
        msg : Message object
            The inform message to send.

        """
        self._server.mass_send_message_threadsafe(msg)


class ClientRequestConnection:
    """Encapsulates specific KATCP request and associated client connection.

    Parameters
    ----------
    client_connection : :class:`ClientConnection`
        The connection the request arrived on.
    req_msg : Message object
        The request message.

    """

    __slots__ = ("client_connection", "msg", "_replied")

    def __init__(self, client_connection, req_msg):
        self.client_connection = client_connection
        self.msg = req_msg
        self._replied = False

    @property
    def mid(self):
        """The message id of the request (bytes or None)."""
        return self.msg.mid

    def inform(self, *args):
        """Send an inform that is part of the reply, carrying the request's id.

        Parameters
        ----------
        args : list of objects
            Inform arguments (the name is the request's name).

        """
        self.client_connection.inform(Message.reply_inform(self.msg, *args))

    def inform_after_reply(self, *args):
        """Send an inform carrying the request's id, even after the reply was sent.

        Parameters
        ----------
        args : list of objects
            Inform arguments.

        """
        self.inform(*args)

    def make_reply(self, *args):
        """Return a reply Message to the request (not sent).

        Parameters
        ----------
        args : list of objects
            Reply arguments, normally starting with 'ok' or 'fail'.

        Returns
        -------
        reply : Message

        """
        return Message.reply_to_request(self.msg, *args)

    def reply(self, *args):
        """Send the reply to the request.

        Parameters
        ----------
        args : list of objects
            Reply arguments, normally starting with 'ok' or 'fail'.

        """
        self.reply_with_message(Message.reply_to_request(self.msg, *args))

    def reply_again(self, *args):
        """Send another reply to the request, even though one was already sent.

        Parameters
        ----------
        args : list of objects
            Reply arguments.

        """
        self._replied = False
        self.reply(*args)

    def reply_with_message(self, rep_msg):
        """Send a pre-created reply message to the client connection.

        Will check that rep_msg.name matches the bound request.

        Parameters
        ----------
        rep_msg : Message object
            The reply to send.

        """
        if self._replied:
            raise RuntimeError("Reply to request %r already sent." % (self.msg.name,))
        if rep_msg.name != self.msg.name:
            raise ValueError("Reply name %r does not match request name %r." % (
                rep_msg.name, self.msg.name))
        self._replied = True
        self.client_connection.reply(rep_msg, self.msg)


