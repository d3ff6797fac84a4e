"""Saliency benchmark: our filter vs tf-keras-vis 0.8.7 on the same model and image, and every method's time per megapixel.

Usage::

    .venv/bin/python bench/bench_saliency.py [--rounds 3] [--samples 50] [--out FILE.json]

Both sides explain class 282 (tiger cat) of scikit-image's ``chelsea`` photo
with the embedded EfficientNet-Lite0, at 224 x 224 (the photo is resized once,
so both differentiate the same pixels):

* SmoothGrad, ``--samples`` noisy copies (50 by default), noise 0.2 of the value
  range: tf-keras-vis' ``Saliency(..., smooth_samples=50)`` (one eager
  ``GradientTape`` pass per sample) vs our ``smoothgrad`` (batches of 16 through
  a compiled graph with the weights frozen in).
* Grad-CAM on ``head_act`` (``seek_penultimate_conv_layer=False``), resized to
  the image and normalised as each library does by default.

The machine is shared, so the two sides run in interleaved rounds and the
medians of the warm runs are compared (the first run of each, with its tracing,
is reported as "cold"; a batch or the GIMP worker keeps the compiled steps).
The goal is ours / theirs <= 0.5 for both.

Then every method of the filter runs through ``neurofilters.apply`` on a
1024 x 768 photo (0.79 MP; the network itself runs at its own 224-px area) and
its warm time is reported per megapixel of input.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

CLASS = 282


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    import warnings

    warnings.filterwarnings("ignore")
    from skimage import data
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.scores import CategoricalScore

    import neurofilters
    from neurofilters.filters.saliency.engine import explain, resize_rgb, saliency_map
    from neurofilters.filters.saliency.plugin import METHODS, PARAMS

    model = neurofilters.load_model("lite0")
    photo = data.chelsea().astype(np.float32) / 255.0
    image = resize_rgb(photo, (224, 224))
    preprocessed = ((image * 255.0 - 127.0) / 128.0)[None].astype(np.float32)
    defaults = {param.name: param.default for param in PARAMS}
    score = CategoricalScore([CLASS])
    saliency = Saliency(model.keras_model, clone=False)
    gradcam = Gradcam(model.keras_model, clone=False)

    def theirs_smoothgrad() -> None:
        saliency(score, preprocessed, smooth_samples=args.samples, smooth_noise=0.2)

    def ours_smoothgrad() -> None:
        params = defaults | {"method": "smoothgrad", "class_": CLASS, "samples": args.samples, "noise": 0.2}
        explanation = explain(model, image, params, rng=np.random.default_rng(0))
        saliency_map(explanation, image.shape[:2], "smoothgrad", 0.0)

    def theirs_gradcam() -> None:
        gradcam(score, preprocessed, penultimate_layer="head_act", seek_penultimate_conv_layer=False)

    def ours_gradcam() -> None:
        explanation = explain(model, image, defaults | {"method": "grad-cam", "class_": CLASS})
        saliency_map(explanation, image.shape[:2], "grad-cam", 0.0)

    pairs = {"smoothgrad": (ours_smoothgrad, theirs_smoothgrad), "grad-cam": (ours_gradcam, theirs_gradcam)}
    comparison: dict[str, Any] = {}
    for name, (ours, theirs) in pairs.items():
        cold = {"ours": _timed(ours), "tf_keras_vis": _timed(theirs)}
        warm: dict[str, list[float]] = {"ours": [], "tf_keras_vis": []}
        for _ in range(args.rounds):
            warm["tf_keras_vis"].append(_timed(theirs))
            warm["ours"].append(_timed(ours))
        ratios = [o / t for o, t in zip(warm["ours"], warm["tf_keras_vis"])]
        comparison[name] = {
            "cold_s": cold,
            "warm_median_s": {side: statistics.median(times) for side, times in warm.items()},
            "ratio_ours_over_tf_keras_vis": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "goal": "<= 0.5",
        }
        print(f"{name:12s} ours {comparison[name]['warm_median_s']['ours']:.3f} s, tf-keras-vis "
              f"{comparison[name]['warm_median_s']['tf_keras_vis']:.3f} s, ratio {comparison[name]['ratio_ours_over_tf_keras_vis']:.3f} "
              f"(range {min(ratios):.3f}-{max(ratios):.3f}; cold: ours {cold['ours']:.2f} s, theirs {cold['tf_keras_vis']:.2f} s)")

    big = resize_rgb(photo, (768, 1024))
    megapixels = big.shape[0] * big.shape[1] / 1e6
    per_method: dict[str, Any] = {}
    for method in METHODS:
        run = lambda: neurofilters.apply("saliency", big, method=method)  # noqa: E731
        cold = _timed(run)
        warm = statistics.median(_timed(run) for _ in range(args.rounds))
        per_method[method] = {"cold_s": cold, "warm_s": warm, "warm_s_per_megapixel": warm / megapixels}
        print(f"{method:22s} {warm:.3f} s warm ({warm / megapixels:.3f} s/MP; cold {cold:.2f} s)")

    report = {
        "cpu": machine.cpu(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "image": "skimage chelsea, 224 x 224 for the comparison; 1024 x 768 for the per-method times",
        "model": "lite0",
        "samples": args.samples,
        "comparison": comparison,
        "per_method_1024x768": per_method,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
