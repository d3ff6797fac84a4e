"""Extra outputs (deepdream's frames) are written by the host, never over an input; filters open no files."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--steps", "1", "--octaves", "1", "--frames", "2"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "neurofilters", *args], capture_output=True, text=True, timeout=600)


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _photo(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_filters_never_open_or_write_files() -> None:
    """No filter module calls open(), Image.open, .save, np.save/np.load, os.makedirs or shutil."""
    forbidden = {"open", "save", "savez", "savez_compressed", "load", "makedirs", "mkdir", "write_bytes", "write_text"}
    allowed_modules = {"zoo"}  # the zoo reads its packaged weight files and keeps a verified cache
    # Plugin commands (not filters) may read and write files: `neurofilters fit-noise` writes its noise and checkpoints.
    allowed_modules |= {"fit_noise.py"}
    offenders = []
    for path in sorted((ROOT / "filters").rglob("*.py")):
        if allowed_modules & set(path.relative_to(ROOT / "filters").parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                machine_fact = (  # reading /proc/cpuinfo (CPU flags) is not a file of the user's
                    node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("/proc/")
                )
                if name in forbidden and not machine_fact:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}()")
    assert offenders == []


@pytest.mark.slow
def test_batch_frames_go_under_outdir_per_input_and_never_touch_inputs(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    _photo(inputs / "a.png", 1)
    _photo(inputs / "b.png", 2)
    before = _snapshot(inputs)
    done = _cli("batch", str(inputs), "-o", str(tmp_path / "out"), "--filter", "deepdream", "-q", *QUICK)
    assert done.returncode == 0, done.stderr
    assert _snapshot(inputs) == before
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    frames = [name for name in written if "frame" in name]
    assert frames == ["a-frame-00000.png", "a-frame-00001.png", "b-frame-00000.png", "b-frame-00001.png"]
    # each input's own frames: its last frame is its output, and the two inputs' frames differ
    out = tmp_path / "out"
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), np.asarray(Image.open(out / "a-frame-00001.png")))
    assert not np.array_equal(np.asarray(Image.open(out / "a-frame-00000.png")), np.asarray(Image.open(out / "b-frame-00000.png")))


@pytest.mark.slow
def test_an_extra_output_that_would_replace_an_input_fails_that_file(tmp_path: Path) -> None:
    """OUTDIR inside the inputs (allowed explicitly): a frame named like an input is refused, the input kept."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    _photo(inputs / "a.png", 1)
    _photo(inputs / "a-frame-00000.png", 2)
    before = _snapshot(inputs)
    done = _cli("batch", str(inputs / "a.png"), "-o", str(inputs), "--allow-outdir-inside", "--name", "{stem}",
                "--filter", "deepdream", "-q", *QUICK)
    assert done.returncode != 0
    assert _snapshot(inputs)["a-frame-00000.png"] == before["a-frame-00000.png"]


@pytest.mark.slow
def test_run_writes_frames_beside_the_output(tmp_path: Path) -> None:
    source = _photo(tmp_path / "cat.png", 3)
    done = _cli("run", "deepdream", str(source), "-o", str(tmp_path / "dream.png"), *QUICK)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "dream-frame-00000.png").is_file() and (tmp_path / "dream-frame-00001.png").is_file()
    refused = _cli("run", "deepdream", str(source), "-o", str(tmp_path / "cat.png"), "--steps", "1", "--octaves", "1")
    assert refused.returncode != 0 and "input" in refused.stderr.lower()
