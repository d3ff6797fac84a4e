"""Optical flow between source frames, warping along it, occlusion masks and the coherence blend.

OpenCV's DIS optical flow does the estimation and ``cv2.remap`` the warping.
What OpenCV has no single call for is written here: the forward-backward
consistency check that marks occluded pixels (Sundaram et al. 2010: a pixel
whose forward flow and the backward flow at its target do not cancel is
occluded or mis-tracked) and the blend of the previous *output*, warped into
the current frame, with the current input (DeepDreamVideo's idea, restricted
to the pixels the flow can be trusted on).

Flows are computed single-threaded so that the same frames give the same
bytes on every run, resumed or not.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FlowEstimator", "blend", "consistent", "warp"]

#: Forward + backward flow may disagree by this many pixels, plus this share of the motion.
_CONSISTENCY_PIXELS = 0.5
_CONSISTENCY_SHARE = 0.05


def _cv2() -> Any:
    import cv2

    cv2.setNumThreads(1)  # deterministic and cheap next to the filter, which has the cores
    return cv2


def _grey(frame: Any) -> Any:
    """uint8 luminance of a float32 ``H x W x 3`` frame in [0, 1] (or a uint8 one)."""
    import numpy as np

    array = np.asarray(frame)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(array[:, :, :3].astype(np.float32) @ weights), 0, 255).astype(np.uint8)


class FlowEstimator:
    """Dense optical flow between consecutive source frames (OpenCV DIS, the "medium" preset)."""

    def __init__(self) -> None:
        """Create the DIS estimator (OpenCV is imported here, not at module import)."""
        cv2 = _cv2()
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def flow(self, source: Any, target: Any) -> Any:
        """float32 ``H x W x 2`` flow such that ``target[y, x] ≈ source[y + v, x + u]`` (backward warping).

        Args:
            source: The earlier frame (float32 in [0, 1] or uint8, ``H x W x 3``).
            target: The later frame, same shape.
        """
        return self._dis.calc(_grey(target), _grey(source), None)

    def flows(self, source: Any, target: Any) -> tuple[Any, Any]:
        """The flow from ``target`` back to ``source`` and the reverse one, for the consistency check."""
        backward = self.flow(source, target)
        forward = self.flow(target, source)
        return backward, forward


def warp(image: Any, flow: Any) -> Any:
    """``image`` (``H x W x C``) sampled at ``pixel + flow`` for every pixel, bilinear, edges replicated."""
    import numpy as np

    cv2 = _cv2()
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = grid_x + flow[:, :, 0]
    map_y = grid_y + flow[:, :, 1]
    warped = cv2.remap(np.ascontiguousarray(image, dtype=np.float32), map_x, map_y, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    return warped.reshape(image.shape)


def consistent(backward: Any, forward: Any) -> Any:
    """float32 ``H x W`` in {0, 1}: 1 where following ``backward`` then ``forward`` comes back (not occluded).

    Args:
        backward: Flow from the current frame into the previous one (as :meth:`FlowEstimator.flow`).
        forward: Flow from the previous frame into the current one.
    """
    import numpy as np

    there = warp(forward, backward)  # the forward flow at each pixel's source position
    round_trip = backward + there
    error = np.sqrt((round_trip ** 2).sum(axis=2))
    motion = np.sqrt((backward ** 2).sum(axis=2)) + np.sqrt((there ** 2).sum(axis=2))
    height, width = backward.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    inside = ((grid_x + backward[:, :, 0] >= 0) & (grid_x + backward[:, :, 0] <= width - 1)
              & (grid_y + backward[:, :, 1] >= 0) & (grid_y + backward[:, :, 1] <= height - 1))
    return ((error <= _CONSISTENCY_PIXELS + _CONSISTENCY_SHARE * motion) & inside).astype(np.float32)


def blend(frame: Any, previous_output: Any, backward: Any, mask: Any, coherence: float) -> Any:
    """The filter's input for ``frame``: the previous output warped into it, mixed in by ``coherence`` where trusted.

    Args:
        frame: The current source frame, float32 ``H x W x 3`` in [0, 1].
        previous_output: The previous output frame, float32 ``H x W x 3`` in [0, 1].
        backward: Flow from ``frame`` into the previous frame.
        mask: :func:`consistent`'s mask (0 where occluded: there the frame is kept as it is).
        coherence: 0 (independent frames) .. 1 (the warped output wherever the flow is trusted).

    Returns:
        float32 ``H x W x 3`` in [0, 1].
    """
    import numpy as np

    warped = warp(previous_output, backward)
    weight = (float(coherence) * mask)[:, :, None]
    return np.clip(frame * (1.0 - weight) + warped * weight, 0.0, 1.0).astype(np.float32)
