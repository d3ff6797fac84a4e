"""Signals and leftovers: SIGTERM is Ctrl+C, the batch lock goes with the run, usage errors leave nothing, OS errors are one line."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_batch_support import batch_command, install_test_plugin, plugin_env, run_batch, tree_bytes, write_photo

from neurofilters.plugin_host.batch.journal import JOURNAL_NAME, LOCK_NAME
from neurofilters.plugin_host.cli.main import main


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_test_plugin(tmp_path_factory.mktemp("leftovers-site"))


def test_sigterm_is_handled_like_ctrl_c(site: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for index in range(12):
        write_photo(photos / f"p{index:02d}.png", seed=index)
    out = tmp_path / "out"
    args = [str(photos), "--filter", "bt-noise", "--delay", "0.15", "-q", "-o", str(out)]
    private = tmp_path / "tmp"
    private.mkdir()
    process = subprocess.Popen([*batch_command(), *args], env={**plugin_env(site), "TMPDIR": str(private)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.png"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err  # not -15: the run stopped cleanly
    assert "run the same command again to finish" in err
    assert not (out / LOCK_NAME).exists()  # the lock went with the run
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written output
    for picture in out.glob("*.png"):
        with Image.open(picture) as image:
            image.load()
    assert not list(private.iterdir())  # the process's private temporary folder is gone
    finished = run_batch(site, *args)
    assert finished.returncode == 0, finished.stderr
    assert len(tree_bytes(out)) == 12 and not (out / LOCK_NAME).exists()
    assert (out / JOURNAL_NAME).exists()


def test_refused_and_finished_runs_leave_no_lock(site: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_photo(photos / "a.png")
    out = tmp_path / "out"
    done = run_batch(site, str(photos), "--filter", "bt-invert", "-q", "-o", str(out))
    assert done.returncode == 0 and not (out / LOCK_NAME).exists()
    refused = run_batch(site, str(photos), "--filter", "bt-invert", "--quality", "1\x1f", "-o", str(tmp_path / "o2"))
    assert refused.returncode == 2 and not (tmp_path / "o2").exists()
    assert "--quality" in refused.stderr and "Traceback" not in refused.stderr


def test_read_only_outdir_is_one_line(site: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocked = tmp_path / "afile"  # root ignores permissions: a file where a folder is expected
        blocked.write_text("x")
        target = blocked / "out"
    else:
        blocked = tmp_path / "ro"
        blocked.mkdir(mode=0o500)
        target = blocked / "out"
    photos = tmp_path / "photos"
    write_photo(photos / "a.png")
    result = run_batch(site, str(photos), "--filter", "bt-invert", "-q", "-o", str(target))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(blocked) in lines[0] and "Traceback" not in result.stderr


def test_finetune_usage_errors_leave_no_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    for name in ("a", "b"):
        write_photo(data / name / "x.png")
        write_photo(data / name / "y.png", seed=1)
    for bad in (["--val-split", "nan"], ["--learning-rate", "nan"], ["--seed", "1\x1f"], ["--epochs", "9" * 5000]):
        code = main(["finetune", str(data), "-o", str(tmp_path / "m.keras"), *bad])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, (bad, err)
        assert not (tmp_path / "m.keras.training").exists()
    code = main(["finetune", str(data), "-o", str(tmp_path / "m.keras"), "--base", "notamodel"])
    assert code == 2, capsys.readouterr().err
    assert not (tmp_path / "m.keras.training").exists()  # the corrected command is not refused afterwards


def test_bad_numbers_are_one_line_and_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = write_photo(tmp_path / "in.png")
    cases = [
        (["run", "deepdream", str(photo), "-o", str(tmp_path / "o.png"), "--steps", "1\x1f"], "--steps"),
        (["run", "deepdream", str(photo), "-o", str(tmp_path / "o.png"), "--seed", "1\x1f"], "--seed"),
        (["run", "hallucinate", str(photo), "-o", str(tmp_path / "o.png"), "--class", "9" * 5000], "--class"),
        (["saliency-check", "lite0", str(photo), "--class", "9" * 5000], "--class"),
        (["fit-noise", str(tmp_path), "--class", "1", "-o", str(tmp_path / "n.npz"), "--seed", "-1"], "--seed"),
        # argparse's int() took U+001F as white space: fit-noise's integers are parsed like every other flag's
        (["fit-noise", str(tmp_path), "--class", "1", "-o", str(tmp_path / "n.npz"), "--seed", "1\x1f"], "'1\\x1f'"),
        (["fit-noise", str(tmp_path), "--class", "1", "-o", str(tmp_path / "n.npz"), "--epochs", "9" * 5000], "--epochs"),
        (["explore", "patches", "lite0", "block3", "0", str(tmp_path), "--tile", "100000", "-o", str(tmp_path / "s.png")], "tile"),
        (["atlas", "lite0", "-o", str(tmp_path / "site"), "--size", "100000"], "size"),
        (["gimp", "install", "--gimp-dir", ""], "--gimp-dir"),
    ]
    for argv, flag in cases:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, (argv[:3], err)
        assert len(err.strip().splitlines()) == 1 and flag in err, (argv[:3], err)
    assert not (tmp_path / "site").exists()


def test_run_reads_the_xcf_that_batch_writes(site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    write_photo(photos / "a.png")
    out = tmp_path / "out"
    done = run_batch(site, str(photos), "--filter", "bt-invert", "--format", "xcf", "-q", "-o", str(out))
    assert done.returncode == 0, done.stderr
    layered = out / "a.xcf"
    assert layered.is_file()
    again = tmp_path / "again.png"
    assert main(["run", "add-noise", str(layered), "-o", str(again), "--noise", str(_noise_file(tmp_path)),
                 "--strength", "0", "-q"]) == 0, capsys.readouterr().err
    with Image.open(again) as image, Image.open(photos / "a.png") as original:
        assert image.size == original.size == (24, 16)
        flat, source = np.asarray(image.convert("RGBA"), np.int16), np.asarray(original.convert("RGBA"), np.int16)
    assert np.abs(flat[..., :3] - (255 - source[..., :3])).max() <= 1  # the inverted layer, flattened


def _noise_file(tmp_path: Path) -> Path:
    import shutil

    from neurofilters.filters.hallucinate.plugin import PREVIEW_NOISE

    target = tmp_path / "n.png"
    shutil.copyfile(PREVIEW_NOISE, target)
    return target


@pytest.mark.slow
def test_ray_reports_the_real_error_with_the_local_exit_code(site: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    photos = tmp_path / "photos"
    for index in range(3):
        write_photo(photos / f"p{index}.png", seed=index)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    common = [str(photos), "--filter", "add-noise", "--noise", str(bad), "-q"]
    local = run_batch(site, *common, "-o", str(tmp_path / "local"))
    ray = run_batch(site, *common, "-o", str(tmp_path / "ray"), "--engine", "ray", "--jobs", "2")
    assert local.returncode != 0 and ray.returncode == local.returncode, (local.stderr, ray.stderr)
    assert "died" not in ray.stderr and str(bad) in ray.stderr.replace("'", "")


def test_folders_skip_unreadable_images_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    for index in range(3):
        write_photo(folder / f"p{index}.png", size=(64, 48), seed=index)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    sheet = tmp_path / "sheet.png"
    code = main(["explore", "patches", "lite0", "block3", "0", str(folder), "-o", str(sheet), "-k", "2", "--size", "64", "--tile", "32"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert sheet.is_file() and "skipped" in err and "broken.png" in err
    site = tmp_path / "site"
    code = main(["atlas", "lite0", "-o", str(site), "--layers", "block2", "--channels", "1", "--steps", "1", "--size", "32",
                 "--images", str(folder), "--patches", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (site / "index.html").is_file() and "broken.png" in err
    assert "not finished" not in (site / "index.html").read_text()


def test_os_problems_of_an_output_are_one_line_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = write_photo(tmp_path / "in.png")
    noise = _noise_file(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is expected")
    cases = [
        (tmp_path / ("x" * 300 + ".png"), "255"),
        (blocker / "out.png", str(blocker)),
    ]
    for output, expected in cases:
        code = main(["run", "add-noise", str(photo), "-o", str(output), "--noise", str(noise), "-q"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    site = blocker / "site"
    code = main(["atlas", "lite0", "-o", str(site), "--channels", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(blocker) in err, err
