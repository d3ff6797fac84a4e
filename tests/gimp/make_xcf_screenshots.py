"""Take the before/after screenshots of ``docs/batch.md``'s XCF section from a real GIMP 3 under Xvfb.

Builds a layered XCF from scikit-image's sample photos (a background, a group
holding a masked layer and a nested group with an offset multiply layer), runs
``neurofilters batch --filter deepdream`` on it (each layer filtered, the tree
kept), opens the input and the output in the GIMP 3 window (in the chroot,
on a virtual display) and photographs each window with its Layers dock.

Run as root (installs ``xvfb x11-apps xdotool`` into the chroot once)::

    .venv/bin/python tests/gimp/make_xcf_screenshots.py [--out docs/assets]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.fspath(HERE))

from gimp_chroot import GimpChroot, ensure_chroot  # noqa: E402
from gimp_gui import GUI_PACKAGES, GimpGui  # noqa: E402
from gimp_session import GimpSession  # noqa: E402

SCREEN = (1400, 900)
CROP = (440, 300, 1400, 800)  # left, top, right, bottom in the window at SCREEN size
OPEN = """
import os
import time
from gi.repository import Gimp, Gio
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{path}"))
Gimp.Display.new(image)
Gimp.displays_flush()
started = time.time()
while not os.path.exists("{release}") and time.time() - started < 300:  # GIMP quits after this code
    time.sleep(0.2)
"""


def collage(path: Path) -> Path:
    """The example file: photos in a group, a nested group, a mask, a multiply layer with an offset."""
    from skimage import data

    from neurofilters.plugin_host.imageio.layered import Layer, LayeredImage
    from neurofilters.plugin_host.imageio.xcf import write_xcf

    def rgba(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        picture = Image.fromarray(array).convert("RGBA").resize(size, Image.Resampling.LANCZOS)
        return np.asarray(picture, dtype=np.float32) / 255

    cat = rgba(data.chelsea(), (451, 300))
    coffee = rgba(data.coffee(), (200, 133))
    rocket = rgba(data.rocket(), (150, 100))
    yy, xx = np.mgrid[0:133, 0:200]
    vignette = np.clip(1.4 - np.hypot((xx - 100) / 100, (yy - 66) / 66), 0, 1).astype(np.float32)
    details = Layer("Details", None, 20, 185, children=(Layer("rocket", rocket, 20, 185, opacity=0.85, mode=30),))
    group = Layer("Collage", None, 20, 15, children=(
        Layer("coffee", coffee, 235, 15, mask=vignette), details,
    ))
    return write_xcf(path, LayeredImage(451, 300, (group, Layer("cat", cat))))


def grab_window(chroot: GimpChroot, xcf: Path, name: str) -> np.ndarray:
    """Open ``xcf`` in GIMP 3's window on a virtual display and return a picture of the window."""
    session = GimpSession(chroot, f"nf-xcf-shot-{name}")
    (session.host / xcf.name).write_bytes(xcf.read_bytes())
    release = f"{session.inside}/release"
    code = OPEN.format(path=f"{session.inside}/{xcf.name}", release=release)
    with GimpGui(session, code, screen=SCREEN) as gui:
        window = gui.window(f"{xcf.stem}.*GIMP", timeout=120)
        gui.close_welcome()
        gui.xdotool("windowsize", window, str(SCREEN[0]), str(SCREEN[1]))
        time.sleep(6)  # let GIMP lay out and draw the canvas and the docks
        picture = gui.grab(window, name)
        chroot.host_path(release).write_text("")
    return picture


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs" / "assets")
    args = parser.parse_args(argv)
    root = ensure_chroot(extra_packages=(*GUI_PACKAGES, "x11-apps"))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        source = collage(work / "in" / "collage.xcf")
        done = subprocess.run([sys.executable, "-m", "neurofilters", "batch", str(source), "-o", str(work / "out"),
                               "--filter", "deepdream", "--octaves", "2", "--steps", "4"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        with GimpChroot(root) as chroot:
            before = grab_window(chroot, source, "before")
            after = grab_window(chroot, work / "out" / "collage.xcf", "after")
    args.out.mkdir(parents=True, exist_ok=True)
    for pixels, name in ((before, "xcf-layers-before.png"), (after, "xcf-layers-after.png")):
        picture = Image.fromarray(pixels[CROP[1] : CROP[3], CROP[0] : CROP[2]])  # the canvas and the Layers dock
        picture.quantize(colors=256, dither=Image.Dither.FLOYDSTEINBERG).save(args.out / name, optimize=True)
    print(f"wrote {args.out / 'xcf-layers-before.png'} and {args.out / 'xcf-layers-after.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
