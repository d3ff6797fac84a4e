"""The legacy PyTorch checkpoint reader: real file, hand-made files, hostile files."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from neurofilters.filters.zoo.lite0 import lite0_source_path
from neurofilters.filters.zoo.torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION, CheckpointFormatError, read_legacy_state_dict
from neurofilters.plugin_host import ModelUnavailableError

_TYPE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


def _text(value: str) -> bytes:
    encoded = value.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_int(value) for value in values) + b"t"


def _header() -> bytes:
    system = {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return b"".join(pickle.dumps(item, protocol=2) for item in (MAGIC_NUMBER, PROTOCOL_VERSION, system))


def legacy_bytes(tensors: dict[str, tuple[np.ndarray, int, tuple[int, ...], tuple[int, ...]]]) -> bytes:
    """Write a legacy torch.save file: name -> (storage, offset, size, stride), raw pickle opcodes."""
    body = b"\x80\x02ccollections\nOrderedDict\n)R("
    for index, (name, (storage, offset, size, stride)) in enumerate(tensors.items()):
        body += _text(name) + b"ctorch._utils\n_rebuild_tensor_v2\n("
        body += b"(" + _text("storage") + f"ctorch\n{_TYPE_NAMES[storage.dtype]}\n".encode()
        body += _text(str(index)) + _text("cpu") + _int(storage.size) + b"NtQ"
        body += _int(offset) + _ints(size) + _ints(stride) + b"\x89ccollections\nOrderedDict\n)RtR"
    body += b"u."
    keys = pickle.dumps([str(index) for index in range(len(tensors))], protocol=2)
    data = b"".join(
        struct.pack("<q", storage.size) + storage.astype(storage.dtype.newbyteorder("<")).tobytes()
        for storage, *_ in tensors.values()
    )
    return _header() + body + keys + data


def test_reads_every_tensor_of_the_lite0_checkpoint() -> None:
    state = read_legacy_state_dict(lite0_source_path())
    assert len(state) == 296
    weights = {key: value for key, value in state.items() if not key.endswith("num_batches_tracked")}
    assert sum(value.size for value in weights.values()) == 4_694_024  # Lite0's parameter count, as the torch checkpoint has it
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(value.dtype == np.float32 and value.flags.c_contiguous for value in weights.values())
    assert all(np.isfinite(value).all() for value in weights.values())


def test_offsets_strides_and_dtypes_follow_the_tensor_geometry(tmp_path: Path) -> None:
    storage = np.arange(24, dtype=np.float32)
    longs = np.array([7, -3, 2**40], dtype=np.int64)
    path = tmp_path / "tiny.pth"
    path.write_bytes(
        legacy_bytes(
            {
                "matrix": (storage, 0, (4, 6), (6, 1)),
                "transposed": (storage, 0, (6, 4), (1, 6)),
                "tail": (storage, 20, (2, 2), (2, 1)),
                "longs": (longs, 1, (2,), (1,)),
                "scalar": (longs, 2, (), ()),
            }
        )
    )
    state = read_legacy_state_dict(path)
    assert list(state) == ["matrix", "transposed", "tail", "longs", "scalar"]
    np.testing.assert_array_equal(state["matrix"], storage.reshape(4, 6))
    np.testing.assert_array_equal(state["transposed"], storage.reshape(4, 6).T)
    np.testing.assert_array_equal(state["tail"], [[20, 21], [22, 23]])
    np.testing.assert_array_equal(state["longs"], [-3, 2**40])
    assert state["scalar"].shape == () and state["scalar"] == 2**40


def test_a_tensor_reaching_outside_its_storage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "overflow.pth"
    path.write_bytes(legacy_bytes({"evil": (np.zeros(4, np.float32), 2, (3,), (1,))}))
    with pytest.raises(CheckpointFormatError, match="reaches outside its storage"):
        read_legacy_state_dict(path)


def test_a_malicious_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "exploit.pth"
    path.write_bytes(_header() + pickle.dumps(Exploit(), protocol=2))
    with pytest.raises(CheckpointFormatError) as caught:
        read_legacy_state_dict(path)
    message = str(caught.value)
    assert f"'{os.system.__module__}.system'" in message
    assert "malicious" in message and os.fspath(path) in message
    assert not marker.exists()
    assert isinstance(caught.value, ModelUnavailableError)


def test_a_global_hidden_in_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "header.pth"
    path.write_bytes(pickle.dumps(print, protocol=2))
    with pytest.raises(CheckpointFormatError, match=r"__builtin__\.print"):
        read_legacy_state_dict(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"PK\x03\x04rest-of-a-zip", "zip-based format"),
        (pickle.dumps(12345, protocol=2), "wrong magic number"),
        (b"", "not a readable legacy PyTorch checkpoint"),
        (_header() + pickle.dumps({"weight": 1.5}, protocol=2), "not a state dict"),
    ],
    ids=["zip", "magic", "empty", "not-tensors"],
)
def test_other_files_are_refused_with_a_reason(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "other.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointFormatError, match=expected):
        read_legacy_state_dict(path)


def test_a_truncated_file_is_reported(tmp_path: Path) -> None:
    data = legacy_bytes({"weight": (np.ones(10, np.float32), 0, (10,), (1,))})
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:-8])
    with pytest.raises(CheckpointFormatError, match="ends early"):
        read_legacy_state_dict(path)


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="nothing.pth"):
        read_legacy_state_dict(tmp_path / "nothing.pth")
