"""The one guarded writer: every file neurofilters writes goes through a :class:`WriteGuard`.

A guard knows every path the user named as an input (the main input, image
parameters such as ``--noise`` or ``--mask``, ``--params`` and ``--pipeline``
files, model files, every file of a data folder) and the outputs the user
named. Before any work, and again at each write, it refuses:

- to replace an input, whatever the route (same real path, or same file by
  inode: symlinks and hard links lead nowhere), even with ``--overwrite``;
- to replace an existing file that neurofilters did not write, unless
  ``--overwrite`` was given: an output named by the user (``-o``,
  ``--report``, ``--figure``), a side file such as fit-noise's ``.png``
  beside the ``.npz``, an extra output, a page of an atlas written into a
  folder that already holds the user's own ``index.html``.

What neurofilters wrote is recorded in a small ledger (:mod:`.ledger`) so a
rerun may replace its own earlier files. Writes are atomic
(:func:`~.files.atomic_write`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from . import ledger

__all__ = ["WriteGuard", "check_name_lengths", "describe_os_error", "guard_for_paths", "param_inputs"]

_MAX_NAME_BYTES = 255
#: Most files of one data folder indexed as inputs (a folder beyond it is refused: name a smaller one).
MAX_FOLDER_FILES = 2_000_000


def _shown(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if len(text) <= 200 else text[:120] + "…" + text[-60:]


def _identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def _real(path: str | os.PathLike[str]) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


class WriteGuard:
    """What may be written in one run, and the writes themselves.

    Args:
        inputs: ``(role, path)`` pairs or bare paths of everything the user
            named as an input; a folder protects every file beneath it. The
            role (``"--noise"``, ``"the input"``) names it in refusals.
        overwrite: Whether existing files neurofilters did not write may be
            replaced (``--overwrite``); inputs never are.
        overwrite_flag: How the command spells the flag in messages, or ``None``
            when it has none (the message then asks for another path).
    """

    def __init__(
        self,
        inputs: Iterable[tuple[str, str | os.PathLike[str]] | str | os.PathLike[str]] = (),
        *,
        overwrite: bool = False,
        overwrite_flag: str | None = "--overwrite",
    ) -> None:
        self._by_real: dict[str, str] = {}
        self._by_identity: dict[tuple[int, int], str] = {}
        self._written: set[tuple[int, int]] = set()
        self.overwrite = bool(overwrite)
        self.overwrite_flag = overwrite_flag
        for item in inputs:
            role, path = item if isinstance(item, tuple) else ("an input", item)
            self.protect(path, role)

    # ------------------------------------------------------------------ what is known

    def protect(self, path: str | os.PathLike[str] | None, role: str = "an input") -> None:
        """Add an input (a file, or a folder: every file beneath it) that is never written."""
        if path is None or os.fspath(path) == "":
            return
        if os.path.isdir(path):
            self._protect_folder(Path(path), role)
            return
        self._add(path, role)

    def _add(self, path: str | os.PathLike[str], role: str) -> None:
        self._by_real.setdefault(_real(path), role)
        identity = _identity(path)
        if identity is not None:
            self._by_identity.setdefault(identity, role)

    def _protect_folder(self, folder: Path, role: str) -> None:
        count = 0
        self._add(folder, role)
        for root, _dirs, files in os.walk(folder, followlinks=False):
            for name in files:
                count += 1
                if count > MAX_FOLDER_FILES:
                    raise UsageError(
                        f"The folder {_shown(folder)} ({role}) holds more than {MAX_FOLDER_FILES:,} files. "
                        "Give a smaller folder."
                    )
                self._add(os.path.join(root, name), f"a file of {role} ({_shown(folder)})")

    def input_role(self, target: str | os.PathLike[str]) -> str | None:
        """The role of the input ``target`` is, or leads to, or ``None`` when it is no input."""
        role = self._by_real.get(_real(target))
        if role is not None:
            return role
        identity = _identity(target)
        return None if identity is None else self._by_identity.get(identity)

    def owns(self, target: str | os.PathLike[str]) -> bool:
        """Whether ``target`` was written by this guard, or by neurofilters earlier (the ledger) and is unchanged."""
        identity = _identity(target)
        return identity is not None and (identity in self._written or ledger.wrote(target))

    # ------------------------------------------------------------------ checks

    def check(self, target: str | os.PathLike[str], *, what: str = "output") -> Path:
        """Refuse to write ``target`` when it is an input or a file neurofilters may not replace.

        Args:
            target: The file about to be written.
            what: What it is, for the message (``"output"``, ``"report"``, ``"figure"``).

        Returns:
            ``target`` as a path.

        Raises:
            UsageError: ``target`` is (or leads to) an input, or exists, was
                not written by neurofilters, and ``--overwrite`` was not given.
        """
        path = Path(target)
        check_name_lengths(path, what)
        for parent in path.parents:  # a file where a folder is expected: say so now, not after the work
            if os.path.lexists(parent):
                if not os.path.isdir(parent):
                    raise UsageError(
                        f"Cannot write the {what} {_shown(path)}: {_shown(parent)} is a file, not a folder. Fix the path."
                    )
                break
        role = self.input_role(path)
        if role is not None:
            raise UsageError(
                f"Refusing to write the {what} {_shown(path)}: it is {role}, and inputs are never overwritten. "
                "Choose another output path."
            )
        if os.path.lexists(path) and not os.path.isdir(path) and not self.overwrite:
            if self.owns(path):
                return path
            fix = (
                f"pass {self.overwrite_flag} to replace it, or choose another output path"
                if self.overwrite_flag
                else "move it away or choose another output path"
            )
            raise UsageError(
                f"Refusing to replace {_shown(path)} (the {what}): it already exists and was not written by "
                f"neurofilters; {fix}."
            )
        return path

    def check_all(self, targets: Iterable[tuple[str, str | os.PathLike[str]] | str | os.PathLike[str]]) -> None:
        """:meth:`check` every ``target`` (bare, or ``(what, path)``), before any work starts."""
        for item in targets:
            what, path = item if isinstance(item, tuple) else ("output", item)
            self.check(path, what=what)

    # ------------------------------------------------------------------ writes

    @contextlib.contextmanager
    def write(self, target: str | os.PathLike[str], *, what: str = "output") -> Iterator[Path]:
        """Check ``target``, then yield a temporary path that replaces it atomically when the block ends.

        Raises:
            UsageError: See :meth:`check`.
            ImageIOError: The temporary file cannot be created or renamed.
        """
        from .files import atomic_write

        path = self.check(target, what=what)
        with atomic_write(path) as temporary:
            yield temporary
        self.record(path)

    def record(self, path: str | os.PathLike[str]) -> None:
        """Remember that ``path`` was written by neurofilters (this run and the ledger)."""
        identity = _identity(path)
        if identity is not None:
            self._written.add(identity)
            ledger.record(path)

    def write_bytes(self, target: str | os.PathLike[str], data: bytes, *, what: str = "output") -> Path:
        """Write ``data`` to ``target`` through the guard."""
        with self.write(target, what=what) as temporary:
            temporary.write_bytes(data)
        return Path(target)

    def write_text(self, target: str | os.PathLike[str], text: str, *, what: str = "output") -> Path:
        """Write UTF-8 ``text`` to ``target`` through the guard."""
        return self.write_bytes(target, text.encode("utf-8"), what=what)

    def save_image(self, target: str | os.PathLike[str], pixels: Any, *, what: str = "output", **options: Any) -> Path:
        """:func:`~.files.save_image` through the guard (same options: ``like``, ``bit_depth``, ``quality``)."""
        from .files import save_image

        path = self.check(target, what=what)
        written = save_image(path, pixels, **options)
        self.record(written)
        return written

    def mkdir(self, folder: str | os.PathLike[str], *, what: str = "output folder") -> Path:
        """Create ``folder`` (and its parents) for outputs; an OS error becomes one line naming it.

        Raises:
            UsageError: It exists as a file, is an input, or cannot be created.
        """
        path = Path(folder)
        role = self.input_role(path)
        if role is not None and not os.path.isdir(path):
            raise UsageError(f"Refusing to use {_shown(path)} as the {what}: it is {role}. Choose another folder.")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UsageError(f"The {what} {_shown(path)} exists and is not a folder. Choose another path.") from None
        except OSError as error:
            raise UsageError(describe_os_error(error, path, what)) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"The {what} {_shown(path)} is not writable. Choose a folder you can write to, or fix its permissions.")
        return path


def check_name_lengths(path: str | os.PathLike[str], what: str = "output") -> None:
    """Refuse a path with a name longer than file systems allow (255 bytes), naming it, before anything touches it.

    Raises:
        UsageError: A part of ``path`` is over 255 bytes.
    """
    for part in Path(path).parts:
        length = len(os.fsencode(part))
        if length > _MAX_NAME_BYTES:
            raise UsageError(
                f"Cannot write the {what} {_shown(path)}: a name in it is {length} bytes long, and file systems allow "
                f"{_MAX_NAME_BYTES}. Choose a shorter name."
            )


def describe_os_error(error: OSError, path: str | os.PathLike[str], what: str = "output") -> str:
    """One line for an OS error while writing ``path``: what failed and what to do."""
    import errno

    advice = {
        errno.EACCES: "check its permissions or choose a folder you can write to",
        errno.EPERM: "check its permissions or choose a folder you can write to",
        errno.EROFS: "the file system is read-only; choose a folder on a writable disk",
        errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
        errno.ENAMETOOLONG: "a name is longer than the file system allows (255 bytes per name); choose a shorter one",
        errno.ENOSPC: "the disk is full; free some space or choose another disk",
        errno.EEXIST: "something else already has that name; choose another path",
    }.get(error.errno or 0, "check the path and its permissions")
    reason = error.strerror or type(error).__name__
    return f"Cannot write the {what} {_shown(path)}: {reason}; {advice}."


def guard_for_paths(*inputs: tuple[str, Any], overwrite: bool = False, overwrite_flag: str | None = "--overwrite") -> WriteGuard:
    """A :class:`WriteGuard` for ``(role, path)`` inputs; ``None`` and empty paths are skipped, lists expanded."""
    pairs: list[tuple[str, Any]] = []
    for role, value in inputs:
        for path in value if isinstance(value, (list, tuple)) else [value]:
            if path is not None and os.fspath(path) != "":
                pairs.append((role, path))
    return WriteGuard(pairs, overwrite=overwrite, overwrite_flag=overwrite_flag)


def param_inputs(params: Iterable[Any], values: Any) -> list[tuple[str, str]]:
    """``(flag, path)`` for every parameter value that names an existing file or folder (image parameters, model files).

    Args:
        params: The declarations (``Param``), for the flags.
        values: Validated values by name (paths still as given).
    """
    found: list[tuple[str, str]] = []
    for param in params:
        value = values.get(param.name) if hasattr(values, "get") else None
        if isinstance(value, (str, os.PathLike)) and os.fspath(value) and len(os.fspath(value)) < 4096:
            with contextlib.suppress(OSError, ValueError):
                if os.path.exists(value):
                    found.append((f"the file given as {param.flag}", os.fspath(value)))
    return found
