"""Every filter's default run against the speed budgets of issue 21, on the CPU as it is and as an AVX2-only one.

    python bench/bench_speed.py --only texture,style-transfer --sizes 512 --save
    python bench/bench_speed.py                   # every row, 512², 1024² and the preview (hours on 2 cores)

Each cell is one process that loads the model (not timed: the start-up is reported beside), then times
one call of the filter with its defaults through the Python API (``neurofilters.apply``, what ``run``
does) on scikit-image's chelsea resized to the cell's size: the texture sample is scikit-image's brick
(128 x 128), the style image its coffee. The preview cell is a warm worker: the filter's GIMP preview
parameters at 256 px long side, timed on the second call in one process.

``--isa avx2`` runs the processes with ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's ISA cap: how an AVX2 + FMA
laptop is emulated on an AVX-512 machine; ``OPENBLAS_CORETYPE=Haswell`` caps NumPy's sgemm the same
way) and ``--isa native`` as the machine is; the default runs both. ``--check-isa`` prints which oneDNN
kernels one convolution uses under the cap (``ONEDNN_VERBOSE=1``).

Beside the seconds: NumPy's float32 sgemm rate (4096², best of 3) in the same environment at the start
and the end of the run, and, under the AVX2 cap, each budget scaled by it (x 188 GFLOP/s, the rate of
the AVX2 CPU the budgets were set for, over the mean of the run's two: ``REFERENCE_SGEMM_GFLOPS``;
2-core machines of the same service differed by 1.7x);
the load average at every cell's start and end (two shared cores: absolute seconds depend on the
neighbours), the process's CPU seconds, and the network evaluations per default run: calls of the
input-gradient step (forward + gradient), weighted by the pixels they saw over the output's pixels, so an
octave at half the side counts a quarter (texture and style: the Gram engine's steps, margins included;
their forward-only statistics passes are not counted; hallucinate on a canvas: its views, each one
forward + gradient at the network's input size).

``--save`` stores the table under ``"speed"`` in bench/results.json (one entry per ISA, row and column),
which the performance page renders.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402

#: row -> (filter, parameters, model to load first); the issue's rows, in its order.
ROWS: dict[str, tuple[str, dict[str, Any], str]] = {
    "texture": ("texture", {}, "vgg16-hed"),
    "style-transfer": ("style-transfer", {}, "vgg16-hed"),
    "hallucinate": ("hallucinate", {"start": "noise"}, "lite0"),
    "deepdream-lite0": ("deepdream", {"model": "lite0"}, "lite0"),
    "deepdream-vgg16-hed": ("deepdream", {"model": "vgg16-hed"}, "vgg16-hed"),
    "saliency-grad-cam": ("saliency", {"method": "grad-cam"}, "lite0"),
    "saliency-guided-backprop": ("saliency", {"method": "guided-backprop"}, "lite0"),
    "activation-maps": ("activation-maps", {}, "lite0"),
    "feature-inversion": ("feature-inversion", {}, "lite0"),
}
#: row -> budget in seconds at 512², 1024² and the preview (issue 21's table).
BUDGETS: dict[str, tuple[float, float, float]] = {
    "texture": (45, 150, 3),
    "style-transfer": (60, 180, 3),
    "hallucinate": (20, 40, 3),
    "deepdream-lite0": (10, 25, 1),
    "deepdream-vgg16-hed": (30, 100, 2),
    "saliency-grad-cam": (3, 5, 1),
    "saliency-guided-backprop": (3, 5, 1),
    "activation-maps": (3, 5, 1),
    "feature-inversion": (20, 40, 3),
}
COLUMNS = ("512", "1024", "preview")
#: NumPy's sgemm rate (GFLOP/s, 4096²) on the CPU the budgets were set for: the 2-core AVX2-only EPYC of
#: ``shared/DESIGN.md`` §5 ("~188 GFLOP/s"). A run's scaled budget is the budget x this / its own rate, so a
#: slower CPU gets more seconds and a faster one fewer (the issue: "report the sgemm ... so the budgets can be scaled").
REFERENCE_SGEMM_GFLOPS = 188.0
ISAS = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}, "native": {}}


def sgemm_gflops(size: int = 4096, rounds: int = 3) -> float:
    """NumPy's float32 matrix product rate, best of ``rounds``."""
    rng = np.random.default_rng(0)
    a, b = rng.random((size, size), dtype=np.float32), rng.random((size, size), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(rounds))
    return 2 * size**3 / best / 1e9


def scaled_budget(budget: float, sgemm: float | None) -> float | None:
    """``budget`` on a CPU whose sgemm rate is ``sgemm`` GFLOP/s: x :data:`REFERENCE_SGEMM_GFLOPS` / ``sgemm`` (None: unknown rate)."""
    return round(budget * REFERENCE_SGEMM_GFLOPS / sgemm, 1) if sgemm else None


def _timed(fn: Any) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


class EvaluationCounter:
    """Counts input-gradient steps and the pixels they saw, by wrapping the two places that make them."""

    def __init__(self) -> None:
        """Patch :func:`neurofilters.filters.gradients.make_gradient_fn`, the Gram engine's compiled steps and hallucinate's canvas views."""
        import neurofilters.filters.gradients as gradients
        from neurofilters.filters.gradients import CompiledNetwork

        self.calls = 0
        self.pixels = 0
        original_make = gradients.make_gradient_fn
        original_step = CompiledNetwork.value_grad_aux
        original_windows = CompiledNetwork.windows_value_grad_aux
        counter = self

        def make_gradient_fn(*args: Any, **kwargs: Any) -> Any:
            fn = original_make(*args, **kwargs)

            def counted(batch: Any, *more: Any, **named: Any) -> Any:
                shape = np.shape(batch)
                counter.calls += 1
                counter.pixels += int(np.prod(shape[:-1]))
                return fn(batch, *more, **named)

            return counted

        def value_grad_aux(network: Any, key: Any, loss_fn: Any, image: Any, extras: Any) -> Any:
            counter.calls += 1
            counter.pixels += int(image.shape[0] * image.shape[1])
            return original_step(network, key, loss_fn, image, extras)

        def windows_value_grad_aux(network: Any, key: Any, loss_fn: Any, windows: Any, extras: Any) -> Any:
            counter.calls += 1
            counter.pixels += sum(int(window.shape[0] * window.shape[1]) for window in windows)
            return original_windows(network, key, loss_fn, windows, extras)

        gradients.make_gradient_fn = make_gradient_fn
        CompiledNetwork.value_grad_aux = value_grad_aux  # type: ignore[method-assign]
        CompiledNetwork.windows_value_grad_aux = windows_value_grad_aux  # type: ignore[method-assign]

        # hallucinate on a canvas: each step's views (one network evaluation of size x size each).
        from neurofilters.filters.hallucinate import canvas

        original_views = canvas.canvas_views

        def canvas_views(rng: Any, count: int, height: int, width: int, views: Any) -> Any:
            counter.calls += count
            counter.pixels += count * views.size * views.size
            return original_views(rng, count, height, width, views)

        canvas.canvas_views = canvas_views


def _inputs(size: int) -> dict[str, np.ndarray]:
    import skimage.data
    from PIL import Image

    def resized(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        return np.asarray(Image.fromarray(array).resize((shape[1], shape[0]), Image.Resampling.BICUBIC), np.float32) / 255.0

    chelsea = skimage.data.chelsea()
    if size <= 256:  # the preview: 256 px on the long side
        shape = (round(256 * chelsea.shape[0] / chelsea.shape[1]), 256)
    else:
        shape = (size, size)
    brick = np.asarray(skimage.data.brick(), np.uint8)[:256, :256]
    return {
        "image": resized(chelsea, shape),
        "source": np.repeat(resized(brick, (128, 128))[:, :, None], 3, axis=2),
        "style": resized(skimage.data.coffee(), (256, 384)),
    }


def run_cell(row: str, column: str) -> dict[str, Any]:
    """One cell, in this process: start-up, then the timed call (the preview: its second call).

    ``column``: ``preview`` or the side of the square image; ``BENCH_SPEED_PARAMS`` (JSON) adds
    parameters (``bench/gpu_check.sh`` sets ``{"precision": "bfloat16"}`` on GPUs that have it).
    """
    began = time.perf_counter()
    import neurofilters
    from neurofilters.plugin_host import get_registry

    counter = EvaluationCounter()
    name, params, model = ROWS[row]
    neurofilters.load_model(model)
    startup = time.perf_counter() - began
    size = 256 if column == "preview" else int(column)
    inputs = _inputs(size)
    values = {**params, **json.loads(os.environ.get("BENCH_SPEED_PARAMS", "{}"))}
    if name == "texture":
        values["source"] = inputs["source"]
    if name == "style-transfer":
        values["style"] = inputs["style"]
    if column == "preview":
        values.update(get_registry().get_filter(name).preview_params)
        neurofilters.apply(name, inputs["image"], seed=0, **values)
    counter.calls = counter.pixels = 0
    load_start, cpu_start = machine.load(), time.process_time()
    began = time.perf_counter()
    neurofilters.apply(name, inputs["image"], seed=0, **values)
    seconds = time.perf_counter() - began
    pixels = inputs["image"].shape[0] * inputs["image"].shape[1]
    return {
        "row": row, "column": column, "seconds": round(seconds, 2), "cpu_seconds": round(time.process_time() - cpu_start, 2),
        "startup_s": round(startup, 2), "evaluations": counter.calls, "evaluations_full_size": round(counter.pixels / pixels, 2),
        "load_average_start": load_start, "load_average_end": machine.load(), "isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
    }


def check_isa() -> str:
    """The oneDNN kernel names of one convolution under ``ONEDNN_MAX_CPU_ISA=AVX2`` (what ``ONEDNN_VERBOSE=1`` prints)."""
    code = (
        "import numpy as np, tensorflow as tf\n"
        "x = tf.constant(np.ones((1, 64, 64, 32), np.float32)); k = tf.constant(np.ones((3, 3, 32, 32), np.float32))\n"
        "tf.function(lambda x: tf.nn.relu(tf.nn.conv2d(x, k, 1, 'SAME')))(x).numpy()\n"
    )
    env = {**os.environ, **ISAS["avx2"], "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    lines = [line.split(",") for line in out.stdout.splitlines() if line.startswith("onednn_verbose")]
    isa = next((part.split(":", 1)[1] for fields in lines for part in fields if part.startswith("isa:")), "?")
    kernels = sorted({f"{fields[5]} {fields[6]}" for fields in lines if len(fields) > 6 and fields[3] == "exec"})
    return f"oneDNN ISA {isa}; kernels: {', '.join(kernels) or 'none ran (is oneDNN on? TF_ENABLE_ONEDNN_OPTS)'}"


def _mark(seconds: float | None, budget: float, scaled: float | None = None) -> str:
    if seconds is None:
        return f"– / {budget:g} s"
    mark = f"{seconds:.1f} s / {budget:g} s {'✓' if seconds <= budget else '✗'}"
    return mark if scaled is None else f"{mark} (scaled {scaled:g} s {'✓' if seconds <= scaled else '✗'})"


def table(cells: dict[str, dict[str, Any]], isa: str) -> str:
    """The issue's table for one ISA: each cell seconds / budget ✓ or ✗ (and the budget scaled by the run's
    sgemm rate, under the AVX2 cap), then evaluations per default run."""
    lines = [f"| filter (defaults), {isa} | 0.25 MP (512²) | 1 MP (1024²) | preview (256 px, warm) | evaluations per default run (512²) |",
             "|---|---|---|---|---|"]
    for row in ROWS:
        marks = []
        for column, budget in zip(COLUMNS, BUDGETS[row]):
            cell = cells.get(f"{isa}/{row}/{column}", {})
            marks.append(_mark(cell.get("seconds"), budget, cell.get("budget_scaled_s")))
        cell = cells.get(f"{isa}/{row}/512", {})
        evaluations = f"{cell['evaluations_full_size']:.1f} ({cell['evaluations']} calls)" if cell else "–"
        lines.append(f"| {row} | {' | '.join(marks)} | {evaluations} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cells (each in its own process), print the tables, optionally save them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated rows, from: {', '.join(ROWS)}")
    parser.add_argument("--sizes", default=",".join(COLUMNS), help="comma-separated columns: 512, 1024, preview")
    parser.add_argument("--isa", default="avx2,native", help="comma-separated: avx2 (ONEDNN_MAX_CPU_ISA=AVX2), native")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a cell is given up (recorded as such)")
    parser.add_argument("--save", action="store_true", help='store the cells under "speed" in bench/results.json')
    parser.add_argument("--check-isa", action="store_true", help="print the oneDNN kernels under the AVX2 cap and exit")
    parser.add_argument("--cell", nargs=2, metavar=("ROW", "COLUMN"), help=argparse.SUPPRESS)
    parser.add_argument("--sgemm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(*args.cell)))
        return 0
    if args.sgemm:
        print(json.dumps({"sgemm_gflops": round(sgemm_gflops(), 1)}))
        return 0
    if args.check_isa:
        print(check_isa())
        return 0
    rows = [row.strip() for row in args.only.split(",") if row.strip()]
    columns = [column.strip() for column in args.sizes.split(",") if column.strip()]
    isas = [isa.strip() for isa in args.isa.split(",") if isa.strip()]
    for wrong, allowed, what in ((rows, ROWS, "row"), (columns, COLUMNS, "size"), (isas, ISAS, "isa")):
        unknown = [value for value in wrong if value not in allowed]
        if unknown:
            parser.error(f"unknown {what}(s): {', '.join(unknown)}. Choose from: {', '.join(allowed)}")
    saved = machine.saved().get("speed", {})
    cells: dict[str, dict[str, Any]] = dict(saved.get("cells", {}))
    runs: dict[str, Any] = dict(saved.get("runs", {}))
    for isa in isas:
        env = {**os.environ, **ISAS[isa], "TF_CPP_MIN_LOG_LEVEL": "2"}
        run: dict[str, Any] = {"cpu": machine.cpu(), "cpu_count": os.cpu_count(), "load_average_start": machine.load()}
        if isa == "avx2":
            run["onednn_kernels"] = check_isa()
        run["sgemm_gflops_start"] = child(["--sgemm"], env, 600).get("sgemm_gflops")
        for row in rows:
            for column in columns:
                print(f"== {isa} {row} {column}", file=sys.stderr, flush=True)
                cell = child(["--cell", row, column], env, args.timeout)
                cell["budget_s"] = BUDGETS[row][COLUMNS.index(column)]
                cell["within_budget"] = cell.get("seconds") is not None and cell["seconds"] <= cell["budget_s"]
                cell.update(cpu=run["cpu"], date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
                cells[f"{isa}/{row}/{column}"] = cell
                print(json.dumps(cell), flush=True)
        run["sgemm_gflops_end"] = child(["--sgemm"], env, 600).get("sgemm_gflops")
        rates = [rate for rate in (run["sgemm_gflops_start"], run["sgemm_gflops_end"]) if rate]
        for row in rows:  # the run's machine on each cell too: a later --only run replaces the run's record, not these cells
            for column in columns:
                cell = cells[f"{isa}/{row}/{column}"]
                cell["sgemm_gflops"] = round(sum(rates) / len(rates), 1) if rates else None
                if isa == "avx2":  # the budgets' CPU is an AVX2 one: a native AVX-512 rate says nothing about it
                    cell["budget_scaled_s"] = scaled_budget(cell["budget_s"], cell["sgemm_gflops"])
                    cell["within_scaled_budget"] = (cell.get("seconds") is not None and cell["budget_scaled_s"] is not None
                                                    and cell["seconds"] <= cell["budget_scaled_s"])
        run["load_average_end"] = machine.load()
        run["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        runs[isa] = run
        print(f"\n{table(cells, isa)}\n\nsgemm {run['sgemm_gflops_start']} → {run['sgemm_gflops_end']} GFLOP/s; "
              f"load {run['load_average_start'][0]} → {run['load_average_end'][0]}; {run.get('onednn_kernels', '')}", flush=True)
    if args.save:
        machine.save({"speed": {"budgets": {row: list(budget) for row, budget in BUDGETS.items()}, "reference_sgemm_gflops": REFERENCE_SGEMM_GFLOPS,
                                "runs": runs, "cells": cells}})
    return 0


def child(extra: list[str], env: dict[str, str], timeout: float, script: str | Path = __file__) -> dict[str, Any]:
    """Run ``script`` (this one, or another commit's copy of it) with ``extra`` in a fresh process; its last JSON
    line (or why there is none: ``seconds`` None and an ``error``)."""
    began = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, str(script), *extra], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "error": f"did not finish in {timeout:.0f} s", "load_average_end": machine.load()}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        return {"seconds": None, "error": (out.stderr.strip().splitlines() or ["no output"])[-1][:300],
                "wall_s": round(time.perf_counter() - began, 1)}
    return json.loads(lines[-1])


if __name__ == "__main__":
    sys.exit(main())
