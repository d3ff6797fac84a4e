"""A real end-to-end batch with the built-in neural ``deepdream`` filter (its preview parameters)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.plugin_host import format_value, get_registry
from test_batch_support import batch_command, tree_bytes, write_photo

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([*batch_command(), *args], capture_output=True, text=True, env=env, timeout=600)


def test_deepdream_batch_is_deterministic_and_resumable(tmp_path: Path) -> None:
    spec = get_registry().get_filter("deepdream")
    preview: list[str] = []
    for name, value in spec.preview_params.items():
        if value == spec.param_index[name].default:
            continue
        param = spec.param_index[name]
        preview += [param.flag, format_value(param, value)] if param.kind != "bool" else [param.flag if value else "--no-" + param.flag[2:]]
    photos = tmp_path / "photos"
    write_photo(photos / "a.jpg", size=(48, 40), seed=1)
    write_photo(photos / "nested" / "b.png", size=(40, 32), seed=2, mode="RGBA")
    report = tmp_path / "report.json"
    first = _run(str(photos), "-r", "-o", str(tmp_path / "one"), "--filter", "deepdream", *preview, "--report", str(report), "-q")
    assert first.returncode == 0, first.stderr
    rows = json.loads(report.read_text())["files"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    with Image.open(photos / "a.jpg") as before, Image.open(tmp_path / "one" / "a.jpg") as after:
        assert after.size == before.size
        assert np.abs(np.asarray(after, dtype=np.int16) - np.asarray(before, dtype=np.int16)).mean() > 1  # it dreamed
    with Image.open(tmp_path / "one" / "nested" / "b.png") as dreamed:
        assert dreamed.mode == "RGBA"
    again = _run(str(photos), "-r", "-o", str(tmp_path / "one"), "--filter", "deepdream", *preview, "-q")
    assert again.returncode == 0 and "2 skipped" in again.stderr
    second = _run(str(photos), "-r", "-o", str(tmp_path / "two"), "--filter", "deepdream", *preview, "-q")
    assert second.returncode == 0, second.stderr
    assert tree_bytes(tmp_path / "one") == tree_bytes(tmp_path / "two")  # same seeds, same bytes
