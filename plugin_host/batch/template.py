"""Output names: the ``--name`` template, output formats, and the checks that
keep every output inside OUTDIR.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from ..core.errors import ParameterError
from ..core.params import shorten

__all__ = [
    "DEFAULT_TEMPLATE",
    "TEMPLATE_FIELDS",
    "FORMAT_SUFFIXES",
    "OutputNameError",
    "check_template",
    "render_output",
    "output_format",
]

DEFAULT_TEMPLATE = "{relpath}/{stem}"
#: Template fields and what they hold.
TEMPLATE_FIELDS: dict[str, str] = {
    "stem": "input file name without its suffix (photo)",
    "ext": "input suffix without the dot (jpg)",
    "name": "input file name (photo.jpg)",
    "relpath": "input's folder relative to the input root ('.' at the top)",
    "filter": "filter name, or the pipeline's name",
    "frame": "frame number (0 unless --all-frames)",
    "index": "position of the file in the batch (0, 1, ...)",
    "seed": "the file's seed",
}
#: Output formats and the suffix they get.
FORMAT_SUFFIXES: dict[str, str] = {
    "png": ".png",
    "jpeg": ".jpg",
    "webp": ".webp",
    "tiff": ".tif",
    "bmp": ".bmp",
    "ora": ".ora",
    "xcf": ".xcf",
}
_SUFFIX_FORMATS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".webp": "webp",
    ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp", ".ora": "ora",
}
_FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff"}


def _shown(text: str) -> str:
    """A template or name as an error message echoes it: quoted, cut to about 200 characters."""
    return shorten(repr(text))


class OutputNameError(ParameterError):
    """The template is fine, but one file's values give an unusable output name
    (a backslash or NUL in its name, a path leaving OUTDIR, an empty name):
    only that file fails."""


def check_template(template: str) -> None:
    """Reject a template with unknown fields, an absolute path or ``..``.

    Raises:
        ParameterError: Naming the template and what to change.
    """
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as error:
        raise ParameterError(f"Bad output name template ({error}). Received: --name {_shown(template)}", param="name", value=template) from None
    specs = [spec or "" for _, f, spec, _ in string.Formatter().parse(template) if f is not None]
    for name, spec in zip(fields, specs):
        if name != name.split(".")[0].split("[")[0] or "{" in spec:
            # {stem.__class__} or {index:{stem}}: attribute, index and nested access could
            # reach far beyond the file's values; only the plain documented fields are allowed
            raise ParameterError(
                f"Output name template fields are plain names, without '.', '[' or nested fields. Received: "
                f"--name {_shown(template)}; fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}",
                param="name",
                value=template,
            )
        if name not in TEMPLATE_FIELDS:
            raise ParameterError(
                f"Unknown field {{{name}}} in the output name template. Received: --name {_shown(template)}; "
                f"fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}",
                param="name",
                value=template,
            )
    literal = "".join(text for text, _, _, _ in string.Formatter().parse(template))
    if template.startswith(("/", "\\", "~")) or (len(template) > 1 and template[1] == ":"):
        raise ParameterError(
            f"The output name template must be relative to OUTDIR. Received: --name {_shown(template)}",
            param="name",
            value=template,
        )
    if ".." in PurePosixPath(literal.replace("\\", "/")).parts or "\\" in literal:
        raise ParameterError(
            f"The output name template must stay inside OUTDIR (no '..', no backslashes). Received: --name {_shown(template)}",
            param="name",
            value=template,
        )


def output_format(requested: str, input_suffix: str, *, has_layers: bool = False) -> str:
    """The output format for one input.

    Args:
        requested: ``auto`` or a format name (``png``, ``jpeg``/``jpg``, ...).
        input_suffix: The input's suffix (``.jpg``).
        has_layers: The result is layered (per-layer XCF): ``auto`` then means ``xcf``.

    Returns:
        A key of :data:`FORMAT_SUFFIXES`.

    Raises:
        ParameterError: Unknown format name.
    """
    name = _FORMAT_ALIASES.get(requested.lower(), requested.lower())
    if name == "auto":
        if has_layers:
            return "xcf"
        return _SUFFIX_FORMATS.get(input_suffix.lower(), "png")  # gif, xcf, unknown -> png
    if name not in FORMAT_SUFFIXES:
        raise ParameterError(
            f"Unknown output format. Received: --format {requested}; use auto, {', '.join(FORMAT_SUFFIXES)}",
            param="format",
            value=requested,
        )
    return name


def render_output(template: str, fields: Mapping[str, object], outdir: Path, fmt: str) -> Path:
    """Render the template for one file and return the output path under ``outdir``.

    The format's suffix is appended unless the rendered name already ends
    with it.

    Raises:
        ParameterError: The template cannot be rendered (a format spec that
            does not fit its field).
        OutputNameError: The rendered name is empty, holds a backslash or NUL,
            or would land outside ``outdir`` (``..``, absolute path, a symlink
            leading out).
    """
    try:
        text = template.format_map(dict(fields))
    except (KeyError, IndexError, ValueError, AttributeError) as error:
        raise ParameterError(f"Cannot render the output name template ({error}). Received: --name {_shown(template)}", param="name", value=template) from None
    if "\x00" in text or "\\" in text:
        raise OutputNameError(
            f"The output name would contain a backslash or NUL (from the input's name). Received: {_shown(text)} from "
            f"--name {_shown(template)}; rename the file, or leave the fields holding it out of the template",
            param="name",
            value=template,
        )
    rel = PurePosixPath(text)
    if rel.is_absolute():
        raise OutputNameError(f"The output name template produced an absolute path. Received: {_shown(text)} from --name {_shown(template)}", param="name", value=template)
    parts = [p for p in rel.parts if p not in (".", "")]
    if ".." in parts:
        raise OutputNameError(f"The output name template produced a path leaving OUTDIR. Received: {_shown(text)} from --name {_shown(template)}", param="name", value=template)
    if not parts:
        raise OutputNameError(f"The output name template produced an empty name. Received: --name {_shown(template)}", param="name", value=template)
    suffix = FORMAT_SUFFIXES[fmt]
    if not parts[-1].lower().endswith(suffix):
        parts[-1] += suffix
    path = Path(outdir, *parts)
    real_out = os.path.realpath(outdir)
    if os.path.commonpath([os.path.realpath(path), real_out]) != real_out:
        raise OutputNameError(f"The output {path} would land outside OUTDIR (through a symlink). Received: --name {_shown(template)}", param="name", value=template)
    return path
