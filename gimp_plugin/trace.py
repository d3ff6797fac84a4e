"""Diagnostics switched on by environment variables: registration timings and a log of every call."""

from __future__ import annotations

import json
import os
import time
from typing import Any

#: Environment variable: a file to which registration timings are appended (benchmarks).
TIMING_ENV = "NEUROFILTERS_GIMP_TIMING"
#: Environment variable: a file to which every filter call is appended as JSON (troubleshooting).
LOG_ENV = "NEUROFILTERS_GIMP_LOG"
_started = time.perf_counter()


def set_start(moment: float) -> None:
    """Measure timings from ``moment`` (``time.perf_counter()`` when GIMP started the entry file)."""
    global _started
    _started = moment


def log_call(entry: dict[str, Any]) -> None:
    """Append ``entry`` as one JSON line to ``$NEUROFILTERS_GIMP_LOG`` (when set)."""
    target = os.environ.get(LOG_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")


def timing(event: str) -> None:
    """Append ``event`` and the milliseconds since the start to ``$NEUROFILTERS_GIMP_TIMING`` (when set)."""
    target = os.environ.get(TIMING_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(f"{event} {1000.0 * (time.perf_counter() - _started):.2f}\n")
