"""The ``feature-inversion`` filter: rebuild an image from one layer's activations of the photo.

The image is the shared spectral, colour-decorrelated parameterisation
(:class:`neurofilters.filters.parameterization.SpectralImage`, started from
seeded noise); Adam lowers the relative feature error
``|phi(x) - phi(x0)|^2 / |phi(x0)|^2`` plus a total-variation prior. The
training loop is Keras' own (``train_on_batch`` on a model whose only weights
are the spectrum), so every backend runs it. The reconstruction's relative
feature error and its pixel error against the photo are reported: shallow
layers keep nearly everything, deep ones only what matters for recognition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurofilters.plugin_host import FilterContext

from ..parameterization import SpectralImage, initial_spectrum
from .features import network_image
from .render import resize

__all__ = ["Inversion", "invert", "run_feature_inversion"]

#: The identity view (``keras.ops.image.affine_transform``'s 8-number form).
_IDENTITY = np.array([[1, 0, 0, 0, 1, 0, 0, 0]], np.float32)


@dataclass(frozen=True)
class Inversion:
    """A reconstruction and how close it is.

    Attributes:
        image: float32 ``H x W x 3`` in [0, 1] (the working size).
        feature_error: ``|phi(x) - phi(x0)|^2 / |phi(x0)|^2`` at the end.
        pixel_error: Root-mean-square difference to the photo, in [0, 1] units.
    """

    image: np.ndarray
    feature_error: float
    pixel_error: float


def _trainer(feature: Any, spectral: SpectralImage, target: np.ndarray, tv_weight: float, learning_rate: float) -> Any:
    """A Keras model from the (identity) view to the loss, compiled with Adam on the spectrum only."""
    import keras
    from keras import ops

    target_tensor = ops.convert_to_tensor(target)
    norm = float(np.sum(np.square(target))) + 1e-12

    class InversionLoss(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="inversion")
            self.spectral = spectral

        def call(self, matrices: Any) -> Any:
            image = self.spectral.image()
            features = feature(self.spectral(matrices), training=False)[0]
            error = ops.sum(ops.square(features - target_tensor)) / norm
            tv = ops.mean(ops.abs(image[:, 1:] - image[:, :-1])) + ops.mean(ops.abs(image[:, :, 1:] - image[:, :, :-1]))
            return ops.reshape(error + tv_weight * tv, (1,))

    feature.trainable = False
    trainer = InversionLoss()

    def loss(_: Any, value: Any) -> Any:
        return ops.mean(value)

    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, jit_compile=False)
    return trainer


def invert(
    model: Any,
    layer: str,
    photo: np.ndarray,
    *,
    steps: int,
    rng: np.random.Generator,
    tv_weight: float = 0.02,
    learning_rate: float = 0.05,
    progress: Callable[[int, float], None] | None = None,
) -> Inversion:
    """Rebuild ``photo`` (float ``H x W x 3``, the working size) from ``layer``'s activations.

    Args:
        model: A zoo model handle.
        layer: Raw layer name.
        photo: The image whose activations are matched.
        steps: Adam steps.
        rng: Seeded generator (the starting spectrum).
        tv_weight: Weight of the total-variation prior.
        learning_rate: Adam's step.
        progress: ``progress(step, loss)`` after every step.

    Returns:
        The :class:`Inversion`.
    """
    from keras import ops

    feature = model.feature_model([layer])
    target = np.asarray(feature(photo[None].astype(np.float32), training=False)[0], np.float32)
    height, width = photo.shape[:2]
    spectral = SpectralImage(height, width, initial_spectrum(rng, height, width), pad=0)
    trainer = _trainer(feature, spectral, target, tv_weight, learning_rate)
    zero = np.zeros((1,), np.float32)
    for step in range(steps):
        value = trainer.train_on_batch(_IDENTITY, zero)
        if progress is not None:
            progress(step + 1, float(np.asarray(value).reshape(-1)[0]))
    image = np.asarray(ops.convert_to_numpy(spectral.image())[0], np.float32)
    rebuilt = np.asarray(feature(image[None], training=False)[0], np.float32)
    feature_error = float(np.sum(np.square(rebuilt - target)) / (np.sum(np.square(target)) + 1e-12))
    pixel_error = float(np.sqrt(np.mean(np.square(image - photo))))
    return Inversion(image, feature_error, pixel_error)


def run_feature_inversion(image: np.ndarray, params: Mapping[str, Any], context: FilterContext) -> np.ndarray:
    """The ``feature-inversion`` filter: ``run(image, params, context) -> image``.

    Raises:
        ParameterError: Unknown or non-spatial layer.
    """
    context.progress(0.0, f"loading model {params['model']}")
    model = context.load_model(params["model"])
    layer = model.spatial_layer(params["layer"])
    photo = network_image(image, int(params["work_size"]), model)
    steps = int(params["steps"])

    def report(step: int, loss: float) -> None:
        context.progress(0.02 + 0.96 * step / steps, f"step {step}/{steps}, loss {loss:.4f}")

    result = invert(
        model, layer, photo, steps=steps, rng=context.rng(0), tv_weight=float(params["tv_weight"]),
        learning_rate=float(params["learning_rate"]), progress=report,
    )
    context.report(f"{layer}: relative feature error {result.feature_error:.4f}, pixel RMS error {result.pixel_error:.4f}")
    height, width = image.shape[:2]
    return resize(result.image, height, width)
