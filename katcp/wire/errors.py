"""The exceptions of katcp, shared by the codec, clients and servers."""


class KatcpError(Exception):
    """Base class for KATCP errors raised by clients and version checks."""


class KatcpClientError(KatcpError):
    """Raised by KATCP clients when an error occurs."""


class KatcpClientDisconnected(KatcpClientError):
    """Raised when trying to send a message to a disconnected server."""


class KatcpVersionError(KatcpError):
    """Raised when using a feature the remote KATCP protocol version does not support."""


class KatcpDeviceError(Exception):
    """Raised by KATCP servers when errors occur (deprecated)."""


class KatcpSyntaxError(ValueError):
    """Raised by parsers when encountering a syntax error."""


class KatcpTypeError(TypeError):
    """Raised by parsers when encountering invalid types."""


class FailReply(Exception):
    """Raised by request handlers to indicate a failure.

    The server replies ``!name fail <message>`` instead of sending a traceback.
    """


class AsyncReply(Exception):
    """Raised by a request handler to indicate it will reply later."""

