"""Benchmarks of the texture filters: style transfer against keras-io's algorithm, synthesis time, peak memory.

    python bench/bench_texture.py style --size 96 --steps 1000     # ours vs keras_io_style_reference.py
    python bench/bench_texture.py synth --size 512 --target 0.05   # seconds to a fixed Gram loss
    python bench/bench_texture.py rss --size 4096 --steps 2        # peak RSS of a large synthesis (own process)

``style``: both sides use the embedded VGG16 backbone, style layers block1..4_conv1, content
block4_conv2 (block 5 of the HED weights is edge-specialised), scikit-image's chelsea (content) and
brick (style, resized to the content's size, as keras-io does), keras-io's weights (content 2.5e-8,
style 1e-6, TV 0 on both sides: keras-io's TV term has exponent 1.25, ours is squared) and float32.
The reference runs keras-io's SGD schedule for ``--steps`` steps; ours minimises the same loss (its
Objective's coefficients set to keras-io's) with the filter's optimiser; the figure is the time ours
needs to reach the reference's final loss, over the reference's time. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

STYLE_LAYERS = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1"]
TEXTURE_LAYERS = ["block1_conv1", "block1_pool", "block2_pool", "block3_pool", "block4_pool"]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor()


def _images(size: int) -> tuple[np.ndarray, np.ndarray]:
    import skimage.data

    from neurofilters.filters.octaves import resize_image

    content = resize_image(np.asarray(skimage.data.chelsea(), np.float32) / 255.0, (size, round(size * 451 / 300)))
    brick = np.repeat(np.asarray(skimage.data.brick(), np.float32)[:, :, None] / 255.0, 3, axis=2)
    return content, resize_image(brick, content.shape[:2])


def bench_style(size: int, steps: int) -> dict[str, object]:
    from keras_io_style_reference import run_reference

    from neurofilters.filters.texture import synthesis
    from neurofilters.filters.texture.engine import Objective, optimise
    from neurofilters.plugin_host import FilterContext

    content, style = _images(size)
    engine = synthesis.build_engine(FilterContext(seed=0), {"model": "vgg16-hed", "precision": "float32", "tile_size": 4096}, STYLE_LAYERS, "block4_conv2")
    cw, sw = 2.5e-8, 1e-6
    _, ref_losses, ref_times = run_reference(engine.network, content, style, len(STYLE_LAYERS), steps=steps, content_weight=cw, style_weight=sw)
    target = ref_losses[-1]
    objective = Objective(engine.gram_targets(style), [1.0] * len(STYLE_LAYERS), content_target=engine.content_features(content))
    objective.coefficients = [sw / len(STYLE_LAYERS) / 36.0] * len(STYLE_LAYERS)
    objective.content_weight = cw * objective._content_norm
    start_loss = engine.loss_and_gradient(content, objective)[0]
    reached: dict[str, float] = {}
    t0 = time.perf_counter()

    class Reached(Exception):
        pass

    history: list[float] = []

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        loss, gradient, _ = engine.loss_and_gradient(x, objective)
        history.append(loss)
        if loss <= target:
            reached["time"] = time.perf_counter() - t0
            raise Reached
        return loss, gradient

    try:
        optimise(evaluate, content, steps, method="lbfgs")
    except Reached:
        pass
    return {
        "bench": "style", "size": list(content.shape[:2]), "reference_steps": steps, "cpu": _cpu(),
        "start_loss_reference": ref_losses[0], "start_loss_ours": start_loss,
        "reference_final_loss": target, "reference_seconds": ref_times[-1],
        "ours_seconds_to_reference_loss": reached.get("time"), "ours_evaluations": len(history), "ours_best_loss": min(history),
        "ratio": (reached["time"] / ref_times[-1]) if "time" in reached else None,
    }


def bench_synth(size: int, target: float, steps: int) -> dict[str, object]:
    import skimage.data

    from neurofilters.filters.texture import synthesis
    from neurofilters.plugin_host import FilterContext

    brick = np.repeat(np.asarray(skimage.data.brick(), np.float32)[:, :, None] / 255.0, 3, axis=2)
    engine = synthesis.build_engine(FilterContext(seed=0), {"model": "vgg16-hed", "precision": "auto", "tile_size": 512}, TEXTURE_LAYERS, None)
    t0 = time.perf_counter()
    reached: dict[str, float] = {}

    def progress(fraction: float, message: str) -> None:
        loss = float(message.rsplit(" ", 1)[-1])
        if message.startswith(f"octave {_n}/{_n}") and loss <= target and "time" not in reached:
            reached["time"] = time.perf_counter() - t0

    _n = len(synthesis.octave_sizes(size, size, 0))
    _, history = synthesis.synthesise(engine, brick, (size, size), steps=steps, octaves=0, wrap=False, rng=np.random.default_rng(0), progress=progress)
    return {"bench": "synth", "size": size, "target_loss": target, "seconds_to_target": reached.get("time"),
            "total_seconds": time.perf_counter() - t0, "final_loss": history[-1], "octaves": _n, "cpu": _cpu()}


def bench_rss(size: int, steps: int) -> dict[str, object]:
    import skimage.data

    from neurofilters.filters.texture import synthesis
    from neurofilters.plugin_host import FilterContext

    brick = np.repeat(np.asarray(skimage.data.brick(), np.float32)[:, :, None] / 255.0, 3, axis=2)
    engine = synthesis.build_engine(FilterContext(seed=0), {"model": "vgg16-hed", "precision": "auto", "tile_size": 512}, TEXTURE_LAYERS, None)
    t0 = time.perf_counter()
    synthesis.synthesise(engine, brick, (size, size), steps=steps, octaves=1, wrap=True, rng=np.random.default_rng(0), optimizer="adam")
    image_mb = size * size * 3 * 4 / 2**20
    return {"bench": "rss", "size": size, "steps": steps, "seconds": time.perf_counter() - t0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "one_float32_image_mb": image_mb, "cpu": _cpu()}


def main() -> None:
    """Run one benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", choices=("style", "synth", "rss"))
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--target", type=float, default=0.05)
    args = parser.parse_args()
    if args.bench == "style":
        result = bench_style(args.size, args.steps)
    elif args.bench == "synth":
        result = bench_synth(args.size, args.target, args.steps)
    else:
        result = bench_rss(args.size, args.steps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
