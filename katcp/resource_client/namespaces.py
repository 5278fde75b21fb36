"""Namespaces of requests and sensors, and read-only views that wrap their values."""

import collections.abc
from typing import Any, Callable, Iterator, List, Optional

from katcp.core import AttrDict
from katcp.display import did_you_mean


def unknown_name_text(namespace: Any, name: str) -> str:
    """The error text for `name` missing from `namespace`, with close matches offered."""
    kind = getattr(namespace, "_kind", None) or "name"
    return "No %s %r%s" % (kind, name, did_you_mean(name, namespace))


class _Namespace(AttrDict):
    """AttrDict whose keys show up in ``dir()``, for IPython tab-completion.

    A missing key or attribute raises an error that names it and offers close matches
    ("did you mean"). `kind` (e.g. ``'sensor'``) names what the namespace holds.
    """

    def __init__(self, kind: str = "") -> None:
        super().__init__()
        # Stored outside the dict (AttrDict turns attributes into keys).
        object.__setattr__(self, "_kind", kind)

    def __dir__(self) -> List[str]:
        return sorted(set(dir(type(self))) | set(self.keys()))

    def __missing__(self, key: Any) -> Any:
        raise KeyError(unknown_name_text(self, key))

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            # Probes by IPython, pickle, copy: not a mistyped name.
            raise AttributeError(attr)
        try:
            return self[attr]
        except KeyError:
            raise AttributeError(unknown_name_text(self, attr)) from None


class _RequestNamespace(_Namespace):
    """Requests keyed by Python identifier.

    Given a `dummy_factory`, attribute access to an unknown (public) name returns
    ``dummy_factory(name)`` instead of failing; the dummy is not added.
    """

    def __init__(self, dummy_factory: Optional[Callable[[str], Any]] = None) -> None:
        super().__init__("request")
        object.__setattr__(self, "_dummy_factory", dummy_factory)

    def __getattr__(self, attr: str) -> Any:
        request = dict.get(self, attr)
        if request is None:
            request = _dummy_request(self, attr)
        if request is None:
            return super().__getattr__(attr)
        return request


def _dummy_request(namespace: Any, name: str) -> Any:
    """The dummy request `namespace` offers for unknown `name`, or None."""
    factory = getattr(namespace, "_dummy_factory", None)
    if factory is None or name.startswith("_"):
        return None
    return factory(name)


def _find_request(namespace: Any, name: str) -> Any:
    """The request called `name` in `namespace` (or its dummy), or None."""
    request = dict.get(namespace, name)
    if request is None:
        request = _dummy_request(namespace, name)
    return request


class MappingProxy(collections.abc.Mapping):
    """Read-only view of a mapping that passes every value through `wrapper`.

    Parameters
    ----------
    mapping : mapping
        The underlying mapping; later changes to it show through.
    wrapper : callable
        Called with each value as it is retrieved.
    """

    def __init__(self, mapping: Any, wrapper: Callable[[Any], Any]) -> None:
        self._mapping = mapping
        self._wrapper = wrapper

    def __iter__(self) -> Iterator[Any]:
        return iter(self._mapping)

    def __len__(self) -> int:
        return len(self._mapping)

    def __contains__(self, key: object) -> bool:
        return key in self._mapping

    def __getitem__(self, key: Any) -> Any:
        return self._wrapper(self._mapping[key])

    def __repr__(self) -> str:
        return "%s(%r)" % (type(self).__name__, sorted(self._mapping))


class AttrMappingProxy(MappingProxy):
    """:class:`MappingProxy` that also offers the keys as attributes."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        if attr in self._mapping:
            return self[attr]
        # A request namespace may offer a dummy for an unknown request.
        dummy = _dummy_request(self._mapping, attr)
        if dummy is None:
            raise AttributeError(unknown_name_text(self._mapping, attr))
        return self._wrapper(dummy)

    def __dir__(self) -> List[str]:
        return sorted(set(dir(type(self))) | set(self._mapping))
