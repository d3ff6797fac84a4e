"""Reading PyTorch state dicts saved in the legacy (pre-1.6, non-zip) format, without torch.

A legacy ``torch.save`` file is a sequence of pickles followed by raw data:

1. the magic number ``0x1950a86a20f9469cfc6c``;
2. the protocol version (``1001``);
3. system information (``{"little_endian": True, "type_sizes": {...}}``);
4. the object itself: here an ``OrderedDict`` of tensors, each rebuilt by
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``,
   where ``storage`` is a persistent id
   ``("storage", torch.FloatStorage, key, location, numel, view_metadata)``;
5. the list of storage keys;
6. for each key, in that order: an int64 little-endian element count and the
   storage's raw bytes.

Unpickling runs code named by the file, so this reader allows only the few
globals a state dict needs and refuses anything else (``os.system`` & co.)
before it is called.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from neurofilters.plugin_host import ModelUnavailableError

__all__ = ["CheckpointFormatError", "MAGIC_NUMBER", "PROTOCOL_VERSION", "read_legacy_state_dict"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: torch storage classes a state dict may reference, with their little-endian dtypes.
STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class CheckpointFormatError(ModelUnavailableError):
    """The file is not a legacy PyTorch state dict this reader accepts (or is unsafe)."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass
class _Storage:
    key: str
    storage_type: _StorageType
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *_ignored: Any
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: record where the tensor lives."""
    if not isinstance(storage, _Storage):
        raise CheckpointFormatError(f"A tensor refers to {type(storage).__name__} instead of a storage.")
    if not _is_int_tuple(size) or not _is_int_tuple(stride) or len(size) != len(stride):
        raise CheckpointFormatError(f"Malformed tensor geometry. Received: size={size!r}, stride={stride!r}")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise CheckpointFormatError(f"Malformed storage offset. Received: {storage_offset!r}")
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _is_int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(item, int) and item >= 0 for item in value)


class _PlainUnpickler(pickle.Unpickler):
    """Unpickler for the header pickles: no globals, no persistent ids at all."""

    def __init__(self, file: IO[bytes], path: str) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        raise CheckpointFormatError(
            f"{self._path}: the file refers to the global '{module}.{name}' where none is allowed; "
            "it is not a PyTorch checkpoint, or it was tampered with. Refusing to load it."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointFormatError(f"{self._path}: unexpected persistent id {pid!r:.80} in a header.")


class _StateDictUnpickler(_PlainUnpickler):
    """Unpickler for the state dict itself: only the globals a tensor dict needs."""

    def __init__(self, file: IO[bytes], path: str) -> None:
        super().__init__(file, path)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        allowed: dict[tuple[str, str], Callable[..., Any]] = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        permitted = sorted(
            [f"{m}.{n}" for m, n in allowed] + [f"torch.{storage}" for storage in STORAGE_DTYPES]
        )
        raise CheckpointFormatError(
            f"{self._path}: the pickle refers to the global '{module}.{name}', which a PyTorch state "
            f"dict never needs (allowed: {', '.join(permitted)}). The file may be malicious; "
            "refusing to load it."
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise CheckpointFormatError(f"{self._path}: unsupported persistent id {pid!r:.80}.")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise CheckpointFormatError(f"{self._path}: malformed storage reference {pid!r:.80}.")
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointFormatError(f"{self._path}: malformed storage size {numel!r}.")
        if view_metadata is not None:
            raise CheckpointFormatError(
                f"{self._path}: storage views (saved by PyTorch < 0.4) are not supported."
            )
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type, numel)
        elif storage.storage_type != storage_type or storage.numel != numel:
            raise CheckpointFormatError(f"{self._path}: storage {key!r} is declared twice, differently.")
        return storage


def read_legacy_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a state dict saved by ``torch.save`` in the legacy (non-zip) format.

    Args:
        path: The ``.pth`` / ``.pt`` file.

    Returns:
        Parameter name -> array (a C-contiguous copy, dtype of the storage), in file order.

    Raises:
        CheckpointFormatError: The file is not a legacy-format state dict (zip
            format, another object, truncated, big-endian), or its pickle
            refers to anything but the tensor-rebuilding globals.
        ModelUnavailableError: The file cannot be opened.
    """
    name = os.fspath(path)
    try:
        handle = open(name, "rb")
    except OSError as error:
        raise ModelUnavailableError(f"Cannot open the checkpoint {name!r}: {error}") from error
    with handle:
        if handle.read(4) == b"PK\x03\x04":
            raise CheckpointFormatError(
                f"{name}: this is the zip-based format of torch.save (PyTorch >= 1.6); only the legacy "
                "format is supported. Re-save it with torch.save(..., _use_new_zipfile_serialization=False)."
            )
        handle.seek(0)
        try:
            return _read(handle, name)
        except CheckpointFormatError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, struct.error) as error:
            raise CheckpointFormatError(
                f"{name}: not a readable legacy PyTorch checkpoint ({type(error).__name__}: {error})."
            ) from error


def _read(handle: IO[bytes], name: str) -> dict[str, np.ndarray]:
    magic = _PlainUnpickler(handle, name).load()
    if magic != MAGIC_NUMBER:
        raise CheckpointFormatError(f"{name}: not a PyTorch checkpoint (wrong magic number).")
    protocol = _PlainUnpickler(handle, name).load()
    if protocol != PROTOCOL_VERSION:
        raise CheckpointFormatError(
            f"{name}: unsupported torch.save protocol. Received: {protocol!r}; expected {PROTOCOL_VERSION}."
        )
    system = _PlainUnpickler(handle, name).load()
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise CheckpointFormatError(f"{name}: only checkpoints saved on little-endian machines are supported.")

    unpickler = _StateDictUnpickler(handle, name)
    state = unpickler.load()
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, _TensorRef) for key, value in state.items()
    ):
        raise CheckpointFormatError(f"{name}: the checkpoint holds {type(state).__name__}, not a state dict of tensors.")

    keys = _PlainUnpickler(handle, name).load()
    if not isinstance(keys, list) or sorted(keys) != sorted(unpickler.storages):
        raise CheckpointFormatError(f"{name}: the storage key list does not match the tensors.")
    for key in keys:
        storage = unpickler.storages[key]
        (count,) = struct.unpack("<q", _read_exactly(handle, 8, name))
        if count != storage.numel:
            raise CheckpointFormatError(
                f"{name}: storage {key!r} holds {count} elements; the tensors declared {storage.numel}."
            )
        dtype = storage.storage_type.dtype
        storage.data = np.frombuffer(_read_exactly(handle, count * dtype.itemsize, name), dtype=dtype)
    return {key: _materialise(ref, key, name) for key, ref in state.items()}


def _read_exactly(handle: IO[bytes], count: int, name: str) -> bytes:
    data = handle.read(count)
    if len(data) != count:
        raise CheckpointFormatError(f"{name}: the file ends early (truncated download?).")
    return data


def _materialise(ref: _TensorRef, key: str, name: str) -> np.ndarray:
    data = ref.storage.data
    assert data is not None  # every storage in the key list was read
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=data.dtype)
    last = ref.offset + sum((extent - 1) * step for extent, step in zip(ref.size, ref.stride))
    if last >= data.size:
        raise CheckpointFormatError(f"{name}: tensor {key!r} reaches outside its storage.")
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset :],
        shape=ref.size,
        strides=tuple(step * data.itemsize for step in ref.stride),
        writeable=False,
    )
    return np.array(view, order="C")
