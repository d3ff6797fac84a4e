"""A layer's activations for images: resolve and check the layer, size the images, run the network in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neurofilters.plugin_host import ParameterError

from .render import resize

__all__ = ["activations", "centre_to_aspect", "network_image", "spatial_layer", "work_image", "work_shape"]


def spatial_layer(model: Any, layer: str, *, param: str = "layer") -> str:
    """The raw name of ``layer`` after checking it has ``H x W x C`` outputs.

    Raises:
        ParameterError: Unknown layer (with suggestions) or a layer without spatial positions.
    """
    raw = model.resolve_layer(layer)
    shapes = {info.name: info.output_shape for info in model.layer_table(224)}
    if len(shapes[raw]) != 4:
        units = (
            " Its units are fully connected (each sees the whole image): 'explore similar', 'saliency --target-layer' and "
            "'hallucinate --layer' take them."
            if len(shapes[raw]) == 2 else ""
        )
        raise ParameterError(
            f'"{param}" must be a convolutional layer (H x W x C output). Received: {param}={layer!r} with output '
            f"shape {shapes[raw]}.{units} Run 'neurofilters layers {model.name}' to see the layers.",
            param=param,
            value=layer,
        )
    return raw


def work_shape(height: int, width: int, work_size: int, min_size: int = 32) -> tuple[int, int]:
    """``(h, w)`` with the longer side ``work_size`` (0: unchanged), aspect kept, sides >= ``min_size``."""
    if work_size <= 0:
        return max(height, min_size), max(width, min_size)
    factor = work_size / max(height, width)
    return max(min_size, round(height * factor)), max(min_size, round(width * factor))


def work_image(image: np.ndarray, work_size: int, min_size: int = 32, fixed: tuple[int, int] | None = None) -> np.ndarray:
    """``image`` resized (bicubic) so its longer side is ``work_size`` (0: kept, small images enlarged to ``min_size``).

    Args:
        image: float ``H x W x C`` (the first three channels are used).
        work_size: Longer side of the result (0: kept).
        min_size: Shortest side allowed.
        fixed: ``(height, width)`` of a network whose input size is fixed: the image's
            centre, cropped to that aspect ratio, is resized to exactly that size instead.

    Returns:
        float32 ``h x w x 3``.
    """
    rgb = np.asarray(image[:, :, :3], np.float32)
    if fixed is not None:
        return resize(centre_to_aspect(rgb, *fixed), *fixed)
    height, width = work_shape(image.shape[0], image.shape[1], work_size, min_size)
    return resize(rgb, height, width)


def network_image(image: np.ndarray, work_size: int, model: Any) -> np.ndarray:
    """``image`` as a single-image filter feeds it to ``model``, every pixel kept.

    A network with a fixed input size (``ZooModel.fixed_input``, e.g. a
    ``.keras`` built on ``Input(shape=(64, 64, 3))``) takes only that size: the
    whole image is resized to it, aspect not kept, so a result drawn back at
    the input's size lines up with the photo. Any other network gets
    :func:`work_image`'s working size.

    Args:
        image: float ``H x W x C`` (the first three channels are used).
        work_size: Longer side of the working image (0: kept); ignored for a fixed input size.
        model: A zoo model handle (``min_size``, ``fixed_input``).

    Returns:
        float32 ``h x w x 3``.
    """
    fixed = getattr(model, "fixed_input", None)
    if fixed is not None:
        return resize(np.asarray(image[:, :, :3], np.float32), *fixed)
    return work_image(image, work_size, model.min_size)


def centre_to_aspect(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The largest centred part of ``image`` with the aspect ratio ``height : width``."""
    rows, columns = image.shape[:2]
    if rows * width > columns * height:  # taller than wanted: crop rows
        keep = max(1, round(columns * height / width))
        top = (rows - keep) // 2
        return image[top : top + keep]
    keep = max(1, round(rows * width / height))
    left = (columns - keep) // 2
    return image[:, left : left + keep]


def activations(model: Any, layers: Sequence[str], images: np.ndarray, batch_size: int = 16) -> list[np.ndarray]:
    """Outputs of ``layers`` for ``images`` (``B x H x W x 3`` in [0, 1]), one float32 array per layer."""
    feature = model.feature_model(list(layers))
    chunks: list[list[np.ndarray]] = [[] for _ in layers]
    for start in range(0, len(images), batch_size):
        outputs = feature(np.ascontiguousarray(images[start : start + batch_size], np.float32), training=False)
        for index, output in enumerate(outputs):
            chunks[index].append(np.asarray(output, np.float32))
    return [np.concatenate(parts) for parts in chunks]
