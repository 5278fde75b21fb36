"""What an :class:`~katcp.inspecting_client.InspectingClientAsync` knows of its device.

:class:`_Model` holds the device's requests and sensors by name; the functions here store
what an inspection found in one of its indexes and work out what changed.
"""

from typing import Any, Callable, Dict, Iterable, Optional, Set, Tuple

from katcp.core import AttrDict

Index = Dict[str, Dict[str, Any]]


class _Model:
    """The device's requests and sensors as last inspected: one index of each.

    An index maps a name to a dict of what the device last said about the item. An entry
    also holds the object made from it by the client's factory (key ``'obj'``), so a
    changed entry, being replaced, drops its stale object.
    """

    def __init__(self) -> None:
        self.requests: Index = {}
        self.sensors: Index = {}

    def index(self, kind: str) -> Index:
        """The index of `kind` ('requests' or 'sensors')."""
        return self.requests if kind == "requests" else self.sensors

    def snapshot(self) -> Dict[str, Index]:
        """The entries of both indexes as they are now, for :meth:`undo`."""
        return {"requests": dict(self.requests), "sensors": dict(self.sensors)}

    def undo(self, snapshot: Dict[str, Index], changes: AttrDict) -> None:
        """Put back the entries of a :meth:`snapshot` for the items named in `changes` (as
        inspections report them), in the indexes themselves (code may hold one); items
        changed by others since are left alone."""
        for kind, changed in changes.items():
            index, before = self.index(kind), snapshot[kind]
            for name in changed.added | changed.removed:
                if name in before:
                    index[name] = before[name]
                else:
                    index.pop(name, None)


def update_index(index: Index, name: str, data: Dict[str, Any]) -> None:
    """Store what the device says about item `name` in `index`.

    A new item is stored as `data`. A known item whose data differ is replaced by `data`
    marked ``_changed`` (dropping the object made from the old data); an unchanged one is
    kept as it is.
    """
    old = index.get(name)
    if old is None:
        index[name] = data
    elif any(old.get(key) != value for key, value in data.items()):
        data["_changed"] = True
        index[name] = data


def difference(original_keys: Iterable[str], updated_keys: Iterable[str], name: Optional[str],
               index: Index) -> Tuple[Set[str], Set[str]]:
    """Work out what an inspection changed, and drop removed items from `index`.

    Returns the names added and removed: changed items (marked ``_changed``, a mark this
    clears) are in both. With a `name`, only that item was asked about, so the others are
    left alone.
    """
    original = set(original_keys)
    updated = set(updated_keys)
    if name is not None:
        original &= {name}
        updated &= {name}
    added = updated - original
    removed = original - updated
    for key in updated & original:
        if index[key].pop("_changed", False):
            added.add(key)
            removed.add(key)
    for key in removed - added:
        index.pop(key, None)
    return added, removed


def reindex(index: Index, found: Index, name: Optional[str],
            update: Callable[[Index, str, Dict[str, Any]], None] = update_index,
            diff: Callable[..., Tuple[Set[str], Set[str]]] = difference
            ) -> Optional[AttrDict]:
    """Store in `index` the items an inspection `found` (name -> data).

    Parameters
    ----------
    index : dict
        The index to update.
    found : dict
        What the inspection found, by name.
    name : str or None
        The one item inspected, or None for the whole list.
    update, diff : callable
        As :func:`update_index` and :func:`difference` (a client's own, which a subclass
        may override).

    Returns
    -------
    changes : :class:`~katcp.core.AttrDict` or None
        The names ``added`` and ``removed``, as inspections return; None if nothing changed.
    """
    original_keys = set(index)
    if original_keys:
        for item_name, data in found.items():
            update(index, item_name, data)
    else:
        # The first inspection: everything found is new.
        index.update(found)
    added, removed = diff(original_keys, found, name, index)
    return AttrDict(added=added, removed=removed) if added or removed else None
