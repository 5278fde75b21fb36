"""One object of a kind per IOLoop: its call queue, its periodic scheduler, ..."""

from typing import Any, Callable, TypeVar

__all__ = ["one_per_loop"]

_T = TypeVar("_T")


def one_per_loop(ioloop: Any, name: str, make: Callable[[Any], _T]) -> _T:
    """The object `name` of `ioloop`, made as ``make(ioloop)`` on first use.

    Kept as an attribute of the IOLoop itself, so that it goes with the loop: in a mapping
    keyed by the loop, even a weak one, an object that refers to its loop (a periodic
    scheduler, through the samplers it calls) would keep the loop alive for ever. Safe
    from any thread: threads that ask first at once may each make one, and all get the
    one stored first (so what `make` does besides must bear being done twice).

    Parameters
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop`
    name : str
        The attribute that holds the object (``_katcp_`` and the kind).
    make : callable
        ``make(ioloop)`` returns a new object of the kind.

    Returns
    -------
    one : object
        The loop's object of that kind.

    """
    attrs = ioloop.__dict__
    found = attrs.get(name)
    if found is None:
        # setdefault is atomic: a thread that lost the race gets the winner's.
        found = attrs.setdefault(name, make(ioloop))
    return found
