"""A terminal progress bar with ETA that stays quiet for short work."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressBar:
    """Draws ``label  42% |#####     | 00:12<00:17 octave 2/4`` on a terminal.

    Nothing is drawn during the first ``delay`` seconds, so quick work stays
    silent. On a terminal the bar redraws in place; elsewhere (logs, CI) it
    writes a line at most every ``log_interval`` seconds.
    """

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        delay: float = 1.0,
        width: int = 24,
        log_interval: float = 10.0,
        clock: object = time.monotonic,
    ) -> None:
        """Create a bar.

        Args:
            label: Shown before the bar (the filter or file name).
            stream: Where to draw; standard error by default.
            delay: Seconds of silence before the first draw.
            width: Characters of the bar itself.
            log_interval: Seconds between lines when ``stream`` is not a terminal.
            clock: A ``time.monotonic``-like function (tests pass their own).
        """
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.width = width
        self.log_interval = log_interval
        self._clock = clock
        self._start = clock()  # type: ignore[operator]
        self._last_draw = float("-inf")
        self._drawn = False
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._first: tuple[float, float] | None = None  # (time, fraction) of the first report

    def __call__(self, fraction: float, message: str = "") -> None:
        """Update the bar (the signature of a filter progress callback)."""
        now = self._clock()  # type: ignore[operator]
        elapsed = now - self._start
        if self._first is None or fraction <= self._first[1]:
            # The ETA's origin is the last report before the fraction first moves, so
            # set-up reported at 0 % (model loading, tracing) does not inflate it.
            self._first = (now, fraction)
        if elapsed < self.delay:
            return
        if not self._tty and now - self._last_draw < self.log_interval and fraction < 1.0:
            return
        self._last_draw = now
        self._drawn = True
        eta = self._eta(now, fraction)
        self.stream.write(("\r" if self._tty else "") + self.render(fraction, message, elapsed, eta) + ("" if self._tty else "\n"))
        self.stream.flush()

    def _eta(self, now: float, fraction: float) -> float | None:
        """Seconds left, from the rate since the last report before the fraction first
        moved (set-up time such as model loading does not distort the estimate)."""
        assert self._first is not None
        first_time, first_fraction = self._first
        if fraction >= 1.0:
            return 0.0
        if fraction <= first_fraction or now <= first_time:
            return None
        return (now - first_time) / (fraction - first_fraction) * (1.0 - fraction)

    def render(self, fraction: float, message: str, elapsed: float, eta: float | None) -> str:
        """The bar's text for a given state (``eta`` in seconds, or None when unknown)."""
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(fraction * self.width)
        remaining = _clock(eta) if eta is not None else "--:--"
        text = (
            f"{self.label} {fraction * 100:3.0f}% |{'#' * filled}{' ' * (self.width - filled)}| "
            f"{_clock(elapsed)}<{remaining} {message}"
        )
        return text.ljust(79) if self._tty else text.rstrip()

    def close(self) -> None:
        """End the bar's line (if anything was drawn)."""
        if self._drawn and self._tty:
            self.stream.write("\n")
            self.stream.flush()
