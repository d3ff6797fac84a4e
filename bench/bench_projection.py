"""A speed cell projected onto the CPU the budgets were set on: today's code timed beside the code measured there.

    python bench/bench_projection.py hallucinate 512 --reference 9522c97 --pairs 3 --save

``bench_speed.py`` scales each budget by NumPy's sgemm rate, which assumes that a filter slows down with the
CPU as a large matrix product does. Lite0's small convolutions do not: on the 2-core Xeon under the AVX2 cap,
hallucinate's default ran about 2.3 times slower than on the AVX2 EPYC the budgets were set on, while sgemm ran
1.2 to 1.6 times slower. A filter's own workload measures the difference better, so this benchmark takes a
commit whose ``bench/results.json`` holds the cell as measured on the budgets' CPU (the code and its figure
come from the same commit), checks that commit out in a temporary git worktree and, in pairs, runs that
commit's own ``bench_speed.py --cell`` and today's, one after the other (the reference first in odd pairs,
today's first in even ones), in the same ISA setting (``ONEDNN_MAX_CPU_ISA=AVX2`` by default). Each pair
gives today's seconds over the reference code's, in the same minute of the machine's load; their median
times the reference's seconds on the budgets' CPU is today's default projected onto that CPU, which is
judged against the budget.

The reference runs from the worktree: a folder holding only a link named ``neurofilters`` to it goes first on
``PYTHONPATH`` (an editable install's finder comes after the path's), which is checked before timing.
``--save`` stores the result under ``"speed_projection"`` in bench/results.json; the performance page shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402
from bench_speed import BUDGETS, COLUMNS, ISAS, child  # noqa: E402


def reference_cell(commit: str, isa: str, row: str, column: str) -> dict[str, Any]:
    """The cell and its run's CPU as ``commit``'s bench/results.json holds them."""
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:bench/results.json"], capture_output=True, text=True)
    if shown.returncode:
        raise SystemExit(f"--reference {commit!r}: git cannot show its bench/results.json ({shown.stderr.strip()[:200]}). "
                         "Give a commit of this repository's history (a shallow clone lacks it: git fetch --unshallow).")
    speed = json.loads(shown.stdout).get("speed", {})
    cell = speed.get("cells", {}).get(f"{isa}/{row}/{column}")
    if not cell or cell.get("seconds") is None:
        raise SystemExit(f"{commit}'s bench/results.json has no timed cell {isa}/{row}/{column}; give the commit that saved it.")
    return {**cell, "cpu": cell.get("cpu") or speed.get("runs", {}).get(isa, {}).get("cpu", "unrecorded")}


def _cell(script: Path, row: str, column: str, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """One ``bench_speed.py --cell`` of ``script`` in a fresh process (:func:`bench_speed.child`); a failed one ends the run."""
    cell = child(["--cell", row, column], env, timeout, script=script)
    if cell.get("seconds") is None:
        raise SystemExit(f"{script} --cell {row} {column} failed: {cell.get('error', 'no output')}"
                         + ("; give a larger --timeout." if "did not finish" in cell.get("error", "") else ""))
    return cell


def project(row: str, column: str, commit: str, isa: str, pairs: int, timeout: float) -> dict[str, Any]:
    """Time the reference commit's cell and today's in ``pairs`` alternating pairs; project today's onto the reference CPU."""
    reference = reference_cell(commit, isa, row, column)
    full = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, **ISAS[isa], "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTHONPATH", None)
    load_start = machine.load()
    with tempfile.TemporaryDirectory(prefix="projection-") as scratch:
        tree, shim = Path(scratch) / "tree", Path(scratch) / "path"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), full], check=True, capture_output=True)
        try:
            shim.mkdir()
            (shim / "neurofilters").symlink_to(tree, target_is_directory=True)
            old_env = {**env, "PYTHONPATH": str(shim)}
            found = subprocess.run([sys.executable, "-c", "import neurofilters; print(neurofilters.__file__)"], env=old_env,
                                   capture_output=True, text=True, check=True).stdout.strip()
            if not found.startswith(str(shim)):
                raise SystemExit(f"the reference's neurofilters resolved to {found}, not to the worktree {tree}")
            runs = []
            for index in range(pairs):
                first = "reference" if index % 2 == 0 else "today"  # ABAB... then BABA: neither side always runs second
                print(f"== pair {index + 1}/{pairs}: {full[:10]} and today's, {first} first", file=sys.stderr, flush=True)
                timed = {}
                for side in (("reference", "today") if first == "reference" else ("today", "reference")):
                    script, side_env = (tree / "bench" / "bench_speed.py", old_env) if side == "reference" else (HERE / "bench_speed.py", env)
                    timed[side] = _cell(script, row, column, side_env, timeout)
                old, new = timed["reference"], timed["today"]
                runs.append({"reference_s": old["seconds"], "today_s": new["seconds"], "reference_cpu_s": old["cpu_seconds"],
                             "today_cpu_s": new["cpu_seconds"], "first": first,
                             "load_average": [old["load_average_start"][0], new["load_average_end"][0]]})
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False, capture_output=True)
    ratio = statistics.median(run["today_s"] / run["reference_s"] for run in runs)
    factor = statistics.median(run["reference_s"] for run in runs) / reference["seconds"]
    budget = BUDGETS[row][COLUMNS.index(column)]
    projected = round(reference["seconds"] * ratio, 2)
    return {
        "bench": "speed-projection", "key": f"{isa}/{row}/{column}", "isa_cap": ISAS[isa].get("ONEDNN_MAX_CPU_ISA", "none"),
        "reference_commit": full, "reference_cpu": reference["cpu"], "reference_s": reference["seconds"],
        "reference_load_average": reference.get("load_average_start"), "cpu": machine.cpu(), "pairs": runs,
        "today_over_reference": round(ratio, 3), "machine_factor": round(factor, 2), "projected_s": projected,
        "budget_s": budget, "within_budget": projected <= budget, "load_average_start": load_start, "load_average_end": machine.load(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    """Project one cell and print its JSON line; with ``--save`` store it in bench/results.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("row", choices=tuple(BUDGETS), help="the speed table's row")
    parser.add_argument("column", choices=COLUMNS, help="the speed table's column")
    parser.add_argument("--reference", required=True, help="the commit whose bench/results.json holds the cell measured on the budgets' CPU")
    parser.add_argument("--isa", choices=tuple(ISAS), default="avx2", help="the ISA setting of both runs (default: avx2, the budgets' CPU class)")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs of runs (default: 3)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before one run is given up")
    parser.add_argument("--save", action="store_true", help='store the result under "speed_projection" in bench/results.json')
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1. Received: {args.pairs}")
    result = project(args.row, args.column, args.reference, args.isa, args.pairs, args.timeout)
    print(json.dumps(result), flush=True)
    if args.save:
        machine.save_entry("speed_projection", result["key"], result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
