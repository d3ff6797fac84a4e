"""Shared fixtures.

Every test runs with third-party entry-point autoloading disabled (so a
plugin installed in the developer's environment cannot change results) and
with the weight cache in a session-wide temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import neurofilters.plugin_host as plugin_host


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A per-session weight cache, so tests never touch the user's cache."""
    return tmp_path_factory.mktemp("neurofilters-cache")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    monkeypatch.setenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("NEUROFILTERS_CACHE_DIR", os.fspath(cache_dir))
    plugin_host.reset_registry()


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    """scikit-image's cat photo as float32 H x W x 3 in [0, 1]."""
    from skimage import data

    return data.chelsea().astype(np.float32) / 255.0


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    """scikit-image's coffee-cup photo as float32 H x W x 3 in [0, 1]."""
    from skimage import data

    return data.coffee().astype(np.float32) / 255.0
