"""Servers for the KAT device control language.

:class:`KATCPServer` is the transport: it accepts TCP connections on a tornado IOLoop, splits
the byte stream into lines, parses them and hands each :class:`~katcp.core.Message` to a
device (:class:`DeviceServerBase` and subclasses), which dispatches it to a ``request_*``,
``inform_*`` or ``reply_*`` method. Replies and informs are buffered per connection and
written once per loop iteration.

The package keeps one concern per module: :mod:`~katcp.server.transport` (the TCP side),
:mod:`~katcp.server.sending` and :mod:`~katcp.server.loop_calls` (the transport's sends and
its calls from other threads), :mod:`~katcp.server.stream` (one accepted connection's
reading and writing), :mod:`~katcp.server.stream_host` (what a connection needs of its
server, and the rules of a connection's life), :mod:`~katcp.server.connection` (what
handlers talk to), :mod:`~katcp.server.handler_thread`, :mod:`~katcp.server.base` (a
device's dispatch), :mod:`~katcp.server.reply_outcomes` (its replies to what handlers
return or raise), :mod:`~katcp.server.device_sending` (its informs and replies),
:mod:`~katcp.server.lifecycle` (its start and stop), :mod:`~katcp.server.standard_requests`,
:mod:`~katcp.server.sampling_requests`, :mod:`~katcp.server.device` and
:mod:`~katcp.server.logger`. Every public name is imported from here, where it is documented.
"""

# ``katcp.server.time`` is the time module, as it was when this package was one module:
# code (and 0.9.3's tests) patch ``katcp.server.time.time`` to fix log timestamps.
import time  # noqa: F401

from katcp._export import forward_patches, publish
from katcp.server.base import DeviceServerBase
from katcp.server.connection import (ClientConnection, ClientRequestConnection,
                                     ThreadsafeClientConnection)
from katcp.server.device import AsyncDeviceServer, DeviceServer
from katcp.server.handler_thread import MessageHandlerThread
from katcp.server.logger import DeviceLogger
from katcp.server.standard_requests import BASE_REQUESTS, construct_name_filter
from katcp.server.loop_calls import return_future
from katcp.server.transport import KATCPServer

__all__ = publish(__name__, globals())

# Names the single-module katcp.server had from other modules; code written for it imports
# them from here. They keep their own home, so they come after publish().
from katcp.core import (DEFAULT_KATCP_MAJOR, INTERFACE_CHANGED_KATCP_MAJOR, SEC_TS_KATCP_MAJOR,
                        VERSION_CONNECT_KATCP_MAJOR, AsyncReply, DeviceServerMetaclass, FailReply,
                        KatcpSyntaxError, Message, MessageParser, ProtocolFlags, Sensor)
from katcp.ioloop_manager import IOLoopManager
from katcp.kattypes import (Int, Str, has_katcp_protocol_flags, minimum_katcp_version, request,
                            return_reply)
from katcp.sampling import SampleStrategy, format_inform_v4, format_inform_v5

# 0.9.3 code and tests patch names here that its one module looked up at call time.
forward_patches(__name__)
