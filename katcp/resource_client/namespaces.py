"""Namespaces of requests and sensors, and read-only views that wrap their values."""

import collections.abc
from typing import Any, Callable, Iterator, List, Optional

from katcp.core import AttrDict


class _Namespace(AttrDict):
    """AttrDict whose keys show up in ``dir()``, for IPython tab-completion."""

    def __dir__(self) -> List[str]:
        return sorted(set(dir(type(self))) | set(self.keys()))


class _RequestNamespace(_Namespace):
    """Requests keyed by Python identifier.

    Given a `dummy_factory`, attribute access to an unknown (public) name returns
    ``dummy_factory(name)`` instead of failing; the dummy is not added.
    """

    def __init__(self, dummy_factory: Optional[Callable[[str], Any]] = None) -> None:
        super().__init__()
        # Stored outside the dict (AttrDict turns attributes into keys).
        object.__setattr__(self, "_dummy_factory", dummy_factory)

    def __getattr__(self, attr: str) -> Any:
        try:
            return self[attr]
        except KeyError:
            request = _dummy_request(self, attr)
            if request is None:
                raise AttributeError(attr) from None
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
        try:
            return self[attr]
        except KeyError:
            pass
        # A request namespace may offer a dummy for an unknown request.
        dummy = _dummy_request(self._mapping, attr)
        if dummy is None:
            raise AttributeError(attr)
        return self._wrapper(dummy)

    def __dir__(self) -> List[str]:
        return sorted(set(dir(type(self))) | set(self._mapping))
