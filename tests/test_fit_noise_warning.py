"""fit-noise warns when the folder holds fewer photos than the measured runs, before any model loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.plugin_host.cli.main import main


def _folder(tmp_path: Path, count: int, chelsea: np.ndarray) -> Path:
    folder = tmp_path / f"photos{count}"
    folder.mkdir()
    for index in range(count):
        Image.fromarray((np.roll(chelsea, 7 * index, axis=1)[::4, ::4] * 255).astype(np.uint8)).save(folder / f"{index}.png")
    return folder


@pytest.mark.parametrize(("count", "warned"), [(8, True), (42, False)])
def test_few_photos_get_a_warning_with_the_rate_to_expect(
    count: int, warned: bool, tmp_path: Path, chelsea: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path, count, chelsea)
    # An unknown model stops the command right after the photos are counted: no fitting, no model load.
    code = main(["fit-noise", str(folder), "--class", "flamingo", "-o", str(tmp_path / "n.npz"), "--model", "nosuch"])
    error = capsys.readouterr().err
    assert code == 2 and "Unknown model" in error
    assert ("neurofilters: warning: 8 photos are few: with 42 (29 trained on) the held-out fooling rate was 46-72 %" in error) == warned, error
