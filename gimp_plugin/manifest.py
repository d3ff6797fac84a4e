"""The manifest the installer writes, the names GIMP sees, and the one table of parameter kinds."""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, NamedTuple

from .client import WIRE_NAME, WorkerError, wire

PLUG_IN_NAME = "neurofilters"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
PROCEDURE_PREFIX = "neurofilters-"
MENU_ROOT = "<Image>/Filters/Neural"
#: Arguments every procedure has besides the filter's own parameters.
SEED_ARGUMENT = "seed"
OUTPUT_ARGUMENT = "output-mode"
OUTPUT_MODES = (
    ("replace", "Replace the layer", "Write the result into the active layer (the selection applies)."),
    ("new-layer", "As a new layer", "Put the result on a new layer above the active one (the selection applies)."),
)
#: GIMP argument names a filter parameter may not take (it gets the suffix "-param").
RESERVED_ARGUMENTS = ("run-mode", "image", "drawables", SEED_ARGUMENT, OUTPUT_ARGUMENT)
_NICK_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class Kind(NamedTuple):
    """How the plug-in carries one parameter kind.

    Attributes:
        argument: The GIMP procedure argument (``int``, ``double``, ``boolean``,
            ``choice``, ``string``, ``file``, ``drawable``, ``color``); it also
            decides how the value is read back and compared with its default.
        widget: The dialog widget: ``number`` (a slider or spin button, see
            :func:`~.plan.widget_kind`), ``check``, ``combo``, ``drawable``,
            ``file``, ``colour``, ``layers`` (a text field listing the model's
            good layers) or ``entry``.
    """

    argument: str
    widget: str


#: Every parameter kind of ``neurofilters.plugin_host.PARAM_KINDS``: its GIMP argument and widget.
KINDS: dict[str, Kind] = {
    "int": Kind("int", "number"),
    "float": Kind("double", "number"),
    "bool": Kind("boolean", "check"),
    "choice": Kind("choice", "combo"),
    "string": Kind("string", "entry"),
    "path": Kind("file", "file"),
    "image": Kind("drawable", "drawable"),
    "colour": Kind("color", "colour"),
    "class_label": Kind("string", "entry"),
    "layer": Kind("string", "layers"),
    "layers": Kind("string", "layers"),
    "model": Kind("choice", "combo"),
}
#: A kind newer than this plug-in travels as text.
FALLBACK_KIND = Kind("string", "entry")


def kind_of(param: dict[str, Any]) -> Kind:
    """The row of :data:`KINDS` for a parameter declaration (:data:`FALLBACK_KIND` for an unknown kind)."""
    return KINDS.get(param["kind"], FALLBACK_KIND)


def plugin_directory() -> str:
    """The folder the plug-in was installed in (this module's folder)."""
    return os.path.dirname(os.path.abspath(__file__))


def load_manifest(directory: str | None = None) -> dict[str, Any]:
    """Read ``manifest.json`` beside the plug-in.

    Args:
        directory: The plug-in's folder; defaults to :func:`plugin_directory`.

    Returns:
        The manifest, with ``_digest`` (the SHA-256 of its bytes) added.

    Raises:
        WorkerError: It is missing, unreadable or of another format, or the
            wire module is missing.
    """
    path = os.path.join(directory or plugin_directory(), MANIFEST_NAME)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        manifest = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError) as error:
        raise WorkerError(
            f"Cannot read the neurofilters manifest {path}: {error}. "
            "Run 'neurofilters gimp install' and restart GIMP."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        received = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise WorkerError(
            f"The neurofilters manifest {path} has format {received!r}; this plug-in reads format "
            f"{MANIFEST_FORMAT}. Run 'neurofilters gimp install' again and restart GIMP."
        )
    if wire is None:
        raise WorkerError(
            f"The neurofilters wire module {os.path.join(plugin_directory(), WIRE_NAME)} is missing. "
            "Run 'neurofilters gimp install' again and restart GIMP."
        )
    manifest["_digest"] = hashlib.sha256(raw).hexdigest()
    return manifest


def procedure_name(filter_name: str) -> str:
    """The PDB procedure of a filter: ``neurofilters-<filter name>``."""
    return PROCEDURE_PREFIX + filter_name


def argument_name(param_name: str) -> str:
    """The GIMP argument of a filter parameter: dashes for underscores, reserved names suffixed."""
    name = param_name.rstrip("_").replace("_", "-")  # class_ -> class (a keyword in Python only)
    return name + "-param" if name in RESERVED_ARGUMENTS else name


def choice_nicks(values: list[str]) -> list[str]:
    """GIMP choice nicks for choice values: the value itself when it is a valid nick, else ``choice-N``."""
    return [value if _NICK_RE.match(value) else f"choice-{index}" for index, value in enumerate(values)]


def model_choices(param: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """The models offered for a ``model`` parameter: the registered ones, plus the default."""
    names = [model["name"] for model in manifest.get("models", [])]
    if param["default"] not in names:
        names.insert(0, param["default"])
    return names


def choices(param: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """The values of a ``choice`` argument: the declared choices, or the models for a ``model`` parameter."""
    return model_choices(param, manifest) if param["kind"] == "model" else list(param["choices"])


def default_output_mode(filter_info: dict[str, Any]) -> str:
    """``new-layer`` for analysis filters (output ``layer``), else ``replace``."""
    return "new-layer" if filter_info.get("output") == "layer" else "replace"
