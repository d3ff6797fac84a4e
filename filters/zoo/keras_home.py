"""Where Keras keeps what it downloads: ``$KERAS_HOME``, else ``~/.keras`` (no Keras import)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["keras_home", "keras_models_dir"]


def keras_home() -> Path:
    """Keras' folder for downloads and ``keras.json``, by Keras' documented convention.

    ``$KERAS_HOME`` when set (and not empty); otherwise ``~/.keras``, or
    ``/tmp/.keras`` where the home folder cannot be written (as Keras itself
    decides). Keras reads ``KERAS_HOME`` once, when it is first imported, so set
    it before the process starts for both to agree.

    Returns:
        The folder (it may not exist yet).
    """
    configured = os.environ.get("KERAS_HOME")
    if configured:
        return Path(configured).expanduser()
    home = os.path.expanduser("~")
    return Path(home if os.access(home, os.W_OK) else "/tmp") / ".keras"


def keras_models_dir() -> Path:
    """The folder Keras downloads application weights to (``keras.utils.get_file``'s ``models`` sub-folder)."""
    return keras_home() / "models"
