"""The socket under a transport, for when its loop cannot close the transport."""

import contextlib
import os
import socket
from typing import Any


def shut_down_socket(transport: Any) -> None:
    """Shut down (both ways) the socket of `transport`, whose loop is closed.

    asyncio closes no transport of a closed loop, and the transport's socket is closed
    only when the transport is collected; shut down now, it tells the peer at once that
    the connection is over.

    Parameters
    ----------
    transport : :class:`asyncio.Transport`
        A socket transport (of asyncio or uvloop).

    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):  # the peer has gone already, or the socket is closed
        # Through a duplicate: uvloop's transports give a pseudo-socket that cannot shut
        # down (a shutdown is of the socket, whatever its fd).
        with socket.socket(fileno=os.dup(sock.fileno())) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
