"""The converted-weights cache: location, atomic writes, corruption detection, rebuilds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from neurofilters.filters.zoo import cache
from neurofilters.filters.zoo.lite0 import assign_weights, build_lite0, lite0_source_path, lite0_weights
from neurofilters.filters.zoo.torch_legacy import read_legacy_state_dict


@pytest.fixture(scope="module")
def network():  # noqa: ANN201 - a keras.Model
    return build_lite0()


@pytest.fixture(scope="module")
def reference() -> list[np.ndarray]:
    model = build_lite0()
    assign_weights(model, lite0_weights(read_legacy_state_dict(lite0_source_path())))
    return model.get_weights()


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    copy = tmp_path / "lite0.pth"
    shutil.copyfile(lite0_source_path(), copy)
    return copy


@pytest.fixture()
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cache.CACHE_DIR_ENV, os.fspath(tmp_path / "cache"))
    return tmp_path / "cache"


def _load(network, source: Path) -> str:  # noqa: ANN001
    network.set_weights([np.zeros_like(array) for array in network.get_weights()])  # forget the last load
    return cache.load_cached_weights(
        network, "lite0-test", source, lambda model: assign_weights(model, lite0_weights(read_legacy_state_dict(source)))
    )


def _assert_weights(network, reference: list[np.ndarray]) -> None:  # noqa: ANN001
    for loaded, expected in zip(network.get_weights(), reference, strict=True):
        np.testing.assert_array_equal(loaded, expected)


def test_cache_folder_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEUROFILTERS_CACHE_DIR", os.fspath(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", os.fspath(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("NEUROFILTERS_CACHE_DIR")
    assert cache.cache_dir() == tmp_path / "xdg" / "neurofilters"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", os.fspath(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "neurofilters"


def test_first_use_converts_and_writes_a_verified_entry(network, reference, source: Path, folder: Path) -> None:  # noqa: ANN001
    assert _load(network, source) == "converted"
    _assert_weights(network, reference)
    weights_path, sidecar_path = cache.cache_paths("lite0-test", source)
    assert sorted(path.name for path in folder.iterdir()) == [sidecar_path.name, weights_path.name]  # no temp files left
    assert weights_path.name.startswith("lite0-test-") and weights_path.suffix == ".npz"
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["sha256"] == cache.file_sha256(weights_path)
    assert sidecar["source"] == {"path": os.fspath(source.resolve()), "size": source.stat().st_size,
                                 "mtime_ns": source.stat().st_mtime_ns}
    assert _load(network, source) == "cached"
    _assert_weights(network, reference)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _garbage_with_a_matching_sidecar(path: Path) -> None:
    path.write_bytes(b"not an npz file")
    sidecar_path = path.with_suffix(".json")
    sidecar = json.loads(sidecar_path.read_text())
    sidecar.update(sha256=cache.file_sha256(path), size=path.stat().st_size)
    sidecar_path.write_text(json.dumps(sidecar))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, _garbage_with_a_matching_sidecar, Path.unlink])
def test_a_damaged_entry_is_rebuilt(network, reference, source: Path, folder: Path, damage, caplog) -> None:  # noqa: ANN001
    weights_path, sidecar_path = cache.cache_paths("lite0-test", source)
    assert _load(network, source) == "converted"
    damage(weights_path)
    assert _load(network, source) == "rebuilt"
    _assert_weights(network, reference)
    assert "Rebuilding the weight cache" in caplog.text
    assert _load(network, source) == "cached"
    _assert_weights(network, reference)


def test_a_changed_source_invalidates_the_entry(network, reference, source: Path, folder: Path) -> None:  # noqa: ANN001
    assert _load(network, source) == "converted"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    assert _load(network, source) == "rebuilt"
    _assert_weights(network, reference)


def test_an_unwritable_cache_still_loads_the_model(network, reference, source: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, os.fspath(blocker / "cache"))
    assert _load(network, source) == "converted"
    assert _load(network, source) == "converted"
    _assert_weights(network, reference)


def test_two_installations_keep_one_entry_each(network, reference, source: Path, folder: Path, tmp_path: Path) -> None:  # noqa: ANN001
    # Two virtual environments on one machine hold the same weights at two paths: neither rebuilds the other's entry.
    other = tmp_path / "other-venv" / "lite0.pth"
    other.parent.mkdir()
    shutil.copyfile(source, other)
    assert _load(network, source) == "converted"
    assert _load(network, other) == "converted"
    assert _load(network, source) == "cached"  # before: 'rebuilt', the entry was keyed to the last installation
    assert _load(network, other) == "cached"
    _assert_weights(network, reference)
    assert cache.cache_paths("lite0-test", source) != cache.cache_paths("lite0-test", other)
