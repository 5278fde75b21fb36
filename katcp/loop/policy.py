"""Which asyncio event loop katcp's own loops run on: the standard one or uvloop.

katcp creates an event loop wherever it manages one (:class:`katcp.IOLoopManager`, so a
client or server started without a loop of its own, the handler thread's server, the
resource clients) and in its console scripts. Those loops are made by :func:`new_ioloop`,
which follows one switch:

* the environment variable ``KATCP_EVENT_LOOP`` (``asyncio``, the default, or ``uvloop``),
  read when a loop is made, or
* :func:`use_uvloop`, which overrides the environment for the whole process.

uvloop is optional: install it with ``pip install katcp[uvloop]``. Loops that a program
makes itself (and hands to katcp with ``set_ioloop()``) are the program's business; a
program that owns its process can make them follow the switch too with :func:`install`.

A thread that has no event loop of its own yet (a plain script's main thread) gets one
from :func:`thread_ioloop` when katcp needs it, as ``IOLoop.current()`` made one in
katcp 0.9.
"""

import asyncio
import functools
import os
import threading
from typing import Any, Callable, Optional, TypeVar

import tornado.ioloop

from katcp.loop.crossing import running_loop

__all__ = ["ENV", "event_loop_name", "use_uvloop", "new_event_loop", "new_ioloop", "install",
           "thread_ioloop", "no_loop_to_run", "on_thread_ioloop"]

ENV = "KATCP_EVENT_LOOP"
"""Name of the environment variable that selects the event loop."""

_NAMES = ("asyncio", "uvloop")

_F = TypeVar("_F", bound=Callable[..., Any])

# Set by use_uvloop(); None: the environment decides.
_chosen: Optional[str] = None


def event_loop_name() -> str:
    """The event loop katcp makes: ``'asyncio'`` or ``'uvloop'``.

    Returns
    -------
    name : str

    Raises
    ------
    ValueError
        If ``KATCP_EVENT_LOOP`` names another loop.

    """
    if _chosen is not None:
        return _chosen
    name = os.environ.get(ENV, "").strip().lower() or "asyncio"
    if name not in _NAMES:
        raise ValueError("%s=%r: expected one of %s" % (ENV, name, ", ".join(_NAMES)))
    return name


def _check_ioloop_takes_a_loop() -> None:
    # Older tornado makes an IOLoop's asyncio loop itself (no asyncio_loop argument): a
    # managed uvloop loop would fail with a TypeError from deep inside it.
    if tornado.version_info < (6, 2):
        raise ImportError("katcp's managed loops on uvloop need tornado 6.2 or newer (this "
                          "is %s): pip install katcp[uvloop]" % tornado.version)


def _uvloop() -> Any:
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ImportError("uvloop is not installed: pip install katcp[uvloop]") from exc
    return uvloop


def use_uvloop(enable: bool = True) -> None:
    """Make every loop katcp creates from now on a uvloop loop (or, with False, asyncio's).

    Loops already made keep running as they are; call it before starting clients and
    servers. It overrides ``KATCP_EVENT_LOOP``.

    Parameters
    ----------
    enable : bool
        True for uvloop, False for the standard asyncio loop.

    Raises
    ------
    ImportError
        If uvloop is wanted but not installed, or tornado is older than 6.2.

    """
    global _chosen
    if enable:
        _uvloop()
        _check_ioloop_takes_a_loop()
    _chosen = "uvloop" if enable else "asyncio"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new asyncio event loop of the selected kind (see :func:`event_loop_name`)."""
    if event_loop_name() == "uvloop":
        return _uvloop().new_event_loop()
    return asyncio.new_event_loop()


def new_ioloop() -> tornado.ioloop.IOLoop:
    """A new tornado IOLoop (not current anywhere) on a loop from :func:`new_event_loop`.

    On uvloop this needs tornado 6.2 or newer (its ``asyncio_loop`` argument).
    """
    if event_loop_name() == "asyncio":
        return tornado.ioloop.IOLoop(make_current=False)
    _check_ioloop_takes_a_loop()
    return tornado.ioloop.IOLoop(make_current=False, asyncio_loop=new_event_loop())


def install() -> None:
    """Make ``asyncio.run()`` and ``asyncio.new_event_loop()`` follow the switch too.

    For programs that own their process, such as katcp's console scripts: with uvloop
    selected it sets uvloop's event loop policy; with asyncio it changes nothing.
    """
    if event_loop_name() == "uvloop":
        asyncio.set_event_loop_policy(_uvloop().EventLoopPolicy())


#: The event loop policy, asked without a warning: Python 3.14 deprecates the public
#: accessor (``asyncio.get_event_loop_policy``), not its private one. Its per-thread state
#: (``_local._loop``) says whether a loop is set for a thread without making one.
event_loop_policy = getattr(asyncio.events, "_get_event_loop_policy",
                            asyncio.get_event_loop_policy)

_UNKNOWN = object()


class _ClosedWithThread:
    """The loop :func:`thread_ioloop` made for a thread, closed when that thread ends.

    Held by a thread-local, which a thread lets go of as it ends (before ``join()``
    returns). Without it the loop and its descriptors (epoll and a socket pair) would
    outlive the thread for ever: tornado maps every asyncio loop to its IOLoop until the
    IOLoop is closed.
    """

    __slots__ = ("ioloop",)

    def __init__(self, ioloop: tornado.ioloop.IOLoop) -> None:
        self.ioloop = ioloop

    def __del__(self) -> None:
        loop = self.ioloop.asyncio_loop  # type: ignore[attr-defined]
        # One closed already, or handed to another thread that runs it, is not ours to close.
        if not (loop.is_closed() or loop.is_running()):
            self.ioloop.close()


_made_for_thread = threading.local()


def thread_ioloop() -> tornado.ioloop.IOLoop:
    """The calling thread's IOLoop: made, and set as the thread's event loop, if it has none.

    What ``IOLoop.current()`` was in katcp 0.9: the running loop, else the loop set for the
    thread, else a new one (of the kind :func:`new_event_loop` makes) that stays the
    thread's. Not left to ``IOLoop.current()``: there asyncio makes the loop, which Python
    3.12 and 3.13 deprecate in the main thread ("There is no current event loop", an error
    under ``-W error``). A loop made here for a thread other than the main one is closed
    when the thread ends, unless it is closed already or running then.

    Returns
    -------
    ioloop : :class:`tornado.ioloop.IOLoop`

    """
    if running_loop() is None:
        # The policy's per-thread state says whether a loop is set, where asking
        # asyncio.get_event_loop() would make one (and warn). A policy without that
        # state is left to make its own as it does.
        local = getattr(event_loop_policy(), "_local", None)
        if getattr(local, "_loop", _UNKNOWN) is None:
            asyncio.set_event_loop(new_event_loop())
            ioloop = tornado.ioloop.IOLoop.current()
            if threading.current_thread() is not threading.main_thread():
                made = _made_for_thread.__dict__.setdefault("closers", [])
                made.append(_ClosedWithThread(ioloop))
            return ioloop
    return tornado.ioloop.IOLoop.current()


def no_loop_to_run() -> bool:
    """Whether nothing could run what the calling thread starts now: no loop runs in it,
    and the loop set for it (asked without making one) is none, or closed. A policy
    without per-thread state that says is taken to have one.

    Returns
    -------
    none : bool

    """
    if running_loop() is not None:
        return False
    loop: Any = getattr(getattr(event_loop_policy(), "_local", None), "_loop", _UNKNOWN)
    return loop is None or (loop is not _UNKNOWN and loop.is_closed())


def on_thread_ioloop(fn: _F) -> _F:
    """Make `fn`, a function that makes futures (a ``tornado.gen.coroutine``), called off
    any running loop, make them on the calling thread's loop (see :func:`thread_ioloop`).

    For the methods that scripts call from a thread with no loop, as katcp 0.9's tests do
    with a mock sensor manager: tornado's futures would otherwise have asyncio make the
    thread's loop, which Python 3.12 and 3.13 deprecate ("There is no current event
    loop", an error under ``-W error``). On a running loop the call is left as it is.

    Parameters
    ----------
    fn : callable

    Returns
    -------
    wrapped : callable
        `fn`, making the thread's loop first where there is none.

    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if running_loop() is None:
            thread_ioloop()
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
