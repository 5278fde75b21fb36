"""Core KATCP classes: messages, the message parser, protocol flags, sensors, exceptions
and the small asynchronous helpers shared by clients and servers.

This module is the documented home of these names; they live in :mod:`katcp.wire`
(no I/O, no event loop) and :mod:`katcp.loop.futures`, and keep ``katcp.core`` as their
``__module__`` (what reprs, pickles and the API pages show).
"""

# ``katcp.core.time`` is the time module, as in 0.9.3's katcp/core.py: code (and 0.9.3's
# tests) patch ``katcp.core.time.time`` to fix Sensor timestamps.
import time  # noqa: F401

from katcp._export import forward_patches, publish
from katcp.loop.futures import (AsyncCallbackEvent, AsyncEvent, AsyncState, LatencyTimer,
                                future_timeout_manager, log_coroutine_exceptions,
                                log_future_exceptions, until_any, until_later, until_some)
from katcp.wire.errors import (AsyncReply, FailReply, KatcpClientDisconnected,
                               KatcpClientError, KatcpDeviceError, KatcpError,
                               KatcpSyntaxError, KatcpTypeError, KatcpVersionError)
from katcp.wire.flags import (DEFAULT_KATCP_MAJOR, FLOAT_TS_KATCP_MAJOR,
                              INTERFACE_CHANGED_KATCP_MAJOR, MID_KATCP_MAJOR, MS_TO_SEC_FAC,
                              SEC_TO_MS_FAC, SEC_TS_KATCP_MAJOR, VERSION_CONNECT_KATCP_MAJOR,
                              ProtocolFlags)
from katcp.wire.handlers import DeviceMetaclass, DeviceServerMetaclass, convert_method_name
from katcp.wire.message import Message, MessageParser
from katcp.wire.sensor import Reading, Sensor
from katcp.wire.text import encode_utf8_with_error_log
from katcp.wire.util import AttrDict, DefaultAttrDict, hashable_identity, steal_docstring_from

__all__ = publish(__name__, globals())

# 0.9.3 code and tests patch names here that its one module looked up at call time.
forward_patches(__name__, "katcp.wire", "katcp.loop.futures")
