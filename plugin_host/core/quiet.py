"""Silencing what native libraries print on start-up.

TensorFlow 2.21 writes oneDNN notices and "no CUDA driver" lines straight to
file descriptor 2 when it is imported and its devices start, whatever
``TF_CPP_MIN_LOG_LEVEL`` says. A command-line tool should not show them, so
model loading (where that happens) runs with descriptor 2 pointed at
``/dev/null``; Python exceptions still propagate normally.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["native_stderr_silenced", "QUIET_ENV"]

#: Set to "0" to keep native start-up messages (``--debug`` does this).
QUIET_ENV = "NEUROFILTERS_QUIET_NATIVE"


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool | None = None) -> Iterator[None]:
    """Point file descriptor 2 at ``/dev/null`` for the duration of the block.

    Args:
        enabled: Whether to silence; defaults to the ``NEUROFILTERS_QUIET_NATIVE``
            environment variable (silence unless it is ``"0"``).
    """
    if enabled is None:
        enabled = os.environ.get(QUIET_ENV, "1") != "0"
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
