"""Where a texture default's network evaluations go, octave by octave, and what picture they buy.

    python bench/texture_breakdown.py                      # the default at 512², scikit-image's brick (bench_speed's cell)
    python bench/texture_breakdown.py --sample leopard.pat --seed 1 --out leopard.png
    python bench/texture_breakdown.py --params '{"steps": 6}'   # extra filter parameters (JSON)

Runs the filter through ``neurofilters.apply`` (the CPU capped at AVX2 unless ``--isa native``) and prints
one JSON object: per octave its canvas size (the mirrored surround included), iterations, calls of the
compiled loss-and-gradient step, those calls weighted by their pixels over the output's (bench_speed's
"evaluations_full_size"), the deepest layer evaluated and the octave's CPU seconds; the totals; the final
relative Gram loss of the 5 default layers against the sample's statistics with the mirrored surround
(DeepTextures' loss, each layer's error relative to its target's norm), of the result as returned; the
border/centre gradient ratio (stationarity, 1 = uniform) and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Run one texture default with counters and print the breakdown as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--sample", default="brick", help="'brick' (bench_speed's 128² crop) or an image/.pat path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default="{}", help="extra filter parameters, JSON")
    parser.add_argument("--isa", default="avx2", choices=("avx2", "native"))
    parser.add_argument("--out", default="", help="write the result here (PNG)")
    parser.add_argument("--score", default="", help="only score this saved result (PNG) against --sample")
    args = parser.parse_args(argv)
    if args.score:
        import neurofilters

        neurofilters.load_model("vgg16-hed")
        print(json.dumps(score_png(args.score, args.sample, args.size)))
        return 0
    if args.isa == "avx2" and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell", "TF_CPP_MIN_LOG_LEVEL": "2"}
        os.execve(sys.executable, [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])], env)
    sys.path.insert(0, str(HERE))
    import neurofilters
    from bench_speed import _inputs

    from neurofilters.filters.gradients import CompiledNetwork
    from neurofilters.filters.texture import synthesis

    neurofilters.load_model("vgg16-hed")
    inputs = _inputs(args.size)
    if args.sample == "brick":
        sample = inputs["source"]
    else:
        from neurofilters.plugin_host.imageio.files import load_image

        sample = synthesis.rgb_of(load_image(Path(args.sample)).pixels)
    out_pixels = args.size * args.size
    octaves: list[dict[str, Any]] = []
    original_step = CompiledNetwork.value_grad_aux
    original_windows = CompiledNetwork.windows_value_grad_aux
    original_optimise = synthesis.optimise

    def count(key: Any, pixels: int, canvas: list[int]) -> None:
        if octaves:
            entry = octaves[-1]
            entry["calls"] += 1
            entry["pixels"] += pixels
            entry["canvas"] = canvas
            active = key[1] if isinstance(key, tuple) and len(key) > 1 else None
            entry["active_layers"] = list(active) if active is not None else None

    def value_grad_aux(network: Any, key: Any, loss_fn: Any, image: Any, extras: Any) -> Any:
        count(key, int(image.shape[0] * image.shape[1]), list(image.shape[:2]))
        return original_step(network, key, loss_fn, image, extras)

    def windows_value_grad_aux(network: Any, key: Any, loss_fn: Any, windows: Any, extras: Any) -> Any:
        # the one-pass evaluation (every window in one call): one call of all its windows' pixels
        canvas = list(windows[0].shape[:2]) if len(windows) == 1 else [len(windows), *windows[0].shape[:2]]
        count(key, sum(int(window.shape[0] * window.shape[1]) for window in windows), canvas)
        return original_windows(network, key, loss_fn, windows, extras)

    def optimise(evaluate: Any, start: Any, steps: int, **kwargs: Any) -> Any:
        entry = {"size": list(start.shape[:2]), "steps": int(steps), "calls": 0, "pixels": 0}
        octaves.append(entry)
        cpu, wall = time.process_time(), time.perf_counter()
        image, history = original_optimise(evaluate, start, steps, **kwargs)
        entry["iterations"] = len(history)
        entry["history"] = [float(f"{value:.4g}") for value in history]
        entry["loss_end"] = round(history[-1], 5) if history else None
        entry["cpu_s"] = round(time.process_time() - cpu, 2)
        entry["wall_s"] = round(time.perf_counter() - wall, 2)
        return image, history

    CompiledNetwork.value_grad_aux = value_grad_aux  # type: ignore[method-assign]
    CompiledNetwork.windows_value_grad_aux = windows_value_grad_aux  # type: ignore[method-assign]
    synthesis.optimise = optimise  # type: ignore[assignment]
    params = {"source": sample, **json.loads(args.params)}
    load_start, cpu_start, began = [round(v, 2) for v in os.getloadavg()], time.process_time(), time.perf_counter()
    result = neurofilters.apply("texture", inputs["image"], seed=args.seed, **params)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_start
    load_end = [round(v, 2) for v in os.getloadavg()]
    CompiledNetwork.value_grad_aux = original_step  # type: ignore[method-assign]
    CompiledNetwork.windows_value_grad_aux = original_windows  # type: ignore[method-assign]
    synthesis.optimise = original_optimise  # type: ignore[assignment]
    pixels = np.asarray(result.pixels if hasattr(result, "pixels") else result, np.float32)[:, :, :3]
    for entry in octaves:
        entry["full_size"] = round(entry.pop("pixels") / out_pixels, 3)
        entry["calls_per_iteration"] = round(entry["calls"] / max(entry.get("iterations", 0), 1), 2)
    loss = final_gram_loss(pixels, sample)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from texture_fixtures import border_gradient_ratio

    report = {
        "size": args.size, "sample": args.sample, "seed": args.seed, "params": json.loads(args.params), "isa": args.isa,
        "octaves": octaves, "calls": sum(e["calls"] for e in octaves), "full_size": round(sum(e["full_size"] for e in octaves), 2),
        "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1), "load_start": load_start, "load_end": load_end,
        "final_gram_loss": loss, "border_ratio": round(border_gradient_ratio(pixels), 3),
        "sha256": __import__("hashlib").sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16],
    }
    if args.out:
        from PIL import Image

        Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(args.out)
    print(json.dumps(report))
    return 0


def final_gram_loss(image: np.ndarray, sample: np.ndarray) -> dict[str, float]:
    """Relative Gram loss of the 5 default layers (total and per layer): ``Σ(G - Ĝ)² / ΣĜ²`` per layer, the
    statistics of sample and result both taken with the filter's mirrored 16 px surround (no border effects)."""
    from neurofilters.filters.texture import synthesis
    from neurofilters.filters.texture.plugin import DEFAULT_TEXTURE_LAYERS
    from neurofilters.plugin_host import FilterContext

    names = [item.split(":")[0] for item in DEFAULT_TEXTURE_LAYERS.split(",")]
    engine = synthesis.build_engine(FilterContext(seed=0), {"model": "vgg16-hed", "precision": "float32", "tile_size": 512}, names, None)
    targets = engine.gram_targets(sample, "reflect")
    grams = engine.gram_targets(image, "reflect")
    per_layer = [float(np.sum((g - t) ** 2) / np.sum(t**2)) for g, t in zip(grams, targets)]
    return {"total": round(sum(per_layer), 4), **{name: round(value, 4) for name, value in zip(names, per_layer)}}


def score_png(path: str, sample_arg: str, size: int = 512) -> dict[str, Any]:
    """:func:`final_gram_loss` and the border ratio of a saved result."""
    from PIL import Image

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent / "tests"))
    from bench_speed import _inputs
    from texture_fixtures import border_gradient_ratio

    from neurofilters.filters.texture import synthesis

    if sample_arg == "brick":
        sample = _inputs(size)["source"]
    else:
        from neurofilters.plugin_host.imageio.files import load_image

        sample = synthesis.rgb_of(load_image(Path(sample_arg)).pixels)
    image = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    return {"path": path, "final_gram_loss": final_gram_loss(image, sample), "border_ratio": round(border_gradient_ratio(image), 3)}


if __name__ == "__main__":
    sys.exit(main())
