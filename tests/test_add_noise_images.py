"""``add-noise`` with any image as the noise: the documented mapping, fit-noise's PNG re-saved at 8 bits, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neurofilters
from neurofilters.filters.hallucinate.noise import encode_noise_image, quantise
from neurofilters.plugin_host import load_image, save_image
from neurofilters.plugin_host.cli.main import main


def _save_rgb8(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def test_a_real_photo_with_alpha_as_noise_gives_the_documented_change(tmp_path: Path, chelsea: np.ndarray, coffee: np.ndarray) -> None:
    height, width = chelsea.shape[:2]
    photo = _save_rgb8(tmp_path / "chelsea.png", chelsea)
    # The coffee photo, cut to the cat's size, with an alpha ramp (opaque on the left, transparent on the right).
    codes = np.round(coffee[:height, :width] * 255).astype(np.uint8)
    alpha = np.round(np.linspace(255, 0, width))[None, :].repeat(height, 0).astype(np.uint8)
    Image.fromarray(np.dstack([codes, alpha]), "RGBA").save(tmp_path / "coffee.png")

    result = neurofilters.apply("add-noise", photo, noise=tmp_path / "coffee.png", strength=0.5)

    photo_codes = np.asarray(Image.open(photo), np.float64)
    # The documented rule: (c - 127.5) / 4 in 1/255 units, times the strength and the alpha.
    change = (codes.astype(np.float64) - 127.5) / 4 / 255 * 0.5 * (alpha[:, :, None] / 255.0)
    expected = np.clip(photo_codes / 255 + change, 0, 1)
    np.testing.assert_allclose(np.asarray(result.pixels, np.float64), expected, atol=2e-6)
    assert np.abs(change).max() > 10 / 255 / 4  # a real, visible change, not a no-op
    np.testing.assert_allclose(result.pixels[:, -1], photo_codes[:, -1] / 255, atol=2e-6)  # transparent: unchanged

    # The command line writes the same picture (8 bits, like its input).
    out = tmp_path / "out.png"
    assert main(["run", "add-noise", str(photo), "-o", str(out), "--noise", str(tmp_path / "coffee.png"), "--strength", "0.5", "-q"]) == 0
    written = np.asarray(Image.open(out), np.float64)
    assert np.abs(written - np.round(expected * 255)).max() <= 1


def test_any_size_and_grey_noise_images_are_stretched_and_shared_by_the_colours(tmp_path: Path, chelsea: np.ndarray) -> None:
    photo = np.full((40, 60, 3), 0.5, np.float32)
    Image.fromarray(np.full((5, 7), 160, np.uint8), "L").save(tmp_path / "grey.png")
    result = neurofilters.apply("add-noise", photo, noise=tmp_path / "grey.png", strength=2.0)
    assert result.pixels.shape == (40, 60, 3)
    np.testing.assert_allclose(result.pixels, 0.5 + 2.0 * (160 - 127.5) / 4 / 255, atol=2e-6)
    # Mid-grey is no change (below an 8-bit step): the photo comes back.
    Image.fromarray(np.full((3, 3, 3), 128, np.uint8)).save(tmp_path / "mid.png")
    same = neurofilters.apply("add-noise", chelsea, noise=tmp_path / "mid.png")
    assert np.abs(same.pixels - chelsea).max() <= 0.125 / 255 + 1e-6


def test_fit_noise_png_resaved_at_8_bits_round_trips_closely(tmp_path: Path, chelsea: np.ndarray) -> None:
    bound = 10 / 255
    rng = np.random.default_rng(3)
    learned = quantise(rng.uniform(-bound, bound, (64, 64, 3)) * np.linspace(0.2, 1, 64)[None, :, None], bound)
    # What fit-noise writes beside its .npz ...
    save_image(tmp_path / "noise.png", encode_noise_image(learned), bit_depth=16)
    # ... opened in an editor and exported at 8 bits (values rounded to the nearest code).
    sixteen = load_image(tmp_path / "noise.png")
    assert sixteen.bit_depth == 16
    _save_rgb8(tmp_path / "noise-8bit.png", sixteen.pixels)

    exact = neurofilters.apply("add-noise", chelsea, noise=tmp_path / "noise.png")
    resaved = neurofilters.apply("add-noise", chelsea, noise=tmp_path / "noise-8bit.png")
    # Against the learned noise itself (stretched as add-noise does: the 16-bit file is exact).
    from neurofilters.filters.hallucinate.noise import add_noise

    np.testing.assert_allclose(exact.pixels, add_noise(chelsea, learned), atol=1e-6)
    gap = np.abs(resaved.pixels - exact.pixels).max()
    assert gap <= 0.125 / 255 + 1e-6, gap * 255
    assert np.abs(resaved.pixels - chelsea).max() > 5 / 255  # the noise is there


@pytest.mark.parametrize("content", [b"not an image at all", b"npz"])
def test_a_file_that_is_no_image_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    photo = _save_rgb8(tmp_path / "photo.png", np.full((8, 8, 3), 0.5))
    if content == b"npz":
        bad = tmp_path / "flamingo-noise.npz"
        np.savez(bad, noise=np.zeros((4, 4, 3), np.float32))
    else:
        bad = tmp_path / "damaged noise.png"
        bad.write_bytes(content)
    capsys.readouterr()
    assert main(["run", "add-noise", str(photo), "-o", str(tmp_path / "out.png"), "--noise", str(bad)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error, error
    assert str(bad) in error and "--noise" in error
    assert not (tmp_path / "out.png").exists()
