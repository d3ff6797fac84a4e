"""What a declared command receives besides its values: the :class:`CommandContext` (models, writer, seed, progress bar)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .call import derive_seed as _derive_seed
from .context import ModelCache, ProgressCallback

__all__ = ["CommandContext", "CommandProgress", "OutputGuard"]


class OutputGuard(Protocol):
    """The host's guarded writer (:class:`~neurofilters.plugin_host.WriteGuard`), as a command uses it.

    Every write is atomic, refuses to replace an input, and replaces an existing
    file only when neurofilters wrote it or ``--overwrite`` was given.
    """

    def check(self, target: str | os.PathLike[str], *, what: str = "output") -> Path:
        """Refuse ``target`` before any work when it cannot be written."""

    def protect(self, path: str | os.PathLike[str] | None, role: str = "an input") -> None:
        """Add an input that is never written."""

    def save_image(self, target: str | os.PathLike[str], pixels: Any, *, what: str = "output", **options: Any) -> Path:
        """Write an image atomically."""

    def write_bytes(self, target: str | os.PathLike[str], data: bytes, *, what: str = "output") -> Path:
        """Write bytes atomically."""

    def write_text(self, target: str | os.PathLike[str], text: str, *, what: str = "output") -> Path:
        """Write UTF-8 text atomically."""

    def mkdir(self, folder: str | os.PathLike[str], *, what: str = "output folder") -> Path:
        """Create an output folder."""


class CommandProgress(Protocol):
    """The progress bar of a command's long part, which the host makes (:meth:`CommandContext.progress_bar`)."""

    def __call__(self, fraction: float, message: str = "") -> None:
        """Report how far the work is (0..1) and what it is doing."""

    def status(self, message: str) -> None:
        """Say what is happening before any fraction is known."""

    def close(self) -> None:
        """End the bar (the command's result follows)."""


class _Forwarded:
    """No bar: fractions go to the caller's ``progress`` callback, if any; status lines go nowhere."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self._progress = progress

    def __call__(self, fraction: float, message: str = "") -> None:
        if self._progress is not None:
            self._progress(fraction, message)

    def status(self, message: str) -> None:
        del message

    def close(self) -> None:
        pass


def _silent(line: str) -> None:
    """The default ``announce``: Python callers get the line in the result instead."""


@dataclass
class CommandContext:
    """What the host hands a declared command's ``run(values, context)`` besides its values.

    One context per call. The command line prints what the command announces;
    Python keeps quiet. A command never builds its own model cache or writer.

    Attributes:
        command: The command as typed (``explore patches``), for messages.
        models: The process's model cache: ``context.models.get("lite0")`` loads once per process.
        writer_factory: ``writer_factory(inputs, overwrite=...)`` makes the host's
            guarded writer (:class:`OutputGuard`); use :meth:`writer`.
        overwrite: Whether the user allowed replacing files neurofilters did not
            write (the command's ``overwrite`` value, else ``False``).
        seed: The call's seed (the command's ``seed`` value, else 0).
        progress: ``progress(fraction, message)``: where the bar's fractions go when the host draws no bar
            (Python), or ``None``.
        bar_factory: ``bar_factory(label, status)`` makes the command line's live bar; ``None`` (Python):
            no bar is drawn. Use :meth:`progress_bar`.
        announce: ``announce(line)``: a line the command line prints at once
            (a header before the long part); Python's default drops it.
        quiet: No progress bar or status line (the command's ``quiet`` value, else ``False``).
    """

    command: str
    models: ModelCache
    writer_factory: Callable[..., OutputGuard]
    overwrite: bool = False
    seed: int = 0
    progress: ProgressCallback | None = None
    announce: Callable[[str], None] = _silent
    quiet: bool = False
    bar_factory: Callable[[str, str], CommandProgress] | None = None

    def progress_bar(self, label: str, *, status: str = "") -> CommandProgress:
        """The bar for the command's long part; a command never draws its own.

        On the command line it is the host's live bar (a status line at once, then the fraction, elapsed
        time and ETA), none with ``--quiet``; from Python nothing is drawn and the fractions go to
        :attr:`progress`.

        Args:
            label: Shown before the bar (the command, ``explore patches``).
            status: The first status line (default ``starting LABEL…``).
        """
        if self.bar_factory is None or self.quiet:
            return _Forwarded(self.progress)
        return self.bar_factory(label, status)

    def writer(
        self, *inputs: tuple[str, Any], overwrite: bool | None = None, overwrite_flag: str | None = "--overwrite",
    ) -> OutputGuard:
        """The host's guarded writer for this call, with ``inputs`` protected.

        Args:
            *inputs: ``(role, path)`` of every file or folder the command reads
                (``("the input image", path)``); ``None`` and empty paths are
                skipped, lists expanded. The role names the input in a refusal.
            overwrite: Replace files neurofilters did not write; ``None``: the
                user's choice (:attr:`overwrite`). ``True`` suits the command's
                own caches, which it alone writes.
            overwrite_flag: How the command spells its overwrite flag in
                messages (``None``: it has none).

        Returns:
            An :class:`OutputGuard` whose writes are atomic and never replace an input.
        """
        allowed = self.overwrite if overwrite is None else overwrite
        return self.writer_factory(*inputs, overwrite=allowed, overwrite_flag=overwrite_flag)

    def load_model(self, name: str) -> Any:
        """The model ``name`` from the shared cache (loaded on first use).

        Raises:
            RegistryError: No plugin knows the name.
            ModelUnavailableError: Its weights cannot be loaded.
        """
        return self.models.get(name)

    def derive_seed(self, key: str) -> int:
        """A seed for one independent stream of the call (``"split"``, ``"channel-7"``), derived from :attr:`seed`."""
        return _derive_seed(self.seed, key)

    def rng(self, key: str = "") -> Any:
        """A NumPy generator seeded with :attr:`seed` (``key`` empty) or :meth:`derive_seed` of ``key``."""
        import numpy as np

        return np.random.default_rng(self.seed if not key else self.derive_seed(key))
