"""The host's own commands (list, describe, models, plugins, gimp) are declared CommandSpecs like any plugin's.

They register through ``register_commands`` (the ``host`` built-in entry point), the CLI dispatches them as
declared commands, and Python gets their result objects from ``neurofilters.run_command``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import neurofilters
from neurofilters import plugin_host
from neurofilters.plugin_host import FilterSpec, ParameterError, RegistryError, UsageError, build_registry
from neurofilters.plugin_host.cli import host_commands
from neurofilters.plugin_host.cli.host_commands import (
    HOST_COMMANDS, HOST_SPECS, FilterListing, GimpInstalled, GimpRemoved, ModelFetched, ModelListing, PluginListing, host_spec,
)
from neurofilters.plugin_host.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DECLARED = {"list", "describe", "models", "plugins", "gimp"}


def test_every_host_command_is_a_registered_declared_command() -> None:
    registry = build_registry(autoload=False)
    build_parser(registry)  # reserving the host's names keeps its own declarations
    assert {spec.name for spec in HOST_SPECS} == DECLARED == set(HOST_COMMANDS) - {"run", "batch", "video"}
    for spec in HOST_SPECS:
        assert registry.commands[spec.name] is spec, spec.name  # registered through the hook, not beside it
        assert spec.declared and spec.configure is None
        actions = spec.subcommands or (spec,)
        assert all(action.run is not None and action.render is not None for action in actions), spec.name
    assert [p.name for p in host_spec("describe").params] == ["filter", "markdown"]
    assert [p.name for p in host_spec("models").params] == ["action", "model", "from_"]
    assert [a.name for a in host_spec("gimp").subcommands] == ["install", "uninstall"]
    assert all([p.flag for p in a.params] == ["--gimp-dir"] for a in host_spec("gimp").subcommands)
    # the host plugin is not listed among the plugins, its owner reads "neurofilters itself"
    assert "host" not in [info.name for info in neurofilters.run_command("plugins").value.plugins]


def test_the_cli_dispatches_no_command_by_name() -> None:
    """No ``_cmd_NAME`` functions looked up through ``globals()``: the host's commands are declared."""
    tree = ast.parse((ROOT / "plugin_host" / "cli" / "main.py").read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "globals" not in names
    assert not {f"_cmd_{name}" for name in DECLARED} & functions


def test_run_command_returns_the_result_objects(capsys: pytest.CaptureFixture[str]) -> None:
    listing = neurofilters.run_command("list")
    assert isinstance(listing.value, FilterListing) and listing.argv == ("list",)
    assert "deepdream" in listing.value.names and listing.value.names == [row.name for row in listing.value.rows]
    assert [(row.category, row.name) for row in listing.value.rows] == sorted((row.category, row.name) for row in listing.value.rows)
    described = neurofilters.run_command("describe", "deepdream")
    assert isinstance(described.value, FilterSpec) and described.value is plugin_host.get_registry().get_filter("deepdream")
    assert neurofilters.run_command("describe", filter="texture", markdown=True).argv == ("describe", "texture", "--markdown")
    models = neurofilters.run_command("models").value
    assert isinstance(models, ModelListing) and "lite0" in [row.name for row in models.rows]
    lite0 = next(row for row in models.rows if row.name == "lite0")
    assert lite0.offline is True and lite0.kind == "classifier"
    plugins = neurofilters.run_command("plugins").value
    assert isinstance(plugins, PluginListing) and "deepdream" in [info.name for info in plugins.plugins]
    assert capsys.readouterr().out == ""  # Python gets objects; only the command line renders them


def test_the_cli_renders_the_same_result(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    for row in neurofilters.run_command("list").value.rows:
        assert f"  {row.name} " in printed and row.summary in printed


@pytest.mark.parametrize(
    ("positional", "options", "words"),
    [
        (("gimp", "install"), {"gimp_dir": ""}, ["gimp", "install", "--gimp-dir", ""]),
        (("models", "frobnicate"), {}, ["models", "frobnicate"]),
        (("describe", "deepdream"), {"markdown": "maybe"}, None),  # a switch on the command line: Python only
    ],
)
def test_a_bad_value_raises_the_parameter_error_the_cli_prints(
    positional: tuple[str, ...], options: dict[str, object], words: list[str] | None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ParameterError) as raised:
        neurofilters.run_command(*positional, **options)
    if words is not None:
        assert main(words) == 2
        assert capsys.readouterr().err == f"neurofilters: error: {raised.value}\n"


def test_run_batch_and_video_stay_the_clis_own() -> None:
    for name in ("run", "batch", "video"):
        with pytest.raises(RegistryError, match=f"'{name}' is a command of neurofilters itself"):
            neurofilters.run_command(name)
    with pytest.raises(UsageError, match="'gimp' needs an action: install or uninstall"):
        neurofilters.run_command("gimp")
    with pytest.raises(UsageError, match="the following arguments are required: filter"):
        neurofilters.run_command("describe")


def test_gimp_install_and_uninstall_from_python(tmp_path: Path) -> None:
    installed = neurofilters.run_command("gimp", "install", gimp_dir=str(tmp_path)).value
    assert isinstance(installed, GimpInstalled) and Path(installed.path).is_file()  # the plug-in's entry file
    assert Path(installed.path).is_relative_to(tmp_path)
    removed = neurofilters.run_command("gimp", "uninstall", gimp_dir=tmp_path).value
    assert isinstance(removed, GimpRemoved) and removed.path and not Path(installed.path).exists()
    assert neurofilters.run_command("gimp", "uninstall", gimp_dir=tmp_path).value == GimpRemoved(None)


def test_host_commands_module_stays_light() -> None:
    """The registry imports it on every start: no Keras, NumPy or GIMP installer at import time."""
    tree = ast.parse(Path(host_commands.__file__).read_text())
    top = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] in ("numpy", "keras", "tensorflow") or "gimp" in name for name in top), top


def test_models_fetch_from_python_and_the_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``models fetch NAME --from FILE`` calls the model's fetcher once, from either front end."""
    import dataclasses

    registry = plugin_host.get_registry()
    name = next(name for name, spec in registry.models.items() if spec.fetch is not None)
    calls: list[object] = []
    monkeypatch.setitem(registry.models, name, dataclasses.replace(registry.models[name], fetch=calls.append))
    fetched = neurofilters.run_command("models", "fetch", name, from_="weights.tgz")
    assert fetched.value == ModelFetched(name, "weights.tgz") and fetched.argv == ("models", "fetch", name, "--from=weights.tgz")
    assert main(["models", "fetch", name, "--from", "other.tgz"]) == 0
    assert calls == ["weights.tgz", "other.tgz"] and capsys.readouterr().out == ""
    with pytest.raises(UsageError, match="'models' takes a model name and --from only with 'fetch'"):
        neurofilters.run_command("models", model=name)
    with pytest.raises(UsageError, match="has nothing to fetch"):
        neurofilters.run_command("models", "fetch", "lite0")
