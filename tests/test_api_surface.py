"""Every public name of the reference API exists at the same import path.

These are existence checks, not behaviour tests: marked ``api_surface`` so that reports
count them apart (see tests/conftest.py).

The names are read from the reference documentation (``katcp.module.Name`` entries and the
methods listed for each class) and from the list of public names it leaves out
(``def``/``class`` per module), copied into ``tests/reference_api_names.txt`` and
``tests/reference_api_members.txt``.
"""

import importlib
import os

import pytest

pytestmark = pytest.mark.api_surface

NAMES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "reference_api_names.txt")


def _reference_names():
    with open(NAMES_FILE) as names:
        for line in names:
            line = line.strip()
            if line and not line.startswith("#"):
                module, _, attribute = line.rpartition(".")
                yield module, attribute


@pytest.mark.parametrize("module, attribute", sorted(set(_reference_names())))
def test_reference_name_exists(module, attribute):
    assert hasattr(importlib.import_module(module), attribute), \
        "%s.%s is missing" % (module, attribute)


@pytest.mark.parametrize("name", ["Message", "MessageParser", "Sensor", "ProtocolFlags",
                                  "DeviceServer", "DeviceServerBase", "AsyncDeviceServer",
                                  "DeviceLogger", "DeviceClient", "AsyncClient",
                                  "CallbackClient", "BlockingClient", "FailReply",
                                  "AsyncReply", "KatcpDeviceError", "DeviceMetaclass",
                                  "KATCPClientResource", "KATCPClientResourceContainer"])
def test_top_level_exports(name):
    import katcp

    assert getattr(katcp, name) is getattr(
        importlib.import_module("katcp." + katcp._EXPORTS[name]), name)


MEMBERS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "reference_api_members.txt")
# Python 2 methods the reference's classes inherited from the `future` package's object and
# dict types; Python 3 code cannot call them on the reference either.
LEFT_OUT = {"next", "has_key", "iteritems", "iterkeys", "itervalues", "viewitems",
            "viewkeys", "viewvalues"}


def _reference_members():
    with open(MEMBERS_FILE) as members:
        for line in members:
            line = line.strip()
            if line and not line.startswith("#"):
                path, _, member = line.rpartition(".")
                module, _, cls = path.rpartition(".")
                if member not in LEFT_OUT:
                    yield module, cls, member


@pytest.mark.parametrize("module, cls, member", sorted(set(_reference_members())))
def test_documented_method_exists(module, cls, member):
    assert hasattr(getattr(importlib.import_module(module), cls), member), \
        "%s.%s.%s is missing" % (module, cls, member)
