"""Layered files: XCF reading and writing, OpenRaster writing, and XCF inputs in a batch."""

from __future__ import annotations

import io
import struct
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.plugin_host import ImageIOError
from neurofilters.plugin_host.imageio.layered import Layer, LayeredImage, composite, read_ora, read_xcf, write_ora
from neurofilters.plugin_host.imageio.xcf import encode_xcf, write_xcf
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


def test_xcf_pixel_limit_is_checked_before_allocating(tmp_path: Path) -> None:
    path = write_xcf(tmp_path / "a.xcf", sample_image())  # canvas 100 x 80, layers up to 90 x 70
    with pytest.raises(ImageIOError, match=r"100 x 80 = 8,000 pixels, more than the limit of 7,000 pixels.*--max-pixels 8000"):
        read_xcf(path, max_pixels=7000)
    assert len(read_xcf(path, max_pixels=8000).layers) == 3
    with pytest.raises(ImageIOError, match=r"more than the limit of 100 pixels"):
        composite(sample_image(), max_pixels=100)

    wide = write_xcf(tmp_path / "wide.xcf", LayeredImage(20, 20, (Layer("wide", np.ones((10, 300, 4), np.float32), -100, 0),)))
    with pytest.raises(ImageIOError, match=r"layer 'wide'.*300 x 10 = 3,000 pixels, more than the limit of 1,000"):
        read_xcf(wide, max_pixels=1000)  # a layer larger than the canvas
    assert read_xcf(wide, max_pixels=0).layers[0].pixels.shape == (10, 300, 4)

    # a layer header that understates the pixel data behind it: the tile hierarchy's size is checked too
    data = bytearray(encode_xcf(LayeredImage(20, 20, (Layer("liar", np.ones((40, 40, 4), np.float32)),))))
    header_size = len(b"gimp xcf file\x00") + 12 + (8 + 1) + 8  # magic, size and base type, compression and end props
    (layer_at,) = struct.unpack_from(">I", data, header_size)
    struct.pack_into(">II", data, layer_at, 4, 4)
    liar = tmp_path / "liar.xcf"
    liar.write_bytes(bytes(data))
    with pytest.raises(ImageIOError, match=r"40 x 40 = 1,600 pixels, more than the limit of 1,000"):
        read_xcf(liar, max_pixels=1000)


def test_batch_applies_max_pixels_to_xcf_inputs(tmp_path: Path) -> None:
    site = install_test_plugin(tmp_path / "site")
    source = write_xcf(tmp_path / "in" / "art.xcf", sample_image())
    for mode in ("layers", "flatten"):
        result = run_batch(site, str(source), "-o", str(tmp_path / mode), "--filter", "bt-invert", "--xcf", mode, "--max-pixels", "7000")
        assert result.returncode == 1, result.stderr
        assert "more than the limit of 7,000 pixels" in result.stderr and "--max-pixels 8000" in result.stderr
        assert not any(p.is_file() and not p.name.startswith(".") for p in (tmp_path / mode).rglob("*"))


def test_protected_inputs_are_indexed_once_and_hard_links_are_caught(tmp_path: Path) -> None:
    import os
    import time

    from neurofilters.plugin_host.batch.execute import RunOptions, Task, encode

    inputs = [tmp_path / "in" / f"{i:04d}.png" for i in range(2000)]
    inputs[0].parent.mkdir()
    for path in inputs:
        path.write_bytes(b"")
    options = RunOptions(steps=(), protect=tuple(str(p) for p in inputs))
    pixels = np.full((4, 4, 3), 0.5, np.float32)
    out = tmp_path / "out"

    def task(index: int, name: str, fmt: str) -> Task:
        return Task(index, str(inputs[index]), name, str(out / name), fmt, 0, 0, "h")

    start = time.perf_counter()
    for index in range(40):
        encode(task(index, f"{index}.png", "png"), None, pixels, options)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"40 outputs against 2,000 protected inputs took {elapsed:.2f} s"  # was ~5 s (quadratic)
    for fmt in ("png", "xcf", "ora"):
        link = out / f"link.{fmt}"
        os.link(inputs[7], link)
        with pytest.raises(ImageIOError, match="Refusing to overwrite .*input file"):
            encode(task(7, link.name, fmt), None, pixels, options)
        with pytest.raises(ImageIOError, match="Refusing to overwrite .*input file"):
            (write_xcf if fmt == "xcf" else write_ora)(link, sample_image(), protect=[inputs[7]])
        assert link.read_bytes() == b""
