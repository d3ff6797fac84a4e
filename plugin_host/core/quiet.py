"""Keeping the frameworks' own log lines (TensorFlow's C++ logging, absl, Keras, XLA) off a user's terminal.

TensorFlow 2.21 writes oneDNN notices, "Could not find cuda drivers" and
absl's "All log messages before absl::InitializeLog()" straight to file
descriptor 2 when it is imported and its devices start, whatever
``TF_CPP_MIN_LOG_LEVEL`` says; its Python side logs retracing warnings. They
are for developers: ``--debug`` (``NEUROFILTERS_QUIET_NATIVE=0``) shows them.

- :func:`command_stderr_quiet` is what the command line runs every command
  in: descriptor 2 goes to ``/dev/null`` (native code, worker processes),
  while Python's ``sys.stderr`` (our progress bar, summaries, errors) keeps
  writing to the terminal through a copy of the original descriptor.
- :func:`native_stderr_silenced` silences descriptor 2 around one step
  (importing a filter, loading a model): what the Python API and the GIMP
  worker use, where the process is not ours to redirect for good.
- :func:`quiet_frameworks` sets the log levels before a framework is imported.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator

__all__ = ["command_stderr_quiet", "native_stderr_silenced", "quiet_frameworks", "quiet_enabled", "QUIET_ENV", "FRAMEWORK_LOGGERS"]

#: Set to "0" to keep native start-up messages (``--debug`` does this).
QUIET_ENV = "NEUROFILTERS_QUIET_NATIVE"

#: The frameworks' Python loggers, kept at ERROR unless ``--debug``.
FRAMEWORK_LOGGERS = ("tensorflow", "absl", "keras", "jax", "h5py", "matplotlib")


def quiet_enabled() -> bool:
    """Whether the frameworks' messages are silenced (unless ``NEUROFILTERS_QUIET_NATIVE=0``)."""
    return os.environ.get(QUIET_ENV, "1") != "0"


def quiet_frameworks() -> None:
    """Lower the frameworks' chatter before they are imported (a no-op with ``NEUROFILTERS_QUIET_NATIVE=0``).

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` (errors only) unless the user set it, and
    the frameworks' Python loggers to ERROR (TensorFlow's retracing warnings).
    """
    if not quiet_enabled():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in FRAMEWORK_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool | None = None) -> Iterator[None]:
    """Point file descriptor 2 at ``/dev/null`` for the duration of the block.

    Args:
        enabled: Whether to silence; defaults to :func:`quiet_enabled`.
    """
    if enabled is None:
        enabled = quiet_enabled()
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _fileno(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined, no-any-return]
    except (AttributeError, OSError, ValueError):  # a StringIO, pytest's capture
        return None


@contextlib.contextmanager
def command_stderr_quiet(enabled: bool | None = None) -> Iterator[None]:
    """Run a command with descriptor 2 silenced and ``sys.stderr`` still on the terminal.

    Args:
        enabled: Whether to silence; defaults to :func:`quiet_enabled`.
    """
    if enabled is None:
        enabled = quiet_enabled()
    if not enabled:
        yield
        return
    quiet_frameworks()
    original = sys.stderr
    if _fileno(original) != 2:  # Python's stderr is elsewhere already: only the native side needs silencing
        with native_stderr_silenced(True):
            yield
        return
    original.flush()
    kept = io.TextIOWrapper(
        io.FileIO(os.dup(2), "w"), encoding=original.encoding, errors=original.errors, line_buffering=True
    )
    try:
        sys.stderr = kept
        with native_stderr_silenced(True):
            yield
    finally:
        sys.stderr = original
        kept.close()
