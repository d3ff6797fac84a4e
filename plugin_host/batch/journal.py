"""Resume support: parameter hashes, per-file seeds and the journal in OUTDIR.

An output counts as done when it exists *and* the journal holds a line for it
with the same parameter hash, output size, input path and input size/mtime. Lines are
appended after the output's atomic rename and fsynced, so a run killed at any
moment loses at most the line of the file being finished (which is then
simply redone); a torn last line is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.call import derive_seed as file_seed

__all__ = ["JOURNAL_NAME", "LOCK_NAME", "Journal", "JournalEntry", "params_hash", "file_seed", "canonical_json", "lock_outdir"]

JOURNAL_NAME = ".neurofilters-batch.jsonl"
LOCK_NAME = ".neurofilters-batch.lock"


def lock_outdir(outdir: Path) -> Any:
    """Take OUTDIR's batch lock (released when the process ends, even by ``kill -9``).

    Returns:
        The open lock file; keep it open for the whole run.

    Raises:
        ParameterError: Another batch is writing into the same OUTDIR.
    """
    import fcntl

    from ..core.errors import ParameterError

    outdir.mkdir(parents=True, exist_ok=True)
    handle = open(outdir / LOCK_NAME, "a+b")  # noqa: SIM115 - held until the process ends
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
    return handle


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
