"""Universal class noise: its image encoding, the ``add-noise`` filter and the fitting loop.

A noise ``r`` (float ``H x W x 3``, ``|r| <= bound``) is stored in a 16-bit
PNG as ``v = 0.5 + 4 r`` (so ``r = (v - 0.5) / 4``; bounds up to 0.125 =
31.875/255 fit), because a filter's image parameter is loaded by the host's
image loader, which reads PNG but not ``.npz``. :func:`quantise` puts ``r`` on
that 16-bit grid (rounding toward zero at the bound), so the ``.npz`` and the
PNG hold the same values and the bound holds exactly.

``add-noise`` reads *any* image with that one rule (:func:`decode_noise_image`):
a pixel value ``v`` in [0, 1] (8-bit code ``c``: ``v = c / 255``) is the change
``(v - 0.5) / 4``, i.e. ``(c - 127.5) / 4`` in 1/255 units: mid-grey changes
nothing, black and white change by -/+ 31.875/255; an alpha channel multiplies
it (transparent = no change). fit-noise's PNG exported at 8 bits (GIMP, any
editor) therefore comes back within 0.125/255 of the learned noise.

Fitting (:func:`fit_universal_noise`): the noise is a trainable weight of a
small Keras model that adds it to a batch of photos and classifies them, each
photo (a random view of it: crop and mirror) in the frame
:meth:`ZooModel.classify` uses (central square, resized), with the matching
window of the noise (stretched over the whole view, as ``add-noise`` applies
it, then randomly moved and zoomed a little) cut out by an affine map. Adam
raises the target's log-probability; a weight constraint clips the noise to
the bound after every step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from neurofilters.plugin_host import FilterContext

from ..octaves import resize_image

__all__ = ["PNG_GAIN", "add_noise", "decode_noise_image", "encode_noise_image", "fit_universal_noise", "quantise", "random_view", "run_add_noise", "window_matrix"]

#: ``v = 0.5 + PNG_GAIN * r`` in the 16-bit PNG.
PNG_GAIN = 4.0
_LEVELS = 65535


def quantise(noise: np.ndarray, bound: float) -> np.ndarray:
    """Round ``noise`` to the 16-bit PNG grid, never beyond ``bound`` (float32)."""
    codes = np.round((0.5 + PNG_GAIN * np.asarray(noise, np.float64)) * _LEVELS)
    limit = np.floor(PNG_GAIN * bound * _LEVELS)
    middle = 0.5 * _LEVELS
    codes = np.clip(codes, np.ceil(middle - limit), np.floor(middle + limit))
    return ((codes / _LEVELS - 0.5) / PNG_GAIN).astype(np.float32)


def encode_noise_image(noise: np.ndarray) -> np.ndarray:
    """The PNG pixels (float32 in [0, 1]) that hold ``noise``; write them with 16 bits."""
    return np.clip(0.5 + PNG_GAIN * np.asarray(noise, np.float64), 0.0, 1.0).astype(np.float32)


def decode_noise_image(pixels: np.ndarray) -> np.ndarray:
    """The noise an image stands for: ``(v - 0.5) / PNG_GAIN`` per value ``v`` in [0, 1], times its alpha.

    fit-noise's 16-bit PNG decodes to its noise exactly (:func:`encode_noise_image`
    is the inverse); any other image is read with the same rule: mid-grey is no
    change, black and white are -/+ ``0.5 / PNG_GAIN`` (31.875/255).

    Args:
        pixels: Loaded pixels, float in [0, 1], ``H x W`` or ``H x W x C``
            (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA); grey is repeated over
            the three colours and alpha multiplies the change (transparent = none).

    Returns:
        float32 ``H x W x 3`` noise.
    """
    array = np.asarray(pixels, np.float64)
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    colour = array[:, :, :3] if channels >= 3 else np.repeat(array[:, :, :1], 3, axis=2)
    noise = (colour - 0.5) / PNG_GAIN
    if channels in (2, 4):
        noise = noise * array[:, :, -1:]
    return noise.astype(np.float32)


def add_noise(image: np.ndarray, noise: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """``clip(image + strength * noise)``, the noise stretched (bilinear) over the whole image."""
    height, width = image.shape[:2]
    if noise.shape[:2] != (height, width):
        noise = resize_image(np.asarray(noise, np.float32), (height, width), "bilinear")
    return np.clip(np.asarray(image, np.float32) + np.float32(strength) * noise, 0.0, 1.0).astype(np.float32)


def run_add_noise(image: np.ndarray, params: Mapping[str, Any], context: FilterContext) -> np.ndarray:
    """The ``add-noise`` filter (without a noise image the picture is returned unchanged, and said so)."""
    if params.get("noise") is None:
        context.progress(0.5, "no --noise image given (the PNG written by 'neurofilters fit-noise'): image unchanged")
        return np.asarray(image, np.float32).copy()
    noise = decode_noise_image(params["noise"])
    strength = float(params["strength"])
    context.progress(0.1, f"adding the noise (largest change {np.abs(noise).max() * strength * 255:.2f}/255)")
    return add_noise(image, noise, strength)


def window_matrix(height: int, width: int, noise_side: int, out_side: int, fraction: float) -> np.ndarray:
    """Affine matrix (``keras.ops.image.affine_transform``) cutting the classifier's window out of the noise.

    The noise (``noise_side`` square) is stretched over an ``height x width``
    photo; the classifier keeps the central square of ``fraction`` of the
    shorter side and resizes it to ``out_side``. The matrix maps that output
    grid to noise coordinates.
    """
    side = min(height, width) * fraction
    span_y, span_x = noise_side * side / height, noise_side * side / width
    start_y, start_x = noise_side * (height - side) / (2 * height), noise_side * (width - side) / (2 * width)
    sy, sx = span_y / out_side, span_x / out_side
    # Pixel centres: out (i + 0.5) -> noise start + (i + 0.5) * s - 0.5.
    return np.asarray([sx, 0.0, start_x + 0.5 * sx - 0.5, 0.0, sy, start_y + 0.5 * sy - 0.5, 0.0, 0.0], np.float32)


def _jittered(matrix: np.ndarray, side: int, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """A window matrix randomly zoomed (about the window's centre) and shifted (noise coordinates)."""
    row = np.array(matrix, np.float32, copy=True)
    if not jitter:
        return row
    zoom = float(np.exp(rng.uniform(-jitter, jitter)))
    dy, dx = rng.uniform(-jitter, jitter, 2) * side
    half = 112.0  # the centre of a 224-px output grid; exact centring does not matter for a random zoom
    for scale_index, offset_index, shift in ((0, 2, dx), (4, 5, dy)):
        centre = row[offset_index] + row[scale_index] * half
        row[scale_index] *= zoom
        row[offset_index] = centre - row[scale_index] * half + shift
    return row


def random_view(image: np.ndarray, rng: np.random.Generator, min_area: float = 0.3) -> np.ndarray:
    """A random crop of ``image`` (``min_area``..1 of its area, aspect 3:4..4:3), mirrored half the time."""
    height, width = image.shape[:2]
    area = rng.uniform(min_area, 1.0) * height * width
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    h = int(np.clip(round(np.sqrt(area / aspect)), 1, height))
    w = int(np.clip(round(np.sqrt(area * aspect)), 1, width))
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    view = image[top : top + h, left : left + w]
    return np.ascontiguousarray(view[:, ::-1] if rng.random() < 0.5 else view)


def fit_universal_noise(
    photos: Sequence[np.ndarray],
    model: Any,
    target: int,
    *,
    bound: float,
    side: int,
    epochs: int,
    batch_size: int,
    seed: int,
    state: Mapping[str, Any] | None = None,
    learning_rate: float = 0.01,
    jitter: float = 0.15,
    views: bool = True,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> np.ndarray:
    """Learn one noise that makes the photos read as ``target``.

    Every epoch draws its randomness (photo order, views, window jitter) from
    ``numpy.random.default_rng([seed, epoch])``, and the state handed to
    ``on_epoch`` holds the noise, Adam's moments and step count: a fit resumed
    from a saved state gives the same bytes as one never interrupted.

    Args:
        photos: float32 ``H x W x 3`` photos in [0, 1] (any sizes).
        model: A zoo classifier.
        target: Class id.
        bound: L-infinity bound of the noise.
        side: Side of the (square) noise; ``add-noise`` stretches it over a whole photo.
        epochs: Passes over the photos, counted from the first (a resumed state's epochs included).
        batch_size: Photos per step.
        seed: Seed of every epoch's randomness.
        state: What ``on_epoch`` received, to continue from; else the noise starts at zero.
        learning_rate: Adam's first step (cosine decay to a tenth over all the steps).
        jitter: Each step sees the noise's window moved by up to this share of the noise
            side and zoomed by up to ``1 +- jitter``, so the noise works wherever it
            falls on a photo (without it, it overfits the training photos' windows).
        views: Each step sees a random crop (30-100 % of the area) of each photo,
            mirrored half the time, instead of the whole photo: a few dozen photos
            then stand for thousands, and the noise works on photos it never saw.
        on_epoch: ``on_epoch(epoch, state)`` after every epoch (checkpoints, progress);
            ``state`` maps ``noise``, ``epoch`` and ``optimizer`` (a list of arrays).

    Returns:
        float32 ``side x side x 3`` noise within the bound.
    """
    import keras
    from keras import ops

    from ..gradients import gradient_feature_model
    from ..zoo.model import CENTRE_CROP_FRACTION, centre_crop_resize

    out_side = int(model.input_size or 224)
    steps_per_epoch = -(-len(photos) // batch_size)
    first_epoch = int(state["epoch"]) if state is not None else 0

    class Noise(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__(name="noise")
            initial = np.zeros((side, side, 3), np.float32) if state is None else np.asarray(state["noise"], np.float32)
            self.noise = self.add_weight(
                shape=(side, side, 3),
                initializer=keras.initializers.Constant(initial),
                constraint=lambda w: ops.clip(w, -bound, bound),
                name="noise",
            )

        def call(self, crops: Any, matrices: Any) -> Any:
            batch = ops.broadcast_to(self.noise[None], (ops.shape(matrices)[0], side, side, 3))
            window = ops.image.affine_transform(batch, matrices, interpolation="bilinear", fill_mode="nearest")
            window = window[:, : ops.shape(crops)[1], : ops.shape(crops)[2], :]
            return ops.clip(crops + window, 0.0, 1.0)

    features = gradient_feature_model(model, ["logits"], relu6="keep", precision="float32")
    features.trainable = False
    crops_in = keras.Input(shape=(out_side, out_side, 3))
    matrices_in = keras.Input(shape=(8,))
    layer = Noise()
    logits = features(layer(crops_in, matrices_in))
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    trainer = keras.Model([crops_in, matrices_in], logits)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * steps_per_epoch), alpha=0.1)
    optimizer = keras.optimizers.Adam(schedule)
    trainer.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    optimizer.build(trainer.trainable_variables)
    if state is not None:
        for variable, value in zip(optimizer.variables, state["optimizer"], strict=True):
            variable.assign(np.asarray(value))
    for epoch in range(first_epoch, epochs):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(photos))
        for begin in range(0, len(order), batch_size):
            crops, matrices = [], []
            for index in order[begin : begin + batch_size]:
                view = random_view(photos[index], rng) if views else photos[index]
                crops.append(centre_crop_resize(view, out_side))
                matrix = window_matrix(view.shape[0], view.shape[1], side, out_side, CENTRE_CROP_FRACTION)
                matrices.append(_jittered(matrix, side, jitter, rng))
            labels = np.full((len(crops),), target, np.int32)
            trainer.train_on_batch([np.stack(crops), np.stack(matrices)], labels)
        if on_epoch is not None:
            on_epoch(epoch + 1, {
                "noise": np.asarray(ops.convert_to_numpy(layer.noise), np.float32),
                "epoch": epoch + 1,
                "optimizer": [np.asarray(ops.convert_to_numpy(variable)) for variable in optimizer.variables],
            })
    return np.clip(np.asarray(ops.convert_to_numpy(layer.noise), np.float32), -bound, bound)
