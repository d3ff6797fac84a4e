"""DeepDream on several images of equal size at once: one network call per step for the whole batch.

The batch runner (``neurofilters batch --batch-size N``) hands equal-size
images to :func:`run_batch`. Every image keeps everything that is its own:
its random generator (the jitter roll of each step), its mask (the image's
alpha with ``mask_alpha``), its gradient normalisation and its early stop
(``loss_ceiling``). Only the network call is shared: each image is rolled by
its own shift in numpy, the rolled images go through the network together
(unrolled in the graph, shift ``(0, 0)``), and each gradient is rolled back.
Everything around the call is the single-image code of
:mod:`neurofilters.filters.deepdream.engine` (:class:`~neurofilters.filters.deepdream.engine.DreamState`,
:func:`~neurofilters.filters.deepdream.engine.ascend`).

**Exactly the single-image result.** A resumed batch must write the bytes of
an uninterrupted one although its batches are composed differently, so every
image must get, bit for bit, what :func:`~neurofilters.filters.deepdream.engine.dream`
gives it alone. Mathematically the samples of a batch are independent, but a
convolution library may pick another blocking, hence another summation order,
for another batch size: on TensorFlow's oneDNN kernels one call on four
96 x 96 images differs from four single calls in the last bit of ~20 % of the
gradient values, while 64 x 48 or 128 x 128 agree exactly. So before a batch
size is used at an image size, one call on random images is compared with
single-image calls on the same images (:func:`batch_is_exact`, once per
process, objective, batch size and image size); where they differ in a
single bit, the images are differentiated one by one at that size. The
choice of kernels depends only on shapes and the thread count, never on
pixel values, so a size found exact stays exact.

Images are only batched where every octave is differentiated whole (untiled)
and the whole batch fits the memory budget at the largest octave (the batch
is split into smaller groups otherwise). Neuron objectives, guide images and
frame sequences run image by image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from neurofilters.plugin_host import FilterContext

from .engine import (
    DreamSettings,
    DreamState,
    OctaveProgress,
    _load_mask,
    _Objective,
    ascend,
    budget_pixels,
    build_objective,
    dream,
    dream_schedule,
    jitter_shift,
    min_size_of,
    plan_window,
    run,
    settings_from_params,
    stops_early,
    tiled_gradient,
)

__all__ = ["batch_capacity", "batch_gradients", "batch_is_exact", "dream_batch", "run_batch"]

#: ``progress(fraction, message)``
Progress = Callable[[float, str], None]


def batch_capacity(objective: _Objective, settings: DreamSettings, shapes: Sequence[tuple[int, int]]) -> int:
    """How many images one gradient call may hold at every octave (1: dream them one by one).

    Args:
        objective: Gives the memory per pixel and the objective kind.
        settings: ``memory_mb`` and ``tile_size``.
        shapes: The octave sizes of the images.

    Returns:
        The largest count whose pixels fit the memory budget at the largest
        octave, or 1 when an octave would be tiled or the objective is a
        neuron (a window around the centre, not the whole image).
    """
    if objective.neuron or not shapes:
        return 1
    budget = budget_pixels(settings, objective)
    capacity = budget
    for height, width in shapes:
        if tuple(plan_window(settings, objective, height, width)) != (height, width):
            return 1
        capacity = min(capacity, budget // (height * width))
    return max(1, capacity)


def _together(
    objective: _Objective, images: Sequence[np.ndarray], shifts: Sequence[tuple[int, int]]
) -> list[tuple[float, np.ndarray]]:
    """One network call on the images, each rolled by its own shift; gradients in the unrolled frame."""
    rolled = np.stack([np.roll(image, shift, axis=(0, 1)) for image, shift in zip(images, shifts)])
    losses, gradients = objective.gradient(rolled)
    del rolled
    return [
        (float(losses[index]), np.roll(gradients[index], (-shift[0], -shift[1]), axis=(0, 1)))
        for index, shift in enumerate(shifts)
    ]


def _alone(objective: _Objective, image: np.ndarray, shift: tuple[int, int]) -> tuple[float, np.ndarray]:
    """The single-image gradient, exactly as :func:`~neurofilters.filters.deepdream.engine.dream` computes it."""
    height, width = image.shape[:2]
    return tiled_gradient(image, objective, (height, width), shift)


def _probe_exact(objective: _Objective, count: int, height: int, width: int) -> bool:
    """Compare one call on ``count`` random images with single-image calls, bit for bit."""
    rng = np.random.default_rng([count, height, width])
    images = rng.random((count, height, width, 3), dtype=np.float32)
    shifts = [(int(rng.integers(height)), int(rng.integers(width))) for _ in range(count)]
    together = _together(objective, list(images), shifts)
    for image, shift, (loss, gradient) in zip(images, shifts, together):
        single_loss, single_gradient = _alone(objective, image, shift)
        if single_loss != loss or not np.array_equal(single_gradient, gradient):
            return False
    return True


def batch_is_exact(objective: _Objective, count: int, height: int, width: int) -> bool:
    """Whether one call on ``count`` images of ``height x width`` gives each exactly its single result.

    Probed once per objective and size (see the module docstring), then remembered.
    """
    key = (count, height, width)
    known = objective.batch_exact.get(key)
    if known is None:
        known = _probe_exact(objective, count, height, width)
        objective.batch_exact[key] = known
    return known


def batch_gradients(
    objective: _Objective, images: Sequence[np.ndarray], shifts: Sequence[tuple[int, int]]
) -> list[tuple[float, np.ndarray]]:
    """Loss and gradient of each whole image, in one call where that is exact, else one by one.

    Args:
        objective: From :func:`~neurofilters.filters.deepdream.engine.build_objective`.
        images: float32 ``H x W x 3`` images of one size.
        shifts: Each image's roll ``(dy, dx)``, in ``[0, H) x [0, W)``.

    Returns:
        ``(loss, gradient)`` per image, bit-identical to single-image calls.
    """
    if len(images) > 1:
        height, width = images[0].shape[:2]
        if batch_is_exact(objective, len(images), height, width):
            return _together(objective, images, shifts)
    return [_alone(objective, image, shift) for image, shift in zip(images, shifts)]


def _dream_octave_batch(
    images: Sequence[np.ndarray],
    objective: _Objective,
    settings: DreamSettings,
    masks: Sequence[np.ndarray | None],
    rngs: Sequence[np.random.Generator],
    report: Callable[[int, float], None],
) -> None:
    """Gradient ascent at one scale on every image, in place (the batched ``_dream_octave``)."""
    height, width = images[0].shape[:2]
    active = list(range(len(images)))
    for step in range(settings.steps):
        shifts = [jitter_shift(rngs[index], settings, height, width) for index in active]
        results = batch_gradients(objective, [images[index] for index in active], shifts)
        losses = []
        for index, (loss, gradient) in zip(active, results):
            ascend(images[index], gradient, settings, masks[index])
            losses.append(loss)
        del results
        report(step + 1, float(np.mean(losses)))
        active = [index for index, loss in zip(active, losses) if not stops_early(settings, loss)]
        if not active:
            break


def _dream_together(
    images: Sequence[np.ndarray],
    objective: _Objective,
    settings: DreamSettings,
    rngs: Sequence[np.random.Generator],
    masks: Sequence[np.ndarray | None],
    min_size: int,
    progress: Progress | None,
) -> list[np.ndarray]:
    """Dream a group that fits one gradient call at every octave."""
    states = [DreamState(image, mask, settings, min_size) for image, mask in zip(images, masks)]
    shapes = states[0].shapes
    octaves = OctaveProgress(shapes, settings, progress)
    for index, shape in enumerate(shapes):
        currents = [state.begin_octave(shape) for state in states]
        _dream_octave_batch(
            currents, objective, settings, [state.octave_mask for state in states], rngs, octaves.reporter(index)
        )
        del currents
        octaves.octave_done(index)
        for state in states:
            state.end_octave()
    return [state.finish() for state in states]


def _share(progress: Progress | None, start: int, count: int, total: int) -> Progress | None:
    """``progress`` for images ``start .. start + count`` of ``total``."""
    if progress is None:
        return None
    return lambda fraction, message: progress((start + fraction * count) / total, message)


def dream_batch(
    images: Sequence[np.ndarray],
    model: Any,
    settings: DreamSettings,
    *,
    rngs: Sequence[np.random.Generator],
    masks: Sequence[np.ndarray | None] | None = None,
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """Dream several images of one size; each result equals :func:`~neurofilters.filters.deepdream.engine.dream` on it alone.

    Args:
        images: float32 ``H x W x 3`` images in [0, 1], all the same size; not modified.
        model: A zoo model handle.
        settings: Dream settings (without a guide image).
        rngs: One generator per image (its jitter rolls).
        masks: One optional ``H x W`` mask per image.
        progress: ``progress(fraction, message)`` for the whole batch.

    Returns:
        The dreamed images, in order.

    Raises:
        ValueError: The images differ in size, or the lists in length.
    """
    count = len(images)
    masks = list(masks) if masks is not None else [None] * count
    if len(rngs) != count or len(masks) != count:
        raise ValueError(
            f"dream_batch needs one rng and one mask per image. Received: {count} images, "
            f"{len(rngs)} rngs, {len(masks)} masks"
        )
    sizes = {np.shape(image)[:2] for image in images}
    if len(sizes) > 1:
        raise ValueError(f"dream_batch needs images of one size. Received sizes {sorted(sizes)}")
    if count == 0:
        return []
    objective = build_objective(model, settings)
    min_size = min_size_of(model)
    height, width = np.shape(images[0])[:2]
    capacity = batch_capacity(objective, settings, dream_schedule(height, width, settings, min_size)[1])
    results: list[np.ndarray] = []
    for start in range(0, count, capacity):
        stop = min(start + capacity, count)
        report = _share(progress, start, stop - start, count)
        if stop - start == 1:
            results.append(dream(images[start], model, settings, rng=rngs[start], mask=masks[start], progress=report))
        else:
            results += _dream_together(
                images[start:stop], objective, settings, rngs[start:stop], masks[start:stop], min_size, report
            )
    return results


def run_batch(
    images: Sequence[np.ndarray], params: Mapping[str, Any], contexts: Sequence[FilterContext]
) -> list[np.ndarray]:
    """The ``deepdream`` filter's ``batch_run``: :func:`~neurofilters.filters.deepdream.engine.run` for several images at once.

    Args:
        images: float32 ``H x W x 3`` images in [0, 1], all the same size.
        params: Validated parameters, shared by every image.
        contexts: One context per image (its seed and alpha; progress and
            cancellation are taken from the first).

    Returns:
        For every image exactly what ``run(image, params, context)`` returns.

    Raises:
        ParameterError, ModelUnavailableError: As :func:`~neurofilters.filters.deepdream.engine.run`.
    """
    if int(params.get("frames", 0)) > 0 or params.get("guide"):
        # Frame sequences write files per image, and guided objectives are built per call.
        return [run(image, params, context) for image, context in zip(images, contexts)]
    settings = settings_from_params(params)
    lead = contexts[0]
    lead.progress(0.0, f"loading model {settings.model}")
    model = lead.load_model(settings.model)
    pixels = [np.asarray(image, np.float32) for image in images]
    masks = [
        _load_mask(params, image.shape[:2], getattr(context, "alpha", None)) for image, context in zip(pixels, contexts)
    ]
    rngs = [context.rng(0) for context in contexts]
    return dream_batch(pixels, model, settings, rngs=rngs, masks=masks, progress=lead.progress)
