"""Where a benchmark ran: the CPU's model, the cores this process may use, its vector width, and the load average."""

from __future__ import annotations

import os
import platform
from pathlib import Path


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
