"""Sphinx configuration for the katcp documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from katcp.version import __version__  # noqa: E402

project = "katcp"
author = "the katcp developers"
copyright = "2026, the katcp developers"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# Attributes documented in a class docstring as fields, so properties that autodoc also
# documents are not described twice.
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_inherit_docstrings = True
# Docstrings name types in prose ("Message object", "float in seconds"); they are not
# cross-reference targets.
nitpicky = False
suppress_warnings = ["ref.python"]

# Links to the Python and tornado documentation resolve against inventories shipped in
# _intersphinx/ (see the README there), so the build needs no network.
_INVENTORIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_intersphinx")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", os.path.join(_INVENTORIES, "python3.inv")),
    "tornado": ("https://www.tornadoweb.org/en/stable",
                os.path.join(_INVENTORIES, "tornado.inv")),
}
templates_path = []
exclude_patterns = ["_build", "_intersphinx"]
html_theme = "alabaster"
html_static_path = []
