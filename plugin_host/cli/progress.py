"""Progress on the terminal: a status line from the first second, then a bar with ETA (rich), sparse lines in logs."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressBar"]


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _clock_column(bar: ProgressBar) -> Any:
    """A rich column that asks ``bar`` for its time text at every redraw."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class ClockColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(bar.clock_text())

    return ClockColumn()


class ProgressBar:
    """What a long command is doing, from its first second to its end.

    On a terminal a ``rich`` live line appears at once: a spinner with what is
    happening (``starting deepdream…``, ``loading model lite0…``, ``compiling…``)
    while nothing is measurable yet, then the bar with the percentage, elapsed
    time and ETA once the fraction moves. Elsewhere (logs, CI) it writes a plain
    line (``label  42% |#####     | 00:12<00:17 octave 2/4``) at most every
    ``log_interval`` seconds, and nothing during the first ``delay`` seconds.

    The ETA counts from the last report before the fraction first moved, so
    set-up reported at 0 % (model loading, tracing) does not distort it.
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
        status: str = "",
    ) -> None:
        """Create a bar (on a terminal it starts showing at once).

        Args:
            label: Shown before the bar (the filter or file name).
            stream: Where to draw; standard error by default.
            delay: Seconds of silence before the first line when ``stream`` is not a terminal.
            width: Characters of the bar itself in log lines.
            log_interval: Seconds between lines when ``stream`` is not a terminal.
            clock: A ``time.monotonic``-like function (tests pass their own).
            status: The first status shown (default ``starting LABEL…``).
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
        self._live: Any = None
        self._moving = False
        self._eta_at: tuple[float, float | None] = (self._start, None)  # (time, seconds left) of the last report
        self._shown = ""
        self._task: Any = None
        if self._tty:
            self._start_live(status or f"starting {label}…")

    # -- the terminal display (rich) -----------------------------------------------
    def _start_live(self, status: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn

        console = Console(file=self.stream, highlight=False)
        self._live = Progress(
            SpinnerColumn(finished_text="✓"),
            TextColumn("[bold]{task.fields[label]}"),
            BarColumn(bar_width=None if console.width < 60 else 24),
            TaskProgressColumn(),
            _clock_column(self),
            TextColumn("{task.fields[message]}"),
            console=console,
            get_time=self._clock,  # type: ignore[arg-type]
            refresh_per_second=8,
            transient=False,
        )
        self._task = self._live.add_task("", total=None, label=self.label, message=status)
        self._live.start()
        self._drawn = True

    def clock_text(self) -> str:
        """The time column as it reads now: ``elapsed`` before the fraction moves, then ``elapsed<left``.

        rich redraws it from its own thread eight times a second, so the clock
        keeps ticking while a framework imports or a model loads (those release
        the GIL nearly all the time) and no progress is reported.
        """
        now = self._clock()  # type: ignore[operator]
        elapsed = _clock(now - self._start)
        if not self._moving:
            return elapsed
        reported, eta = self._eta_at
        return f"{elapsed}<{_clock(max(0.0, eta - (now - reported))) if eta is not None else '--:--'}"

    def status(self, message: str) -> None:
        """Say what is happening before any fraction is known (``reading photo.jpg…``)."""
        if self._live is not None:
            self._live.update(self._task, message=message, refresh=True)

    def report(self, line: str) -> None:
        """Print a line of the run's summary so that it stays: above the live bar on a terminal, as a line elsewhere."""
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False, soft_wrap=True)
            return
        self.stream.write(line + "\n")
        self.stream.flush()

    def __call__(self, fraction: float, message: str = "") -> None:
        """Update the bar (the signature of a filter progress callback)."""
        now = self._clock()  # type: ignore[operator]
        elapsed = now - self._start
        if self._first is None or fraction <= self._first[1]:
            self._first = (now, fraction)
        eta = self._eta(now, fraction)
        if self._live is not None:
            moving = fraction > 0 or eta is not None
            self._moving, self._eta_at = moving, (now, eta)  # the clock column counts on from these
            shown = f"{message}…" if message and not moving and not message.endswith("…") else message
            changed = shown != self._shown
            self._shown = shown
            self._live.update(
                self._task, total=1.0 if moving else None, completed=min(max(fraction, 0.0), 1.0),
                message=shown, refresh=changed,  # a new stage shows at once
            )
            return
        if elapsed < self.delay:
            return
        if now - self._last_draw < self.log_interval and fraction < 1.0:
            return
        self._last_draw = now
        self._drawn = True
        self.stream.write(self.render(fraction, message, elapsed, eta) + "\n")
        self.stream.flush()

    def _eta(self, now: float, fraction: float) -> float | None:
        """Seconds left, from the rate since the last report before the fraction first moved."""
        assert self._first is not None
        first_time, first_fraction = self._first
        if fraction >= 1.0:
            return 0.0
        if fraction <= first_fraction or now <= first_time:
            return None
        return (now - first_time) / (fraction - first_fraction) * (1.0 - fraction)

    def render(self, fraction: float, message: str, elapsed: float, eta: float | None) -> str:
        """A log line for a given state (``eta`` in seconds, or None when unknown)."""
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(fraction * self.width)
        remaining = _clock(eta) if eta is not None else "--:--"
        text = (
            f"{self.label} {fraction * 100:3.0f}% |{'#' * filled}{' ' * (self.width - filled)}| "
            f"{_clock(elapsed)}<{remaining} {message}"
        )
        return text.rstrip()

    def close(self) -> None:
        """Stop the live display (its last state stays on the terminal)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
