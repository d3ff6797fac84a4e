"""A filter's summary (what it explained, what the network sees, PSNR, loss) stays: on the terminal and in ``Result``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from terminal import NEUROFILTERS, run_on_terminal

import neurofilters
from neurofilters.plugin_host import FilterContext


def test_report_collects_lines_and_passes_them_on() -> None:
    seen: list[str] = []
    context = FilterContext(report=seen.append)
    context.report("lite0 sees:\n flamingo 0.93")
    assert context.summary == seen == ["lite0 sees: flamingo 0.93"]  # one line, whatever the filter wrote


@pytest.mark.slow
def test_the_summary_stays_on_the_terminal_after_the_bar(tmp_path: Path, chelsea: np.ndarray) -> None:
    photo = tmp_path / "cat.png"
    Image.fromarray((chelsea[::2, ::2] * 255).astype(np.uint8)).save(photo)
    run = run_on_terminal([NEUROFILTERS, "run", "saliency", str(photo), "-o", str(tmp_path / "map.png"), "--method", "grad-cam"])
    assert run.code == 0, run.text
    lines = run.screen
    summary = [index for index, line in enumerate(lines) if line.startswith("grad-cam map of class ")]
    done = [index for index, line in enumerate(lines) if "saliency" in line and "100%" in line and line.endswith("done")]
    assert summary and done and summary[0] < done[0], run.text  # the bar's last state below the kept summary
    assert lines[-1] == f"wrote {tmp_path / 'map.png'}"


@pytest.mark.slow
def test_adversarial_summary_has_before_after_and_psnr(chelsea: np.ndarray) -> None:
    result = neurofilters.apply("adversarial", chelsea[::4, ::4], steps=2, target="flamingo")
    lines = result.summary.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["lite0 before", "lite0 after"], lines
    assert " cat (" in lines[0] or "tabby" in lines[0]
    assert lines[2].startswith("PSNR ") and float(lines[2].split()[1]) > 30, lines


@pytest.mark.slow
def test_hallucinate_summary_says_what_the_network_sees(chelsea: np.ndarray) -> None:
    result = neurofilters.apply("hallucinate", chelsea[::8, ::8], steps=2, work_size=64, class_="flamingo")
    assert ": lite0 sees " in result.summary and "lite1 (not used to draw) ranks flamingo" in result.summary, result.summary


def test_a_filter_that_reports_nothing_has_an_empty_summary(chelsea: np.ndarray) -> None:
    noise = Path(neurofilters.__file__).parent / "filters" / "hallucinate" / "preview-noise.png"
    assert neurofilters.apply("add-noise", chelsea[::8, ::8], noise=noise).summary == ""


@pytest.mark.slow
def test_batch_report_keeps_each_files_summary(tmp_path: Path, chelsea: np.ndarray, coffee: np.ndarray) -> None:
    import json
    import re

    from neurofilters.plugin_host.cli.main import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for name, pixels in (("cat.png", chelsea), ("cup.png", coffee)):
        Image.fromarray((pixels[::4, ::4] * 255).astype(np.uint8)).save(photos / name)
    report = tmp_path / "report.json"
    code = main(["batch", str(photos), "-o", str(tmp_path / "maps"), "--filter", "saliency", "--method", "grad-cam",
                 "--report", str(report), "-q"])
    assert code == 0
    rows = {Path(row["input"]).name: row for row in json.loads(report.read_text())["files"]}
    for name in ("cat.png", "cup.png"):
        assert re.fullmatch(r"grad-cam map of class \d+ \(.+\)", rows[name]["summary"] or ""), rows[name]
    assert rows["cat.png"]["summary"] != rows["cup.png"]["summary"]
