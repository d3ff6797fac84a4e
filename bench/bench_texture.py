"""Benchmarks of the texture filters: style transfer against keras-io's algorithm, synthesis time, peak memory.

    python bench/bench_texture.py style --size 256 --steps 1000    # ours vs keras_io_style_reference.py (~7-15 min)
    python bench/bench_texture.py style-fair --size 256            # the same with the peer's learning rate tuned (~12-25 min)
    python bench/bench_texture.py synth --size 512 --target 0.05 --steps 100   # seconds to a fixed Gram loss
    python bench/bench_texture.py rss --size 4096 --steps 2        # peak RSS of a large synthesis (own process)

Add ``--save`` to store the JSON under the "texture" key of bench/results.json (one entry per
benchmark and size), with the CPU and the load averages at start and end: 2 shared cores make
absolute seconds depend on the neighbours, ratios much less.

``style``: both sides use the embedded VGG16 backbone, style layers block1..4_conv1, content
block4_conv2 (block 5 of the HED weights is edge-specialised), scikit-image's chelsea (content) and
brick (style, resized to the content's size, as keras-io does), keras-io's weights (content 2.5e-8,
style 1e-6, TV 0 on both sides: keras-io's TV term has exponent 1.25, ours is squared), keras-io's
style normalisation (the image's pixels², not the layer's positions², at every layer) and float32.
The reference runs keras-io's SGD schedule for ``--steps`` steps; ours minimises the same loss (its
Objective's coefficients set to keras-io's) with the filter's optimiser; the figure is the time ours
needs to reach the reference's final loss, over the reference's time. Prints one JSON line.

``style-fair``: the same comparison with the peer's learning rate chosen for this backbone and image
size in the same run. keras-io's lr 100 was tuned for VGG19 on ImageNet-preprocessed pixels, and
its style gradient per pixel shrinks as 1/pixels (the term is divided by the image's pixels²), so
at 256 x 385 on VGG16 its loss falls by under 2 % in 1,000 steps: a peer that barely moves. Here
each lr of ``--lr-grid`` (default 1e2, 1e3, 1e4, 1e5, 1e6) runs ``--grid-steps`` (100) steps of
keras-io's SGD from the content; an lr diverges if its loss is not finite or ends above its start.
The lowest final loss among those that did not diverge wins; if that is the grid's largest lr, the
grid goes on by x10 (at most 3 more) while the loss still improves. Then keras-io's algorithm runs
``--steps`` steps with the chosen lr and its schedule's shape (x0.96 every 100 steps), and ours
races to its final loss as in ``style``. The grid's losses and seconds are in the JSON (the grid's
time is not in the ratio: it is the cost of tuning the peer, not of running it). A decade grid can miss
the best rate by up to 3x: run again with a finer ``--lr-grid`` around its winner (e.g.
``3e5,1e6,3e6``); such a run is saved under its own key.

``synth``: the filter's own synthesis (``synthesis.synthesise``: automatic octaves, ``--steps``
iterations per octave, bfloat16 where fast, tiles of ``--tile-size``) of scikit-image's brick at
``--size``², from the filter's noise. The loss is the filter's relative Gram error summed over its 5
layers (0 = the sample's statistics, 1 per layer = as far as an empty image), so a target means the
same at every size. Every iteration's ``(seconds, octave, loss)`` is printed to stderr; the run stops
as soon as the final octave reaches ``--target`` (coarse octaves run their ``--steps``: their loss is
measured at their own scale and jumps up when the image is enlarged) or after ``--max-seconds``.
The JSON has each octave's first and last point, the final octave's whole curve and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

STYLE_LAYERS = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1"]
DEFAULT_LR_GRID = [1e2, 1e3, 1e4, 1e5, 1e6]
TEXTURE_LAYERS = ["block1_conv1", "block1_pool", "block2_pool", "block3_pool", "block4_pool"]
#: The texture filters' progress message after each iteration (``synthesis.synthesise``, ``style.transfer``).
_PROGRESS = re.compile(r"octave (?P<octave>\d+)/\d+, step (?P<step>\d+)/\d+, loss (?P<loss>\S+)")


def parse_progress(message: str) -> tuple[int, int, float]:
    """``(octave, step, loss)`` of a texture filter's progress message ``"octave i/n, step s/steps, loss x"``."""
    found = _PROGRESS.fullmatch(message)
    assert found, f"the filter's progress message changed: {message!r}"
    return int(found["octave"]), int(found["step"]), float(found["loss"])


def _images(size: int) -> tuple[np.ndarray, np.ndarray]:
    import skimage.data

    from neurofilters.filters.octaves import resize_image

    content = resize_image(np.asarray(skimage.data.chelsea(), np.float32) / 255.0, (size, round(size * 451 / 300)))
    brick = np.repeat(np.asarray(skimage.data.brick(), np.float32)[:, :, None] / 255.0, 3, axis=2)
    return content, resize_image(brick, content.shape[:2])


def bench_style(size: int, steps: int, lr_grid: list[float] | None = None, grid_steps: int = 100) -> dict[str, object]:
    """``style`` (``lr_grid`` None: keras-io's lr 100) or ``style-fair`` (the grid's best lr; see the module docstring)."""
    from keras_io_style_reference import run_reference

    from neurofilters.filters.texture import synthesis
    from neurofilters.filters.texture.engine import Objective, optimise
    from neurofilters.plugin_host import FilterContext

    content, style = _images(size)
    engine = synthesis.build_engine(FilterContext(seed=0), {"model": "vgg16-hed", "precision": "float32", "tile_size": 4096}, STYLE_LAYERS, "block4_conv2")
    cw, sw = 2.5e-8, 1e-6
    grid: list[dict[str, object]] = []
    learning_rate = 100.0
    if lr_grid:
        learning_rate = _tune_learning_rate(engine.network, content, style, lr_grid, grid_steps, cw, sw, grid)
    _, ref_losses, ref_times = run_reference(engine.network, content, style, len(STYLE_LAYERS), steps=steps, content_weight=cw,
                                             style_weight=sw, learning_rate=learning_rate)
    target = ref_losses[-1]
    objective = Objective(engine.gram_targets(style), [1.0] * len(STYLE_LAYERS), content_target=engine.content_features(content))
    # ours sums (S/M - C/M)² with M = the layer's positions; keras-io divides (S - C)² by the image's pixels².
    positions = [feature.shape[0] * feature.shape[1] for feature in engine.network.forward(content)[: len(STYLE_LAYERS)]]
    pixels = content.shape[0] * content.shape[1]
    objective.coefficients = [sw / len(STYLE_LAYERS) / 36.0 * (m / pixels) ** 2 for m in positions]
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
    result: dict[str, object] = {
        "bench": "style-fair" if lr_grid else "style", "size": list(content.shape[:2]), "reference_steps": steps, "cpu": machine.cpu(),
        "start_loss_reference": ref_losses[0], "start_loss_ours": start_loss,
        "reference_final_loss": target, "reference_seconds": ref_times[-1],
        "ours_seconds_to_reference_loss": reached.get("time"), "ours_evaluations": len(history), "ours_best_loss": min(history),
        "ratio": (reached["time"] / ref_times[-1]) if "time" in reached else None,
    }
    if lr_grid:
        result.update({"reference_learning_rate": learning_rate, "lr_grid_requested": sorted(lr_grid), "grid_steps": grid_steps, "lr_grid": grid,
                       "reference_loss_every_100_steps": [ref_losses[i] for i in range(0, len(ref_losses), 100)]})
    return result


def _tune_learning_rate(network: object, content: np.ndarray, style: np.ndarray, lr_grid: list[float], grid_steps: int,
                        cw: float, sw: float, grid: list[dict[str, object]]) -> float:
    """Run keras-io's SGD ``grid_steps`` steps per lr; append each try to ``grid``; return the best lr that did not diverge."""
    from keras_io_style_reference import run_reference

    def attempt(rate: float) -> dict[str, object]:
        _, losses, times = run_reference(network, content, style, len(STYLE_LAYERS), steps=grid_steps, content_weight=cw,
                                         style_weight=sw, learning_rate=rate)
        final = float(losses[-1])
        diverged = not all(np.isfinite(losses)) or final > losses[0]
        entry = {"learning_rate": rate, "start_loss": float(losses[0]), "final_loss": final if np.isfinite(final) else None,
                 "min_loss": float(np.nanmin(losses)) if not np.all(np.isnan(losses)) else None, "diverged": bool(diverged),
                 "seconds": round(times[-1], 2)}
        print(f"lr {rate:g}: {entry}", file=sys.stderr, flush=True)
        grid.append(entry)
        return entry

    tries = [attempt(rate) for rate in sorted(lr_grid)]
    for _ in range(3):
        good = [entry for entry in tries if not entry["diverged"]]
        if not good or min(good, key=lambda e: e["final_loss"]) is not tries[-1]:
            break
        tries.append(attempt(tries[-1]["learning_rate"] * 10))
    good = [entry for entry in tries if not entry["diverged"]]
    if not good:
        raise RuntimeError(f"every learning rate of the grid diverged: {lr_grid}; try smaller ones with --lr-grid")
    return float(min(good, key=lambda e: e["final_loss"])["learning_rate"])


def bench_synth(size: int, target: float, steps: int, tile_size: int = 512, max_seconds: float = 1500.0) -> dict[str, object]:
    import skimage.data

    from neurofilters.filters.texture import synthesis
    from neurofilters.filters.texture.engine import LBFGS_MAX_PIXELS
    from neurofilters.plugin_host import FilterContext

    brick = np.repeat(np.asarray(skimage.data.brick(), np.float32)[:, :, None] / 255.0, 3, axis=2)
    engine = synthesis.build_engine(FilterContext(seed=0), {"model": "vgg16-hed", "precision": "auto", "tile_size": tile_size}, TEXTURE_LAYERS, None)
    sizes = synthesis.octave_sizes(size, size, 0)
    curve: list[tuple[float, int, int, float]] = []

    class Stop(Exception):
        pass

    t0 = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        octave, step, loss = parse_progress(message)
        seconds = time.perf_counter() - t0
        curve.append((round(seconds, 2), octave, step, loss))
        print(f"{seconds:8.1f} s  octave {octave}/{len(sizes)} {sizes[octave - 1][0]}²  step {step:4d}  loss {curve[-1][3]:.4g}", file=sys.stderr, flush=True)
        if (octave == len(sizes) and curve[-1][3] <= target) or seconds >= max_seconds:
            raise Stop

    try:
        synthesis.synthesise(engine, brick, (size, size), steps=steps, octaves=0, wrap=False, rng=np.random.default_rng(0), progress=progress)
    except Stop:
        pass
    total = time.perf_counter() - t0
    final = [point for point in curve if point[1] == len(sizes)]
    reached = next((point[0] for point in final if point[3] <= target), None)
    octaves = []
    for index, shape in enumerate(sizes, start=1):
        points = [point for point in curve if point[1] == index]
        if points:
            octaves.append({"octave": index, "side": shape[0], "first": list(points[0]), "last": list(points[-1]), "iterations": len(points)})
    return {
        "bench": "synth", "size": size, "target_loss": target, "steps_per_octave": steps, "tile_size": tile_size,
        "tiles_final_octave": len(engine._tiles(size, size, False)[0]), "octave_sides": [shape[0] for shape in sizes],
        "optimizer_final_octave": "lbfgs" if size * size <= LBFGS_MAX_PIXELS else "adam",
        "seconds_to_target": reached, "seconds_total": round(total, 1), "stopped_by": "target" if reached is not None else ("max_seconds" if total >= max_seconds else "steps"),
        "best_loss_final_octave": min((point[3] for point in final), default=None),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "octaves": octaves,
        "final_octave_curve": [[point[0], point[2], point[3]] for point in final], "cpu": machine.cpu(),
    }


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
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "one_float32_image_mb": image_mb, "cpu": machine.cpu()}


def save(result: dict[str, object], path: Path = machine.RESULTS) -> None:
    """Store ``result`` under ``results["texture"]["<bench>_<size>[_steps<n>][_lr<grid>]"]`` in ``path`` (grid: a style-fair one not the default),
    or under its own ``result["key"]``."""
    size = result["size"]
    key = str(result.get("key") or f"{result['bench']}_{size if isinstance(size, int) else 'x'.join(map(str, size))}")
    if result["bench"] == "synth":
        key += f"_steps{result['steps_per_octave']}"
    if result["bench"] == "style-fair" and result.get("lr_grid_requested", DEFAULT_LR_GRID) != DEFAULT_LR_GRID:
        key += "_lr" + "-".join(f"{rate:g}" for rate in result["lr_grid_requested"])
    machine.save_entry("texture", key, result, path)


def main() -> None:
    """Run one benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", choices=("style", "style-fair", "synth", "rss"))
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--target", type=float, default=0.05, help="synth: the relative Gram loss to reach in the final octave")
    parser.add_argument("--tile-size", type=int, default=512, help="synth: the engine's tile side")
    parser.add_argument("--max-seconds", type=float, default=1500.0, help="synth: give up after this long")
    parser.add_argument("--lr-grid", default=",".join(f"{rate:g}" for rate in DEFAULT_LR_GRID), help="style-fair: the peer's learning rates to try, comma-separated")
    parser.add_argument("--grid-steps", type=int, default=100, help="style-fair: keras-io steps per learning rate tried")
    parser.add_argument("--save", action="store_true", help='store the result under "texture" in bench/results.json')
    args = parser.parse_args()
    load_start = machine.load()
    if args.bench == "style":
        result = bench_style(args.size, args.steps)
    elif args.bench == "style-fair":
        result = bench_style(args.size, args.steps, [float(x) for x in args.lr_grid.split(",")], args.grid_steps)
    elif args.bench == "synth":
        result = bench_synth(args.size, args.target, args.steps, args.tile_size, args.max_seconds)
    else:
        result = bench_rss(args.size, args.steps)
    report(result, load_start, args.save)


def report(result: dict[str, object], load_start: list[float], keep: bool) -> None:
    """Add the load averages to ``result``, print it as one JSON line and, when ``keep``, :func:`save` it."""
    result["load_average_start"], result["load_average_end"] = load_start, machine.load()
    print(json.dumps(result))
    if keep:
        save(result)


if __name__ == "__main__":
    main()
