"""Baseline for the DeepDream benchmark: the TensorFlow DeepDream tutorial's published algorithm.

Re-implemented from the tutorial's description (not copied): per step, the image
is rolled by a random shift of up to one tile, cut into ``tile_size`` tiles
(the tutorial's ``range(0, size, tile)[:-1]`` tile origins, so a strip at the
far edges is skipped for that step), each tile's loss (sum over layers of the
mean activation) is differentiated with a ``GradientTape`` watching the whole
rolled image, the gradients are summed, rolled back, divided by their standard
deviation, and the image moves by ``step_size`` and is clipped. The per-step
work is one ``tf.function`` with an ``[None, None, 3]`` input signature.
Octaves: ``base * scale ** n`` for ``n`` in ``octaves``, resizing the dreamed
image (no detail re-injection).

Differences, so that the comparison runs on the embedded models: the image
stays RGB in [0, 1] and the feature model does its own preprocessing, so the
tutorial's step 0.01 and clip to [-1, 1] become 0.005 and [0, 1].

``full_coverage=True`` is *not* the tutorial: it keeps the last tile of each
row and column, so every pixel is differentiated at every step (the work our
engine does). The benchmark reports it only as an extra, equal-work figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["TiledGradients", "run_tutorial_dream"]


class TiledGradients(tf.Module):
    """The tutorial's tiled, randomly rolled gradient of the mean activations."""

    def __init__(self, feature_model: Any, *, full_coverage: bool = False) -> None:
        super().__init__()
        self.feature_model = feature_model
        self.full_coverage = full_coverage

    def _loss(self, tile: tf.Tensor) -> tf.Tensor:
        outputs = self.feature_model(tf.expand_dims(tile, 0), training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return tf.add_n([tf.reduce_mean(output) for output in outputs])

    @tf.function(
        input_signature=(
            tf.TensorSpec(shape=[None, None, 3], dtype=tf.float32),
            tf.TensorSpec(shape=[2], dtype=tf.int32),
            tf.TensorSpec(shape=[], dtype=tf.int32),
            tf.TensorSpec(shape=[2], dtype=tf.int32),
        )
    )
    def __call__(self, image: tf.Tensor, size: tf.Tensor, tile_size: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
        rolled = tf.roll(image, shift=shift, axis=[0, 1])
        gradients = tf.zeros_like(rolled)
        # The tutorial skips the last tile of each axis unless there is only one.
        last = None if self.full_coverage else -1
        xs = tf.range(0, size[1], tile_size)[:last]
        if not tf.cast(tf.size(xs), tf.bool):
            xs = tf.constant([0])
        ys = tf.range(0, size[0], tile_size)[:last]
        if not tf.cast(tf.size(ys), tf.bool):
            ys = tf.constant([0])
        for x in xs:
            for y in ys:
                with tf.GradientTape() as tape:
                    tape.watch(rolled)
                    loss = self._loss(rolled[y : y + tile_size, x : x + tile_size])
                gradients = gradients + tape.gradient(loss, rolled)
        gradients = tf.roll(gradients, shift=-shift, axis=[0, 1])
        return gradients / (tf.math.reduce_std(gradients) + 1e-8)


def run_tutorial_dream(
    image: np.ndarray,
    feature_model: Any,
    *,
    steps_per_octave: int = 100,
    step_size: float = 0.005,
    octaves: Sequence[int] = range(-2, 3),
    octave_scale: float = 1.3,
    tile_size: int = 512,
    seed: int = 0,
    full_coverage: bool = False,
    gradients: TiledGradients | None = None,
) -> np.ndarray:
    """Dream ``image`` (float32 ``H x W x 3`` in [0, 1]) the way the TF tutorial does.

    Args:
        image: The photo.
        feature_model: RGB [0, 1] -> list of layer outputs.
        steps_per_octave: Gradient steps per octave (the tutorial: 100).
        step_size: Step in [0, 1] pixel units (the tutorial's 0.01 in [-1, 1]).
        octaves: Octave exponents (the tutorial: -2..2).
        octave_scale: Size ratio between octaves (the tutorial: 1.3).
        tile_size: Tile side and roll range (the tutorial: 512).
        seed: Seed of the rolls.
        full_coverage: Not the tutorial: keep the last tiles (see the module docstring).
        gradients: A :class:`TiledGradients` to reuse (its ``tf.function`` is traced once).

    Returns:
        The dreamed image at the input size, float32 in [0, 1].
    """
    rng = np.random.default_rng(seed)
    if gradients is None:
        gradients = TiledGradients(feature_model, full_coverage=full_coverage)
    base = np.array(image.shape[:2], np.float32)
    dreamed = tf.constant(image, tf.float32)
    for octave in octaves:
        size = tf.cast(base * octave_scale**octave, tf.int32)
        dreamed = tf.image.resize(dreamed, size)
        for _ in range(steps_per_octave):
            shift = tf.constant(rng.integers(-tile_size, tile_size, size=2), tf.int32)
            step = gradients(dreamed, size, tf.constant(tile_size), shift)
            dreamed = tf.clip_by_value(dreamed + step * step_size, 0.0, 1.0)
    return tf.clip_by_value(tf.image.resize(dreamed, image.shape[:2]), 0.0, 1.0).numpy()
