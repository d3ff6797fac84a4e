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


def _module_file(module: str) -> Path | None:
    parts = module.split(".")[1:]  # neurofilters.filters.x.y -> filters/x/y
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _filter_code() -> set[Path]:
    """Every file a registered filter's run (or batch_run) reaches through imports inside ``filters/``.

    Commands (fit-noise, finetune, the explorer's atlas) may write files; filters may not,
    whatever module they live in, so the rule follows the filters' own code paths.
    """
    from neurofilters.plugin_host import build_registry

    pending = []
    for spec in build_registry(autoload=False).filters.values():
        for target in (spec.run, spec.batch_run):
            if target is not None:
                pending.append(target.partition(":")[0] if isinstance(target, str) else target.__module__)
    seen: dict[str, Path] = {}
    while pending:
        module = pending.pop()
        if module in seen or not module.startswith("neurofilters.filters."):
            continue
        path = _module_file(module)
        if path is None:
            continue
        seen[module] = path
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                pending.append(base)
                pending.extend(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                pending.extend(alias.name for alias in node.names)
    return set(seen.values())


def test_filters_never_open_or_write_files() -> None:
    """No code a filter runs calls open(), Image.open, .save, np.save/np.load, os.makedirs, mkdir or write_*()."""
    forbidden = {"open", "save", "savez", "savez_compressed", "load", "makedirs", "mkdir", "write_bytes", "write_text"}
    code = _filter_code()
    assert ROOT / "filters" / "deepdream" / "engine.py" in code and ROOT / "filters" / "octaves.py" in code
    offenders = []
    for path in sorted(code):
        if "zoo" in path.relative_to(ROOT / "filters").parts:
            continue  # the zoo reads its packaged weight files and keeps a verified cache
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
