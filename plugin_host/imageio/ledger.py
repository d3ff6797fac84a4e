"""The ledger of files neurofilters wrote, so a rerun may replace its own files and never a user's.

One line per file written: device, inode, size, modification time (ns) and the
real path, appended to ``written-files.tsv`` in the state folder
(``$NEUROFILTERS_STATE_DIR``, else ``$NEUROFILTERS_CACHE_DIR``, else
``$XDG_STATE_HOME/neurofilters``, else ``~/.local/state/neurofilters``). A
file counts as neurofilters' own while its device, inode, size and time still
match a line: a file the user edited or replaced since is theirs again. When
the ledger grows past :data:`MAX_BYTES` it is compacted to the lines that
still match. A ledger that cannot be read or written is ignored (then only
``--overwrite`` replaces an existing file).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

__all__ = ["ledger_path", "record", "wrote"]

STATE_DIR_ENV = "NEUROFILTERS_STATE_DIR"
#: Compaction threshold (about 30,000 lines).
MAX_BYTES = 4 << 20
_NAME = "written-files.tsv"
_LOCK = threading.Lock()
_cache: dict[str, dict[tuple[int, int], tuple[int, int]]] = {}


def ledger_path() -> Path:
    """Where the ledger lives (see the module docstring)."""
    for variable in (STATE_DIR_ENV, "NEUROFILTERS_CACHE_DIR"):
        value = os.environ.get(variable)
        if value:
            return Path(value).expanduser() / _NAME
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "neurofilters" / _NAME


def _key(status: os.stat_result) -> tuple[tuple[int, int], tuple[int, int]]:
    return (status.st_dev, status.st_ino), (status.st_size, status.st_mtime_ns)


def _parse(line: str) -> tuple[tuple[int, int], tuple[int, int], str] | None:
    parts = line.rstrip("\n").split("\t", 4)
    if len(parts) != 5:
        return None
    try:
        dev, ino, size, mtime = (int(part) for part in parts[:4])
    except ValueError:
        return None
    return (dev, ino), (size, mtime), parts[4]


def _load(path: Path) -> dict[tuple[int, int], tuple[int, int]]:
    entries: dict[tuple[int, int], tuple[int, int]] = {}
    try:
        size = path.stat().st_size
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return entries
    kept: list[str] = []
    for line in text.splitlines():
        parsed = _parse(line)
        if parsed is None:
            continue
        identity, stamp, real = parsed
        if size > MAX_BYTES:  # compact: keep only the files still as written
            try:
                status = os.stat(real)
            except OSError:
                continue
            if _key(status) != (identity, stamp):
                continue
            kept.append(line)
        entries[identity] = stamp
    if size > MAX_BYTES:
        with contextlib.suppress(OSError):
            temporary = path.with_name(f".{_NAME}.{os.getpid()}.tmp")
            temporary.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8", errors="surrogateescape")
            os.replace(temporary, path)
    return entries


def _entries() -> dict[tuple[int, int], tuple[int, int]]:
    path = ledger_path()
    key = os.fspath(path)
    with _LOCK:
        if key not in _cache:
            _cache[key] = _load(path)
        return _cache[key]


def wrote(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` is a file neurofilters wrote and nobody changed since."""
    try:
        status = os.stat(target)
    except (OSError, ValueError):
        return False
    identity, stamp = _key(status)
    if _entries().get(identity) == stamp:
        return True
    # another process may have written it since this one read the ledger
    path = ledger_path()
    with _LOCK:
        _cache[os.fspath(path)] = _load(path)
        return _cache[os.fspath(path)].get(identity) == stamp


def record(target: str | os.PathLike[str]) -> None:
    """Add ``target`` (just written) to the ledger; failures to record are ignored."""
    try:
        status = os.stat(target)
        real = os.path.realpath(target)
    except (OSError, ValueError):
        return
    identity, stamp = _key(status)
    line = f"{identity[0]}\t{identity[1]}\t{stamp[0]}\t{stamp[1]}\t{real}\n"
    path = ledger_path()
    with _LOCK:
        if os.fspath(path) in _cache:
            _cache[os.fspath(path)][identity] = stamp
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(descriptor, line.encode("utf-8", "surrogateescape"))
            finally:
                os.close(descriptor)
