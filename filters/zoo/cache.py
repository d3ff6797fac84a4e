"""On-disk cache of converted Keras weights.

The embedded models' weights come in foreign formats (a PyTorch state dict, a
HED ``.weights.h5`` with another layout). After the first conversion the Keras
weights are saved as ``<key>-<path tag>.npz`` in the cache folder (one array per
``"<layer name>/<index>"``, read back with ``allow_pickle=False``), next to a
sidecar ``<key>-<path tag>.json`` holding the file's sha256 and the identity (path, size,
modification time) of the source file it was converted from.

A cache entry is used only if the sidecar matches the source and the file's
hash, and the arrays fit the model; otherwise the weights are converted
again and the entry rewritten. The path tag (a hash of the source's resolved
path) gives every installation its own entry: two virtual environments on one
machine would otherwise rebuild one shared entry each time the other ran. Files are written to a temporary name and moved
into place with :func:`os.replace`, so readers never see half a file.

Measured (2-core EPYC, warm disk cache): converting Lite0's checkpoint takes
0.06 s and VGG16-HED's 0.05 s, loading either from this cache about the
same; building the Keras graph (0.3 s) dominates. Keras' own ``.weights.h5``
format was slower to load (0.24 s for Lite0), hence ``.npz``. The cache does
not make loading faster today; it exists so that slower conversions stay cheap.

Folder: ``$NEUROFILTERS_CACHE_DIR``, else ``$XDG_CACHE_HOME/neurofilters``,
else ``~/.cache/neurofilters``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import keras

__all__ = [
    "CACHE_DIR_ENV",
    "CacheStatus",
    "cache_dir",
    "cache_paths",
    "file_sha256",
    "load_cached_weights",
    "source_identity",
]

CACHE_DIR_ENV = "NEUROFILTERS_CACHE_DIR"
SIDECAR_FORMAT = 1
#: What :func:`load_cached_weights` did: used the cache, converted (no entry
#: yet), or converted again because the entry was stale or corrupt.
CacheStatus = Literal["cached", "converted", "rebuilt"]
CACHED, CONVERTED, REBUILT = "cached", "converted", "rebuilt"

_log = logging.getLogger("neurofilters.zoo.cache")


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "neurofilters"


def cache_paths(key: str, source: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """The weights file and the sidecar of cache entry ``key`` for weights converted from ``source``.

    Args:
        key: The entry's name (with the conversion's version).
        source: The source file; its resolved path picks the entry (one per
            installation). ``None``: the entry named ``key`` alone.
    """
    folder = cache_dir()
    if source is not None:
        tag = hashlib.sha256(os.fsencode(Path(source).resolve())).hexdigest()[:12]
        key = f"{key}-{tag}"
    return folder / f"{key}.npz", folder / f"{key}.json"


def source_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What identifies a source file cheaply: resolved path, size, modification time."""
    resolved = Path(path).resolve()
    status = resolved.stat()
    return {"path": os.fspath(resolved), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_cached_weights(
    model: keras.Model,
    key: str,
    source: str | os.PathLike[str],
    convert: Callable[[keras.Model], None],
) -> CacheStatus:
    """Give ``model`` its weights from the cache, or by converting ``source`` (then cache them).

    Args:
        model: The freshly built network.
        key: Cache entry name; include a version that changes with the conversion
            (``"lite0-v1"``).
        source: The file the weights are converted from.
        convert: ``convert(model)`` reads ``source`` and sets every weight of ``model``.

    Returns:
        ``"cached"``, ``"converted"`` (no entry yet) or ``"rebuilt"`` (the entry was
        stale, corrupt or unreadable, and was replaced).
    """
    weights_path, sidecar_path = cache_paths(key, source)
    identity = source_identity(source)
    problem = _check_entry(weights_path, sidecar_path, key, identity)
    if problem is None:
        try:
            _load_arrays(model, weights_path)
            return CACHED
        except Exception as error:  # any failure means: do not trust the entry
            problem = f"it could not be loaded ({type(error).__name__}: {error})"
    had_entry = weights_path.exists() or sidecar_path.exists()
    if had_entry:
        _log.warning("Rebuilding the weight cache %s: %s", weights_path, problem)
    convert(model)
    _write_entry(model, weights_path, sidecar_path, key, identity)
    return REBUILT if had_entry else CONVERTED


def _check_entry(weights_path: Path, sidecar_path: Path, key: str, identity: dict[str, Any]) -> str | None:
    """Why the entry cannot be used, or ``None`` when it can."""
    if not weights_path.is_file() or not sidecar_path.is_file():
        return "no entry"
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"unreadable sidecar ({error})"
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT or sidecar.get("key") != key:
        return "sidecar of another format or entry"
    if sidecar.get("source") != identity:
        return "the source file changed"
    if sidecar.get("size") != weights_path.stat().st_size:
        return "size mismatch (truncated?)"
    if sidecar.get("sha256") != file_sha256(weights_path):
        return "sha256 mismatch (corrupted?)"
    return None


def _write_entry(model: keras.Model, weights_path: Path, sidecar_path: Path, key: str, identity: dict[str, Any]) -> None:
    """Write the weights, then the sidecar, each atomically; failures only cost the cache."""
    folder = weights_path.parent
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temporary_weights = folder / f".{key}.{token}.npz"
    temporary_sidecar = folder / f".{key}.{token}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _save_arrays(model, temporary_weights)
        sidecar = {
            "format": SIDECAR_FORMAT,
            "key": key,
            "sha256": file_sha256(temporary_weights),
            "size": temporary_weights.stat().st_size,
            "source": identity,
        }
        os.replace(temporary_weights, weights_path)
        temporary_sidecar.write_text(json.dumps(sidecar, indent=1), encoding="utf-8")
        os.replace(temporary_sidecar, sidecar_path)
    except OSError as error:
        _log.warning("Could not write the weight cache %s: %s", weights_path, error)
    finally:
        for leftover in (temporary_weights, temporary_sidecar):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _save_arrays(model: keras.Model, path: Path) -> None:
    """Write every layer's weights as ``"<layer>/<index>"`` arrays of an ``.npz`` file."""
    import numpy as np

    arrays = {
        f"{layer.name}/{index}": np.asarray(array)
        for layer in model.layers
        for index, array in enumerate(layer.get_weights())
    }
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _load_arrays(model: keras.Model, path: Path) -> None:
    """Set every layer's weights from an ``.npz`` file written by :func:`_save_arrays`.

    Raises:
        ValueError: An array is missing, extra or of the wrong shape.
        OSError: The file cannot be read.
    """
    import numpy as np

    with np.load(path, allow_pickle=False) as archive:
        names = set(archive.files)
        assignments = []
        for layer in model.layers:
            arrays = []
            for index, variable in enumerate(layer.weights):
                name = f"{layer.name}/{index}"
                if name not in names:
                    raise ValueError(f"the cache lacks {name!r}")
                names.discard(name)
                array = archive[name]
                if array.shape != tuple(variable.shape):
                    raise ValueError(f"{name!r} has shape {array.shape}; the model expects {tuple(variable.shape)}")
                arrays.append(array)
            if arrays:
                assignments.append((layer, arrays))
        if names:
            raise ValueError(f"the cache holds arrays the model does not have: {sorted(names)[:3]}")
    for layer, arrays in assignments:
        layer.set_weights(arrays)
