"""bench/machine.py's writer of bench/results.json: a benchmark's save keeps every other benchmark's figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _machine():
    """bench/machine.py, loaded from its file (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_machine", BENCH / "machine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_save_replaces_its_sections_and_keeps_the_others(tmp_path: Path) -> None:
    machine = _machine()
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"speed": {"cells": {"a": 1}}, "texture": {"old": 1}, "cpu": "before"}))
    machine.save({"cpu": "after", "models": [1, 2]}, path)
    assert json.loads(path.read_text()) == {"speed": {"cells": {"a": 1}}, "texture": {"old": 1}, "cpu": "after", "models": [1, 2]}
    machine.save_entry("texture", "new", {"s": "→ 0.2²"}, path)
    figures = json.loads(path.read_text())
    assert figures["texture"] == {"old": 1, "new": {"s": "→ 0.2²"}} and figures["speed"] == {"cells": {"a": 1}}
    assert "→ 0.2²" in path.read_text(encoding="utf-8")  # one format: written as UTF-8, not escaped
    assert [child.name for child in tmp_path.iterdir()] == ["results.json"]


def test_save_into_a_new_file_and_a_new_section(tmp_path: Path) -> None:
    machine = _machine()
    path = tmp_path / "results.json"
    assert machine.saved(path) == {}
    machine.save_entry("speed_projection", "avx2/hallucinate/512", {"projected_s": 10.9}, path)
    assert machine.saved(path) == {"speed_projection": {"avx2/hallucinate/512": {"projected_s": 10.9}}}


def test_a_failed_save_leaves_the_previous_figures(tmp_path: Path) -> None:
    """A save that fails while it serialises (here, a value JSON cannot hold) leaves the file as it was: the
    figures are written to a side file first, never into the open results file."""
    machine = _machine()
    path = tmp_path / "results.json"
    machine.save({"banded": {"ratio": 0.015}}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        machine.save({"video": {"not json": object()}}, path)
    assert path.read_bytes() == before
    assert [child.name for child in tmp_path.iterdir()] == ["results.json"]
