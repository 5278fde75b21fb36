"""Stand-ins for a server's client connection, to call request handlers directly."""

import asyncio
import concurrent.futures
from typing import Any, List, Optional

from katcp import server
from katcp.core import AsyncReply, FailReply, Message
from katcp.loop.crossing import is_awaitable, running_loop
from katcp.testutils.mocks import WaitingMock


class ClientConnectionTest:
    """A version of katcp.server.ClientConnection* suitable for testing.

    Records what a handler sends instead of sending it anywhere: ``messages`` holds every
    inform (mass informs included) and reply in the order sent, ``informs`` / ``replies``
    each kind, and ``mass_informs`` the mass informs alone. On an instance, ``inform``,
    ``reply``, ``reply_inform`` and ``mass_inform`` are :class:`WaitingMock` objects
    calling these methods, so a test can wait for calls made from another thread
    (``conn.inform.assert_wait_call_count(1)``); a subclass that overrides one of them
    keeps its override (and may call the recording method with ``super()``).
    """

    def __init__(self) -> None:
        self.messages: List[Message] = []
        self._informs: List[Message] = []
        self._replies: List[Message] = []
        self._mass_informs: List[Message] = []
        self.address = "test-connection:0"
        for name in ("inform", "reply_inform", "reply", "mass_inform"):
            method = getattr(self, name)
            if getattr(method, "__func__", None) is getattr(ClientConnectionTest, name):
                setattr(self, name, WaitingMock(side_effect=method))

    def inform(self, msg: Message) -> None:
        """Record an inform sent to this connection."""
        self._informs.append(msg)
        self.messages.append(msg)

    def mass_inform(self, msg: Message) -> None:
        """Record a mass inform, which goes to this connection too (as in 0.9.3)."""
        self._mass_informs.append(msg)
        ClientConnectionTest.inform(self, msg)

    def reply_inform(self, msg: Message, req_msg: Message) -> None:
        """Record an inform sent in reply to `req_msg` (given its message id)."""
        msg.mid = req_msg.mid
        ClientConnectionTest.inform(self, msg)

    def reply(self, msg: Message, req_msg: Message) -> None:
        """Record the reply to `req_msg` (given its message id)."""
        msg.mid = req_msg.mid
        self._replies.append(msg)
        self.messages.append(msg)

    @property
    def informs(self) -> List[Message]:
        """The informs sent to this connection (with a reply, and mass informs, too),
        oldest first."""
        return self._informs

    @property
    def replies(self) -> List[Message]:
        """The replies sent to this connection, oldest first."""
        return self._replies

    @property
    def mass_informs(self) -> List[Message]:
        """The mass informs sent (to every connection), oldest first."""
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


def handle_mock_req(dev: server.DeviceServer, req: Any) -> Any:
    """Instrument a real unstarted server.DeviceServer to handle a mock request.

    Calls the device's handler for ``req.msg`` directly (no network, no ioloop thread) and
    sends its reply through ``req`` (so ``req.reply_msg`` is set).

    Called where no event loop runs (a plain test), it returns the reply once the
    handler has given it: a coroutine handler runs to its end on a loop of its own,
    made and closed here, so the thread needs no current loop. Called on a running
    loop (a ``gen_test``, a coroutine), which it must not block, a coroutine handler
    gives a future of the reply instead: yield or await it.

    Parameters
    ----------
    dev : :class:`katcp.DeviceServer`
        The device whose handler answers; it need not be started.
    req : ClientRequestConnection
        The request, as :func:`mock_req` makes it.

    Returns
    -------
    reply : :class:`katcp.Message`, future of one, or None
        The reply; on a running loop, a future of it if the handler is a coroutine.
        Handlers that reply later (AsyncReply) give the reply they sent, if any.

    Raises
    ------
    FailReply
        If the device has no handler for the request.
    """
    if running_loop() is not None:
        return _handle(dev, req)
    # A loop of its own, not the thread's current one: there may be none (another thread,
    # or after an AsyncTestCase), and a coroutine handler needs one while it is called.
    # Not made current either, so that the thread's own loop is left as it was.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_handle_to_end(dev, req))
    finally:
        loop.close()


def _handle(dev: server.DeviceServer, req: Any) -> Any:
    """Call the handler on the running loop: its reply, or a future of it (a coroutine)."""
    msg = req.msg
    handler = dev._request_handlers.get(msg.name)
    if handler is None:
        raise FailReply("Unknown request %r" % msg.name)
    try:
        reply = handler(dev, req, msg)
    except AsyncReply:
        return getattr(req, "reply_msg", None)
    if is_awaitable(reply) or isinstance(reply, concurrent.futures.Future):
        return asyncio.ensure_future(_send_when_resolved(req, reply))
    req.reply_with_message(reply)
    return reply


async def _send_when_resolved(req: Any, pending_reply: Any) -> Message:
    if isinstance(pending_reply, concurrent.futures.Future):  # resolved in another thread
        pending_reply = asyncio.wrap_future(pending_reply)
    reply = await pending_reply
    req.reply_with_message(reply)
    return reply


async def _handle_to_end(dev: server.DeviceServer, req: Any) -> Any:
    reply = _handle(dev, req)
    return (await reply) if is_awaitable(reply) else reply
