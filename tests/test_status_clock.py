"""The status line's clock keeps ticking while TensorFlow imports and the model loads (no progress is reported then)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from terminal import NEUROFILTERS, run_on_terminal

from neurofilters.plugin_host import ProgressBar

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_clock_is_read_when_drawn_not_when_reported() -> None:
    clock = FakeClock()
    bar = ProgressBar("deepdream", stream=io.StringIO(), clock=clock)
    bar(0.0, "loading model lite0")
    clock.now += 7.4
    assert bar.clock_text() == "00:07"  # nothing reported for 7 s: the clock still moved
    bar(0.5, "octave 1/2")
    bar._moving = True  # the live display's state (this stream is no terminal)
    bar._eta_at = (clock.now, 10.0)
    clock.now += 4.0
    assert bar.clock_text() == "00:11<00:06"  # the ETA counts down between reports too


@pytest.mark.slow
def test_the_clock_ticks_on_the_terminal_while_the_model_loads(tmp_path: Path, chelsea: np.ndarray) -> None:
    photo = tmp_path / "cat.png"
    Image.fromarray((chelsea[::4, ::4] * 255).astype(np.uint8)).save(photo)
    run = run_on_terminal([NEUROFILTERS, "run", "deepdream", str(photo), "-o", str(tmp_path / "d.png"), "--steps", "1", "--octaves", "1"])
    assert run.code == 0, run.text
    shown: list[tuple[float, str]] = []  # (seconds since start, clock) of each redraw while the model loads
    first_step = None
    for seconds, chunk in run.stamps:
        for part in _ESCAPE.sub("", chunk).split("\r"):
            match = re.search(r"(\d\d:\d\d) loading model lite0", part)
            if match:
                shown.append((seconds, match.group(1)))
            if first_step is None and "step 1/" in part:
                first_step = seconds
    assert shown and first_step is not None, run.raw[-2000:]
    loading = shown[-1][0] - shown[0][0]
    clocks = sorted({clock for _, clock in shown})
    print(f"model loading shown for {loading:.1f} s, clocks {clocks[0]}..{clocks[-1]}; first step after {first_step:.1f} s")
    assert len(clocks) >= min(3, int(loading)), (loading, clocks)  # before: 00:00 throughout, then a jump
