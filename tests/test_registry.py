"""The registry: built-ins, entry-point discovery, failure isolation, conflicts."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.plugin_host import FilterSpec, ModelSpec, RegistryError, apply_filter, build_registry, builtin_entry_points
from neurofilters.plugin_host.cli.host_commands import host_spec
from neurofilters.plugin_host.cli.main import HOST_COMMANDS, build_parser

from plugin_factory import GOOD_PLUGIN, make_distribution


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path that acts as site-packages, with autoload on."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD")
    yield tmp_path
    for name in list(sys.modules):
        if name.startswith("nfplug_"):
            del sys.modules[name]


ROOT = Path(__file__).resolve().parents[1]


def test_builtins_register_through_the_same_hooks() -> None:
    registry = build_registry()
    builtins = builtin_entry_points()
    assert [entry_point.group for entry_point in builtins] == ["neurofilters"] * len(builtins)
    # every plugin module of the project is a built-in entry point, named after its package
    # (and the host's own commands, a built-in plugin named host)
    modules = sorted(f"neurofilters.filters.{path.parent.name}.plugin" for path in (ROOT / "filters").glob("*/plugin.py"))
    host = "neurofilters.plugin_host.cli.host_commands"
    assert sorted(entry_point.value for entry_point in builtins) == sorted([*modules, host])
    assert all(entry_point.value in (f"neurofilters.filters.{entry_point.name}.plugin", host) for entry_point in builtins)
    assert [entry_point.name for entry_point in builtins if entry_point.value == host] == ["host"]
    # built-ins load first, sorted by entry-point name, from the project's own distribution
    assert [entry_point.name for entry_point in builtins] == sorted(entry_point.name for entry_point in builtins)
    loaded = [(info.name, info.distribution) for info in registry.plugins[: len(builtins)]]
    assert loaded == [(entry_point.name, "neurofilters") for entry_point in builtins]
    assert registry.failures == []
    assert "deepdream" in registry.filters
    assert "lite0" in registry.models and "vgg16-hed" in registry.models
    assert all(isinstance(spec, FilterSpec) for spec in registry.filters.values())
    assert all(isinstance(spec, ModelSpec) for spec in registry.models.values())


def test_entry_point_plugin_is_discovered_and_runs(site: Path) -> None:
    make_distribution(site, "nf-good", {"nfplug_good": GOOD_PLUGIN.format(name="invert-test")})
    registry = build_registry()
    assert "invert-test" in registry.filters
    info = next(p for p in registry.plugins if p.name == "nfplug_good")
    assert (info.distribution, info.version, info.filters) == ("nf-good", "1.0", ["invert-test"])
    image = np.full((2, 3, 3), 0.25, dtype=np.float32)
    out = apply_filter(registry.get_filter("invert-test"), image)
    np.testing.assert_allclose(out, 0.75)


def test_autoload_can_be_disabled(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(site, "nf-good", {"nfplug_good": GOOD_PLUGIN.format(name="invert-test")})
    # a distribution whose name merely starts like the project's is third-party too
    make_distribution(site, "neurofilters-extra", {"nfplug_extra": GOOD_PLUGIN.format(name="extra-test")})
    monkeypatch.setenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = build_registry()
    assert "invert-test" not in registry.filters and "extra-test" not in registry.filters
    # the built-ins are entry points as well, and still load
    assert [info.name for info in registry.plugins] == [entry_point.name for entry_point in builtin_entry_points()]
    assert "deepdream" in registry.filters and registry.failures == []
    enabled = build_registry(autoload=True)
    assert "invert-test" in enabled.filters and "extra-test" in enabled.filters


def test_stale_metadata_without_builtin_entry_points_says_how_to_fix_it(site: Path) -> None:
    """An editable install made before the built-ins became entry points: one failure naming the fix."""
    make_distribution(site, "neurofilters", {}, version="0.0.1")  # found before the real one on sys.path
    registry = build_registry()
    assert registry.filters == {} and registry.plugins == []
    [failure] = registry.failures
    assert "'neurofilters' 0.0.1 declares no entry point of the 'neurofilters' group" in str(failure)
    assert "pip install -e ." in str(failure)


def test_deprecated_builtin_plugins_lists_the_entry_points_modules() -> None:
    with pytest.warns(DeprecationWarning, match="builtin_entry_points") as caught:
        modules = plugin_host.BUILTIN_PLUGINS
    assert caught[0].filename == __file__  # the warning names the line that read it
    from neurofilters.plugin_host.core import registry as core_registry

    with pytest.warns(DeprecationWarning) as caught:
        assert core_registry.BUILTIN_PLUGINS == modules
    assert caught[0].filename == __file__
    assert modules == tuple(entry_point.value for entry_point in builtin_entry_points())
    assert "neurofilters.filters.zoo.plugin" in modules
    with pytest.raises(AttributeError, match="NO_SUCH_NAME"):
        plugin_host.NO_SUCH_NAME  # noqa: B018


def test_third_party_entry_point_may_share_a_builtin_entry_point_name(site: Path) -> None:
    """Plugins are registered per distribution, so a third-party 'texture' entry point is not refused."""
    make_distribution(site, "nf-texture", {"texture": GOOD_PLUGIN.format(name="texture-test")})
    registry = build_registry()
    assert registry.failures == []
    assert "texture-test" in registry.filters and "texture" in registry.filters
    assert [(p.name, p.distribution) for p in registry.plugins if p.name == "texture"] == [
        ("texture", "neurofilters"),
        ("texture", "nf-texture"),
    ]


COMMAND_PLUGIN = """
from neurofilters.plugin_host import CommandSpec, hookimpl

def configure(parser):
    parser.add_argument("--x")

@hookimpl
def register_commands():
    return [CommandSpec(name="{name}", help="h", configure=configure, run=lambda args: 0)]
"""


def test_plugin_command_cannot_take_a_host_command_name(site: Path) -> None:
    make_distribution(site, "nf-cmd", {"nfplug_cmd": COMMAND_PLUGIN.format(name="list")})
    registry = build_registry()
    # the host's list registers first (a built-in), so the plugin's is turned away at once ...
    assert registry.commands["list"] is host_spec("list")
    build_parser(registry)  # ... and the CLI, reserving its names, says the host owns it
    assert registry.commands["list"] is host_spec("list")
    [failure] = [f for f in registry.failures if "'list'" in str(f)]
    message = str(failure)
    assert "\n" not in message
    assert "Command name 'list' is provided by neurofilters itself and nfplug_cmd (nf-cmd); keeping the first." in message
    build_parser(registry)  # reserving again adds nothing
    assert len([f for f in registry.failures if "'list'" in str(f)]) == 1


def test_run_command_refuses_a_plugin_command_named_like_a_host_command(site: Path) -> None:
    """Python reserves the CLI's names too: a plugin's ``list`` is dropped, the host's runs; ``run`` is refused."""
    import neurofilters

    make_distribution(site, "nf-cmd", {"nfplug_cmd": COMMAND_PLUGIN.format(name="list")})
    plugin_host.reset_registry()
    try:
        assert "deepdream" in neurofilters.run_command("list").value.names  # the host's list, not the plugin's
        with pytest.raises(RegistryError, match="'run' is a command of neurofilters itself") as raised:
            neurofilters.run_command("run")
        assert "\n" not in str(raised.value)
        registry = plugin_host.get_registry()
        assert registry.commands["list"] is host_spec("list")
        [failure] = [f for f in registry.failures if "'list'" in str(f)]
        assert "provided by neurofilters itself and nfplug_cmd (nf-cmd)" in str(failure)
    finally:
        plugin_host.reset_registry()


def test_host_commands_are_exactly_the_parsers_own_subcommands() -> None:
    registry = build_registry(autoload=False)
    parser = build_parser(registry)
    sub = next(action for action in parser._actions if action.dest == "command")
    # run, batch and video are the parser's own; the other host commands are declared and registered (host plugin)
    assert set(sub.choices) - set(registry.commands) == {"run", "batch", "video"}
    assert {name for name in registry.commands if host_spec(name) is not None} == set(HOST_COMMANDS) - {"run", "batch", "video"}
    assert set(HOST_COMMANDS) <= set(sub.choices)


def _core_sources() -> dict[str, ast.Module]:
    return {path.name: ast.parse(path.read_text()) for path in sorted((ROOT / "plugin_host" / "core").glob("*.py"))}


def _strings(tree: ast.Module) -> set[str]:
    """Every string constant of ``tree`` other than docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def _host_command_collections(tree: ast.Module) -> list[set[str]]:
    """Tuples, lists and sets in ``tree`` holding two or more host command names (a list of them).

    A lone ``"run"`` or ``"list"`` is an ordinary word (an attribute, a parameter kind); a collection
    of command names is what core used to keep.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            names = {elt.value for elt in node.elts if isinstance(elt, ast.Constant)} & set(HOST_COMMANDS)
            if len(names) >= 2:
                found.append(names)
    return found


def test_core_names_no_builtin_plugin_filter_or_command() -> None:
    """No built-in plugin or filter is spelt out in core, nor a list of the host's commands."""
    registry = build_registry(autoload=False)
    names = {entry_point.name for entry_point in builtin_entry_points()} | set(registry.filters)
    modules = {entry_point.value for entry_point in builtin_entry_points()}
    for file, tree in _core_sources().items():
        strings = _strings(tree)
        assert not strings & names, f"plugin_host/core/{file} names {sorted(strings & names)}"
        for text in strings:
            assert "neurofilters.filters" not in text and not any(module in text for module in modules), (
                f"plugin_host/core/{file} names a built-in module in {text!r}"
            )
        assert _host_command_collections(tree) == [], f"plugin_host/core/{file} lists host commands"


def test_the_core_check_can_fail() -> None:
    """The same scans find what registry.py held before issue 23."""
    tree = ast.parse('"""Doc."""\nRESERVED = ("list", "run", "gimp")\nBUILTIN = ("neurofilters.filters.zoo.plugin",)\n')
    assert _host_command_collections(tree) == [{"list", "run", "gimp"}]
    assert "neurofilters.filters.zoo.plugin" in _strings(tree) and "Doc." not in _strings(tree)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("raise ImportError('needs libfoo')", "import failed: ImportError: needs libfoo"),
        (
            "from neurofilters.plugin_host import hookimpl\n@hookimpl\ndef register_filters():\n    raise RuntimeError('boom')\n",
            "register_filters() raised RuntimeError: boom",
        ),
        (
            "from neurofilters.plugin_host import hookimpl\n@hookimpl\ndef register_filters():\n    return ['not a spec']\n",
            "register_filters() returned str 'not a spec'; expected FilterSpec objects",
        ),
        (
            "from neurofilters.plugin_host import hookimpl\n@hookimpl\ndef register_models():\n    return [42]\n",
            "register_models() returned int 42; expected ModelSpec objects",
        ),
        (
            "from neurofilters.plugin_host import FilterSpec, hookimpl\n@hookimpl\ndef register_filters():\n"
            "    return [FilterSpec(name='Bad Name', title='t', summary='s', description='', category='c',"
            " params=(), run=print)]\n",
            "register_filters() raised DeclarationError",
        ),
    ],
)
def test_broken_plugin_is_reported_and_others_keep_working(site: Path, source: str, fragment: str) -> None:
    make_distribution(site, "nf-broken", {"nfplug_broken": source})
    make_distribution(site, "nf-good", {"nfplug_good": GOOD_PLUGIN.format(name="invert-test")})
    registry = build_registry()
    assert "invert-test" in registry.filters
    assert "deepdream" in registry.filters
    failure = next(f for f in registry.failures if f.plugin == "nfplug_broken")
    assert failure.distribution == "nf-broken"
    assert fragment in str(failure)
    assert str(failure).startswith('Error in plugin "nfplug_broken" (nf-broken)')


def test_same_filter_name_twice_names_both_distributions(site: Path) -> None:
    make_distribution(site, "nf-one", {"nfplug_one": GOOD_PLUGIN.format(name="twin")})
    make_distribution(site, "nf-two", {"nfplug_two": GOOD_PLUGIN.format(name="twin")})
    registry = build_registry()
    with pytest.raises(RegistryError) as info:
        registry.get_filter("twin")
    assert "nf-one" in str(info.value) and "nf-two" in str(info.value)
    assert "twin" not in registry.filters
    assert "deepdream" in registry.filters


def test_plugin_cannot_take_a_builtin_name(site: Path) -> None:
    make_distribution(site, "nf-squatter", {"nfplug_squat": GOOD_PLUGIN.format(name="deepdream")})
    registry = build_registry()
    with pytest.raises(RegistryError, match="neurofilters.*nf-squatter"):
        registry.get_filter("deepdream")


def test_unknown_names_suggest_close_matches() -> None:
    registry = build_registry()
    with pytest.raises(RegistryError, match=r"Received: 'deepdraem'\. Did you mean: deepdream\?"):
        registry.get_filter("deepdraem")
    with pytest.raises(RegistryError, match="Did you mean: lite1, lite0"):
        registry.get_model("lite9")


def test_model_aliases_resolve() -> None:
    registry = build_registry()
    assert registry.get_model("efficientnet-lite0").name == "lite0"
