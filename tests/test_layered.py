"""Layered files: XCF reading and writing, OpenRaster writing, and XCF inputs in a batch."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plugin_host import ImageIOError
from plugin_host._layered import Layer, LayeredImage, composite, read_ora, read_xcf, write_ora
from plugin_host._xcf import write_xcf
from test_batch_support import install_test_plugin, run_batch


def sample_image() -> LayeredImage:
    """Three layers: a hidden one, a half-opaque multiply one with an offset, an opaque background.

    Sizes cross the 64-pixel tile boundary on purpose.
    """
    rng = np.random.default_rng(3)
    background = rng.random((70, 90, 4)).astype(np.float32)
    background[..., 3] = 1.0
    sticker = rng.random((30, 67, 4)).astype(np.float32)
    hidden = np.ones((5, 5, 4), dtype=np.float32)
    return LayeredImage(100, 80, (
        Layer("hidden note", hidden, 1, 2, visible=False),
        Layer("sticker", sticker, 10, 20, opacity=0.6, composite_op="svg:multiply"),
        Layer("Background", background),
    ))


def _quantized(pixels: np.ndarray) -> np.ndarray:
    return np.round(pixels * 255) / 255


def test_xcf_round_trip_keeps_layers(tmp_path: Path) -> None:
    original = sample_image()
    path = write_xcf(tmp_path / "a.xcf", original)
    assert path.read_bytes().startswith(b"gimp xcf file\x00")
    loaded = read_xcf(path)
    assert (loaded.width, loaded.height) == (100, 80)
    assert [(l.name, l.x, l.y, l.visible, l.composite_op) for l in loaded.layers] == [
        (l.name, l.x, l.y, l.visible, l.composite_op) for l in original.layers]
    assert loaded.layers[1].opacity == pytest.approx(0.6, abs=1 / 255)
    for mine, theirs in zip(original.layers, loaded.layers, strict=True):
        np.testing.assert_allclose(theirs.pixels, _quantized(mine.pixels), atol=1e-6)


def test_ora_structure_and_round_trip(tmp_path: Path) -> None:
    original = sample_image()
    path = write_ora(tmp_path / "a.ora", original)
    with zipfile.ZipFile(path) as archive:
        first = archive.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert archive.read("mimetype") == b"image/openraster"
        names = set(archive.namelist())
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= names
        stack = ET.fromstring(archive.read("stack.xml"))
        assert (stack.attrib["w"], stack.attrib["h"]) == ("100", "80")
        layers = stack.findall("./stack/layer")
        assert [l.attrib["name"] for l in layers] == ["hidden note", "sticker", "Background"]
        assert layers[0].attrib["visibility"] == "hidden" and layers[1].attrib["composite-op"] == "svg:multiply"
        merged = np.asarray(Image.open(io.BytesIO(archive.read("mergedimage.png"))).convert("RGBA"), dtype=np.float32) / 255
    np.testing.assert_allclose(merged, composite(original), atol=1 / 255 + 1e-6)
    loaded = read_ora(path)
    assert [(l.name, l.x, l.y, l.visible) for l in loaded.layers] == [(l.name, l.x, l.y, l.visible) for l in original.layers]
    assert loaded.layers[1].opacity == pytest.approx(0.6)


def test_composite_normal_and_multiply() -> None:
    base = np.zeros((2, 2, 4), dtype=np.float32)
    base[..., :3], base[..., 3] = 0.5, 1.0
    top = np.ones((1, 1, 4), dtype=np.float32)
    top[..., :3] = 0.2
    normal = composite(LayeredImage(2, 2, (Layer("t", top, 1, 1, opacity=0.5), Layer("b", base))))
    np.testing.assert_allclose(normal[1, 1], [0.35, 0.35, 0.35, 1.0], atol=1e-6)
    np.testing.assert_allclose(normal[0, 0], [0.5, 0.5, 0.5, 1.0])
    multiplied = composite(LayeredImage(2, 2, (Layer("t", top, 0, 0, composite_op="svg:multiply"), Layer("b", base))))
    np.testing.assert_allclose(multiplied[0, 0, :3], [0.1, 0.1, 0.1], atol=1e-6)


def test_bad_xcf_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.xcf"
    path.write_bytes(b"gimp xcf file\x00\x00\x00")
    with pytest.raises(ImageIOError, match="Cannot read the XCF file .*bad.xcf"):
        read_xcf(path)


def test_batch_filters_each_xcf_layer(tmp_path: Path) -> None:
    site = install_test_plugin(tmp_path / "site")
    source = write_xcf(tmp_path / "in" / "art.xcf", sample_image())
    layered = run_batch(site, str(source), "-o", str(tmp_path / "out"), "--filter", "bt-invert")
    assert layered.returncode == 0, layered.stderr
    result = read_xcf(tmp_path / "out" / "art.xcf")  # auto: per layer, written as XCF
    original = read_xcf(source)
    assert [(l.name, l.x, l.y, l.visible, l.composite_op) for l in result.layers] == [
        (l.name, l.x, l.y, l.visible, l.composite_op) for l in original.layers]
    for before, after in zip(original.layers, result.layers, strict=True):
        np.testing.assert_allclose(after.pixels[..., :3], 1 - before.pixels[..., :3], atol=1 / 255 + 1e-6)
        np.testing.assert_array_equal(after.pixels[..., 3], before.pixels[..., 3])
    ora = run_batch(site, str(source), "-o", str(tmp_path / "ora"), "--filter", "bt-invert", "--format", "ora")
    assert ora.returncode == 0, ora.stderr
    assert [l.name for l in read_ora(tmp_path / "ora" / "art.ora").layers] == ["hidden note", "sticker", "Background"]
    flat = run_batch(site, str(source), "-o", str(tmp_path / "flat"), "--filter", "bt-invert", "--xcf", "flatten")
    assert flat.returncode == 0, flat.stderr
    flattened = np.asarray(Image.open(tmp_path / "flat" / "art.png"), dtype=np.float32) / 255
    expected = composite(original)
    np.testing.assert_allclose(flattened[..., :3], 1 - expected[..., :3], atol=1.5 / 255)
    wrong = run_batch(site, str(source), "-o", str(tmp_path / "w"), "--filter", "bt-invert", "--xcf", "layers", "--format", "png")
    assert wrong.returncode == 2 and "Per-layer XCF output needs a layered format" in wrong.stderr
