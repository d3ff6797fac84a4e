"""``explore patches``: the positions of a folder's images that most activate a channel, as a contact sheet.

Images are loaded by the host's loader, resized to a working size, grouped by
size into batches and run to the layer once; each image keeps its best
positions (neighbours within half a receptive field are suppressed), and the
``k`` best over the folder are cropped at their exact receptive field
(:mod:`.receptive`; the part outside the image shows as grey) and labelled
with their score and file name. A background thread decodes the next images
while the network runs.
"""

from __future__ import annotations

import heapq
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurofilters.plugin_host import (
    IMAGE_SUFFIXES,
    CommandContext,
    ImageIOError,
    NeurofiltersError,
    ParameterError,
    load_image,
    split_alpha,
)

from .features import work_image
from .receptive import receptive_field
from .render import BACKGROUND, grid, label_tile, resize

__all__ = ["IMAGE_SUFFIXES", "Patch", "crop_field", "find_images", "load_work_image", "patch_map", "patch_sheet", "prefetched", "PatchesResult", "patches_command", "render_patches", "top_patches"]

#: File suffixes taken from a folder.


@dataclass(frozen=True, order=True)
class Patch:
    """One highly activating position.

    Attributes:
        score: The channel's activation there.
        path: The image file.
        y: Row in the layer's output.
        x: Column in the layer's output.
    """

    score: float
    path: str
    y: int
    x: int


def find_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden entries skipped), sorted by path.

    Raises:
        ParameterError: Not a folder, or no image in it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ParameterError(f'"folder" must be an existing folder of images. Received: folder={str(folder)!r}', param="folder", value=str(folder))
    found = sorted(
        path for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
    if not found:
        raise ParameterError(
            f'"folder" holds no images ({", ".join(sorted(IMAGE_SUFFIXES))}). Received: folder={str(folder)!r}',
            param="folder", value=str(folder),
        )
    return found


def load_work_image(path: Path, size: int, min_size: int = 32, fixed: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as float32 RGB in [0, 1], resized so its longer side is ``size``.

    ``fixed``: the ``(height, width)`` of a network with a fixed input size; the image's centre is
    resized to exactly that (see :func:`~.features.work_image`).
    """
    loaded = load_image(path)
    rgb, _ = split_alpha(np.asarray(loaded.pixels, np.float32))
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return work_image(rgb, size, min_size, fixed)


def load_or_skip(
    path: Path, size: int, min_size: int, skipped: list[tuple[str, str]] | None, fixed: tuple[int, int] | None = None
) -> np.ndarray | None:
    """:func:`load_work_image`, or ``None`` for a file that does not read (its reason appended to ``skipped``).

    With ``skipped`` ``None`` the error is raised instead.
    """
    try:
        return load_work_image(path, size, min_size, fixed)
    except ImageIOError as error:
        if skipped is None:
            raise
        skipped.append((str(path), str(error)))
        return None


def report_skipped(skipped: Sequence[tuple[str, str]]) -> None:
    """Print one line per unreadable image that was skipped (like ``batch``)."""
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)


def prefetched(
    paths: Sequence[Path], size: int, min_size: int = 32, ahead: int = 32, skipped: list[tuple[str, str]] | None = None,
    fixed: tuple[int, int] | None = None,
) -> Iterator[np.ndarray | None]:
    """Working-size images of ``paths`` in order, decoded by a background thread up to ``ahead`` images early.

    Decoding and resizing (Pillow, NumPy) overlap the network's forward passes, which release the GIL.
    With ``skipped`` given, an unreadable file yields ``None`` and its reason is listed there. ``fixed``: a
    network's fixed input size, which every image is resized to (see :func:`load_work_image`).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="explore-load") as pool:
        pending: deque[Any] = deque()
        for path in paths:
            pending.append(pool.submit(load_or_skip, path, size, min_size, skipped, fixed))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _best_positions(values: np.ndarray, count: int, radius: int) -> list[tuple[float, int, int]]:
    """Up to ``count`` maxima of ``values`` (``h x w``), each at least ``radius`` cells from the ones before."""
    flat = np.argsort(-values, axis=None, kind="stable")
    chosen: list[tuple[float, int, int]] = []
    for index in flat:
        y, x = divmod(int(index), values.shape[1])
        if all(max(abs(y - cy), abs(x - cx)) > radius for _, cy, cx in chosen):
            chosen.append((float(values[y, x]), y, x))
            if len(chosen) == count:
                break
    return chosen


def top_patches(
    model: Any,
    layer: str,
    channel: int,
    paths: Sequence[Path],
    *,
    k: int = 16,
    per_image: int = 1,
    size: int = 224,
    batch_size: int = 16,
    progress: Callable[[float, str], None] | None = None,
    images: Iterable[np.ndarray] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[Patch]:
    """The ``k`` most activating positions of ``channel`` over the images, best first.

    Args:
        model: A zoo model handle.
        layer: Raw layer name (spatial).
        channel: Channel index.
        paths: Image files (also the names in the result).
        k: Positions to return.
        per_image: Most positions from one image.
        size: Longer side the images are resized to.
        batch_size: Images of equal size per forward pass.
        progress: ``progress(fraction, message)``.
        images: The images already at working size (then ``paths`` only names them).
        skipped: Where unreadable files are listed with their reason (they are skipped);
            ``None``: the first unreadable file raises.

    Returns:
        :class:`Patch` list, highest score first (ties: path, then position).
    """
    feature = model.feature_model([layer])
    heap: list[tuple[float, str, int, int]] = []
    buckets: dict[tuple[int, int], list[tuple[str, np.ndarray]]] = {}
    fields: dict[tuple[int, int], Any] = {}
    done = 0

    def flush(shape: tuple[int, int]) -> None:
        nonlocal done
        entries = buckets.pop(shape)
        batch = np.stack([image for _, image in entries])
        maps = np.asarray(feature(batch, training=False)[0][..., channel], np.float32)
        if shape not in fields:
            fields[shape] = receptive_field(model.keras_model, layer, shape)
        field = fields[shape]
        radius = max(1, field.rows.size // (2 * field.rows.jump))
        for (name, _), values in zip(entries, maps):
            for score, y, x in _best_positions(values, per_image, radius):
                item = (score, name, -y, -x)
                if len(heap) < k:
                    heapq.heappush(heap, item)
                elif item > heap[0]:
                    heapq.heapreplace(heap, item)
        done += len(entries)
        if progress is not None:
            progress(done / len(paths), f"{done}/{len(paths)} images")

    source = images if images is not None else prefetched(paths, size, model.min_size, ahead=2 * batch_size, skipped=skipped,
                                                           fixed=getattr(model, "fixed_input", None))
    for path, image in zip(paths, source):
        if image is None:  # unreadable: listed in skipped
            done += 1
            continue
        shape = image.shape[:2]
        buckets.setdefault(shape, []).append((str(path), image))
        if len(buckets[shape]) >= batch_size:
            flush(shape)
    for shape in list(buckets):
        flush(shape)
    ordered = sorted(heap, key=lambda item: (-item[0], item[1], -item[2], -item[3]))
    return [Patch(score, name, -ny, -nx) for score, name, ny, nx in ordered]


def crop_field(image: np.ndarray, box: tuple[int, int, int, int], fill: float = 0.5) -> np.ndarray:
    """The ``(top, left, bottom, right)`` box of ``image``; parts outside the image are ``fill`` grey."""
    top, left, bottom, right = box
    out = np.full((bottom - top, right - left, 3), fill, np.float32)
    height, width = image.shape[:2]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, height), min(right, width)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1, :3]
    return out


#: Pixels between a patch and its map on the sheet.
MAP_GAP = 4


def patch_map(model: Any, layer: str, channel: int, image: np.ndarray, patch: Patch, rule: str = "active") -> np.ndarray:
    """The unit's guided-backprop map at the patch's position, cropped to the patch's receptive field.

    The map is the saliency filter's (:func:`~neurofilters.filters.attribution.neuron.neuron_guided_backprop`)
    on ``image`` itself: the array the patch search saw, so the unit is the same cell. It is
    cut to the same box as the patch (outside the image: black; the unit depends on nothing
    outside its field, so nothing is lost) and normalised as the filter normalises guided
    backprop (by the 99.5th percentile, here of the field's pixels).

    Args:
        model: A zoo model handle.
        layer: Raw layer name (spatial).
        channel: Channel index.
        image: The working-size image the search ran on (``h x w x 3``).
        patch: The position.
        rule: Guided ReLU6 rule.

    Returns:
        float32 ``H x W`` in [0, 1], the receptive field's size.
    """
    from ..attribution.methods import normalise
    from ..attribution.neuron import neuron_guided_backprop

    attribution = neuron_guided_backprop(model, image, layer, channel, (patch.y, patch.x), rule=rule)
    field = receptive_field(model.keras_model, layer, image.shape[:2])
    crop = crop_field(np.repeat(attribution.map[:, :, None], 3, axis=2), field.box(patch.y, patch.x, clip=False), fill=0.0)
    return normalise(crop[:, :, 0], sparse=True)


def patch_sheet(
    model: Any,
    layer: str,
    patches: Sequence[Patch],
    *,
    size: int = 224,
    tile: int = 128,
    loader: Callable[[Path], np.ndarray] | None = None,
    channel: int | None = None,
    maps: bool = False,
) -> np.ndarray:
    """A contact sheet of the patches' receptive fields (unclipped: the padding shows grey), labelled.

    Args:
        model: A zoo model handle.
        layer: Raw layer name (spatial).
        patches: The positions, best first.
        size: Longer side the images were resized to for the search.
        tile: Side of each patch on the sheet.
        loader: ``loader(path)``: the working-size image (default :func:`load_work_image`).
        channel: The channel the patches are of (needed with ``maps``).
        maps: Put each patch's guided-backprop map (:func:`patch_map`, grey) to its right,
            under one label.

    Raises:
        ValueError: ``maps`` without ``channel``.
    """
    if maps and channel is None:
        raise ValueError("patch_sheet(maps=True) needs the channel. Received: channel=None")
    tiles = []
    for patch in patches:
        image = loader(Path(patch.path)) if loader is not None else load_work_image(
            Path(patch.path), size, model.min_size, getattr(model, "fixed_input", None))
        field = receptive_field(model.keras_model, layer, image.shape[:2])
        crop = resize(crop_field(image, field.box(patch.y, patch.x, clip=False)), tile, tile)
        if maps:
            assert channel is not None
            grey = patch_map(model, layer, channel, image, patch)
            shown = resize(np.repeat(grey[:, :, None], 3, axis=2), tile, tile)
            gap = np.empty((tile, MAP_GAP, 3), np.float32)
            gap[:] = BACKGROUND
            crop = np.concatenate([crop, gap, shown], axis=1)
        tiles.append(label_tile(crop, f"{patch.score:.2f}  {Path(patch.path).name}"))
    return grid(tiles)


#: Largest contact sheet (pixels); 100 million is 1.2 GB as float32 RGB.
MAX_SHEET_PIXELS = 100_000_000


@dataclass(frozen=True)
class PatchesResult:
    """What ``explore patches`` found and wrote.

    Attributes:
        sheet: The contact sheet written (``-o``).
        patches: The positions, best first (``score``, ``path``, ``y``, ``x``).
        layer: The layer's raw name (an alias resolved).
        channel: The channel.
        skipped: ``(path, reason)`` of each image that could not be read.
    """

    sheet: Path
    patches: tuple[Patch, ...]
    layer: str
    channel: int
    skipped: tuple[tuple[str, str], ...] = ()


def patches_command(values: Mapping[str, Any], context: CommandContext) -> PatchesResult:
    """``neurofilters explore patches MODEL LAYER CHANNEL FOLDER -o sheet.png``: the search and the sheet, nothing printed.

    Args:
        values: The validated parameters (``plugin.PATCHES_PARAMS``).
        context: The host's context: its model cache and guarded writer.

    Raises:
        ParameterError: A sheet too large, an output folder that does not exist, a channel the layer lacks.
        UsageError: The sheet would replace an input or a file neurofilters did not write.
        NeurofiltersError: No position was found.
    """
    k, tile, channel, maps = values["top"], values["tile"], values["channel"], values["maps"]
    pixels = k * tile * (2 * tile + MAP_GAP if maps else tile)
    if pixels > MAX_SHEET_PIXELS:  # bounded before anything is allocated
        raise ParameterError(
            f'The contact sheet would have {pixels:,} pixels, more than {MAX_SHEET_PIXELS:,}. '
            f'Received: top={k}, tile={tile}{", --maps" if maps else ""}; lower --top or --tile.', param="tile", value=tile,
        )
    paths = find_images(values["folder"])
    output = Path(values["output"])
    if not output.parent.is_dir():
        raise ParameterError(f'"output" must be in an existing folder. Received: output={values["output"]!r}',
                             param="output", value=values["output"])
    guard = context.writer(("the folder of images", values["folder"]), ("the model file", values["model"]))
    guard.check(output, what="contact sheet (-o)")  # before any work
    model = context.load_model(values["model"])
    layer = model.spatial_layer(values["layer"])
    channels = int(next(info.output_shape[-1] for info in model.layer_table(224) if info.name == layer))
    if channel >= channels:
        raise ParameterError(f'"channel" must be between 0 and {channels - 1} for layer {layer!r}. Received: channel={channel}', param="channel", value=channel)
    bar = context.progress_bar("explore patches")
    skipped: list[tuple[str, str]] = []
    size = values["size"]
    try:
        patches = top_patches(model, layer, channel, paths, k=k, per_image=values["per_image"], size=size,
                              batch_size=values["batch_size"], progress=bar, skipped=skipped)
    finally:
        bar.close()
    report_skipped(skipped)
    if not patches:
        raise NeurofiltersError("No position was found (are the images too small for the layer?).")
    sheet = patch_sheet(model, layer, patches, size=size, tile=tile, channel=channel, maps=maps)
    guard.save_image(output, sheet, what="contact sheet (-o)")
    return PatchesResult(output, tuple(patches), layer, channel, tuple(skipped))


def render_patches(result: PatchesResult, values: Mapping[str, Any]) -> int:
    """Print the positions, best first, and the sheet written."""
    for rank, patch in enumerate(result.patches, start=1):
        print(f"{rank:>3}. {patch.score:9.3f}  {patch.path}  (y={patch.y}, x={patch.x})")
    print(f"wrote {result.sheet}")
    return 0
