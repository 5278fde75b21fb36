"""Blocking wrappers that make client resources usable from other threads."""

import functools

from katcp.ioloop_manager import ThreadSafeMethodAttrWrapper
from katcp.resource_client.namespaces import AttrMappingProxy

__all__ = ["ThreadSafeKATCPSensorWrapper", "ThreadSafeKATCPClientResourceRequestWrapper",
           "ThreadSafeKATCPClientGroupWrapper", "ThreadSafeKATCPClientResourceWrapper"]


class ThreadSafeKATCPSensorWrapper(ThreadSafeMethodAttrWrapper):
    """Thread safe wrapper for :class:`katcp.resource.KATCPSensor`"""

    def wait(self, condition_or_value, timeout=None):
        """Block until the sensor satisfies a condition; see :meth:`KATCPSensor.wait`.

        Raises the sensor's own timeout error rather than a thread-crossing one.
        """
        return self._ioloop_wrapper.call_in_ioloop(
            self.__subject__.wait, (condition_or_value, timeout), {}
        )


class ThreadSafeKATCPClientResourceRequestWrapper(ThreadSafeMethodAttrWrapper):
    """Thread safe wrapper for a :class:`KATCPRequest`: calling it blocks for the reply."""

    def __call__(self, *args, **kwargs):
        # The request carries its own timeout, so the reply (or a timeout reply)
        # always arrives; the thread crossing needs none.
        return self._ioloop_wrapper.call_in_ioloop(self.__subject__, args, kwargs)


class ThreadSafeKATCPClientGroupWrapper(ThreadSafeMethodAttrWrapper):
    """Thread safe wrapper for :class:`ClientGroup`"""

    @property
    def req(self):
        return AttrMappingProxy(
            self.__subject__.req,
            functools.partial(
                ThreadSafeKATCPClientResourceRequestWrapper,
                ioloop_wrapper=self._ioloop_wrapper,
            ),
        )

    @property
    def clients(self):
        return tuple(
            ThreadSafeKATCPClientResourceWrapper(client, self._ioloop_wrapper)
            for client in self.__subject__.clients
        )

    def wait(self, sensor_name, condition_or_value, timeout=5.0, quorum=None,
             max_grace_period=1.0):
        """Blocking :meth:`ClientGroup.wait`."""
        return self._ioloop_wrapper.call_in_ioloop(
            self.__subject__.wait,
            (sensor_name, condition_or_value, timeout, quorum, max_grace_period),
            {},
        )


class ThreadSafeKATCPClientResourceWrapper(ThreadSafeMethodAttrWrapper):
    """Should work with both KATCPClientResource or KATCPClientResourceContainer

    Every method that returns a future blocks until it resolves, running on the
    resource's ioloop; ``req``, ``sensor``, ``children`` and ``groups`` hand out
    wrapped objects likewise.
    """

    def _wrapping(self, wrapper_class):
        return functools.partial(wrapper_class, ioloop_wrapper=self._ioloop_wrapper)

    @property
    def req(self):
        return AttrMappingProxy(
            self.__subject__.req,
            self._wrapping(ThreadSafeKATCPClientResourceRequestWrapper),
        )

    @property
    def sensor(self):
        return AttrMappingProxy(
            self.__subject__.sensor, self._wrapping(ThreadSafeKATCPSensorWrapper)
        )

    @property
    def children(self):
        return AttrMappingProxy(
            self.__subject__.children,
            self._wrapping(ThreadSafeKATCPClientResourceWrapper),
        )

    @property
    def groups(self):
        return AttrMappingProxy(
            self.__subject__.groups, self._wrapping(ThreadSafeKATCPClientGroupWrapper)
        )

    def wait(self, sensor_name, condition_or_value, timeout=5):
        """Blocking :meth:`KATCPResource.wait`."""
        return self._ioloop_wrapper.call_in_ioloop(
            self.__subject__.wait, (sensor_name, condition_or_value, timeout), {}
        )
