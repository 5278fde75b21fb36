"""The thread-safe clients, for programs that talk to a server from their own threads."""

import logging
from typing import Any, List, Optional, Tuple, Type

from katcp.client.async_client import AsyncClient
from katcp.client.lifecycle import log
from katcp.core import Message
from katcp.wire.message import readable_message


class CallbackClient(AsyncClient):
    """Thread-safe asynchronous client: callback, future and blocking requests.

    It takes the parameters of :class:`AsyncClient`, and calls
    :meth:`~DeviceClient.enable_thread_safety` itself.
    """

    def __init__(self, host: str, port: int, tb_limit: int = 20, timeout: Optional[float] = 5.0,
                 logger: Optional[logging.Logger] = log, auto_reconnect: bool = True) -> None:
        super().__init__(host, port, tb_limit=tb_limit, timeout=timeout, logger=logger,
                         auto_reconnect=auto_reconnect)
        self.enable_thread_safety()


class BlockingClient(CallbackClient):
    """Thread-safe client for synchronous communication with a server.

    It takes the parameters of :class:`AsyncClient`; use
    :meth:`~AsyncClient.blocking_request`.
    """


def request_check(client: AsyncClient, exception: Type[Exception], *msg_parms: Any,
                  timeout: Optional[float] = None,
                  mid: Any = None) -> Tuple[Message, List[Message]]:
    """Make blocking request to client and raise exception if reply is not ok.

    Parameters
    ----------
    client : DeviceClient instance
    exception : Exception class to raise
    *msg_parms : Message parameters sent to the Message.request() call
    timeout : float, optional
        Passed on to client.blocking_request().
    mid : optional
        Passed on to Message.request().

    Returns
    -------
    reply, informs : as returned by client.blocking_request

    Raises
    ------
    *exception* passed as parameter is raised if reply.reply_ok() is False

    """
    req_msg = Message.request(*msg_parms, mid=mid)
    reply, informs = client.blocking_request(req_msg, timeout=timeout)
    if not reply.reply_ok():
        raise exception('Unexpected failure reply "{2}"\n with device at {0}, request \n"{1}"'
                        .format(client.bind_address_string, req_msg, readable_message(reply)))
    return reply, informs
