"""GIMP 3 with its user interface, on a virtual X display (Xvfb) in the chroot.

Some things only the user interface can do: GIMP 3.0's PDB and libgimp have
no way to *perform* an undo (only ``gimp-image-undo-group-start/-end``,
``-enable/-disable``, ``-freeze/-thaw`` and ``-is-enabled``). The undo test
therefore starts the real ``gimp-3.0`` under ``Xvfb``, lets batch code prepare
images and run filters, presses Ctrl+Z in an image window with ``xdotool``
(real X key events through XTEST, as a user's keyboard) and lets the batch code
read the pixels afterwards. Batch code and test meet through marker files.

Needs the chroot's ``xvfb`` and ``xdotool`` packages (:data:`GUI_PACKAGES`;
installed into the chroot on demand).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from gimp_chroot import GimpChroot
from gimp_session import GimpSession

__all__ = ["GUI_PACKAGES", "GimpGui", "image_window_title"]

GUI_PACKAGES = ("xvfb", "xdotool")


class GimpGui:
    """``gimp-3.0`` (with its windows) running batch ``code`` on a fresh Xvfb display.

    Args:
        session: The profile (plug-in installed) and work folder.
        code: Python for ``python-fu-eval``.
        env: More environment variables for GIMP.
    """

    def __init__(self, session: GimpSession, code: str, env: dict[str, str] | None = None) -> None:
        self.session = session
        self.chroot: GimpChroot = session.chroot
        self.code = code
        self.env = env or {}
        self.display = ""
        self._xvfb: subprocess.Popen[str] | None = None
        self._gimp: subprocess.Popen[str] | None = None
        self.log_path = session.host / "gimp-gui.log"

    def __enter__(self) -> GimpGui:
        # -displayfd: Xvfb picks a free display number and prints it, so parallel runs never collide.
        self._xvfb = self.chroot.popen(
            ["Xvfb", "-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
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


def image_window_title(image_id: int) -> str:
    """A regex for the title of an unsaved image's window: ``[Untitled]-<id>.0 (...) – GIMP``."""
    return rf"\[Untitled\]-{image_id}\.0 "

