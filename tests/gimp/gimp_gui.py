"""GIMP 3 with its user interface, on a virtual X display (Xvfb) in the chroot.

Some things only the user interface can do: GIMP 3.0's PDB and libgimp have
no way to *perform* an undo (only ``gimp-image-undo-group-start/-end``,
``-enable/-disable``, ``-freeze/-thaw`` and ``-is-enabled``). The undo test
therefore starts the real ``gimp-3.0`` under ``Xvfb``, lets batch code prepare
images and run filters, presses Ctrl+Z in an image window with ``xdotool``
(real X key events through XTEST, as a user's keyboard) and lets the batch code
read the pixels afterwards. Batch code and test meet through marker files.

Needs the chroot's ``xvfb`` and ``xdotool`` packages (:data:`GUI_PACKAGES`;
installed into the chroot on demand), and ``x11-apps`` for :meth:`GimpGui.grab`
(``xwd``). The tests, the screenshot scripts of ``docs/`` and the benchmarks all
drive GIMP's windows through this one class.
"""

from __future__ import annotations

import json
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from gimp_chroot import GimpChroot
from gimp_session import GimpSession

__all__ = ["GUI_PACKAGES", "GimpGui", "image_window_title", "read_xwd"]

GUI_PACKAGES = ("xvfb", "xdotool")


class GimpGui:
    """``gimp-3.0`` (with its windows) running batch ``code`` on a fresh Xvfb display.

    Args:
        session: The profile (plug-in installed) and work folder.
        code: Python for ``python-fu-eval``.
        env: More environment variables for GIMP.
        screen: Width and height of the virtual screen.
    """

    def __init__(self, session: GimpSession, code: str, env: dict[str, str] | None = None,
                 screen: tuple[int, int] = (1280, 1024)) -> None:
        self.session = session
        self.chroot: GimpChroot = session.chroot
        self.code = code
        self.env = env or {}
        self.screen = screen
        self.display = ""
        self._xvfb: subprocess.Popen[str] | None = None
        self._gimp: subprocess.Popen[str] | None = None
        self.log_path = session.host / "gimp-gui.log"

    def __enter__(self) -> GimpGui:
        # -displayfd: Xvfb picks a free display number and prints it, so parallel runs never collide.
        self._xvfb = self.chroot.popen(
            ["Xvfb", "-displayfd", "1", "-screen", "0", f"{self.screen[0]}x{self.screen[1]}x24", "-nolisten", "tcp"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        number = self._xvfb.stdout.readline().strip() if self._xvfb.stdout else ""
        if not number.isdigit():
            self.__exit__()
            raise RuntimeError(f"Xvfb did not report its display. Received: {number!r}")
        self.display = f":{number}"
        (self.session.profile_host / "gimprc").write_text("(show-welcome-dialog no)\n(show-tips no)\n")
        with open(self.log_path, "w") as log:
            self._gimp = self.chroot.popen(
                ["gimp-3.0", "--no-splash", "--batch-interpreter=python-fu-eval", "-b", "-", "--quit"],
                env={"DISPLAY": self.display, "GIMP3_DIRECTORY": self.session.profile_inside, "NO_AT_BRIDGE": "1", **self.env},
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert self._gimp.stdin is not None
        self._gimp.stdin.write(self.code)
        self._gimp.stdin.close()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process in (self._gimp, self._xvfb):
            if process is not None and process.poll() is None:
                process.kill()
        for process in (self._gimp, self._xvfb):
            if process is not None:
                process.wait(timeout=30)
                if process.stdout:
                    process.stdout.close()

    def log(self) -> str:
        """GIMP's output so far (for assertion messages)."""
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def wait_for_file(self, inside: str, timeout: float = 180) -> Any:
        """Wait until the batch code wrote the JSON file ``inside`` (a chroot path) and return its content."""
        path = self.chroot.host_path(inside)
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self._gimp is not None and self._gimp.poll() is not None:
                raise RuntimeError(f"GIMP exited with {self._gimp.returncode} before writing {inside}.\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"GIMP did not write {inside} within {timeout:g} s.\n{self.log()}")
            time.sleep(0.2)
        time.sleep(0.1)  # written in one call, but let the writer close it
        return json.loads(path.read_text())

    def xdotool(self, *args: str) -> str:
        """Run ``xdotool`` on this display; its output."""
        result = self.chroot.run(["xdotool", *args], env={"DISPLAY": self.display}, timeout=30)
        if result.returncode != 0 and args[0] != "search":
            raise RuntimeError(f"xdotool {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    def window(self, title_regex: str, timeout: float = 60) -> str:
        """The id of the visible window whose title matches ``title_regex``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.xdotool("search", "--onlyvisible", "--name", title_regex).split()
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise RuntimeError(f"No window titled like {title_regex!r} within {timeout:g} s.\n{self.log()}")
            time.sleep(0.3)

    def press(self, window: str, keys: str) -> None:
        """Focus ``window`` and type ``keys`` (e.g. ``ctrl+z``) as a keyboard would."""
        self.xdotool("windowfocus", "--sync", window)
        self.xdotool("key", "--clearmodifiers", keys)

    def close_welcome(self, wait: float = 5) -> None:
        """Close GIMP's "Welcome" dialog if it shows within ``wait`` seconds.

        A fresh profile gets it despite ``show-welcome-dialog no``, and it would cover the image window.
        """
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            found = self.xdotool("search", "--onlyvisible", "--name", "^Welcome to GIMP").split()
            if found:
                self.press(found[-1], "Escape")
                time.sleep(1)
                if self.xdotool("search", "--onlyvisible", "--name", "^Welcome to GIMP"):
                    raise RuntimeError("GIMP's Welcome dialog did not close on Escape.")
                return
            time.sleep(0.5)

    def grab(self, window: str, name: str) -> np.ndarray:
        """A picture of ``window`` (``xwd``, kept as ``<name>.xwd`` in the session folder), H x W x 3 uint8."""
        inside = f"{self.session.inside}/{name}.xwd"
        result = self.chroot.run(["xwd", "-id", window, "-silent", "-out", inside], env={"DISPLAY": self.display}, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"xwd failed: {result.stderr}")
        return read_xwd(self.chroot.host_path(inside))


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


def image_window_title(image_id: int) -> str:
    """A regex for the title of an unsaved image's window: ``[Untitled]-<id>.0 (...) – GIMP``."""
    return rf"\[Untitled\]-{image_id}\.0 "

