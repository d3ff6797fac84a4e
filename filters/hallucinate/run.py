"""The ``hallucinate`` filter: a class (or channel) from noise, or dreamed into the photo.

``start=noise`` optimises a spectral image (:mod:`.visualize`) at ``work_size``
and resizes it to the input's size. ``start=image`` runs DeepDream's octave
engine (:func:`neurofilters.filters.deepdream.engine.dream`) with the class
objective passed through its ``loss_fn`` hook, so octaves, jitter, tiling and
smoothing are the engine's own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from neurofilters.plugin_host import FilterContext

from ..octaves import resize_image
from .objectives import Objective, resolve_objective
from .visualize import RECIPES, Recipe, visualize

__all__ = ["dream_class", "hallucinate_noise", "run_hallucinate"]


def _work_shape(height: int, width: int, work_size: int) -> tuple[int, int]:
    """The optimisation size: the longer side ``work_size``, the aspect ratio kept (sides >= 32)."""
    factor = work_size / max(height, width)
    return max(32, round(height * factor)), max(32, round(width * factor))


def hallucinate_noise(
    model: Any,
    objective: Objective,
    shape: tuple[int, int],
    *,
    steps: int,
    recipe: Recipe,
    rng: np.random.Generator,
    work_size: int = 224,
    progress: Any = None,
) -> np.ndarray:
    """A visualisation of ``objective`` of size ``shape`` from a seeded spectral start."""
    work = _work_shape(shape[0], shape[1], work_size)

    def report(step: int, value: float) -> None:
        if progress is not None:
            progress(0.02 + 0.96 * step / steps, f"step {step}/{steps}, {objective.label}: {value:.3f}")

    image = visualize(model, objective, height=work[0], width=work[1], steps=steps, recipe=recipe, rng=rng, progress=report)
    if image.shape[:2] != tuple(shape):
        image = np.clip(resize_image(image, shape), 0.0, 1.0)
    return image.astype(np.float32)


@functools.lru_cache(maxsize=32)
def _engine_loss(kind: str, index: int) -> Any:
    """The engine's loss hook for one objective (cached so the engine reuses its compiled step)."""
    objective = Objective("", kind, index, "")

    def loss_fn(outputs: Any) -> Any:
        if kind == "class":
            # The raw logit: DeepDream normalises the gradient, so the scale does not matter,
            # and unlike the probability it does not saturate.
            return outputs[0][:, index]
        return objective.score(outputs[0])

    return loss_fn


def dream_class(
    image: np.ndarray,
    model: Any,
    objective: Objective,
    *,
    steps: int,
    octaves: int,
    step_size: float,
    rng: np.random.Generator,
    progress: Any = None,
) -> np.ndarray:
    """Dream ``objective`` into ``image`` with DeepDream's engine (octaves, jitter, tiling)."""
    from ..deepdream.engine import DreamSettings, dream

    settings = DreamSettings(
        model=model.name,
        layers=((objective.layer, 1.0),),
        steps=steps,
        octaves=octaves,
        step_size=step_size,
        relu6="keep",
        # Logits of a window are a whole-image judgement: the window must be large.
        tile_size=0,
    )
    return dream(image, model, settings, rng=rng, progress=progress, loss_fn=_engine_loss(objective.kind, objective.index))


def run_hallucinate(image: np.ndarray, params: Mapping[str, Any], context: FilterContext) -> np.ndarray:
    """The ``hallucinate`` filter: ``run(image, params, context) -> image``.

    Raises:
        ParameterError: Unknown class (with suggestions), layer or channel; not a classifier.
    """
    context.progress(0.0, f"loading model {params['model']}")
    model = context.load_model(params["model"])
    objective = resolve_objective(model, dict(params))
    rng = context.rng(0)
    if params["start"] == "image":
        result = dream_class(
            np.asarray(image, np.float32), model, objective,
            steps=int(params["dream_steps"]), octaves=int(params["octaves"]), step_size=float(params["step_size"]),
            rng=rng, progress=context.progress,
        )
    else:
        recipe = RECIPES[params["recipe"]]
        if float(params["learning_rate"]) != recipe.learning_rate:
            recipe = Recipe(recipe.transforms, recipe.copies, float(params["learning_rate"]), recipe.decay)
        result = hallucinate_noise(
            model, objective, image.shape[:2], steps=int(params["steps"]), recipe=recipe, rng=rng,
            work_size=int(params["work_size"]), progress=context.progress,
        )
    if objective.kind == "class" and model.kind == "classifier":
        top = model.classify(result, top=3)
        listed = ", ".join(f"{name} {p:.2f}" for _, name, p in top)
        context.report(f"{model.name} sees: {listed}")
    return result
