"""Take the screenshots of ``docs/gimp.md`` from a real GIMP 3 running under Xvfb in the chroot.

Installs the plug-in (built-in filters only) into a fresh profile, opens
scikit-image's cat photo in the GIMP window, runs ``Filters > Neural > Dream >
DeepDream...`` interactively, asks for a preview (Alt+P) and waits for it,
photographs the dialog the plug-in built from the filter's parameter
declarations, presses OK and photographs the window with the result.

Run as root (installs ``xvfb x11-apps xdotool`` into the chroot once)::

    .venv/bin/python tests/gimp/make_screenshots.py [--out docs/assets]
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.fspath(HERE))

from gimp_chroot import GimpChroot, ensure_chroot, python_bind_paths  # noqa: E402
from gimp_session import GimpSession, plugin_environment  # noqa: E402

DISPLAY = ":99"
SCREEN = (1600, 1400)
GUI_BATCH = """
import time
from gi.repository import Gimp, Gio
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{photo}"))
Gimp.Display.new(image)
Gimp.displays_flush()
layer = image.get_layers()[0]
image.set_selected_layers([layer])
procedure = Gimp.get_pdb().lookup_procedure("neurofilters-deepdream")
config = procedure.create_config()
config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
config.set_property("image", image)
config.set_core_object_array("drawables", [layer])
result = procedure.run(config)
Gimp.displays_flush()
open("{done}", "w").write(result.index(0).value_nick)
"""


def _xdotool(chroot: GimpChroot, *args: str) -> str:
    result = chroot.run(["xdotool", *args], env={"DISPLAY": DISPLAY}, timeout=30)
    return result.stdout.strip()


def _wait_for_window(chroot: GimpChroot, name: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _xdotool(chroot, "search", "--onlyvisible", "--name", name).split()
        if found:
            return found[-1]
        time.sleep(0.5)
    raise RuntimeError(f"No window named {name!r} appeared within {timeout:g} s")


def _grab(chroot: GimpChroot, session: GimpSession, target: list[str], name: str) -> Path:
    inside = f"{session.inside}/{name}.xwd"
    result = chroot.run(["xwd", *target, "-silent", "-out", inside], env={"DISPLAY": DISPLAY}, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"xwd failed: {result.stderr}")
    return Path(inside)


def read_xwd(path: Path) -> np.ndarray:
    """Decode an X window dump (TrueColor, ZPixmap, 24/32 bits per pixel) into H x W x 3 uint8."""
    raw = path.read_bytes()
    fields = struct.unpack(">25I", raw[:100])
    header_size, _, pixmap_format, _, width, height = fields[:6]
    byte_order, bits_per_pixel, bytes_per_line = fields[7], fields[11], fields[12]
    masks, colours = fields[14:17], fields[19]
    if pixmap_format != 2 or bits_per_pixel != 32:
        raise RuntimeError(f"Expected a 32-bit ZPixmap dump. Received: format={pixmap_format}, bpp={bits_per_pixel}")
    start = header_size + 12 * colours
    rows = np.frombuffer(raw, dtype=np.uint8, count=bytes_per_line * height, offset=start).reshape(height, bytes_per_line)
    pixels = rows[:, : width * 4].copy().view(">u4" if byte_order else "<u4")[:, :width].astype(np.uint32)
    channels = []
    for mask in masks:
        shift = (mask & -mask).bit_length() - 1
        channels.append(((pixels & mask) >> shift).astype(np.uint8))
    return np.stack(channels, axis=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs" / "assets")
    args = parser.parse_args(argv)
    for key, value in plugin_environment(with_test_plugin=False).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    root = ensure_chroot(extra_packages=("xvfb", "x11-apps", "xdotool"))
    from skimage import data

    with GimpChroot(root, python_bind_paths(sys.executable)) as chroot:
        session = GimpSession(chroot, "nf-shots")
        session.install()
        (session.profile_host / "gimprc").write_text("(show-welcome-dialog no)\n(show-tips no)\n")
        Image.fromarray(np.asarray(data.chelsea())).save(session.host / "chelsea.png")
        done = f"{session.inside}/done.txt"
        xvfb = chroot.popen(
            ["Xvfb", DISPLAY, "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2)
        gimp = chroot.popen(
            ["gimp-3.0", "--no-splash", "--batch-interpreter=python-fu-eval", "-b", "-"],
            env={
                "DISPLAY": DISPLAY,
                "GIMP3_DIRECTORY": session.profile_inside,
                "NO_AT_BRIDGE": "1",
                "NEUROFILTERS_GIMP_LOG": f"{session.inside}/calls.jsonl",
            },
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        gimp.stdin.write(GUI_BATCH.format(photo=f"{session.inside}/chelsea.png", done=done))
        gimp.stdin.close()
        try:
            dialog = _wait_for_window(chroot, "^DeepDream")
            time.sleep(3)  # let it draw
            _xdotool(chroot, "windowfocus", "--sync", dialog)
            _xdotool(chroot, "key", "--clearmodifiers", "alt+p")
            calls = chroot.host_path(f"{session.inside}/calls.jsonl")
            deadline = time.monotonic() + 300
            while not (calls.exists() and '"status": "done"' in calls.read_text()):
                if time.monotonic() > deadline:
                    raise RuntimeError("The dialog's preview did not finish within 5 minutes")
                time.sleep(1)
            time.sleep(2)
            dialog_xwd = _grab(chroot, session, ["-id", dialog], "dialog")
            _xdotool(chroot, "windowfocus", "--sync", dialog)
            _xdotool(chroot, "key", "--clearmodifiers", "Return")
            deadline = time.monotonic() + 900
            while not chroot.host_path(done).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("DeepDream did not finish within 15 minutes")
                time.sleep(1)
            time.sleep(3)
            window = _wait_for_window(chroot, "integer.*GIMP")  # the image window's title names the precision
            result_xwd = _grab(chroot, session, ["-id", window], "result")
            status = chroot.host_path(done).read_text()
            print(f"DeepDream finished: {status}")
            print(chroot.host_path(f"{session.inside}/calls.jsonl").read_text().strip())
        finally:
            gimp.kill()
            xvfb.kill()
            gimp.wait()
            xvfb.wait()
        args.out.mkdir(parents=True, exist_ok=True)
        for source, name in ((dialog_xwd, "gimp-dialog.png"), (result_xwd, "gimp-result.png")):
            picture = Image.fromarray(read_xwd(chroot.host_path(source)))
            # 256 colours keep the photo-heavy screenshot small in the repository
            picture.quantize(colors=256, dither=Image.Dither.FLOYDSTEINBERG).save(args.out / name, optimize=True)
    print(f"wrote {args.out / 'gimp-dialog.png'} and {args.out / 'gimp-result.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
