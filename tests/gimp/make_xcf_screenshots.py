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
from make_screenshots import read_xwd  # noqa: E402

DISPLAY = ":97"  # this script's own Xvfb display


def _xdotool(chroot: GimpChroot, *args: str) -> str:
    """Run ``xdotool`` on :data:`DISPLAY`; its output."""
    return chroot.run(["xdotool", *args], env={"DISPLAY": DISPLAY}, timeout=30).stdout.strip()


def _wait_for_window(chroot: GimpChroot, title_regex: str, timeout: float = 120) -> str:
    """The id of the visible window whose title matches ``title_regex``."""
    deadline = time.monotonic() + timeout
    while True:
        found = _xdotool(chroot, "search", "--onlyvisible", "--name", title_regex).split()
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise RuntimeError(f"No window titled like {title_regex!r} within {timeout:g} s")
        time.sleep(0.5)

SCREEN = (1400, 900)
CROP = (440, 300, 1400, 800)  # left, top, right, bottom in the window at SCREEN size
OPEN = """
from gi.repository import Gimp, Gio
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{path}"))
Gimp.Display.new(image)
Gimp.displays_flush()
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


def grab_window(root: Path, xcf: Path, name: str, work: Path) -> np.ndarray:
    """Open ``xcf`` in GIMP 3's window on a virtual display and return a picture of the window."""
    inside = "/tmp/nf-xcf-shots"
    host = root / inside.lstrip("/")
    host.mkdir(parents=True, exist_ok=True)
    (host / xcf.name).write_bytes(xcf.read_bytes())
    profile = f"{inside}/profile-{name}"
    (root / profile.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / profile.lstrip("/") / "gimprc").write_text("(show-welcome-dialog no)\n(show-tips no)\n")
    with GimpChroot(root) as chroot:
        xvfb = chroot.popen(["Xvfb", DISPLAY, "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        gimp = chroot.popen(["gimp-3.0", "--no-splash", "--batch-interpreter=python-fu-eval", "-b", "-"],
                            env={"DISPLAY": DISPLAY, "GIMP3_DIRECTORY": profile, "NO_AT_BRIDGE": "1"},
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert gimp.stdin is not None
        gimp.stdin.write(OPEN.format(path=f"{inside}/{xcf.name}"))
        gimp.stdin.close()
        try:
            window = _wait_for_window(chroot, f"{xcf.stem}.*GIMP")
            _xdotool(chroot, "windowsize", window, str(SCREEN[0]), str(SCREEN[1]))
            time.sleep(6)  # let GIMP lay out and draw the canvas and the docks
            dump = f"{inside}/{name}.xwd"
            done = chroot.run(["xwd", "-id", window, "-silent", "-out", dump], env={"DISPLAY": DISPLAY}, timeout=60)
            if done.returncode != 0:
                raise RuntimeError(f"xwd failed: {done.stderr}")
            return read_xwd(root / dump.lstrip("/"))
        finally:
            gimp.kill()
            xvfb.kill()
            gimp.wait()
            xvfb.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs" / "assets")
    args = parser.parse_args(argv)
    root = ensure_chroot(extra_packages=("xvfb", "x11-apps", "xdotool"))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        source = collage(work / "in" / "collage.xcf")
        done = subprocess.run([sys.executable, "-m", "neurofilters", "batch", str(source), "-o", str(work / "out"),
                               "--filter", "deepdream", "--octaves", "2", "--steps", "4"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        before = grab_window(root, source, "before", work)
        after = grab_window(root, work / "out" / "collage.xcf", "after", work)
    args.out.mkdir(parents=True, exist_ok=True)
    for pixels, name in ((before, "xcf-layers-before.png"), (after, "xcf-layers-after.png")):
        picture = Image.fromarray(pixels[CROP[1] : CROP[3], CROP[0] : CROP[2]])  # the canvas and the Layers dock
        picture.quantize(colors=256, dither=Image.Dither.FLOYDSTEINBERG).save(args.out / name, optimize=True)
    print(f"wrote {args.out / 'xcf-layers-before.png'} and {args.out / 'xcf-layers-after.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
