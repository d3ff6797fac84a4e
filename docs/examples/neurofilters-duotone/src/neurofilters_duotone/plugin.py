"""Hook implementations of the duotone example plugin."""

from __future__ import annotations

import argparse
from typing import Any

from neurofilters.plugin_host import CommandSpec, FilterContext, FilterSpec, Param, hookimpl, save_image, validate_params

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


def configure_ramp(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``neurofilters duotone-ramp``."""
    parser.add_argument("-o", "--output", required=True, help="image file to write (png, jpg, tif ...)")
    parser.add_argument("--dark", default=PARAMS[0].default, help="shadow colour (#rrggbb)")
    parser.add_argument("--light", default=PARAMS[1].default, help="highlight colour (#rrggbb)")
    parser.add_argument("--width", type=int, default=256, help="width of the swatch in pixels")


def run_ramp(args: argparse.Namespace) -> int:
    """Write a swatch of the ramp between two colours, to preview a duotone."""
    import numpy as np

    values = validate_params(PARAMS, {"dark": args.dark, "light": args.light})
    ramp = np.linspace(0.0, 1.0, max(2, args.width), dtype=np.float32)[None, :, None]
    dark, light = (np.asarray(values[name], np.float32) for name in ("dark", "light"))
    pixels = np.repeat(dark + ramp * (light - dark), 32, axis=0)
    print(f"wrote {save_image(args.output, pixels)}")
    return 0


@hookimpl
def register_commands() -> list[CommandSpec]:
    """A subcommand of this plugin: ``neurofilters duotone-ramp -o swatch.png``."""
    return [
        CommandSpec(
            name="duotone-ramp",
            help="write a swatch of a duotone's colour ramp",
            configure=configure_ramp,
            run=run_ramp,
        )
    ]
