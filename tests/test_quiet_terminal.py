"""No line of TensorFlow's C++ logging, absl, Keras or XLA reaches a user's terminal unless ``--debug``.

Each command runs on a pseudo-terminal, as in a terminal window; the screen
it leaves is checked for the frameworks' lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from terminal import NEUROFILTERS, run_on_terminal

pytestmark = pytest.mark.slow

#: What the frameworks print: absl/glog prefixes (I0000 00:00:...), their notices, Python-side warnings.
FRAMEWORK_LINE = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d|absl|InitializeLog|cuda|oneDNN|cpu_feature_guard|TF_ENABLE|tensorflow|XLA|retracing|"
    r"^WARNING|Traceback",
    re.IGNORECASE | re.MULTILINE,
)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("quiet") / "cat.png"
    Image.fromarray(np.ascontiguousarray(data.chelsea()[::3, ::3])).save(path)
    return path


def _framework_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if FRAMEWORK_LINE.search(line)]


def test_debug_shows_what_the_frameworks_print(photo: Path) -> None:
    # The check below can fail: with --debug the same command shows TensorFlow's own lines.
    run = run_on_terminal([NEUROFILTERS, "--debug", "classify", str(photo), "--top", "1"])
    assert run.code == 0, run.text
    assert _framework_lines(run.text), run.text


@pytest.mark.parametrize(
    "args",
    [
        ["classify", "{photo}", "--top", "1"],
        ["run", "feature-inversion", "{photo}", "-o", "{out}", "--steps", "2", "--work-size", "48"],
        ["run", "saliency", "{photo}", "-o", "{out}", "--method", "grad-cam", "-q"],
        ["run", "deepdream", "{photo}", "-o", "{out}", "--model", "{bad}"],
    ],
    ids=["classify", "feature-inversion", "saliency-quiet", "bad-keras-file"],
)
def test_commands_leave_no_framework_line(args: list[str], photo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"PK\x03\x04 not a Keras archive")
    argv = [NEUROFILTERS, *(a.format(photo=photo, out=tmp_path / "out.png", bad=bad) for a in args)]
    run = run_on_terminal(argv)
    assert run.text, "the command printed nothing"
    assert not _framework_lines(run.text), run.text
    if "--model" in args:
        assert run.code != 0 and "neurofilters: error:" in run.text, run.text
    else:
        assert run.code == 0, run.text


def test_python_api_leaves_no_framework_line() -> None:
    code = (
        "import neurofilters\nfrom skimage import data\n"
        "result = neurofilters.apply('saliency', data.chelsea()[::4, ::4], method='grad-cam')\n"
        "print('summary:', result.summary)\n"
    )
    run = run_on_terminal([sys.executable, "-c", code])
    assert run.code == 0, run.text
    assert len(run.screen) == 1 and re.fullmatch(r"summary: grad-cam map of class \d+ \(.+\)", run.screen[0]), run.text
