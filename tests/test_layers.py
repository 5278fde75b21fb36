"""The package's imports point only downwards through the layers of the project guide.

The guide lists them from the bottom up: 1. wire and data (no I/O, no event loop),
2. event loops and sampling, 3. transport and dispatch, 4. high level (clients,
resources), 5. test helpers (here also the tools: web, scripts). A module may import
from its own layer and the layers below it, never from a layer above. ``katcp.core`` is
a facade that re-exports :mod:`katcp.wire` and :mod:`katcp.loop.futures`: it sits at
layer 2, as its documented names include the loop helpers (AsyncEvent, until_any, ...),
while ``katcp.wire`` itself is layer 1.
"""

import ast
import importlib
import os

import pytest

import katcp

from subprocess_helpers import run_program

PACKAGE_DIR = os.path.dirname(katcp.__file__)

# Longest prefix wins; a name of a package covers its submodules.
LAYERS = {
    "katcp.wire": 1, "katcp.kattypes": 1, "katcp.compat": 1, "katcp.object_proxies": 1,
    "katcp._export": 1, "katcp.version": 1,
    "katcp.loop": 2, "katcp.core": 2, "katcp.ioloop_manager": 2, "katcp.sampling": 2,
    "katcp.sensortree": 2,
    "katcp.transport": 3, "katcp.server": 3, "katcp.client": 3,
    "katcp.inspecting_client": 4, "katcp.resource": 4, "katcp.resource_client": 4,
    "katcp.display": 4,
    "katcp.testutils": 5, "katcp.fake_clients": 5, "katcp.web": 5, "katcp.scripts": 5,
    # The package itself re-exports everything: importing it means importing the top.
    "katcp": 5,
}


def layer_of(module):
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = LAYERS.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    raise KeyError(module)


def package_modules():
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3]
            parts = relative.split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def imported_modules(module, path):
    """Every katcp module that `module` imports, anywhere in its code."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            for alias in node.names:
                # `from katcp.server import handlers` may name a submodule.
                yield "%s.%s" % (name, alias.name) if _is_module("%s.%s" % (
                    name, alias.name)) else name


def _is_module(name):
    path = os.path.join(os.path.dirname(PACKAGE_DIR), *name.split("."))
    return os.path.isdir(path) or os.path.isfile(path + ".py")


MODULES = sorted(package_modules())


def test_every_module_has_a_layer():
    assert [module for module, _ in MODULES if _layer_or_none(module) is None] == []


def _layer_or_none(module):
    try:
        return layer_of(module)
    except KeyError:
        return None


@pytest.mark.parametrize("module, path", MODULES, ids=[module for module, _ in MODULES])
def test_imports_point_downwards(module, path):
    own = layer_of(module)
    upwards = sorted({
        "%s (layer %d)" % (name, layer_of(name))
        for name in imported_modules(module, path)
        if (name == "katcp" or name.startswith("katcp.")) and layer_of(name) > own})
    assert upwards == [], "%s (layer %d) imports upwards" % (module, own)


def test_the_checker_sees_an_upward_import(tmp_path):
    # The check itself: a layer-1 module importing the server is caught.
    source = tmp_path / "m.py"
    source.write_text("import os\nfrom katcp.server import DeviceServer\n")
    names = set(imported_modules("katcp.wire.m", str(source)))
    assert "katcp.server" in names and layer_of("katcp.server") > layer_of("katcp.wire.m")


def test_import_katcp_gives_its_submodules_on_first_use():
    # 0.9.3 imported its submodules eagerly, so scripts write `import katcp` and then
    # `katcp.kattypes.Int()`; ours load on first use (fresh interpreter: nothing loaded).
    code = "\n".join([
        "import sys, katcp",
        "assert 'katcp.server' not in sys.modules",
        "names = ['core', 'server', 'client', 'kattypes', 'sampling', 'sensortree',",
        "         'resource', 'resource_client', 'inspecting_client', 'ioloop_manager',",
        "         'version', 'testutils', 'fake_clients', 'compat']",
        "for name in names:",
        "    assert getattr(katcp, name) is sys.modules['katcp.' + name], name",
        "    assert name in dir(katcp), name",
        "assert katcp.kattypes.Int().pack(3) == b'3'",
        "assert not hasattr(katcp, 'no_such_module')",
        "print('ok')",
    ])
    finished = run_program(["-c", code])
    assert (finished.returncode, finished.stdout, finished.stderr) == (0, "ok\n", "")


def _package(module):
    """The package of `module` for the rule on private names: ``katcp.<first part>``."""
    return ".".join(module.split(".")[:2])


# Private names used across packages on purpose: (user module, name).
PRIVATE_ACROSS_ALLOWED = {
    # Message's own reply maker, on the server's per-request path: a public name would
    # add to Message's documented API.
    ("katcp.server.connection", "_answer"),
    # 0.9's name for a device class's request handlers.
    ("katcp.testutils.clients", "_request_handlers"),
}
# A namedtuple's public API.
NAMEDTUPLE_API = {"_make", "_replace", "_asdict", "_fields", "_field_defaults"}


def _private(name):
    return name.startswith("_") and not name.startswith("__") and name not in NAMEDTUPLE_API


def private_names_from_other_packages(module, path):
    """``owner.name`` of each private name `module` imports from another katcp package,
    or reads off one (``module._name``, ``Class._name``)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("katcp"):
            for alias in node.names:
                owner = "%s.%s" % (node.module, alias.name)
                bound[alias.asname or alias.name] = owner
                if (_private(alias.name) and not _is_module(owner)
                        and _package(node.module) != _package(module)):
                    yield owner
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("katcp"):
                    bound[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain, root = [], node.value
            while isinstance(root, ast.Attribute):
                chain.insert(0, root.attr)
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                owner = ".".join([bound[root.id]] + chain)
                if _package(owner) != _package(module):
                    yield "%s.%s" % (owner, node.attr)


@pytest.mark.parametrize("module, path", MODULES, ids=[module for module, _ in MODULES])
def test_no_private_names_of_other_packages(module, path):
    # What one package offers another is public in its own module (not necessarily in
    # the documented facades), so that it is seen as API when it changes.
    found = sorted(name for name in private_names_from_other_packages(module, path)
                   if (module, name.rpartition(".")[2]) not in PRIVATE_ACROSS_ALLOWED)
    assert found == [], "%s uses private names of other packages" % module


def test_the_checker_sees_private_names_of_other_packages(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("\n".join([
        "from katcp import resource",
        "from katcp.loop.futures import _hidden, until_any as _until_any",
        "from katcp.resource_client.groups import _own",
        "from katcp.core import Reading",
        "resource.KATCPSensor._secret(Reading._make(()))",
        "_until_any()",
    ]))
    assert sorted(private_names_from_other_packages("katcp.resource_client.m", str(source))) == [
        "katcp.loop.futures._hidden", "katcp.resource.KATCPSensor._secret"]


@pytest.mark.parametrize("module, name", [
    ("katcp.core", "bounded"), ("katcp.core", "windowed"), ("katcp.core", "format_mid"),
    ("katcp.ioloop_manager", "bounded"), ("katcp.inspecting_client", "until_all"),
    ("katcp.resource", "STRATEGY_WINDOW"), ("katcp.resource", "read_only"),
    ("katcp.resource", "windowed"), ("katcp.resource", "expire_after"),
    ("katcp.resource", "failed_future"), ("katcp.resource", "mirror_maker"),
    ("katcp.resource_client", "windowed"), ("katcp.resource_client", "mirror_maker"),
])
def test_names_public_for_other_packages_stay_out_of_the_documented_modules(module, name):
    # Public in their own (undocumented) module; the documented surface is 0.9.3's.
    assert not hasattr(importlib.import_module(module), name)
