"""Keep the documented home of names that live in submodules, and make patches of the
names on that home heard where the submodules look them up."""

import sys
import types
from typing import Any, Dict, List, Tuple

__all__ = ["forward_patches", "keep_home", "publish"]


# The module each object given to keep_home() was defined in, by id (with the object,
# which lives as long as its module does): where a forwarded patch does not go.
_DEFINED_IN: Dict[int, Tuple[Any, str]] = {}

# The modules and packages a facade's names are forwarded to, by facade name.
_IMPLEMENTATIONS: Dict[str, Tuple[str, ...]] = {}

# The implementation modules a name deleted from a facade was deleted from, by facade
# name and name: set again (as pytest's monkeypatch.delattr() undoes), it goes back there.
_DELETED: Dict[Tuple[str, str], List[types.ModuleType]] = {}

_MISSING = object()


def keep_home(module_name: str, *objects: Any) -> None:
    """Make classes and functions report `module_name` as their module.

    A documented module split into a subpackage re-exports its names; with this they
    keep showing (and pickling) as ``katcp.server.DeviceServer`` rather than under the
    private submodule that defines them.

    Parameters
    ----------
    module_name : str
        The documented import path, e.g. ``"katcp.server"``.
    *objects : class or function

    """
    for obj in objects:
        _DEFINED_IN.setdefault(id(obj), (obj, obj.__module__))
        obj.__module__ = module_name


def publish(module_name: str, namespace: Dict[str, Any]) -> List[str]:
    """Give the public names a facade imported their documented home, and list them.

    Parameters
    ----------
    module_name : str
        The facade's name (its ``__name__``).
    namespace : dict
        The facade's ``globals()``: every public name in it except modules is published.

    Returns
    -------
    names : list of str
        The sorted public names, for the facade's ``__all__``.

    """
    names = sorted(name for name, value in namespace.items() if not name.startswith("_")
                   and not isinstance(value, types.ModuleType)
                   and value is not publish and value is not forward_patches)
    keep_home(module_name, *(namespace[name] for name in names
                              if isinstance(namespace[name], (type, types.FunctionType))))
    return names


class _PatchForwardingModule(types.ModuleType):
    """A facade whose names, when set or deleted (as ``mock.patch`` and pytest's
    ``monkeypatch`` do and undo), are set or deleted in its implementation modules too,
    where each is bound to the same object: katcp 0.9.3 looked them up in the one module
    the facade was, at call time. A name deleted and set again is set again where it was
    deleted.

    The module that defines an object is left alone: its own code (type checks, methods
    taken once) keeps the real class, as a subclass made there does. Looked up at
    each patch, never on a request's path, which reads the modules' globals as before.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        users = _users_of(self, name) or _DELETED.pop((self.__name__, name), [])
        super().__setattr__(name, value)
        for module in users:
            setattr(module, name, value)

    def __delattr__(self, name: str) -> None:
        users = _users_of(self, name)
        super().__delattr__(name)
        for module in users:
            delattr(module, name)
        if users:
            _DELETED[(self.__name__, name)] = users


def _users_of(facade: types.ModuleType, name: str) -> List[types.ModuleType]:
    """The implementation modules of `facade` that bind `name` to the facade's object."""
    current = facade.__dict__.get(name, _MISSING)
    if current is _MISSING:  # a new name (mock.patch(create=True)) is the facade's alone
        return []
    # An id found is the object's own: the object is kept, so its id is not reused.
    home = _DEFINED_IN.get(id(current), (None, None))[1]
    homes = _IMPLEMENTATIONS[facade.__name__]
    return [module for module_name, module in list(sys.modules.items())
            if module_name not in (home, facade.__name__)
            and any(module_name == h or module_name.startswith(h + ".") for h in homes)
            and getattr(module, "__dict__", {}).get(name, _MISSING) is current]


def forward_patches(module_name: str, *implementations: str) -> None:
    """Make the names of facade `module_name`, patched there, heard by the modules that
    implement it (the facade was one module in katcp 0.9.3, which looked them up at call
    time, e.g. ``mock.patch('katcp.server.ClientRequestConnection')``).

    Parameters
    ----------
    module_name : str
        The facade's name (its ``__name__``), imported.
    *implementations : str
        Modules, or packages (for all their submodules), whose globals bound to the same
        object as the facade's name follow a patch of it; the facade's own package if
        none are given.

    """
    _IMPLEMENTATIONS[module_name] = implementations or (module_name,)
    sys.modules[module_name].__class__ = _PatchForwardingModule
