"""Batch input discovery: files, folders (optionally recursive) and globs.

Every input file gets a *relative path* (its place under the folder or glob
base it was found in) that the output template reuses, so ``--recursive``
keeps the folder tree, and that keys the per-file seed, so the same file
always gets the same seed whatever else is in the batch.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..core.errors import ParameterError
from ..core.params import shorten
from ..imageio.files import IMAGE_SUFFIXES as FLAT_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "InputFile", "Discovery", "discover_inputs", "is_inside"]

#: Suffixes picked up when scanning folders and globs (explicitly named files
#: are always taken, so a misnamed file is reported rather than silently skipped).
IMAGE_SUFFIXES: frozenset[str] = FLAT_SUFFIXES | {".xcf"}
_GLOB_MAGIC = set("*?[")


@dataclass(frozen=True)
class InputFile:
    """One file to process.

    Attributes:
        path: Absolute path of the file.
        root: The folder (or glob base) it was found under; its parent folder
            for a file named explicitly.
        relpath: Path relative to ``root``, with ``/`` separators.
    """

    path: Path
    root: Path
    relpath: PurePosixPath

    @property
    def reldir(self) -> str:
        """The relative folder (``""`` at the top)."""
        parent = str(self.relpath.parent)
        return "" if parent == "." else parent


@dataclass
class Discovery:
    """What :func:`discover_inputs` found.

    Attributes:
        files: Files to process, in a stable (sorted per input) order.
        roots: Input trees: folder inputs, and the bases of glob patterns
            that reach into sub-folders (``**``, or a wildcard in a folder part).
        flat_roots: Bases of glob patterns that match only the files directly
            in them (``*.png``, ``photos/*.jpg``): their sub-folders are not inputs.
        ignored: Files seen while scanning that do not look like images or
            that the include/exclude patterns filtered out.
        unreadable: ``(path, reason)`` of symbolic links met while scanning that
            lead nowhere (a loop, a missing target): skipped and reported. The
            one rule for such links: named as an input they are a usage error,
            met in a folder (with or without ``-r``) or by a pattern they are
            skipped with a warning.
    """

    files: list[InputFile] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)
    flat_roots: list[Path] = field(default_factory=list)
    ignored: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (both resolved, symlinks followed)."""
    real_path = os.path.realpath(path)
    real_folder = os.path.realpath(folder)
    try:
        return os.path.commonpath([real_path, real_folder]) == real_folder
    except ValueError:  # different drives
        return False


def _wanted(rel: PurePosixPath, include: Sequence[str], exclude: Sequence[str]) -> bool:
    text, name = str(rel), rel.name

    def matches(pattern: str) -> bool:
        return fnmatch.fnmatchcase(text, pattern) or fnmatch.fnmatchcase(name, pattern)

    if include and not any(matches(p) for p in include):
        return False
    return not any(matches(p) for p in exclude)


def broken_link(path: Path) -> str:
    """Why ``path`` is a symbolic link that leads nowhere (``a symbolic link loop``), or "" when it is not."""
    if not os.path.islink(path):
        return ""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop"
        return "a symbolic link to a missing file"
    return ""


def _walk(folder: Path, recursive: bool, skip: Sequence[Path], unreadable: list[tuple[str, str]] | None = None) -> Iterable[Path]:
    def usable(path: Path) -> bool:
        reason = broken_link(path)
        if reason and unreadable is not None:
            unreadable.append((str(path), reason))
        return not reason

    if not recursive:
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if entry.name.startswith(".") or not usable(entry):
                continue
            if entry.is_file():
                yield entry
        return
    skip_real = {os.path.realpath(s) for s in skip}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and os.path.realpath(os.path.join(dirpath, d)) not in skip_real
        )
        for name in sorted(filenames):
            if not name.startswith(".") and usable(Path(dirpath, name)):
                yield Path(dirpath, name)


def _reaches_subfolders(pattern: str) -> bool:
    """Whether a glob pattern can match files below its base's own files (``**``, or a wildcard in a folder part)."""
    parts = PurePosixPath(pattern.replace(os.sep, "/")).parts
    magic = [index for index, part in enumerate(parts) if set(part) & _GLOB_MAGIC]
    return bool(magic) and (magic[0] < len(parts) - 1 or "**" in parts)


def _glob_base(pattern: str) -> Path:
    parts = PurePosixPath(pattern.replace(os.sep, "/")).parts
    base: list[str] = []
    for part in parts:
        if set(part) & _GLOB_MAGIC:
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def discover_inputs(
    inputs: Sequence[str],
    *,
    recursive: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skip_dirs: Sequence[Path] = (),
) -> Discovery:
    """Expand files, folders and glob patterns into the files to process.

    Args:
        inputs: What the user typed: files, folders, or glob patterns
            (``photos/**/*.jpg``; ``**`` crosses folders).
        recursive: Descend into sub-folders of folder inputs.
        include: Patterns a file's relative path or name must match (any).
        exclude: Patterns that drop a file (relative path or name).
        skip_dirs: Folders never descended into (the output folder).

    Returns:
        The files (duplicates removed, first occurrence kept) and the scanned roots.

    Raises:
        ParameterError: An input does not exist or a pattern matches nothing.
    """
    found = Discovery()
    seen: set[str] = set()

    def add(path: Path, root: Path, rel: PurePosixPath, scanned: bool) -> None:
        if scanned and path.suffix.lower() not in IMAGE_SUFFIXES and not include:
            found.ignored += 1
            return
        if not _wanted(rel, include, exclude):
            found.ignored += 1
            return
        key = os.path.realpath(path)
        if key in seen:
            return
        seen.add(key)
        found.files.append(InputFile(path.absolute(), root.absolute(), rel))

    for text in inputs:
        path = Path(text).expanduser()
        if path.is_file():
            add(path, path.parent, PurePosixPath(path.name), scanned=False)
        elif path.is_dir():
            found.roots.append(path.absolute())
            for file in _walk(path, recursive, skip_dirs, found.unreadable):
                add(file, path, PurePosixPath(file.relative_to(path).as_posix()), scanned=True)
        elif set(text) & _GLOB_MAGIC:
            base = _glob_base(str(path))
            (found.roots if _reaches_subfolders(str(path)) else found.flat_roots).append(base.absolute())
            matches = sorted(glob.glob(str(path), recursive=True))
            for match in matches:
                if reason := broken_link(Path(match)):
                    found.unreadable.append((match, reason))
            files = [Path(m) for m in matches if Path(m).is_file()]
            files = [f for f in files if not any(is_inside(f, s) for s in skip_dirs)]
            if not files:
                raise ParameterError(
                    f"The pattern matched no file. Received: {shorten(repr(text))}; check the pattern "
                    "(quote it so the shell does not expand it; '**' crosses folders).",
                    param="input",
                    value=text,
                )
            for file in files:
                rel = PurePosixPath(file.relative_to(base).as_posix()) if base != Path(".") else PurePosixPath(file.as_posix())
                if any(part.startswith(".") for part in rel.parts):
                    continue
                add(file, base, rel, scanned=True)
        elif reason := broken_link(path):
            raise ParameterError(
                f"Input {shorten(repr(text))} is {reason}; give an image file, a folder or a glob pattern.",
                param="input",
                value=text,
            )
        else:
            raise ParameterError(
                f"Input not found. Received: {shorten(repr(text))}; give existing files, folders or glob patterns.",
                param="input",
                value=text,
            )
    return found
