"""Version information for the katcp package."""

__version__ = "0.10.0"
VERSION = (0, 10, 0, "final", 0)
VERSION_STR = "katcp-python-%s" % __version__
"""The library's name and version, as servers announce it (``katcp-library``)."""
