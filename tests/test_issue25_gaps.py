"""Issue 25's numbered defects that had no test of their own: each test fails if the defect comes back."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from test_batch_support import write_photo

from neurofilters.plugin_host import ParameterError
from neurofilters.plugin_host.cli.main import main


def test_7_a_huge_channel_range_is_refused_before_it_is_allocated() -> None:
    """``--channels 0-30000000`` allocated 1.4 GB before its range was checked."""
    from neurofilters.filters.explorer.maps import parse_channel_list

    tracemalloc.start()
    try:
        for text in ("0-30000000", "5,0-999999999999", "1-" + "9" * 13):
            with pytest.raises(ParameterError, match="Received: channels="):
                parse_channel_list(text, 144)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated to refuse a range"


def test_8_fit_noise_refuses_a_5000_digit_class_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--class`` with 5,000 digits was ``ValueError: Exceeds the limit (4300 digits)``; fit-noise too."""
    write_photo(tmp_path / "photos" / "a.png")
    code = main(["fit-noise", str(tmp_path / "photos"), "--class", "9" * 5000, "-o", str(tmp_path / "n.npz")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--class" in err and "4300" not in err, err
    assert not (tmp_path / "n.npz").exists()


@pytest.mark.slow
def test_12_fit_noise_skips_an_unreadable_photo_and_lists_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fit-noise aborted on the first unreadable image; it skips it with the reason, as batch does."""
    photos = tmp_path / "photos"
    for index in range(4):
        write_photo(photos / f"p{index}.png", size=(48, 40), seed=index)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code = main(["fit-noise", str(photos), "--class", "1", "-o", str(tmp_path / "n.npz"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (tmp_path / "n.npz").is_file() and (tmp_path / "n.png").is_file()
    assert "skipped" in err and "broken.png" in err


@pytest.mark.slow
def test_12_an_interrupted_atlas_keeps_a_page_and_resumes(tmp_path: Path) -> None:
    """An atlas stopped midway left atlas.json and pictures without index.html; now a placeholder page says so."""
    from neurofilters.filters.explorer.atlas import write_atlas
    from neurofilters.plugin_host import ModelCache, get_registry

    model = ModelCache(get_registry().get_model).get("lite0")
    site = tmp_path / "site"
    settings = {"layers": ["block2_expand_act"], "channels": 2, "steps": 2, "size": 32, "seed": 0}

    def stop_after_first_picture(fraction: float, message: str) -> None:
        if list(site.rglob("vis-*.png")):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atlas(model, site, progress=stop_after_first_picture, **settings)
    page = (site / "index.html").read_text()
    assert "not finished" in page and (site / "atlas.json").is_file()
    assert len(list(site.rglob("vis-*.png"))) == 1
    write_atlas(model, site, **settings)
    assert "not finished" not in (site / "index.html").read_text()
    assert len(list(site.rglob("vis-*.png"))) == 2


def test_13_a_killed_run_s_temporary_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """TensorFlow's __autograph_generated_file*.py of a process killed with kill -9 are removed by the next run."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = temp / f"neurofilters-{finished.stdout.strip()}-abcd1234"  # that process no longer exists
    dead.mkdir()
    (dead / "__autograph_generated_filexyz.py").write_text("# left by a killed run\n")
    alive = temp / f"neurofilters-{os.getpid()}-efgh5678"  # a running process's folder: kept
    alive.mkdir()
    other = temp / "someone-elses-folder"
    other.mkdir()
    code = "import sys\nfrom neurofilters.plugin_host.cli.main import main\nsys.exit(main(['list']))\n"
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TMPDIR": str(temp)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not dead.exists()
    assert alive.is_dir() and other.is_dir()
    assert sorted(p.name for p in temp.iterdir()) == sorted([alive.name, other.name])  # its own folder went at exit


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--held-out", "0"), ("--held-out", "nan"), ("--epsilon", "nan"), ("--epsilon", "40"), ("--epochs", "0"), ("--batch-size", "0")],
)
def test_11_fit_noise_names_the_flag_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    """fit-noise said '"held-out" ... held-out=0.0' and '"epochs" and "batch-size"' for either: now the flag and its value."""
    write_photo(tmp_path / "photos" / "a.png")
    write_photo(tmp_path / "photos" / "b.png", seed=1)
    code = main(["fit-noise", str(tmp_path / "photos"), "--class", "1", "-o", str(tmp_path / "n.npz"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"error: {flag} must be" in err and f"Received: {flag} " in err and '"' not in err.split("must be")[0]
    assert not (tmp_path / "n.npz").exists()
