"""Servers for the KAT device control language.

:class:`KATCPServer` is the transport: it accepts TCP connections on a tornado IOLoop, splits
the byte stream into lines, parses them and hands each :class:`~katcp.core.Message` to a
device (:class:`DeviceServerBase` and subclasses), which dispatches it to a ``request_*``,
``inform_*`` or ``reply_*`` method. Replies and informs are buffered per connection and
written once per loop iteration.

The package keeps one concern per module: :mod:`~katcp.server.transport` (the TCP side),
:mod:`~katcp.server.connection` (what handlers talk to), :mod:`~katcp.server.handler_thread`,
:mod:`~katcp.server.base` (dispatch), :mod:`~katcp.server.standard_requests`,
:mod:`~katcp.server.sampling_requests`, :mod:`~katcp.server.device` and
:mod:`~katcp.server.logger`. Every public name is imported from here, where it is documented.
"""

# ``katcp.server.time`` is the time module, as it was when this package was one module:
# code (and 0.9.3's tests) patch ``katcp.server.time.time`` to fix log timestamps.
import time  # noqa: F401

from katcp._export import publish
from katcp.server.base import DeviceServerBase
from katcp.server.connection import (ClientConnection, ClientRequestConnection,
                                     ThreadsafeClientConnection)
from katcp.server.device import AsyncDeviceServer, DeviceServer
from katcp.server.handler_thread import MessageHandlerThread
from katcp.server.logger import DeviceLogger
from katcp.server.standard_requests import BASE_REQUESTS, construct_name_filter
from katcp.server.transport import KATCPServer, return_future

__all__ = publish(__name__, globals())
