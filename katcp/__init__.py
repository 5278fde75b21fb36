"""katcp: the Karoo Array Telescope Communication Protocol for Python 3 and tornado 6.

The top-level names are loaded on first use so that ``import katcp`` stays cheap and
importing :mod:`katcp.core` alone never pulls in the network layers. The submodules are
too: ``import katcp`` then ``katcp.kattypes.Int()`` works, as 0.9.3's eager imports let it.
"""

import functools
import importlib
import pkgutil
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
        if name in _submodules():
            return importlib.import_module("katcp." + name)  # which sets it here
        raise AttributeError("module 'katcp' has no attribute %r" % name)
    value = getattr(importlib.import_module("katcp." + module), name)
    globals()[name] = value
    return value


@functools.lru_cache(maxsize=None)
def _submodules() -> List[str]:
    # Cached: hasattr(katcp, name) of a missing name would scan the package again.
    return [info.name for info in pkgutil.iter_modules(__path__)
            if not info.name.startswith("_")]


def __dir__() -> List[str]:
    dunders = [name for name in globals() if name.startswith("__")]
    return sorted(set(dunders) | set(__all__) | set(_submodules()))
