"""The zoo's subcommands, ``layers`` and ``classify`` (registered through ``register_commands``).

The ``configure_*`` functions only declare arguments (no Keras import); the
``run_*`` functions load the model when the command runs.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from neurofilters.plugin_host import ModelCache, ParameterError, get_registry, load_image, split_alpha, text_table

__all__ = ["configure_classify", "configure_layers", "run_classify", "run_layers"]


def _load_model(name: str) -> Any:
    return ModelCache(get_registry().get_model).get(name)


def configure_layers(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``neurofilters layers``."""
    parser.add_argument("model", nargs="+", help="model names (see 'neurofilters models') or .keras files; one table each")
    parser.add_argument("--all", action="store_true", help="also list layers that are not good filter targets")


def _dream_cell(model: Any, info: Any) -> str:
    """The "for dreaming" cell: default / recommended / good, and the layer's note."""
    level = model.usefulness(info.name) if hasattr(model, "usefulness") else int(info.dream_target)
    word = {3: "★ default", 2: "★ recommended", 1: "" if info.note else "usable", 0: ""}[level]
    return "; ".join(part for part in (word, info.note) if part)


def run_layers(args: argparse.Namespace) -> int:
    """Print the layer table of each model: the layers that dream well (all layers with ``--all``)."""
    names = [args.model] if isinstance(args.model, str) else list(args.model)
    for number, name in enumerate(names):
        if len(names) > 1:
            print(("\n" if number else "") + f"{name}:")
        _print_layers(_load_model(name), args.all)
    return 0


def _print_layers(model: Any, every: bool) -> None:
    rows = []
    for info in model.layer_table():
        if not every and not (info.dream_target or info.recommended or info.note):
            continue
        shape = "x".join("?" if d is None else str(d) for d in info.output_shape[1:])
        rows.append((info.name, info.alias or "-", shape, f"{info.params:,}", _dream_cell(model, info)))
    print(text_table(rows, ("layer", "alias", "output", "weights", "for dreaming")))
    aliases = {raw: alias for alias, raw in reversed(list(model.aliases.items()))}
    default = ",".join(aliases.get(name, name) for name, _ in model.default_dream_layers)
    print()
    print(textwrap.fill(
        f"Output shapes for a 224 px input. Weights: the layer's own, or those of the stage an "
        f"activation ends. Default dream layers: --layers {default or '(none)'}."
        + ("" if every else " Every layer: --all."), 80,
    ))


def configure_classify(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``neurofilters classify``."""
    parser.add_argument("image", nargs="+", help="input images (the model loads once for all of them)")
    parser.add_argument("--model", default="lite0", help="classifier model (default: lite0)")
    parser.add_argument("--top", default="5", help="number of classes to print (default 5)")


def run_classify(args: argparse.Namespace) -> int:
    """Print the top classes the model sees in each image."""
    try:
        top = int(args.top)
        if top < 1:
            raise ValueError
    except ValueError:
        raise ParameterError(f'"top" must be an integer >= 1. Received: top={args.top}', param="top", value=args.top) from None
    paths = [args.image] if isinstance(args.image, str) else list(args.image)
    images = [load_image(path) for path in paths]  # every file is checked before the model loads
    model = _load_model(args.model)
    if getattr(model, "kind", None) != "classifier":
        raise ParameterError(
            f"Model {args.model!r} has no classifier head. Received: --model {args.model}; "
            "use a classifier such as lite0 (see 'neurofilters models').",
            param="model",
            value=args.model,
        )
    for number, (path, image) in enumerate(zip(paths, images)):
        if len(paths) > 1:
            print(("\n" if number else "") + f"{path}:")
        rgb, _ = split_alpha(image.pixels)
        for rank, (class_id, name, probability) in enumerate(model.classify(rgb, top=top), start=1):
            print(f"{rank:>2}. {probability:7.2%}  {class_id:>4}  {name}")
    return 0
