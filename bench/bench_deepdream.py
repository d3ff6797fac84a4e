"""DeepDream benchmark: our engine vs the TF-tutorial reference, % of the CPU's sgemm peak, peak memory.

Usage::

    .venv/bin/python bench/bench_deepdream.py [--models lite0,vgg16-hed] [--steps lite0=10,vgg16-hed=2]
                                              [--rss 1024x768,4096x4096,8192x8192] [--out bench/results.md]

Both implementations run the TF tutorial's schedule (octaves -2..2 x 1.3, std
normalisation, step 0.01 in [-1, 1], random roll) on the same 1024 x 768 photo
and model, in the same process, one after the other; wall times include
tracing/compilation. Peak resident memory is measured in a fresh subprocess per
image size (``VmHWM``). The machine may be shared: read ratios, not absolutes.
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

SCHEDULE = dict(octaves=5, octave_scale=1.3, upscale_octaves=2, step_size=0.005)


def sgemm_peak(size: int = 4096, repeats: int = 5) -> float:
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
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.BICUBIC), np.float32) / 255.0


def bench_model(name: str, steps: int, image: np.ndarray) -> dict[str, Any]:
    from tf_tutorial_reference import run_tutorial_dream

    from filters.deepdream import engine
    from filters.octaves import octave_shapes
    from plugin_host import ModelCache

    model = ModelCache().get(name)
    layers = [layer for layer, _ in model.default_dream_layers]
    features = model.feature_model(layers)
    start = time.perf_counter()
    run_tutorial_dream(image, features, steps_per_octave=steps, seed=0)
    reference = time.perf_counter() - start

    settings = engine.DreamSettings(
        model=name, steps=steps, detail=False, jitter=512, normalize="std", smoothing="none", clip=True, **SCHEDULE
    )
    start = time.perf_counter()
    engine.dream(image, model, settings, rng=np.random.default_rng(0))
    ours = time.perf_counter() - start
    # Warm second run: the compiled steps are cached, this is the steady state a batch sees.
    start = time.perf_counter()
    engine.dream(image, model, settings, rng=np.random.default_rng(1))
    ours_warm = time.perf_counter() - start

    shapes = octave_shapes(*image.shape[:2], 5, 1.3, upscale_octaves=2, min_size=model.min_size)
    pixels = sum(h * w for h, w in shapes) * steps
    # The tutorial's tiles start at range(0, size, 512)[:-1]: per step it differentiates only
    # part of the image (the roll covers the rest over many steps). Count what it computes.
    reference_pixels = 0
    for h, w in shapes:
        rows = max(1, len(range(0, h, 512)) - 1)
        cols = max(1, len(range(0, w, 512)) - 1)
        reference_pixels += rows * min(512, h) * cols * min(512, w) * steps
    step_flops = 2.0 * forward_flops_per_pixel(model, layers) * pixels  # forward + input-gradient pass
    return {
        "model": name,
        "layers": layers,
        "steps_per_octave": steps,
        "reference_s": reference,
        "ours_s": ours,
        "ours_warm_s": ours_warm,
        "ratio": ours / reference,
        "ratio_warm": ours_warm / reference,
        "pixel_share_reference": reference_pixels / pixels,
        "mpx_per_s_ours_warm": pixels / ours_warm / 1e6,
        "mpx_per_s_reference": reference_pixels / reference / 1e6,
        "step_gflop": step_flops / 1e9,
        "gflops_ours_warm": step_flops / ours_warm / 1e9,
        "gflops_reference": step_flops / reference / 1e9,
    }


_RSS_CHILD = """
import sys, time, numpy as np
sys.path.insert(0, {bench!r})
from bench_deepdream import photo
from filters.deepdream import engine
from plugin_host import ModelCache
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
    code = _RSS_CHILD.format(bench=str(Path(__file__).resolve().parent), h=height, w=width, model=model)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT")]
    if not line:
        return {"size": f"{width}x{height}", "error": result.stderr[-500:]}
    _, rss, elapsed = line[0].split()
    return {"size": f"{width}x{height}", "model": model, "peak_rss_gb": int(rss) / 2**30, "seconds": float(elapsed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lite0,vgg16-hed")
    parser.add_argument("--steps", default="lite0=10,vgg16-hed=2")
    parser.add_argument("--rss", default="1024x768,4096x4096,8192x8192")
    parser.add_argument("--rss-model", default="lite0")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args()
    steps = dict(item.split("=") for item in args.steps.split(","))
    report: dict[str, Any] = {"cpu_count": os.cpu_count(), "sgemm_gflops": sgemm_peak()}
    print("sgemm peak GFLOP/s:", round(report["sgemm_gflops"], 1), flush=True)
    image = photo(768, 1024)
    report["models"] = []
    for name in filter(None, args.models.split(",")):
        row = bench_model(name, int(steps.get(name, 2)), image)
        row["peak_fraction_ours_warm"] = row["gflops_ours_warm"] / report["sgemm_gflops"]
        row["peak_fraction_reference"] = row["gflops_reference"] / report["sgemm_gflops"]
        report["models"].append(row)
        print(json.dumps(row), flush=True)
    report["rss"] = []
    for size in filter(None, args.rss.split(",")):
        width, height = (int(v) for v in size.split("x"))
        row = peak_rss(args.rss_model, height, width)
        report["rss"].append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
