"""``neurofilters saliency-check MODEL IMAGE``: the cascading-randomisation sanity check from the command line.

``configure_check`` only declares arguments (no Keras import); ``run_check``
loads the model when the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from neurofilters.plugin_host import (
    ModelCache,
    ParameterError,
    WriteGuard,
    get_registry,
    load_image,
    split_alpha,
    text_table,
)

from .plugin import METHODS

__all__ = ["configure_check", "run_check"]

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


def _count(args: argparse.Namespace, name: str, minimum: int) -> int:
    value = getattr(args, name)
    try:
        number = int(value)
        if number < minimum:
            raise ValueError
    except ValueError:
        raise ParameterError(f'"{name}" must be an integer >= {minimum}. Received: {name}={value}', param=name, value=value) from None
    return number


def run_check(args: argparse.Namespace) -> int:
    """Run the check and print one row per randomisation level, one column per method."""
    import numpy as np

    from .engine import resolve_target_class, spatial_layer, network_size, resize_rgb
    from .sanity import cascading_randomisation, sanity_figure

    methods = [name.strip() for name in str(args.methods).split(",") if name.strip()]
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise ParameterError(
            f'"methods" must be a comma-separated list of {", ".join(METHODS)}. Received: methods={args.methods}',
            param="methods", value=args.methods,
        )
    levels = _count(args, "levels", 0)
    samples, steps, seed = _count(args, "samples", 1), _count(args, "steps", 1), _count(args, "seed", 0)
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
    class_id = resolve_target_class(model, args.class_, image)
    cam_layer = spatial_layer(model, args.layer, "layer")
    name = model.labels[class_id] if model.labels and class_id < len(model.labels) else f"class {class_id}"
    print(f"Explaining class {class_id} ({name}); CAM layer {cam_layer}; randomising from the logits down.")
    report = cascading_randomisation(
        model, image, class_id, methods=methods, cam_layer=cam_layer, levels=levels or None, seed=seed,
        samples=samples, steps=steps,
    )
    rows = [(level, *(f"{report.correlations[m][i]:+.2f}" for m in methods)) for i, level in enumerate(report.levels)]
    print(text_table(rows, ("randomised", *methods)))
    print("Spearman rank correlation of each map with the intact model's map; a method that explains the model "
          "falls towards 0 as its weights are destroyed.")
    if args.figure:
        written = guard.save_image(args.figure, sanity_figure(report), what="figure (--figure)")
        print(f"Figure: {written}")
    return 0
