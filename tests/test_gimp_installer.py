"""The GIMP plug-in's installer, manifest and the plug-in modules' GIMP-free parts (no GIMP needed)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.gimp_plugin import client as plugin_client
from neurofilters.gimp_plugin import manifest as plugin_manifest
from neurofilters.plugin_host.gimp import installer
from neurofilters.plugin_host.gimp import worker as _worker

from test_gimp_worker import PLUGIN_DIR, TESTPLUGIN_DIR, runtime_dir, worker_pythonpath  # noqa: F401 - runtime_dir is a fixture

#: Every module of the plug-in: the entry file GIMP runs and the modules it loads.
PLUGIN_SOURCES = sorted(PLUGIN_DIR.glob("*.py"))


def _load_entry(path: Path) -> Any:
    """An entry file as a module (outside GIMP it imports nothing of GIMP), as the installer loads it."""
    spec = importlib.util.spec_from_file_location(f"_nf_entry_{abs(hash(os.fspath(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def with_test_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("PYTHONPATH", worker_pythonpath())
    monkeypatch.syspath_prepend(os.fspath(TESTPLUGIN_DIR))
    plugin_host.reset_registry()


def test_install_puts_an_executable_file_in_a_folder_of_the_same_name(tmp_path):
    path = installer.install(tmp_path)
    assert path == tmp_path / "plug-ins" / "neurofilters" / "neurofilters.py"
    for source in PLUGIN_SOURCES:  # the entry file and every module it loads, byte for byte
        assert (path.parent / source.name).read_bytes() == source.read_bytes(), source.name
    assert path.stat().st_mode & stat.S_IXUSR
    assert path.read_text().startswith("#!/usr/bin/env python3\n")
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["format"] == plugin_manifest.MANIFEST_FORMAT == installer.MANIFEST_FORMAT
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
    client = plugin_client.WorkerClient(plugin_manifest.load_manifest(os.fspath(path.parent)))
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


# -- the plug-in's modules ------------------------------------------------------------------------
def test_installer_copies_exactly_the_plug_ins_modules():
    """A module added to gimp_plugin/ and forgotten in the installer's list would be missing in GIMP."""
    assert sorted([*installer.PLUGIN_MODULES, installer.ENTRY_NAME]) == [source.name for source in PLUGIN_SOURCES]
    assert len(PLUGIN_SOURCES) >= 8  # entry, manifest, client, host, procedure, plan, dialog, run ...


def test_plugin_modules_import_only_the_standard_library_gi_and_each_other():
    for source in PLUGIN_SOURCES:
        tree = ast.parse(source.read_text())
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
        assert modules - set(sys.stdlib_module_names) <= {"gi"}, source.name
        assert "__future__" in modules or source.name == "__init__.py", source.name
    # GIMP's libraries: imported by the host API (GTK's by the dialog); the worker client, the
    # manifest and the dialog's plan are plain Python, and running a filter goes through the host API.
    imports_gi = {source.name for source in PLUGIN_SOURCES if re.search(r"^\s*(import gi|from gi[. ])", source.read_text(), re.M)}
    assert imports_gi == {"host.py", "dialog.py"}
    uses_gi = {source.name for source in PLUGIN_SOURCES if re.search(r"\bgi\.[A-Z]", source.read_text())}
    assert uses_gi == {"host.py", "procedure.py", "dialog.py", "neurofilters.py"}


def test_every_plugin_module_says_its_concern_in_one_line():
    for source in PLUGIN_SOURCES:
        docstring = ast.get_docstring(ast.parse(source.read_text()))
        assert docstring and "\n" not in docstring and docstring.endswith("."), source.name


def test_registration_imports_neither_numpy_nor_the_dialog(tmp_path):
    """What GIMP imports at start-up (the entry file and the modules registration uses) stays light."""
    installer.install(tmp_path)
    folder = tmp_path / "plug-ins" / "neurofilters"
    code = (
        "import sys, runpy\n"
        f"entry = runpy.run_path({os.fspath(folder / 'neurofilters.py')!r})\n"
        "for name in ('trace', 'manifest', 'procedure', 'client', 'host'):\n"
        "    entry['load_module'](name)\n"
        "entry['load_module']('manifest').load_manifest()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'keras', 'tensorflow', 'jax', 'torch', 'neurofilters', 'gi'))\n"
        "loaded = sorted(m.rsplit('.', 1)[-1] for m in sys.modules if m.startswith('_neurofilters_gimp_') and '.' in m)\n"
        "print(heavy, loaded)\n"
    )
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] ['client', 'host', 'manifest', 'procedure', 'trace']"


def test_the_table_of_kinds_covers_every_parameter_kind_and_drives_the_plugin():
    from neurofilters.gimp_plugin import plan, procedure

    assert set(plugin_manifest.KINDS) == set(plugin_host.PARAM_KINDS)
    arguments = {kind.argument for kind in plugin_manifest.KINDS.values()}
    assert arguments == set(procedure.ADDERS)  # every argument the table names can be declared
    assert set(procedure.READERS) <= arguments
    widgets = {kind.widget for kind in plugin_manifest.KINDS.values()} - {"number"}
    for kind, row in plugin_manifest.KINDS.items():
        param = {"kind": kind, "minimum": 0, "maximum": 10, "default": 0}
        assert plan.widget_kind(param) == ("slider" if row.widget == "number" else row.widget), kind
        assert row.widget in widgets | {"number"}
    assert plan.widget_kind({"kind": "some-future-kind", "default": ""}) == "entry"


def test_plugin_and_worker_share_one_wire_module(tmp_path):
    """The framing exists once: the worker imports wire.py, the installer copies that very file beside the plug-in."""
    from neurofilters.plugin_host.gimp import wire

    assert os.path.samefile(plugin_client.wire.__file__, wire.__file__) and plugin_client.PROTOCOL_VERSION == _worker.PROTOCOL_VERSION == wire.PROTOCOL_VERSION
    assert _worker.send_message is wire.send_message and _worker.recv_message is wire.recv_message
    for source in PLUGIN_SOURCES:
        for name in ("_FRAME", "_MAGIC", "_send", "_recv", "_recv_exact"):
            assert f"{name} =" not in source.read_text() and f"def {name}(" not in source.read_text(), f"{source.name} has its own {name}"
    target = installer.install(tmp_path / "profile", python=sys.executable)
    copied = target.parent / installer.WIRE_NAME
    assert copied.read_bytes() == Path(wire.__file__).read_bytes()
    # The installed plug-in loads the copy beside it, not the source tree's.
    entry = _load_entry(target)
    installed_client, installed_manifest = entry.load_module("client"), entry.load_module("manifest")
    assert Path(installed_client.__file__) == target.parent / "client.py"
    assert Path(installed_client.wire.__file__) == copied
    copied.unlink()
    installed_manifest.wire = installed_client._load_wire()
    with pytest.raises(installed_client.WorkerError, match="wire module .* is missing"):
        installed_manifest.load_manifest(os.fspath(target.parent))


def test_reinstall_removes_the_files_an_earlier_install_wrote_and_nothing_else(tmp_path):
    target = installer.install(tmp_path)
    folder = target.parent
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"] == list(installer.installed_files())
    # An earlier version wrote a module this one no longer has; the user keeps notes in the folder.
    manifest["files"].append("retired.py")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "retired.py").write_text("# from an older neurofilters\n")
    (folder / "__pycache__").mkdir(exist_ok=True)
    (folder / "__pycache__" / "retired.cpython-311.pyc").write_bytes(b"")
    (folder / "notes.txt").write_text("mine")
    (folder / "mine.py").write_text("# mine\n")
    installer.install(tmp_path)
    assert not (folder / "retired.py").exists() and not (folder / "__pycache__" / "retired.cpython-311.pyc").exists()
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "mine.py").exists()
    assert {path.name for path in folder.glob("*.py")} == {*installer.PLUGIN_MODULES, installer.ENTRY_NAME, installer.WIRE_NAME, "mine.py"}
    # A path in a hand-edited record never reaches outside the folder.
    outside = tmp_path / "outside.py"
    outside.write_text("# keep\n")
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "files": [*manifest["files"], "../../outside.py"]}))
    installer.install(tmp_path)
    assert outside.exists()


def test_updating_an_install_from_before_the_split(tmp_path):
    """An older install (one plug-in file, wire.py, a manifest without a file list) is updated in place."""
    folder = tmp_path / "plug-ins" / "neurofilters"
    folder.mkdir(parents=True)
    (folder / "neurofilters.py").write_text("# the old single-file plug-in\n")
    (folder / "wire.py").write_text("# old wire\n")
    (folder / "manifest.json").write_text(json.dumps({"format": 1}))
    (folder / "notes.txt").write_text("mine")
    installer.install(tmp_path)
    assert (folder / "neurofilters.py").read_bytes() == (PLUGIN_DIR / "neurofilters.py").read_bytes()
    assert (folder / "notes.txt").read_text() == "mine"
    with pytest.raises(RuntimeError, match="did not install: notes.txt"):
        installer.uninstall(tmp_path)
    (folder / "notes.txt").unlink()
    assert installer.uninstall(tmp_path) == folder and not folder.exists()


def test_argument_names_and_choice_nicks():
    assert plugin_manifest.argument_name("octave_scale") == "octave-scale"
    assert [plugin_manifest.argument_name(n) for n in ("image", "drawables", "run_mode", "output_mode")] == [
        "image-param",
        "drawables-param",
        "run-mode-param",
        "output-mode-param",
    ]
    assert plugin_manifest.choice_nicks(["rgb", "mean-abs", "Grey Mix", "x_y"]) == ["rgb", "mean-abs", "choice-2", "choice-3"]


def test_plugin_reports_a_broken_manifest_with_the_fix(tmp_path):
    with pytest.raises(plugin_client.WorkerError, match=r"Cannot read the neurofilters manifest .*neurofilters gimp install"):
        plugin_manifest.load_manifest(os.fspath(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(plugin_client.WorkerError, match=r"has format 99; this plug-in reads format 1"):
        plugin_manifest.load_manifest(os.fspath(tmp_path))


def test_plugin_modules_run_on_older_pythons():
    """GIMP 3 ships with whatever Python the platform has; keep the modules free of 3.10+ syntax."""
    for path in PLUGIN_SOURCES:
        source = path.read_text()
        ast.parse(source, feature_version=(3, 8))
        tree = ast.parse(source)
        assert not any(isinstance(node, ast.Match) for node in ast.walk(tree)), path.name


def test_gimp_docs_name_every_parameter_kind_and_the_extra_arguments():
    text = (Path(__file__).resolve().parents[1] / "docs" / "gimp.md").read_text()
    table = text.split("| parameter kind | GIMP argument |", 1)[1].split("\n\n", 1)[0]
    for kind in plugin_host.PARAM_KINDS:
        assert f"`{kind}`" in table, kind
    for name in (plugin_manifest.SEED_ARGUMENT, plugin_manifest.OUTPUT_ARGUMENT, *(nick for nick, _, _ in plugin_manifest.OUTPUT_MODES)):
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
