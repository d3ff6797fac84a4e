"""Texture and style transfer against the classic L-BFGS recipes: the time ours needs to reach their final loss.

    python bench/bench_peers.py texture --size 256 --save      # DeepTextures' recipe (Gatys et al. 2015)
    python bench/bench_peers.py style --size 256 --save        # jcjohnson/neural-style's recipe

The peers are written here from the recipes' published settings (they are not installed: DeepTextures
needs Caffe, neural-style Torch 7), on the network and layers ours uses, so only the procedure differs:

* **DeepTextures** (``Example.ipynb``): one scale at the sample's size, from white noise, L-BFGS-B with
  pixel bounds, 500 iterations, history 20, no tolerance stop (``ftol = gtol = 0``), the Gram matrices
  of ``conv1_1`` and ``pool1``-``pool4`` (here vgg16-hed's ``block1_conv1`` and ``block1_pool``-``block4_pool``)
  matched, the whole image differentiated at once.
* **neural-style** (its defaults): one scale, from noise, 1,000 L-BFGS iterations, the Gram matrices
  of ``relu1_1``-``relu5_1`` and the content at ``relu4_2`` (here the layers of the filter's default:
  ``block1_conv1``-``block4_conv1`` and ``block4_conv2``), the whole image at once. Torch's L-BFGS takes
  fixed unit steps; SciPy's takes a line search, which only helps the peer.

Both run on the loss the filter minimises: the relative Gram error ``Σ ||G - Ĝ||² / ||Ĝ||²`` per layer,
weighted as the filter weights it (plus, for style, the relative content distance), with the network's
zero padding, so one number measures both. Ours is the filter's own schedule (octaves, iteration caps,
the stall stop, its default precision: bfloat16 where the CPU has it natively, float32 under the AVX2
cap; its result is measured in float32) on that boundary, two ways:

* **its default** (the ``--steps`` a user gets at that size): its seconds over the peer's seconds to
  the loss our default ends at, read from the peer's loss curve;
* **to the peer's final loss**: texture as a user asks for more (``--layers`` naming the default layers,
  which matches every layer at every octave instead of only the shallow ones at the finest, as
  ``--steps`` above 32 also does, and ``--steps`` 32, 64, 128 ...), style with its default layers and ``--steps`` 8, 16, 32 ..., each a whole
  run, until its result's loss is at or below the peer's final loss; the ratio is that run's seconds over
  the peer's (``None`` when the stall stop keeps ours above it). Beside it, read the way the peer's times are
  read, from the run's own loss curve: the seconds from that run's start until its full-size octave's loss
  (the filter's best so far, the same loss in the same arithmetic under the AVX2 cap; bfloat16 as the machine
  is, so approximate there) first reached the peer's final loss, over the peer's seconds. A doubling series
  alone overstates ours by up to the last doubling's extra iterations; the result's own loss, measured in
  float32, is recorded beside the curve's last value.

The network is built and its steps traced before either clock starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402
from bench_texture import STYLE_LAYERS, TEXTURE_LAYERS, parse_progress, report  # noqa: E402

CONTENT_LAYER = "block4_conv2"


def _relative_loss(n_style: int, content: bool) -> Any:
    """``loss(outputs, extras)``: Σ weight · ||G/M - Ĝ||² / ||Ĝ||² over the style layers (+ content weight · ||F - P||² / ||P||²).

    ``extras`` = per style layer the target Gram matrix and its weight, then the content target and weight.
    """
    from keras import ops

    def loss(outputs: Sequence[Any], extras: Sequence[Any]) -> tuple[Any, Any]:
        total = 0.0
        for index in range(n_style):
            feature = outputs[index]
            flat = ops.reshape(feature, (-1, ops.shape(feature)[-1]))
            gram = ops.matmul(ops.transpose(flat), flat) / ops.cast(ops.shape(flat)[0], "float32")
            target, weight = extras[2 * index], extras[2 * index + 1]
            total = total + weight * ops.sum(ops.square(gram - target)) / ops.sum(ops.square(target))
        if content:
            target, weight = extras[2 * n_style], extras[2 * n_style + 1]
            total = total + weight * ops.sum(ops.square(outputs[-1] - target)) / ops.sum(ops.square(target))
        return total, total

    return loss


class Peer:
    """The recipe's loss on one whole image, and its L-BFGS-B run."""

    def __init__(self, network: Any, n_style: int, targets: list[np.ndarray], weights: list[float], content: tuple[np.ndarray, float] | None) -> None:
        """Keep the compiled network and the loss's arrays."""
        self.network, self.n_style = network, n_style
        self.extras: list[np.ndarray] = []
        for target, weight in zip(targets, weights):
            self.extras += [np.asarray(target, np.float32), np.float32(weight)]
        if content is not None:
            self.extras += [np.asarray(content[0], np.float32), np.float32(content[1])]
        self.loss_fn = _relative_loss(n_style, content is not None)
        self.key = ("peer-relative", n_style, content is not None)

    def evaluate(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss and its gradient (one forward and backward pass of the whole image)."""
        loss, gradient, _ = self.network.value_grad_aux(self.key, self.loss_fn, image, self.extras)
        return loss, gradient

    def run(self, start: np.ndarray, iterations: int, history: int) -> dict[str, Any]:
        """L-BFGS-B from ``start`` with pixel bounds and no tolerance stop; the loss after each iteration and the seconds."""
        shape = start.shape
        losses: list[float] = []
        seconds: list[float] = []
        self.evaluate(start)  # traced before the clock starts, as ours is
        began, cpu = time.perf_counter(), time.process_time()

        def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
            return self.evaluate(flat.reshape(shape).astype(np.float32))

        def callback(_: int, loss: float) -> bool:
            losses.append(loss)
            seconds.append(time.perf_counter() - began)
            return False

        result = scipy_box(fun, start, max_iterations=iterations, max_evaluations=iterations * 3, history=history, callback=callback)
        elapsed, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
        final = self.evaluate(result.x.reshape(shape).astype(np.float32))[0]
        return {"iterations": len(losses), "evaluations": result.evaluations, "final_loss": final, "seconds": round(elapsed, 2),
                "cpu_seconds": round(cpu_seconds, 2), "loss_curve": [float(f"{loss:.5g}") for loss in losses],
                "seconds_curve": [round(second, 2) for second in seconds]}


def scipy_box(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray, *, lower: float = 0.0, upper: float = 1.0,
              max_iterations: int, max_evaluations: int | None = None, history: int = 20,
              callback: Callable[[int, float], bool | None] | None = None) -> Any:
    """SciPy's L-BFGS-B (no tolerance stop) behind :func:`~neurofilters.filters.texture.lbfgs.minimize_box`'s signature.

    The peers' optimiser, and the filters' own until 2026-12-07 (``bench_lbfgs`` puts it back in their place).
    ``callback(iteration, best loss so far)`` after each iteration; returning True stops the run.
    """
    from scipy.optimize import Bounds, minimize

    from neurofilters.filters.texture.lbfgs import LBFGSResult

    best: dict[str, Any] = {"loss": np.inf, "x": np.asarray(start, np.float64).ravel()}
    count = [0]

    def wrapped(flat: np.ndarray) -> tuple[float, np.ndarray]:
        loss, gradient = fun(flat)
        if loss < best["loss"]:
            best["loss"], best["x"] = float(loss), flat.copy()
        return float(loss), np.asarray(gradient, np.float64).ravel()

    def step(_: Any) -> None:
        count[0] += 1
        if callback is not None and callback(count[0], best["loss"]):
            raise StopIteration

    result = minimize(wrapped, np.asarray(start, np.float64).ravel(), jac=True, method="L-BFGS-B", bounds=Bounds(lower, upper), callback=step,
                      options={"maxiter": max_iterations, "maxfun": max_evaluations or 10**9, "maxcor": history, "ftol": 0.0, "gtol": 0.0})
    return LBFGSResult(best["x"], best["loss"], count[0], int(result.nfev), "scipy")


def _network(layers: list[str], content_layer: str | None, precision: str) -> Any:
    """A Gram engine on vgg16-hed: ``float32`` for the peers (Caffe's and Torch's arithmetic), the filter's
    default ``auto`` for ours (bfloat16 where the CPU has it natively, float32 under the AVX2 cap)."""
    from neurofilters.filters.texture import synthesis
    from neurofilters.plugin_host import FilterContext

    context = FilterContext(seed=0)
    return synthesis.build_engine(context, {"model": "vgg16-hed", "precision": precision, "tile_size": 512}, layers, content_layer)


def texture_case(size: int) -> tuple[Callable[..., np.ndarray], Peer]:
    """The texture filter's run at ``size``² from scikit-image's brick, and the float32 loss (DeepTextures') that measures it.

    The run is ``run(steps, progress=None, seed=0, auto_layers=True)``: the filter's schedule with ``steps`` at the
    full size; ``auto_layers=False`` matches every layer at every octave, as ``--layers`` does.
    """
    import skimage.data

    from neurofilters.filters.octaves import resize_image
    from neurofilters.filters.texture import synthesis

    brick = np.repeat(np.asarray(skimage.data.brick(), np.float32)[:, :, None] / 255.0, 3, axis=2)
    sample = resize_image(brick, (size, size))
    engine = _network(TEXTURE_LAYERS, None, "auto")
    exact = _network(TEXTURE_LAYERS, None, "float32")
    loss = Peer(exact.network, len(TEXTURE_LAYERS), exact.gram_targets(sample, "zero"), [1.0] * len(TEXTURE_LAYERS), None)

    def run(steps: int, progress: Any = None, seed: int = 0, auto_layers: bool = True) -> np.ndarray:
        return synthesis.synthesise(
            engine, sample, (size, size), steps=steps, octaves=0, wrap=False, rng=np.random.default_rng(seed), optimizer="lbfgs",
            weights=[1.0] * len(TEXTURE_LAYERS), boundary="zero", fine_layers=synthesis.fine_layer_count(steps, auto_layers),
            progress=progress, **synthesis.TEXTURE_SCHEDULE,
        )[0]

    return run, loss


def style_case(size: int) -> tuple[Callable[..., np.ndarray], Peer, tuple[int, ...]]:
    """The style-transfer filter's run on chelsea ``size`` px high in coffee's style, the float32 loss (neural-style's)
    that measures it, and the content's shape.

    The run is ``run(steps, progress=None)``: the filter's schedule with ``steps`` at the full size.
    """
    from bench_texture import _images

    import skimage.data

    from neurofilters.filters.octaves import resize_image
    from neurofilters.filters.texture import style as style_module
    from neurofilters.filters.texture.plugin import DEFAULT_STYLE_LAYERS

    content, _ = _images(size)
    style = resize_image(np.asarray(skimage.data.coffee(), np.float32) / 255.0, (256, 384))
    engine = _network(STYLE_LAYERS, CONTENT_LAYER, "auto")
    exact = _network(STYLE_LAYERS, CONTENT_LAYER, "float32")
    weights = [1.0 / len(STYLE_LAYERS)] * len(STYLE_LAYERS)  # the filter's: --style-weight 1 shared by its layers
    assert len(DEFAULT_STYLE_LAYERS.split(",")) == len(STYLE_LAYERS)
    loss = Peer(exact.network, len(STYLE_LAYERS), exact.gram_targets(style), weights, (exact.content_features(content), 1.0))

    def run(steps: int, progress: Any = None) -> np.ndarray:
        return style_module.transfer(
            engine, content, [(style, 1.0)], steps=steps, octaves=0, content_weight=1.0, style_weights=weights, tv_weight=0.0,
            start="content", rng=np.random.default_rng(0), optimizer="lbfgs", schedule="pyramid", stall=style_module.STALL,
            fine_layers=style_module.FINE_STYLE_LAYERS, progress=progress,
        )[0]

    return run, loss, content.shape


def bench_texture(size: int, iterations: int) -> dict[str, Any]:
    """DeepTextures' recipe against the texture filter's schedule at ``size``² from scikit-image's brick."""
    run, peer = texture_case(size)
    start = np.random.default_rng(0).random((size, size, 3)).astype(np.float32)
    label = f"DeepTextures' recipe, {iterations} L-BFGS-B iterations at {size}²"

    def every_layer(steps: int, progress: Any = None) -> np.ndarray:  # --layers given: every layer at every octave
        return run(steps, progress, auto_layers=False)

    setting = "--layers " + ",".join(TEXTURE_LAYERS) + " (every layer at every octave)"
    return _race("texture", size, peer, (start, iterations, 20), label, run, _default_steps((size, size)), (every_layer, 32, setting))


def bench_style(size: int, iterations: int) -> dict[str, Any]:
    """neural-style's recipe against the style-transfer filter's schedule: chelsea at ``size`` px high, coffee as the style."""
    run, peer, shape = style_case(size)
    start = np.random.default_rng(0).random(shape).astype(np.float32)
    label = f"neural-style's recipe, {iterations} L-BFGS-B iterations at {shape[0]} x {shape[1]}"
    return _race("style", size, peer, (start, iterations, 100), label, run, _default_steps(shape[:2]), (run, 8, "the default layers"))


def _default_steps(shape: tuple[int, int]) -> int:
    """The ``--steps`` a user gets at ``shape`` when leaving it at its default."""
    from types import SimpleNamespace

    from neurofilters.filters.texture import synthesis
    from neurofilters.filters.texture.plugin import DEFAULT_STEPS

    return synthesis.default_steps(DEFAULT_STEPS, shape, SimpleNamespace(given=frozenset()))


def _race(name: str, size: int, peer: Peer, run: tuple[np.ndarray, int, int], label: str, make: Any, default_steps: int,
          reach: tuple[Any, int, str]) -> dict[str, Any]:
    """The peer's run (start, iterations, history), then ours both ways: ``make(default_steps)`` against the peer's
    time to the same loss, and ``reach = (make, first steps, what it sets)`` with doubling iterations at the full
    size until it reaches the peer's final loss (or stops improving)."""
    print(f"peer: {label}", file=sys.stderr, flush=True)
    reference = peer.run(*run)
    print(json.dumps(reference), file=sys.stderr, flush=True)

    def ours(build: Any, steps: int) -> dict[str, Any]:
        curve: list[tuple[float, int, float]] = []  # (seconds, octave, the filter's best loss so far) after each iteration

        def progress(_: float, message: str) -> None:
            octave, _step, loss = parse_progress(message)
            curve.append((time.perf_counter() - began, octave, loss))

        began, cpu = time.perf_counter(), time.process_time()
        image = build(steps, progress)
        result = {"steps": steps, "seconds": round(time.perf_counter() - began, 2), "cpu_seconds": round(time.process_time() - cpu, 2),
                  "loss": peer.evaluate(image)[0]}
        last_octave = curve[-1][1]
        finest = [(second, loss) for second, octave, loss in curve if octave == last_octave]
        result["finest_octave_last_loss"] = finest[-1][1]
        result["seconds_to_peer_final_loss"] = next((round(second, 2) for second, loss in finest if loss <= reference["final_loss"]), None)
        result["finest_octave_curve"] = [[round(second, 2), float(f"{loss:.5g}")] for second, loss in finest]
        print(json.dumps(result), file=sys.stderr, flush=True)
        return result

    for build in {make, reach[0]}:  # traces every octave's steps before the clock starts, as the peer's is
        build(1)
    default = ours(make, default_steps)
    runs: list[dict[str, Any]] = []
    reached = None
    steps = reach[1]
    while steps <= 512:
        runs.append(ours(reach[0], steps))
        if runs[-1]["loss"] <= reference["final_loss"]:
            reached = runs[-1]
            break
        if len(runs) > 1 and runs[-1]["loss"] > 0.95 * runs[-2]["loss"]:  # the stall stop ends the octaves: more iterations do not help
            break
        steps *= 2
    peer_to_default = next((second for loss, second in zip(reference["loss_curve"], reference["seconds_curve"]) if loss <= default["loss"]), None)
    return {
        "bench": f"peers-{name}", "key": f"peers-{name}_{size}_{os.environ.get('ONEDNN_MAX_CPU_ISA', 'native').lower()}",
        "size": size, "cpu": machine.cpu(), "isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA", "none"), "peer": reference,
        "default": default, "ours": runs, "ours_setting": reach[2],
        "ratio_to_peer_final_loss": round(reached["seconds"] / reference["seconds"], 4) if reached else None,
        "ratio_to_peer_final_loss_along_run": (round(reached["seconds_to_peer_final_loss"] / reference["seconds"], 4)
                                               if reached and reached["seconds_to_peer_final_loss"] is not None else None),
        "ours_best_loss": min(run["loss"] for run in runs),
        "peer_seconds_to_our_default_loss": peer_to_default,
        "ratio_at_our_default_loss": round(default["seconds"] / peer_to_default, 4) if peer_to_default else None,
    }


def main() -> None:
    """Run one race and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", choices=("texture", "style"))
    parser.add_argument("--size", type=int, default=256, help="texture: the sample's and the output's side; style: the content's height")
    parser.add_argument("--iterations", type=int, default=None, help="the peer's L-BFGS iterations (default: the recipe's, 500 or 1,000)")
    parser.add_argument("--save", action="store_true", help='store the result under "texture" in bench/results.json')
    args = parser.parse_args()
    load_start = machine.load()
    if args.bench == "texture":
        result = bench_texture(args.size, args.iterations or 500)
    else:
        result = bench_style(args.size, args.iterations or 1000)
    report(result, load_start, args.save)


if __name__ == "__main__":
    main()
