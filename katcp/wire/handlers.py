"""The metaclasses that collect a class's ``request_*``, ``inform_*`` and ``reply_*``
handlers into tables keyed by KATCP message name.
"""

import sys
from typing import Any, Callable, Dict, Tuple


def convert_method_name(prefix: str, name: str) -> str:
    """Convert a method name to the corresponding KATCP message name.

    Parameters
    ----------
    prefix : str
        Method prefix such as ``'request_'``, stripped if present.
    name : str
        Python method name, e.g. ``'request_sensor_list'`` or ``'sensor_list'``.

    Returns
    -------
    katcp_name : str
        The KATCP name, e.g. ``'sensor-list'``.
    """
    if name.startswith(prefix):
        name = name[len(prefix):]
    return name.replace("_", "-")


class DeviceMetaclass(type):
    """Metaclass for DeviceServer and DeviceClient classes.

    Collects up methods named request_* and adds them to a dictionary of supported
    methods on the class. All request_* methods must have a doc string so that help
    can be generated. The same is done for inform_* and reply_* methods.
    """

    _PREFIXES: Tuple[Tuple[str, str], ...] = (("request_", "_request_handlers"),
                 ("inform_", "_inform_handlers"),
                 ("reply_", "_reply_handlers"))

    # Handlers that must be documented: ?help shows the docstrings of requests.
    _DOCSTRING_REQUIRED: Tuple[str, ...] = ("request_",)

    def __init__(cls, name: str, bases: Tuple[type, ...], dct: Dict[str, Any]) -> None:
        super().__init__(name, bases, dct)
        for _prefix, attr in cls._PREFIXES:
            setattr(cls, attr, {})
        for attr_name in dir(cls):
            for prefix, handlers_attr in cls._PREFIXES:
                if not attr_name.startswith(prefix):
                    continue
                handler = getattr(cls, attr_name)
                if not callable(handler):
                    break
                # Raised, not asserted, so that python -O keeps the rule; -OO strips
                # every docstring, and then there is nothing to require.
                if (handler.__doc__ is None and prefix in type(cls)._DOCSTRING_REQUIRED
                        and sys.flags.optimize < 2):
                    raise AssertionError("Handler %s.%s has no docstring." % (name, attr_name))
                if cls.check_protocol(handler):
                    getattr(cls, handlers_attr)[convert_method_name(prefix, attr_name)] = handler
                break

    def check_protocol(cls, handler: Callable[..., Any]) -> bool:
        """Return False if handler should be filtered.

        Parameters
        ----------
        handler : function
            A request, inform or reply handler.
        """
        return True


class DeviceServerMetaclass(DeviceMetaclass):
    """Specialisation of DeviceMetaclass for Device Servers.

    Handlers decorated with ``minimum_katcp_version`` or ``has_katcp_protocol_flags``
    are left out when the class's ``PROTOCOL_INFO`` does not satisfy them. A server's
    inform handlers must have docstrings too, as in katcp 0.9.
    """

    _DOCSTRING_REQUIRED = ("request_", "inform_")

    def check_protocol(cls, handler: Callable[..., Any]) -> bool:
        """True if the current server's protocol flags satisfy handler requirements.

        Parameters
        ----------
        handler : function
            A request, inform or reply handler.
        """
        protocol_info = getattr(cls, "PROTOCOL_INFO", None)
        if protocol_info is None:
            return True
        # Every version is at least the empty minimum of an undecorated handler.
        min_version = tuple(getattr(handler, "_minimum_katcp_version", ()))
        if (protocol_info.major, protocol_info.minor) < min_version:
            return False
        required_flags = getattr(handler, "_has_katcp_protocol_flags", None) or ()
        return all(protocol_info.supports(flag) for flag in required_flags)


