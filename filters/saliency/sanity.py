"""Sanity checks for saliency maps (Adebayo et al. 2018): cascading randomisation of the model's weights.

The weights are destroyed one group of layers at a time, from the logits down
(cascading), on a private clone of the network; after each group every
method's map is compared with the map of the intact model by Spearman's rank
correlation of the absolute maps. A method that explains the *model* must
change as its weights go; one whose map stays put is showing the image (edges),
not the model. Each weight tensor is re-drawn from a normal distribution with its
own standard deviation (the scale of the activations survives, the learned
structure does not). Groups are the layers sharing a name prefix (``logits``,
``head``, ``block15`` ... ``stem``), on the batch-norm-folded network the
methods run on (a convolution and its folded batch norm go together).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..attribution.methods import compute
from ..attribution.network import Target, default_cam_layer, forget, prepared_network, saliency_step
from .plugin import CAM_METHODS

__all__ = ["SanityReport", "cascading_randomisation", "layer_groups", "sanity_figure", "spearman", "upsample_rgb"]


@dataclass
class SanityReport:
    """The result of :func:`cascading_randomisation`.

    Attributes:
        levels: ``"original"``, then the cumulative randomisation after each group
            (``"logits"``, ``"+head"``, ``"+block15"`` ...).
        correlations: Method -> Spearman rank correlation with the original map, per level.
        maps: Method -> the normalised maps per level (network resolution).
        class_id: The explained class.
        image: The image at the network's resolution.
    """

    levels: list[str]
    correlations: dict[str, list[float]]
    maps: dict[str, list[np.ndarray]] = field(repr=False)
    class_id: int
    image: np.ndarray = field(repr=False)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two arrays (average ranks for ties); 0 when one is constant."""
    ranks = [_ranks(np.ravel(x).astype(np.float64)) for x in (a, b)]
    if any(r.std() == 0 for r in ranks):
        return 0.0
    return float(np.corrcoef(ranks[0], ranks[1])[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    # average ranks over ties (the zeros of rectified maps are many)
    unique, start, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    for first, count in zip(start[counts > 1], counts[counts > 1]):
        ranks[order[first : first + count]] = first + (count - 1) / 2.0
    return ranks


def layer_groups(network: Any) -> list[tuple[str, list[Any]]]:
    """Layers with weights grouped by name prefix, from the output down: ``[(group, layers), ...]``."""
    groups: dict[str, list[Any]] = {}
    order: list[str] = []
    for layer in network.layers:
        if not layer.weights:
            continue
        prefix = layer.name.split("_")[0]
        if prefix not in groups:
            groups[prefix] = []
        else:
            order.remove(prefix)
        order.append(prefix)
        groups[prefix].append(layer)
    return [(name, groups[name]) for name in reversed(order)]


class _Clone:
    """A zoo model handle whose network is a private copy (everything else is the original's)."""

    def __init__(self, model: Any) -> None:
        import keras

        self._model = model
        self.keras_model = keras.models.clone_model(model.keras_model)
        self.keras_model.set_weights(model.keras_model.get_weights())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def cascading_randomisation(
    model: Any,
    image: np.ndarray,
    class_id: int,
    *,
    methods: Sequence[str],
    cam_layer: str | None = None,
    levels: int | None = None,
    seed: int = 0,
    samples: int = 16,
    noise: float = 0.15,
    steps: int = 16,
    progress: Callable[[float, str], None] | None = None,
) -> SanityReport:
    """Randomise the weights group by group from the top, comparing each method's map with the original.

    The user's model is never touched: the work happens on a clone.

    Args:
        model: A classifier zoo model handle.
        image: float32 ``h x w x 3`` at the network's resolution.
        class_id: The class explained throughout.
        methods: Saliency methods to check.
        cam_layer: Raw CAM layer name (default: the last convolutional block).
        levels: How many groups to randomise (default: all).
        seed: Seed of the new weights and of SmoothGrad's noise.
        samples: SmoothGrad samples.
        noise: SmoothGrad noise level.
        steps: Integrated-gradients steps.
        progress: ``progress(fraction, message)``.

    Returns:
        The :class:`SanityReport`.
    """
    clone = _Clone(model)
    try:
        cam = cam_layer or default_cam_layer(clone.keras_model)
        target = Target("class")
        plain = saliency_step(clone, guided=False, target=target, cam_layer=None, freeze=False)
        with_cam = saliency_step(clone, guided=False, target=target, cam_layer=cam, freeze=False)
        guided = saliency_step(clone, guided=True, target=target, cam_layer=None, freeze=False)
        selector = np.zeros(int(clone.keras_model.outputs[0].shape[-1]), np.float32)
        selector[class_id] = 1.0
        network = prepared_network(clone.keras_model)
        groups = layer_groups(network)[: levels if levels is not None else None]
        rng = np.random.default_rng(seed)
        names = ["original"]
        maps: dict[str, list[np.ndarray]] = {method: [] for method in methods}
        total = (len(groups) + 1) * len(methods)

        def measure(level: int) -> None:
            for index, method in enumerate(methods):
                if progress is not None:
                    progress((level * len(methods) + index) / total, f"{names[-1]}: {method}")
                result = compute(
                    method, image, plain=with_cam if method in CAM_METHODS else plain, guided=guided,
                    selector=selector, samples=samples, noise=noise, steps=steps,
                    rng=np.random.default_rng(seed),
                )
                top = float(result.map.max())
                maps[method].append(result.map / top if top > 0 else result.map)

        measure(0)
        for level, (name, layers) in enumerate(groups, start=1):
            for layer in layers:
                for variable in layer.weights:
                    values = np.asarray(variable.numpy())
                    scale = float(values.std()) or 0.05
                    variable.assign(rng.normal(0.0, scale, values.shape).astype(values.dtype))
            names.append(name if level == 1 else f"+{name}")
            measure(level)
        correlations = {method: [spearman(maps[method][0], m) for m in maps[method]] for method in methods}
        if progress is not None:
            progress(1.0, "done")
        return SanityReport(names, correlations, maps, class_id, image)
    finally:
        forget(clone.keras_model)


def sanity_figure(report: SanityReport, *, cell: int = 112, colormap: str = "inferno") -> np.ndarray:
    """A grid of the maps: one row per method, one column per randomisation level, labelled.

    Args:
        report: From :func:`cascading_randomisation`.
        cell: Side of one map, in pixels.
        colormap: See :data:`neurofilters.filters.saliency.render.COLORMAP_ANCHORS`.

    Returns:
        float32 ``H x W x 3`` in [0, 1].
    """
    from PIL import Image, ImageDraw

    from ..attribution.methods import normalise, upsample
    from .render import apply_colormap

    methods = list(report.maps)
    label_width, label_height, gap = 150, 34, 4
    columns = len(report.levels) + 1
    rows, cols = report.image.shape[:2]
    cell_w = max(int(round(cell * cols / rows)), 16)
    width = label_width + columns * (cell_w + gap)
    height = label_height + len(methods) * (cell + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    photo = upsample_rgb(report.image, (cell, cell_w))
    for row, method in enumerate(methods):
        top = label_height + row * (cell + gap)
        draw.text((6, top + cell // 2 - 6), method, fill=(0, 0, 0))
        canvas.paste(Image.fromarray((photo * 255).astype(np.uint8)), (label_width, top))
        for column, values in enumerate(report.maps[method], start=1):
            sparse = method not in ("grad-cam", "grad-cam++")
            shown = apply_colormap(normalise(upsample(values, (cell, cell_w)), sparse=sparse), colormap)
            left = label_width + column * (cell_w + gap)
            canvas.paste(Image.fromarray((shown * 255).astype(np.uint8)), (left, top))
            rho = report.correlations[method][column - 1]
            draw.text((left + 3, top + cell - 13), f"{rho:+.2f}", fill=(255, 255, 255))
    for column, level in enumerate(["image", *report.levels]):
        draw.text((label_width + column * (cell_w + gap) + 2, 4), level, fill=(0, 0, 0))
    draw.text((label_width + 2, 18), "randomised from the logits down ->   (number: Spearman rank correlation with the original)", fill=(90, 90, 90))
    return np.asarray(canvas, np.float32) / 255.0


def upsample_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB image resized to ``size = (height, width)`` (for figures)."""
    from ..attribution.methods import upsample

    return np.clip(np.stack([upsample(image[:, :, c], size, "bicubic") for c in range(3)], axis=-1), 0.0, 1.0)
