"""Blocking wrappers that make client resources usable from other threads.

Each call crosses onto the resource's ioloop through the wrapper's
:class:`katcp.ioloop_manager.IOLoopThreadWrapper` and blocks for the outcome.
"""

import functools
from typing import Any, Callable, Iterator, Optional, Tuple

import tornado.gen

from katcp.ioloop_manager import ThreadSafeMethodAttrWrapper
from katcp.loop.crossing import thread_wait_timeout
from katcp.resource_client.namespaces import AttrMappingProxy


def _blocking(wrapper: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` on `wrapper`'s loop and block for its outcome.

    No thread-crossing timeout: the waits and requests called this way carry their
    own, so their outcome (or their own timeout error) always arrives.
    """
    return wrapper._ioloop_wrapper.call_in_ioloop(fn, args, kwargs)


def _wrapping(wrapper: Any, wrapper_class: type) -> Callable[[Any], Any]:
    """Wrap values as `wrapper_class` objects on the same loop as `wrapper`."""
    return functools.partial(wrapper_class, ioloop_wrapper=wrapper._ioloop_wrapper)


def _wrapped_view(attr: str, wrapper_class: Callable[[], type]) -> Any:
    """A property: the subject's mapping `attr`, its values wrapped by the class that
    `wrapper_class()` gives (late, as the wrapper classes refer to each other)."""
    def view(self: Any) -> AttrMappingProxy:
        return AttrMappingProxy(getattr(self.__subject__, attr), _wrapping(self, wrapper_class()))
    return property(view, doc="Thread-safe view of the subject's ``%s``." % attr)


class ThreadSafeKATCPSensorWrapper(ThreadSafeMethodAttrWrapper):
    """Thread safe wrapper for :class:`katcp.resource.KATCPSensor`"""

    def wait(self, condition_or_value: Any, timeout: Optional[float] = None) -> Any:
        """Blocking :meth:`katcp.resource.KATCPSensor.wait`.

        Raises the sensor's own timeout error rather than a thread-crossing one.
        """
        return _blocking(self, self.__subject__.wait, condition_or_value, timeout)


class ThreadSafeKATCPClientResourceRequestWrapper(ThreadSafeMethodAttrWrapper):
    """Thread safe wrapper for a :class:`KATCPRequest`: calling it blocks for the reply."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _blocking(self, self.__subject__, *args, **kwargs)


class ThreadSafeKATCPClientGroupWrapper(ThreadSafeMethodAttrWrapper):
    """Thread safe wrapper for :class:`ClientGroup`"""

    req = _wrapped_view("req", lambda: ThreadSafeKATCPClientResourceRequestWrapper)

    @property
    def clients(self) -> Tuple[Any, ...]:
        """The group's clients, each as a :class:`ThreadSafeKATCPClientResourceWrapper`."""
        wrap = _wrapping(self, ThreadSafeKATCPClientResourceWrapper)
        return tuple(wrap(client) for client in self.__subject__.clients)

    # The clients handed out by iterating and indexing are wrapped as those of
    # `clients` (the proxy's own would be the subject's, unwrapped).
    def __iter__(self) -> Iterator[Any]:
        return iter(self.clients)

    def __getitem__(self, index: Any) -> Any:
        return self.clients[index]

    def wait(self, sensor_name: str, condition_or_value: Any, timeout: float = 5.0,
             quorum: Any = None, max_grace_period: float = 1.0) -> Any:
        """Blocking :meth:`ClientGroup.wait`."""
        return _blocking(self, self.__subject__.wait, sensor_name, condition_or_value,
                         timeout, quorum, max_grace_period)


class ThreadSafeKATCPClientResourceWrapper(ThreadSafeMethodAttrWrapper):
    """Should work with both KATCPClientResource or KATCPClientResourceContainer

    Every method that returns a future blocks until it resolves, running on the
    resource's ioloop; ``req``, ``sensor``, ``children`` and ``groups`` hand out
    wrapped objects likewise.
    """

    req = _wrapped_view("req", lambda: ThreadSafeKATCPClientResourceRequestWrapper)
    sensor = _wrapped_view("sensor", lambda: ThreadSafeKATCPSensorWrapper)
    children = _wrapped_view("children", lambda: ThreadSafeKATCPClientResourceWrapper)
    groups = _wrapped_view("groups", lambda: ThreadSafeKATCPClientGroupWrapper)

    # The loop manager started for this wrapper (by connect_resource), stopped by close();
    # and whether close() stopped it (nothing runs the resource's loop any more).
    _loop_owner: Any = None
    _loop_closed = False

    def wait(self, sensor_name: str, condition_or_value: Any, timeout: float = 5) -> Any:
        """Blocking :meth:`katcp.resource.KATCPResource.wait`."""
        return _blocking(self, self.__subject__.wait, sensor_name, condition_or_value, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the resource and wait (up to `timeout` seconds) until it has stopped.

        A wrapper made by :func:`connect_resource` also stops and joins the loop
        thread it started. Closing twice does nothing more.
        """
        owner, self._loop_owner = self._loop_owner, None
        if owner is None and self._loop_closed:
            return
        try:
            self._ioloop_wrapper.call_in_ioloop(_stop, (self.__subject__, timeout), {},
                                                timeout=timeout)
        finally:
            if owner is not None:
                self._loop_closed = True
                owner.stop().result(thread_wait_timeout(timeout))
                owner.join(timeout)

    def __enter__(self) -> "ThreadSafeKATCPClientResourceWrapper":
        """``with wrapper:`` gives the wrapper itself; leaving calls :meth:`close`."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


async def _stop(resource: Any, timeout: float) -> None:
    """Stop a resource or container (on its loop) and wait until it has stopped."""
    resource.stop()
    stopped = resource.until_stopped(timeout)
    if isinstance(stopped, dict):  # a container: one future per child
        stopped = tornado.gen.multi(list(stopped.values()))
    await stopped
