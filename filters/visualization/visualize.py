"""Activation maximisation from noise: a spectral image trained toward a class, channel or neuron.

The image is a :class:`~neurofilters.filters.parameterization.SpectralImage`;
each step shows the network ``copies`` random views of it (transformation
robustness) and Adam raises the mean objective over the views. The training
loop is Keras' own (``Model.train_on_batch`` on a small model whose only
weights are the spectrum, the network frozen), so every Keras backend runs it
and the arithmetic is the same on each run: the random views come from the
caller's seeded generator, drawn with numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..parameterization import (
    LUCID_TRANSFORMS,
    ROBUST_TRANSFORMS,
    SpectralImage,
    TransformSettings,
    image_to_spectrum,
    initial_spectrum,
    random_transforms,
)
from .objectives import Objective

__all__ = ["RECIPES", "Recipe", "reuse_trainer", "visualize"]


@dataclass(frozen=True)
class Recipe:
    """How an image is optimised: views per step, their ranges, the optimiser.

    Attributes:
        transforms: Ranges of the random views.
        copies: Views per step (their objectives are averaged).
        learning_rate: Adam's step on the spectrum.
        decay: ``1/f`` exponent of the spectrum scale (higher: smoother images).
    """

    transforms: TransformSettings
    copies: int
    learning_rate: float
    decay: float = 1.0


#: ``robust``: strong views, several per step (the default); ``lucid``: Lucid's
#: standard transforms, one view per step, Adam 0.05 (the baseline of the benchmark).
RECIPES: dict[str, Recipe] = {
    "robust": Recipe(ROBUST_TRANSFORMS, copies=4, learning_rate=0.05, decay=1.0),
    "lucid": Recipe(LUCID_TRANSFORMS, copies=1, learning_rate=0.05, decay=1.0),
}


#: Compiled trainers by (model, objective, size, recipe): tracing one costs seconds, a run reuses it.
_TRAINERS: dict[tuple[Any, ...], tuple[Any, SpectralImage]] = {}


def _cached_trainer(model: Any, objective: Objective, height: int, width: int, recipe: Recipe, initial: np.ndarray) -> tuple[Any, SpectralImage]:
    """A compiled trainer with its spectrum set to ``initial`` and a fresh optimiser state."""

    def build() -> tuple[Any, SpectralImage]:
        settings = recipe.transforms
        spectral = SpectralImage(height, width, initial, pad=settings.pad, fill=settings.fill, decay=recipe.decay)
        return _trainer(model, objective, spectral, recipe.learning_rate), spectral

    return reuse_trainer(_TRAINERS, (id(model), model.name, objective, height, width, recipe), build, initial)


def reuse_trainer(cache: dict[Any, tuple[Any, Any]], key: Any, build: Callable[[], tuple[Any, Any]], initial: np.ndarray) -> tuple[Any, Any]:
    """The compiled ``(trainer, image layer)`` that ``cache`` holds under ``key`` (``build()`` on a miss; at most 4 kept),
    its image's ``spectrum`` set to ``initial`` and Adam's state (step count, moments) fresh: the arithmetic of a new
    trainer, without tracing one again. The learning rate stays."""
    if key not in cache:
        if len(cache) >= 4:
            cache.clear()
        cache[key] = build()
    trainer, image = cache[key]
    image.spectrum.assign(np.asarray(initial, np.float32))
    for variable in trainer.optimizer.variables:
        if variable.name != "learning_rate":
            variable.assign(np.zeros(variable.shape, variable.dtype))
    return trainer, image


def _trainer(model: Any, objective: Objective, spectral: SpectralImage, learning_rate: float) -> Any:
    """A Keras model from view matrices to per-view objectives, compiled with Adam on the spectrum only."""
    import keras
    from keras import ops

    from ..gradients import gradient_feature_model

    features = gradient_feature_model(model, [objective.layer], relu6="keep", precision="float32")
    features.trainable = False
    matrices = keras.Input(shape=(8,), name="views")
    outputs = features(spectral(matrices))
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    trainer = keras.Model(matrices, objective.score(outputs), name="visualisation")

    def ascend(_: Any, scores: Any) -> Any:
        return -ops.mean(scores)

    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=ascend, jit_compile=False)
    # Adam's moments made now: otherwise the first step creates them and TensorFlow traces the step twice
    # (about 0.6 CPU-s); same arithmetic.
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer


def visualize(
    model: Any,
    objective: Objective,
    *,
    height: int,
    width: int,
    steps: int,
    recipe: Recipe,
    rng: np.random.Generator,
    start: np.ndarray | None = None,
    progress: Callable[[int, float], None] | None = None,
    until: Callable[[int, np.ndarray], bool] | None = None,
) -> np.ndarray:
    """Optimise an ``height x width`` image toward ``objective``.

    Args:
        model: A zoo model handle.
        objective: What to raise (class, channel or neuron of a layer).
        height: Image height.
        width: Image width.
        steps: Adam steps.
        recipe: Views and optimiser settings.
        rng: Seeded generator (the starting spectrum, then the views).
        start: Optional float ``H x W x 3`` image to start from instead of noise.
        progress: ``progress(step, objective)`` after every step.
        until: ``until(step, image) -> bool``; checked every 8 steps, stops when true.

    Returns:
        float32 ``height x width x 3`` in [0, 1].
    """
    from keras import ops

    from ..parameterization import frequency_scale

    if start is not None:
        initial = image_to_spectrum(start, frequency_scale(height, width, recipe.decay))
    else:
        initial = initial_spectrum(rng, height, width)
    settings = recipe.transforms
    trainer, spectral = _cached_trainer(model, objective, height, width, recipe, initial)
    targets = np.zeros((recipe.copies,), np.float32)
    for step in range(steps):
        views = random_transforms(rng, recipe.copies, height, width, settings)
        loss = trainer.train_on_batch(views, targets)
        if progress is not None:
            progress(step + 1, -float(np.asarray(loss).reshape(-1)[0]))
        if until is not None and (step + 1) % 8 == 0 and until(step + 1, _image(spectral, ops)):
            break
    return _image(spectral, ops)


def _image(spectral: SpectralImage, ops: Any) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(spectral.image())[0], np.float32)
