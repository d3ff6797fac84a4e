"""Take the bucket-fill screenshot of ``docs/filters/texture.md`` from a real GIMP 3 under Xvfb in the chroot.

Synthesises a small tileable pattern with our own command line
(``neurofilters run texture ... -o nf-leopard.pat --tileable``, the sample
being GIMP's own ``Animal/leopard.pat`` from the chroot's ``gimp-data``) straight
into a fresh GIMP profile's ``patterns`` folder, makes it the active pattern and
the Bucket Fill tool's fill type (``contextrc`` and the tool's options file, as
GIMP saves them itself), opens scikit-image's cat photo, selects an ellipse,
raises the Patterns dockable (Shift+Ctrl+P), picks the Bucket Fill tool
(Shift+B) and clicks into the selection, through real X key and pointer events
(``xdotool``). GIMP's batch code then hands back the layer's pixels, the script
checks that the ellipse holds the pattern repeated from the image's origin, and
photographs the window into ``texture-gimp-fill.jpg``.

Run as root (installs ``xvfb x11-apps xdotool`` into the chroot once)::

    .venv/bin/python tests/gimp/make_texture_screenshot.py [--out docs/assets] [--steps 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.fspath(HERE))

from gimp_chroot import GimpChroot, ensure_chroot  # noqa: E402
from gimp_gui import GimpGui, image_window_title  # noqa: E402
from gimp_session import GimpSession  # noqa: E402

PATTERN = "nf-leopard"
SAMPLE = "/usr/share/gimp/3.0/patterns/Animal/leopard.pat"  # in the chroot (Debian's gimp-data)
WINDOW = (1000, 620)
ELLIPSE = (150, 14, 290, 272)  # x, y, width, height in the 451 x 300 photo: over two tiles each way

GUI_BATCH = """
import json
import os
import time
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, Gegl, Gio

def wait_for(path):
    started = time.time()
    while not os.path.exists(path) and time.time() - started < 300:
        time.sleep(0.2)

image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{photo}"))
image.select_ellipse(Gimp.ChannelOps.REPLACE, {x}, {y}, {w}, {h})
Gimp.Display.new(image)
Gimp.displays_flush()
open("{work}/ready.json", "w").write(json.dumps({{"image": image.get_id()}}))
wait_for("{work}/filled")
layer = image.get_layers()[0]
width, height = layer.get_width(), layer.get_height()
data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, "R'G'B' u8", Gegl.AbyssPolicy.CLAMP)
open("{work}/filled.raw", "wb").write(bytes(data))
open("{work}/pixels.json", "w").write(json.dumps({{"width": width, "height": height}}))
wait_for("{work}/release")  # GIMP quits after this code
"""


def synthesise(pattern: Path, sample: Path, size: int, steps: int, seed: int) -> float:
    """Write a tileable ``size`` x ``size`` texture from ``sample`` as the GIMP pattern ``pattern``; seconds taken."""
    canvas = pattern.parent / "canvas.png"
    Image.new("RGB", (size, size), "white").save(canvas)
    started = time.monotonic()
    argv = [sys.executable, "-m", "neurofilters", "run", "texture", os.fspath(canvas), "-o", os.fspath(pattern),
            "--source", os.fspath(sample), "--tileable", "--steps", str(steps), "--seed", str(seed)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True)
    canvas.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"neurofilters run texture failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def prepare_profile(profile: Path) -> None:
    """Make the pattern the active one and Bucket Fill (pattern, whole selection) the active tool.

    The same lines GIMP writes into ``contextrc`` and ``tool-options/`` when a
    user picks them and quits.
    """
    (profile / "contextrc").write_text(f'(pattern "{PATTERN}")\n')
    (profile / "tool-options").mkdir(exist_ok=True)
    (profile / "tool-options" / "gimp-bucket-fill-tool").write_text(
        f'(fill-mode pattern)\n(fill-area selection)\n(pattern "{PATTERN}")\n'
    )


def locate(screen: np.ndarray, photo: np.ndarray) -> tuple[int, int]:
    """Where the photo's top-left pixel is in a screenshot of the window (the canvas shows it at 100 %)."""
    middle = photo.shape[0] // 2
    stretch = photo[middle, :64].astype(np.int16)  # a piece of one row, left of the ellipse
    screen = screen.astype(np.int16)
    for y, x in np.argwhere(np.abs(screen - stretch[0]).max(axis=2) <= 12):
        piece = screen[y, x : x + 64]
        if len(piece) == 64 and np.abs(piece - stretch).max() <= 12:
            return int(x), int(y - middle)
    raise RuntimeError("The photo is not visible at 100 % in the GIMP window.")


def check_fill(filled: np.ndarray, tile: np.ndarray) -> float:
    """Fraction of the ellipse's inner rectangle equal to the pattern repeated from the image's origin."""
    x, y, w, h = ELLIPSE
    inner = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))  # inside the ellipse
    reps = (filled.shape[0] // tile.shape[0] + 1, filled.shape[1] // tile.shape[1] + 1, 1)
    expected = np.tile(tile, reps)[: filled.shape[0], : filled.shape[1]]
    return float(np.mean(np.all(filled[inner] == expected[inner], axis=2)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs" / "assets")
    parser.add_argument("--size", type=int, default=128, help="the pattern's side in pixels")
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps per octave of the synthesis")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    root = ensure_chroot(extra_packages=("xvfb", "x11-apps", "xdotool"))
    from skimage import data

    from neurofilters.plugin_host.imageio.files import load_image

    photo = np.asarray(data.chelsea())
    with GimpChroot(root) as chroot:
        session = GimpSession(chroot, "nf-texture-shot")
        patterns = session.profile_host / "patterns"
        patterns.mkdir()
        seconds = synthesise(patterns / f"{PATTERN}.pat", chroot.host_path(SAMPLE), args.size, args.steps, args.seed)
        print(f"synthesised {PATTERN}.pat ({args.size} px, {args.steps} steps) in {seconds:.0f} s")
        tile = np.asarray(load_image(patterns / f"{PATTERN}.pat").pixels)
        tile = (np.clip(tile, 0, 1) * 255 + 0.5).astype(np.uint8)
        prepare_profile(session.profile_host)
        Image.fromarray(photo).save(session.host / "chelsea.png")
        x, y, w, h = ELLIPSE
        code = GUI_BATCH.format(photo=f"{session.inside}/chelsea.png", work=session.inside, x=x, y=y, w=w, h=h)
        with GimpGui(session, code) as gui:
            ready = gui.wait_for_file(f"{session.inside}/ready.json", timeout=180)
            window = gui.window(image_window_title(ready["image"]), timeout=120)
            gui.close_welcome()
            gui.xdotool("windowsize", "--sync", window, str(WINDOW[0]), str(WINDOW[1]))
            time.sleep(3)
            gui.press(window, "shift+ctrl+p")  # raise the Patterns dockable
            time.sleep(1)
            gui.press(window, "shift+b")  # the Bucket Fill tool
            time.sleep(3)  # let GIMP lay out and draw the canvas and the docks
            screen = gui.grab(window, "before")
            left, top = locate(screen, photo)
            gui.xdotool("mousemove", "--window", window, str(left + x + w // 2), str(top + y + h // 2))
            time.sleep(0.5)
            gui.xdotool("click", "1")
            time.sleep(2)
            chroot.host_path(f"{session.inside}/filled").write_text("")
            size = gui.wait_for_file(f"{session.inside}/pixels.json", timeout=120)
            raw = chroot.host_path(f"{session.inside}/filled.raw").read_bytes()
            filled = np.frombuffer(raw, np.uint8).reshape(size["height"], size["width"], 3)
            share = check_fill(filled, tile)
            gui.xdotool("mousemove", "--window", window, str(left + x + w - 30), str(top + y + h - 60))
            time.sleep(2)
            shot = gui.grab(window, "filled")
            chroot.host_path(f"{session.inside}/release").write_text("")
    if share < 1.0:
        raise RuntimeError(f"Only {share:.1%} of the ellipse's inside is the pattern tiled from the origin.")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "texture-gimp-fill.jpg"
    Image.fromarray(shot).save(target, quality=88, optimize=True)
    print(f"the fill is the pattern tiled ({share:.1%} of the ellipse's inner rectangle); wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
