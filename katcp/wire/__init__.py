"""The KATCP wire and its data, without I/O or an event loop (layer 1).

- :mod:`katcp.wire.errors`: the exceptions.
- :mod:`katcp.wire.text`: the one place where bytes become text and back.
- :mod:`katcp.wire.message`: :class:`Message` and :class:`MessageParser`.
- :mod:`katcp.wire.flags`: protocol versions, :class:`ProtocolFlags` and the v4/v5 dialects.
- :mod:`katcp.wire.types`: one encode/decode rule per KATCP type, for v4 and v5.
- :mod:`katcp.wire.sensor`: :class:`Sensor` and :class:`Reading`.
- :mod:`katcp.wire.handlers`: the metaclasses that collect ``request_*`` handlers.
- :mod:`katcp.wire.util`: small dict and identity helpers.

The documented names are re-exported by :mod:`katcp.core`, their home in the API docs.
"""
