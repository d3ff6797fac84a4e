"""Where a benchmark ran (the CPU's model, the cores this process may use, its vector width, the load average),
and where its figures go: bench/results.json, whose sections every benchmark updates through :func:`save`."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

#: The figures the performance page renders: one section per benchmark (``"speed"``, ``"texture"``, ...).
RESULTS = Path(__file__).with_name("results.json")


def cpu() -> str:
    """The CPU as the benchmarks record it, e.g. ``"AMD EPYC 9B14 (2 cores, AVX-512)"``.

    The model name and flags come from ``/proc/cpuinfo`` (``platform.processor()`` where it cannot be read); the
    cores are those this process may run on. The vector width is the CPU's own: ``ONEDNN_MAX_CPU_ISA`` caps what
    oneDNN uses, and each benchmark records the cap beside this.
    """
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        info = ""
    model = next((line.partition(":")[2].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.partition(":")[2].split() for line in info.splitlines() if line.startswith("flags")), []))
    width = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2" if flags else "flags unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model or platform.processor() or 'unknown CPU'} ({cores} cores, {width})"


def load() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded to hundredths."""
    return [round(value, 2) for value in os.getloadavg()]


def saved(path: Path = RESULTS) -> dict[str, Any]:
    """The figures ``path`` holds (``{}`` before the first save)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def save(sections: dict[str, Any], path: Path = RESULTS) -> None:
    """Write ``sections`` over their namesakes in ``path`` and keep every other section, in the one format all
    benchmarks share (a benchmark that wrote only its own sections erased the figures of every other one). The
    file is replaced whole, so an interrupted save leaves the previous figures."""
    figures = saved(path)
    figures.update(sections)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def save_entry(section: str, key: str, entry: Any, path: Path = RESULTS) -> None:
    """Put ``entry`` under ``section[key]`` in ``path``, keeping the section's other entries and every other section."""
    save({section: {**saved(path).get(section, {}), key: entry}}, path)
