"""``neurofilters atlas MODEL -o DIR``: a static, self-contained HTML site about a network.

``DIR/index.html`` (no server, no network, no script) holds the layer table
(name, type, activation shape, learnables: the ``analyzeNetwork`` columns),
and per chosen layer one card per channel: its feature visualisation (the
shared room's :func:`neurofilters.filters.visualization.visualize.visualize`, as
``hallucinate`` uses it, raising the channel's mean) and, given ``--images``, its top-activating
patches (exact receptive fields). Every picture is a PNG beside the page,
written atomically; a rerun with the same settings skips the pictures already
there (resumable), and each channel's seed is derived from the run's seed and
the layer and channel, so the same settings give the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurofilters.plugin_host import (
    CommandContext,
    ParameterError,
    UsageError,
    WriteGuard,
)

from ..zoo import work_shape
from .patches import Patch, crop_field, find_images, load_or_skip, load_work_image, patch_map, report_skipped
from .receptive import receptive_field
from .render import resize

__all__ = ["AtlasResult", "atlas_command", "channel_seed", "default_layers", "render_atlas", "write_atlas"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;background:#fafafa;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
th{background:#eee}tr.chosen{background:#fff3c4}.num{text-align:right}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #ddd;padding:6px;width:min-content}
.card h3{margin:0 0 4px;font-size:13px}.card img.vis{display:block}
.patches{display:grid;grid-template-columns:repeat(3,1fr);gap:2px;margin-top:4px}.patches img{width:100%;height:auto}.patches.maps{grid-template-columns:repeat(4,1fr)}
summary{cursor:pointer;font-weight:bold;margin:1em 0}
.note{color:#666;font-size:13px}
"""


def channel_seed(seed: int, layer: str, channel: int) -> int:
    """The seed of one channel's visualisation: from the run's seed, the layer's name and the channel."""
    digest = hashlib.sha256(f"{seed}\0{layer}\0{channel}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def default_layers(model: Any) -> list[str]:
    """Three layers from shallow to deep among the model's dream targets (else its spatial layers)."""
    table = model.layer_table(224)
    candidates = [info.name for info in table if info.dream_target] or [info.name for info in table if len(info.output_shape) == 4]
    if len(candidates) <= 3:
        return candidates
    return [candidates[0], candidates[len(candidates) // 2], candidates[-1]]


def _fixed_input_recipe(recipe: Any, fixed: tuple[int, int] | None) -> Any:
    """``recipe`` with its views made to fit a network whose input is fixed to ``fixed`` (``(height, width)``).

    The padding and the shifts shrink with the input (at most a quarter and an eighth of its shorter
    side), so that a canvas remains inside the padded view. ``recipe`` itself for ``fixed=None``.
    """
    if fixed is None:
        return recipe
    shorter = min(fixed)
    transforms = recipe.transforms
    pad = min(transforms.pad, shorter // 4)
    return dataclasses.replace(
        recipe, transforms=dataclasses.replace(transforms, pad=pad, jitter=min(transforms.jitter, max(1, shorter // 8)))
    )


_UNFINISHED_PAGE = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{model} atlas (unfinished)</title></head>'
    "<body><h1>Atlas of {model}: not finished</h1><p>This atlas is being written, or its run was stopped. "
    "Run the same <code>neurofilters atlas</code> command again to finish it: the pictures made so far are kept."
    "</p></body></html>\n"
)


def recorded_atlas(output: Path) -> dict[str, Any] | None:
    """The settings of the atlas ``output`` holds (its ``atlas.json``), or ``None`` when it holds none."""
    try:
        data = json.loads((output / "atlas.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and {"model", "layers", "channels"} <= set(data) else None


def _top_patches_per_channel(
    model: Any, layers: Sequence[str], channels: int, paths: Sequence[Path], size: int, count: int,
    progress: Callable[[float, str], None],
    skipped: list[tuple[str, str]] | None = None,
) -> dict[tuple[str, int], list[Patch]]:
    """For each (layer, channel), the ``count`` images with the highest maximum activation (one position each).

    Unreadable images are skipped and listed in ``skipped`` (with their reason), as ``batch`` does.
    """
    feature = model.feature_model(list(layers))
    best: dict[tuple[str, int], list[Patch]] = {(layer, c): [] for layer in layers for c in range(channels)}
    for done, path in enumerate(paths, start=1):
        image = load_or_skip(path, size, model.min_size, skipped if skipped is not None else [], getattr(model, "fixed_input", None))
        if image is None:
            progress(done / len(paths), f"patches: {done}/{len(paths)} images")
            continue
        outputs = feature(image[None], training=False)
        for layer, output in zip(layers, outputs):
            maps = np.asarray(output, np.float32)[0]
            for c in range(min(channels, maps.shape[-1])):
                flat = int(np.argmax(maps[:, :, c]))
                y, x = divmod(flat, maps.shape[1])
                entry = best[(layer, c)]
                entry.append(Patch(float(maps[y, x, c]), str(path), y, x))
                entry.sort(key=lambda p: (-p.score, p.path))
                del entry[count:]
        progress(done / len(paths), f"patches: {done}/{len(paths)} images")
    return best


def write_atlas(
    model: Any,
    output: Path,
    *,
    layers: Sequence[str],
    channels: int,
    steps: int,
    size: int,
    seed: int,
    images: Sequence[Path] = (),
    patches: int = 6,
    work_size: int = 224,
    progress: Callable[[float, str], None] | None = None,
    guard: WriteGuard | None = None,
    maps: bool = False,
) -> Path:
    """Write the atlas into ``output`` and return ``index.html``'s path (see the module docstring).

    Every page and picture goes through ``guard`` (the host's guarded writer):
    never over an image of ``images``, and never over a file of the folder that
    neurofilters did not write (a user's own ``index.html``), checked before any work.

    A network with a fixed input size (a ``.keras`` built on ``Input(shape=(64, 64, 3))``) sees
    everything at that size: each channel is visualised at it (then shown ``size`` pixels on its
    longer side) and the centre of each image of ``images`` is resized to it.

    ``maps``: beside each patch, the unit's guided-backprop map at its position
    (:func:`~.patches.patch_map`: on the same working-size image, cropped to the
    same field); one backward pass per patch, so off by default.
    """
    from ..visualization.objectives import Objective
    from ..visualization.visualize import RECIPES, visualize
    from ..zoo.commands import head_layer_infos

    report = progress or (lambda fraction, message: None)
    if guard is None:
        guard = WriteGuard([("an image of --images", path) for path in images])
    guard.mkdir(output, what="atlas folder")
    settings = {"model": model.name, "layers": list(layers), "channels": channels, "steps": steps, "size": size,
                "seed": seed, "images": [str(p) for p in images], "patches": patches, "work_size": work_size}
    if maps:  # only when asked: an atlas written before the option resumes with its settings unchanged
        settings["maps"] = True
    state = output / "atlas.json"
    recorded = recorded_atlas(output)
    if recorded is not None and recorded != settings:
        raise UsageError(
            f"{output} holds an atlas made with other settings ({state}); choose a new folder or delete it. "
            f"Received: {settings}"
        )
    if recorded is None:  # a new atlas: no file of the folder is replaced unless neurofilters wrote it (or --overwrite)
        guard.check_all([("atlas settings", state), ("atlas page", output / "index.html")])
    else:  # resuming an atlas of the same settings (also a copied one): its pages are its own; inputs stay protected
        guard.overwrite = True
    guard.write_text(state, json.dumps(settings, indent=1), what="atlas settings")
    if not (output / "index.html").is_file():  # a site is never without its page, even while written or if stopped
        guard.write_text(output / "index.html", _UNFINISHED_PAGE.format(model=html.escape(model.name)), what="atlas page")
    table = model.layer_table(224)
    fixed = getattr(model, "fixed_input", None)
    recipe = _fixed_input_recipe(RECIPES["robust"], fixed)
    # the canvas each channel is optimised on: its padded views are exactly what a fixed-size network takes
    canvas = (fixed[0] - 2 * recipe.transforms.pad, fixed[1] - 2 * recipe.transforms.pad) if fixed else (size, size)
    shown = work_shape(*canvas, size, 1)  # the picture written: ``size`` pixels on its longer side
    shapes = {info.name: info.output_shape for info in table}
    counts = {layer: min(channels, int(shapes[layer][-1])) for layer in layers}
    total = sum(counts.values())
    done = 0
    for layer in layers:
        folder = output / layer
        guard.mkdir(folder, what="atlas folder")
        for channel in range(counts[layer]):
            target = folder / f"vis-{channel:04d}.png"
            if not target.is_file():
                objective = Objective(layer, "channel", channel, f"channel {channel} of {layer}")
                share = 0.9 if images else 1.0

                def step_report(step: int, value: float, _done: int = done, _channel: int = channel, _layer: str = layer) -> None:
                    report(share * (_done + step / steps) / total, f"{_layer} channel {_channel}: step {step}/{steps}")

                picture = visualize(
                    model, objective, height=canvas[0], width=canvas[1], steps=steps, recipe=recipe,
                    rng=np.random.default_rng(channel_seed(seed, layer, channel)), progress=step_report,
                )
                guard.save_image(target, resize(picture, *shown), what="atlas picture")
            done += 1
            report(0.9 * done / total if images else done / total, f"{layer} channel {channel}")
    found: dict[tuple[str, int], list[Patch]] = {}
    skipped: list[tuple[str, str]] = []
    if images:
        found = _top_patches_per_channel(
            model, layers, channels, images, work_size, patches,
            lambda fraction, message: report(0.9 + 0.1 * fraction, message), skipped,
        )
        report_skipped(skipped)
        for (layer, channel), chosen in found.items():
            for rank, patch in enumerate(chosen):
                target = output / layer / f"patch-{channel:04d}-{rank:02d}.png"
                if not target.is_file():
                    image = load_work_image(Path(patch.path), work_size, model.min_size, fixed)
                    field = receptive_field(model.keras_model, layer, image.shape[:2])
                    guard.save_image(target, resize(crop_field(image, field.box(patch.y, patch.x, clip=False)), 96, 96),
                                     what="atlas picture")
                beside = output / layer / f"map-{channel:04d}-{rank:02d}.png"
                if maps and not beside.is_file():
                    image = load_work_image(Path(patch.path), work_size, model.min_size, fixed)
                    grey = patch_map(model, layer, channel, image, patch)
                    guard.save_image(beside, resize(np.repeat(grey[:, :, None], 3, axis=2), 96, 96), what="atlas picture")
    index = output / "index.html"
    rows = [*table, *head_layer_infos(model)]  # a separate fully connected head (VGG's fc1, fc2, predictions) is listed too
    guard.write_text(index, _page(model, rows, layers, counts, found, len(images), fixed or (224, 224), maps=maps), what="atlas page")
    report(1.0, f"wrote {index}")
    return index


def _page(model: Any, table: Sequence[Any], layers: Sequence[str], counts: dict[str, int],
          found: dict[tuple[str, int], list[Patch]], image_count: int, table_input: tuple[int, int] = (224, 224),
          *, maps: bool = False) -> str:
    """The HTML of ``index.html``."""
    e = html.escape
    rows = []
    for info in table:
        shape = " x ".join("?" if d is None else str(d) for d in info.output_shape[1:])
        link = f'<a href="#{e(info.name)}">{e(info.name)}</a>' if info.name in layers else e(info.name)
        chosen = ' class="chosen"' if info.name in layers else ""
        rows.append(f'<tr{chosen}><td>{link}</td><td>{e(info.kind)}</td><td>{shape}</td><td class="num">{info.params:,}</td></tr>')
    learnables = sum(info.own_params for info in table)  # each weight once: count_params() of the network (and its head)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(model.name)} atlas</title><style>{_STYLE}</style></head><body>",
        f"<h1>Atlas of {e(model.name)}</h1>",
        f'<p class="note">{e(model.description)} Input: {e(model.preprocessing)}. {len(table)} layers, {learnables:,} learnables.</p>',
        "<p>Visualised layers: " + ", ".join(f'<a href="#{e(layer)}">{e(layer)}</a>' for layer in layers) + "</p>",
        f"<details><summary>Layer table ({len(table)} layers)</summary>",
        f'<p class="note">Activation shapes for a {table_input[0]} x {table_input[1]} input (height x width x channels).</p>',
        "<table><thead><tr><th>name</th><th>type</th><th>activation shape</th><th>learnables</th></tr></thead><tbody>",
        *rows, "</tbody></table></details>",
    ]
    for layer in layers:
        parts.append(f'<h2 id="{e(layer)}">{e(layer)}</h2>')
        note = "Each card: what raises the channel most (a feature visualisation)"
        note += f", then the patches of the {image_count} images that activate it most (exact receptive fields; the score and file name show on hovering)" if found else ""
        note += ", each beside the unit's guided-backprop map there." if found and maps else "." 
        parts.append(f'<p class="note">{note}</p><div class="cards">')
        for channel in range(counts[layer]):
            card = [f'<div class="card"><h3>channel {channel}</h3>',
                    f'<img class="vis" src="{e(layer)}/vis-{channel:04d}.png" alt="visualisation of channel {channel}">']
            if found:
                card.append('<div class="patches maps">' if maps else '<div class="patches">')
                for rank, patch in enumerate(found[(layer, channel)]):
                    title = e(f"{patch.score:.2f} {Path(patch.path).name}")
                    card.append(f'<img src="{e(layer)}/patch-{channel:04d}-{rank:02d}.png" title="{title}" alt="{title}">')
                    if maps:
                        card.append(f'<img src="{e(layer)}/map-{channel:04d}-{rank:02d}.png" title="guided backprop: {title}" '
                                    f'alt="guided-backprop map of {title}">')
                card.append("</div>")
            card.append("</div>")
            parts.append("".join(card))
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


@dataclasses.dataclass(frozen=True)
class AtlasResult:
    """What ``atlas`` wrote.

    Attributes:
        index: The site's page (``OUTPUT/index.html``).
        folder: The site's folder (``-o``).
        layers: The layers visualised (raw names).
        channels: Channels per layer.
    """

    index: Path
    folder: Path
    layers: tuple[str, ...]
    channels: int


def atlas_command(values: Mapping[str, Any], context: CommandContext) -> AtlasResult:
    """``neurofilters atlas MODEL -o DIR [--layers ...] [--channels N] [--images FOLDER]``: the site written, nothing printed.

    Args:
        values: The validated parameters (``plugin.ATLAS_PARAMS``).
        context: The host's context: its model cache and guarded writer.

    Raises:
        ParameterError: An output that is a file, an unknown layer.
        UsageError: A page would replace a file neurofilters did not write.
    """
    images = find_images(values["images"]) if values["images"] else []
    output = Path(values["output"])
    if output.exists() and not output.is_dir():
        raise ParameterError(f'"output" must be a folder. Received: output={values["output"]!r}', param="output", value=values["output"])
    guard = context.writer(*[("an image of --images", path) for path in images], ("the model file", values["model"]))
    if recorded_atlas(output) is None:  # before the model loads: never over a user's own page
        guard.check_all([("atlas settings", output / "atlas.json"), ("atlas page", output / "index.html")])
    model = context.load_model(values["model"])
    if values["layers"]:
        layers = [model.spatial_layer(name, param="layers") for name in values["layers"]]
    else:
        layers = default_layers(model)
    bar = context.progress_bar("atlas")
    try:
        index = write_atlas(
            model, output, layers=layers, channels=values["channels"], steps=values["steps"], size=values["size"],
            seed=values["seed"], images=images, patches=values["patches"], progress=bar,
            guard=guard, maps=values["maps"],  # type: ignore[arg-type]  # the host's WriteGuard
        )
    finally:
        bar.close()
    return AtlasResult(Path(index), output, tuple(layers), values["channels"])


def render_atlas(result: AtlasResult, values: Mapping[str, Any]) -> int:
    """Print the page written."""
    print(f"wrote {result.index}")
    return 0
