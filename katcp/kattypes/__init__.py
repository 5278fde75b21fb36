"""Utilities for dealing with KATCP types.

KATCP types (:class:`KatcpType` subclasses) convert between Python values and the byte
strings sent on the wire, and the decorators (:func:`request`, :func:`return_reply`,
:func:`inform`, ...) use them to unpack message arguments into handler arguments and to
pack handler results into reply messages.
"""

from katcp._export import forward_patches, publish
from katcp.kattypes.decorators import (async_make_reply, concurrent_reply,
                                       has_katcp_protocol_flags, inform, make_reply,
                                       minimum_katcp_version, pack_types, request,
                                       request_timeout_hint, return_reply, send_reply,
                                       unpack_message, unpack_types)
from katcp.kattypes.types import (Address, Bool, Discrete, DiscreteMulti, Float, Int,
                                  KatcpType, Lru, Parameter, Regex, Str, StrictTimestamp,
                                  Struct, Timestamp, TimestampOrNow)

__all__ = publish(__name__, globals())

# 0.9.3 code and tests patch names here that its one module looked up at call time.
forward_patches(__name__)
