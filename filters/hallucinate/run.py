"""The ``hallucinate`` filter: a class (or channel) drawn at the image's size, from noise or into the photo.

An image no larger than the network's input is optimised whole (:mod:`.visualize`)
and resized. A larger one is optimised at its own size through random views of
the network's input size (:mod:`.canvas`), so the class appears many times at
the chosen ``scale``, sharp at full size; objects larger than the network's input
are first laid out in a small render. ``start=image`` starts the same
optimisation from the photo's spectrum, with Adam's step set by ``strength``;
a ``mask`` composites the canvas into the image (outside it, pixels are kept).
The last progress message says what the network and an independent classifier
(Lite1, or Lite0 for Lite1) see in the written image, at its size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurofilters.plugin_host import FilterContext

from ..octaves import resize_image
from ..visualization.objectives import Objective, resolve_objective
from ..visualization.visualize import RECIPES, Recipe, visualize
from ..zoo import work_shape

__all__ = ["ViewPlan", "canvas_learning_rate", "hallucinate_noise", "plan_views", "run_hallucinate"]

#: Adam's step on the spectrum for ``start=image`` at strength 1 (the photo is the start).
IMAGE_LEARNING_RATE = 0.02
#: Share of the views per step that range from the object size to the whole canvas (the image reads as the class whole too).
CONTEXT = 0.25
#: Most views per step on a large canvas (memory grows with it; the canvas' own cost per step is shared by more views).
MAX_COPIES = 16
#: Object areas a canvas holds before it gets more views than the recipe's.
AREAS_PER_RECIPE = 5.0
#: Largest gain of Adam's step on a canvas larger than the network's input (see :func:`canvas_learning_rate`).
MAX_CANVAS_GAIN = 2.0


def canvas_learning_rate(learning_rate: float, shape: tuple[int, int], work_size: int) -> float:
    """Adam's step on a canvas of ``shape`` (start=noise): ``learning_rate`` times ``sqrt(side / work_size)``, 1 to 2.

    ``side`` is the canvas' geometric mean side. A part of a large canvas is seen by fewer
    views per step than a render at the network's size, and the gradients of its spectrum
    agree less from step to step, so with the same step it stays greyer (measured, AVX2,
    flamingo: saturation 0.15 and 8x8 contrast 0.083 at 512 px, 0.15 and 0.068 at 1024 px,
    against 0.17 and 0.097 at 224 px); with the gain (1.51 at 512 px, 2 at 1024 px) they
    rise above the 224-px render's (0.24, 0.12 at both), and Lite1 still ranks the class first.
    """
    side = math.sqrt(shape[0] * shape[1])
    return learning_rate * min(MAX_CANVAS_GAIN, max(1.0, math.sqrt(side / work_size)))


@dataclass(frozen=True)
class ViewPlan:
    """How a canvas is rendered: its object size, whether a small first render is needed, the views per step.

    Attributes:
        objects: Side of one class object on the canvas (canvas pixels).
        whole: True when one object spans the canvas and the canvas is no larger than the
            network's input: render at the network's size and resize (no canvas stage).
        layout: Shape of a first render whose views are the whole image (objects larger than
            the network's input), or ``None``.
        copies: Views per step of the canvas stage.
        steps: Steps of the canvas stage.
    """

    objects: int
    whole: bool
    layout: tuple[int, int] | None
    copies: int
    steps: int


def plan_views(shape: tuple[int, int], work_size: int, scale: float, copies: int, steps: int) -> ViewPlan:
    """The render plan of a canvas of ``shape`` for objects of ``scale`` (0: the network's own scale).

    A canvas of up to :data:`AREAS_PER_RECIPE` object areas gets the recipe's ``copies`` views
    for ``steps`` steps. A larger one holding ``n`` object areas gets ``sqrt(n / 5)`` times as
    many views in all (each object is seen less often, but its neighbours' views overlap it),
    in fewer steps of more views each (up to :data:`MAX_COPIES`): the canvas' own work per step
    (its FFT, grows with its area) is then shared by more views.

    Args:
        shape: Canvas ``(height, width)``.
        work_size: The network's view side (pixels).
        scale: Object size as a share of the canvas' longer side (0: ``work_size`` pixels).
        copies: The recipe's views per step (the least on a canvas).
        steps: The requested steps.
    """
    height, width = shape
    objects = round(scale * max(height, width)) if scale > 0 else work_size
    objects = int(max(16, min(objects, min(height, width))))
    if objects >= min(height, width) and max(height, width) <= work_size:
        return ViewPlan(objects, True, None, copies, steps)
    layout = work_shape(height, width, round(work_size * max(height, width) / objects)) if objects > work_size else None
    areas = height * width / objects**2 / AREAS_PER_RECIPE
    if areas <= 1.0:
        return ViewPlan(objects, False, layout, copies, steps)
    per_step = int(min(MAX_COPIES, max(copies, copies * round(areas))))
    total = steps * copies * math.sqrt(areas)
    return ViewPlan(objects, False, layout, per_step, max(1, round(total / per_step)))


def hallucinate_noise(
    model: Any,
    objective: Objective,
    shape: tuple[int, int],
    *,
    steps: int,
    recipe: Recipe,
    rng: np.random.Generator,
    work_size: int = 224,
    scale: float = 0.0,
    base: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    from_base: bool = False,
    pixel: bool = False,
    progress: Any = None,
) -> np.ndarray:
    """A visualisation of ``objective`` of size ``shape`` from a seeded spectral start (or from ``base``).

    A canvas no larger than ``work_size`` holding one object is optimised whole, with the
    recipe's views, and resized. Otherwise the canvas is optimised at its own size through
    views of ``work_size`` network pixels (:mod:`.canvas`); objects larger than the
    network's input are first laid out in a small render, then refined at full size.

    Args:
        model: A zoo model handle.
        objective: What to raise.
        shape: ``(height, width)`` of the result.
        steps: Adam steps of each stage.
        recipe: The recipe's views (zoom, turn, border), copies and learning rate.
        rng: Seeded generator.
        work_size: Side of the network's views.
        scale: Object size as a share of the canvas' longer side (0: the network's scale).
        base: Optional photo the result is composited into (with ``mask``) or starts from.
        mask: Optional ``H x W`` weights: where the result may differ from ``base`` (needs ``base``).
        from_base: Start from ``base`` (``start=image``) instead of noise.
        pixel: Optimise plain pixels (the baseline) instead of the spectrum, always through canvas views.
        progress: ``progress(fraction, message)``.
    """
    from ..parameterization import frequency_scale, image_to_spectrum, initial_spectrum
    from .canvas import CanvasViews, pyramid_levels, render_canvas

    plan = plan_views(shape, work_size, scale, recipe.copies, steps)
    if pixel:
        # The baseline: pixels from grey plus seeded noise (or the photo), views as for a canvas.
        plan = ViewPlan(plan.objects, False, None, plan.copies, plan.steps)
    stages = 2 if plan.layout is not None else 1
    evaluations = 0

    def reporter(stage: int, total: int, copies: int) -> Any:
        def report(step: int, value: float) -> None:
            nonlocal evaluations
            evaluations += copies
            if progress is not None:
                done = (stage + step / total) / stages
                progress(0.02 + 0.9 * done, f"stage {stage + 1}/{stages}, step {step}/{total}, {objective.label}: {value:.3f}")

        return report

    if plan.whole and not from_base:
        work = work_shape(shape[0], shape[1], work_size)
        image = visualize(model, objective, height=work[0], width=work[1], steps=steps, recipe=recipe, rng=rng,
                          progress=reporter(0, steps, recipe.copies))
        if image.shape[:2] != tuple(shape):
            image = np.clip(resize_image(image, shape), 0.0, 1.0)
        if progress is not None:
            progress(0.93, f"{evaluations} network views of {work[0]}x{work[1]} px, resized to {shape[0]}x{shape[1]}")
        return _composite(image, base, mask)
    height, width = shape
    if pixel:
        initial = np.asarray(base, np.float32).copy() if from_base and base is not None else (
            0.5 + rng.standard_normal((height, width, 3)) * 0.01).astype(np.float32)
    elif from_base and base is not None:
        initial = image_to_spectrum(base, frequency_scale(height, width, recipe.decay))
    elif plan.layout is not None:
        # Objects larger than the network's input: lay them out where one view holds the whole image.
        layout = visualize(model, objective, height=plan.layout[0], width=plan.layout[1], steps=steps, recipe=recipe,
                           rng=rng, progress=reporter(0, steps, recipe.copies))
        initial = image_to_spectrum(np.clip(resize_image(layout, shape), 0.0, 1.0), frequency_scale(height, width, recipe.decay))
    else:
        initial = initial_spectrum(rng, height, width)
    levels = pyramid_levels(height, width, work_size)
    if plan.layout is not None:
        # Refine at full size: views from the network's scale to the object's (sharp detail, shapes kept).
        views = CanvasViews(work_size, float(work_size), float(plan.objects), recipe.transforms, CONTEXT, levels)
    else:
        views = CanvasViews(work_size, float(plan.objects), float(plan.objects), recipe.transforms, CONTEXT, levels)
    # From noise, a large canvas takes a larger step (it would stay greyer than the network-size render).
    learning_rate = recipe.learning_rate if from_base or pixel else canvas_learning_rate(recipe.learning_rate, shape, work_size)
    image = render_canvas(
        model, objective, initial, views=views, steps=plan.steps, copies=plan.copies, learning_rate=learning_rate,
        rng=rng, decay=recipe.decay, base=base if mask is not None else None, mask=mask,
        progress=reporter(stages - 1, plan.steps, plan.copies),
    )
    if progress is not None:
        progress(0.93, f"{evaluations} network views of {work_size} px over the {height}x{width} canvas "
                       f"(objects of about {plan.objects} px)")
    return image


def _composite(image: np.ndarray, base: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray:
    """``base + mask * (image - base)`` (``image`` where there is no mask or no base); float32."""
    image = np.asarray(image, np.float32)
    if base is None or mask is None:
        return image
    base = np.asarray(base, np.float32)
    return np.clip(base + np.asarray(mask, np.float32)[:, :, None] * (image - base), 0.0, 1.0)


def _mask(params: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray | None:
    """The ``mask`` parameter as float32 ``H x W`` weights in [0, 1] at the image's size, or ``None``."""
    if params.get("mask") is None:
        return None
    pixels = np.asarray(params["mask"], np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    colour = pixels[:, :, : 3 if pixels.shape[2] >= 3 else 1]
    grey = colour[:, :, 0] if colour.shape[2] == 1 else colour @ np.float32([0.299, 0.587, 0.114])
    if pixels.shape[2] in (2, 4):
        grey = grey * pixels[:, :, -1]
    if grey.shape != tuple(shape):
        grey = resize_image(grey, shape, "bilinear")
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


def _verdicts(result: np.ndarray, model: Any, objective: Objective, context: FilterContext) -> str:
    """What the network and an independent classifier (Lite1, or Lite0 for Lite1) see in the written image."""
    height, width = result.shape[:2]
    top = model.classify(result, top=3)
    listed = ", ".join(f"{name} {p:.2f}" for _, name, p in top)
    message = f"at {width}x{height}: {model.name} sees {listed}"
    other_name = "lite0" if model.name == "lite1" else "lite1"
    if model.name in ("lite0", "lite1") and objective.kind == "class":
        other = context.load_model(other_name)
        ranking = other.classify(result, top=1000)
        ids = [entry[0] for entry in ranking]
        rank = ids.index(objective.index) + 1
        message += f"; {other_name} (not used to draw) ranks {model.labels[objective.index]} {rank} (p {ranking[rank - 1][2]:.2f}), top {ranking[0][1]} {ranking[0][2]:.2f}"
    return message


def run_hallucinate(image: np.ndarray, params: Mapping[str, Any], context: FilterContext) -> np.ndarray:
    """The ``hallucinate`` filter: ``run(image, params, context) -> image``.

    Raises:
        ParameterError: Unknown class (with suggestions), layer or channel; not a classifier.
    """
    context.progress(0.0, f"loading model {params['model']}")
    model = context.load_model(params["model"])
    objective = resolve_objective(model, dict(params))
    rng = context.rng(0)
    pixels = np.asarray(image, np.float32)
    mask = _mask(params, pixels.shape[:2])
    recipe = RECIPES[params["recipe"]]
    learning_rate = float(params["learning_rate"])
    from_base = params["start"] == "image"
    context.progress(0.0, "preparing the network")  # no ETA yet; folding, building and tracing the step: 2-3 s on 2 cores
    if from_base:
        # The photo is the start: the strength sets how far Adam may take it.
        learning_rate = IMAGE_LEARNING_RATE * float(params["strength"])
    if learning_rate != recipe.learning_rate:
        recipe = Recipe(recipe.transforms, recipe.copies, learning_rate, recipe.decay)
    result = hallucinate_noise(
        model, objective, pixels.shape[:2], steps=int(params["steps"]), recipe=recipe, rng=rng,
        work_size=int(params["work_size"]), scale=float(params["scale"]), base=pixels, mask=mask,
        from_base=from_base, pixel=params["parameterization"] == "pixel", progress=context.progress,
    )
    if objective.kind == "class" and model.kind == "classifier":
        context.progress(0.95, "classifying the result")  # Lite1's load and two classifications: 1-2 s
        context.report(_verdicts(result, model, objective, context))
    return result
