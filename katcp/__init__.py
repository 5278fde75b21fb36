"""katcp: the Karoo Array Telescope Communication Protocol for Python 3 and tornado 6.

The top-level names are loaded on first use so that ``import katcp`` stays cheap and
importing :mod:`katcp.core` alone never pulls in the network layers.
"""

import importlib
from typing import Any, List

from katcp.version import __version__

_EXPORTS = {
    "Message": "core",
    "MessageParser": "core",
    "ProtocolFlags": "core",
    "Sensor": "core",
    "Reading": "core",
    "DeviceMetaclass": "core",
    "KatcpError": "core",
    "KatcpSyntaxError": "core",
    "KatcpTypeError": "core",
    "KatcpVersionError": "core",
    "KatcpClientError": "core",
    "KatcpClientDisconnected": "core",
    "KatcpDeviceError": "core",
    "FailReply": "core",
    "AsyncReply": "core",
    "DeviceServerBase": "server",
    "DeviceServer": "server",
    "AsyncDeviceServer": "server",
    "DeviceLogger": "server",
    "DeviceClient": "client",
    "AsyncClient": "client",
    "CallbackClient": "client",
    "BlockingClient": "client",
    "GenericSensorTree": "sensortree",
    "BooleanSensorTree": "sensortree",
    "AggregateSensorTree": "sensortree",
    "KATCPClientResource": "resource_client",
    "KATCPClientResourceContainer": "resource_client",
}

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
