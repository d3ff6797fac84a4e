"""Bad and odd inputs: each is processed correctly or reported with a clear reason,
and none stops the batch.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_batch_support import install_test_plugin, run_batch, write_photo


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_test_plugin(tmp_path_factory.mktemp("corpus-site"))


def _jpeg_bytes(size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    data = (np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(data).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "zero.png").write_bytes(b"")
    jpeg = _jpeg_bytes()
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    png = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(png, "PNG")
    raw = bytearray(png.getvalue())
    raw[40:60] = b"\xff" * 20  # IHDR/IDAT bytes destroyed, signature intact
    (root / "corrupt.png").write_bytes(bytes(raw))
    (root / "text.jpg").write_text("this is not a picture\n")
    (root / "data.xyz").write_bytes(b"\x00\x01binary")
    Image.new("L", (2000, 1000)).save(root / "bomb.png")  # 2 million pixels, a few kB
    frames = [Image.new("RGB", (12, 10), colour) for colour in ("red", "green", "blue")]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    Image.new("CMYK", (14, 10), (0, 255, 0, 0)).save(root / "cmyk.jpg", quality=95)
    sixteen = (np.arange(12 * 10, dtype=np.uint16).reshape(10, 12) * 500)
    Image.fromarray(sixteen).save(root / "grey16.png")
    Image.new("RGB", (12, 10), "blue").convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.png")
    write_photo(root / "greyalpha.png", mode="LA")
    rotated = Image.new("RGB", (30, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    rotated.save(root / "rotated.jpg", exif=exif.tobytes())
    return root


def _rows(report: Path) -> dict[str, dict]:
    return {Path(row["input"]).name + (f"#{row['frame']}" if row["frame"] else ""): row
            for row in json.loads(report.read_text())["files"]}


def test_bad_inputs_do_not_stop_the_batch(site: Path, corpus: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"
    files = sorted(str(p) for p in corpus.iterdir())
    result = run_batch(site, *files, "-o", str(out), "--filter", "bt-invert", "--max-pixels", "1000000",
                       "--report", str(report))
    assert result.returncode == 1, result.stderr
    rows = _rows(report)
    reasons = {
        "zero.png": "empty (0 bytes)",
        "truncated.jpg": "truncated",
        "corrupt.png": "not an image",
        "text.jpg": "not an image",
        "data.xyz": "not an image",
        "bomb.png": "max_pixels",
    }
    for name, fragment in reasons.items():
        assert rows[name]["status"] == "failed", name
        assert fragment in rows[name]["error"].lower() or fragment in rows[name]["error"], (name, rows[name]["error"])
        assert name in rows[name]["error"]  # the message names the file
        assert f"FAILED {corpus / name}" in result.stderr
    for name in ("anim.gif", "cmyk.jpg", "grey16.png", "palette.png", "greyalpha.png", "rotated.jpg"):
        assert rows[name]["status"] == "ok", (name, rows[name]["error"])
    assert (out / "anim.png").exists()  # GIF cannot hold the result: PNG, first frame only
    with Image.open(out / "anim.png") as first:
        assert first.convert("RGB").getpixel((0, 0)) == (0, 255, 255)  # inverted red
    with Image.open(out / "rotated.jpg") as upright:
        assert upright.size == (20, 30)  # EXIF orientation applied
    with Image.open(out / "grey16.png") as grey:
        assert grey.mode in ("I;16", "I", "RGB") and grey.size == (12, 10)
    with Image.open(out / "greyalpha.png") as la, Image.open(corpus / "greyalpha.png") as source:
        np.testing.assert_array_equal(np.asarray(la.convert("RGBA"))[..., 3], np.asarray(source)[..., 1])
    with Image.open(out / "cmyk.jpg") as cmyk:
        r, g, b = cmyk.convert("RGB").getpixel((5, 5))
        assert r < 60 and g > 200 and b < 60  # CMYK magenta (255, 0, 255 in RGB) inverted


def test_bomb_override_and_all_frames(site: Path, corpus: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = run_batch(site, str(corpus / "bomb.png"), str(corpus / "anim.gif"), "-o", str(out), "--filter", "bt-invert",
                       "--max-pixels", "3000000", "--all-frames", "--report", str(report))
    assert result.returncode == 0, result.stderr
    rows = _rows(report)
    assert rows["bomb.png"]["status"] == "ok"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "anim_f000.png", "anim_f001.png", "anim_f002.png", "bomb.png"]
    colours = [Image.open(out / f"anim_f{i:03d}.png").convert("RGB").getpixel((0, 0)) for i in range(3)]
    assert colours[0] == (0, 255, 255) and colours[2] == (255, 255, 0)  # inverted red ... inverted blue
