"""Install neurofilters into GIMP 3 (and remove it again).

``neurofilters gimp install`` calls :func:`install`: it copies the plug-in
file to ``<GIMP profile>/plug-ins/neurofilters/neurofilters.py`` (GIMP 3 only
loads a plug-in from a folder of the same name, with the run bit set), the
wire protocol module it shares with the worker (``wire.py``) and writes
``manifest.json`` beside it: every registered filter with its parameter
declarations, the interpreter of the project's environment and the
environment variables that decide which filters its worker sees. GIMP
registers the procedures from that JSON, so its start-up never imports
TensorFlow. Re-run it after installing a third-party filter plugin.
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
    "MANIFEST_NAME",
    "PLUGIN_NAME",
    "WIRE_NAME",
    "default_gimp_dir",
    "install",
    "manifest_data",
    "plugin_dir",
    "recorded_environment",
    "uninstall",
]

PLUGIN_NAME = "neurofilters"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
#: The plug-in file GIMP runs, shipped as package data of ``neurofilters.gimp_plugin``.
_PLUGIN_SOURCE = Path(__file__).resolve().parents[2] / "gimp_plugin" / "neurofilters.py"
#: The wire protocol module both ends share; copied beside the plug-in file under this name.
WIRE_NAME = "wire.py"
_WIRE_SOURCE = Path(__file__).resolve().parent / "wire.py"
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


def install(gimp_dir: Path | None = None, python: str = sys.executable) -> Path:
    """Install (or update) the GIMP 3 plug-in and its manifest.

    Args:
        gimp_dir: GIMP's profile directory (holding ``plug-ins/``) or a
            ``plug-ins`` folder; defaults to :func:`default_gimp_dir`.
        python: The interpreter of the environment with neurofilters and its
            filters; the plug-in starts its worker with it.

    Returns:
        The installed plug-in file.

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
    manifest = manifest_data(python)
    folder = plugin_dir(gimp_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{PLUGIN_NAME}.py"
    manifest_path = folder / MANIFEST_NAME
    old_mtime = target.stat().st_mtime if target.exists() else 0.0
    _write_atomically(manifest_path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    _write_atomically(folder / WIRE_NAME, _WIRE_SOURCE.read_bytes())  # before the plug-in, which imports it
    _write_atomically(target, _PLUGIN_SOURCE.read_bytes())
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    # GIMP re-registers a plug-in only when its file's modification time changes (whole seconds).
    now = time.time()
    stamp = max(now, old_mtime + 1.0) if old_mtime else now
    os.utime(target, (stamp, stamp))
    return target


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
    unexpected = sorted(
        entry.name for entry in folder.iterdir() if entry.name not in (f"{PLUGIN_NAME}.py", WIRE_NAME, MANIFEST_NAME, "__pycache__")
    )
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
        plugin = _load_plugin_module(folder / f"{PLUGIN_NAME}.py")
        manifest = plugin.load_manifest(os.fspath(folder))
        plugin.WorkerClient(manifest).shutdown()
    except Exception:  # noqa: BLE001 - removing the files matters more than a polite goodbye
        pass


def _load_plugin_module(path: Path) -> Any:
    """Import the plug-in file as a module (its worker client is plain standard library)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_neurofilters_gimp_plugin", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
