"""Running a command on a pseudo-terminal and reading what a user's terminal would show afterwards."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyte

#: The ``neurofilters`` command of the environment running the tests.
NEUROFILTERS = str(Path(sys.executable).with_name("neurofilters"))


@dataclass
class TerminalRun:
    """What a command left on an emulated terminal.

    Attributes:
        code: The exit status.
        screen: The screen's lines after the command ended, right-stripped, trailing blanks dropped.
        raw: Everything the command wrote (escape sequences included), decoded.
        stamps: ``(seconds since start, text)`` of each chunk read, for timing checks.
    """

    code: int
    screen: list[str]
    raw: str
    stamps: list[tuple[float, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The screen as one string."""
        return "\n".join(self.screen)


def run_on_terminal(
    argv: Sequence[str], *, env: dict[str, str] | None = None, columns: int = 160, rows: int = 60, timeout: float = 300.0
) -> TerminalRun:
    """Run ``argv`` with standard input, output and error on one pty, as in a terminal window.

    Args:
        argv: The command.
        env: Extra environment variables.
        columns: The terminal's width.
        rows: Its height (make it tall enough that nothing scrolls away).
        timeout: Seconds before the command is killed (the test then fails).
    """
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    environment = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows), **(env or {})}
    environment.pop("NO_COLOR", None)
    if "NEUROFILTERS_QUIET_NATIVE" not in (env or {}):
        environment.pop("NEUROFILTERS_QUIET_NATIVE", None)  # the default, whatever an earlier test left behind
    start = time.monotonic()
    process = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=environment, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    stamps: list[tuple[float, str]] = []
    try:
        while True:
            if time.monotonic() - start > timeout:
                process.kill()
                raise AssertionError(f"{argv} ran past {timeout} s")
            ready, _, _ = select.select([master], [], [], 0.05)
            data = b""
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the pty
                    data = b""
            if data:
                chunks.append(data)
                stamps.append((time.monotonic() - start, data.decode("utf-8", "replace")))
            elif process.poll() is not None:
                break
            elif ready:
                time.sleep(0.05)  # EIO before the exit status is in
    finally:
        process.wait()
        os.close(master)
    raw = b"".join(chunks).decode("utf-8", "replace")
    screen = pyte.Screen(columns, rows)
    stream = pyte.Stream(screen)
    stream.feed(raw.replace("\n", "\r\n").replace("\r\r\n", "\r\n"))  # the pty's ONLCR, which pyte does not do
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return TerminalRun(process.returncode, lines, raw, stamps)
