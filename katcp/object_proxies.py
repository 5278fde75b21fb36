"""Transparent object proxies and wrappers.

A proxy forwards every attribute access and operator to its subject (``.__subject__``).
A wrapper is a proxy that may also carry attributes and behaviour of its own: names
defined on the wrapper class are looked up on the wrapper, everything else goes to the
subject. :class:`katcp.ioloop_manager.ThreadSafeMethodAttrWrapper` builds on
:class:`ObjectWrapper`.
"""

import builtins
import math
import operator
from typing import Any

__all__ = ["AbstractProxy", "ObjectProxy", "CallbackProxy", "LazyProxy", "AbstractWrapper",
           "ObjectWrapper", "CallbackWrapper", "LazyWrapper"]


class AbstractProxy:
    """Delegates all operations (except ``.__subject__``) to another object"""

    __slots__ = ()

    def __call__(self, *args: Any, **kw: Any) -> Any:
        return self.__subject__(*args, **kw)

    def __getattribute__(self, attr: Any, oga: Any = object.__getattribute__) -> Any:
        subject = oga(self, "__subject__")
        if attr == "__subject__":
            return subject
        return getattr(subject, attr)

    def __setattr__(self, attr: Any, val: Any, osa: Any = object.__setattr__) -> None:
        if attr == "__subject__":
            osa(self, attr, val)
        else:
            setattr(self.__subject__, attr, val)

    def __delattr__(self, attr: Any, oda: Any = object.__delattr__) -> None:
        if attr == "__subject__":
            oda(self, attr)
        else:
            delattr(self.__subject__, attr)

    def __setitem__(self, arg: Any, val: Any) -> None:
        self.__subject__[arg] = val


def _unary(func: Any) -> Any:
    def method(self) -> Any:
        return func(self.__subject__)

    return method


def _binary(op: Any) -> Any:
    def method(self, other: Any) -> Any:
        return op(self.__subject__, other)

    return method


def _reflected(op: Any) -> Any:
    def method(self, other: Any) -> Any:
        return op(other, self.__subject__)

    return method


def _inplace(op: Any) -> Any:
    def method(self, other: Any) -> Any:
        self.__subject__ = op(self.__subject__, other)
        return self

    return method


# Special methods are looked up on the type, bypassing __getattribute__, so each one
# has to exist on the proxy class to reach the subject.
_BUILTIN_UNARY = "repr str bytes hash len iter next reversed abs int float complex bool dir"
for _name in _BUILTIN_UNARY.split():
    setattr(AbstractProxy, "__%s__" % _name, _unary(getattr(builtins, _name)))
for _name in "neg pos invert index".split():
    setattr(AbstractProxy, "__%s__" % _name, _unary(getattr(operator, _name)))
for _name in "trunc floor ceil".split():
    setattr(AbstractProxy, "__%s__" % _name, _unary(getattr(math, _name)))
AbstractProxy.__round__ = lambda self, *ndigits: round(self.__subject__, *ndigits)

AbstractProxy.__format__ = lambda self, spec: format(self.__subject__, spec)
AbstractProxy.__enter__ = lambda self: self.__subject__.__enter__()
AbstractProxy.__exit__ = lambda self, *exc_info: self.__subject__.__exit__(*exc_info)

for _name in "lt le eq ne gt ge getitem delitem contains".split():
    setattr(AbstractProxy, "__%s__" % _name, _binary(getattr(operator, _name)))

for _name in "add sub mul matmul truediv floordiv mod pow lshift rshift and xor or".split():
    _op = getattr(operator, "__%s__" % _name)
    setattr(AbstractProxy, "__%s__" % _name, _binary(_op))
    setattr(AbstractProxy, "__r%s__" % _name, _reflected(_op))
    # operator.iadd() and the like: a subject with its own in-place form (a list's +=)
    # changes in place, as it would unproxied.
    setattr(AbstractProxy, "__i%s__" % _name, _inplace(getattr(operator, "__i%s__" % _name)))
# pow() takes a modulo too.
AbstractProxy.__pow__ = lambda self, other, *modulo: pow(self.__subject__, other, *modulo)
# divmod has no in-place form.
AbstractProxy.__divmod__ = _binary(divmod)
AbstractProxy.__rdivmod__ = _reflected(divmod)

del _name, _op


class ObjectProxy(AbstractProxy):
    """Proxy for a specific object"""

    __slots__ = ("__subject__",)

    def __init__(self, subject: Any) -> None:
        self.__subject__ = subject


class CallbackProxy(AbstractProxy):
    """Proxy for a dynamically-chosen object"""

    __slots__ = ("__callback__",)

    def __init__(self, func: Any) -> None:
        _set_callback(self, func)


_set_callback = CallbackProxy.__callback__.__set__
_get_callback = CallbackProxy.__callback__.__get__
CallbackProxy.__subject__ = property(lambda self: _get_callback(self)())


class LazyProxy(CallbackProxy):
    """Proxy for a lazily-obtained object, that is cached on first use"""

    __slots__ = ("__cache__",)


_get_cache = LazyProxy.__cache__.__get__
_set_cache = LazyProxy.__cache__.__set__


def _lazy_subject(self) -> Any:
    try:
        return _get_cache(self)
    except AttributeError:
        _set_cache(self, _get_callback(self)())
        return _get_cache(self)


LazyProxy.__subject__ = property(_lazy_subject, _set_cache)


class AbstractWrapper(AbstractProxy):
    """Mixin to allow extra behaviours and attributes on proxy instance

    Names that are not dunders are looked up on the wrapper first and only then on the
    subject, so subclasses can add methods, properties and class-level defaults. Setting
    a name that the wrapper class defines stores it on the wrapper.
    """

    __slots__ = ()

    def __getattribute__(self, attr: Any, oga: Any = object.__getattribute__) -> Any:
        if attr.startswith("__"):
            return AbstractProxy.__getattribute__(self, attr)
        return oga(self, attr)

    def __getattr__(self, attr: Any) -> Any:
        return getattr(self.__subject__, attr)

    def __setattr__(self, attr: Any, val: Any, osa: Any = object.__setattr__) -> None:
        if hasattr(type(self), attr) and not attr.startswith("__"):
            osa(self, attr, val)
        else:
            AbstractProxy.__setattr__(self, attr, val)

    def __delattr__(self, attr: Any, oda: Any = object.__delattr__) -> None:
        if hasattr(type(self), attr) and not attr.startswith("__"):
            oda(self, attr)
        else:
            AbstractProxy.__delattr__(self, attr)


class ObjectWrapper(ObjectProxy, AbstractWrapper):
    """Proxy for a specific object, with attributes of its own (:class:`AbstractWrapper`)."""

    __slots__ = ()


class CallbackWrapper(CallbackProxy, AbstractWrapper):
    """Proxy for a dynamically-chosen object, with attributes of its own
    (:class:`AbstractWrapper`)."""

    __slots__ = ()


class LazyWrapper(LazyProxy, AbstractWrapper):
    """Proxy for a lazily-obtained object, cached on first use, with attributes of its
    own (:class:`AbstractWrapper`)."""

    __slots__ = ()
