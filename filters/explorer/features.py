"""A layer's activations for images: size the images, run the network in batches (layers are checked by ``ZooModel.spatial_layer``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..zoo import work_shape
from .render import resize

__all__ = ["activations", "centre_to_aspect", "network_image", "work_image"]


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
