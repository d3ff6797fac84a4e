"""The ``adversarial`` filter: an L-infinity perturbation (projected gradient descent), targeted or not.

The perturbation is computed on the pixels the classifier actually judges:
the central square that :meth:`ZooModel.classify` crops, resized inside the
graph (bicubic, antialiased) to the network's input size, so ``neurofilters
classify`` on the saved result sees the target. Steps follow Madry et al.'s
PGD with sign gradients on the target's log-probability; the result is
rounded to the 8-bit grid inside the epsilon ball, so saving it as an 8-bit
PNG keeps the effect and the bound. ``--target none`` is the untargeted attack:
the steps go down the log-probability of the class the network sees in the
photo, "so the net no longer says daisy".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from neurofilters.plugin_host import FilterContext

from ..visualization.objectives import class_objective

__all__ = ["UNTARGETED", "attack", "psnr", "run_adversarial"]

#: The ``target`` value of the untargeted attack.
UNTARGETED = "none"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two [0, 1] images (inf when equal)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


@functools.lru_cache(maxsize=8)
def _gradient(model: Any, target: int, side: int) -> Any:
    """``fn(crops) -> (log p_target, d/dcrop)`` through an in-graph resize to ``side``."""
    import keras
    from keras import ops

    from ..gradients import gradient_feature_model, make_gradient_fn

    features = gradient_feature_model(model, ["logits"], relu6="keep", precision="float32")
    pixels = keras.Input(shape=(None, None, 3))
    resized = keras.layers.Lambda(
        lambda x: ops.image.resize(x, (side, side), interpolation="bicubic", antialias=True)
    )(pixels)
    outputs = features(resized)
    wrapper = keras.Model(pixels, outputs[0] if isinstance(outputs, (list, tuple)) else outputs)

    def loss_fn(values: Any) -> Any:
        return ops.log_softmax(values[0], axis=-1)[:, target]

    return make_gradient_fn(wrapper, loss_fn)


def attack(
    image: np.ndarray, model: Any, target: int, epsilon: float, steps: int, progress: Any = None, *, away: bool = False
) -> np.ndarray:
    """PGD within ``epsilon`` (in [0, 1] units) on the classifier's centre crop.

    Args:
        image: float32 ``H x W x 3`` in [0, 1].
        model: A zoo classifier.
        target: Class id the network should see (with ``away``: the class it should no longer see).
        epsilon: L-infinity bound (``8 / 255`` ...).
        steps: Sign-gradient steps (step ``2.5 epsilon / steps``, at least 1/255 / 4).
        progress: ``progress(fraction, message)``.
        away: Untargeted: descend the class's log-probability instead of ascending it.

    Returns:
        float32 image with ``max |result - image| <= epsilon`` (up to float rounding).
    """
    from ..zoo.model import CENTRE_CROP_FRACTION

    height, width = image.shape[:2]
    side = max(int(round(min(height, width) * CENTRE_CROP_FRACTION)), 1)
    top, left = (height - side) // 2, (width - side) // 2
    original = np.asarray(image[top : top + side, left : left + side], np.float32)
    gradient = _gradient(model, int(target), int(model.input_size or 224))
    low, high = np.maximum(original - epsilon, 0.0), np.minimum(original + epsilon, 1.0)
    crop = original.copy()
    alpha = np.float32(max(2.5 * epsilon / steps, 0.25 / 255.0))
    direction = np.float32(-1.0 if away else 1.0)
    for step in range(steps):
        value, grads = gradient(crop[None])
        crop += direction * alpha * np.sign(grads[0])
        np.clip(crop, low, high, out=crop)
        if progress is not None:
            what = "source" if away else "target"
            progress(0.05 + 0.9 * (step + 1) / steps, f"step {step + 1}/{steps}, p({what}) {math.exp(float(value[0])):.3f}")
    # The 8-bit grid inside the ball: saving as 8-bit keeps the bound and the effect.
    grid = np.clip(np.round(crop * 255.0) / 255.0, low, high).astype(np.float32)
    result = np.array(image, dtype=np.float32, copy=True)
    result[top : top + side, left : left + side] = grid
    return result


def run_adversarial(image: np.ndarray, params: Mapping[str, Any], context: FilterContext) -> np.ndarray:
    """The ``adversarial`` filter: ``run(image, params, context) -> image``.

    Reports the top-5 before and after and the PSNR as summary lines
    and emits the perturbation (amplified: 0.5 = unchanged, 0/1 = -/+ epsilon).
    """
    context.progress(0.0, f"loading model {params['model']}")
    model = context.load_model(params["model"])
    away = str(params["target"]).strip().lower() == UNTARGETED
    image = np.asarray(image, np.float32)
    if away:
        # untargeted: away from the class the network sees in the photo (a classifier is still needed)
        class_objective(model, 0, param="target")
        index = model.classify(image, top=1)[0][0]
    else:
        index = class_objective(model, params["target"], param="target").index
    epsilon = float(params["epsilon"]) / 255.0

    def listing(pixels: np.ndarray) -> str:
        return ", ".join(f"{name} ({index}) {p:.3f}" for index, name, p in model.classify(pixels, top=5))

    context.report(f"{model.name} before: {listing(image)}")
    result = attack(image, model, index, epsilon, int(params["steps"]), context.progress, away=away)
    context.report(f"{model.name} after: {listing(result)}")
    context.report(f"PSNR {psnr(image, result):.2f} dB (largest change {float(params['epsilon']):g}/255 per pixel)")
    delta = result - image
    context.emit("perturbation", np.clip(0.5 + delta * (0.5 / epsilon), 0.0, 1.0).astype(np.float32))
    return result
