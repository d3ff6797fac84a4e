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


def test_quiet_during_the_first_second() -> None:
    clock, stream = FakeClock(), Terminal()
    bar = ProgressBar("dream", stream=stream, clock=clock)
    clock.now += 0.5
    bar(0.9, "almost")
    bar.close()
    assert stream.getvalue() == ""


def test_draws_percentage_and_eta_on_a_terminal() -> None:
    clock, stream = FakeClock(), Terminal()
    bar = ProgressBar("dream", stream=stream, clock=clock, width=10)
    clock.now += 5  # set-up (model loading) before the first report does not count in the ETA
    bar(0.0, "loading")
    clock.now += 10
    bar(0.25, "octave 1/4")
    text = stream.getvalue()
    assert text.split("\r")[-1].startswith("dream  25% |##        | 00:15<00:30 octave 1/4")
    bar.close()
    assert stream.getvalue().endswith("\n")


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
