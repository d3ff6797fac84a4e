"""The texture filters' own bounded L-BFGS against SciPy's L-BFGS-B, on the filters' default runs.

    python bench/bench_lbfgs.py --size 512 --rounds 2 --save

The peer is SciPy's ``minimize(method="L-BFGS-B")`` with the same bounds, history (20), iteration and
evaluation caps and stall stop, put in place of :func:`neurofilters.filters.texture.lbfgs.minimize_box` for
its runs; everything else (network, schedule, seeds) is the filter's default. Each round runs texture
(scikit-image's brick, seeds 0, 1 and 2) and style-transfer (chelsea in coffee's style, seed 0) once with
each optimiser, alternating, so a change in the machine's speed falls on both. Each result's loss is the
float32 loss of ``bench_peers`` (every default layer at the full size), so a faster optimiser that ends
higher shows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402
from bench_peers import Peer, _default_steps, scipy_box, style_case, texture_case  # noqa: E402


@contextlib.contextmanager
def optimiser(name: str) -> Iterator[None]:
    """The filters' L-BFGS (``ours``) or SciPy's (``scipy``) for the runs inside."""
    from neurofilters.filters.texture import engine

    kept = engine.minimize_box
    engine.minimize_box = scipy_box if name == "scipy" else kept
    try:
        yield
    finally:
        engine.minimize_box = kept


def cases(size: int) -> list[tuple[str, Callable[[], np.ndarray], Peer]]:
    """``(label, run the default, the loss that measures its result)`` for texture (three seeds) and style."""
    texture, texture_loss = texture_case(size)
    transfer, style_loss, shape = style_case(size)
    steps, style_steps = _default_steps((size, size)), _default_steps(shape[:2])

    def seeded(seed: int) -> Callable[[], np.ndarray]:
        return lambda: texture(steps, seed=seed)

    return [(f"texture seed {seed}", seeded(seed), texture_loss) for seed in (0, 1, 2)] + [("style seed 0", lambda: transfer(style_steps), style_loss)]


def main() -> int:
    """Run the rounds, print each run and the totals, and with ``--save`` store them in bench/results.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="the output's side (texture) and the content's height (style); default 512")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every case with each optimiser; default 2")
    parser.add_argument("--save", action="store_true", help="store the result in bench/results.json under texture/lbfgs_<size>_<isa>")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    load_start = machine.load()
    prepared = cases(args.size)
    for _, run, _ in prepared:  # traces every octave's steps before any clock starts
        run()
    for round_ in range(args.rounds):
        for label, run, loss in prepared:
            for name in (("ours", "scipy") if round_ % 2 == 0 else ("scipy", "ours")):
                with optimiser(name):
                    began = time.perf_counter()
                    image = run()
                    seconds = time.perf_counter() - began
                runs.append({"case": label, "optimiser": name, "round": round_, "seconds": round(seconds, 2), "loss": float(f"{loss.evaluate(image)[0]:.5g}")})
                print(json.dumps(runs[-1]), flush=True)
    summary: dict[str, Any] = {}
    for kind in ("texture", "style"):
        for name in ("ours", "scipy"):
            mine = [run for run in runs if run["case"].startswith(kind) and run["optimiser"] == name]
            summary[f"{kind}_{name}_seconds_mean"] = round(float(np.mean([run["seconds"] for run in mine])), 2)
            summary[f"{kind}_{name}_loss_mean"] = float(f"{np.mean([run['loss'] for run in mine]):.4g}")
        summary[f"{kind}_time_ratio"] = round(summary[f"{kind}_ours_seconds_mean"] / summary[f"{kind}_scipy_seconds_mean"], 3)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "native").lower()
    entry = {"bench": "lbfgs", "key": f"lbfgs_{args.size}_{isa}", "size": args.size, "cpu": machine.cpu(), "isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA", "none"),
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_start": load_start, "load_average_end": machine.load(),
             "runs": runs, **summary}
    print(json.dumps(summary, indent=1))
    if args.save:
        machine.save_entry("texture", entry["key"], entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
