"""The metaclasses that collect a class's ``request_*``, ``inform_*`` and ``reply_*``
handlers into tables keyed by KATCP message name.
"""

import sys
import weakref
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

    def __setattr__(cls, name: str, value: Any) -> None:
        old = cls.__dict__.get(name)
        super().__setattr__(name, value)
        if name == "_request_handlers" and old is not None:
            # A table replaced on the class (mock.patch.object does so, and puts it back
            # the same way) is what its servers' copies become, as if they read it there.
            for server in tuple(_table_copies.values()):
                if isinstance(server, cls) and server._request_handlers is old:
                    server._request_handlers = value

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


# Servers whose request handler table is a copy of their class's on the instance (see
# copy_request_handlers()), kept current by DeviceServerMetaclass.__setattr__. Keyed by
# id(), not a WeakSet: a server class defining __eq__ alone makes unhashable servers.
_table_copies: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()


def copy_request_handlers(server: Any) -> None:
    """Give `server` its class's request handler table as an attribute of its own.

    A server reads the table for every request: from the instance, not through it from
    the class (about 200 instructions less on CPython 3.11). The copy is the class's
    table itself, so handlers added to it later are heard, and it follows a table put in
    its place on the class (by :class:`DeviceServerMetaclass`). A table the instance was
    given before this is kept.

    Parameters
    ----------
    server : object
        An instance of a class made by :class:`DeviceServerMetaclass`.
    """
    server._request_handlers = server._request_handlers
    _table_copies[id(server)] = server
