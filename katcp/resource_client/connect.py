"""One call to a synced resource: :func:`connect_resource`, for interactive use."""

from typing import Any, Optional, Tuple, Union

from katcp.ioloop_manager import IOLoopManager
from katcp.resource_client.resources import KATCPClientResource
from katcp.resource_client.threadsafe import ThreadSafeKATCPClientResourceWrapper
from katcp.wire.types import address_to_string


def _host_port(address: Union[str, Tuple[str, int]]) -> Tuple[str, int]:
    if isinstance(address, str):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("Expected an address as 'host:port', not %r" % (address,))
        return host, int(port)
    host, port_number = address
    return host, int(port_number)


def connect_resource(address: Union[str, Tuple[str, int]], name: Optional[str] = None,
                     timeout: Optional[float] = 10.0, controlled: bool = True,
                     **resource_spec: Any) -> ThreadSafeKATCPClientResourceWrapper:
    """Connect to a device and return a blocking resource for it, once synced.

    Starts a managed loop (:class:`katcp.ioloop_manager.IOLoopManager`) in a thread of
    its own, a :class:`KATCPClientResource` on it and its
    :class:`ThreadSafeKATCPClientResourceWrapper`, and waits until the resource is
    synced. Every call on the result blocks until done, from any thread, so it suits
    IPython, Jupyter and scripts alike::

        with connect_resource("127.0.0.1:5000") as dev:
            print(dev.req.help())
            print(dev.sensor.uptime.get_value())

    Parameters
    ----------
    address : str or (host, port) tuple
        The device, e.g. ``"127.0.0.1:5000"``.
    name : str, optional
        The resource's name; defaults to the address as ``host:port``.
    timeout : float or None, optional
        Seconds to wait until synced; None waits forever.
    controlled : bool, optional
        Expose the device's requests as ``req.<name>`` (True by default here, unlike
        a bare :class:`KATCPClientResource`).
    **resource_spec
        Further keys of the resource specification of :class:`KATCPClientResource`
        (``description``, ``auto_reconnect``, ...).

    Returns
    -------
    resource : :class:`ThreadSafeKATCPClientResourceWrapper`
        Synced. Its :meth:`~ThreadSafeKATCPClientResourceWrapper.close` (or leaving a
        ``with`` block) stops the resource and the loop thread.

    Raises
    ------
    tornado.util.TimeoutError
        If not synced within `timeout`; the message names the address and the state
        reached. Everything started is stopped first.
    ValueError
        If `address` is not ``host:port``.

    """
    host, port = _host_port(address)
    spec = dict(resource_spec, address=(host, port), controlled=controlled,
                name=name or address_to_string((host, port)))
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=10.0)
    resource = KATCPClientResource(spec)
    resource.set_ioloop(manager.get_ioloop())
    wrapper = ThreadSafeKATCPClientResourceWrapper(resource, manager)
    wrapper._loop_owner = manager
    try:
        wrapper.start()
        wrapper.until_synced(timeout)
    except BaseException:
        wrapper.close()
        raise
    return wrapper
