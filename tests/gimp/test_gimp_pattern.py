"""The real GIMP 3 loads a ``.pat`` written by ``neurofilters`` as a pattern and bucket-fills with it.

Run with ``NEUROFILTERS_GIMP_ROOT=/var/tmp/nf-root-texture`` (or any built chroot): see gimp_chroot.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from neurofilters.plugin_host.imageio.files import save_image

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

FILL_CODE = """
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, Gegl
Gimp.patterns_refresh()
pattern = Gimp.Pattern.get_by_name("nf-texture-test")
assert pattern is not None, "GIMP did not load the pattern"
ok, width, height, bpp = pattern.get_info()
image = Gimp.Image.new(WIDTH, HEIGHT, Gimp.ImageBaseType.RGB)
layer = Gimp.Layer.new(image, "fill", WIDTH, HEIGHT, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
image.insert_layer(layer, None, 0)
layer.fill(Gimp.FillType.WHITE)
Gimp.context_set_pattern(pattern)
layer.edit_bucket_fill(Gimp.FillType.PATTERN, 3.0, 3.0)
data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, WIDTH, HEIGHT), 1.0, "R'G'B' u8", Gegl.AbyssPolicy.CLAMP)
open("/tmp/nf-pattern-fill.bin", "wb").write(bytes(data))
print("PATTERN", width, height, bpp)
"""


def test_gimp_bucket_fills_with_a_pattern_we_wrote(gimp_chroot) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    tile = rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    gimp_dir = "/root/nf-pattern-test"
    patterns = gimp_chroot.host_path(f"{gimp_dir}/patterns")
    patterns.mkdir(parents=True, exist_ok=True)
    save_image(patterns / "nf-texture-test.pat", tile)
    width, height = 100, 60
    code = FILL_CODE.replace("WIDTH", str(width)).replace("HEIGHT", str(height))
    process = gimp_chroot.gimp_batch(code, gimp_dir=gimp_dir, timeout=240)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert "PATTERN 40 24 3" in process.stdout
    filled = np.frombuffer(gimp_chroot.host_path("/tmp/nf-pattern-fill.bin").read_bytes(), np.uint8).reshape(height, width, 3)
    expected = np.tile(tile, (3, 3, 1))[:height, :width]
    np.testing.assert_array_equal(filled, expected)
