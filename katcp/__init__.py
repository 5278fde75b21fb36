"""katcp: the Karoo Array Telescope Communication Protocol for Python 3 and tornado 6.

The top-level names are loaded on first use so that ``import katcp`` stays cheap and
importing :mod:`katcp.core` alone never pulls in the network layers.
"""

import importlib
from typing import Any, List

from katcp.version import __version__

# The module each top-level name is loaded from.
_HOMES = {
    "core": ("Message", "MessageParser", "ProtocolFlags", "Sensor", "Reading", "DeviceMetaclass",
             "KatcpError", "KatcpSyntaxError", "KatcpTypeError", "KatcpVersionError",
             "KatcpClientError", "KatcpClientDisconnected", "KatcpDeviceError", "FailReply",
             "AsyncReply"),
    "server": ("DeviceServerBase", "DeviceServer", "AsyncDeviceServer", "DeviceLogger"),
    "client": ("DeviceClient", "AsyncClient", "CallbackClient", "BlockingClient"),
    "sensortree": ("GenericSensorTree", "BooleanSensorTree", "AggregateSensorTree"),
    "resource_client": ("KATCPClientResource", "KATCPClientResourceContainer",
                        "connect_resource"),
}
_EXPORTS = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError("module 'katcp' has no attribute %r" % name)
    value = getattr(importlib.import_module("katcp." + module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return __all__
