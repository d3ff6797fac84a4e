"""Universal class noise: its image encoding, the ``add-noise`` filter and the fitting loop.

A noise ``r`` (float ``H x W x 3``, ``|r| <= bound``) is stored in a 16-bit
PNG as ``v = 0.5 + 4 r`` (so ``r = (v - 0.5) / 4``; bounds up to 0.125 =
31.875/255 fit), because a filter's image parameter is loaded by the host's
image loader, which reads PNG but not ``.npz``. :func:`quantise` puts ``r`` on
that 16-bit grid (rounding toward zero at the bound), so the ``.npz`` and the
PNG hold the same values and the bound holds exactly.

Fitting (:func:`fit_universal_noise`): the noise is a trainable weight of a
small Keras model that adds it to a batch of photos and classifies them, each
photo in the frame :meth:`ZooModel.classify` uses (central square, resized),
with the matching window of the noise (stretched over the whole photo, as
``add-noise`` applies it) cut out by an affine map. Adam raises the target's
log-probability; a weight constraint clips the noise to the bound after every step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from neurofilters.plugin_host import FilterContext

from ..octaves import resize_image

__all__ = ["PNG_GAIN", "add_noise", "decode_noise_image", "encode_noise_image", "quantise", "run_add_noise", "window_matrix"]

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
    """The noise held by loaded PNG pixels (``H x W x C``, alpha ignored, grey repeated)."""
    array = np.asarray(pixels, np.float64)
    if array.ndim == 2:
        array = array[:, :, None]
    colour = array[:, :, :3] if array.shape[2] >= 3 else np.repeat(array[:, :, :1], 3, axis=2)
    return ((colour - 0.5) / PNG_GAIN).astype(np.float32)


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
    context.progress(0.1, "adding the noise")
    return add_noise(image, decode_noise_image(params["noise"]), float(params["strength"]))


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


def _jittered(matrices: np.ndarray, side: int, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Window matrices randomly zoomed (about the window's centre) and shifted (noise coordinates)."""
    result = np.array(matrices, np.float32, copy=True)
    if not jitter:
        return result
    for row in result:
        zoom = float(np.exp(rng.uniform(-jitter, jitter)))
        dy, dx = rng.uniform(-jitter, jitter, 2) * side
        half = 112.0  # the centre of a 224-px output grid; exact centring does not matter for a random zoom
        for scale_index, offset_index, shift in ((0, 2, dx), (4, 5, dy)):
            centre = row[offset_index] + row[scale_index] * half
            row[scale_index] *= zoom
            row[offset_index] = centre - row[scale_index] * half + shift
    return result


def fit_universal_noise(
    photos: Sequence[tuple[np.ndarray, np.ndarray]],
    model: Any,
    target: int,
    *,
    bound: float,
    side: int,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    start: np.ndarray | None = None,
    learning_rate: float = 0.005,
    jitter: float = 0.15,
    coarseness: int = 1,
    on_epoch: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Learn one noise that makes the photos read as ``target``.

    Args:
        photos: ``(crop, matrix)`` pairs: the classifier-frame crop of each photo
            (float32 ``S x S x 3``) and its :func:`window_matrix`.
        model: A zoo classifier.
        target: Class id.
        bound: L-infinity bound of the noise.
        side: Side of the noise.
        epochs: Passes over the photos.
        batch_size: Photos per step.
        rng: Seeded generator (photo order).
        start: The coarse state to continue from (what ``on_epoch`` received), else zeros.
        learning_rate: Adam's step.
        jitter: Each step sees the noise's window moved by up to this share of the noise
            side and zoomed by up to ``1 +- jitter``, so the noise works wherever it
            falls on a photo (without it, it overfits the training photos' windows).
        coarseness: The noise is learned at ``side / coarseness`` and enlarged bilinearly:
            smoother noise generalises better to photos not seen while fitting.
        on_epoch: ``on_epoch(epoch, state)`` after every epoch with the coarse state
            (checkpoints, progress; Adam's moments are not part of it).

    Returns:
        float32 ``side x side x 3`` noise within the bound.
    """
    import keras
    from keras import ops

    from ..gradients import gradient_feature_model

    coarse = max(8, side // max(1, int(coarseness)))

    class Noise(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__(name="noise")
            if start is None:
                initial = np.zeros((coarse, coarse, 3), np.float32)
            elif np.shape(start)[:2] == (coarse, coarse):
                initial = np.asarray(start, np.float32)
            else:
                initial = np.asarray(resize_image(np.asarray(start, np.float32), (coarse, coarse), "bilinear"), np.float32)
            self.noise = self.add_weight(
                shape=(coarse, coarse, 3),
                initializer=keras.initializers.Constant(initial),
                constraint=lambda w: ops.clip(w, -bound, bound),
                name="noise",
            )

        def full(self) -> Any:
            """The noise at its full side (bilinear: a convex combination, so within the bound)."""
            return ops.image.resize(self.noise[None], (side, side), interpolation="bilinear")[0]

        def call(self, crops: Any, matrices: Any) -> Any:
            batch = ops.broadcast_to(self.full()[None], (ops.shape(matrices)[0], side, side, 3))
            window = ops.image.affine_transform(batch, matrices, interpolation="bilinear", fill_mode="nearest")
            window = window[:, : ops.shape(crops)[1], : ops.shape(crops)[2], :]
            return ops.clip(crops + window, 0.0, 1.0)

    features = gradient_feature_model(model, ["logits"], relu6="keep", precision="float32")
    features.trainable = False
    out_side = photos[0][0].shape[0]
    crops_in = keras.Input(shape=(out_side, out_side, 3))
    matrices_in = keras.Input(shape=(8,))
    layer = Noise()
    logits = features(layer(crops_in, matrices_in))
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    trainer = keras.Model([crops_in, matrices_in], logits)
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    crops = np.stack([crop for crop, _ in photos]).astype(np.float32)
    matrices = np.stack([matrix for _, matrix in photos]).astype(np.float32)
    labels = np.full((len(photos),), target, np.int32)
    for epoch in range(epochs):
        order = rng.permutation(len(photos))
        for begin in range(0, len(order), batch_size):
            chosen = order[begin : begin + batch_size]
            trainer.train_on_batch([crops[chosen], _jittered(matrices[chosen], side, jitter, rng)], labels[chosen])
        if on_epoch is not None:
            on_epoch(epoch + 1, np.asarray(layer.noise.numpy(), np.float32))
    return np.clip(np.asarray(ops.convert_to_numpy(layer.full()), np.float32), -bound, bound)
