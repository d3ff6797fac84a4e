"""The zoo's subcommands, ``layers`` and ``classify`` (registered through ``register_commands``).

The ``configure_*`` functions only declare arguments (no Keras import); the
``run_*`` functions load the model when the command runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neurofilters.plugin_host import (
    ModelCache,
    ParameterError,
    atomic_write,
    get_registry,
    load_image,
    split_alpha,
    text_table,
)

__all__ = ["analyze_network", "configure_classify", "configure_layers", "learnables_text", "run_classify", "run_layers"]


def _load_model(name: str) -> Any:
    return ModelCache(get_registry().get_model).get(name)


LAYER_FORMATS = ("text", "csv", "json", "markdown")
#: How ``layers`` names a variable (MATLAB's analyzeNetwork words where they exist).
_VARIABLE_WORDS = {
    "kernel": "Weights",
    "depthwise_kernel": "Weights",
    "pointwise_kernel": "PointwiseWeights",
    "bias": "Bias",
    "gamma": "Scale",
    "beta": "Offset",
    "moving_mean": "Mean",
    "moving_variance": "Variance",
}


def configure_layers(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``neurofilters layers``."""
    parser.add_argument("model", nargs="+", help="model names (see 'neurofilters models') or .keras files; one table each")
    parser.add_argument("--all", action="store_true", help="list every layer, not only those that dream well (csv, json and markdown always do)")
    parser.add_argument("--format", default="text", metavar="FORMAT",
                        help="text (default), csv, json or markdown: the full analyzeNetwork-style table")
    parser.add_argument("--graph", metavar="FILE.svg", help="also draw the network (Keras' plot_model; needs pydot and Graphviz)")


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:50] + f"… ({len(text)} characters)"


def _dream_cell(model: Any, info: Any) -> str:
    """The "for dreaming" cell: default / recommended / good, and the layer's note."""
    level = model.usefulness(info.name) if hasattr(model, "usefulness") else int(info.dream_target)
    word = {3: "★ default", 2: "★ recommended", 1: "" if info.note else "usable", 0: ""}[level]
    return "; ".join(part for part in (word, info.note) if part)


def _shape_text(shape: Sequence[int | None]) -> str:
    return "×".join("?" if side is None else str(side) for side in shape)


def learnables_text(info: Any) -> str:
    """``Weights 3×3×3×32, Bias 32`` for a layer's own variables; ``–`` when it has none."""
    if not info.learnables:
        return "–"
    return ", ".join(f"{_VARIABLE_WORDS.get(name, name.capitalize())} {_shape_text(shape)}" for name, shape, _ in info.learnables)


def analyze_network(model: Any) -> dict[str, Any]:
    """The analyzeNetwork table of a zoo model at its native input size.

    Returns:
        ``{"model", "input_size", "rows", "total", "trainable", "non_trainable"}``;
        each row has ``name, alias, type, activations (shape), learnables (list of
        {name, shape, count, trainable}), count, dream``; the first row is the
        input. ``total`` equals the network's ``count_params()``.
    """
    table = model.layer_table()
    side = _table_side(model)
    input_layer = model.keras_model.inputs[0]
    rows: list[dict[str, Any]] = [{
        "name": getattr(input_layer, "name", "input") or "input", "alias": None, "type": "Input",
        "activations": [side, side, int(input_layer.shape[-1] or 3)], "learnables": [], "count": 0, "dream": "",
        "info": None,
    }]
    trainable = non_trainable = 0
    for info in table:
        learnables = []
        for name, shape, is_trainable in info.learnables:
            count = math.prod(shape)
            learnables.append({"name": _VARIABLE_WORDS.get(name, name), "shape": list(shape), "count": count, "trainable": is_trainable})
            if is_trainable:
                trainable += count
            else:
                non_trainable += count
        rows.append({
            "name": info.name, "alias": info.alias, "type": info.kind, "activations": list(info.output_shape[1:]),
            "learnables": learnables, "count": info.own_params, "dream": _dream_cell(model, info), "info": info,
        })
    return {"model": model.name, "input_size": side, "rows": rows, "total": trainable + non_trainable,
            "trainable": trainable, "non_trainable": non_trainable}


def _table_side(model: Any) -> int:
    fixed = model.keras_model.inputs[0].shape[1]
    return int(fixed or model.input_size or 224)


def _learnables_cell(row: dict[str, Any]) -> str:
    return learnables_text(row["info"]) if row["info"] is not None else "–"


def run_layers(args: argparse.Namespace) -> int:
    """Print the layer table of each model (analyzeNetwork's columns), in one of four formats."""
    if args.format not in LAYER_FORMATS:
        raise ParameterError(
            f'"--format" must be one of {", ".join(LAYER_FORMATS)}. Received: --format {_short(args.format)}',
            param="format", value=args.format,
        )
    names = [args.model] if isinstance(args.model, str) else list(args.model)
    if args.graph and len(names) > 1:
        raise ParameterError(f'"--graph" draws one model. Received: {len(names)} models; give one.', param="graph", value=args.graph)
    graph = _graph_target(args.graph) if args.graph else None
    code = 0
    for number, name in enumerate(names):
        if len(names) > 1 and args.format == "text":
            print(("\n" if number else "") + f"{name}:")
        code = max(code, _layers_of(_load_model(name), args, graph))
    return code


def _layers_of(model: Any, args: argparse.Namespace, graph: Path | None) -> int:
    """One model's table in ``args.format`` (and its drawing with ``--graph``)."""
    analysis = analyze_network(model)
    rows = analysis["rows"]
    if args.format == "json":
        document = {key: value for key, value in analysis.items() if key != "rows"}
        document["layers"] = [{key: value for key, value in row.items() if key != "info"} for row in rows]
        print(json.dumps(document, indent=1, ensure_ascii=False))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("name", "alias", "type", "activations", "learnables", "count", "dream"))
        for row in rows:
            writer.writerow((row["name"], row["alias"] or "", row["type"], _shape_text(row["activations"]),
                             _learnables_cell(row), row["count"], row["dream"]))
        writer.writerow(("total", "", "", "", "", analysis["total"], ""))
    elif args.format == "markdown":
        print("| name | type | activations | learnables | count |")
        print("|---|---|---|---|---:|")
        for row in rows:
            count = f"{row['count']:,}" if row["count"] else "–"
            print(f"| `{row['name']}` | {row['type']} | {_shape_text(row['activations'])} | {_learnables_cell(row)} | {count} |")
        print(f"| **total** | | | | **{analysis['total']:,}** |")
    else:
        _print_text(model, analysis, every=args.all)
    if graph is not None:
        return _draw(model, graph)
    return 0


def _print_text(model: Any, analysis: dict[str, Any], *, every: bool) -> None:
    """``--all``: every layer with its learnables; otherwise the layers that dream well."""
    if every:
        table = [
            (row["name"], row["type"], _shape_text(row["activations"]), _learnables_cell(row),
             f"{row['count']:,}" if row["count"] else "–")
            for row in analysis["rows"]
        ]
        print(text_table(table, ("layer", "type", "activations", "learnables", "count"), keep=(0, 1, 2, 4)))
    else:
        table = [
            (row["name"], row["alias"] or "-", row["type"], _shape_text(row["activations"]), row["dream"])
            for row in analysis["rows"]
            if row["info"] is None or row["info"].dream_target or row["info"].recommended or row["info"].note
        ]
        print(text_table(table, ("layer", "alias", "type", "activations", "for dreaming"), keep=(0, 1, 3)))
    aliases = {raw: alias for alias, raw in reversed(list(model.aliases.items()))}
    default = ",".join(aliases.get(name, name) for name, _ in model.default_dream_layers)
    print()
    side = analysis["input_size"]
    print(textwrap.fill(
        f"Total learnables: {analysis['total']:,} ({analysis['trainable']:,} trainable, "
        f"{analysis['non_trainable']:,} batch-norm statistics), {len(analysis['rows']) - 1} layers. "
        f"Activations for a {side}×{side} input.", 80,
    ))
    print(f"Default dream layers: --layers {default or '(none)'}.")
    if not every:
        print("Every layer and its learnables: --all.")


def _graph_target(text: str) -> Path:
    """Where ``--graph`` draws, checked before the model loads."""
    path = Path(text).expanduser()
    if path.suffix.lower() not in (".svg", ".png", ".pdf", ".dot"):
        raise ParameterError(
            f'"--graph" must end in .svg, .png, .pdf or .dot. Received: --graph {_short(text)}', param="graph", value=text
        )
    if path.exists():
        raise ParameterError(
            f'"--graph" must name a new file; {text} exists and is never overwritten. Choose another name.',
            param="graph", value=text,
        )
    return path


def _draw(model: Any, target: Path) -> int:
    """Draw the network with Keras' ``plot_model``; one line when pydot or Graphviz is missing."""
    import importlib.util

    if importlib.util.find_spec("pydot") is None or shutil.which("dot") is None:
        missing = " and ".join(
            name for name, absent in (("the Python package pydot", importlib.util.find_spec("pydot") is None),
                                      ("Graphviz's 'dot' program", shutil.which("dot") is None)) if absent
        )
        print(f"neurofilters: --graph needs {missing} (pip install pydot; apt-get install graphviz); the table above is complete.",
              file=sys.stderr)
        return 1
    import keras

    with atomic_write(target) as temporary:
        keras.utils.plot_model(model.keras_model, to_file=os.fspath(temporary.with_suffix(target.suffix)),
                               show_shapes=True, show_layer_names=True, dpi=None)
        temporary.with_suffix(target.suffix).replace(temporary)
    print(f"drew {target}", file=sys.stderr)
    return 0


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
