"""The dialog's plan, without GIMP: sections, widgets, increments, mnemonics, and what counts as given."""

from __future__ import annotations

from typing import Any, Callable, Collection

from .manifest import kind_of

#: Title of the dialog's expander holding the parameters declared ``advanced``.
ADVANCED_TITLE = "Advanced settings"
#: Title of the frame of parameters declared ``advanced`` without a group.
OTHER_GROUP = "Other"
#: Numbers get a slider when both bounds are declared and, for integers, at most this many values lie between.
SLIDER_MAX_STEPS = 1000
#: Mnemonic letters the procedure dialog's own buttons use (_Reset, _Cancel, _OK, _Load/_Save Settings)
#: and the preview button (_Preview); parameter labels avoid them.
RESERVED_MNEMONICS = "rcolsp"
#: Longest side, in pixels, of the dialog's preview.
PREVIEW_SIZE = 256


def dialog_sections(info: dict[str, Any]) -> dict[str, list[Any]]:
    """Where each parameter goes in the dialog, from its declared ``group`` and ``advanced``.

    Args:
        info: The filter's manifest entry.

    Returns:
        ``{"essential": [...], "groups": [(title, [...]), ...], "advanced": [(title, [...]), ...]}``
        of parameter declarations, in declaration order: parameters without a group
        are the essential controls shown first, the others go into one frame per
        group, and the ``advanced`` ones into frames (by group) inside a folded
        expander.
    """
    essential: list[dict[str, Any]] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    advanced: dict[str, list[dict[str, Any]]] = {}
    for param in info["params"]:
        group = param.get("group") or ""
        if param.get("advanced"):
            advanced.setdefault(group or OTHER_GROUP, []).append(param)
        elif group:
            groups.setdefault(group, []).append(param)
        else:
            essential.append(param)
    return {"essential": essential, "groups": list(groups.items()), "advanced": list(advanced.items())}


def widget_kind(param: dict[str, Any]) -> str:
    """The dialog widget of a parameter, from the table of kinds (:data:`~.manifest.KINDS`).

    One of ``slider``, ``spin``, ``check``, ``combo``, ``drawable``, ``file``,
    ``colour``, ``layers`` (a text field with a list of the model's good layers)
    or ``entry``. A ``number`` is a slider when both bounds are declared and, for
    an integer, at most :data:`SLIDER_MAX_STEPS` values lie between them.
    """
    widget = kind_of(param).widget
    if widget != "number":
        return widget
    low, high = param.get("minimum"), param.get("maximum")
    if low is None or high is None:
        return "spin"
    return "slider" if param["kind"] == "float" or high - low <= SLIDER_MAX_STEPS else "spin"


def increments(param: dict[str, Any]) -> tuple[float, float, int]:
    """``(step, page, digits)`` of a number's spin button or slider, from its bounds (or default)."""
    low, high = param.get("minimum"), param.get("maximum")
    if low is not None and high is not None and high > low:
        span = float(high - low)
    else:
        span = max(abs(float(param.get("default") or 0)) * 10.0, 100.0)
    if param["kind"] == "int":
        step = 1.0
        page = float(max(1, min(10, int(span // 10))))
        return step, max(page, step), 0
    step = 10.0 ** (len(str(int(span / 100.0))) - 1) if span >= 100.0 else 10.0 ** _floor_log10(span / 100.0)
    digits = max(0, -_floor_log10(step))
    default = param.get("default")
    if isinstance(default, float) and default:  # enough digits to show the declared default (0.015)
        digits = max(digits, min(6, -_floor_log10(abs(default)) + 1))
    return step, step * 10.0, digits


def _floor_log10(value: float) -> int:
    """``floor(log10(value))`` for ``value > 0`` without float surprises at powers of ten."""
    exponent = 0
    while value >= 10.0:
        value /= 10.0
        exponent += 1
    while value < 1.0 - 1e-12:
        value *= 10.0
        exponent -= 1
    return exponent


def mnemonic_labels(labels: list[str], reserved: str = RESERVED_MNEMONICS) -> list[str]:
    """Labels with a keyboard mnemonic (``_``) on a letter no other label or dialog button uses.

    A word's first letter is preferred, then any other letter or digit; a label
    with no free character stays without one. Literal underscores are doubled.
    """
    used = set(reserved.lower())
    result = []
    for label in labels:
        text = label.replace("_", "__")
        positions = [i for i, char in enumerate(label) if char.isalnum() and (i == 0 or not label[i - 1].isalnum())]
        positions += [i for i, char in enumerate(label) if char.isalnum() and i not in positions]
        choice = next((i for i in positions if label[i].lower() not in used), None)
        if choice is None:
            result.append(text)
            continue
        used.add(label[choice].lower())
        shift = label[:choice].count("_")  # doubled underscores before the letter move it right
        result.append(text[: choice + shift] + "_" + text[choice + shift :])
    return result


def _text_changed(param: dict[str, Any], value: Any) -> bool:
    default = param.get("default_text", param.get("default"))
    return str(value if value is not None else "") != str(default or "")


def _colour_changed(param: dict[str, Any], value: Any) -> bool:
    return value is not None and any(abs(float(a) - float(b)) > 0.5 / 255 for a, b in zip(value, param.get("default")))


def _double_changed(param: dict[str, Any], value: Any) -> bool:
    default = float(param.get("default"))
    return value is not None and abs(float(value) - default) > 1e-9 * max(1.0, abs(default))


def _differs(param: dict[str, Any], value: Any) -> bool:
    return value != param.get("default")


#: Whether a value differs from its parameter's default, by GIMP argument (others: :func:`_differs`).
_CHANGED: dict[str, Callable[[dict[str, Any], Any], bool]] = {
    "drawable": lambda _param, value: bool(value),
    "color": _colour_changed,
    "string": _text_changed,
    "file": _text_changed,
    "double": _double_changed,
}


def given_names(info: dict[str, Any], values: dict[str, Any], touched: Collection[str] = ()) -> list[str]:
    """The parameters a GIMP call counts as set explicitly (they win over a preset's values).

    The worker hands these names to the host, whose preset rule (the filter's
    declared ``presets``, resolved before the filter runs) fills a preset's
    values into the other parameters only. GIMP always sends every value, so
    "given" is decided here: a value that
    differs from its declared default (set in this dialog, remembered by GIMP
    from an earlier call, or passed by a script), a layer chosen for an image
    parameter, and any control the user touched in the dialog even if it ends
    on the default again (``touched``: parameter names).
    """
    given = []
    for param in info["params"]:
        name = param["name"]
        value = values.get(name)
        changed = _CHANGED.get(kind_of(param).argument, _differs)
        if name in touched or changed(param, value):
            given.append(name)
    return given


def preview_status(reply: dict[str, Any]) -> str:
    """The dialog's line after a preview: its size and time, then what the filter reported (``lite0 sees: ...``)."""
    text = f"Preview {reply['width']}x{reply['height']} in {reply.get('compute_seconds', 0):.1f} s"
    return "; ".join([text, *(reply.get("summary") or ())])


def missing_required(info: dict[str, Any], chosen: Collection[str]) -> str:
    """What to say when a required image parameter has no layer chosen (``""`` when none is missing).

    Args:
        info: The filter's manifest entry.
        chosen: The names of the image parameters that have a layer.
    """
    missing = [param for param in info["params"] if param.get("required") and param["name"] not in chosen]
    if not missing:
        return ""
    labels = " and ".join(repr(param.get("label") or param["name"]) for param in missing)
    return f"{info['title']} needs {labels}: choose a layer for it (open an image file as a layer first); nothing was changed."
