"""Parameter declarations: the one place a filter's parameters are described.

A :class:`Param` carries everything the front ends need: the CLI builds its
flags from it, the GIMP plug-in its procedure arguments (and so GIMP's dialog),
the docs their tables, and :func:`validate_params` the checks every value goes
through before a filter sees it.
"""

from __future__ import annotations

import difflib
import keyword
import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as _dc_replace
from typing import Any

from .errors import DeclarationError, ParameterError

__all__ = [
    "KINDS", "NARGS", "Param", "ParamKind", "PARAM_KINDS", "ParamValues", "validate_params", "parse_weighted_layers",
    "format_value", "shorten", "shown_value", "MAX_SEED", "parse_seed", "parse_int", "integer_value", "flag_worded",
]

#: Largest seed: NumPy's generators take any integer >= 0; 2**63 - 1 keeps it one machine word.
MAX_SEED = 2**63 - 1

#: Longest echo of a user value in an error message (a 100,000-character value is cut).
ECHO_LIMIT = 200


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters for an error message (``… (N characters)``)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}… ({len(text)} characters)"


def shown_value(value: Any) -> str:
    """A user value as an error message echoes it: strings as typed, others by ``repr``, both cut.

    A string holding a character the terminal would not show (a control character such as
    U+001F) is shown by ``repr``, so the message says what was received.

    Huge integers are never turned into text (``repr`` of an integer over
    4,300 digits raises ``ValueError``); their digit count is shown instead.
    """
    if isinstance(value, str):
        return shorten(value if value.isprintable() else repr(value))
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 600:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    try:
        return shorten(repr(value))
    except (ValueError, RecursionError):  # a container holding a huge integer, or nested too deep
        return f"<{type(value).__name__} that cannot be shown>"


#: Digits an integer typed by a user may have: far above every bound, far below ``int()``'s 4,300-digit limit.
MAX_INTEGER_DIGITS = 300
# ASCII digits between ASCII white space only: int() also takes U+001C-U+001F and other Unicode spaces and digits.
_INTEGER_TEXT_RE = re.compile(r"[ \t\n\r\f\v]*([+-]?)([0-9]+)[ \t\n\r\f\v]*")


def integer_value(value: Any) -> int | None:
    """``value`` as an ``int`` when it is one: a Python or NumPy integer, an integral float, or its decimal text.

    Text is ASCII digits with an optional sign between ASCII white space, at most
    :data:`MAX_INTEGER_DIGITS` digits; booleans (Python and NumPy) are not integers.

    Returns:
        The integer, or ``None`` when ``value`` is not one.
    """
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        number = float(value)
        return int(number) if math.isfinite(number) and number.is_integer() else None
    if isinstance(value, str):
        match = _INTEGER_TEXT_RE.fullmatch(value)
        if match is None or len(match.group(2)) > MAX_INTEGER_DIGITS:
            return None
        return int(match.group(1) + match.group(2))
    return None


def parse_int(value: Any, flag: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer typed for ``flag`` (``"--tile"``), within ``[minimum, maximum]``; one :class:`ParameterError` otherwise.

    Raises:
        ParameterError: Not an integer (control characters, over :data:`MAX_INTEGER_DIGITS` digits, ...) or out of range.
    """
    number = integer_value(value)
    if number is None or (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        if minimum is not None and maximum is not None:
            bound = f"an integer between {minimum} and {maximum}"
        elif minimum is not None:
            bound = f"an integer >= {minimum}"
        else:
            bound = "an integer"
        raise ParameterError(f"{flag} must be {bound}. Received: {flag} {shown_value(value)}",
                             param=flag.lstrip("-").replace("-", "_"), value=value)
    return number


def parse_seed(value: Any, name: str = "seed") -> int:
    """A seed from the command line, a file or Python: an integer between 0 and :data:`MAX_SEED`.

    Raises:
        ParameterError: Anything else (the message names the value received and the range).
    """
    number = integer_value(value) if not isinstance(value, float) else None
    if number is None or not 0 <= number <= MAX_SEED:
        raise ParameterError(
            f'"{name}" must be an integer between 0 and {MAX_SEED}. Received: {name}={shown_value(value)}',
            param=name,
            value=value,
        )
    return number


class ParamValues(dict):  # type: ignore[type-arg]
    """Validated values of one filter call (every declared name), and the names the user gave.

    :func:`validate_params` makes one; :func:`~neurofilters.plugin_host.imageio.values.load_image_params`
    returns one with the image parameters read into pixels (``loaded``) and the
    same ``given``; :func:`~neurofilters.plugin_host.core.call.apply_filter`
    takes a loaded one as it is, resolves the filter's presets with ``given``
    (:func:`~neurofilters.plugin_host.core.call.resolve_presets`) and hands
    ``given`` to the filter (``context.given``). A plain ``dict(values)`` drops both attributes.

    Attributes:
        given: The parameters the user set explicitly (whatever their value), as
            opposed to those filled in with their defaults; ``None`` when the
            caller did not say. The host's presets (``FilterSpec.presets``)
            change only the others.
        loaded: Whether the image parameters hold pixels (float32 ``H x W x C``
            in [0, 1], or ``None``), read by the host's loader.
    """

    def __init__(
        self, values: Mapping[str, Any] = (), given: Iterable[str] | None = (), *, loaded: bool = False,  # type: ignore[assignment]
    ) -> None:
        super().__init__(values)
        self.given: frozenset[str] | None = None if given is None else frozenset(given)
        self.loaded = bool(loaded)

    def with_given(self, given: Iterable[str] | None) -> ParamValues:
        """A copy whose ``given`` is ``given`` (a front end that knows better than the keys, like GIMP's dialog).

        Args:
            given: The names the user set, or ``None`` for unknown.
        """
        return ParamValues(self, given, loaded=self.loaded)


@dataclass(frozen=True)
class ParamKind:
    """How one parameter kind is typed, described and carried by every front end.

    Attributes:
        python: The Python type of a validated value (docs).
        allowed: The allowed values in words (errors, ``--help``, docs);
            empty for ``int``/``float``, whose words come from their bounds.
        metavar: The command line's placeholder (``N``, ``LAYER`` ...).

    The GIMP argument and widget of each kind are the plug-in's own table
    (``gimp_plugin/manifest.py``: ``KINDS``).
    """

    python: str
    allowed: str
    metavar: str


#: Every kind a parameter can be: the one table the CLI, validation and the docs read.
KINDS: dict[str, ParamKind] = {
    "int": ParamKind("int", "", "N"),
    "float": ParamKind("float", "", "X"),
    "bool": ParamKind("bool", "true or false", "BOOL"),
    "choice": ParamKind("str (one of the choices)", "", "CHOICE"),
    "string": ParamKind("str", "text", "TEXT"),
    "path": ParamKind("str (path of an existing file, or empty for none)", "the path of an existing file (or empty for none)", "FILE"),
    "image": ParamKind(
        "float32 H x W x C array in [0, 1] (C = 1..4) loaded by the host, or None",
        "an image file (or empty for none)", "IMAGE",
    ),
    "colour": ParamKind("tuple[float, float, float] in [0, 1]", "a colour as #rrggbb or r,g,b with components 0-255", "COLOUR"),
    "class_label": ParamKind(
        "int class id, or str class name resolved by the filter",
        "a class id (integer >= 0) or a class name such as 'tiger cat'", "CLASS",
    ),
    "layer": ParamKind("str (one layer name or alias of the model)", "a layer name or alias of the model (see 'neurofilters layers MODEL')", "LAYER"),
    "layers": ParamKind(
        "tuple[tuple[str, float], ...] (layer names with weights)",
        "layer names with optional weights, e.g. 'mixed3:1.0,mixed5:1.5'", "LAYER[:W],...",
    ),
    "model": ParamKind("str (name of a registered model, or path of a .keras file)", "a model name (see 'neurofilters models') or the path of a .keras file", "MODEL"),
}
#: Every kind a parameter can be, with the Python type of its validated value.
PARAM_KINDS: dict[str, str] = {name: kind.python for name, kind in KINDS.items()}

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
#: What :attr:`Param.nargs` may be: one value, one or more, any number, a comma-separated list.
NARGS = ("", "+", "*", ",")
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}
_LAYER_NAME_RE = re.compile(r"^[A-Za-z0-9_./\-]+$")
_HEX_COLOUR_RE = re.compile(r"^#?([0-9a-fA-F]{6})$")


@dataclass(frozen=True)
class Param:
    """Declaration of one filter parameter.

    Attributes:
        name: Python identifier in snake_case; the CLI flag is ``--name-with-dashes``.
        kind: One of :data:`PARAM_KINDS`.
        default: Value used when the user gives none; must itself be valid.
        help: One sentence for ``--help``, GIMP tooltips and the docs.
        label: Short label for dialogs; derived from ``name`` when empty.
        minimum: Inclusive lower bound (``int`` and ``float``).
        maximum: Inclusive upper bound (``int`` and ``float``).
        choices: Allowed values (``choice``).
        group: Section of dialogs and docs the parameter belongs to
            (``"Layers"``, ``"Octaves"``, ``"Mask"`` ...); empty: the filter's main section.
        advanced: A technical knob: shown folded away (GIMP's dialog expander,
            ``--help`` after the essential ones), never needed for a good result.
        required: The filter cannot work without a value (``add-noise``'s
            noise, ``style-transfer``'s style): :func:`validate_params` refuses
            a call that leaves it out, before any work. A filter's required
            parameter is an ``image`` or ``path`` with no default; a command's
            (``fit-noise --class``) may be of any kind, with default ``None``.
        positional: A command's positional argument (``neurofilters classify IMAGE``),
            given without a flag; required unless its default is not ``None``
            or ``nargs`` is ``"*"``. Commands only.
        nargs: How many values it takes: ``""`` one; ``"+"`` one or more and
            ``"*"`` any number (separate words on the command line; a list in
            Python); ``","`` a comma-separated list (one word ``a,b`` on the
            command line; a list or that text in Python). The validated value
            of a list is a tuple of items, each checked by ``kind``. Commands only.
        short: A one-letter alias of the flag (``-o``), kept where a command had one. Commands only.
        metavar: The placeholder ``--help`` shows (default: the kind's, :data:`KINDS`).

    A default of ``None`` means "no value": the command decides (``fit-noise
    --epochs`` counts its own). Filters declare a valid default for every
    parameter but their required ones (:class:`~.specs.FilterSpec` checks).
    """

    name: str
    kind: str
    default: Any
    help: str
    label: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = field(default=())
    group: str = ""
    advanced: bool = False
    required: bool = False
    positional: bool = False
    nargs: str = ""
    short: str = ""
    metavar: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name) or keyword.iskeyword(self.name):
            raise DeclarationError(
                f"Parameter names must be snake_case identifiers (a Python keyword takes a trailing "
                f"underscore: class_ is the flag --class). Received: name={self.name!r}"
            )
        if self.kind not in PARAM_KINDS:
            raise DeclarationError(
                f"Parameter {self.name!r} has an unknown kind. Received: kind={self.kind!r}; "
                f"allowed: {', '.join(PARAM_KINDS)}"
            )
        if not self.help:
            raise DeclarationError(f"Parameter {self.name!r} needs a help text.")
        if not self.label:
            object.__setattr__(self, "label", self.name.rstrip("_").replace("_", " ").capitalize())
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.kind == "choice" and not self.choices:
            raise DeclarationError(f"Choice parameter {self.name!r} declares no choices.")
        if self.kind != "choice" and self.choices:
            raise DeclarationError(f"Only choice parameters take choices; {self.name!r} is {self.kind!r}.")
        if self.kind not in ("int", "float") and (self.minimum is not None or self.maximum is not None):
            raise DeclarationError(f"Only int and float parameters take bounds; {self.name!r} is {self.kind!r}.")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise DeclarationError(
                f"Parameter {self.name!r}: minimum {self.minimum} is above maximum {self.maximum}."
            )
        if self.required and self.default not in (None, ""):
            raise DeclarationError(
                f"Only parameters with no default (None) can be required. Received: "
                f"name={self.name!r}, kind={self.kind!r}, default={self.default!r}"
            )
        if self.nargs not in NARGS:
            raise DeclarationError(
                f"Parameter {self.name!r}: nargs must be one of {', '.join(repr(n) for n in NARGS)}. Received: nargs={self.nargs!r}"
            )
        if self.short and not re.fullmatch(r"-[A-Za-z]", self.short):
            raise DeclarationError(f"Parameter {self.name!r}: short must be a dash and one letter (-o). Received: short={self.short!r}")
        if self.positional and (self.short or self.kind == "bool"):
            raise DeclarationError(f"Positional parameter {self.name!r} cannot be a bool or have a short flag.")
        if self.default is None and self.kind != "image":
            return  # no value: the command decides
        try:
            converted = self.convert(self.default, check_files=False)
        except ParameterError as error:
            raise DeclarationError(f"Default of parameter {self.name!r} is invalid: {error}") from None
        object.__setattr__(self, "default", converted)

    @property
    def flag(self) -> str:
        """The CLI flag, e.g. ``--octave-scale``."""
        # A trailing underscore only keeps a Python keyword out of the way: class_ is --class.
        return "--" + self.name.rstrip("_").replace("_", "-")

    @property
    def is_required(self) -> bool:
        """Whether a call must give a value: ``required``, or a positional argument without a default."""
        return self.required or (self.positional and self.default is None and self.nargs != "*")

    def allowed_one(self) -> str:
        """The allowed values of one item of a list parameter, in words (``one of a, b``)."""
        return _dc_replace(self, nargs="", positional=False, short="", required=False, default=None).allowed()

    def allowed(self) -> str:
        """Describe the allowed values in words (used in errors and docs)."""
        if self.nargs:
            single = _dc_replace(self, nargs="", positional=False, short="", required=False, default=None).allowed()
            if self.kind == "choice":
                single = ", ".join(self.choices)
            if self.nargs == ",":
                return f"a comma-separated list of {single}"
            each = self.allowed_one() if self.kind == "choice" else single
            return f"{'one or more' if self.nargs == '+' else 'any number of'} values, each {each}"
        if self.kind == "int" or self.kind == "float":
            noun = "an integer" if self.kind == "int" else "a number"
            if self.minimum is not None and self.maximum is not None:
                return f"{noun} between {_num(self.minimum)} and {_num(self.maximum)}"
            if self.minimum is not None:
                return f"{noun} >= {_num(self.minimum)}"
            if self.maximum is not None:
                return f"{noun} <= {_num(self.maximum)}"
            return noun
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.required:
            return KINDS[self.kind].allowed.replace(" (or empty for none)", "")
        return KINDS[self.kind].allowed

    def _fail(self, value: Any, what: str | None = None) -> ParameterError:
        shown = shown_value(value)
        return ParameterError(
            f'"{self.name}" must be {what or self.allowed()}. Received: {self.name}={shown}',
            param=self.name,
            value=value,
        )

    def convert(self, value: Any, *, check_files: bool = True) -> Any:
        """Convert a user value (from the CLI, GIMP, JSON or Python) and check it.

        Args:
            value: The raw value; strings are parsed according to ``kind``.
            check_files: Whether ``path`` parameters must name an existing file.

        Returns:
            The validated value, of the type listed in :data:`PARAM_KINDS`.

        Raises:
            ParameterError: The value is not acceptable; the message names the
                parameter, the value received and what is allowed.
        """
        if self.nargs:
            return self._convert_list(value, check_files)
        return self._convert_one(value, check_files)

    def _convert_one(self, value: Any, check_files: bool) -> Any:
        converter = getattr(self, "_convert_" + self.kind)
        return converter(value, check_files) if self.kind in ("path", "image") else converter(value)

    def _convert_list(self, value: Any, check_files: bool) -> tuple[Any, ...]:
        """A list value: a list, tuple or (``","``) comma-separated text; one word for ``+``/``*``."""
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            items: list[Any] = [part.strip() for part in value.split(",") if part.strip()] if self.nargs == "," else [value]
        elif isinstance(value, (list, tuple)):
            items = [os.fspath(item) if isinstance(item, os.PathLike) else item for item in value]
        else:
            raise self._fail(value)
        if not items and self.nargs != "*":
            raise self._fail(value)
        try:
            return tuple(self._convert_one(item, check_files) for item in items)
        except ParameterError:
            # a list is shown as the command line's word (a,b), so Python and the CLI say the same
            shown = ",".join(str(item) for item in items) if self.nargs == "," and isinstance(value, (list, tuple)) else value
            raise self._fail(shown) from None

    # -- one converter per kind -------------------------------------------------
    def _bounded(self, number: float, original: Any) -> None:
        if (self.minimum is not None and number < self.minimum) or (
            self.maximum is not None and number > self.maximum
        ):
            raise self._fail(original)

    def _convert_int(self, value: Any) -> int:
        number = integer_value(value)  # NumPy integers too; text of ASCII digits, at most 300 of them
        if number is None:
            raise self._fail(value)
        self._bounded(number, value)
        return number

    def _convert_float(self, value: Any) -> float:
        if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool") or not isinstance(value, (str, numbers.Real)):
            raise self._fail(value)
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond a float's range
            raise self._fail(value) from None
        if not math.isfinite(number):
            raise self._fail(value, "a finite number")
        self._bounded(number, value)
        return number

    def _convert_bool(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if type(value).__name__ in ("bool_", "bool") and type(value).__module__ == "numpy":
            return bool(value)
        if isinstance(value, numbers.Integral) and int(value) in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise self._fail(value)

    def _convert_choice(self, value: Any) -> str:
        if isinstance(value, str) and value in self.choices:
            return value
        if isinstance(value, str):
            folded = {choice.lower(): choice for choice in self.choices}
            if value.strip().lower() in folded:
                return folded[value.strip().lower()]
        raise self._fail(value)

    def _convert_string(self, value: Any) -> str:
        if isinstance(value, os.PathLike):  # a command's file or folder given as a Path
            value = os.fspath(value)
        if not isinstance(value, str):
            raise self._fail(value)
        return value

    def _convert_path(self, value: Any, check_files: bool) -> str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise self._fail(value)
        if value and check_files and not os.path.isfile(value):
            raise self._fail(value, "the path of an existing file (no file is there)")
        return value

    def _convert_image(self, value: Any, check_files: bool) -> Any:
        # A path (checked here, loaded by the host before the filter runs), an
        # already loaded image (array, Pillow image), or None / "" for none.
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, (str, os.PathLike)):
            return self._convert_path(value, check_files)
        if hasattr(value, "__array__") or hasattr(value, "shape") or hasattr(value, "getbands") or hasattr(value, "pixels"):
            return value
        raise self._fail(value)

    def _convert_colour(self, value: Any) -> tuple[float, float, float]:
        components: Sequence[Any]
        if isinstance(value, str):
            match = _HEX_COLOUR_RE.match(value.strip())
            if match:
                digits = match.group(1)
                return tuple(int(digits[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]
            components = [part.strip() for part in value.split(",")]
            try:
                numbers = [float(part) for part in components]
            except ValueError:
                raise self._fail(value) from None
            if len(numbers) != 3 or not all(0 <= n <= 255 for n in numbers):
                raise self._fail(value)
            return tuple(n / 255.0 for n in numbers)  # type: ignore[return-value]
        if isinstance(value, (tuple, list)) and len(value) == 3:
            try:
                numbers = [float(part) for part in value]
            except (TypeError, ValueError):
                raise self._fail(value) from None
            if all(0.0 <= n <= 1.0 for n in numbers):
                return tuple(numbers)  # type: ignore[return-value]
        raise self._fail(value)

    def _convert_class_label(self, value: Any) -> int | str:
        if isinstance(value, numbers.Integral) or (isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value)):
            number = integer_value(value)
            if number is None or number < 0:  # a bool, over 300 digits, control characters: no class id
                raise self._fail(value)
            return number
        if isinstance(value, str) and value.strip():
            if any(ord(character) < 32 or ord(character) == 127 for character in value.strip()):
                raise self._fail(value)
            return value.strip()
        raise self._fail(value)

    def _convert_layer(self, value: Any) -> str:
        if isinstance(value, str) and _LAYER_NAME_RE.match(value.strip()):
            return value.strip()
        raise self._fail(value)

    def _convert_layers(self, value: Any) -> tuple[tuple[str, float], ...]:
        try:
            return parse_weighted_layers(value)
        except (ValueError, TypeError, OverflowError):
            raise self._fail(value) from None

    def _convert_model(self, value: Any) -> str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise self._fail(value)


def parse_weighted_layers(value: Any) -> tuple[tuple[str, float], ...]:
    """Parse ``"mixed3:1.0,mixed5:1.5"`` (or a sequence of pairs) into pairs.

    A name without ``:weight`` gets weight 1.0.

    Raises:
        ValueError: The text is not a non-empty list of ``name[:weight]``.
    """
    pairs: list[tuple[str, float]] = []
    if isinstance(value, str):
        items: Iterable[Any] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ValueError(value)
    for item in items:
        if isinstance(item, str):
            name, _, weight_text = item.strip().partition(":")
            try:
                weight = float(weight_text) if weight_text.strip() else 1.0
            except OverflowError:
                raise ValueError(item) from None
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            if not isinstance(item[0], str) or isinstance(item[1], bool) or not isinstance(item[1], (int, float, str)):
                raise ValueError(item)  # e.g. ["block5", null]: a weight must be a number
            try:
                name, weight = item[0], float(item[1])
            except OverflowError:
                raise ValueError(item) from None
        else:
            raise ValueError(item)
        name = name.strip()
        if not _LAYER_NAME_RE.match(name) or not math.isfinite(weight):
            raise ValueError(item)
        pairs.append((name, weight))
    if not pairs:
        raise ValueError(value)
    return tuple(pairs)


def format_value(param: Param, value: Any) -> str:
    """Render a validated value the way a user would type it (CLI, docs, GIMP); ``None`` (no value) is ``""``."""
    if value is None and param.kind != "image":
        return ""
    if param.nargs:
        single = _dc_replace(param, nargs="", positional=False, short="", required=False, default=None)
        return ("," if param.nargs == "," else " ").join(format_value(single, item) for item in value)
    if param.kind == "bool":
        return "true" if value else "false"
    if param.kind == "colour":
        return "#" + "".join(f"{round(c * 255):02x}" for c in value)
    if param.kind == "layers":
        return ",".join(name if weight == 1.0 else f"{name}:{_num(weight)}" for name, weight in value)
    if param.kind == "float":
        return _num(value)
    if param.kind == "image":
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        shape = getattr(value, "shape", None) or getattr(value, "size", None)
        return f"<image {'x'.join(str(d) for d in shape)}>" if shape else "<image>"
    return str(value)


def validate_params(
    params: Sequence[Param], values: Mapping[str, Any], *, check_files: bool = True, check_required: bool = True
) -> ParamValues:
    """Validate user values against declarations and fill in defaults.

    Args:
        params: The filter's declarations.
        values: User values by parameter name (dashes are accepted for underscores).
        check_files: Whether ``path`` parameters must name existing files.
        check_required: Whether a ``required`` parameter must have a value
            (``False`` only for partial sets: presets, preview values).

    Returns:
        A new dict with one validated value per declared parameter; its
        ``given`` holds the names present in ``values`` (what the user set).

    Raises:
        ParameterError: An unknown name (with the closest declared names),
            an unacceptable value, or no value for a required parameter.
    """
    if not isinstance(values, Mapping):
        raise ParameterError(f"The parameter values must be a mapping of names to values. Received: {shown_value(values)}",
                             value=values)
    by_name = {param.name: param for param in params}
    result = ParamValues({param.name: param.default for param in params})
    given = set()
    for raw_name, value in values.items():
        name = str(raw_name).replace("-", "_")
        if name not in by_name and name + "_" in by_name:
            name += "_"  # "class" names the parameter class_ (a keyword's spelling in Python)
        if name not in by_name:
            close = difflib.get_close_matches(name, by_name, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            allowed = ", ".join(by_name) or "none"
            raise ParameterError(
                f"Unknown parameter. Received: {shorten(str(raw_name))}={shown_value(value)}; "
                f"this filter takes: {allowed}.{hint}",
                param=raw_name,
                value=value,
            )
        result[name] = by_name[name].convert(value, check_files=check_files)
        given.add(name)
    for param in params if check_required else ():
        value = result[param.name]
        if param.required and (value is None or (isinstance(value, str) and not value.strip())):
            raise ParameterError(
                f'"{param.name}" is required: {param.allowed()}. Received: nothing',
                param=param.name,
                value=None,
            )
    result.given = frozenset(given)
    return result


def _num(number: float) -> str:
    """Format a number without a useless trailing ``.0`` (an integer exactly, however large)."""
    if isinstance(number, int):
        return str(number)
    if float(number).is_integer():
        return str(int(number))
    return repr(float(number))


def flag_worded(error: ParameterError, params: Sequence[Param], *, declared_only: bool = False) -> ParameterError:
    """``error`` with the parameter named as the user typed it: ``--style2`` where it said ``"style2"``.

    A filter raises its errors with the parameter's Python name (``"class_"``, ``Received: class_=5000``);
    the command line and the batch runner show the flag instead (``--class``, ``Received: --class 5000``).

    Args:
        error: A parameter error (a filter parameter, or a host option such as ``seed``).
        params: The filter's declarations.
        declared_only: Reword only an error about one of ``params`` (for errors raised while a
            filter runs: a model file's own setting, such as ``image_size``, is no flag).

    Returns:
        The reworded error (``error`` itself when there is nothing to reword).
    """
    if not error.param:
        return error
    by_name = {param.name: param for param in params}
    name = str(error.param)
    param = by_name.get(name.replace("-", "_"))
    if param is None and declared_only:
        return error
    if param is not None and param.positional:
        return error  # a positional argument has no flag: its name stays
    flag = param.flag if param is not None else "--" + name.replace("_", "-")
    text = str(error)
    for spelling in {name, name.replace("-", "_"), name.replace("_", "-")}:
        text = text.replace(f'"{spelling}"', flag, 1).replace(f"Received: {spelling}=", f"Received: {flag} ", 1)
    if text == str(error):
        return error
    return ParameterError(text, param=error.param, value=error.value)
