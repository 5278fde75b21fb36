"""Small helpers with no better home: attribute dicts, stable identities, docstrings."""

from collections import defaultdict
from typing import Any, Callable, Hashable, TypeVar


_F = TypeVar("_F", bound=Callable[..., Any])


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

    def __setattr__(self, attr: str, value: Any) -> None:
        self[attr] = value

