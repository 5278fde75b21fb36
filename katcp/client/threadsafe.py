"""Thread-safe client methods: calls from other threads cross to the client's loop."""

import functools
import inspect
from typing import Any, Callable, Optional, TypeVar

from katcp.loop.crossing import check_timeout, on_thread


F = TypeVar("F", bound=Callable[..., Any])


def make_threadsafe(meth: F) -> F:
    """Decorator for a DeviceClient method that should always run in ioloop.

    Used with :meth:`DeviceClient.enable_thread_safety`. If that is not called the
    method is unprotected and it is the user's responsibility to call it only from
    the ioloop; otherwise calls from other threads are passed to the ioloop. Only
    for methods without a return value.

    Parameters
    ----------
    meth : callable

    Returns
    -------
    meth : callable
        The same method, marked for wrapping.

    """
    meth.make_threadsafe = True  # type: ignore[attr-defined]
    return meth


def make_threadsafe_blocking(meth: F) -> F:
    """Decorator for a DeviceClient method that will block.

    As :func:`make_threadsafe`, except that calls from other threads block until the
    method has run on the ioloop, and return its result (the result of the future,
    if it returns one); a ``timeout`` keyword argument is the method's own and limits
    the blocking time to it and :data:`~katcp.loop.crossing.TIMEOUT_GRACE` seconds more,
    for the outcome of the method's own timeout.
    Called on the ioloop, the method runs directly.
    """
    meth.make_threadsafe_blocking = True  # type: ignore[attr-defined]
    return meth


def wrap_threadsafe_methods(client: Any, post: Callable[[Callable[[], Any]], None],
                            call: Callable[..., Any]) -> None:
    """Replace `client`'s marked methods by instance attributes that cross threads.

    Called on the loop thread (``client.ioloop_thread_id``, read at each call), a
    method runs at once; from another thread, one marked with :func:`make_threadsafe`
    is handed to ``post(fn)`` and one marked with :func:`make_threadsafe_blocking` to
    ``call(fn, *args, **kwargs)``, which returns its result.

    Parameters
    ----------
    client : DeviceClient
    post : callable
        Runs ``fn()`` on the client's loop later.
    call : callable
        Runs ``fn(*args, **kwargs)`` on the client's loop and blocks for its outcome
        (bounded by a ``timeout`` keyword argument, if given).

    """
    for name in dir(type(client)):
        try:
            meth: Any = getattr(client, name, None)
        except Exception:
            continue  # a property that fails before the client runs: no marked method
        # "is True", as in 0.9.3: a Mock patched onto the class answers every attribute
        # with a truthy Mock, and is no marked method.
        blocking = getattr(meth, "make_threadsafe_blocking", False) is True
        if blocking or getattr(meth, "make_threadsafe", False) is True:
            setattr(client, name, _crossing(client, meth, blocking, post, call))


def _checks_request_timeout(meth: F) -> F:
    """Mark one of katcp's request methods, whose ``timeout`` argument is a request's
    timeout: called from another thread, the timeout is checked in the caller.

    Only katcp's own: a ``timeout`` of a user's method may mean something else.
    """
    meth.checks_request_timeout = True  # type: ignore[attr-defined]
    return meth


def _timeout_position(meth: Callable[..., Any]) -> Optional[int]:
    """Where a call of `meth` may give its ``timeout`` by position: its index among the
    positional parameters, or None if it can only be given by keyword (or `meth` has
    none)."""
    try:
        parameters = list(inspect.signature(meth).parameters.values())
    except (TypeError, ValueError):
        return None
    for position, parameter in enumerate(parameters):
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            return None  # *args or keyword-only parameters from here on
        if parameter.name == "timeout":
            return position
    return None


def _crossing(client: Any, meth: Callable[..., Any], blocking: bool,
              post: Callable[[Callable[[], Any]], None],
              call: Callable[..., Any]) -> Callable[..., Any]:
    checks_timeout = getattr(meth, "checks_request_timeout", False)
    timeout_at = _timeout_position(meth) if checks_timeout else None

    @functools.wraps(meth)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if on_thread(client.ioloop_thread_id):
            return meth(*args, **kwargs)
        if checks_timeout:
            # Checked here, in the caller: on the loop its error would come after the
            # call was handed over (a request sent), and a posted call's is lost.
            timeout = (args[timeout_at] if timeout_at is not None and len(args) > timeout_at
                       else kwargs.get("timeout"))
            if (timeout.__class__ is not float and timeout.__class__ is not int
                    and timeout is not None):
                check_timeout(timeout)
        if blocking:
            return call(meth, *args, **kwargs)
        post(functools.partial(meth, *args, **kwargs))
        return None

    return wrapped
