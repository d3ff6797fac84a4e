"""A filter's PDB procedure: its arguments from the table of kinds, and the values of a call read back."""

from __future__ import annotations

from typing import Any, Callable

from . import host
from .client import WorkerError, wire
from .host import GimpHost, make_colour, read_colour
from .manifest import (
    MENU_ROOT,
    OUTPUT_ARGUMENT,
    OUTPUT_MODES,
    SEED_ARGUMENT,
    argument_name,
    choice_nicks,
    choices,
    default_output_mode,
    kind_of,
)

_INT_LIMIT = 2**31 - 1
_FLOAT_LIMIT = 1e15
#: ``add(procedure, name, label, blurb, param, manifest, flags)``: declares one argument.
Adder = Callable[[Any, str, str, str, "dict[str, Any]", "dict[str, Any]", Any], None]


def _add_int(procedure: Any, name: str, label: str, blurb: str, param: dict[str, Any], manifest: dict[str, Any], rw: Any) -> None:
    low = int(param["minimum"]) if param.get("minimum") is not None else -_INT_LIMIT
    high = int(param["maximum"]) if param.get("maximum") is not None else _INT_LIMIT
    procedure.add_int_argument(name, label, blurb, low, high, int(param["default"]), rw)


def _add_double(procedure: Any, name: str, label: str, blurb: str, param: dict[str, Any], manifest: dict[str, Any], rw: Any) -> None:
    low = float(param["minimum"]) if param.get("minimum") is not None else -_FLOAT_LIMIT
    high = float(param["maximum"]) if param.get("maximum") is not None else _FLOAT_LIMIT
    procedure.add_double_argument(name, label, blurb, low, high, float(param["default"]), rw)


def _add_boolean(procedure: Any, name: str, label: str, blurb: str, param: dict[str, Any], manifest: dict[str, Any], rw: Any) -> None:
    procedure.add_boolean_argument(name, label, blurb, bool(param["default"]), rw)


def _add_choice(procedure: Any, name: str, label: str, blurb: str, param: dict[str, Any], manifest: dict[str, Any], rw: Any) -> None:
    values = choices(param, manifest)
    nicks = choice_nicks(values)
    choice = host.gi.Gimp.Choice.new()
    for index, (nick, value) in enumerate(zip(nicks, values)):
        choice.add(nick, index, value, "")
    procedure.add_choice_argument(name, label, blurb, choice, nicks[values.index(param["default"])], rw)


def _add_drawable(procedure: Any, name: str, label: str, blurb: str, param: dict[str, Any], manifest: dict[str, Any], rw: Any) -> None:
    procedure.add_drawable_argument(name, label, blurb + " Choose a layer of any open image, or none.", True, rw)


def _add_file(procedure: Any, name: str, label: str, blurb: str, param: dict[str, Any], manifest: dict[str, Any], rw: Any) -> None:
    procedure.add_file_argument(name, label, blurb, host.gi.Gimp.FileChooserAction.OPEN, True, None, rw)


def _add_color(procedure: Any, name: str, label: str, blurb: str, param: dict[str, Any], manifest: dict[str, Any], rw: Any) -> None:
    procedure.add_color_argument(name, label, blurb, False, make_colour(param["default"]), rw)


def _add_string(procedure: Any, name: str, label: str, blurb: str, param: dict[str, Any], manifest: dict[str, Any], rw: Any) -> None:
    procedure.add_string_argument(name, label, blurb, str(param.get("default_text", param["default"])), rw)


#: How each GIMP argument of :data:`~.manifest.KINDS` is declared.
ADDERS: dict[str, Adder] = {
    "int": _add_int,
    "double": _add_double,
    "boolean": _add_boolean,
    "choice": _add_choice,
    "drawable": _add_drawable,
    "file": _add_file,
    "color": _add_color,
    "string": _add_string,
}


def add_argument(procedure: Any, param: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Declare one filter parameter as the GIMP procedure argument its kind names in :data:`~.manifest.KINDS`."""
    label = param.get("label") or param["name"]
    blurb = f"{param['help']} ({param.get('allowed', '')})" if param.get("allowed") else param["help"]
    adder = ADDERS[kind_of(param).argument]
    adder(procedure, argument_name(param["name"]), label, blurb, param, manifest, host.gi.GObject.ParamFlags.READWRITE)


def create_filter_procedure(plug_in: Any, name: str, info: dict[str, Any], manifest: dict[str, Any], run_func: Any) -> Any:
    """The PDB procedure of one filter: its arguments from the manifest, then the seed and the output mode."""
    Gimp = host.gi.Gimp
    procedure = Gimp.ImageProcedure.new(plug_in, name, Gimp.PDBProcType.PLUGIN, run_func, info)
    procedure.set_image_types("RGB*, GRAY*")
    procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES)
    procedure.set_menu_label(info["title"] + "...")
    procedure.add_menu_path(f"{MENU_ROOT}/{info['category']}")
    procedure.set_documentation(info["summary"], info.get("description") or info["summary"], name)
    procedure.set_attribution("neurofilters", "neurofilters", "2025")
    for param in info["params"]:
        add_argument(procedure, param, manifest)
    rw = host.gi.GObject.ParamFlags.READWRITE
    procedure.add_int_argument(SEED_ARGUMENT, "Seed", "Seed of the filter's randomness: same seed, same result.", 0, _INT_LIMIT, 0, rw)
    modes = Gimp.Choice.new()
    for index, (nick, label, help_text) in enumerate(OUTPUT_MODES):
        modes.add(nick, index, label, help_text)
    procedure.add_choice_argument(
        OUTPUT_ARGUMENT, "Output", "Replace the layer, or add the result as a new layer.", modes, default_output_mode(info), rw
    )
    return procedure


def _read_choice(param: dict[str, Any], value: Any, manifest: dict[str, Any]) -> Any:
    values = choices(param, manifest)
    nicks = choice_nicks(values)
    return values[nicks.index(value)] if value in nicks else value


def _read_file(param: dict[str, Any], value: Any, manifest: dict[str, Any]) -> str:
    return (value.get_path() or "") if value is not None else ""


def _read_color(param: dict[str, Any], value: Any, manifest: dict[str, Any]) -> list[float]:
    return read_colour(value, param["default"])


def _read_text(param: dict[str, Any], value: Any, manifest: dict[str, Any]) -> Any:
    return "" if value is None else value  # GIMP hands an empty string over as None


#: How the value of each GIMP argument becomes the worker's value (others: as GIMP gives it).
#: A drawable's value is ``""``: its pixels travel separately.
READERS: dict[str, Callable[[dict[str, Any], Any, dict[str, Any]], Any]] = {
    "choice": _read_choice,
    "drawable": lambda _param, _value, _manifest: "",
    "file": _read_file,
    "color": _read_color,
    "string": _read_text,
}


def read_values(config: Any, info: dict[str, Any], manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The filter's values from a procedure config, and the drawables chosen for image parameters.

    Returns:
        ``(values, drawables)``: values as the worker takes them (an image
        parameter's value is ``""``; its pixels travel separately), and
        ``{param name: drawable}`` for the image parameters that have one.
    """
    values: dict[str, Any] = {}
    drawables: dict[str, Any] = {}
    for param in info["params"]:
        argument = kind_of(param).argument
        value = config.get_property(argument_name(param["name"]))
        if argument == "drawable" and value is not None:
            drawables[param["name"]] = value
        reader = READERS.get(argument)
        values[param["name"]] = value if reader is None else reader(param, value, manifest)
    return values, drawables


def read_seed_and_mode(config: Any) -> tuple[int, bool]:
    """The seed and whether the result goes on a new layer."""
    return int(config.get_property(SEED_ARGUMENT)), config.get_property(OUTPUT_ARGUMENT) == "new-layer"


def image_parameter_pixels(gimp: GimpHost, drawables: dict[str, Any], scale: float = 1.0) -> list[tuple[dict[str, Any], bytes]]:
    """``(image header, pixels)`` for each drawable chosen for an image parameter (whole, downscaled by ``scale``)."""
    images = []
    for name, drawable in drawables.items():
        if drawable.is_group():
            raise WorkerError(f"{drawable.get_name()!r}, chosen for {name!r}, is a layer group; choose a pixel layer.")
        babl_format, channels, dtype, _ = gimp.pixel_format(drawable)
        width, height = drawable.get_width(), drawable.get_height()
        pixels = gimp.read(drawable, (0, 0, width, height), babl_format, scale)
        if scale != 1.0:
            width, height = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
        images.append((wire.image_header(width, height, channels, dtype, name=name), pixels))
    return images
