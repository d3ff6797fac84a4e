"""Run every benchmark under bench/ one after another (``make bench``), each in its own process.

Each benchmark measures its own ratios against its named peer in the same run and
writes its figures where its docstring says (bench/results.json,
bench/results_hallucinate.json or stdout). This runner only starts them with their
default arguments, in a fixed order, keeps going when one fails, and prints how long
each took and how it ended. A whole run takes hours on a 2-core CPU: choose with
``--only deepdream,texture``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> argument lists (one process each), in the order they run.
BENCHMARKS: dict[str, list[list[str]]] = {
    "deepdream": [["bench_deepdream.py"]],
    "batch": [["bench_batch.py"]],
    "saliency": [["bench_saliency.py"]],
    "hallucinate": [["bench_hallucinate.py", "--parts", "quality,lucent,speed,adversarial,noise"]],
    # synth --steps 100: 100 iterations in every octave, the texture filter's schedule before issue 21 (the
    # script's --steps defaults to the style reference's 1,000); --save: into bench/results.json, whose
    # style and synth entries the performance page renders.
    "texture": [["bench_texture.py", "style", "--size", "256", "--save"],
                ["bench_texture.py", "synth", "--size", "512", "--steps", "100", "--save"],
                ["bench_texture.py", "rss", "--size", "4096", "--steps", "2"],
                ["bench_peers.py", "texture", "--size", "256", "--save"],
                ["bench_peers.py", "texture", "--size", "512", "--save"],  # about 10 min natively, 25 under the AVX2 cap
                # --size 1024 is run by hand: 40 min natively; under the AVX2 cap the peer's whole-image step takes minutes
                ["bench_peers.py", "style", "--size", "256", "--save"],
                ["bench_lbfgs.py", "--size", "512", "--save"]],  # the filters' L-BFGS against SciPy's, about 15 min
    "explorer": [["bench_explorer.py"]],
    # one large convolution banded and not, under the AVX2 cap (about 10 minutes: the peer's reference kernel)
    "banded": [["bench_banded.py", "--save"]],
    # every filter's default against issue 21's budgets, AVX2-capped and as is (hours: one process per cell)
    "speed": [["bench_speed.py", "--save"]],
    # hallucinate's cells beside the code that was timed on the budgets' EPYC (9522c97), 3 pairs each (about 10 minutes)
    "projection": [["bench_projection.py", "hallucinate", "512", "--reference", "9522c97", "--save"],
                   ["bench_projection.py", "hallucinate", "1024", "--reference", "9522c97", "--save"]],
    "finetune": [["bench_finetune.py"]],
    "gimp": [["bench_gimp.py"]],
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; exit 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}. Choose from: {', '.join(BENCHMARKS)}")
    summary = []
    for name in chosen:
        for command in BENCHMARKS[name]:
            if name == "gimp" and hasattr(os, "geteuid") and os.geteuid() != 0:
                summary.append((" ".join(command), "skipped (needs root for the GIMP chroot)", 0.0))
                continue
            print(f"== {' '.join(command)}", flush=True)
            began = time.monotonic()
            code = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], cwd=HERE.parent).returncode
            summary.append((" ".join(command), "ok" if code == 0 else f"failed (exit {code})", time.monotonic() - began))
    print("\nbenchmark                                   result      seconds")
    for command, result, seconds in summary:
        print(f"{command[:43]:<43} {result:<11} {seconds:8.0f}")
    return 1 if any(result.startswith("failed") for _, result, _ in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
