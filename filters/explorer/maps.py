"""The ``activation-maps`` filter: a layer's feature maps as a labelled grid, or one map blended over the photo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neurofilters.plugin_host import FilterContext, ParameterError

from .features import activations, network_image
from .receptive import receptive_field
from .render import colorize, grid, label_tile, resize

__all__ = ["choose_channels", "map_over_image", "normalise_maps", "parse_channel_list", "run_activation_maps"]


def shorten(text: str, limit: int = 120) -> str:
    """``text`` cut for an error message."""
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} characters)"


def parse_channel_list(text: str, count: int, *, param: str = "channels") -> list[int]:
    """``"3,17,40-43"`` -> ``[3, 17, 40, 41, 42, 43]``, each checked against ``count`` channels.

    Raises:
        ParameterError: Not integers or ranges, empty, or out of range.
    """
    chosen: list[int] = []
    problem = None
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part[1:] and not part.startswith("-"):
            low_text, high_text = part.split("-", 1)
        else:
            low_text = high_text = part
        if not (low_text.isascii() and low_text.isdigit() and high_text.isascii() and high_text.isdigit()) or max(len(low_text), len(high_text)) > 12:
            problem = f'"{param}" must be channel numbers or ranges such as "3,17,40-43". Received: {param}={shorten(str(text))!r}'
            break
        low, high = int(low_text), int(high_text)
        if low >= count or high >= count:  # checked before the range is made: 0-30000000 allocates nothing
            problem = (f'"{param}" must hold channels between 0 and {count - 1} for this layer. '
                       f'Received: {param}={shorten(str(text))!r} (out of range: {part})')
            break
        chosen.extend(range(low, high + 1))
    if problem is not None:
        raise ParameterError(problem, param=param, value=text)
    if not chosen:
        raise ParameterError(f'"{param}" must list at least one channel, e.g. "3,17". Received: {param}={shorten(str(text))!r}', param=param, value=text)
    return list(dict.fromkeys(chosen))


def choose_channels(maps: np.ndarray, select: str, count: int, listed: str) -> list[int]:
    """Channels to show: all, the ``count`` with the largest mean activation, or a list."""
    channels = maps.shape[-1]
    if select == "all":
        return list(range(channels))
    if select == "list":
        return parse_channel_list(listed, channels)
    means = maps.mean(axis=(0, 1))
    return [int(c) for c in np.argsort(-means, kind="stable")[: min(count, channels)]]


def normalise_maps(maps: np.ndarray, channels: list[int], mode: str) -> np.ndarray:
    """The chosen ``H x W`` maps scaled to [0, 1]: each by its own range, or all by the shared range."""
    chosen = maps[:, :, channels].astype(np.float64)
    if mode == "shared":
        low, high = chosen.min(), chosen.max()
        return ((chosen - low) / max(high - low, 1e-12)).astype(np.float32)
    low = chosen.min(axis=(0, 1), keepdims=True)
    high = chosen.max(axis=(0, 1), keepdims=True)
    return ((chosen - low) / np.maximum(high - low, 1e-12)).astype(np.float32)


def map_over_image(values: np.ndarray, field: Any, height: int, width: int) -> np.ndarray:
    """Resample an ``h x w`` map to ``height x width`` image pixels, each value at its receptive field's centre.

    The map is interpolated bilinearly between the centres (edges held), so a
    value lands on the pixels its position sees, including at TF "same"
    asymmetric borders.
    """
    work_h, work_w = field.input_shape
    centre_y = field.rows.start + (field.rows.size - 1) / 2.0
    centre_x = field.cols.start + (field.cols.size - 1) / 2.0
    ys = ((np.arange(height) + 0.5) * work_h / height - 0.5 - centre_y) / field.rows.jump
    xs = ((np.arange(width) + 0.5) * work_w / width - 0.5 - centre_x) / field.cols.jump
    top, bottom, wy = _linear_weights(ys, values.shape[0])
    left, right, wx = _linear_weights(xs, values.shape[1])
    rows = values[top] * (1 - wy)[:, None] + values[bottom] * wy[:, None]
    return (rows[:, left] * (1 - wx)[None, :] + rows[:, right] * wx[None, :]).astype(np.float32)


def _linear_weights(coordinates: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper neighbours and the upper weight of fractional indices (edges held)."""
    clipped = np.clip(coordinates, 0, length - 1)
    lower = np.floor(clipped).astype(np.int64)
    upper = np.minimum(lower + 1, length - 1)
    return lower, upper, (clipped - lower).astype(np.float32)


def run_activation_maps(image: np.ndarray, params: Mapping[str, Any], context: FilterContext) -> np.ndarray:
    """The ``activation-maps`` filter: ``run(image, params, context) -> image``.

    Raises:
        ParameterError: Unknown or non-spatial layer, bad channel list or channel.
    """
    context.progress(0.0, f"loading model {params['model']}")
    model = context.load_model(params["model"])
    layer = model.spatial_layer(params["layer"])
    work = network_image(image, int(params["work_size"]), model)
    context.progress(0.3, f"running {model.name} to {layer}")
    maps = activations(model, [layer], work[None])[0][0]
    context.progress(0.7, "drawing")
    channels = maps.shape[-1]
    if params["display"] == "overlay":
        channel = int(params["channel"])
        if channel < 0:
            # The map that varies most over the image (the most active one is often saturated everywhere).
            channel = int(np.argmax(maps.std(axis=(0, 1))))
        if channel >= channels:
            raise ParameterError(
                f'"channel" must be between -1 and {channels - 1} for layer {layer!r}. Received: channel={channel}',
                param="channel", value=channel,
            )
        values = normalise_maps(maps, [channel], "channel")[:, :, 0]
        field = receptive_field(model.keras_model, layer, work.shape[:2])
        height, width = image.shape[:2]
        heat = colorize(map_over_image(values, field, height, width), params["colormap"])
        opacity = float(params["opacity"])
        # Stronger activations are more opaque, so the photo shows through where the channel is silent.
        weight = opacity * np.clip(map_over_image(values, field, height, width), 0, 1)[:, :, None] ** 0.5
        result = (1 - weight) * np.asarray(image[:, :, :3], np.float32) + weight * heat
        context.report(f"channel {channel} of {layer}: mean {maps[:, :, channel].mean():.3f}, max {maps[:, :, channel].max():.3f}")
        return np.clip(result, 0, 1).astype(np.float32)
    chosen = choose_channels(maps, params["select"], int(params["count"]), params["channels"])
    scaled = normalise_maps(maps, chosen, params["normalize"])
    cell = int(params["cell_size"])
    map_h, map_w = maps.shape[:2]
    factor = cell / max(map_h, map_w)
    tile_h, tile_w = max(1, round(map_h * factor)), max(1, round(map_w * factor))
    tiles = []
    for index, channel in enumerate(chosen):
        tile = resize(colorize(scaled[:, :, index], params["colormap"]), tile_h, tile_w, nearest=True)
        if params["labels"]:
            tile = label_tile(tile, f"{channel}  {maps[:, :, channel].mean():.2f}")
        tiles.append(tile)
    sheet = grid(tiles)
    context.report(f"{len(chosen)} of {channels} channels of {layer} ({map_h}x{map_w} each)")
    return np.clip(sheet, 0, 1).astype(np.float32)
