"""Clients for the KAT device control language.

:class:`DeviceClient` dispatches the messages of one connection to handler methods;
:class:`AsyncClient` adds requests whose replies come back as futures or to callbacks,
:class:`CallbackClient` and :class:`BlockingClient` make them usable from any thread.

The package, one concern per module:

- :mod:`~katcp.client.protocol`: the asyncio protocol of a connection (framing, parsing,
  writes);
- :mod:`~katcp.client.lifecycle`: start, connect, reconnect with backoff, wait, stop;
- :mod:`~katcp.client.flags`: the flags of its state, for threads and the loop;
- :mod:`~katcp.client.requests`: the requests in flight, without I/O;
- :mod:`~katcp.client.threadsafe`: thread-safe methods;
- :mod:`~katcp.client.device`, :mod:`~katcp.client.async_client` and
  :mod:`~katcp.client.threaded`: the client classes.
"""

# ``katcp.client.time`` is the time module, as it was when this package was one module:
# code (and 0.9.3's tests) patch ``katcp.client.time.time`` to fix the time of day.
import time  # noqa: F401

from katcp._export import forward_patches, publish
from katcp.client.async_client import AsyncClient
from katcp.client.device import DeviceClient
from katcp.client.lifecycle import address_to_string
from katcp.client.threaded import BlockingClient, CallbackClient, request_check
from katcp.client.threadsafe import make_threadsafe, make_threadsafe_blocking

__all__ = publish(__name__, globals())

# Names the single-module katcp.client had from katcp.core; code written for it imports
# them from here. They keep their own home, so they come after publish().
from katcp.core import (FLOAT_TS_KATCP_MAJOR, SEC_TS_KATCP_MAJOR, VERSION_CONNECT_KATCP_MAJOR,
                        AsyncEvent, DeviceMetaclass, KatcpClientError, KatcpSyntaxError,
                        KatcpVersionError, Message, MessageParser, ProtocolFlags)

# 0.9.3 code and tests patch names here that its one module looked up at call time.
forward_patches(__name__)
