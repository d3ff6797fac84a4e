"""Hook implementations of the duotone example plugin."""

from __future__ import annotations

from typing import Any

from plugin_host import FilterContext, FilterSpec, Param, hookimpl

PARAMS = (
    Param("dark", "colour", "#1d1a4f", "Colour of the shadows.", label="Shadow colour"),
    Param("light", "colour", "#ffd27f", "Colour of the highlights.", label="Highlight colour"),
    Param("contrast", "float", 1.0, "Contrast applied to luminance before the ramp.", minimum=0.1, maximum=4.0),
    Param("curve", "choice", "linear", "Shape of the ramp between the two colours.", choices=("linear", "smooth")),
)


def run(image: Any, params: dict[str, Any], context: FilterContext) -> Any:
    """Map the image's luminance onto a ramp from ``dark`` to ``light``."""
    import numpy as np

    luminance = image @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    luminance = np.clip((luminance - 0.5) * params["contrast"] + 0.5, 0.0, 1.0)
    if params["curve"] == "smooth":
        luminance = luminance * luminance * (3.0 - 2.0 * luminance)
    context.progress(0.5, "ramp")
    dark = np.asarray(params["dark"], dtype=np.float32)
    light = np.asarray(params["light"], dtype=np.float32)
    return dark + luminance[:, :, None] * (light - dark)


@hookimpl
def register_filters() -> list[FilterSpec]:
    """The one filter this plugin provides."""
    return [
        FilterSpec(
            name="duotone",
            title="Duotone",
            summary="Map brightness onto a ramp between two colours.",
            description="An example third-party filter: luminance, a contrast curve, then a two-colour ramp.",
            category="Colour",
            params=PARAMS,
            run=run,
        )
    ]
