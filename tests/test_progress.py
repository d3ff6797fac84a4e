"""The progress bar: silent for quick work, ETA from the elapsed time."""

from __future__ import annotations

import io

from neurofilters.plugin_host.cli.progress import ProgressBar


class FakeClock:
    """A settable clock (time itself cannot be controlled in a test)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_says_what_happens_at_once_then_draws_the_bar_with_eta() -> None:
    """On a terminal the status line appears before any progress report (model loading is silent otherwise)."""
    import re

    clock, stream = FakeClock(), Terminal()
    bar = ProgressBar("dream", stream=stream, clock=clock, status="reading cat.png…")
    assert "reading cat.png…" in stream.getvalue()  # drawn at construction, not after a delay
    bar.status("loading model lite0")
    clock.now += 5  # set-up (model loading) before the first report does not count in the ETA
    bar(0.0, "compiling")
    clock.now += 10
    bar(0.25, "octave 1/4")
    bar.close()
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", stream.getvalue())
    assert "loading model lite0" in text and "compiling…" in text
    assert re.search(r"25%\s+00:15<00:30 octave 1/4", text), text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_logs_stay_quiet_during_the_first_second() -> None:
    clock, stream = FakeClock(), io.StringIO()
    bar = ProgressBar("dream", stream=stream, clock=clock)
    clock.now += 0.5
    bar(0.9, "almost")
    bar.close()
    assert stream.getvalue() == ""


def test_eta_starts_when_the_fraction_first_moves() -> None:
    """Set-up reported at 0 % (loading, then compiling) does not count: the ETA uses the rate after it."""
    clock, stream = FakeClock(), io.StringIO()
    bar = ProgressBar("dream", stream=stream, clock=clock, log_interval=0)
    bar(0.0, "loading model")
    clock.now += 30  # a slow model load and trace
    bar(0.0, "octave 1/4")
    clock.now += 2
    bar(0.1, "step 1")
    assert stream.getvalue().splitlines()[-1].startswith("dream  10% |##                      | 00:32<00:18 step 1")
    clock.now += 2
    bar(0.2, "step 2")
    assert "00:34<00:16" in stream.getvalue().splitlines()[-1]


def test_logs_sparse_lines_when_not_a_terminal() -> None:
    clock, stream = FakeClock(), io.StringIO()
    bar = ProgressBar("dream", stream=stream, clock=clock, log_interval=10)
    for _ in range(20):
        clock.now += 1
        bar(0.5)
    bar(1.0)
    lines = stream.getvalue().splitlines()
    assert 2 <= len(lines) <= 4
    assert lines[-1].startswith("dream 100%")
    assert "\r" not in stream.getvalue()
