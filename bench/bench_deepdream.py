"""DeepDream benchmark: our engine vs the TF-tutorial reference, % of the CPU's sgemm peak, peak memory.

Usage::

    .venv/bin/python bench/bench_deepdream.py [--models lite0,vgg16-hed] [--steps lite0=10,vgg16-hed=2]
                                              [--rounds 3] [--no-equal-work]
                                              [--rss 1024x768,4096x4096,8192x8192]
                                              [--rise lite0,vgg16-hed] [--out bench/results.json]
    .venv/bin/python bench/bench_deepdream.py --target lite0=384x288,vgg16-hed=192x144 [--only-target]

Both implementations run the TF tutorial's schedule (octaves -2..2 x 1.3, std
normalisation, step 0.01 in [-1, 1], random roll up to 512 px, mean-activation
loss, no detail re-injection, no smoothing) on the same 1024 x 768 photo and
the same model, in the same process.

The machine is shared, so each model is measured in ``--rounds`` interleaved
rounds -- numpy sgemm peak, reference, ours (and the equal-work reference) --
right next to each other, and medians are reported with the spread of the
per-round ratios. The first run of each implementation includes its tracing
and is reported separately ("cold"); the ratio uses the warm medians (a batch
or the GIMP worker keeps the compiled step).

What each implementation computes per step differs, and the report says so:
the tutorial's tile loop (``range(0, size, 512)[:-1]``) differentiates only
part of the image per step (``pixel_share_reference``); our engine
differentiates every pixel at every step. ``per_pixel_ratio`` compares the
cost per differentiated pixel; ``equal_work`` runs the tutorial's algorithm
with its last tiles kept (not the tutorial, an extra figure).

Our engine runs with its default ``precision="auto"``: bfloat16 for VGG16 on a
CPU with native bfloat16 dot products (AVX512_BF16 / AMX), float32 otherwise;
the reference stays float32 as published. Where ``auto`` picked bfloat16, each
round also runs our engine in float32 (``ours_float32``), so the report shows
what each part of the gain comes from.

GFLOP/s count the convolutions' multiply-adds (x2) of the forward pass, times
two for the input-gradient pass, over the pixels each implementation actually
differentiates (tile margins and skipped tiles excluded), and are divided by
the median numpy sgemm rate of the same rounds (the float32 peak: a bfloat16
run can exceed 100 %). Peak resident memory is
measured in a fresh subprocess per image size (``VmHWM``).

``--target`` measures what a user waits for: the time the TF-tutorial
reference takes with its full schedule (100 steps per octave, octaves -2..2 x
1.3, warm), the objective it reaches (the tutorial's loss -- the sum over the
layers of the mean activation of the unmodified network, ReLU6 kept -- on its
final image at full size), and the time our engine takes to reach that same
value with its best settings: each candidate in ``TARGET_CANDIDATES`` (octaves,
step schedule, ReLU6 gradient, precision ``auto``) runs its lower octaves for a
fixed number of steps and its last, full-size octave until the objective,
evaluated on the whole image after every step (the evaluation is not timed),
reaches the target. ``time_ratio`` is ours (best candidate) / the reference.

``--rise`` records, per model, how much the default settings raise the
objective they climb on scikit-image photos at several widths (the figure
``tests/test_deepdream.py`` asserts on one of them), and for Lite0 also the
objective of the unmodified ReLU6 network.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

SCHEDULE = dict(octaves=5, octave_scale=1.3, upscale_octaves=2, step_size=0.005)


def sgemm_peak(size: int = 4096, repeats: int = 3) -> float:
    """Median GFLOP/s of a float32 ``size x size`` numpy matmul (the practical fp32 peak)."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    b = np.random.default_rng(1).random((size, size), dtype=np.float32)
    a @ b
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return float(np.median(rates))


def forward_flops_per_pixel(model: Any, names: list[str]) -> float:
    """Multiply-add FLOPs (x2) of the convolutions up to the deepest target layer, per input pixel."""
    side = 224
    table = model.layer_table(side)
    deepest = max(i for i, info in enumerate(table) if info.name in names)
    total = 0.0
    for info in table[: deepest + 1]:
        layer = model.keras_model.get_layer(info.name)
        kernel = getattr(layer, "kernel", None)
        if kernel is None or len(kernel.shape) != 4:
            continue
        height, width = info.output_shape[1], info.output_shape[2]
        total += 2.0 * float(np.prod(kernel.shape)) * height * width
    return total / (side * side)


def photo(height: int, width: int) -> np.ndarray:
    """scikit-image's astronaut photo at ``width x height``, float32 RGB in [0, 1]."""
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.BICUBIC), np.float32) / 255.0


def tutorial_pixels(shapes: list[tuple[int, int]], tile: int = 512, *, full_coverage: bool = False) -> int:
    """Pixels the tutorial's tile loop differentiates per step, summed over the octaves."""
    total = 0
    for h, w in shapes:
        rows = list(range(0, h, tile)) if full_coverage else list(range(0, h, tile))[:-1] or [0]
        cols = list(range(0, w, tile)) if full_coverage else list(range(0, w, tile))[:-1] or [0]
        total += sum(min(tile, h - y) for y in rows) * sum(min(tile, w - x) for x in cols)
    return total


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def bench_model(name: str, steps: int, image: np.ndarray, rounds: int, equal_work: bool) -> dict[str, Any]:
    """Cold runs, then ``rounds`` interleaved rounds of sgemm / reference / ours (/ equal-work reference)."""
    from tf_tutorial_reference import TiledGradients, run_tutorial_dream

    from neurofilters.filters.deepdream import engine
    from neurofilters.plugin_host import ModelCache

    model = ModelCache().get(name)
    layers = [layer for layer, _ in model.default_dream_layers]
    features = model.feature_model(layers)
    # Our engine on the tutorial's algorithm: the same layers, loss and network
    # (ReLU6 kept), every other setting as the tutorial has it.
    settings = engine.DreamSettings(
        model=name, layers=tuple(model.default_dream_layers), loss="mean", relu6="keep", steps=steps,
        detail=False, jitter=512, normalize="std", smoothing="none", chroma=1.0, clip=True, **SCHEDULE,
    )  # fmt: skip
    from neurofilters.filters.gradients import resolve_precision

    precision = resolve_precision(settings.precision, model)
    single = engine.with_settings(settings, precision="float32") if precision != "float32" else None
    reference = TiledGradients(features)
    full = TiledGradients(features, full_coverage=True)

    def run_reference(seed: int, gradients: Any) -> float:
        start = time.perf_counter()
        run_tutorial_dream(image, features, steps_per_octave=steps, seed=seed, gradients=gradients)
        return time.perf_counter() - start

    def run_ours(seed: int, chosen: Any = settings) -> float:
        start = time.perf_counter()
        engine.dream(image, model, chosen, rng=np.random.default_rng(seed))
        return time.perf_counter() - start

    cold = {"reference_s": run_reference(0, reference), "ours_s": run_ours(0)}
    if single is not None:
        cold["ours_float32_s"] = run_ours(0, single)
    if equal_work:
        cold["equal_work_s"] = run_reference(0, full)
    times: dict[str, list[float]] = {"sgemm": [], "reference": [], "ours": [], "ours_float32": [], "equal_work": []}
    for round_index in range(rounds):
        times["sgemm"].append(sgemm_peak())
        times["reference"].append(run_reference(round_index + 1, reference))
        times["ours"].append(run_ours(round_index + 1))
        if single is not None:
            times["ours_float32"].append(run_ours(round_index + 1, single))
        if equal_work:
            times["equal_work"].append(run_reference(round_index + 1, full))
        latest = ", ".join(f"{key} {values[-1]:.2f}" for key, values in times.items() if values)
        print(f"  {name} round {round_index + 1}: {latest}", flush=True)

    from neurofilters.filters.octaves import octave_shapes

    shapes = octave_shapes(*image.shape[:2], 5, 1.3, upscale_octaves=2, min_size=model.min_size)
    ours_pixels = sum(h * w for h, w in shapes) * steps
    reference_pixels = tutorial_pixels(shapes) * steps
    flops_per_pixel = 2.0 * forward_flops_per_pixel(model, layers)  # forward + input-gradient pass
    peak = _median(times["sgemm"])
    ours, ref = _median(times["ours"]), _median(times["reference"])
    ratios = [o / r for o, r in zip(times["ours"], times["reference"])]
    row: dict[str, Any] = {
        "model": name,
        "precision": precision,
        "layers": layers,
        "steps_per_octave": steps,
        "rounds": rounds,
        "sgemm_gflops_median": peak,
        "sgemm_gflops_rounds": times["sgemm"],
        "reference_s_median": ref,
        "ours_s_median": ours,
        "reference_s_rounds": times["reference"],
        "ours_s_rounds": times["ours"],
        "cold": cold,
        "ratio": ours / ref,
        "ratio_rounds_min_max": [min(ratios), max(ratios)],
        "ratio_cold": cold["ours_s"] / cold["reference_s"],
        "pixel_share_reference": reference_pixels / ours_pixels,
        "per_pixel_ratio": (ours / ours_pixels) / (ref / reference_pixels),
        "mpx_per_s_ours": ours_pixels / ours / 1e6,
        "mpx_per_s_reference": reference_pixels / ref / 1e6,
        "gflops_ours": flops_per_pixel * ours_pixels / ours / 1e9,
        "gflops_reference": flops_per_pixel * reference_pixels / ref / 1e9,
    }
    row["peak_fraction_ours"] = row["gflops_ours"] / peak
    row["peak_fraction_reference"] = row["gflops_reference"] / peak
    row["peak_fraction_ours_rounds"] = [
        flops_per_pixel * ours_pixels / t / 1e9 / p for t, p in zip(times["ours"], times["sgemm"])
    ]
    if single is not None:
        ours_single = _median(times["ours_float32"])
        row["ours_float32_s_median"] = ours_single
        row["ours_float32_s_rounds"] = times["ours_float32"]
        row["ratio_float32"] = ours_single / ref
        row["bfloat16_speedup"] = ours_single / ours
    if equal_work:
        equal = _median(times["equal_work"])
        row["equal_work_s_median"] = equal
        row["equal_work_s_rounds"] = times["equal_work"]
        row["ratio_equal_work"] = ours / equal
        row["pixel_share_equal_work"] = tutorial_pixels(shapes, full_coverage=True) * steps / ours_pixels
    return row


#: Our candidate settings for the time-to-target race (the best one counts): lower octaves
#: run ``steps`` steps each, the last (full-size) octave runs until the target is reached.
TARGET_CANDIDATES: tuple[dict[str, Any], ...] = (
    {"octaves": 1, "step_size": 0.01},
    {"octaves": 1, "step_size": 0.02},
    {"octaves": 2, "steps": 5, "step_size": 0.01},
    {"octaves": 2, "steps": 5, "step_size": 0.02},
)
#: Safety cap on the last octave's steps in the race.
TARGET_MAX_STEPS = 400


def _tutorial_objective(features: Any, image: np.ndarray) -> float:
    """The tutorial's loss on a whole image: sum over the layers of the mean activation (float64)."""
    import keras

    outputs = features(image[None].astype(np.float32), training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return float(sum(np.asarray(keras.ops.convert_to_numpy(o), np.float64).mean() for o in outputs))


def _race(
    image: np.ndarray, model: Any, settings: Any, target: float, evaluate: Any, seed: int = 0
) -> dict[str, Any]:
    """Dream ``image`` with ``settings`` until ``evaluate(final image) >= target``; time the dreaming only."""
    from neurofilters.filters.deepdream import engine

    objective = engine.build_objective(model, settings)
    rng = np.random.default_rng(seed)
    state = engine.DreamState(image, None, settings, engine.min_size_of(model))
    assert state.work_shape == image.shape[:2] and state.shapes[-1] == image.shape[:2], "last octave must be full size"
    clock, steps_done, value = 0.0, 0, float("nan")
    for index, shape in enumerate(state.shapes):
        start = time.perf_counter()
        current = state.begin_octave(shape)
        window = engine.plan_window(settings, objective, *shape)
        clock += time.perf_counter() - start
        last = index == len(state.shapes) - 1
        for _ in range(TARGET_MAX_STEPS if last else settings.steps):
            start = time.perf_counter()
            shift = engine.jitter_shift(rng, settings, *shape)
            _, gradient = engine.tiled_gradient(current, objective, window, shift)
            engine.ascend(current, gradient, settings, None)
            clock += time.perf_counter() - start
            steps_done += 1
            if last:
                # With detail re-injection the last octave's image *is* the final image.
                value = evaluate(np.clip(current, 0.0, 1.0))
                if value >= target:
                    return {"seconds": clock, "steps": steps_done, "objective": value, "reached": True}
        if not last:
            state.end_octave()
    return {"seconds": clock, "steps": steps_done, "objective": value, "reached": False}


def time_to_target(name: str, image: np.ndarray, rounds: int = 1) -> dict[str, Any]:
    """The tutorial's full schedule vs our best settings, to the same objective (see the module docstring)."""
    from tf_tutorial_reference import TiledGradients, run_tutorial_dream

    from neurofilters.filters.deepdream import engine
    from neurofilters.filters.gradients import resolve_precision
    from neurofilters.plugin_host import ModelCache

    model = ModelCache().get(name)
    layers = [layer for layer, _ in model.default_dream_layers]
    features = model.feature_model(layers)
    evaluate = lambda picture: _tutorial_objective(features, picture)  # noqa: E731
    reference = TiledGradients(features)
    run_tutorial_dream(image[:64, :64], features, steps_per_octave=1, gradients=reference)  # trace once
    base = dict(
        model=name, layers=tuple(model.default_dream_layers), loss="mean", objective="layer", detail=True,
        upscale_octaves=0, octave_scale=1.4, normalize="std", smoothing="none", chroma=1.0, clip=True, jitter=32,
        relu6="pass-gradient" if name == "lite0" else "keep",
    )  # fmt: skip
    warm = engine.DreamSettings(**{**base, "octaves": 1, "steps": 1})
    engine.dream(image[:64, :64], model, warm, rng=np.random.default_rng(0))  # trace once
    row: dict[str, Any] = {
        "model": name,
        "size": f"{image.shape[1]}x{image.shape[0]}",
        "precision_ours": resolve_precision("auto", model),
        "objective_photo": evaluate(image),
        "reference_s_rounds": [],
        "reference_objective_rounds": [],
        "candidates": [],
    }
    for round_index in range(rounds):
        start = time.perf_counter()
        out = run_tutorial_dream(image, features, steps_per_octave=100, seed=round_index, gradients=reference)
        row["reference_s_rounds"].append(time.perf_counter() - start)
        row["reference_objective_rounds"].append(evaluate(out))
        print(f"  {name} target round {round_index + 1}: reference {row['reference_s_rounds'][-1]:.1f} s, "
              f"objective {row['reference_objective_rounds'][-1]:.4g}", flush=True)  # fmt: skip
    target = float(np.median(row["reference_objective_rounds"]))
    row["target_objective"] = target
    row["reference_s_median"] = _median(row["reference_s_rounds"])
    for candidate in TARGET_CANDIDATES:
        settings = engine.DreamSettings(**{**base, "steps": 5, **candidate})
        runs = [_race(image, model, settings, target, evaluate, seed=r) for r in range(rounds)]
        result = {
            "settings": candidate,
            "seconds_median": _median([r["seconds"] for r in runs]),
            "steps": [r["steps"] for r in runs],
            "reached": all(r["reached"] for r in runs),
            "objective": [r["objective"] for r in runs],
        }
        row["candidates"].append(result)
        print(f"  {name} ours {candidate}: {result['seconds_median']:.1f} s, steps {result['steps']}, "
              f"reached {result['reached']}", flush=True)  # fmt: skip
    reached = [c for c in row["candidates"] if c["reached"]]
    if reached:
        best = min(reached, key=lambda c: c["seconds_median"])
        row["best"] = best["settings"]
        row["ours_s_median"] = best["seconds_median"]
        row["time_ratio"] = best["seconds_median"] / row["reference_s_median"]
    row["load_average_end"] = os.getloadavg()
    return row


_RSS_CHILD = """
import sys, time, numpy as np
sys.path.insert(0, {bench!r})
from bench_deepdream import photo
from neurofilters.filters.deepdream import engine
from neurofilters.plugin_host import ModelCache
h, w = {h}, {w}
image = photo(h, w) if h * w <= 4096 * 4096 else np.tile(photo(h // 4, w // 4), (4, 4, 1))
model = ModelCache().get({model!r})
start = time.perf_counter()
engine.dream(image, model, engine.DreamSettings(model={model!r}, steps=1, octaves=2), rng=np.random.default_rng(0))
elapsed = time.perf_counter() - start
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print("RESULT", int(hwm) * 1024, elapsed)
"""


def peak_rss(model: str, height: int, width: int) -> dict[str, Any]:
    """Peak resident memory of one dream (default settings, 2 octaves, 1 step) in a fresh process."""
    code = _RSS_CHILD.format(bench=str(Path(__file__).resolve().parent), h=height, w=width, model=model)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT")]
    if not line:
        return {"size": f"{width}x{height}", "model": model, "error": result.stderr[-500:]}
    _, rss, elapsed = line[0].split()
    return {"size": f"{width}x{height}", "model": model, "peak_rss_gb": int(rss) / 2**30, "seconds": float(elapsed)}


RISE_PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")
RISE_WIDTHS = (160, 256, 512)


def objective_rise(model_name: str) -> dict[str, Any]:
    """Objective after / before the default settings, per photo and width (in this process)."""
    from PIL import Image
    from skimage import data

    from neurofilters.filters.deepdream import engine
    from neurofilters.filters.deepdream.plugin import PARAMS, deepdream_spec
    from neurofilters.plugin_host import ModelCache, apply_filter, build_registry, validate_params
    from neurofilters.plugin_host.core.call import resolve_presets

    models = ModelCache()
    spec = build_registry(autoload=False).get_filter("deepdream")
    values = {"model": model_name}
    settings = engine.settings_from_params(resolve_presets(deepdream_spec(), validate_params(PARAMS, values)))
    model = models.get(model_name)
    from neurofilters.filters.gradients import has_relu6

    keep = engine.with_settings(settings, relu6="keep") if settings.relu6 != "keep" and has_relu6(model.keras_model) else None
    rows = []
    for name in RISE_PHOTOS:
        picture = getattr(data, name)()
        for width in RISE_WIDTHS:
            height = round(width * picture.shape[0] / picture.shape[1])
            image = np.asarray(Image.fromarray(picture).resize((width, height), Image.BICUBIC), np.float32) / 255.0
            out = apply_filter(spec, image, values, seed=0, models=models)
            row = {
                "photo": name,
                "size": f"{width}x{height}",
                "rise": engine.objective_value(out, model, settings) / engine.objective_value(image, model, settings),
            }
            if keep is not None:
                before = engine.objective_value(image, model, keep)
                row["rise_relu6_network"] = engine.objective_value(out, model, keep) / before
            rows.append(row)
            print("  rise", model_name, json.dumps(row), flush=True)
    return {"model": model_name, "median_rise": float(np.median([r["rise"] for r in rows])), "photos": rows}


def run_targets(spec: str, rounds: int) -> list[dict[str, Any]]:
    """The time-to-target race for each ``model=WIDTHxHEIGHT`` of ``spec``."""
    rows = []
    for item in filter(None, spec.split(",")):
        name, size = item.split("=")
        width, height = (int(v) for v in size.split("x"))
        row = time_to_target(name, photo(height, width), rounds)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lite0,vgg16-hed")
    parser.add_argument("--steps", default="lite0=10,vgg16-hed=2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-equal-work", action="store_true", help="skip the full-coverage reference")
    parser.add_argument("--rss", default="1024x768,4096x4096,8192x8192")
    parser.add_argument("--rss-model", default="lite0")
    parser.add_argument("--rise", default="lite0,vgg16-hed", help="models whose objective rise to record")
    parser.add_argument("--target", default="lite0=384x288,vgg16-hed=192x144",
                        help="model=WIDTHxHEIGHT pairs for the time-to-target race ('' to skip)")
    parser.add_argument("--target-rounds", type=int, default=1)
    parser.add_argument("--only-target", action="store_true",
                        help="run only the time-to-target race and merge it into --out (by model and size)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args()
    if args.only_target:
        path = Path(args.out)
        rows = run_targets(args.target, args.target_rounds)
        fresh = {(row["model"], row["size"]) for row in rows}
        kept = [row for row in machine.saved(path).get("time_to_target", []) if (row["model"], row["size"]) not in fresh]
        machine.save({"time_to_target": kept + rows, "time_to_target_cpu": _race_machine()}, path)  # other sizes measured earlier stay
        return
    import tensorflow as tf

    steps = dict(item.split("=") for item in args.steps.split(","))
    report: dict[str, Any] = {
        "cpu": machine.cpu(),
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "load_average_start": os.getloadavg(),
    }
    image = photo(768, 1024)
    report["models"] = []
    for name in filter(None, args.models.split(",")):
        row = bench_model(name, int(steps.get(name, 2)), image, args.rounds, not args.no_equal_work)
        report["models"].append(row)
        print(json.dumps(row), flush=True)
    report["rss"] = []
    for size in filter(None, args.rss.split(",")):
        width, height = (int(v) for v in size.split("x"))
        row = peak_rss(args.rss_model, height, width)
        report["rss"].append(row)
        print(json.dumps(row), flush=True)
    report["rise"] = [objective_rise(name) for name in filter(None, args.rise.split(","))]
    report["time_to_target"] = run_targets(args.target, args.target_rounds)
    report["time_to_target_cpu"] = _race_machine()
    report["load_average_end"] = os.getloadavg()
    machine.save(report, Path(args.out))  # its own sections; the other benchmarks' stay


def _race_machine() -> dict[str, Any]:
    """Where the time-to-target race ran, saved beside it (an ``--only-target`` run replaces it, not the rest)."""
    return {"cpu": machine.cpu(), "cpu_count": os.cpu_count(), "load_average_end": os.getloadavg()}


if __name__ == "__main__":
    main()
