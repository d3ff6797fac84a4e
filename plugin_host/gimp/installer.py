"""Install neurofilters into GIMP 3 (and remove it again).

``neurofilters gimp install`` calls :func:`install`: it copies the plug-in's
modules (``gimp_plugin/*.py``) to ``<GIMP profile>/plug-ins/neurofilters/``,
the entry file GIMP runs last as ``neurofilters.py`` (GIMP 3 only loads a
plug-in from a folder of the same name, with the run bit set), the wire
protocol module it shares with the worker (``wire.py``) and writes
``manifest.json`` beside them: every registered filter with its parameter
declarations, the interpreter of the project's environment, the environment
variables that decide which filters its worker sees, and the files the
installer wrote (so a later install removes the ones it no longer writes, and
nothing else). GIMP registers the procedures from that JSON, so its start-up
never imports TensorFlow. Re-run it after installing a third-party filter plugin.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ENTRY_NAME",
    "MANIFEST_NAME",
    "PLUGIN_MODULES",
    "PLUGIN_NAME",
    "WIRE_NAME",
    "default_gimp_dir",
    "install",
    "installed_files",
    "manifest_data",
    "plugin_dir",
    "recorded_environment",
    "uninstall",
]

PLUGIN_NAME = "neurofilters"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
#: The plug-in's folder in the package (``neurofilters.gimp_plugin``): the entry file and its modules.
_PLUGIN_SOURCE = Path(__file__).resolve().parents[2] / "gimp_plugin"
#: The entry file GIMP runs (``plug-ins/<name>/<name>.py``), written last: its new time makes GIMP re-register.
ENTRY_NAME = f"{PLUGIN_NAME}.py"
#: The modules the entry file loads from its folder, copied beside it.
PLUGIN_MODULES = (
    "__init__.py",
    "client.py",
    "dialog.py",
    "host.py",
    "manifest.py",
    "plan.py",
    "procedure.py",
    "run.py",
    "trace.py",
)
#: The wire protocol module both ends share; copied beside the plug-in's modules under this name.
WIRE_NAME = "wire.py"
_WIRE_SOURCE = Path(__file__).resolve().parent / "wire.py"
#: What an install made before the manifest recorded its files (one plug-in file, the wire module, the manifest).
_UNRECORDED_FILES = (ENTRY_NAME, WIRE_NAME, MANIFEST_NAME)
#: Environment variables recorded for the worker (prefixes end with ``_``).
RECORDED_VARIABLES = (
    "NEUROFILTERS_",
    "KERAS_",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_CPP_MIN_LOG_LEVEL",
    "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "PYTHONPATH",
)


def default_gimp_dir() -> Path:
    """GIMP 3's per-user profile directory on this system.

    ``$GIMP3_DIRECTORY`` when set; otherwise ``$XDG_CONFIG_HOME/GIMP/3.0``
    (Linux), ``~/Library/Application Support/GIMP/3.0`` (macOS) or
    ``%APPDATA%\\GIMP\\3.0`` (Windows).
    """
    if os.environ.get("GIMP3_DIRECTORY"):
        return Path(os.environ["GIMP3_DIRECTORY"]).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "GIMP" / "3.0"
    if sys.platform.startswith("win"):
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "GIMP" / "3.0"
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(config) / "GIMP" / "3.0"


def plugin_dir(gimp_dir: Path | None = None) -> Path:
    """Where the plug-in folder goes: ``<gimp_dir>/plug-ins/neurofilters``.

    Args:
        gimp_dir: GIMP's profile directory (the one holding ``plug-ins/``), or
            a ``plug-ins`` folder itself; defaults to :func:`default_gimp_dir`.
    """
    base = Path(gimp_dir).expanduser() if gimp_dir is not None else default_gimp_dir()
    plugins = base if base.name == "plug-ins" else base / "plug-ins"
    return plugins / PLUGIN_NAME


def recorded_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of ``environ`` the worker must see to register the same filters.

    ``NEUROFILTERS_*`` (autoload switch, cache folder, worker idle timeout),
    ``KERAS_*`` (backend), TensorFlow's oneDNN, logging and thread settings,
    ``CUDA_VISIBLE_DEVICES`` and ``PYTHONPATH``.
    """
    environ = os.environ if environ is None else environ
    return {
        key: value
        for key, value in sorted(environ.items())
        if any(key == name or (name.endswith("_") and key.startswith(name)) for name in RECORDED_VARIABLES)
    }


def manifest_data(python: str = sys.executable) -> dict[str, Any]:
    """The manifest for ``python``'s environment (filters, models, interpreter, environment).

    The filters are listed by the interpreter that will run them: in this
    process when ``python`` is the running interpreter, else by running
    ``python -m neurofilters.plugin_host.gimp.worker --describe``.

    Raises:
        RuntimeError: ``python`` cannot list the filters (the message has its error output).
    """
    python = os.path.abspath(python)
    if _same_interpreter(python, sys.executable):
        from .worker import describe_filters

        description = describe_filters()
    else:
        result = subprocess.run(
            [python, "-m", "neurofilters.plugin_host.gimp.worker", "--describe"], capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{python} cannot list the neurofilters filters (exit {result.returncode}). Is neurofilters "
                f"installed in that environment? Its error output:\n{result.stderr.strip()[-2000:]}"
            )
        description = json.loads(result.stdout)
    return {
        "format": MANIFEST_FORMAT,
        "python": python,
        "env": recorded_environment(),
        "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **description,
    }


def _same_interpreter(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second) and Path(first).parent.resolve() == Path(second).parent.resolve()
    except OSError:
        return False


def installed_files() -> tuple[str, ...]:
    """The names :func:`install` writes into the plug-in folder, in the order it writes them."""
    return (MANIFEST_NAME, WIRE_NAME, *PLUGIN_MODULES, ENTRY_NAME)


def install(gimp_dir: Path | None = None, python: str = sys.executable) -> Path:
    """Install (or update) the GIMP 3 plug-in and its manifest.

    Files an earlier install wrote and this one does not (a module since
    merged or renamed) are removed; files the installer never wrote are left
    alone.

    Args:
        gimp_dir: GIMP's profile directory (holding ``plug-ins/``) or a
            ``plug-ins`` folder; defaults to :func:`default_gimp_dir`.
        python: The interpreter of the environment with neurofilters and its
            filters; the plug-in starts its worker with it.

    Returns:
        The installed entry file (``.../plug-ins/neurofilters/neurofilters.py``).

    Raises:
        FileNotFoundError: ``python`` does not exist.
        RuntimeError: ``python`` cannot list the filters.
        OSError: The folder cannot be written.
    """
    if not os.path.isfile(python):
        raise FileNotFoundError(
            f"The Python interpreter to record does not exist. Received: python={python!r}; "
            "pass the interpreter of the environment where neurofilters is installed."
        )
    names = installed_files()
    manifest = {**manifest_data(python), "files": list(names)}
    folder = plugin_dir(gimp_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / ENTRY_NAME
    earlier = _recorded_files(folder)
    old_mtime = target.stat().st_mtime if target.exists() else 0.0
    # The manifest first, the entry file last: it imports the others.
    _write_atomically(folder / MANIFEST_NAME, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    _write_atomically(folder / WIRE_NAME, _WIRE_SOURCE.read_bytes())
    for name in PLUGIN_MODULES:
        _write_atomically(folder / name, (_PLUGIN_SOURCE / name).read_bytes())
    _write_atomically(target, (_PLUGIN_SOURCE / ENTRY_NAME).read_bytes())
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    # GIMP re-registers a plug-in only when its file's modification time changes (whole seconds).
    now = time.time()
    stamp = max(now, old_mtime + 1.0) if old_mtime else now
    os.utime(target, (stamp, stamp))
    for stale in sorted(set(earlier) - set(names)):
        _remove_written(folder, stale)
    return target


def _recorded_files(folder: Path) -> tuple[str, ...]:
    """The files an install wrote into ``folder``: as its manifest records them, else the three of older installs."""
    try:
        recorded = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return _UNRECORDED_FILES if (folder / ENTRY_NAME).exists() else ()
    if not isinstance(recorded, list):
        return _UNRECORDED_FILES
    # Plain names only: a manifest edited by hand cannot point the installer outside its folder.
    return tuple(name for name in recorded if isinstance(name, str) and name == os.path.basename(name) and name not in ("", ".", ".."))


def _remove_written(folder: Path, name: str) -> None:
    """Remove a file an earlier install wrote, and the bytecode Python cached for it."""
    with contextlib.suppress(FileNotFoundError):
        (folder / name).unlink()
    if name.endswith(".py"):
        for cached in (folder / "__pycache__").glob(f"{name[:-3]}.*.pyc"):
            with contextlib.suppress(FileNotFoundError):
                cached.unlink()


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def uninstall(gimp_dir: Path | None = None) -> Path | None:
    """Remove the plug-in folder (and ask a running worker of it to exit).

    Args:
        gimp_dir: As for :func:`install`.

    Returns:
        The removed folder, or ``None`` when nothing was installed there.

    Raises:
        RuntimeError: The folder holds files the installer did not write
            (it is left alone).
    """
    folder = plugin_dir(gimp_dir)
    if not folder.exists():
        return None
    written = {*_recorded_files(folder), *installed_files(), "__pycache__"}
    unexpected = sorted(entry.name for entry in folder.iterdir() if entry.name not in written)
    if unexpected:
        raise RuntimeError(
            f"{folder} holds files neurofilters did not install: {', '.join(unexpected)}. "
            "Remove the folder by hand if it is really neurofilters'."
        )
    _stop_worker(folder)
    shutil.rmtree(folder)
    return folder


def _stop_worker(folder: Path) -> None:
    """Tell the worker of this installation (if one runs) to exit; ignore any failure."""
    try:
        entry = _load_entry(folder / ENTRY_NAME)
        if hasattr(entry, "load_module"):
            manifest_module, client_module = entry.load_module("manifest"), entry.load_module("client")
        else:  # an install from before the plug-in was split into modules: one file holds everything
            manifest_module = client_module = entry
        client_module.WorkerClient(manifest_module.load_manifest(os.fspath(folder))).shutdown()
    except Exception:  # noqa: BLE001 - removing the files matters more than a polite goodbye
        pass


def _load_entry(path: Path) -> Any:
    """Import the installed entry file as a module (it loads the plug-in's modules beside it on request)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_neurofilters_gimp_entry", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
