"""Small helpers with no better home: attribute dicts, stable identities, reprs,
docstrings, the traceback limit, and the chaining of a future of any kind (without
importing an event loop).
"""

import concurrent.futures
import functools
import inspect
import numbers
from collections import defaultdict
from typing import Any, Callable, Hashable, Tuple, TypeVar


_F = TypeVar("_F", bound=Callable[..., Any])

_ASYNC_CODE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def escape_name(name: str) -> str:
    """Escape sensor and request names to be valid Python identifiers.

    Parameters
    ----------
    name : str
        KATCP sensor or request name, e.g. ``'sensor-name.sub'``.

    Returns
    -------
    identifier : str
        The name with ``.`` and ``-`` replaced by ``_``, e.g. ``'sensor_name_sub'``.
    """
    return name.replace(".", "_").replace("-", "_")


def request_name_of(identifier: str) -> str:
    """The KATCP request name that `identifier`, made by :func:`escape_name`, stands for.

    Message names hold no ``.`` (nor ``_``), so each ``_`` stands for a ``-``.

    Parameters
    ----------
    identifier : str
        E.g. ``'sensor_list'``.

    Returns
    -------
    name : str
        E.g. ``'sensor-list'``.
    """
    return identifier.replace("_", "-")


def steal_docstring_from(obj: Any) -> Callable[[_F], _F]:
    """Decorator that lets you steal a docstring from another object.

    Parameters
    ----------
    obj : object
        Object whose ``__doc__`` is copied onto the decorated function.
    """
    def deco(fn: _F) -> _F:
        fn.__doc__ = obj.__doc__
        return fn
    return deco


def check_tb_limit(tb_limit: Any) -> None:
    """Refuse a `tb_limit` (frames of the tracebacks sent to a peer) that is not an int.

    Servers and clients take it at construction; a wrong one would only fail later,
    when a handler raises, as the traceback of its fail reply is formatted (the request
    then got no reply at all).

    Parameters
    ----------
    tb_limit : object
        An integer, or None for whole tracebacks.

    Raises
    ------
    TypeError
        If `tb_limit` is neither None nor an integer.
    """
    if tb_limit is not None and not isinstance(tb_limit, numbers.Integral):
        raise TypeError("tb_limit must be an int or None, not %r." % (tb_limit,))


def plain_callback(callback: _F, what: str) -> _F:
    """Return `callback`, refusing an ``async def`` or async generator function.

    For the callbacks katcp calls and moves on from, whose result it does not use (a
    sensor listener, a wait's condition): the coroutine of an ``async def`` would never
    run, and a condition would count it as true. A plain function that returns a
    coroutine cannot be told at registration: where the result is used (a wait's
    condition) :func:`refuse_coroutine` fails it when called; where it is dropped,
    Python warns that the coroutine was never awaited.

    Parameters
    ----------
    callback : callable
    what : str
        What `callback` is, for the error, e.g. ``'listener'``.

    Returns
    -------
    callback : callable
        `callback` itself.

    Raises
    ------
    TypeError
        If `callback` is an ``async def`` or async generator function (also bound, in
        a :func:`functools.partial`, or the ``__call__`` of `callback`'s class).

    """
    if _is_async_callable(callback):
        raise TypeError("%s %r is an async function: it must be a plain function, as "
                        "its result is not awaited" % (what, callback))
    return callback


def _is_async_callable(callback: Any) -> bool:
    # The flags of a function or method's code (a method gives its function's), read at
    # once: inspect's tests cost a microsecond, a lot for each sampling strategy made.
    code = getattr(callback, "__code__", None)
    if code is not None:
        return _has_async_flags(code)
    if isinstance(callback, functools.partial):
        return _is_async_callable(callback.func)
    if inspect.iscoroutinefunction(callback) or inspect.isasyncgenfunction(callback):
        return True
    # An instance whose class's __call__ is async def (a class's own instances are made
    # by type.__call__, a builtin: no code, as for any builtin callable).
    return _has_async_flags(getattr(getattr(type(callback), "__call__", None), "__code__", None))


def _has_async_flags(code: Any) -> bool:
    # A mock of a plain function (mock.Mock(spec=f), mock.MagicMock(spec=f)) has a mock
    # for the flags, which & refuses or (a MagicMock) answers with a true mock; a mock of
    # an async def has an async def's flags.
    flags = getattr(code, "co_flags", None)
    return flags.__class__ is int and bool(flags & _ASYNC_CODE_FLAGS)


def refuse_coroutine(returned: Any, what: str) -> None:
    """Raise TypeError if a plain callback whose result is used returned a coroutine.

    The coroutine is closed (it will never run, and Python would also warn that it was
    never awaited). Call it where a result is about to count, e.g. a wait's condition
    found true, not for every result.

    Parameters
    ----------
    returned : object
        What the callback returned.
    what : str
        What the callback is, for the error, e.g. ``'condition'``.

    Raises
    ------
    TypeError
        If `returned` is a coroutine (or an async generator).
    """
    if inspect.iscoroutine(returned):
        returned.close()
        raise TypeError("%s returned the coroutine %r: it must be a plain function, as "
                        "its result is not awaited" % (what, returned))
    if inspect.isasyncgen(returned):
        raise async_generator_error(returned)


def async_generator_error(returned: Any) -> TypeError:
    """The error of a handler or callback that returned async generator `returned`.

    An ``async def`` with a ``yield`` in it gives an async generator, which no loop runs
    as it runs a coroutine: its body would never run.

    Parameters
    ----------
    returned : async generator

    Returns
    -------
    error : TypeError
    """
    return TypeError("returned the async generator %r, whose body nothing runs (an async "
                     "def with a yield is no coroutine)" % (returned,))


def refuse_async_generator(returned: Any) -> None:
    """Raise :func:`async_generator_error` if a handler returned an async generator.

    Parameters
    ----------
    returned : object
        What the handler returned.

    Raises
    ------
    TypeError
        If `returned` is an async generator.
    """
    if inspect.isasyncgen(returned):
        raise async_generator_error(returned)


def object_repr(obj: Any, **fields: Any) -> str:
    """``<module.Class(field=value, ...) object at 0x...>``: the repr of katcp's clients,
    servers and resources, each showing the fields that say what state it is in."""
    described = ", ".join("%s=%s" % item for item in fields.items())
    return "<%s.%s(%s) object at 0x%x>" % (
        type(obj).__module__, type(obj).__name__, described, id(obj))


def hashable_identity(obj: Any) -> Hashable:
    """Generate a hashable ID that is stable for methods etc.

    Bound methods are re-created on each attribute access, so they are identified by
    their function and instance rather than by ``id()``.

    Parameters
    ----------
    obj : object
        Object to identify.

    Returns
    -------
    identity : hashable
    """
    if hasattr(obj, "__func__"):
        return (id(obj.__func__), id(obj.__self__))
    if isinstance(obj, (str, bytes)):
        return obj
    return id(obj)


def own_methods(base: type, *names: str) -> Tuple[Tuple[str, Any], ...]:
    """The methods `names` of `base` as defined now, for :func:`uses_own`.

    Taken once, when the module that skips them is imported: a method later replaced on
    `base` itself (as ``mock.patch.object(base, name)`` does) then no longer counts as
    its own.

    Parameters
    ----------
    base : type
        The class whose methods a fast path knows.
    *names : str
        The methods the fast path would skip.

    Returns
    -------
    originals : tuple of (name, method) pairs
    """
    return tuple((name, getattr(base, name)) for name in names)


def uses_own(obj: Any, originals: Tuple[Tuple[str, Any], ...]) -> bool:
    """Whether `obj` still uses the original methods `originals` (see :func:`own_methods`).

    False when one of them is overridden by a subclass, replaced on a class or replaced
    on the instance (as ``mock.patch.object`` does): a fast path that skips such a
    method must not be taken then, or the replacement would be silently bypassed.

    Parameters
    ----------
    obj : object
    originals : tuple of (name, method) pairs
        From :func:`own_methods`.

    Returns
    -------
    own : bool
    """
    # A loop, not all() over a generator: fast paths ask this per message (each inform a
    # server sends to all its clients, each request of an inspecting client).
    # Asked of the bound method, not of obj.__dict__: on CPython 3.11 and 3.12 making an
    # instance's __dict__ slows every later attribute access on it (a server's request
    # took about 600 more instructions).
    for name, original in originals:
        try:
            if getattr(obj, name).__func__ is original:
                continue
        except AttributeError:
            pass
        return False
    return True


def copy_outcome(source: Any, target: Any) -> None:
    """Give `target`, unless it is done, the outcome of done `source`.

    Either may be an asyncio (tornado) or a :class:`concurrent.futures.Future`; each is
    touched only where it may be (an asyncio future on its own loop).

    Parameters
    ----------
    source : future
        Done: its result, exception or cancellation is copied.
    target : future
        Left alone if done: its holder gave up on the outcome, and a failure counts as
        seen (asyncio would log it as never retrieved). A cancelled `source` cancels it;
        a running concurrent future, which cannot be cancelled any more, gets
        :class:`concurrent.futures.CancelledError` as its exception instead.

    """
    if target.done():
        if not source.cancelled():
            source.exception()
        return
    if source.cancelled():
        if not target.cancel():
            target.set_exception(concurrent.futures.CancelledError())
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


def transform_future(transformation: Callable[[Any], Any], future: Any) -> Any:
    """A future resolving to ``transformation(future.result())``.

    Parameters
    ----------
    transformation : callable
        Called with the result of `future`; what it returns (or raises) resolves the
        new future.
    future : asyncio (tornado) or concurrent.futures Future

    Returns
    -------
    new_future : Future
        Of the same kind as `future` (on the same loop for an asyncio future). It is
        resolved at once when `future` is already done, rather than on a later loop
        turn; cancellation and exceptions of `future` are passed on. Cancelling the
        new future gives up on the outcome (`future` goes on), from any thread for a
        concurrent one.

    Raises
    ------
    TypeError
        If `transformation` is an ``async def`` function: the new future would
        resolve with its coroutine, never run.
    """
    return transformed_future(plain_callback(transformation, "transformation"), future)


def transformed_future(transformation: Callable[[Any], Any], future: Any) -> Any:
    """:func:`transform_future` without the check of `transformation`: for katcp's own
    plain transformations, on paths that chain each request's reply (a check per reply).

    Parameters
    ----------
    transformation : callable
        A plain function of the result (never ``async def``: not checked).
    future : future
        As for :func:`transform_future`.

    Returns
    -------
    new_future : future
        As for :func:`transform_future`.
    """
    claim: Callable[[], bool]
    get_loop = getattr(future, "get_loop", None)
    if get_loop:
        new_future = get_loop().create_future()
        claim = lambda: not new_future.done()  # noqa: E731
    else:
        new_future = concurrent.futures.Future()
        # Its holder may cancel it from another thread while the outcome is set: claimed
        # (running), it can no longer be.
        claim = new_future.set_running_or_notify_cancel

    def copy(done: Any) -> None:
        if done.cancelled() or not claim():
            copy_outcome(done, new_future)
            return
        failure = done.exception()
        if failure is not None:
            # Passed on whatever its kind: a BaseException (KeyboardInterrupt, asyncio's
            # CancelledError) raised by result() here would leave new_future claimed, and
            # so pending, for ever.
            new_future.set_exception(failure)
            return
        try:
            new_future.set_result(transformation(done.result()))
        except Exception as exc:
            new_future.set_exception(exc)

    if future.done():
        copy(future)
    else:
        future.add_done_callback(copy)
    return new_future


class AttrDict(dict):
    """Dict-like object allowing attribute access to keys."""

    def __getattr__(self, attr: str) -> Any:
        try:
            return self[attr]
        except KeyError:
            raise AttributeError(attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        self[attr] = value


class DefaultAttrDict(defaultdict):
    """Similar to AttrDict but adds `collections.defaultdict` functionality."""

    def __getattr__(self, attr: str) -> Any:
        # Only called when normal lookup fails; defaultdict semantics create the key.
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self[attr]

    __setattr__ = AttrDict.__setattr__

