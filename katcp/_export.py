"""Keep the documented home of names that live in submodules."""

from typing import Any

__all__ = ["keep_home"]


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
