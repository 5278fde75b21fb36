"""A device server's sends: informs and replies to one client or all, and its log informs."""

import logging
import time
from typing import TYPE_CHECKING, Any, Optional

from katcp.core import Message
from katcp.server.connection import check_message, client_connection_of
from katcp.server.stream_host import exception_text
from katcp.wire.types import format_timestamp

_INFORM = Message.INFORM


class DeviceSending:
    """What a :class:`~katcp.server.DeviceServerBase` sends of its own accord or for a
    request answered later: informs and replies to one client, informs to all, and the
    ``#log`` informs and fail replies that report errors.

    A mixin of DeviceServerBase (its methods stay the device's, so that a subclass or a
    test replacing one is heard). A send to one client is that client's
    :class:`~katcp.server.ClientConnection` send. It needs of the device ``_server`` (the
    transport), ``_mass_send`` (the name of the transport's send to all, thread-safe or
    not as set_concurrency_options() chose), ``_katcp_major``, ``_tb_limit`` and
    ``_logger``.
    """

    _server: Any
    _mass_send: str
    _tb_limit: Optional[int]
    _logger: logging.Logger

    if TYPE_CHECKING:
        @property
        def _katcp_major(self) -> int: ...

    def inform(self, connection: Any, msg: Message) -> None:
        """Send an inform message to a particular client: ``connection.inform(msg)``.

        For informs of the device's own accord: an inform that is part of the answer to
        a request goes with :meth:`reply_inform`, which gives it the request's message id.
        See :meth:`ClientConnection.inform`.

        Parameters
        ----------
        connection : ClientConnection
            The client to send it to.
        msg : Message
            The inform.

        """
        client_connection_of(connection).inform(msg)

    def mass_inform(self, msg: Message) -> None:
        """Send an inform message to all clients (see :meth:`ClientConnection.mass_inform`).

        Parameters
        ----------
        msg : Message
            The inform.

        Raises
        ------
        TypeError
            If `msg` is not a Message.
        ValueError
            If `msg` is not an inform.

        """
        if msg.__class__ is not Message or msg.mtype != _INFORM:
            check_message(msg, _INFORM, "mass_inform")
        getattr(self._server, self._mass_send)(msg)

    def reply(self, connection: Any, reply: Message, orig_req: Message) -> None:
        """Send an asynchronous reply to an earlier request on `connection`.

        See :meth:`ClientConnection.reply`.

        Parameters
        ----------
        connection : ClientConnection
            The client to send it to.
        reply : Message
            The reply; it is given the message id of `orig_req`.
        orig_req : Message
            The request it answers.

        """
        client_connection_of(connection).reply(reply, orig_req)

    def reply_inform(self, connection: Any, inform: Message, orig_req: Message) -> None:
        """Send an inform as part of the reply to an earlier request on `connection`.

        See :meth:`ClientConnection.reply_inform`.

        Parameters
        ----------
        connection : ClientConnection
            The client to send it to.
        inform : Message
            The inform; it is given the message id of `orig_req`.
        orig_req : Message
            The request it is part of the answer to.

        """
        client_connection_of(connection).reply_inform(inform, orig_req)

    def create_log_inform(self, level_name: str, msg: str, name: str,
                          timestamp: Optional[float] = None) -> Message:
        """Create a katcp logging inform message.

        Usually this will be called from inside a DeviceLogger object, but it is also
        used by the methods in this class when errors need to be reported to the client.

        Parameters
        ----------
        level_name : str
            KATCP log level name, e.g. 'error'.
        msg : str
            The log text.
        name : str
            Name of the logger.
        timestamp : float, optional
            Seconds since the Unix epoch; defaults to now.

        Returns
        -------
        inform : Message
            A ``#log`` inform.

        """
        if timestamp is None:
            timestamp = time.time()
        return Message.inform("log", level_name, format_timestamp(timestamp, self._katcp_major),
                              name, msg)

    def create_exception_reply_and_log(self, msg: Message, exc_info: Any) -> Message:
        """Create a fail reply carrying a traceback, and log the error.

        Parameters
        ----------
        msg : Message object
            The request that failed.
        exc_info : tuple
            As returned by sys.exc_info().

        Returns
        -------
        reply : Message
            ``!name fail <traceback>`` (limited to tb_limit frames).

        """
        reason = exception_text(exc_info, self._tb_limit)
        self._logger.error("Request %s FAIL: %s", msg.name, reason)
        return Message.reply(msg.name, "fail", reason)
