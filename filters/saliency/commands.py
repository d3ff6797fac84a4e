"""``neurofilters saliency-check MODEL IMAGE``: the cascading-randomisation sanity check's work, result and printing.

Its parameters are declared in ``plugin.py`` (``CHECK_PARAMS``, no Keras import);
``compute_check`` loads the model when the command runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from neurofilters.plugin_host import (
    CommandContext,
    ParameterError,
    load_image,
    split_alpha,
    text_table,
)

from ..zoo.labels import check_class_text, with_class_flag

__all__ = ["SaliencyCheck", "compute_check", "render_check"]


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


def _check(values: Mapping[str, Any], context: CommandContext) -> tuple[SaliencyCheck, Callable[[], Path | None]]:
    """The check without its figure, and the function that writes the figure (``None`` without ``--figure``)."""
    import numpy as np

    from ..attribution.network import default_cam_layer, spatial_layers
    from .engine import network_size, resize_rgb, resolve_target_class
    from .sanity import cascading_randomisation, sanity_figure

    methods = list(dict.fromkeys(values["methods"]))
    check_class_text(values["class_"])
    figure = values["figure"]
    guard = context.writer(("the input image", values["image"]), ("the model file", values["model"]))
    if figure:  # before any work: never over the image or the model
        guard.check(figure, what="figure (--figure)")
    loaded = load_image(values["image"])
    model: Any = context.load_model(values["model"])
    if getattr(model, "kind", None) != "classifier":
        raise ParameterError(
            f"saliency-check explains a class: model {values['model']!r} has no classifier head. Received: {values['model']}",
            param="model", value=values["model"],
        )
    rgb, _ = split_alpha(loaded.pixels)
    rgb = np.ascontiguousarray(rgb[:, :, :3] if rgb.shape[2] >= 3 else np.repeat(rgb[:, :, :1], 3, axis=2), np.float32)
    image = resize_rgb(rgb, network_size(model, *rgb.shape[:2]))
    try:
        class_id = resolve_target_class(model, values["class_"], rgb)  # ranked on the photo, as classify ranks it
    except ParameterError as error:
        raise with_class_flag(error) from None
    cam_layer = model.spatial_layer(values["layer"], param="layer", layers=spatial_layers, auto=default_cam_layer)
    name = model.labels[class_id] if model.labels and class_id < len(model.labels) else f"class {class_id}"
    result = SaliencyCheck(int(class_id), str(name), str(cam_layer), tuple(methods), (), {})
    context.announce(result.header)
    report = cascading_randomisation(
        model, image, class_id, methods=methods, cam_layer=cam_layer, levels=values["levels"] or None, seed=values["seed"],
        samples=values["samples"], steps=values["steps"],
    )
    correlations = {method: [float(value) for value in report.correlations[method]] for method in methods}
    result = replace(result, levels=tuple(report.levels), correlations=correlations, report=report)

    def write_figure() -> Path | None:
        return guard.save_image(figure, sanity_figure(report), what="figure (--figure)") if figure else None

    return result, write_figure


def compute_check(values: Mapping[str, Any], context: CommandContext) -> SaliencyCheck:
    """``saliency-check``'s work: the randomisation levels and correlations (and the figure), nothing printed.

    Args:
        values: The validated parameters (``plugin.CHECK_PARAMS``).
        context: The host's context: its model cache, its guarded writer, and
            ``announce``, called with the header line once the class and layer
            are known, before the long part.

    Raises:
        ParameterError: A bad class text (before the model loads), a model without a classifier head, an unknown class.
        UsageError: The figure would replace an input or a file neurofilters did not write.
    """
    result, write_figure = _check(values, context)
    return replace(result, figure=write_figure())


def render_check(result: SaliencyCheck, values: Mapping[str, Any]) -> int:
    """Print one row per randomisation level, one column per method, and the figure written."""
    methods = result.methods
    rows = [(level, *(f"{result.correlations[m][i]:+.2f}" for m in methods)) for i, level in enumerate(result.levels)]
    print(text_table(rows, ("randomised", *methods)))
    print("Spearman rank correlation of each map with the intact model's map; a method that explains the model "
          "falls towards 0 as its weights are destroyed.")
    if result.figure is not None:
        print(f"Figure: {result.figure}")
    return 0
