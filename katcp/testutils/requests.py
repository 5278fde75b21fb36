"""Stand-ins for a server's client connection, to call request handlers directly."""

from typing import Any, List, Optional

import tornado.ioloop

from katcp import server
from katcp.core import AsyncReply, FailReply, Message
from katcp.testutils.mocks import WaitingMock


class ClientConnectionTest:
    """A version of katcp.server.ClientConnection* suitable for testing.

    Records what a handler sends instead of sending it anywhere: ``messages`` holds every
    inform and reply in the order sent, ``informs`` / ``replies`` / ``mass_informs`` each
    kind. ``inform``, ``reply``, ``reply_inform`` and ``mass_inform`` are
    :class:`WaitingMock` objects, so a test can wait for calls made from another thread
    (``conn.inform.assert_wait_call_count(1)``).
    """

    def __init__(self) -> None:
        self.messages: List[Message] = []
        self._informs: List[Message] = []
        self._replies: List[Message] = []
        self._mass_informs: List[Message] = []
        self.address = "test-connection:0"
        self.inform = WaitingMock(side_effect=self._record_inform)
        self.reply_inform = WaitingMock(side_effect=self._record_reply_inform)
        self.reply = WaitingMock(side_effect=self._record_reply)
        self.mass_inform = WaitingMock(side_effect=self._mass_informs.append)

    def _record_inform(self, msg: Message) -> None:
        self._informs.append(msg)
        self.messages.append(msg)

    def _record_reply_inform(self, msg: Message, req_msg: Message) -> None:
        msg.mid = req_msg.mid
        self._record_inform(msg)

    def _record_reply(self, msg: Message, req_msg: Message) -> None:
        msg.mid = req_msg.mid
        self._replies.append(msg)
        self.messages.append(msg)

    @property
    def informs(self) -> List[Message]:
        return self._informs

    @property
    def replies(self) -> List[Message]:
        return self._replies

    @property
    def mass_informs(self) -> List[Message]:
        return self._mass_informs


class _RecordingRequestConnection(server.ClientRequestConnection):
    """A ClientRequestConnection that also keeps what the handler sent for it."""

    __slots__ = ("inform_msgs", "reply_msg")

    def __init__(self, client_connection: Any, req_msg: Message) -> None:
        super().__init__(client_connection, req_msg)
        self.inform_msgs: List[Message] = []
        self.reply_msg: Optional[Message] = None

    def inform(self, *args: Any) -> None:
        msg = Message.reply_inform(self.msg, *args)
        self.inform_msgs.append(msg)
        self.client_connection.inform(msg)

    def reply_with_message(self, rep_msg: Message) -> None:
        super().reply_with_message(rep_msg)
        self.reply_msg = rep_msg


def mock_req(req_name: str, *args: Any, mid: Optional[int] = None,
             client_conn: Any = None) -> server.ClientRequestConnection:
    """Create a mock ClientRequestConnection object.

    Parameters
    ----------
    req_name : str
        Name of the request.
    args : list
        Request arguments.

    Keyword Arguments
    -----------------
    mid : int or None
        Message id of the request.
    client_conn : object
        Client connection to use (a fresh ClientConnectionTest by default).

    Returns
    -------
    req : ClientRequestConnection
        ``req.inform_msgs`` holds the informs sent through ``req`` and ``req.reply_msg``
        the reply; ``req.client_connection`` records everything sent.
    """
    client_conn = client_conn or ClientConnectionTest()
    msg = Message.request(req_name, *args, mid=mid)
    return _RecordingRequestConnection(client_conn, msg)


def handle_mock_req(dev: server.DeviceServer, req: Any) -> Optional[Message]:
    """Instrument a real unstarted server.DeviceServer to handle a mock request.

    Calls the device's handler for ``req.msg`` directly (no network, no ioloop thread) and
    sends its reply through ``req`` (so ``req.reply_msg`` is set). Returns the reply
    Message; handlers that reply later (AsyncReply) give the reply they sent, if any.
    """
    msg = req.msg
    handler = dev._request_handlers.get(msg.name)
    if handler is None:
        raise FailReply("Unknown request %r" % msg.name)
    try:
        reply = handler(dev, req, msg)
    except AsyncReply:
        return getattr(req, "reply_msg", None)
    if not isinstance(reply, Message):
        reply = tornado.ioloop.IOLoop.current().run_sync(lambda: reply)
    req.reply_with_message(reply)
    return reply
