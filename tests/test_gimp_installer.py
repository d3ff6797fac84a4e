"""The GIMP plug-in's installer, manifest and the plug-in file's GIMP-free parts (no GIMP needed)."""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.plugin_host.gimp import installer
from neurofilters.plugin_host.gimp import worker as _worker

from test_gimp_worker import PLUGIN, PLUGIN_FILE, TESTPLUGIN_DIR, runtime_dir, worker_pythonpath  # noqa: F401 - runtime_dir is a fixture


@pytest.fixture()
def with_test_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("PYTHONPATH", worker_pythonpath())
    monkeypatch.syspath_prepend(os.fspath(TESTPLUGIN_DIR))
    plugin_host.reset_registry()


def test_install_puts_an_executable_file_in_a_folder_of_the_same_name(tmp_path):
    path = installer.install(tmp_path)
    assert path == tmp_path / "plug-ins" / "neurofilters" / "neurofilters.py"
    assert path.read_bytes() == PLUGIN_FILE.read_bytes()
    assert path.stat().st_mode & stat.S_IXUSR
    assert path.read_text().startswith("#!/usr/bin/env python3\n")
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["format"] == PLUGIN.MANIFEST_FORMAT == installer.MANIFEST_FORMAT
    assert manifest["python"] == os.path.abspath(sys.executable)
    assert [f["name"] for f in manifest["filters"]] == list(plugin_host.get_registry().filters)


def test_gimp_dir_may_be_the_plug_ins_folder_and_defaults_follow_gimp(tmp_path, monkeypatch):
    assert installer.install(tmp_path / "plug-ins").parent == tmp_path / "plug-ins" / "neurofilters"
    monkeypatch.setenv("GIMP3_DIRECTORY", os.fspath(tmp_path / "profile"))
    assert installer.plugin_dir() == tmp_path / "profile" / "plug-ins" / "neurofilters"
    monkeypatch.delenv("GIMP3_DIRECTORY")
    monkeypatch.setenv("XDG_CONFIG_HOME", os.fspath(tmp_path / "config"))
    if sys.platform.startswith("linux"):
        assert installer.default_gimp_dir() == tmp_path / "config" / "GIMP" / "3.0"


def test_manifest_carries_every_declaration(tmp_path, with_test_plugin):
    manifest = json.loads((installer.install(tmp_path).parent / "manifest.json").read_text())
    registry = plugin_host.get_registry()
    assert [f["name"] for f in manifest["filters"]] == list(registry.filters)
    for entry in manifest["filters"]:
        spec = registry.get_filter(entry["name"])
        assert (entry["title"], entry["category"], entry["output"], entry["summary"]) == (
            spec.title,
            spec.category,
            spec.output,
            spec.summary,
        )
        assert [p["name"] for p in entry["params"]] == [p.name for p in spec.params]
        for data, param in zip(entry["params"], spec.params):
            assert (data["kind"], data["label"], data["help"], data["minimum"], data["maximum"]) == (
                param.kind,
                param.label,
                param.help,
                param.minimum,
                param.maximum,
            )
            assert data["choices"] == list(param.choices)
            assert param.convert(data["default_text"], check_files=False) == param.default
            # the JSON default is accepted by the same validation as the CLI's
            assert param.convert(data["default"], check_files=False) == param.default
    invert = {p["name"]: p for p in manifest["filters"][[f["name"] for f in manifest["filters"]].index("nf-test-invert")]["params"]}
    assert invert["tint"]["default"] == [1.0, 128 / 255, 0.0]
    assert invert["layers"]["default"] == invert["layers"]["default_text"] == "block1,block2:0.5"
    assert {"name": "nf-test-model", "title": "Test model"} in manifest["models"]


def test_recorded_environment_is_what_decides_the_filters(monkeypatch):
    environ = {
        "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": "1",
        "NEUROFILTERS_CACHE_DIR": "/c",
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": "/p",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "TF_CLI_CONFIG_FILE": "/root/.terraformrc",
        "HOME": "/root",
        "PATH": "/bin",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    assert installer.recorded_environment(environ) == {
        "KERAS_BACKEND": "jax",
        "NEUROFILTERS_CACHE_DIR": "/c",
        "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": "/p",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    }


def test_reinstall_after_adding_a_plugin_lists_it_and_changes_the_file_time(tmp_path, monkeypatch):
    path = installer.install(tmp_path)
    first = json.loads((path.parent / "manifest.json").read_text())
    before = path.stat().st_mtime
    assert "nf-test-invert" not in [f["name"] for f in first["filters"]]
    monkeypatch.delenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("PYTHONPATH", worker_pythonpath())
    monkeypatch.syspath_prepend(os.fspath(TESTPLUGIN_DIR))
    plugin_host.reset_registry()
    installer.install(tmp_path)
    second = json.loads((path.parent / "manifest.json").read_text())
    assert "nf-test-invert" in [f["name"] for f in second["filters"]]
    assert second["env"]["PYTHONPATH"] == worker_pythonpath()
    assert path.stat().st_mtime >= before + 1  # GIMP compares whole seconds before re-registering


def test_install_for_another_interpreter_asks_that_interpreter(tmp_path):
    wrapper = tmp_path / "bin" / "python"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    manifest = json.loads((installer.install(tmp_path / "gimp", python=os.fspath(wrapper)).parent / "manifest.json").read_text())
    assert manifest["python"] == os.fspath(wrapper)
    assert [f["name"] for f in manifest["filters"]] == list(plugin_host.get_registry().filters)


def test_install_errors_name_the_interpreter(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Received: python='/no/such/python'"):
        installer.install(tmp_path, python="/no/such/python")
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'No module named neurofilters.plugin_host' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"(?s)cannot list the neurofilters filters \(exit 1\).*No module named neurofilters.plugin_host"):
        installer.install(tmp_path, python=os.fspath(broken))
    assert not (tmp_path / "plug-ins").exists()


def _ended(pid: int) -> bool:
    """Whether ``pid`` exited (gone, or a zombie: this test process started it and never reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_uninstall_removes_the_folder_and_stops_its_worker(tmp_path, runtime_dir):  # noqa: F811
    path = installer.install(tmp_path)
    client = PLUGIN.WorkerClient(PLUGIN.load_manifest(os.fspath(path.parent)))
    pid = client.ping()["pid"]
    assert installer.uninstall(tmp_path) == path.parent
    assert not path.parent.exists()
    deadline = time.monotonic() + 10
    while not _ended(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ended(pid)
    assert not Path(client.socket_path).exists()
    assert installer.uninstall(tmp_path) is None


def test_uninstall_leaves_a_folder_with_foreign_files_alone(tmp_path):
    path = installer.install(tmp_path)
    (path.parent / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match=r"holds files neurofilters did not install: notes.txt"):
        installer.uninstall(tmp_path)
    assert path.exists()


def test_cli_gimp_install_and_uninstall(tmp_path):
    run = [sys.executable, "-m", "neurofilters.plugin_host", "gimp"]
    installed = subprocess.run([*run, "install", "--gimp-dir", os.fspath(tmp_path)], capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "plug-ins" / "neurofilters" / "neurofilters.py").is_file()
    removed = subprocess.run([*run, "uninstall", "--gimp-dir", os.fspath(tmp_path)], capture_output=True, text=True, timeout=120)
    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "plug-ins" / "neurofilters").exists()


# -- the plug-in file --------------------------------------------------------------------------------
def test_plugin_file_imports_only_the_standard_library_and_gi():
    tree = ast.parse(PLUGIN_FILE.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    assert modules - set(sys.stdlib_module_names) == {"gi"}
    assert "__future__" in modules and not modules & {"numpy", "neurofilters.plugin_host", "tensorflow", "keras"}


def test_plugin_maps_every_parameter_kind():
    assert set(PLUGIN.KIND_TO_ARGUMENT) == set(plugin_host.PARAM_KINDS)


def test_plugin_and_worker_share_one_wire_module(tmp_path):
    """The framing exists once: the worker imports wire.py, the installer copies that very file beside the plug-in."""
    from neurofilters.plugin_host.gimp import wire

    assert os.path.samefile(PLUGIN.wire.__file__, wire.__file__) and PLUGIN.PROTOCOL_VERSION == _worker.PROTOCOL_VERSION == wire.PROTOCOL_VERSION
    assert _worker.send_message is wire.send_message and _worker.recv_message is wire.recv_message
    for name in ("_FRAME", "_MAGIC", "_send", "_recv", "_recv_exact"):
        assert not hasattr(PLUGIN, name), f"the plug-in file has its own {name}"
    target = installer.install(tmp_path / "profile", python=sys.executable)
    copied = target.parent / installer.WIRE_NAME
    assert copied.read_bytes() == Path(wire.__file__).read_bytes()
    # The installed plug-in loads the copy beside it, not the source tree's.
    spec = __import__("importlib.util").util.spec_from_file_location("_nf_installed_plugin", target)
    module = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert Path(module.wire.__file__) == copied
    copied.unlink()
    with pytest.raises(module.WorkerError, match="wire module .* is missing"):
        module.__dict__["wire"] = module._load_wire()
        module.load_manifest(os.fspath(target.parent))


def test_wire_module_is_standard_library_only():
    from neurofilters.plugin_host.gimp import wire

    tree = ast.parse(Path(wire.__file__).read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert modules <= set(sys.stdlib_module_names), modules
    ast.parse(Path(wire.__file__).read_text(), feature_version=(3, 8))


def test_argument_names_and_choice_nicks():
    assert PLUGIN.argument_name("octave_scale") == "octave-scale"
    assert [PLUGIN.argument_name(n) for n in ("image", "drawables", "run_mode", "output_mode")] == [
        "image-param",
        "drawables-param",
        "run-mode-param",
        "output-mode-param",
    ]
    assert PLUGIN.choice_nicks(["rgb", "mean-abs", "Grey Mix", "x_y"]) == ["rgb", "mean-abs", "choice-2", "choice-3"]


def test_plugin_reports_a_broken_manifest_with_the_fix(tmp_path):
    with pytest.raises(PLUGIN.WorkerError, match=r"Cannot read the neurofilters manifest .*neurofilters gimp install"):
        PLUGIN.load_manifest(os.fspath(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(PLUGIN.WorkerError, match=r"has format 99; this plug-in reads format 1"):
        PLUGIN.load_manifest(os.fspath(tmp_path))


def test_plugin_file_runs_on_older_pythons():
    """GIMP 3 ships with whatever Python the platform has; keep the file free of 3.10+ syntax."""
    source = PLUGIN_FILE.read_text()
    ast.parse(source, feature_version=(3, 8))
    tree = ast.parse(source)
    assert not any(isinstance(node, ast.Match) for node in ast.walk(tree))


def test_gimp_docs_name_every_parameter_kind_and_the_extra_arguments():
    text = (Path(__file__).resolve().parents[1] / "docs" / "gimp.md").read_text()
    table = text.split("| parameter kind | GIMP argument |", 1)[1].split("\n\n", 1)[0]
    for kind in plugin_host.PARAM_KINDS:
        assert f"`{kind}`" in table, kind
    for name in (PLUGIN.SEED_ARGUMENT, PLUGIN.OUTPUT_ARGUMENT, *(nick for nick, _, _ in PLUGIN.OUTPUT_MODES)):
        assert f"`{name}`" in text, name
    assert (Path(__file__).resolve().parents[1] / "docs" / "assets" / "gimp-dialog.png").is_file()


def test_gimp_dir_at_a_file_is_one_line_naming_it(tmp_path, capsys):
    from neurofilters.plugin_host.cli.main import main

    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    for given in (afile, afile / "sub"):
        assert main(["gimp", "install", "--gimp-dir", str(given)]) == 2
        err = capsys.readouterr().err
        assert f"where {afile} is a file" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert afile.read_text() == "mine"
