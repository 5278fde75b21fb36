"""Keep the documented home of names that live in submodules."""

import types
from typing import Any, Dict, List

__all__ = ["keep_home", "publish"]


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
                   and not isinstance(value, types.ModuleType) and value is not publish)
    keep_home(module_name, *(namespace[name] for name in names
                              if isinstance(namespace[name], (type, types.FunctionType))))
    return names
