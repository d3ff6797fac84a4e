"""The zoo's commands ``layers`` and ``classify``: their work (``compute_*``), result objects and printing (``render_*``).

Their parameters are declared in ``plugin.py`` (no Keras import); the host
validates them and hands ``compute_*`` the values and a :class:`CommandContext`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofilters.plugin_host import (
    CommandContext,
    NeurofiltersError,
    ParameterError,
    atomic_write,
    get_registry,
    load_image,
    split_alpha,
    text_table,
)

__all__ = [
    "ClassScore", "Classification", "LayerRow", "LayerTable", "Learnable", "LayersResult", "analyze_network", "compute_classify",
    "compute_layers", "head_layer_infos", "learnables_text", "render_classify", "render_layers", "render_layers_result",
]


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
        input, and a separate fully connected head's layers (:func:`head_layer_infos`)
        come last. ``total`` equals ``count_params()`` of the network and its head.
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
    for info in [*table, *head_layer_infos(model)]:
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


#: The note of a row of a separate fully connected head (it is not in the backbone's graph).
HEAD_NOTE = "fully connected head"


def head_layer_infos(model: Any) -> list[Any]:
    """Rows for the layers of a separate fully connected head (VGG's ``flatten``, ``fc1``, ``fc2``, ``predictions``).

    Such a head is kept apart from :attr:`keras_model` (which runs at any size) and
    classifies the image resized to :attr:`head_input_size`; its layers still are
    the network's, with their learnables. Their shapes are the head's own (it has
    one input size). A model without such a head gives none.

    Returns:
        One :class:`~.model.LayerInfo` per head layer, in order, noted :data:`HEAD_NOTE`.
    """
    from .model import LayerInfo

    infos = []
    for name in getattr(model, "head_layers", ()):
        layer = model.head_layer(name)
        learnables = tuple(
            (str(variable.name), tuple(int(side) for side in variable.shape), bool(variable.trainable)) for variable in layer.weights
        )
        infos.append(LayerInfo(
            name=name, alias=None, kind=type(layer).__name__, output_shape=tuple(layer.output.shape),
            params=sum(math.prod(shape) for _, shape, _ in learnables), dream_target=False, note=HEAD_NOTE, learnables=learnables,
        ))
    return infos


def _table_side(model: Any) -> int:
    fixed = model.keras_model.inputs[0].shape[1]
    return int(fixed or model.input_size or 224)


def _learnables_cell(row: dict[str, Any]) -> str:
    return learnables_text(row["info"]) if row["info"] is not None else "–"


@dataclass(frozen=True)
class Learnable:
    """One variable of a layer.

    Attributes:
        name: MATLAB's word for it where one exists (``Weights``, ``Bias``, ``Scale``), else Keras' name.
        shape: Its shape.
        count: Its number of values.
        trainable: Whether training changes it (batch-norm statistics do not).
    """

    name: str
    shape: tuple[int, ...]
    count: int
    trainable: bool


@dataclass(frozen=True)
class LayerRow:
    """One row of the analyzeNetwork table (the first row is the input).

    Attributes:
        name: The layer's name.
        alias: The zoo's short name for it (``block5``), or ``None``.
        type: The layer's class (``Conv2D``; ``Input`` for the first row).
        activations: Its output shape at the model's native input size, without the batch.
        learnables: Its own variables.
        count: How many values its variables hold.
        dream: The "for dreaming" cell (``★ default``, ``★ recommended``, a note) or ``""``.
        learnables_text: ``Weights 3×3×3×32, Bias 32`` (``–`` for none), as the csv, markdown and text tables show it.
        dreamy: Whether the text table shows the row without ``--all`` (the input and the layers that dream well).
    """

    name: str
    alias: str | None
    type: str
    activations: tuple[int | None, ...]
    learnables: tuple[Learnable, ...]
    count: int
    dream: str
    learnables_text: str = "–"
    dreamy: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The row as ``neurofilters layers --format json`` writes it."""
        return {
            "name": self.name, "alias": self.alias, "type": self.type, "activations": list(self.activations),
            "learnables": [{"name": item.name, "shape": list(item.shape), "count": item.count, "trainable": item.trainable}
                           for item in self.learnables],
            "count": self.count, "dream": self.dream,
        }


@dataclass(frozen=True)
class LayerTable:
    """The analyzeNetwork table of one model: what ``neurofilters layers MODEL`` shows.

    Attributes:
        model: The model's name.
        input_size: The native input side the shapes are given for.
        rows: One :class:`LayerRow` per layer, the input first.
        total: Every learnable value (equals the network's ``count_params()``).
        trainable: The trainable ones.
        non_trainable: The others (batch-norm statistics).
        default_dream_layers: The layers DeepDream uses by default (``--layers`` spelling).
    """

    model: str
    input_size: int
    rows: tuple[LayerRow, ...]
    total: int
    trainable: int
    non_trainable: int
    default_dream_layers: str = ""

    def __getitem__(self, name: str) -> LayerRow:
        """The row of layer ``name`` (or of its alias)."""
        for row in self.rows:
            if name in (row.name, row.alias):
                return row
        raise KeyError(f"{self.model} has no layer {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The table as ``neurofilters layers --format json`` writes it."""
        return {"model": self.model, "input_size": self.input_size, "total": self.total, "trainable": self.trainable,
                "non_trainable": self.non_trainable, "layers": [row.to_dict() for row in self.rows]}


@dataclass(frozen=True)
class LayersResult:
    """What ``layers`` computes: one table per model, and the drawing ``--graph`` asked for.

    Attributes:
        tables: One :class:`LayerTable` per model, in the order given.
        graph: The drawing written (``--graph``), or ``None``.
        graph_problem: Why the drawing could not be made (pydot or Graphviz missing), or ``None``.
        requested_graph: The drawing ``--graph`` asked for, or ``None``.
    """

    tables: tuple[LayerTable, ...]
    graph: Path | None = None
    graph_problem: str | None = None
    requested_graph: Path | None = field(default=None, repr=False)


def _check_layers_args(values: Mapping[str, Any]) -> tuple[list[str], Path | None]:
    names = list(values["model"])
    graph = values["graph"]
    if graph and len(names) > 1:
        raise ParameterError(f'"--graph" draws one model. Received: {len(names)} models; give one.', param="graph", value=graph)
    for name in names:  # an unknown name is refused before the first model loads
        get_registry().get_model(name)
    return names, (_graph_target(graph) if graph else None)


def layer_table(model: Any) -> LayerTable:
    """The :class:`LayerTable` of a loaded zoo model."""
    analysis = analyze_network(model)
    rows = tuple(
        LayerRow(
            name=row["name"], alias=row["alias"], type=row["type"], activations=tuple(row["activations"]),
            learnables=tuple(Learnable(item["name"], tuple(item["shape"]), item["count"], item["trainable"]) for item in row["learnables"]),
            count=row["count"], dream=row["dream"], learnables_text=_learnables_cell(row),
            dreamy=row["info"] is None or bool(row["info"].dream_target or row["info"].recommended or row["info"].note),
        )
        for row in analysis["rows"]
    )
    aliases = {raw: alias for alias, raw in reversed(list(model.aliases.items()))}
    default = ",".join(aliases.get(name, name) for name, _ in model.default_dream_layers)
    return LayerTable(analysis["model"], analysis["input_size"], rows, analysis["total"], analysis["trainable"],
                      analysis["non_trainable"], default)


def compute_layers(values: Mapping[str, Any], context: CommandContext) -> LayersResult:
    """``layers``' work: the table of each model (and the ``--graph`` drawing), nothing printed.

    Args:
        values: The validated ``model`` names, ``graph``, ``format`` and ``all`` (the last two choose the printing).
        context: The host's context (its model cache loads each model).

    Raises:
        ParameterError: A bad ``--graph`` (before any model loads).
        RegistryError: An unknown model.
    """
    names, graph = _check_layers_args(values)
    tables, models = [], []
    for name in names:
        model = context.load_model(name)
        models.append(model)
        tables.append(layer_table(model))
    problem = _draw(models[0], graph) if graph is not None else None
    return LayersResult(tuple(tables), graph if graph is not None and problem is None else None, problem,
                        requested_graph=graph)


def render_layers_result(result: LayersResult, values: Mapping[str, Any]) -> int:
    """Print each table in the chosen ``--format`` and say what became of ``--graph`` (exit 1 when it could not be drawn)."""
    many = len(result.tables) > 1
    for number, table in enumerate(result.tables):
        if many and values["format"] == "text":
            print(("\n" if number else "") + f"{values['model'][number]}:")
        sys.stdout.write(render_layers(table, values["format"], every=values["all"]))
    if result.requested_graph is None:
        return 0
    print(result.graph_problem if result.graph_problem is not None else f"drew {result.graph}", file=sys.stderr)
    return 1 if result.graph_problem is not None else 0


def render_layers(table: LayerTable, format: str = "text", *, every: bool = False) -> str:
    """A table as ``neurofilters layers`` prints it: ``text`` (``every``: ``--all``), ``csv``, ``json`` or ``markdown``."""
    out = io.StringIO()
    rows = table.rows
    if format == "json":
        print(json.dumps(table.to_dict(), indent=1, ensure_ascii=False), file=out)
    elif format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("name", "alias", "type", "activations", "learnables", "count", "dream"))
        for row in rows:
            writer.writerow((row.name, row.alias or "", row.type, _shape_text(row.activations), row.learnables_text, row.count, row.dream))
        writer.writerow(("total", "", "", "", "", table.total, ""))
    elif format == "markdown":
        print("| name | type | activations | learnables | count |", file=out)
        print("|---|---|---|---|---:|", file=out)
        for row in rows:
            count = f"{row.count:,}" if row.count else "–"
            print(f"| `{row.name}` | {row.type} | {_shape_text(row.activations)} | {row.learnables_text} | {count} |", file=out)
        print(f"| **total** | | | | **{table.total:,}** |", file=out)
    else:
        _print_text(table, every=every, out=out)
    return out.getvalue()


def _print_text(table: LayerTable, *, every: bool, out: Any) -> None:
    """``--all``: every layer with its learnables; otherwise the layers that dream well."""
    if every:
        cells = [
            (row.name, row.type, _shape_text(row.activations), row.learnables_text, f"{row.count:,}" if row.count else "–")
            for row in table.rows
        ]
        print(text_table(cells, ("layer", "type", "activations", "learnables", "count"), keep=(0, 1, 2, 4)), file=out)
    else:
        cells = [(row.name, row.alias or "-", row.type, _shape_text(row.activations), row.dream) for row in table.rows if row.dreamy]
        print(text_table(cells, ("layer", "alias", "type", "activations", "for dreaming"), keep=(0, 1, 3)), file=out)
    print(file=out)
    side = table.input_size
    print(textwrap.fill(
        f"Total learnables: {table.total:,} ({table.trainable:,} trainable, "
        f"{table.non_trainable:,} batch-norm statistics), {len(table.rows) - 1} layers. "
        f"Activations for a {side}×{side} input.", 80,
    ), file=out)
    print(f"Default dream layers: --layers {table.default_dream_layers or '(none)'}.", file=out)
    if not every:
        print("Every layer and its learnables: --all.", file=out)


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


def _draw(model: Any, target: Path) -> str | None:
    """Draw the network with Keras' ``plot_model``; the line saying why not when pydot or Graphviz is missing."""
    import importlib.util

    if importlib.util.find_spec("pydot") is None or shutil.which("dot") is None:
        missing = " and ".join(
            name for name, absent in (("the Python package pydot", importlib.util.find_spec("pydot") is None),
                                      ("Graphviz's 'dot' program", shutil.which("dot") is None)) if absent
        )
        return f"neurofilters: --graph needs {missing} (pip install pydot; apt-get install graphviz); the table above is complete."
    import keras

    with atomic_write(target) as temporary:
        keras.utils.plot_model(model.keras_model, to_file=os.fspath(temporary.with_suffix(target.suffix)),
                               show_shapes=True, show_layer_names=True, dpi=None)
        temporary.with_suffix(target.suffix).replace(temporary)
    return None


@dataclass(frozen=True)
class ClassScore:
    """One of the classes a model sees in an image.

    Attributes:
        rank: 1 for the most probable class.
        class_id: The class's index in the model's label list.
        label: The class's name.
        probability: The model's probability for it, in [0, 1].
    """

    rank: int
    class_id: int
    label: str
    probability: float


@dataclass(frozen=True)
class Classification:
    """The top classes of one image: a row of ``neurofilters classify``.

    Attributes:
        image: The image's path, as given.
        scores: The top classes, most probable first.
    """

    image: str
    scores: tuple[ClassScore, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        """The most probable class's name."""
        return self.scores[0].label

    @property
    def probability(self) -> float:
        """The most probable class's probability."""
        return self.scores[0].probability


def compute_classify(values: Mapping[str, Any], context: CommandContext) -> list[Classification]:
    """``classify``'s work: the top classes of each image, nothing printed.

    Args:
        values: The validated ``image`` paths, ``model`` and ``top``.
        context: The host's context (its model cache loads the model once).

    Raises:
        ParameterError: A model without a classifier head.
        RegistryError: An unknown model.
        ImageIOError: An image cannot be read (every file is read before the model loads).
    """
    paths = list(values["image"])
    images = [load_image(path) for path in paths]  # every file is checked before the model loads
    model = context.load_model(values["model"])
    if getattr(model, "kind", None) != "classifier":
        raise ParameterError(
            f"Model {values['model']!r} has no classifier head. Received: --model {values['model']}; "
            "use a classifier such as lite0 (see 'neurofilters models').",
            param="model",
            value=values["model"],
        )
    rows = []
    for path, image in zip(paths, images):
        rgb, _ = split_alpha(image.pixels)
        scores = tuple(
            ClassScore(rank, int(class_id), str(name), float(probability))
            for rank, (class_id, name, probability) in enumerate(model.classify(rgb, top=values["top"]), start=1)
        )
        rows.append(Classification(str(path), scores))
    return rows


def render_classify(rows: list[Classification], values: Mapping[str, Any]) -> int:
    """Print the top classes the model sees in each image (a header per image when there are several)."""
    for number, row in enumerate(rows):
        if len(rows) > 1:
            print(("\n" if number else "") + f"{row.image}:")
        for score in row.scores:
            print(f"{score.rank:>2}. {score.probability:7.2%}  {score.class_id:>4}  {score.label}")
    return 0
