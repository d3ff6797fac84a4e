"""Hook implementations of the duotone example plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurofilters.plugin_host import CommandContext, CommandSpec, FilterContext, FilterSpec, Param, hookimpl

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


#: ``neurofilters duotone-ramp``'s parameters: declared like a filter's, so the host builds the
#: flags, validation, ``--help`` and ``neurofilters.run_command("duotone-ramp", ...)`` from them.
RAMP_PARAMS = (
    Param("output", "string", None, "image file to write (png, jpg, tif ...)", required=True, short="-o", metavar="FILE"),
    Param("dark", "colour", PARAMS[0].default, "shadow colour (#rrggbb)"),
    Param("light", "colour", PARAMS[1].default, "highlight colour (#rrggbb)"),
    Param("width", "int", 256, "width of the swatch in pixels", minimum=2, maximum=8192),
)


def run_ramp(values: dict[str, Any], context: CommandContext) -> Path:
    """Write a swatch of the ramp between two colours, to preview a duotone; returns the file written."""
    import numpy as np

    ramp = np.linspace(0.0, 1.0, values["width"], dtype=np.float32)[None, :, None]
    dark, light = (np.asarray(values[name], np.float32) for name in ("dark", "light"))
    pixels = np.repeat(dark + ramp * (light - dark), 32, axis=0)
    return context.writer().save_image(values["output"], pixels, what="swatch")


def print_ramp(written: Path, values: dict[str, Any]) -> int:
    """What the command line prints: the file written."""
    print(f"wrote {written}")
    return 0


@hookimpl
def register_commands() -> list[CommandSpec]:
    """A subcommand of this plugin: ``neurofilters duotone-ramp -o swatch.png``."""
    return [
        CommandSpec(
            name="duotone-ramp",
            help="write a swatch of a duotone's colour ramp",
            params=RAMP_PARAMS,
            run=run_ramp,
            render=print_ramp,
        )
    ]
