"""Resume support: parameter hashes, per-file seeds and the journal in OUTDIR.

An output counts as done when it exists *and* the journal holds a line for it
with the same parameter hash, output size, input path and input size/mtime. Lines are
appended after the output's atomic rename and fsynced, so a run killed at any
moment loses at most the line of the file being finished (which is then
simply redone); a torn last line is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.call import derive_seed as file_seed

__all__ = ["JOURNAL_NAME", "LOCK_NAME", "Journal", "OutdirLock", "JournalEntry", "params_hash", "file_seed", "canonical_json", "lock_outdir"]

JOURNAL_NAME = ".neurofilters-batch.jsonl"
LOCK_NAME = ".neurofilters-batch.lock"


class OutdirLock:
    """OUTDIR's batch lock: an ``flock`` on ``.neurofilters-batch.lock``, whose file is removed on :meth:`close`.

    The kernel releases the lock when the process ends, even by ``kill -9`` (then
    the file stays, empty, until the next run ends). A run that took the lock on a
    file another run has just removed notices it (the path no longer leads to its
    file) and takes the lock again on the new file.
    """

    def __init__(self, handle: Any, path: Path) -> None:
        self._handle = handle
        self.path = path

    def close(self) -> None:
        """Remove the lock file (while still holding the lock), then release it."""
        if self._handle is None:
            return
        try:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.fstat(self._handle.fileno()), os.stat(self.path)):
                    os.unlink(self.path)
        finally:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> OutdirLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def lock_outdir(outdir: Path) -> OutdirLock:
    """Take OUTDIR's batch lock, creating OUTDIR if needed.

    Returns:
        The lock; :meth:`OutdirLock.close` it when the run ends (the file is removed then).

    Raises:
        ParameterError: Another batch is writing into the same OUTDIR.
        UsageError: OUTDIR cannot be created or written (read-only, a file in the way, a name too long).
    """
    import fcntl

    from ..core.errors import ParameterError, UsageError
    from ..imageio.guard import describe_os_error

    path = outdir / LOCK_NAME
    for _attempt in range(100):
        try:
            outdir.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+b")  # noqa: SIM115 - held until the run ends
        except OSError as error:
            raise UsageError(describe_os_error(error, outdir, "output folder (-o)")) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise ParameterError(
                f"Another batch is writing into this OUTDIR. Received: -o {outdir}; wait for it to finish "
                "or choose another OUTDIR.",
                param="output",
                value=str(outdir),
            ) from None
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except OSError:
            same = False
        if same:
            return OutdirLock(handle, path)
        handle.close()  # the run that held it removed the file meanwhile: lock the new one
    raise ParameterError(f"Cannot take the batch lock of {outdir}; try again.", param="output", value=str(outdir))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return repr(value)  # exact, and 1 vs 1.0 hash differently only when types differ
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Cannot hash a value of type {type(value).__name__}: {value!r}")


def canonical_json(value: Any) -> str:
    """A stable JSON text of ``value`` (sorted keys, floats as ``repr``)."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def params_hash(value: Any) -> str:
    """A short SHA-256 hex digest of everything that determines an output."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class JournalEntry:
    """One finished output as recorded in the journal."""

    output: str
    hash: str
    size: int
    input: str
    input_size: int
    input_mtime_ns: int
    state: str = "done"


class Journal:
    """The append-only record of finished outputs in ``OUTDIR/.neurofilters-batch.jsonl``."""

    def __init__(self, outdir: Path) -> None:
        """Open (lazily) the journal of ``outdir`` and read what it holds."""
        self.outdir = Path(outdir)
        self.path = self.outdir / JOURNAL_NAME
        self._lock = threading.Lock()
        self._file: Any = None
        self.entries: dict[str, JournalEntry] = self._read()

    def _read(self) -> dict[str, JournalEntry]:
        entries: dict[str, JournalEntry] = {}
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return entries
        for line in data.split(b"\n"):
            try:
                record = json.loads(line)
                entry = JournalEntry(**{k: record[k] for k in JournalEntry.__dataclass_fields__ if k in record or k != "state"})
            except (ValueError, TypeError, KeyError, UnicodeDecodeError):
                continue  # a torn or foreign line
            entries[entry.output] = entry
        return entries

    def key(self, output: Path) -> str:
        """The journal's key of an output: its path relative to OUTDIR."""
        return Path(output).relative_to(self.outdir).as_posix()

    def is_done(self, output: Path, hash_: str, source: Path) -> bool:
        """Whether ``output`` exists and was made from ``source`` with parameters ``hash_``."""
        entry = self.entries.get(self.key(output))
        if entry is None or entry.hash != hash_ or entry.state != "done" or entry.input != os.fspath(source):
            return False
        try:
            out_stat = os.stat(output)
            in_stat = os.stat(source)
        except OSError:
            return False
        return (
            out_stat.st_size == entry.size
            and in_stat.st_size == entry.input_size
            and in_stat.st_mtime_ns == entry.input_mtime_ns
        )

    def owns(self, output: Path) -> bool:
        """Whether a batch run wrote (or started writing) ``output``, so it may be replaced."""
        return self.key(output) in self.entries

    def start(self, output: Path, hash_: str, source: Path) -> None:
        """Note that ``output`` is about to be written (so a rerun may replace it)."""
        self._append(JournalEntry(self.key(output), hash_, -1, os.fspath(source), -1, -1, "started"), sync=False)

    def record(self, output: Path, hash_: str, source: Path) -> None:
        """Append a line for a finished ``output`` and fsync it."""
        in_stat = os.stat(source)
        entry = JournalEntry(
            output=self.key(output),
            hash=hash_,
            size=os.stat(output).st_size,
            input=os.fspath(source),
            input_size=in_stat.st_size,
            input_mtime_ns=in_stat.st_mtime_ns,
        )
        self._append(entry, sync=True)

    def _append(self, entry: JournalEntry, *, sync: bool) -> None:
        line = (json.dumps(entry.__dict__, sort_keys=True) + "\n").encode()
        with self._lock:
            if self._file is None:
                self.outdir.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for the run
                if self._file.tell() > 0:
                    with open(self.path, "rb") as existing:
                        existing.seek(-1, os.SEEK_END)
                        if existing.read(1) != b"\n":
                            self._file.write(b"\n")  # end a torn line before appending
            self._file.write(line)
            self._file.flush()
            descriptor = self._file.fileno()
            self.entries[entry.output] = entry
        if sync:
            os.fsync(descriptor)  # outside the lock: other threads keep appending meanwhile

    def close(self) -> None:
        """Close the journal file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
