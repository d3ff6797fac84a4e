"""Keras Applications in the zoo: InceptionV3, VGG16, VGG19, ResNet50, MobileNetV2.

Their ImageNet weights are not embedded: Keras downloads them on first use into
its cache (``$KERAS_HOME/models``, by default ``~/.keras/models``) and verifies
them. Offline, loading raises :class:`~neurofilters.plugin_host.ModelUnavailableError`
naming the file Keras expects and where to put it.

Keras builds these networks for a fixed input size when they include their
classifier. The zoo builds the classifier that way (so Keras' own weight
download and checks run), then a copy for any input size (``(None, None, 3)``)
and moves the weights across:

- global-pooled heads (InceptionV3, ResNet50, MobileNetV2): the copy ends in the
  ``predictions`` logits, so it classifies any size;
- VGG's fully connected head needs 7 x 7 features: the copy is the
  convolutional part, and :meth:`ZooModel.logits_model` resizes the images to
  224 x 224 before the separate head.

Layers Keras names automatically (``conv2d_17``) are renamed to the names a
fresh process would give them, so names do not depend on what was loaded before.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurofilters.plugin_host import ModelUnavailableError, ParameterError

from .keras_home import keras_models_dir
from .labels import imagenet_labels
from .model import ZooModel
from .preprocessing import CAFFE_VGG_MEAN_BGR, caffe_bgr, symmetric_unit
from .vgg16_hed import vgg_aliases

if TYPE_CHECKING:
    import keras

__all__ = [
    "APPLICATIONS",
    "Application",
    "expected_weights_path",
    "keras_models_dir",
    "load_application",
    "load_inception_v3",
    "load_mobilenet_v2",
    "load_resnet50",
    "load_vgg16",
    "load_vgg19",
]

_KERAS_BUCKET = "https://storage.googleapis.com/tensorflow/keras-applications/"
_VGG19_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
_VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
#: Sentinel for :func:`load_application`: Keras' own ImageNet weights.
IMAGENET = "imagenet"


@dataclass(frozen=True)
class Application:
    """How the zoo builds one Keras Application.

    Attributes:
        name: Zoo name.
        constructor: Function name in ``keras.applications``.
        title: Human title.
        input_size: Native input side.
        min_size: Smallest input side the convolutional part accepts.
        weights_file: The file Keras keeps in its cache (with the classifier).
        weights_url: Where Keras downloads it from.
        caffe: Caffe preprocessing (BGR minus mean) instead of [-1, 1].
        dense_head: VGG-style flatten + fully connected head (fixed 224 x 224).
        default_dream_layers: Good DeepDream objective.
        dream_target: Predicate on raw layer names.
        aliases: Builds friendly aliases from the raw layer names.
    """

    name: str
    constructor: str
    title: str
    input_size: int
    min_size: int
    weights_file: str
    weights_url: str
    caffe: bool
    dense_head: bool
    default_dream_layers: tuple[tuple[str, float], ...]
    dream_target: Callable[[str], bool]
    aliases: Callable[[list[str]], dict[str, str]] = field(default=lambda names: {})


def _pattern(regex: str) -> Callable[[str], bool]:
    compiled = re.compile(regex)
    return lambda name: compiled.fullmatch(name) is not None


def _resnet_aliases(names: list[str]) -> dict[str, str]:
    """``conv3`` -> the output of stage 3's last block (``conv3_block4_out``)."""
    aliases: dict[str, str] = {}
    for name in names:  # topological order: the last match of a stage wins
        match = re.fullmatch(r"conv(\d)_block\d+_out", name)
        if match:
            aliases[f"conv{match.group(1)}"] = name
    return aliases


def _mobilenet_aliases(names: list[str]) -> dict[str, str]:
    """``block6`` -> ``block_6_expand_relu`` (the post-ReLU6 expansion, like Lite0's)."""
    aliases = {}
    for name in names:
        match = re.fullmatch(r"block_(\d+)_expand_relu", name)
        if match:
            aliases[f"block{match.group(1)}"] = name
    return aliases


APPLICATIONS: dict[str, Application] = {
    app.name: app
    for app in (
        Application(
            name="inception-v3",
            constructor="InceptionV3",
            title="InceptionV3",
            input_size=299,
            min_size=75,
            weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            weights_url=_KERAS_BUCKET + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            caffe=False,
            dense_head=False,
            default_dream_layers=(("mixed3", 1.0), ("mixed5", 1.0)),
            dream_target=_pattern(r"mixed(\d|10)"),
        ),
        Application(
            name="vgg16",
            constructor="VGG16",
            title="VGG16",
            input_size=224,
            min_size=32,
            weights_file="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            weights_url=_KERAS_BUCKET + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            caffe=True,
            dense_head=True,
            default_dream_layers=(("block3_conv3", 1.0), ("block4_conv3", 1.0)),
            dream_target=_pattern(r"block[34]_conv\d"),
            aliases=lambda names: vgg_aliases(_VGG16_BLOCKS),
        ),
        Application(
            name="vgg19",
            constructor="VGG19",
            title="VGG19",
            input_size=224,
            min_size=32,
            weights_file="vgg19_weights_tf_dim_ordering_tf_kernels.h5",
            weights_url=_KERAS_BUCKET + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
            caffe=True,
            dense_head=True,
            default_dream_layers=(("block3_conv4", 1.0), ("block4_conv4", 1.0)),
            dream_target=_pattern(r"block[34]_conv\d"),
            aliases=lambda names: vgg_aliases(_VGG19_BLOCKS),
        ),
        Application(
            name="resnet50",
            constructor="ResNet50",
            title="ResNet50",
            input_size=224,
            min_size=32,
            weights_file="resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            weights_url=_KERAS_BUCKET + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            caffe=True,
            dense_head=False,
            default_dream_layers=(("conv3_block4_out", 1.0), ("conv4_block3_out", 1.0)),
            dream_target=_pattern(r"conv[34]_block\d+_out"),
            aliases=_resnet_aliases,
        ),
        Application(
            name="mobilenet-v2",
            constructor="MobileNetV2",
            title="MobileNetV2",
            input_size=224,
            min_size=32,
            weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
            weights_url=_KERAS_BUCKET + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
            caffe=False,
            dense_head=False,
            default_dream_layers=(("block_5_expand_relu", 1.0), ("block_10_expand_relu", 1.0)),
            dream_target=_pattern(r"block_([3-9]|1[0-3])_expand_relu"),
            aliases=_mobilenet_aliases,
        ),
    )
}


def expected_weights_path(name: str) -> Path:
    """Where Keras looks for the ImageNet weights of application ``name``."""
    return keras_models_dir() / _application(name).weights_file


def load_application(name: str, *, weights: str | os.PathLike[str] | None = IMAGENET) -> ZooModel:
    """Build a Keras Application as a zoo model.

    Args:
        name: Zoo name (see :data:`APPLICATIONS`).
        weights: ``"imagenet"`` (Keras' cache, downloaded when online), the path
            of a weights file of the full classifier (what
            ``keras.applications.<Model>(weights=None, classifier_activation=None)
            .save_weights(path)`` writes, or Keras' own ``.h5``), or ``None`` for
            random weights.

    Returns:
        The classifier, ImageNet-1k labels.

    Raises:
        ParameterError: Unknown name.
        ModelUnavailableError: The weights are missing (offline) or unreadable.
    """
    app = _application(name)
    fixed = _build_fixed(app, weights)
    network, head = _any_size_copy(app, fixed)
    del fixed
    layer_names = [layer.name for layer in network.layers]
    return ZooModel(
        name=app.name,
        kind="classifier",
        keras_model=network,
        preprocess=caffe_bgr(CAFFE_VGG_MEAN_BGR) if app.caffe else symmetric_unit,
        min_size=app.min_size,
        input_size=app.input_size,
        labels=imagenet_labels(),
        default_dream_layers=app.default_dream_layers,
        aliases=app.aliases(layer_names),
        dream_targets=[layer for layer in layer_names if app.dream_target(layer)],
        classifier_head=head,
        head_input_size=app.input_size if head is not None else None,
        preprocessing=(
            f"RGB -> BGR 0..255 minus the mean {CAFFE_VGG_MEAN_BGR}" if app.caffe else "RGB [0, 1] -> [-1, 1]"
        ),
        description=f"Keras Applications {app.title}, ImageNet-1k (weights: {_describe(weights)}).",
    )


def load_inception_v3() -> ZooModel:
    """InceptionV3 with Keras' ImageNet weights (the ``inception-v3`` zoo entry)."""
    return load_application("inception-v3")


def load_vgg16() -> ZooModel:
    """VGG16 with Keras' ImageNet weights (the ``vgg16`` zoo entry)."""
    return load_application("vgg16")


def load_vgg19() -> ZooModel:
    """VGG19 with Keras' ImageNet weights (the ``vgg19`` zoo entry)."""
    return load_application("vgg19")


def load_resnet50() -> ZooModel:
    """ResNet50 with Keras' ImageNet weights (the ``resnet50`` zoo entry)."""
    return load_application("resnet50")


def load_mobilenet_v2() -> ZooModel:
    """MobileNetV2 (alpha 1.0) with Keras' ImageNet weights (the ``mobilenet-v2`` zoo entry)."""
    return load_application("mobilenet-v2")


def _application(name: str) -> Application:
    try:
        return APPLICATIONS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(APPLICATIONS), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ParameterError(
            f'"model" must be one of {", ".join(APPLICATIONS)}. Received: model={name!r}.{hint}',
            param="model",
            value=name,
        ) from None


def _describe(weights: str | os.PathLike[str] | None) -> str:
    if weights is None:
        return "random"
    return "Keras ImageNet" if weights == IMAGENET else os.fspath(weights)


def _build_fixed(app: Application, weights: str | os.PathLike[str] | None) -> keras.Model:
    """Keras' own classifier at its native size, with the requested weights."""
    import keras

    constructor = getattr(keras.applications, app.constructor)
    if weights is None or weights == IMAGENET:
        source: str | None = None if weights is None else IMAGENET
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(f"The weights file for {app.name!r} does not exist. Received: weights={os.fspath(weights)!r}")
        source = os.fspath(path)
    try:
        return constructor(weights=source, classifier_activation=None)
    except Exception as error:
        if source == IMAGENET:
            raise ModelUnavailableError(_offline_message(app, error)) from error
        raise ModelUnavailableError(
            f"Loading the weights of {app.name!r} from {source!r} failed ({type(error).__name__}: {error}). "
            f"Expected a weights file of the full keras.applications.{app.constructor} classifier."
        ) from error


def _offline_message(app: Application, error: BaseException) -> str:
    target = expected_weights_path(app.name)
    if target.exists():
        problem = (
            f"Keras found {target} but could not use it (it may be incomplete or corrupted: "
            f"{type(error).__name__}: {error}). Delete it and try again online, or replace it with an intact copy"
        )
    else:
        problem = (
            f"its ImageNet weights are missing and could not be downloaded ({type(error).__name__}: {error}). "
            f"Keras expects the file '{app.weights_file}' in {target.parent}{os.sep}: download {app.weights_url} "
            "on a connected machine and put it there (KERAS_HOME moves that folder)"
        )
    return (
        f"Model {app.name!r} is not available: {problem}. "
        "The embedded models work offline: lite0 (classifier), vgg16-hed (backbone)."
    )


def _any_size_copy(app: Application, fixed: keras.Model) -> tuple[keras.Model, keras.Model | None]:
    """Rebuild ``fixed`` for any input size and move its weights; returns (network, dense head)."""
    import keras
    from keras import layers

    constructor = getattr(keras.applications, app.constructor)
    head = None
    if app.dense_head:
        network = constructor(include_top=False, weights=None, input_shape=(None, None, 3))
        head = keras.Sequential(
            [
                keras.Input(shape=(7, 7, 512)),
                layers.Flatten(name="flatten"),
                layers.Dense(4096, activation="relu", name="fc1"),
                layers.Dense(4096, activation="relu", name="fc2"),
                layers.Dense(1000, name="predictions"),
            ],
            name=f"{app.constructor.lower()}_head",
        )
        targets = _weighted_layers(network) + _weighted_layers(head)
    else:
        base = constructor(include_top=False, weights=None, input_shape=(None, None, 3), pooling="avg")
        logits = layers.Dense(1000, name="predictions")(base.outputs[0])
        network = keras.Model(base.inputs, logits, name=base.name)
        targets = _weighted_layers(network)
    sources = _weighted_layers(fixed)
    if len(sources) != len(targets):
        raise RuntimeError(f"{app.constructor}: {len(sources)} weighted layers in Keras' model, {len(targets)} in the copy.")
    for source, target in zip(sources, targets):
        values = source.get_weights()
        if type(source) is not type(target) or [v.shape for v in values] != [tuple(w.shape) for w in target.weights]:
            raise RuntimeError(f"{app.constructor}: layer {source.name!r} does not match {target.name!r} of the copy.")
        target.set_weights(values)
    _rename_automatic_names(network)
    return network, head


def _weighted_layers(model: keras.Model) -> list[Any]:
    return [layer for layer in model.layers if layer.weights]


def _snake_case(class_name: str) -> str:
    """Keras' automatic name prefix of a layer class (``BatchNormalization`` -> ``batch_normalization``)."""
    words = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", words).lower()


def _rename_automatic_names(model: keras.Model) -> None:
    """Give automatically named layers the names a fresh process would (``conv2d``, ``conv2d_1`` ...)."""
    counters: dict[str, int] = {}
    renamed = []
    for layer in model.layers:
        prefix = _snake_case(type(layer).__name__)
        if re.fullmatch(rf"{re.escape(prefix)}(_\d+)?", layer.name):
            count = counters.get(prefix, 0)
            counters[prefix] = count + 1
            renamed.append((layer, prefix if count == 0 else f"{prefix}_{count}"))
    names = {layer.name for layer in model.layers} - {layer.name for layer, _ in renamed}
    if any(new in names for _, new in renamed):
        return  # would clash with an explicit name: keep Keras' names
    for layer, new in renamed:
        layer.name = new
