"""``neurofilters saliency-check MODEL IMAGE``: the cascading-randomisation sanity check from the command line.

``configure_check`` only declares arguments (no Keras import); ``run_check``
loads the model when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from neurofilters.plugin_host import (
    ModelCache,
    ParameterError,
    WriteGuard,
    parse_int,
    get_registry,
    load_image,
    split_alpha,
    text_table,
)

from .plugin import METHODS

__all__ = ["SaliencyCheck", "compute_check", "configure_check", "run_check"]

_DEFAULT_METHODS = ",".join(METHODS)


def configure_check(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``neurofilters saliency-check``."""
    parser.add_argument("model", help="classifier model (see 'neurofilters models') or a .keras file")
    parser.add_argument("image", help="input image")
    parser.add_argument("--class", dest="class_", default="top-1",
                        help="class to explain: top-1 (default), top-N, an id or a name")
    parser.add_argument("--methods", default=_DEFAULT_METHODS, help=f"comma-separated methods (default: {_DEFAULT_METHODS})")
    parser.add_argument("--layer", default="auto", help="CAM layer (default: the last convolutional block)")
    parser.add_argument("--levels", default="0", help="randomise only the top N groups of layers (default 0: all)")
    parser.add_argument("--samples", default="16", help="SmoothGrad samples (default 16)")
    parser.add_argument("--steps", default="16", help="integrated-gradients steps (default 16)")
    parser.add_argument("--seed", default="0", help="seed of the random weights and noise (default 0)")
    parser.add_argument("--figure", default="", help="also write the maps as an image grid to this file (.png, .jpg)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files that neurofilters did not write (never an input)")


def shorten(text: str, limit: int = 120) -> str:
    """``text`` cut for an error message."""
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} characters)"


def _count(args: argparse.Namespace, name: str, minimum: int, maximum: int = 2**63 - 1) -> int:
    """The integer flag ``--name`` (the host's parsing: control characters and 5,000 digits are refused)."""
    return parse_int(getattr(args, name), f"--{name}", minimum, maximum)


def check_class_text(value: str, flag: str = "--class") -> str:
    """A ``--class`` value checked before the model loads: ``top-N``, an id or a name, as one line when bad."""
    text = str(value).strip()
    digits = text[4:] if text.lower().startswith("top-") else text.lstrip("+-")
    numeric = bool(digits) and all(character.isdigit() for character in digits)
    if (numeric and (not digits.isascii() or len(digits) > 12)) or not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ParameterError(
            f"{flag} must be a class id (130), a class name ('tiger cat') or top-N. Received: {flag} {shorten(str(value))}",
            param="class_", value=value,
        )
    return text


def _named_flag(error: ParameterError, flag: str = "--class") -> ParameterError:
    """``error`` with the parameter named as the user typed it (``--class``, not ``class_``)."""
    text = str(error)
    for spelling in ('"class_"', '"class"'):
        text = text.replace(spelling, flag, 1)
    for spelling in ("class_=", "class="):
        text = text.replace(f"Received: {spelling}", f"Received: {flag} ", 1)
    return ParameterError(text, param=error.param, value=error.value)


@dataclass(frozen=True)
class SaliencyCheck:
    """What ``saliency-check`` finds: how each method's map changes as the model's weights are randomised.

    Attributes:
        class_id: The explained class.
        class_name: Its label (``class N`` when the model has none).
        cam_layer: The layer the CAM methods used.
        methods: The methods checked, in order.
        levels: ``"original"``, then the cumulative randomisation after each group of layers (``"logits"``, ``"+head"`` ...).
        correlations: Method -> Spearman rank correlation of its map with the intact model's map, one per level.
        figure: The figure written (``--figure``), or ``None``.
        report: The full :class:`~neurofilters.filters.saliency.sanity.SanityReport` (with the maps).
    """

    class_id: int
    class_name: str
    cam_layer: str
    methods: tuple[str, ...]
    levels: tuple[str, ...]
    correlations: dict[str, list[float]]
    figure: Path | None = None
    report: Any = field(default=None, repr=False, compare=False)

    @property
    def header(self) -> str:
        """The line the command prints before it starts."""
        return f"Explaining class {self.class_id} ({self.class_name}); CAM layer {self.cam_layer}; randomising from the logits down."


def _check(args: argparse.Namespace, announce: Callable[[str], None] | None) -> tuple[SaliencyCheck, Callable[[], Path | None]]:
    """The check without its figure, and the function that writes the figure (``None`` without ``--figure``)."""
    import numpy as np

    from .engine import network_size, resize_rgb, resolve_target_class, spatial_layer
    from .sanity import cascading_randomisation, sanity_figure

    methods = [name.strip() for name in str(args.methods).split(",") if name.strip()]
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise ParameterError(
            f'"methods" must be a comma-separated list of {", ".join(METHODS)}. Received: methods={args.methods}',
            param="methods", value=args.methods,
        )
    levels = _count(args, "levels", 0, 1000)
    samples, steps, seed = _count(args, "samples", 1, 1024), _count(args, "steps", 1, 1024), _count(args, "seed", 0)
    check_class_text(args.class_)
    guard = WriteGuard([("the input image", args.image), ("the model file", args.model)], overwrite=getattr(args, "overwrite", False))
    if args.figure:  # before any work: never over the image or the model
        guard.check(args.figure, what="figure (--figure)")
    loaded = load_image(args.image)
    model: Any = ModelCache(get_registry().get_model).get(args.model)
    if getattr(model, "kind", None) != "classifier":
        raise ParameterError(
            f"saliency-check explains a class: model {args.model!r} has no classifier head. Received: {args.model}",
            param="model", value=args.model,
        )
    rgb, _ = split_alpha(loaded.pixels)
    rgb = np.ascontiguousarray(rgb[:, :, :3] if rgb.shape[2] >= 3 else np.repeat(rgb[:, :, :1], 3, axis=2), np.float32)
    image = resize_rgb(rgb, network_size(model, *rgb.shape[:2]))
    try:
        class_id = resolve_target_class(model, args.class_, rgb)  # ranked on the photo, as classify ranks it
    except ParameterError as error:
        raise _named_flag(error) from None
    cam_layer = spatial_layer(model, args.layer, "layer")
    name = model.labels[class_id] if model.labels and class_id < len(model.labels) else f"class {class_id}"
    result = SaliencyCheck(int(class_id), str(name), str(cam_layer), tuple(methods), (), {})
    if announce is not None:
        announce(result.header)
    report = cascading_randomisation(
        model, image, class_id, methods=methods, cam_layer=cam_layer, levels=levels or None, seed=seed,
        samples=samples, steps=steps,
    )
    correlations = {method: [float(value) for value in report.correlations[method]] for method in methods}
    result = replace(result, levels=tuple(report.levels), correlations=correlations, report=report)

    def write_figure() -> Path | None:
        return guard.save_image(args.figure, sanity_figure(report), what="figure (--figure)") if args.figure else None

    return result, write_figure


def compute_check(args: argparse.Namespace, announce: Callable[[str], None] | None = None) -> SaliencyCheck:
    """``saliency-check``'s work: the randomisation levels and correlations (and the figure), nothing printed.

    Args:
        args: The parsed command line.
        announce: Called with the header line once the class and layer are known, before the long part.

    Raises:
        ParameterError: A bad value (before the model loads), a model without a classifier head, an unknown class.
        UsageError: The figure would replace an input or a file neurofilters did not write.
    """
    result, write_figure = _check(args, announce)
    return replace(result, figure=write_figure())


def run_check(args: argparse.Namespace) -> int:
    """Run the check and print one row per randomisation level, one column per method."""
    result, write_figure = _check(args, announce=print)
    methods = result.methods
    rows = [(level, *(f"{result.report.correlations[m][i]:+.2f}" for m in methods)) for i, level in enumerate(result.levels)]
    print(text_table(rows, ("randomised", *methods)))
    print("Spearman rank correlation of each map with the intact model's map; a method that explains the model "
          "falls towards 0 as its weights are destroyed.")
    written = write_figure()
    if written is not None:
        print(f"Figure: {written}")
    return 0
