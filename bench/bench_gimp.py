"""Benchmark of the GIMP plug-in in a real GIMP 3 (the trixie chroot of ``tests/gimp``).

Measures, as issue 4 asks:

1. **Call overhead**: the time of one filter call through GIMP (PDB call from
   a batch script, second call: warm worker, models loaded) minus the time the
   worker spent computing the filter, on a 1024 x 768 image. Reported for a
   filter that costs almost nothing (the test plugin's ``nf-test-invert``: the
   pure cost of the plumbing) and for ``deepdream`` (a real neural filter).
2. **Registration**: what registering the procedures costs GIMP at start-up.
   ``plug-in ms`` is from the plug-in file's first line to its last procedure
   created (``gi`` import, manifest read, procedure creation; timed by the
   plug-in itself through ``NEUROFILTERS_GIMP_TIMING``); ``start-up delta`` is
   how much longer ``gimp-console-3.0 --quit`` takes when GIMP has to
   (re-)query the plug-in than when it reads its cached registration.

Run as root (it mounts the chroot; building it the first time takes ~90 s)::

    .venv/bin/python bench/bench_gimp.py [--repeats 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.fspath(ROOT / "tests" / "gimp"))

from gimp_chroot import GimpChroot, ensure_chroot, python_bind_paths, unavailable_reason  # noqa: E402
from gimp_session import TESTPLUGIN_DIR, GimpSession, describe_failure, plugin_environment  # noqa: E402


def _environment() -> None:
    for key, value in plugin_environment(with_test_plugin=True, idle_timeout=300).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    sys.path.insert(0, os.fspath(TESTPLUGIN_DIR))


def _picture(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 23.0 + y / 17.0)], axis=2)
    return np.round(rgb * 255).astype(np.uint8)


def call_overhead(session: GimpSession, procedure: str, args: dict[str, Any], repeats: int, size: tuple[int, int]) -> dict[str, Any]:
    """Time warm calls of ``procedure`` through GIMP and the worker's compute time of each."""
    steps: list[dict[str, Any]] = [session.image_step(_picture(*size), name="bench.raw")]
    run = {"do": "run", "procedure": procedure, "args": args}
    ping = {"do": "ping", "plugin_dir": session.plugin_inside}
    steps += [run, ping]  # warm-up: starts the worker / loads the model
    for _ in range(repeats):
        steps += [run, ping]
    report, process = session.run_job(steps, timeout=3600)
    entries = report["steps"]
    if process.returncode != 0 or len(entries) != len(steps) or any(e.get("status") not in (None, "SUCCESS") and e["do"] == "run" for e in entries):
        raise RuntimeError(describe_failure(process, report))
    calls = []
    for index in range(3, len(steps), 2):
        total = entries[index]["seconds"]
        compute = entries[index + 1]["status"]["last_compute_seconds"]
        calls.append({"total": total, "compute": compute, "overhead": total - compute})
    first = {"total": entries[1]["seconds"], "compute": entries[2]["status"]["last_compute_seconds"]}
    pids = {entries[i]["status"]["pid"] for i in range(2, len(steps), 2)}
    return {
        "procedure": procedure,
        "size": list(size),
        "first_call": first,
        "warm_calls": calls,
        "median_total": statistics.median(c["total"] for c in calls),
        "median_compute": statistics.median(c["compute"] for c in calls),
        "median_overhead": statistics.median(c["overhead"] for c in calls),
        "one_worker": len(pids) == 1,
    }


def registration(session: GimpSession, repeats: int) -> dict[str, Any]:
    """Plug-in registration cost: the plug-in's own timing and GIMP's start-up delta."""
    timing_inside = f"{session.inside}/timing.txt"
    timing_host = session.chroot.host_path(timing_inside)
    env = {"NEUROFILTERS_GIMP_TIMING": timing_inside}
    plugin_ms, requery, cached = [], [], []
    session.run_job([], env=env)  # a first start builds GIMP's caches
    for _ in range(repeats):
        timing_host.unlink(missing_ok=True)
        session.install()  # new modification time: GIMP queries the plug-in again
        started = time.perf_counter()
        session.run_job([], env=env)
        requery.append(time.perf_counter() - started)
        lines = timing_host.read_text().split("\n") if timing_host.exists() else []
        creates = [float(line.split()[-1]) for line in lines if line.startswith("create ")]
        if creates:
            plugin_ms.append(max(creates))
        started = time.perf_counter()
        session.run_job([], env=env)  # registration read from GIMP's pluginrc
        cached.append(time.perf_counter() - started)
    procedures = len(session.manifest()["filters"])
    return {
        "procedures": procedures,
        "plugin_ms_median": statistics.median(plugin_ms) if plugin_ms else None,
        "plugin_ms": plugin_ms,
        "startup_requery_s": requery,
        "startup_cached_s": cached,
        "startup_delta_ms_median": 1000 * (statistics.median(requery) - statistics.median(cached)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed warm calls / registrations (default 5)")
    parser.add_argument("--size", default="1024x768", help="image size WxH (default 1024x768)")
    parser.add_argument("--skip-deepdream", action="store_true", help="only the cheap test filter")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    width, height = (int(n) for n in args.size.split("x"))
    _environment()
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    with GimpChroot(ensure_chroot(), python_bind_paths(sys.executable)) as chroot:
        session = GimpSession(chroot, "nf-bench")
        session.install()
        results["registration"] = registration(session, args.repeats)
        results["invert"] = call_overhead(session, "neurofilters-nf-test-invert", {"amount": 50}, args.repeats, (width, height))
        if not args.skip_deepdream:
            dream = {"steps": 2, "octaves": 2, "jitter": 16}
            results["deepdream"] = call_overhead(session, "neurofilters-deepdream", dream, args.repeats, (width, height))

    reg = results["registration"]
    print(f"registration of {reg['procedures']} procedures: plug-in {reg['plugin_ms_median']:.0f} ms (median), "
          f"GIMP start-up delta {reg['startup_delta_ms_median']:.0f} ms")
    for key in ("invert", "deepdream"):
        if key in results:
            r = results[key]
            print(
                f"{r['procedure']} on {width}x{height}, warm: total {r['median_total']:.3f} s, "
                f"worker compute {r['median_compute']:.3f} s, overhead {r['median_overhead']:.3f} s "
                f"(first call {r['first_call']['total']:.2f} s; one worker: {r['one_worker']})"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
