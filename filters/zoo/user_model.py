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
import os
import re
import zipfile
from pathlib import Path

from neurofilters.plugin_host import ModelUnavailableError, ParameterError

from .labels import imagenet_labels
from .model import ZooModel
from .preprocessing import PREPROCESSING_MODES, preprocessing_function

__all__ = ["DEFAULT_PREPROCESSING", "EMBEDDED_SETTINGS", "SETTINGS_SUFFIX", "load_user_model", "user_model_name"]

DEFAULT_PREPROCESSING = "0-255"
#: Optional settings file: ``<model>.keras`` + this suffix.
SETTINGS_SUFFIX = ".json"
#: Settings inside the ``.keras`` archive itself (written by ``neurofilters finetune``).
EMBEDDED_SETTINGS = "neurofilters.json"
#: Keys the embedded settings may carry besides the ones a settings file takes (information only).
_INFORMATIONAL_KEYS = {"base"}
#: Keys only the embedded settings carry: the classification size and the base's good dream layers.
_EMBEDDED_KEYS = {"image_size", "dream_layers"}


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
        ModelUnavailableError: Missing file, not loadable, refused by safe mode,
            or not an image model.
        ParameterError: Unknown preprocessing mode.
    """
    file = Path(path).expanduser()
    if file.suffix != ".keras" or not file.is_file():
        raise ModelUnavailableError(f"Expected an existing '.keras' model file. Received: {os.fspath(path)!r}")
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
    dream_layers = [(name, float(weight)) for name, weight in settings.get("dream_layers", []) if name in {l.name for l in network.layers}]
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


def _embedded_settings(file: Path) -> dict:
    """The settings inside the archive, without the informational keys (``{}`` when there are none)."""
    if not zipfile.is_zipfile(file):
        return {}  # not a .keras archive at all: Keras' own loader says so
    try:
        with zipfile.ZipFile(file) as archive:
            if EMBEDDED_SETTINGS not in archive.namelist():
                return {}
            settings = json.loads(archive.read(EMBEDDED_SETTINGS).decode("utf-8"))
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ModelUnavailableError(f"Cannot read the settings inside {file}: {error}") from error
    if not isinstance(settings, dict):
        return _checked_settings(settings, f"{file} ({EMBEDDED_SETTINGS})")
    extra = {key: settings[key] for key in _EMBEDDED_KEYS if key in settings}
    size = extra.get("image_size")
    layers = extra.get("dream_layers", [])
    if (size is not None and (not isinstance(size, int) or size < 1)) or not all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], (int, float)) for pair in layers
    ):
        raise ModelUnavailableError(f"{file}: {EMBEDDED_SETTINGS} has a malformed image_size or dream_layers.")
    plain = {key: value for key, value in settings.items() if key not in _INFORMATIONAL_KEYS | _EMBEDDED_KEYS}
    return {**_checked_settings(plain, f"{file} ({EMBEDDED_SETTINGS})"), **extra}


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
