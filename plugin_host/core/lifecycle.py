"""The command-line process's life: SIGTERM handled like Ctrl+C, and a temporary folder the host cleans.

``SIGTERM`` (what ``kill``, ``timeout`` and service managers send) raises
:class:`Terminated`, a ``KeyboardInterrupt``, in the main thread: every
``finally`` and every cleanup that runs for Ctrl+C runs for it too (atomic
writes remove their temporary file, a batch keeps what finished and exits 130,
"interrupted; rerun to resume"). Both exit with 130.

Temporary files of libraries (TensorFlow's autograph writes
``__autograph_generated_file*.py`` there) go to a private folder,
``neurofilters-PID-XXXX`` in the system's temporary folder, removed when the
process ends; folders left by a process killed with ``kill -9`` are removed by the
next run (their process no longer exists).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["Terminated", "owned_temporary_folder", "start_process"]

_PREFIX = "neurofilters-"
_started = False
#: The system's temporary folder, before :func:`start_process` pointed :mod:`tempfile` at the private one.
_system_temp: str | None = None


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; handled like Ctrl+C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(root: Path) -> None:
    """Remove ``neurofilters-PID-*`` folders of processes that no longer exist."""
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            name = entry.name
            if not name.startswith(_PREFIX):
                continue
            pid_text = name[len(_PREFIX) :].split("-", 1)[0]
            if pid_text.isdigit() and int(pid_text) != os.getpid() and not _alive(int(pid_text)) and entry.is_dir() and not entry.is_symlink():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == os.getuid():
                        shutil.rmtree(entry, ignore_errors=True)


def start_process() -> Path | None:
    """Install the SIGTERM handler and the private temporary folder (once per process).

    Returns:
        The private temporary folder, or ``None`` when it could not be made (the system's is used then).
    """
    global _started
    if _started:
        return Path(tempfile.tempdir) if tempfile.tempdir else None
    _started = True
    with contextlib.suppress(ValueError, OSError):  # not the main thread, or no signals here
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
    global _system_temp
    root = Path(tempfile.gettempdir())
    _system_temp = os.fspath(root)
    _remove_stale(root)
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=root))
    except OSError:
        return None
    tempfile.tempdir = os.fspath(folder)  # this process only: TMPDIR is left alone (Ray keeps its sockets under it)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def owned_temporary_folder(tag: str, root: str | os.PathLike[str] | None = None) -> Path:
    """A new folder ``neurofilters-PID-TAG`` in the system's temporary folder, for a library's own files.

    The caller removes it when done; one left by a process killed with ``kill -9`` is removed by the next
    run, as the private folder is (its name carries this process's id). It sits beside the private folder,
    not inside it, and its name is short, so that the paths under it stay short (Ray's unix sockets must
    fit in 107 bytes).

    Args:
        tag: A short word saying whose files these are (``"ray"``).
        root: Where to make it instead of the system's temporary folder.

    Raises:
        OSError: The folder cannot be made.
    """
    parent = Path(root if root is not None else (_system_temp or tempfile.gettempdir()))
    folder = parent / f"{_PREFIX}{os.getpid()}-{tag}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:  # a second one in this process: a random suffix
        folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-{tag}-", dir=parent))
    return folder
