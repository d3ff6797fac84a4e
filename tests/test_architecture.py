"""The layering of the code: import-linter contracts (pyproject.toml) and one docstring per room."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    # --no-cache: a checkout's .import_linter_cache can hold a graph from before a merge (it hid a new import once)
    return subprocess.run([command, "--no-cache", "--config", str(config)], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_import_contracts_are_kept() -> None:
    """The host never imports filters or Keras; rooms are layered; filters use the public API; GIMP's
    registration stays light; no cycles; filter packages stay independent of each other."""
    result = _lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 kept, 0 broken" in result.stdout


#: The shared rooms of ``filters/`` (packages every filter may import; not in the independence contract).
SHARED_ROOMS = ("attribution", "gradients", "visualization", "zoo")


def _independence_contract() -> dict:
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [independence] = [contract for contract in contracts if contract["type"] == "independence"]
    return independence


def test_filter_packages_are_independent_without_exceptions() -> None:
    """The independence contract ignores no import, and every package of ``filters/`` is a filter in it or a shared room."""
    independence = _independence_contract()
    assert "ignore_imports" not in independence and "ignore_imports" not in (ROOT / "pyproject.toml").read_text()
    filters = {module.rsplit(".", 1)[-1] for module in independence["modules"]}
    packages = {init.parent.name for init in (ROOT / "filters").glob("*/__init__.py")}
    assert filters | set(SHARED_ROOMS) == packages and not filters & set(SHARED_ROOMS)
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    assert all(f"`filters/{room}/`" in architecture for room in SHARED_ROOMS)
    assert "contract with no exceptions" in architecture
    assert not [f"{a} → {b}" for a in filters for b in filters if f"{a} → {b}" in architecture]  # no arrow documented


def test_the_independence_contract_can_fail(tmp_path: Path) -> None:
    """A filter package importing another breaks the contract: counting the attribution and visualisation rooms as
    filters breaks it on the imports into them from both sides (saliency and explorer, hallucinate and explorer)."""
    modules = [*_independence_contract()["modules"], "neurofilters.filters.attribution", "neurofilters.filters.visualization"]
    listed = ", ".join(f'"{module}"' for module in modules)
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["neurofilters"]\n\n[[tool.importlinter.contracts]]\n'
        f'name = "independent"\ntype = "independence"\nmodules = [{listed}]\n'
    )
    result = _lint_imports(config)
    assert result.returncode != 0 and "BROKEN" in result.stdout
    report = " ".join(result.stdout.split())  # lint-imports wraps long lines
    for importer, imported in (("explorer", "attribution"), ("saliency", "attribution"),
                               ("explorer", "visualization"), ("hallucinate", "visualization")):
        assert f"neurofilters.filters.{importer} is not allowed to import neurofilters.filters.{imported}" in report, report


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    """The check can fail: forbidding what the code really does (the CLI imports the core) breaks it."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["neurofilters"]\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "cli must not import core"\ntype = "forbidden"\n'
        'source_modules = ["neurofilters.plugin_host.cli"]\nforbidden_modules = ["neurofilters.plugin_host.core"]\n'
    )
    result = _lint_imports(config)
    assert result.returncode != 0 and "BROKEN" in result.stdout


def test_every_room_says_what_it_owns_in_one_line() -> None:
    for init in sorted([*(ROOT / "plugin_host").rglob("__init__.py"), *(ROOT / "filters").rglob("__init__.py")]):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring, f"{init} needs a docstring"
        assert docstring.splitlines()[0].endswith("."), f"{init}: the first line says what the room owns"


def test_public_api_lists_its_names() -> None:
    import neurofilters
    import neurofilters.plugin_host as host

    for module in (neurofilters, host):
        assert len(set(module.__all__)) == len(module.__all__), f"{module.__name__}.__all__ lists a name twice"
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name} is listed in __all__ but missing"


#: Other projects' internals the package must not use (issue 23, item 5): module prefixes and private attributes.
_PRIVATE_MODULES = ("keras.src", "tensorflow.python")
_PRIVATE_ATTRIBUTES = ("_run_through_graph", "_inbound_nodes", "_outbound_nodes", "_keras_history")
#: ``(path relative to the repository, what it uses) -> why it is kept``. Empty: every use was replaced.
_ALLOWED_INTERNALS: dict[tuple[str, str], str] = {}


def _internals_used(source: str) -> list[str]:
    """What ``source`` uses of other projects' internals: private modules and attributes, patched gimpformats names."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    gimpformats_names = set()
    found = []
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            gimpformats_names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names if alias.name.startswith("gimpformats")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if node.module.split(".")[0] == "gimpformats":
                gimpformats_names |= {alias.asname or alias.name for alias in node.names}
        found += [f"import {module}" for module in modules if module.startswith(_PRIVATE_MODULES)]
        if isinstance(node, ast.Attribute) and node.attr in _PRIVATE_ATTRIBUTES:
            found.append(f".{node.attr}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found += [f"{name!r}" for name in (*_PRIVATE_MODULES, *_PRIVATE_ATTRIBUTES) if name in node.value]
    for node in ast.walk(tree):  # second pass: the gimpformats names are all known now
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") and node.args:
            targets = [ast.Attribute(value=node.args[0], attr="?")]
        for target in targets:
            root = target
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(target, ast.Attribute) and isinstance(root, ast.Name) and root.id in gimpformats_names:
                found.append(f"assignment to gimpformats' {ast.unparse(target)}")
    return found


def test_the_package_uses_no_other_projects_internals() -> None:
    """No keras.src, tensorflow.python or Keras' private graph attributes; gimpformats is never patched."""
    used = []
    for folder in ("plugin_host", "filters", "gimp_plugin"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            used += [f"{relative}: {what}" for what in _internals_used(path.read_text(encoding="utf-8"))
                     if (relative, what) not in _ALLOWED_INTERNALS]
    assert used == []


def test_the_internals_check_can_fail() -> None:
    """Each kind of use the package had before is found (what issue 23 listed)."""
    samples = {
        "from keras.src.backend.config import keras_home": "import keras.src.backend.config",
        "import tensorflow.python.framework.convert_to_constants as c": "import tensorflow.python.framework.convert_to_constants",
        "from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2":
            "import tensorflow.python.framework.convert_to_constants",
        "outputs = model._run_through_graph([x], operation_fn=f)": "._run_through_graph",
        "node = layer._inbound_nodes[0]": "._inbound_nodes",
        "n = len(getattr(conv, '_outbound_nodes', []))": "'_outbound_nodes'",
        "owner = tensor._keras_history[0]": "._keras_history",
        "from gimpformats import GimpIOBase as base\nbase.GimpIOBase._propertyDecode = tolerant":
            "assignment to gimpformats' base.GimpIOBase._propertyDecode",
        "from gimpformats import GimpPrecision\nsetattr(GimpPrecision.Precision, 'decode', f)":
            "assignment to gimpformats' GimpPrecision.Precision.?",
        "import gimpformats.GimpIOBase\ngimpformats.GimpIOBase.x = 1": "assignment to gimpformats' gimpformats.GimpIOBase.x",
    }
    for source, expected in samples.items():
        assert expected in _internals_used(source), (source, _internals_used(source))
    # what stays allowed: a documented mention, an instance of a gimpformats class, public Keras
    assert _internals_used('"""Not keras.src."""\nfrom gimpformats.GimpPatPattern import GimpPatPattern\n'
                           "pattern = GimpPatPattern()\npattern.name = 'x'\nimport keras\nkeras.Model") == []


def _room(dotted: str) -> str:
    """The room a module of the package lives in: ``neurofilters.filters.gradients`` for
    ``neurofilters.filters.gradients._network``, ``neurofilters.filters.parameterization`` for that module."""
    return ".".join(dotted.split(".")[:3])


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` (``neurofilters....``) names a module or package of this repository."""
    path = ROOT.joinpath(*dotted.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _private_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Imports in ``source`` (the code of ``module``) of another package's underscore-private module, or of
    another room's underscore-private name (``from ..parameterization import _COLOR``).

    A private module (``_network`` in ``neurofilters.filters.gradients._network``) belongs to the package that
    holds it: only modules inside that package may import it. A private name belongs to its room
    (:func:`_room`). Dunder modules and names (``__init__``, ``__version__``) are public.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            origin = ".".join([*base, node.module] if node.level and node.module else base) if node.level else node.module
            targets = [(f"{origin}.{alias.name}" if _is_module(f"{origin}.{alias.name}") else origin,
                        None if _is_module(f"{origin}.{alias.name}") else alias.name) for alias in node.names]
        else:
            continue
        for dotted, name in targets:
            if not dotted or dotted.split(".")[0] != "neurofilters":
                continue
            parts = dotted.split(".")
            for index, part in enumerate(parts):
                owner = ".".join(parts[:index])
                if part.startswith("_") and not part.startswith("__") and not (module == owner or module.startswith(owner + ".")):
                    found.append(f"{module} imports {dotted}: private to {owner}")
                    break
            else:
                if name and name.startswith("_") and not name.startswith("__") and _room(dotted) != _room(module):
                    found.append(f"{module} imports {dotted}.{name}: private to {_room(dotted)}")
    return found


def _package_modules() -> list[tuple[Path, str, bool]]:
    modules = []
    for folder in ("plugin_host", "filters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = ["neurofilters", *path.relative_to(ROOT).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            modules.append((path, ".".join(parts[:-1] if is_package else parts), is_package))
    return modules


def _draws_its_own_bar(source: str) -> bool:
    """Whether ``source`` names the command line's ``ProgressBar`` (a command gets its bar from ``context.progress_bar``)."""
    return any(isinstance(node, ast.Name) and node.id == "ProgressBar" or isinstance(node, ast.Attribute) and node.attr == "ProgressBar"
               or isinstance(node, ast.alias) and node.name.endswith("ProgressBar") for node in ast.walk(ast.parse(source)))


def test_commands_get_their_progress_bar_from_the_host() -> None:
    """No filter or shared room makes the command line's bar: ``context.progress_bar`` gives the host's (none with
    --quiet, none drawn from Python), as five commands once made their own."""
    assert [path.name for path in sorted((ROOT / "filters").rglob("*.py")) if _draws_its_own_bar(path.read_text(encoding="utf-8"))] == []
    assert _draws_its_own_bar("from neurofilters.plugin_host import ProgressBar\n")
    assert _draws_its_own_bar("bar = plugin_host.ProgressBar('x') if q else None\n")
    assert not _draws_its_own_bar("bar = context.progress_bar('explore patches')\n")


def test_no_module_imports_another_packages_private_module() -> None:
    """Packages and shared rooms are used through their public names: no module outside a package imports its
    ``_private`` modules (``filters/gradients/_network.py`` is the gradients room's own), and no room imports
    another room's ``_private`` names."""
    found = []
    for path, module, is_package in _package_modules():
        found += _private_imports(path.read_text(encoding="utf-8"), module, is_package=is_package)
    assert found == []


def test_scripts_outside_the_package_use_its_public_names_only() -> None:
    """The benchmarks, the docs' generators and the GIMP plug-in are users of the package: they import none of its
    ``_private`` modules or names (``bench/bench_deepdream.py`` once reached into ``gradients._network``)."""
    found = []
    for folder in ("bench", "docs", "gimp_plugin"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += _private_imports(path.read_text(encoding="utf-8"), ".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert found == []
    assert _private_imports("from neurofilters.filters.gradients._network import _is_relu6", "bench.bench_deepdream") == [
        "bench.bench_deepdream imports neurofilters.filters.gradients._network: private to neurofilters.filters.gradients"
    ]


def test_the_private_import_check_can_fail() -> None:
    """The imports the code had before the autodiff room was made public are found; a room's own are not."""
    attribution = "neurofilters.filters.attribution.network"
    assert _private_imports("from ..gradients._network import prepare_network", attribution) == [
        f"{attribution} imports neurofilters.filters.gradients._network: private to neurofilters.filters.gradients"
    ]
    assert _private_imports("def f():\n    from ..gradients._tensorflow import trace_frozen\n", attribution) != []
    assert _private_imports("from ..gradients import _network", attribution) != []
    assert _private_imports("import neurofilters.filters.gradients._jax as j", attribution) != []
    assert _private_imports("from ..parameterization import _COLOR", "neurofilters.filters.hallucinate.canvas") == [
        "neurofilters.filters.hallucinate.canvas imports neurofilters.filters.parameterization._COLOR: "
        "private to neurofilters.filters.parameterization"
    ]
    # inside the room, and public names, stay allowed
    assert _private_imports("from ._network import prepare_network", "neurofilters.filters.gradients._scores") == []
    assert _private_imports("from . import _network", "neurofilters.filters.gradients", is_package=True) == []
    assert _private_imports("from ..gradients import prepare_network, trace_frozen", attribution) == []
    assert _private_imports("from ..zoo.model import _first", "neurofilters.filters.zoo.graph") == []
