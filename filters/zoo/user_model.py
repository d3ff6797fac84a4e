"""A user's own ``.keras`` model file in the zoo.

The file is loaded with ``keras.saving.load_model(path, safe_mode=True)``:
a model that carries Python code (a ``Lambda`` layer) is refused, since loading
it would run arbitrary code.

Conventions the zoo assumes, as nothing in a ``.keras`` file states them:

- input: one ``(H, W, 3)`` RGB image tensor (channels last);
- preprocessing: by default the images are scaled to 0..255 (``"0-255"``),
  the Keras 3 convention of models that rescale inside (``keras.applications``
  EfficientNet/ConvNeXt, models starting with a ``Rescaling`` layer). Other
  modes: ``"0-1"``, ``"-1-1"``, ``"caffe"``, ``"torch"``, ``"lite"``, ``"hed"``;
  choose one with :func:`load_user_model`'s ``preprocessing`` argument, or with
  a ``<model>.keras.json`` file next to the model: ``{"preprocessing": "-1-1",
  "labels": ["cat", "dog"]}``. A model written by ``neurofilters finetune``
  carries these settings inside its archive (``neurofilters.json``); a file
  beside it overrides them;
- kind: a single rank-2 output ``(B, classes)`` makes it a classifier (its
  output treated as logits; a final softmax still ranks classes the same);
  anything else is a backbone;
- labels: the ImageNet-1k names when there are 1000 classes, else ``class N``,
  unless the JSON file lists them.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from pathlib import Path

from neurofilters.plugin_host import ModelUnavailableError, ParameterError

from .labels import imagenet_labels
from .model import ZooModel
from .preprocessing import PREPROCESSING_MODES, preprocessing_function

__all__ = [
    "DEFAULT_PREPROCESSING",
    "EMBEDDED_SETTINGS",
    "IMAGE_SIZE_RANGE",
    "SETTINGS_SUFFIX",
    "load_user_model",
    "user_model_name",
]

DEFAULT_PREPROCESSING = "0-255"
#: Optional settings file: ``<model>.keras`` + this suffix.
SETTINGS_SUFFIX = ".json"
#: Settings inside the ``.keras`` archive itself (written by ``neurofilters finetune``).
EMBEDDED_SETTINGS = "neurofilters.json"
#: Keys the embedded settings may carry besides the ones a settings file takes (information only).
_INFORMATIONAL_KEYS = {"base"}
#: Keys only the embedded settings carry: the classification size and the base's good dream layers.
_EMBEDDED_KEYS = {"image_size", "dream_layers"}
#: Smallest and largest classification size a model may carry (``neurofilters finetune --image-size``'s range).
IMAGE_SIZE_RANGE = (32, 1024)
#: Most dream layers the embedded settings may list.
MAX_DREAM_LAYERS = 64
#: Largest absolute weight of an embedded dream layer.
MAX_DREAM_WEIGHT = 1000.0
#: The member every Keras 3 ``.keras`` archive holds.
_KERAS_CONFIG = "config.json"


def user_model_name(path: str | os.PathLike[str]) -> str:
    """A registry-style name for a model file (``My_Net.keras`` -> ``my-net``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(path).stem.lower()).strip("-")
    return slug if slug and slug[0].isalpha() else f"model-{slug or 'file'}"


def load_user_model(path: str | os.PathLike[str], *, preprocessing: str | None = None) -> ZooModel:
    """Load a ``.keras`` file as a zoo model.

    Args:
        path: The model file.
        preprocessing: Input convention (see :data:`~neurofilters.filters.zoo.preprocessing.PREPROCESSING_MODES`);
            defaults to the settings file's, else ``"0-255"``.

    Returns:
        The wrapped model (classifier if its output is ``(B, classes)``).

    Raises:
        ModelUnavailableError: Missing file, not a complete Keras archive (empty,
            truncated), not loadable, refused by safe mode, or not an image model.
        ParameterError: Unknown preprocessing mode, or settings (in a file beside
            the model or inside it) out of their range.
    """
    file = Path(path).expanduser()
    if file.suffix != ".keras" or not file.is_file():
        raise ModelUnavailableError(f"Expected an existing '.keras' model file. Received: {os.fspath(path)!r}")
    _check_archive(file)
    settings = _read_settings(file)
    mode = preprocessing or settings.get("preprocessing") or DEFAULT_PREPROCESSING
    preprocess = preprocessing_function(str(mode))

    import keras

    try:
        network = keras.saving.load_model(file, compile=False, safe_mode=True)
    except ValueError as error:
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise ModelUnavailableError(
                f"Refusing to load {file}: it contains Python code (a Lambda layer), which would run "
                "when it is loaded. Rebuild the model without Lambda layers (a custom layer class "
                "registered with keras.saving.register_keras_serializable works)."
            ) from error
        raise ModelUnavailableError(f"Cannot load {file}: {error}") from error
    except Exception as error:
        raise ModelUnavailableError(f"Cannot load {file}: {type(error).__name__}: {error}") from error

    _check_image_input(network, file)
    outputs = network.outputs
    classifier = len(outputs) == 1 and len(outputs[0].shape) == 2
    labels = None
    if classifier:
        classes = int(outputs[0].shape[-1])
        labels = settings.get("labels") or (imagenet_labels() if classes == 1000 else [f"class {i}" for i in range(classes)])
        if len(labels) != classes:
            raise ModelUnavailableError(f"{file}: the model has {classes} classes; its settings list {len(labels)} labels.")
    height, width = network.inputs[0].shape[1:3]
    fixed = height if height is not None and height == width else settings.get("image_size")
    names = {layer.name for layer in network.layers}
    dream_layers = [(name, float(weight)) for name, weight in settings.get("dream_layers", []) if name in names]
    return ZooModel(
        name=user_model_name(file),
        kind="classifier" if classifier else "backbone",
        keras_model=network,
        preprocess=preprocess,
        min_size=int(min(height, width)) if height is not None and width is not None else 32,
        input_size=fixed if classifier else None,
        labels=labels,
        default_dream_layers=dream_layers,
        dream_targets=[name for name, _ in dream_layers],
        preprocessing=f"{mode} ({PREPROCESSING_MODES[str(mode)].__doc__ or ''})".strip(),
        description=f"User model {file}",
    )


def _check_archive(file: Path) -> None:
    """Refuse, in one line, a file that is no complete ``.keras`` archive (empty, truncated, another zip).

    Keras itself reports such a file as "File not found", which sends the user looking for the wrong problem.

    Raises:
        ModelUnavailableError: Naming the path, its size and what to do.
    """
    try:
        size = file.stat().st_size
        with zipfile.ZipFile(file) as archive:
            complete = _KERAS_CONFIG in archive.namelist()
    except (zipfile.BadZipFile, EOFError, ValueError):
        complete = False
    except OSError as error:
        raise ModelUnavailableError(
            f"Cannot read {file}: {error.strerror or error}. Check that the file is readable (its permissions, the disk)."
        ) from None
    if not complete:
        state = "empty" if size == 0 else "truncated or not a .keras zip archive"
        raise ModelUnavailableError(
            f"{file} is not a readable Keras archive (size {size} bytes: {state}). "
            "Save the model again with model.save('NAME.keras') (Keras 3) or copy the complete file."
        )


def _embedded_settings(file: Path) -> dict:
    """The settings inside the archive, without the informational keys (``{}`` when there are none).

    The classification size and the dream layers are checked like user input: an integer in
    :data:`IMAGE_SIZE_RANGE`, at most :data:`MAX_DREAM_LAYERS` ``[name, weight]`` pairs with finite weights
    of at most :data:`MAX_DREAM_WEIGHT` in size.

    Raises:
        ModelUnavailableError: The settings cannot be read.
        ParameterError: A setting out of its range (one line naming the file, the value and the range).
    """
    try:
        with zipfile.ZipFile(file) as archive:
            if EMBEDDED_SETTINGS not in archive.namelist():
                return {}
            settings = json.loads(archive.read(EMBEDDED_SETTINGS).decode("utf-8"))
    except (OSError, ValueError, zipfile.BadZipFile, RecursionError) as error:
        raise ModelUnavailableError(f"Cannot read the settings inside {file}: {type(error).__name__}: {str(error)[:200]}") from None
    where = f"{file} ({EMBEDDED_SETTINGS})"
    if not isinstance(settings, dict):
        return _checked_settings(settings, where)
    extra = {key: settings[key] for key in _EMBEDDED_KEYS if key in settings}
    if "image_size" in extra:
        extra["image_size"] = _checked_image_size(extra["image_size"], where)
    if "dream_layers" in extra:
        extra["dream_layers"] = _checked_dream_layers(extra["dream_layers"], where)
    plain = {key: value for key, value in settings.items() if key not in _INFORMATIONAL_KEYS | _EMBEDDED_KEYS}
    return {**_checked_settings(plain, where), **extra}


def _shown(value: object) -> str:
    """A setting's value for a message: its JSON text, cut to 100 characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 100 else text[:97] + "..."


def _checked_image_size(value: object, where: str) -> int:
    low, high = IMAGE_SIZE_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParameterError(
            f"{where}: image_size must be an integer between {low} and {high} (pixels). Received: image_size={_shown(value)}; "
            "fine-tune the model again (neurofilters finetune --image-size) or remove image_size from its settings.",
            param="image_size",
            value=value,
        )
    return value


def _checked_dream_layers(value: object, where: str) -> list[tuple[str, float]]:
    def usable(pair: object) -> bool:
        return (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and 0 < len(pair[0]) <= 255
            and not isinstance(pair[1], bool)
            and isinstance(pair[1], (int, float))
            and math.isfinite(pair[1])
            and abs(pair[1]) <= MAX_DREAM_WEIGHT
        )

    if not isinstance(value, list) or len(value) > MAX_DREAM_LAYERS or not all(usable(pair) for pair in value):
        raise ParameterError(
            f"{where}: dream_layers must be a list of at most {MAX_DREAM_LAYERS} [layer name, weight] pairs, each weight a "
            f"finite number between -{MAX_DREAM_WEIGHT:g} and {MAX_DREAM_WEIGHT:g}. Received: dream_layers={_shown(value)}; "
            "fine-tune the model again or remove dream_layers from its settings.",
            param="dream_layers",
            value=value,
        )
    return [(name, float(weight)) for name, weight in value]


def _read_settings(file: Path) -> dict:
    embedded = _embedded_settings(file)
    settings_file = file.with_name(file.name + SETTINGS_SUFFIX)
    if not settings_file.is_file():
        return embedded
    try:
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(f"Cannot read the model settings {settings_file}: {error}") from error
    return {**embedded, **_checked_settings(settings, settings_file)}


def _checked_settings(settings: object, settings_file: object) -> dict:
    labels = settings.get("labels", []) if isinstance(settings, dict) else None
    if (
        not isinstance(settings, dict)
        or set(settings) - {"preprocessing", "labels"}
        or not isinstance(labels, list)
        or not all(isinstance(label, str) for label in labels)
    ):
        raise ParameterError(
            f"{settings_file} must be a JSON object with the keys 'preprocessing' and/or 'labels' (a list of names). "
            f"Received: keys={sorted(settings) if isinstance(settings, dict) else type(settings).__name__}"
        )
    return settings


def _check_image_input(network: object, file: Path) -> None:
    inputs = getattr(network, "inputs", None)
    if not inputs or len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[-1] != 3:
        shapes = [tuple(tensor.shape) for tensor in inputs or []]
        raise ModelUnavailableError(
            f"{file}: expected one image input of shape (None, H, W, 3). Received: inputs={shapes}"
        )
