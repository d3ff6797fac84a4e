"""GIMP patterns: what we write reads back identically with gimpformats; GIMP's own load as images and sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from texture_fixtures import gimp_pattern_dir

from neurofilters.plugin_host import ImageIOError
from neurofilters.plugin_host.imageio.files import load_image, save_image


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_a_pat_we_write_reads_back_identically_with_gimpformats(tmp_path: Path, channels: int) -> None:
    from gimpformats.GimpPatPattern import GimpPatPattern

    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 256, size=(23, 37, channels), dtype=np.uint8)
    target = save_image(tmp_path / "bricks.pat", pixels)
    pattern = GimpPatPattern(str(target))
    assert (pattern.width, pattern.height, pattern.bpp) == (37, 23, channels)
    assert pattern.name.rstrip("\x00") == "bricks"
    data = target.read_bytes()
    assert data[20:24] == b"GPAT" and int.from_bytes(data[:4], "big") == 24 + len("bricks") + 1
    assert data[int.from_bytes(data[:4], "big") - 1] == 0  # GIMP expects a NUL-terminated name
    read = np.asarray(pattern.image).reshape(23, 37, channels)
    np.testing.assert_array_equal(read, pixels)
    loaded = load_image(target)
    assert loaded.format == "PAT" and loaded.bit_depth == 8
    np.testing.assert_array_equal(np.round(loaded.pixels * 255).astype(np.uint8), pixels)


def test_a_broken_pat_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "broken.pat"
    path.write_bytes(b"\x00" * 40)
    with pytest.raises(ImageIOError, match="not a GIMP pattern"):
        load_image(path)
    good = save_image(tmp_path / "good.pat", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "cut.pat").write_bytes(good.read_bytes()[:-10])
    with pytest.raises(ImageIOError, match="truncated"):
        load_image(tmp_path / "cut.pat")


def test_gimps_own_patterns_load_like_gimpformats_reads_them(tmp_path_factory: pytest.TempPathFactory) -> None:
    from gimpformats.GimpPatPattern import GimpPatPattern

    folder = gimp_pattern_dir(tmp_path_factory)
    paths = sorted(folder.rglob("*.pat"))
    assert len(paths) >= 50
    depths = set()
    for path in paths:
        loaded = load_image(path)
        pattern = GimpPatPattern(str(path))
        depths.add(pattern.bpp)
        expected = np.asarray(pattern.image, np.uint8).reshape(pattern.height, pattern.width, pattern.bpp)
        np.testing.assert_array_equal(np.round(loaded.pixels * 255).astype(np.uint8), expected)
    assert {1, 3} <= depths


@pytest.mark.slow
def test_a_gimp_pattern_works_as_a_texture_source_on_the_command_line(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    from neurofilters.plugin_host.cli.main import main

    folder = gimp_pattern_dir(tmp_path_factory)
    source = next(path for path in sorted(folder.rglob("*.pat")) if load_image(path).pixels.shape[2] == 3 and min(load_image(path).pixels.shape[:2]) >= 64)
    canvas = tmp_path / "canvas.png"
    save_image(canvas, np.zeros((48, 48, 3), np.float32))
    out = tmp_path / "result.pat"
    code = main(["run", "texture", str(canvas), "-o", str(out), "--source", str(source), "--steps", "5", "--octaves", "1", "--tileable", "--precision", "float32"])
    assert code == 0
    result = load_image(out)
    assert result.pixels.shape == (48, 48, 3) and result.format == "PAT"
    sample = load_image(source).pixels
    # histogram matching: the result's colour means are the sample's
    np.testing.assert_allclose(result.pixels.reshape(-1, 3).mean(0), sample.reshape(-1, 3).mean(0), atol=0.03)


def test_the_installed_gimpformats_is_inside_the_declared_bound() -> None:
    """pyproject.toml bounds gimpformats on both sides, and what CI installed (and tested) satisfies it."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = [Requirement(line) for line in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]
    (gimpformats,) = [requirement for requirement in declared if requirement.name == "gimpformats"]
    assert {spec.operator for spec in gimpformats.specifier} >= {">=", "<"}, gimpformats  # an upper bound too
    assert gimpformats.specifier.contains(version("gimpformats")), (str(gimpformats), version("gimpformats"))
