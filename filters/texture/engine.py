"""The Gram-matrix optimiser shared by ``texture`` and ``style-transfer``: tiles, losses, L-BFGS/Adam, octaves.

The image is cut into tiles whose windows overlap by a margin, so the network sees each core with
its surroundings (one window when the image is small). One evaluation of the objective is either

* one pass, while the windows hold at most :data:`FUSED_MAX_PIXELS` together (and a quarter of the
  machine's memory): every window's features are summed into per-layer Gram matrices inside one graph, and
  autodiff gives the loss's gradient, holding every window's activations until the backward pass; or
* two passes, above that: forward only, every tile's core features are added into per-layer Gram
  sums (and the content distance is measured), giving the exact loss; then per tile the closed-form
  Gram gradient (:mod:`.gram`) is back-propagated as ``½ Σ mask · (F K) · F`` with
  ``K = 4c(G - Ĝ)/M``, plus the content term. Memory is then bounded by one tile's activations
  whatever the image size (Gatys/DeepTextures differentiate the whole image), at the price of a second
  forward pass: at 1024² on an AVX2 CPU one pass took 7.4 s where two took 13 s (style's layers).

Either way only the layers the objective weights are computed (:meth:`GramEngine._active`). With
``wrap`` the image is padded circularly first, so the statistics (and the result) wrap around.
L-BFGS with pixel bounds (:mod:`.lbfgs`; DeepTextures used SciPy's L-BFGS-B) optimises images up to
``LBFGS_MAX_PIXELS``; larger ones use Adam, whose state is two float32 images.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..gradients import CompiledNetwork
from .gram import relative_weight
from .lbfgs import minimize_box

__all__ = ["BOUNDARIES", "FUSED_MAX_PIXELS", "GramEngine", "Memo", "LBFGS_MAX_PIXELS", "Objective", "STALL_WINDOW", "optimise", "fold_padding", "fold_wrap", "stalled"]

#: Most pixels (all windows together) evaluated in one forward and backward pass: their activations are all held
#: until the backward pass. Above it, two passes over the tiles (the forward pass twice) bound the memory by one tile.
FUSED_MAX_PIXELS = 1_400_000
#: What one pass holds per window pixel beyond the two passes' peak: measured 1.7 KB for vgg16-hed's style layers and
#: content (float32, 2026-12-06: 1.93 -> 3.93 GB at 1024², four 544² windows), most of it block1's 64 channels.
FUSED_BYTES_PER_PIXEL = 2048
#: Largest image (pixels) optimised with L-BFGS; its history costs 2 x _LBFGS_HISTORY float64 copies.
LBFGS_MAX_PIXELS = 1200 * 1200
_LBFGS_HISTORY = 20


@dataclass
class Objective:
    """What an image is optimised towards.

    Attributes:
        style_targets: One target Gram matrix (``N x N``) per style layer.
        style_weights: One weight per style layer (relative errors, see :func:`relative_weight`).
        content_target: Content features of the whole image at the content layer (``h x w x N``) or ``None``.
        content_weight: Weight of the relative content distance.
        tv_weight: Weight of the mean squared neighbour difference (pixels in 0..1).
    """

    style_targets: list[np.ndarray]
    style_weights: list[float]
    content_target: np.ndarray | None = None
    content_weight: float = 0.0
    tv_weight: float = 0.0
    coefficients: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Turn the per-layer weights into coefficients of ``Σ(G - Ĝ)²``."""
        self.coefficients = [relative_weight(t, w) / (4.0 * t.shape[0] ** 2) for t, w in zip(self.style_targets, self.style_weights)]
        self._content_norm = float(np.sum(np.asarray(self.content_target, np.float64) ** 2)) if self.content_target is not None else 1.0


class Memo:
    """A small least-recently-used store of arrays (Gram targets, content features), bounded by their bytes.

    A warm worker (GIMP's preview) calls a filter again and again with the same sample or style image:
    their statistics are then computed once. Keys name everything the values depend on; values are
    kept read-only, so a caller cannot change what a later call gets.
    """

    def __init__(self, max_bytes: int = 96 * 2**20) -> None:
        """An empty store holding at most ``max_bytes`` of arrays (larger values are returned, not kept)."""
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, tuple[list[np.ndarray], int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(size for _, size in self._entries.values())

    def get(self, key: Hashable, make: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
        """The arrays stored under ``key``, made (and stored) by ``make()`` on a miss."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return list(entry[0])
        self.misses += 1
        values = [np.asarray(value) for value in make()]
        size = sum(value.nbytes for value in values)
        if size > self.max_bytes:  # a huge image's features: not kept (a warm worker would hold them for good)
            return values
        for value in values:
            value.flags.writeable = False
        self._entries[key] = (values, size)
        while self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)
        return list(values)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()


def physical_memory() -> int | None:
    """Bytes of memory the machine has (``None`` where the system does not say).

    One pass over several windows is taken only when it needs at most a quarter of it: the machine's
    total, not what is free at the moment, so that the same call gives the same bytes on the same machine.
    """
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def fingerprint(image: np.ndarray) -> tuple[str, tuple[int, ...], str]:
    """What identifies an image's pixels: a SHA-1 of its bytes, its shape and dtype."""
    array = np.ascontiguousarray(image)
    return hashlib.sha1(array.view(np.uint8).reshape(-1)).hexdigest(), tuple(array.shape), str(array.dtype)


@dataclass(frozen=True)
class _Tile:
    core: tuple[int, int, int, int]  # y0, y1, x0, x1 in canvas coordinates
    window: tuple[int, int, int, int]


def _axis_spans(length: int, offset: int, canvas: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    spans = []
    count = max(1, math.ceil(length / tile))
    size = math.ceil(length / count)
    size = math.ceil(size / 16) * 16 if count > 1 else length
    start = 0
    while start < length:
        stop = min(length, start + size)
        c0, c1 = offset + start, offset + stop
        spans.append((c0, c1, max(0, c0 - margin), min(canvas, c1 + margin)))
        start = stop
    return spans


def fold_padding(gradient: np.ndarray, margin: int, height: int, width: int, mode: str = "wrap") -> np.ndarray:
    """Sum a gradient over a canvas padded by ``margin`` (numpy ``np.pad`` ``mode``) back onto the ``height x width`` image.

    Each canvas pixel is a copy of one image pixel (its index is found by padding an index range the same
    way), so the image's gradient is the sum over its copies.
    """
    out = gradient
    for axis, length in ((0, height), (1, width)):
        index = np.pad(np.arange(length), margin, mode=mode)  # type: ignore[call-overload]
        folded = np.zeros(out.shape[:axis] + (length,) + out.shape[axis + 1 :], out.dtype)
        np.add.at(folded, (slice(None),) * axis + (index,), out)
        out = folded
    return out


def fold_wrap(gradient: np.ndarray, margin: int, height: int, width: int) -> np.ndarray:
    """Sum a gradient over a circularly padded canvas back onto the ``height x width`` image."""
    return fold_padding(gradient, margin, height, width, "wrap")


#: Boundary handling of the image: the network's own zero padding, a torus, or a mirrored surround.
BOUNDARIES = ("zero", "wrap", "reflect")


def _boundary(wrap: bool | str) -> str:
    if not isinstance(wrap, str):
        return "wrap" if wrap else "zero"
    if wrap not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}. Received: boundary={wrap!r}")
    return str(wrap)


class GramEngine:
    """Loss and gradient of an :class:`Objective` for images of any size, in tiles.

    Args:
        network: The compiled feature model; its outputs are the style layers, then
            the content layer (when ``has_content``).
        n_style: Number of style layers.
        has_content: Whether the last output is a content layer.
        tile: Largest tile core side.
        margin: Context around each core (a multiple of the deepest stride).
        strides: Each output's stride relative to the input.
    """

    def __init__(self, network: CompiledNetwork, n_style: int, has_content: bool, tile: int, margin: int, strides: Sequence[int]) -> None:
        """Keep the network and the tiling geometry."""
        self.network = network
        self.n_style = n_style
        self.has_content = has_content
        self.tile = max(16, int(tile) // 16 * 16)
        self.margin = int(margin)
        self.strides = list(strides)
        self.evaluations = 0
        self.evaluated_pixels = 0
        #: Mirrored surround of the ``reflect`` boundary: the deepest stride (the zero padding's effect fades
        #: with distance, and the surround costs pixels: 1.13x at 512², 2.25x at 64²). An objective that
        #: reads only shallow layers gets a narrower one (:meth:`surround`).
        self.reflect_margin = max(self.strides) if self.strides else self.margin
        #: Evaluate a one-window image in one pass (False: the two tiled passes, for comparisons).
        self.fuse_single_window = True
        #: Evaluate several windows in one pass too while they hold at most this many pixels together
        #: (0: the two tiled passes); see :data:`FUSED_MAX_PIXELS`.
        self.fused_max_pixels = FUSED_MAX_PIXELS
        #: Where :meth:`gram_targets` and :meth:`content_features` keep their results (``None``: nowhere);
        #: :func:`.synthesis.build_engine` gives engines on one network the network's store.
        self.memo: Memo | None = None

    # ------------------------------------------------------------------ geometry
    def _fits(self, tiles: Sequence[_Tile]) -> bool:
        """Whether ``tiles`` are evaluated in one pass: one window, or windows of at most :attr:`fused_max_pixels`
        together that need at most a quarter of the machine's memory (never when :attr:`fuse_single_window` is off)."""
        if not self.fuse_single_window:
            return False
        if len(tiles) == 1:
            return True
        pixels = sum((tile.window[1] - tile.window[0]) * (tile.window[3] - tile.window[2]) for tile in tiles)
        if pixels > self.fused_max_pixels:
            return False
        total = physical_memory()
        return total is None or pixels * FUSED_BYTES_PER_PIXEL <= total // 4

    def surround(self, objective: Objective | None) -> int:
        """The ``reflect`` boundary's surround for ``objective``: :attr:`reflect_margin`, or twice the stride of the
        deepest layer it reads when that is less.

        VGG's layers up to ``block2_pool`` (stride 4) see 6 px beyond their cell on either side, so 8 px of mirror
        give them exactly the features they get with 16 (no zero reaches them): at 512² the finest octave, which
        matches only those layers, then evaluates 528² instead of 544² pixels (-6 %).
        """
        if objective is None or not self.strides:
            return self.reflect_margin
        active, use_content = self._active(objective)
        read = [self.strides[layer] for layer in active] + ([self.strides[-1]] if use_content else [])
        return min(self.reflect_margin, 2 * max(read)) if read else self.reflect_margin

    def _tiles(self, height: int, width: int, wrap: bool | str, surround: int | None = None) -> tuple[list[_Tile], int]:
        boundary = _boundary(wrap)
        reflect = self.reflect_margin if surround is None else surround
        pad = self.margin if boundary == "wrap" else reflect if boundary == "reflect" else 0
        rows = _axis_spans(height, pad, height + 2 * pad, self.tile, self.margin)
        cols = _axis_spans(width, pad, width + 2 * pad, self.tile, self.margin)
        if not pad and len(rows) == 1 and len(cols) == 1:
            return [_Tile((0, height, 0, width), (0, height, 0, width))], 0
        return [_Tile((r[0], r[1], c[0], c[1]), (r[2], r[3], c[2], c[3])) for r in rows for c in cols], pad

    def _crop(self, feature: np.ndarray, tile: _Tile, stride: int) -> tuple[slice, slice]:
        (cy0, cy1, cx0, cx1), (wy0, _, wx0, _) = tile.core, tile.window
        y0, x0 = (cy0 - wy0) // stride, (cx0 - wx0) // stride
        y1 = min(feature.shape[0], y0 + math.ceil((cy1 - cy0) / stride))
        x1 = min(feature.shape[1], x0 + math.ceil((cx1 - cx0) / stride))
        return slice(y0, y1), slice(x0, x1)

    def _canvas(self, image: np.ndarray, pad: int, wrap: bool | str = True) -> np.ndarray:
        if not pad:
            return image
        return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode=_boundary(wrap))  # type: ignore[call-overload]

    # ------------------------------------------------------------------ statistics
    def gram_targets(self, image: np.ndarray, wrap: bool | str = False) -> list[np.ndarray]:
        """The style layers' Gram matrices of ``image`` (float64 ``N x N``), accumulated over tiles.

        ``wrap``: ``False``/``"zero"`` (the network's zero padding), ``True``/``"wrap"`` or ``"reflect"``
        (the image is padded so by the tile margin, and only its own positions are counted).
        """
        def compute() -> list[np.ndarray]:
            sums, count, _ = self._forward_stats(image, wrap, None)
            return [s / max(m, 1) for s, m in zip(sums, count)]

        if self.memo is None:
            return compute()
        key = ("gram", _boundary(wrap), self.n_style, self.has_content, self.tile, self.margin, self.reflect_margin, fingerprint(image))
        return self.memo.get(key, compute)

    def content_features(self, image: np.ndarray) -> np.ndarray:
        """The content layer's features of the whole ``image`` (assembled from tiles)."""
        if self.memo is None:
            return self._content_features(image)
        key = ("content", self.n_style, self.has_content, self.tile, self.margin, fingerprint(image))
        return self.memo.get(key, lambda: [self._content_features(image)])[0]

    def _content_features(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        tiles, pad = self._tiles(height, width, False)
        stride = self.strides[-1]
        out: np.ndarray | None = None
        for tile in tiles:
            window = image[tile.window[0] : tile.window[1], tile.window[2] : tile.window[3]]
            feature = self.network.forward(window)[-1]
            if out is None:
                out = np.zeros((math.ceil(height / stride), math.ceil(width / stride), feature.shape[-1]), np.float32)
            ys, xs = self._crop(feature, tile, stride)
            y0, x0 = tile.core[0] // stride, tile.core[2] // stride
            block = feature[ys, xs]
            out[y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]] = block
        assert out is not None
        return out

    def _stats_map(self, active: Sequence[int], use_content: bool) -> Callable[[Sequence[Any], Sequence[Any]], Any]:
        """Masked Gram sums of the ``active`` style layers (and the content distance when ``use_content``)."""
        from keras import ops

        def stats(outputs: Sequence[Any], extras: Sequence[Any]) -> list[Any]:
            out = []
            for index, layer in enumerate(active):
                feature = outputs[layer]
                flat = ops.reshape(feature, (-1, ops.shape(feature)[-1]))
                out.append(ops.matmul(ops.transpose(flat * ops.reshape(extras[index], (-1, 1))), flat))
            if use_content:
                out.append(ops.sum(extras[len(active)][:, :, None] * ops.square(outputs[-1] - extras[len(active) + 1])))
            return out

        return stats

    def _masks(self, window_shape: tuple[int, int], tile: _Tile) -> list[np.ndarray]:
        masks = []
        for shape, stride in zip(self._feature_shapes(window_shape), self.strides):
            mask = np.zeros(shape, np.float32)
            mask[self._crop(np.empty(shape), tile, stride)] = 1.0
            masks.append(mask)
        return masks

    def _content_extras(self, objective: Objective | None, tile: _Tile, pad: int, mask: np.ndarray) -> list[np.ndarray]:
        """The content mask and target for one window (a zero mask when there is no content target)."""
        channels = objective.content_target.shape[-1] if objective is not None and objective.content_target is not None else 1
        target = np.zeros(mask.shape + (channels,), np.float32)
        if objective is None or objective.content_target is None:
            return [np.zeros_like(mask), target]
        ys, xs = self._crop(np.empty(mask.shape), tile, self.strides[-1])
        block = self._content_block(objective, tile, pad, (ys.stop - ys.start, xs.stop - xs.start))
        target[ys.start : ys.start + block.shape[0], xs.start : xs.start + block.shape[1]] = block
        return [mask, target]

    def _active(self, objective: Objective | None) -> tuple[tuple[int, ...], bool]:
        """The style layers ``objective`` weights and whether it reads the content layer (every layer for ``None``).

        The tiled passes compute only these: TensorFlow and JAX prune the layers deeper than the deepest one
        read, so the finest texture octave (three shallow layers) costs about a third of a full evaluation.
        """
        if objective is None:
            return tuple(range(self.n_style)), False
        active = tuple(index for index in range(self.n_style) if objective.coefficients[index] != 0.0)
        return active, self.has_content and objective.content_target is not None and objective.content_weight > 0

    def _forward_stats(
        self, image: np.ndarray, wrap: bool | str, objective: Objective | None, surround: int | None = None
    ) -> tuple[list[np.ndarray], list[int], float]:
        """Gram sums and position counts of the style layers :meth:`_active` names (in their order), and the content distance."""
        height, width = image.shape[:2]
        tiles, pad = self._tiles(height, width, wrap, surround)
        canvas = self._canvas(image, pad, wrap)
        active, use_content = self._active(objective)
        sums: list[np.ndarray] = []
        counts = [0] * len(active)
        content = 0.0
        stats = self._stats_map(active, use_content)
        for tile in tiles:
            window = canvas[tile.window[0] : tile.window[1], tile.window[2] : tile.window[3]]
            masks = self._masks(window.shape[:2], tile)
            extras = [masks[layer] for layer in active]
            if use_content:
                extras += self._content_extras(objective, tile, pad, masks[-1])
            values = self.network.forward_map(("stats", active, use_content), stats, window, extras)
            for index, layer in enumerate(active):
                product = np.asarray(values[index], np.float64)
                if len(sums) <= index:
                    sums.append(product)
                else:
                    sums[index] += product
                counts[index] += int(masks[layer].sum())
            if use_content:
                content += float(values[-1])
        return sums, counts, content

    def _content_block(self, objective: Objective, tile: _Tile, pad: int, shape: tuple[int, ...]) -> np.ndarray:
        stride = self.strides[-1]
        y0, x0 = (tile.core[0] - pad) // stride, (tile.core[2] - pad) // stride
        assert objective.content_target is not None
        return objective.content_target[y0 : y0 + shape[0], x0 : x0 + shape[1]]

    # ------------------------------------------------------------------ objective
    def _backward_loss(self, active: Sequence[int], use_content: bool) -> Callable[[Sequence[Any], Sequence[Any]], Any]:
        """``½ Σ mask · (F K) · F`` over the ``active`` style layers, plus the masked content distance when ``use_content``."""
        from keras import ops

        n_active = len(active)

        def loss(outputs: Sequence[Any], extras: Sequence[Any]) -> Any:
            total = 0.0
            for index, layer in enumerate(active):
                feature = outputs[layer]
                mask, kernel = extras[2 * index], extras[2 * index + 1]
                flat = ops.reshape(feature, (-1, ops.shape(feature)[-1]))
                total = total + 0.5 * ops.sum(ops.reshape(mask, (-1, 1)) * ops.matmul(flat, kernel) * flat)
            if use_content:
                mask, target, coefficient = extras[2 * n_active], extras[2 * n_active + 1], extras[2 * n_active + 2]
                total = total + coefficient * ops.sum(mask[:, :, None] * ops.square(outputs[-1] - target))
            return total

        return loss

    def _fused_loss(self, active: Sequence[int], use_content: bool, n_windows: int) -> Callable[[Sequence[Any], Sequence[Any]], Any]:
        """The windows' Gram matrices (summed over them), the loss and (by autodiff) its gradient in one pass.

        Only the ``active`` style layers (and the content layer when ``use_content``) are read, so
        layers deeper than the deepest one read are not computed at all: a step on the shallow
        layers costs a fraction. The extras are, per window, one mask per active layer (then the
        content mask and target), followed by each active layer's target, ``1 / count`` and
        coefficient, and the content coefficient.
        """
        from keras import ops

        per_window = len(active) + (2 if use_content else 0)

        def loss(outputs: Sequence[Any], extras: Sequence[Any]) -> tuple[Any, Any]:
            shared = extras[n_windows * per_window :]
            style = 0.0
            for index, layer in enumerate(active):
                gram = None
                for window in range(n_windows):
                    mask = extras[window * per_window + index]
                    feature = outputs[window][layer]
                    flat = ops.cast(ops.reshape(feature, (-1, ops.shape(feature)[-1])), "float32")
                    part = ops.matmul(ops.transpose(flat * ops.reshape(mask, (-1, 1))), flat)
                    gram = part if gram is None else gram + part
                target, scale, coefficient = shared[3 * index : 3 * index + 3]
                style = style + coefficient * ops.sum(ops.square(gram * scale - target))
            content = 0.0 * style
            if use_content:
                coefficient = shared[3 * len(active)]
                for window in range(n_windows):
                    mask, target = extras[window * per_window + len(active)], extras[window * per_window + len(active) + 1]
                    content = content + coefficient * ops.sum(mask[:, :, None] * ops.square(ops.cast(outputs[window][-1], "float32") - target))
            return style + content, ops.stack([style, content])

        return loss

    def _fused(self, image: np.ndarray, objective: Objective, wrap: bool | str, tiles: Sequence[_Tile], pad: int) -> tuple[float, np.ndarray, float, float]:
        """:meth:`loss_and_gradient` in one forward and backward pass over every window (see :attr:`fused_max_pixels`)."""
        canvas = self._canvas(image, pad, wrap)
        active, use_content = self._active(objective)
        windows: list[np.ndarray] = []
        extras: list[np.ndarray] = []
        counts = [0.0] * len(active)
        for tile in tiles:
            wy0, wy1, wx0, wx1 = tile.window
            windows.append(canvas[wy0:wy1, wx0:wx1])
            masks = self._masks(windows[-1].shape[:2], tile)
            for index, layer in enumerate(active):
                extras.append(masks[layer])
                counts[index] += float(masks[layer].sum())
            if use_content:
                extras += self._content_extras(objective, tile, pad, masks[-1])
        for index, layer in enumerate(active):
            extras += [objective.style_targets[layer], np.float32(1.0 / max(counts[index], 1.0)), np.float32(objective.coefficients[layer])]
        if use_content:
            extras.append(np.float32(objective.content_weight / objective._content_norm))
        loss_fn = self._fused_loss(active, use_content, len(windows))
        loss, gradients, parts = self.network.windows_value_grad_aux(("fused", active, use_content), loss_fn, windows, extras)
        gradient = np.zeros(canvas.shape, np.float32)
        for tile, window_gradient in zip(tiles, gradients):
            wy0, wy1, wx0, wx1 = tile.window
            gradient[wy0:wy1, wx0:wx1] += window_gradient
        if pad:
            gradient = fold_padding(gradient, pad, image.shape[0], image.shape[1], _boundary(wrap))
        return loss, gradient, float(parts[0]), float(parts[1])

    def loss_and_gradient(self, image: np.ndarray, objective: Objective, wrap: bool | str = False) -> tuple[float, np.ndarray, dict[str, float]]:
        """The objective's value, its gradient with respect to ``image`` and the parts of the loss.

        Windows that hold at most :attr:`fused_max_pixels` together (and a quarter of the machine's memory) are
        evaluated in one forward and backward pass (Gram matrices inside the graph, autodiff); more in
        the two passes over tiles described in the module's docstring.

        Args:
            image: float32 ``(H, W, 3)`` in [0, 1].
            objective: Targets and weights.
            wrap: ``False``/``"zero"``: the network's zero padding at the borders; ``True``/``"wrap"``:
                circular statistics (the image is treated as a torus); ``"reflect"``: the network sees
                a mirrored surround (no border effects, not tileable).

        Returns:
            ``(loss, gradient, parts)``: ``parts`` has ``style``, ``content`` and ``tv``.
        """
        self.evaluations += 1
        self.evaluated_pixels += image.shape[0] * image.shape[1]
        height, width = image.shape[:2]
        boundary = _boundary(wrap)
        surround = self.surround(objective)
        tiles, pad = self._tiles(height, width, wrap, surround)
        tv_loss, tv_gradient = total_variation(image, objective.tv_weight, boundary == "wrap")
        if self._fits(tiles):
            loss, gradient, style_loss, content_loss = self._fused(image, objective, wrap, tiles, pad)
            total = loss + tv_loss
            return total, (gradient + tv_gradient).astype(np.float32), {"style": style_loss, "content": content_loss, "tv": tv_loss}
        sums, counts, content_sq = self._forward_stats(image, wrap, objective, surround)
        active, use_content = self._active(objective)
        style_loss = 0.0
        kernels = []
        for index, layer in enumerate(active):
            difference = sums[index] / counts[index] - objective.style_targets[layer]
            coefficient = objective.coefficients[layer]
            style_loss += coefficient * float(np.sum(difference**2))
            kernels.append((4.0 * coefficient * difference / counts[index]).astype(np.float32))
        content_coefficient = objective.content_weight / objective._content_norm if use_content else 0.0
        content_loss = content_coefficient * content_sq
        canvas = self._canvas(image, pad, wrap)
        gradient = np.zeros(canvas.shape, np.float32)
        loss_fn = self._backward_loss(active, use_content)
        for tile in tiles:
            wy0, wy1, wx0, wx1 = tile.window
            window = canvas[wy0:wy1, wx0:wx1]
            masks = self._masks(window.shape[:2], tile)
            extras: list[np.ndarray] = []
            for index, layer in enumerate(active):
                extras += [masks[layer], kernels[index]]
            if use_content:
                extras += [*self._content_extras(objective, tile, pad, masks[-1]), np.float32(content_coefficient)]
            _, tile_gradient = self.network.value_and_grad(("backward", active, use_content), loss_fn, window, extras)
            gradient[wy0:wy1, wx0:wx1] += tile_gradient
        if pad:
            gradient = fold_padding(gradient, pad, height, width, boundary)
        gradient = gradient + tv_gradient
        total = style_loss + content_loss + tv_loss
        return total, gradient.astype(np.float32), {"style": style_loss, "content": content_loss, "tv": tv_loss}

    def _feature_shapes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        return [(math.ceil(size[0] / s), math.ceil(size[1] / s)) for s in self.strides]


def total_variation(image: np.ndarray, weight: float, wrap: bool) -> tuple[float, np.ndarray]:
    """``weight · mean over pixels of (Δx² + Δy²)`` and its gradient (neighbours wrap around when ``wrap``)."""
    if weight <= 0:
        return 0.0, np.zeros_like(image)
    pixels = image.shape[0] * image.shape[1]
    gradient = np.zeros_like(image, dtype=np.float64)
    loss = 0.0
    for axis in (0, 1):
        if wrap:
            diff = np.roll(image, -1, axis=axis).astype(np.float64) - image
            loss += float(np.sum(diff**2))
            gradient += -2 * diff + 2 * np.roll(diff, 1, axis=axis)
        else:
            diff = np.diff(image.astype(np.float64), axis=axis)
            loss += float(np.sum(diff**2))
            pad_after = [(0, 0)] * 3
            pad_after[axis] = (0, 1)
            pad_before = [(0, 0)] * 3
            pad_before[axis] = (1, 0)
            gradient += -2 * np.pad(diff, pad_after) + 2 * np.pad(diff, pad_before)
    return weight * loss / pixels, (weight * gradient / pixels).astype(np.float32)


#: Iterations over which :func:`stalled` measures the fall of the loss.
STALL_WINDOW = 5


def stalled(history: Sequence[float], stall: float) -> bool:
    """Whether the loss fell by less than the fraction ``stall`` over the last :data:`STALL_WINDOW` iterations."""
    if stall <= 0 or len(history) <= STALL_WINDOW:
        return False
    before, now = history[-1 - STALL_WINDOW], history[-1]
    return before - now < stall * abs(before)


def optimise(
    evaluate: Callable[[np.ndarray], tuple[float, np.ndarray]],
    start: np.ndarray,
    steps: int,
    *,
    progress: Callable[[int, float], None] | None = None,
    method: str = "auto",
    learning_rate: float = 0.02,
    stall: float = 0.0,
) -> tuple[np.ndarray, list[float]]:
    """Minimise ``evaluate`` over images in [0, 1].

    Args:
        evaluate: ``image -> (loss, gradient)``.
        start: The first image, float32 ``(H, W, 3)``.
        steps: Iterations (L-BFGS may evaluate a few more times when it shortens a step).
        progress: Called with ``(iteration, loss)`` after each iteration.
        method: ``"lbfgs"``, ``"adam"`` or ``"auto"`` (L-BFGS up to :data:`LBFGS_MAX_PIXELS`).
        learning_rate: Adam's step in pixel units.
        stall: Stop once the best loss fell by less than this fraction over the last
            :data:`STALL_WINDOW` iterations (0: run all ``steps``).

    Returns:
        The best image found and the loss after each iteration.
    """
    shape = start.shape
    if method == "auto":
        method = "lbfgs" if shape[0] * shape[1] <= LBFGS_MAX_PIXELS else "adam"
    history: list[float] = []
    if method == "lbfgs":
        def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
            return evaluate(flat.reshape(shape).astype(np.float32))

        def callback(_: int, loss: float) -> bool:
            history.append(loss)
            if progress is not None:
                progress(len(history), loss)
            return stalled(history, stall)

        result = minimize_box(fun, start, max_iterations=int(steps), max_evaluations=int(steps * 1.5) + 5, history=_LBFGS_HISTORY, callback=callback)
        return result.x.reshape(shape).astype(np.float32), history
    image = start.astype(np.float32).copy()
    first = np.zeros_like(image)
    second = np.zeros_like(image)
    beta1, beta2 = 0.9, 0.999
    best_image, best_loss = image.copy(), math.inf
    for step in range(1, int(steps) + 1):
        loss, gradient = evaluate(image)
        if loss < best_loss:
            best_loss, best_image = loss, image.copy()
        first = beta1 * first + (1 - beta1) * gradient
        second = beta2 * second + (1 - beta2) * gradient * gradient
        rate = learning_rate * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        image = np.clip(image - rate * first / (np.sqrt(second) + 1e-12), 0.0, 1.0).astype(np.float32)
        history.append(float(min(best_loss, loss)))
        if progress is not None:
            progress(step, history[-1])
        if stalled(history, stall):
            break
    loss, _ = evaluate(image)
    if loss < best_loss:
        best_image = image
    return best_image, history


def elapsed(since: float) -> float:
    """Seconds since ``since`` (``time.perf_counter``)."""
    return time.perf_counter() - since
