"""Layered files: the XCF layer tree (groups, masks, precisions) read and written, OpenRaster, bad files, XCF inputs in a batch."""

from __future__ import annotations

import io
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.plugin_host import ImageIOError
from neurofilters.plugin_host.imageio.layered import (
    Layer, LayeredImage, apply_masks, composite, map_layers, raster_layers, read_ora, read_xcf, write_ora)
from neurofilters.plugin_host.imageio.files import load_image
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
    assert path.read_bytes().startswith(b"gimp xcf v013\x00")
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


def tree_image(precision: str = "u16", linear: bool = True) -> LayeredImage:
    """A group inside a group, a masked layer, a masked group, GIMP mode numbers; 16-bit linear by default."""
    rng = np.random.default_rng(5)

    def pixels(h: int, w: int) -> np.ndarray:
        return rng.random((h, w, 4)).astype(np.float32)

    inner = Layer("inner", None, 30, 5, opacity=0.7, mode=28, children=(
        Layer("b", pixels(20, 40), 30, 5, mode=30),
        Layer("c", pixels(65, 25), 31, 6, opacity=0.8, mode=52),
    ))
    outer = Layer("outer", None, 10, 5, mode=61, mask=rng.random((66, 60)).astype(np.float32), children=(
        inner, Layer("a", pixels(30, 30), 10, 10, mode=28, mask=rng.random((30, 30)).astype(np.float32), apply_mask=False),
    ))
    background = pixels(80, 100)
    background[..., 3] = 1
    return LayeredImage(100, 80, (outer, Layer("bg", background, mode=28)), precision, linear)


def _tree(image: LayeredImage) -> list[tuple]:
    from neurofilters.plugin_host.imageio.layered import _walk

    return [(l.name, l.is_group, l.x, l.y, l.visible, round(l.opacity, 4), l.mode, l.apply_mask,
             None if l.mask is None else l.mask.shape) for l in _walk(image.layers)]


@pytest.mark.parametrize(("precision", "linear", "tolerance"), [
    ("u8", False, 0.5 / 255), ("u16", True, 1e-4), ("u32", False, 1e-6), ("half", True, 2e-3), ("float", False, 0), ("double", True, 1e-6)])
def test_xcf_tree_and_precision_round_trip(tmp_path: Path, precision: str, linear: bool, tolerance: float) -> None:
    original = tree_image(precision, linear)
    loaded = read_xcf(write_xcf(tmp_path / "tree.xcf", original))
    assert (loaded.precision, loaded.linear) == (precision, linear)
    assert _tree(loaded) == _tree(original)
    for mine, theirs in zip(raster_layers(original), raster_layers(loaded), strict=True):
        np.testing.assert_allclose(theirs.pixels, mine.pixels, atol=tolerance + 1e-6)
    np.testing.assert_allclose(loaded.layers[0].mask, original.layers[0].mask, atol=tolerance + 1e-6)
    flat = composite(loaded)
    assert flat.shape == (80, 100, 4) and flat[..., 3].min() == pytest.approx(1.0)


def test_map_layers_reaches_layers_inside_groups() -> None:
    image = tree_image()
    seen: list[tuple[int, str]] = []

    def invert(index: int, layer: Layer) -> np.ndarray:
        seen.append((index, layer.name))
        return 1 - layer.pixels[..., :3]

    result = map_layers(image, invert)
    assert seen == [(0, "b"), (1, "c"), (2, "a"), (3, "bg")]
    assert _tree(result) == _tree(image)
    for before, after in zip(raster_layers(image), raster_layers(result), strict=True):
        np.testing.assert_allclose(after.pixels[..., :3], 1 - before.pixels[..., :3])
        np.testing.assert_array_equal(after.pixels[..., 3], before.pixels[..., 3])


def test_ora_keeps_groups_and_bakes_masks(tmp_path: Path) -> None:
    image = tree_image("u8", False)
    path = write_ora(tmp_path / "tree.ora", image)
    with zipfile.ZipFile(path) as archive:
        stack = ET.fromstring(archive.read("stack.xml"))
    outer = stack.find("./stack/stack")
    assert outer is not None and outer.attrib["name"] == "outer" and outer.attrib["isolation"] == "auto"
    assert [n.attrib["name"] for n in outer] == ["inner", "a"]
    loaded = read_ora(path)
    assert [(l.name, l.is_group, l.x, l.y) for l in raster_layers(loaded)] == [
        (l.name, l.is_group, l.x, l.y) for l in raster_layers(image)]
    assert loaded.layers[0].children[0].children[0].composite_op == "svg:multiply"  # from GIMP's mode 30
    masked = raster_layers(image)[2]  # "a": its mask is not applied (apply_mask=False), so alpha is unchanged
    np.testing.assert_allclose(raster_layers(loaded)[2].pixels[..., 3], masked.pixels[..., 3], atol=0.5 / 255 + 1e-6)
    baked = apply_masks(replace(image, layers=(replace(image.layers[0], children=(
        image.layers[0].children[0], replace(masked, apply_mask=True))), image.layers[1])))
    np.testing.assert_allclose(raster_layers(baked)[2].pixels[..., 3], masked.pixels[..., 3] * masked.mask, atol=1e-6)


def _patch(data: bytearray, old: bytes, new: bytes) -> None:
    at = data.index(old)
    data[at : at + len(old)] = new


def test_unknown_properties_and_modes_are_skipped_by_their_length(tmp_path: Path) -> None:
    """A newer GIMP's properties (ids and values gimpformats does not know) never break a read."""
    data = bytearray(encode_xcf(tree_image("u8", False)))
    # the first layer's PROP_ACTIVE_LAYER (2, empty) becomes an unknown id 77; its PROP_FLOAT_OPACITY (33) an unknown 99
    _patch(data, struct.pack(">II", 2, 0), struct.pack(">II", 77, 0))
    _patch(data, struct.pack(">II", 33, 4), struct.pack(">II", 99, 4))
    _patch(data, struct.pack(">III", 7, 4, 61), struct.pack(">III", 7, 4, 99))  # a mode number past GIMP 3's list
    path = tmp_path / "future.xcf"
    path.write_bytes(bytes(data))
    loaded = read_xcf(path)
    assert loaded.layers[0].mode == 99 and loaded.layers[0].composite_op == "svg:src-over"
    assert [l.name for l in raster_layers(loaded)] == ["b", "c", "a", "bg"]


def test_bad_xcf_is_a_clear_error(tmp_path: Path) -> None:
    import tracemalloc

    def message(data: bytes, **kwargs: object) -> str:
        path = tmp_path / "bad.xcf"
        path.write_bytes(data)
        with pytest.raises(ImageIOError) as caught:
            read_xcf(path, **kwargs)
        assert "bad.xcf" in str(caught.value)
        return str(caught.value)

    good = encode_xcf(tree_image("u8", False))
    assert "is empty (0 bytes)" in message(b"")
    assert "is not an XCF file" in message(b"\x89PNG\r\n\x1a\n" + good[8:])
    assert "is truncated" in message(b"gimp x")  # the start of a header
    assert "truncated" in message(good[:20])
    for cut in range(30, len(good), max(1, len(good) // 60)):  # every cut gives our error, never a crash
        assert re.search("truncated|damaged", message(good[:cut])), cut
    huge = bytearray(good)
    struct.pack_into(">II", huge, 14, 200_000, 200_000)
    assert "more than the limit" in message(bytes(huge))
    # a small file declaring a huge layer (checks disabled): refused from its tile table, before any allocation
    liar = bytearray(good)
    struct.pack_into(">II", liar, 14, 60_000, 60_000)
    _patch(liar, struct.pack(">III", 40, 20, 1), struct.pack(">III", 60_000, 60_000, 1))  # layer "b": its header ...
    _patch(liar, struct.pack(">III", 40, 20, 4), struct.pack(">III", 60_000, 60_000, 4))  # ... and its pixel hierarchy
    tracemalloc.start()
    try:
        text = message(bytes(liar), max_pixels=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert re.search("truncated|damaged", text) and peak < 50e6, (text, peak)


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


@pytest.mark.slow
def test_batch_keeps_the_tree_and_applies_masks_by_option(tmp_path: Path) -> None:
    site = install_test_plugin(tmp_path / "site")
    original = tree_image()
    source = write_xcf(tmp_path / "in" / "tree.xcf", original)
    for masks in ("keep", "apply"):
        done = run_batch(site, str(source), "-o", str(tmp_path / masks), "--filter", "bt-invert", "--xcf-masks", masks)
        assert done.returncode == 0, done.stderr
        result = read_xcf(tmp_path / masks / "tree.xcf")
        assert (result.precision, result.linear) == ("u16", True)  # 16-bit in, 16-bit out
        leaves = raster_layers(result)
        for before, after in zip(raster_layers(original), leaves, strict=True):
            np.testing.assert_allclose(after.pixels[..., :3], 1 - before.pixels[..., :3], atol=2e-4)
            alpha = before.pixels[..., 3] * (before.mask if masks == "apply" and before.mask is not None and before.apply_mask else 1)
            np.testing.assert_allclose(after.pixels[..., 3], alpha, atol=2e-4)
        if masks == "keep":
            assert _tree(result) == _tree(original)
        else:
            assert [layer.mask is None for layer in leaves] == [True, True, False, True]  # "a"'s mask is switched off: kept
            assert result.layers[0].mask is not None  # a group's mask stays (it masks the filtered group as before)
    flat = run_batch(site, str(source), "-o", str(tmp_path / "flat"), "--filter", "bt-invert", "--xcf", "flatten")
    assert flat.returncode == 0, flat.stderr
    assert load_image(tmp_path / "flat" / "tree.png").bit_depth == 16  # a flattened 16-bit XCF gives a 16-bit PNG


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
    header_size = len(b"gimp xcf v013\x00") + 16 + (8 + 1) + 8  # magic, size, base type, precision, compression and end props
    (layer_at,) = struct.unpack_from(">Q", data, header_size)
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

    # Count the work instead of timing it (timings belong in benchmarks): the inputs are indexed once
    # (one stat each), then each output costs O(1) stat calls, not one per input (that was quadratic).
    real_stat = os.stat
    calls = [0]

    def counting_stat(*args: object, **kwargs: object) -> os.stat_result:
        calls[0] += 1
        return real_stat(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "stat", counting_stat)
        for index in range(40):
            encode(task(index, f"{index}.png", "png"), None, pixels, options)
    assert calls[0] < 2000 + 40 * 20, f"40 outputs against 2,000 protected inputs made {calls[0]} stat calls"
    for fmt in ("png", "xcf", "ora"):
        link = out / f"link.{fmt}"
        os.link(inputs[7], link)
        with pytest.raises(ImageIOError, match="Refusing to overwrite .*input file"):
            encode(task(7, link.name, fmt), None, pixels, options)
        with pytest.raises(ImageIOError, match="Refusing to overwrite .*input file"):
            (write_xcf if fmt == "xcf" else write_ora)(link, sample_image(), protect=[inputs[7]])
        assert link.read_bytes() == b""


def test_parasite_names_are_read_as_gimp_writes_them() -> None:
    """PROP_PARASITES: name (with its NUL), flags, size, data each; a damaged tail is ignored, never a crash."""
    from gimpformats.GimpParasites import GimpParasite

    from neurofilters.plugin_host.imageio.xcf_read import _parasite_names

    def parasite(name: str, data: bytes) -> bytes:
        encoded = name.encode() + b"\x00"
        return struct.pack(">I", len(encoded)) + encoded + struct.pack(">II", 1, len(data)) + data

    payload = parasite("gimp-text-layer", b'(text "hi")') + parasite("gimp-comment", b"\x00" * 7)
    assert _parasite_names(payload) == ["gimp-text-layer", "gimp-comment"]
    reference, at = [], 0
    while at < len(payload):  # gimpformats' public parasite decoder agrees
        one = GimpParasite()
        at = one.decode(bytearray(payload), at)
        reference.append(one.name)
    assert reference == _parasite_names(payload)
    assert _parasite_names(payload[:-3]) == ["gimp-text-layer"]
    assert _parasite_names(b"\xff\xff\xff\xff") == []
