"""The handle every filter uses to reach a network: :class:`ZooModel`.

A zoo model couples a Keras network (whose input is the *preprocessed*
tensor and whose spatial size is free) with what a filter needs around it:
its input convention, friendly layer aliases, the layers that dream well,
class names, and cached sub-models from RGB [0, 1] images to layer outputs
or logits. Keras is imported inside the methods, so importing this module is cheap.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neurofilters.plugin_host import MODEL_KINDS, ParameterError

if TYPE_CHECKING:
    import keras
    import numpy as np

__all__ = ["LayerInfo", "ZooModel", "CENTRE_CROP_FRACTION", "centre_crop_resize", "work_shape"]

#: Share of the shorter side kept by the classification centre crop (224 of 256).
CENTRE_CROP_FRACTION = 0.875


@dataclass(frozen=True)
class LayerInfo:
    """One row of a model's layer table.

    Attributes:
        name: The raw Keras layer name.
        alias: A friendlier name that resolves to it, or ``None``.
        kind: The layer's class name (``Conv2D``, ``ReLU``, ...).
        output_shape: Output shape for one image of the table's size (batch dim included, 1).
        params: Number of weights: the layer's own, or for a layer without
            weights (an activation, a pool) those of the stage it ends
            (``block5_expand_act``: ``block5_expand_conv`` + ``block5_expand_bn``).
        dream_target: The layer is known to give good DeepDream results.
        recommended: One of the model's recommended DeepDream layers (the
            default objective and its best neighbours), a subset of the dream targets.
        note: What the layer is good for, in a few words (``edge-specialised``), or "".
        learnables: The layer's own variables as ``(name, shape, trainable)``
            (``("kernel", (3, 3, 3, 32), True)``); empty for a layer without any.
    """

    name: str
    alias: str | None
    kind: str
    output_shape: tuple[int | None, ...]
    params: int
    dream_target: bool
    recommended: bool = False
    note: str = ""
    learnables: tuple[tuple[str, tuple[int, ...], bool], ...] = ()

    @property
    def own_params(self) -> int:
        """The number of the layer's own weights (0 for an activation or a pool)."""
        total = 0
        for _, shape, _ in self.learnables:
            count = 1
            for side in shape:
                count *= int(side)
            total += count
        return total


class ZooModel:
    """A network of the zoo with everything the filters need around it.

    Attributes:
        name: Registry name (``lite0``).
        kind: ``"classifier"`` or ``"backbone"``.
        keras_model: The raw network; input = preprocessed tensor ``(B, H, W, 3)``
            with any ``H, W >= min_size``. For classifiers whose head is
            global-pooled, its output is the logits.
        min_size: Smallest input side that works.
        input_size: Native classification size (224, 299) or ``None``.
        labels: Class names (classifiers) or ``None``.
        default_dream_layers: A good DeepDream objective, ``((layer, weight), ...)``.
        preprocessing: The input convention, in words.
        description: One line about the network and its weights.
    """

    def __init__(
        self,
        *,
        name: str,
        kind: str,
        keras_model: keras.Model,
        preprocess: Callable[[Any], Any],
        min_size: int,
        input_size: int | None = None,
        labels: Sequence[str] | None = None,
        default_dream_layers: Sequence[tuple[str, float]] = (),
        aliases: Mapping[str, str] | None = None,
        dream_targets: Collection[str] = (),
        recommended: Collection[str] = (),
        layer_notes: Mapping[str, str] | None = None,
        classifier_head: keras.Model | None = None,
        head_input_size: int | None = None,
        preprocessing: str = "",
        description: str = "",
    ) -> None:
        """Wrap a Keras network.

        Args:
            name: Registry name.
            kind: ``"classifier"`` or ``"backbone"``.
            keras_model: The network (input = preprocessed tensor).
            preprocess: ``keras.ops`` function, RGB [0, 1] -> network input.
            min_size: Smallest input side that works.
            input_size: Native classification size, or ``None``.
            labels: Class names, index = class id.
            default_dream_layers: Good DeepDream layers with weights (raw names or aliases).
            aliases: Friendly name -> raw layer name.
            dream_targets: Raw names of the layers that dream well.
            recommended: Raw names of the recommended dream layers (the default
                layers are always among them).
            layer_notes: Raw name -> a few words on what the layer is good for.
            classifier_head: For classifiers whose head needs a fixed size (VGG's
                fully connected layers): a model from ``keras_model``'s output
                at ``head_input_size`` to the logits.
            head_input_size: Side the images are resized to before ``classifier_head``.
            preprocessing: The input convention, in words.
            description: One line about the network and its weights.

        Raises:
            ValueError: ``kind`` is unknown, an alias, a dream target or a default
                dream layer names no layer of the network.
        """
        if kind not in MODEL_KINDS:
            raise ValueError(f"kind must be one of {MODEL_KINDS}. Received: kind={kind!r}")
        self.name = name
        self.kind = kind
        self.keras_model = keras_model
        self._preprocess = preprocess
        self.min_size = int(min_size)
        self.input_size = input_size
        self.labels = list(labels) if labels is not None else None
        self.preprocessing = preprocessing
        self.description = description
        self._classifier_head = classifier_head
        self._head_input_size = head_input_size
        self._layer_names = [layer.name for layer in keras_model.layers]
        # VGG's fully connected head (flatten, fc1, fc2, predictions) is a model of its own: its layers can be named too.
        self._head_layer_names = [layer.name for layer in classifier_head.layers] if classifier_head is not None else []
        known = set(self._layer_names)
        self._aliases = dict(aliases or {})
        self.layer_notes = dict(layer_notes or {})
        unknown = sorted(
            {raw for raw in self._aliases.values() if raw not in known}
            | (set(dream_targets) - known) | (set(recommended) - known) | (set(self.layer_notes) - known)
        )
        if unknown:
            raise ValueError(f"Model {name!r}: aliases, dream targets, recommended layers or notes name missing layers: {unknown}")
        self._dream_targets = frozenset(dream_targets)
        self._alias_of: dict[str, str] = {}
        for alias, raw in self._aliases.items():
            self._alias_of.setdefault(raw, alias)
        self.default_dream_layers = tuple((self.resolve_layer(layer), float(weight)) for layer, weight in default_dream_layers)
        self._recommended = frozenset(recommended) | {layer for layer, _ in self.default_dream_layers}
        self._lock = threading.Lock()
        self._feature_models: dict[tuple[tuple[str, ...], int], keras.Model] = {}
        self._logits_model: keras.Model | None = None
        self._runners: dict[frozenset[str], keras.Model] = {}
        self._layer_tables: dict[tuple[int, int], list[LayerInfo]] = {}

    def __repr__(self) -> str:
        return f"ZooModel(name={self.name!r}, kind={self.kind!r}, layers={len(self._layer_names)})"

    @property
    def aliases(self) -> dict[str, str]:
        """Friendly name -> raw layer name."""
        return dict(self._aliases)

    def preprocess(self, images: Any) -> Any:
        """Map RGB images in [0, 1], ``(B, H, W, 3)``, to the network's input (differentiable)."""
        return self._preprocess(images)

    @property
    def head_layers(self) -> tuple[str, ...]:
        """Layers of the separate fully connected head (VGG's ``flatten``, ``fc1``, ``fc2``, ``predictions``), in order.

        They are not in :attr:`keras_model`; :meth:`resolve_layer` and :meth:`feature_model`
        know them, and their outputs are computed with the image resized to the head's input size.
        """
        return tuple(self._head_layer_names)

    def head_layer(self, name: str) -> Any:
        """The Keras layer ``name`` (raw) of the fully connected head.

        Raises:
            ValueError: ``name`` is not a head layer.
        """
        if name not in self._head_layer_names:
            raise ValueError(f"{name!r} is not a layer of {self.name!r}'s fully connected head. Received: {name!r}")
        return self._classifier_head.get_layer(name)

    @property
    def head_input_size(self) -> int | None:
        """The side images are resized to before the fully connected head (``None``: no separate head)."""
        if self._classifier_head is None:
            return None
        return int(self._head_input_size or self.input_size or 224)

    def resolve_layer(self, name: str) -> str:
        """Return the raw layer name for a raw name or an alias (case-insensitive).

        Raises:
            ParameterError: No such layer; the message suggests close names.
        """
        text = str(name).strip()
        if text in self._aliases:
            return self._aliases[text]
        if text in self._layer_names or text in self._head_layer_names:
            return text
        folded = text.lower()
        for alias, raw in self._aliases.items():
            if alias.lower() == folded:
                return raw
        for raw in (*self._layer_names, *self._head_layer_names):
            if raw.lower() == folded:
                return raw
        close = self.suggest_layers(text)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        shown = text if len(text) <= 80 else text[:60] + f"… ({len(text)} characters)"
        raise ParameterError(
            f'"layer" must be a layer name or alias of model {self.name!r}. Received: layer={shown!r}.{hint} '
            f"Run 'neurofilters layers {self.name}' to see them all.",
            param="layer",
            value=name,
        )

    def usefulness(self, raw: str) -> int:
        """How good a DeepDream target a raw layer is: 3 default layer, 2 recommended, 1 dream target, 0 other."""
        if raw in {layer for layer, _ in self.default_dream_layers}:
            return 3
        if raw in self._recommended:
            return 2
        return 1 if raw in self._dream_targets else 0

    def suggest_layers(self, text: str, count: int = 3) -> list[str]:
        """Names close to a mistyped ``text``, the most useful layers first.

        Aliases are offered for the layers that have one (``block5`` rather than
        ``block5_expand_act``); among similar names, recommended dream layers
        come before plain dream targets, and those before the other layers.
        """
        spellings = {raw: raw for raw in (*self._layer_names, *self._head_layer_names)} | dict(self._aliases)
        folded = text.lower()
        best: dict[str, tuple[float, str]] = {}  # raw name -> (similarity, closest spelling)
        for spelling, raw in spellings.items():
            ratio = difflib.SequenceMatcher(None, folded, spelling.lower()).ratio()
            if ratio >= 0.6 and ratio > best.get(raw, (0.0, ""))[0]:
                best[raw] = (ratio, spelling)
        closest = sorted(best, key=lambda raw: (-best[raw][0], raw))[: 2 * count]
        closest.sort(key=lambda raw: (-self.usefulness(raw), -best[raw][0], raw))
        return [best[raw][1] for raw in closest[:count]]

    def is_dream_target(self, name: str) -> bool:
        """Whether the layer (raw name or alias) is known to dream well."""
        return self.resolve_layer(name) in self._dream_targets

    @property
    def fixed_input(self) -> tuple[int, int] | None:
        """``(height, width)`` the network's input is fixed to (``Input(shape=(64, 64, 3))``), else ``None``."""
        shape = self.keras_model.inputs[0].shape
        height, width = (shape[1], shape[2]) if len(shape) == 4 else (None, None)
        return (int(height), int(width)) if height is not None and width is not None else None

    def spatial_layer(
        self,
        name: str,
        *,
        param: str = "layer",
        layers: Callable[[Any], Collection[str]] | None = None,
        auto: Callable[[Any], str] | None = None,
    ) -> str:
        """The raw name of layer ``name`` after checking it has an ``H x W x C`` output.

        Args:
            name: A raw layer name or alias; ``"auto"`` too where ``auto`` is given.
            param: The parameter named in the error.
            layers: ``layers(keras_model)``: the spatial layers accepted (the attribution room's
                CAM layers, pooling excluded), given with ``auto``; by default every layer
                whose output (at 224 x 224) is ``B x H x W x C``.
            auto: ``auto(keras_model)``: the layer ``"auto"`` stands for, also named in the error.

        Raises:
            ParameterError: Unknown layer (with suggestions) or a layer without an accepted spatial output.
        """
        if auto is not None and name == "auto":
            return auto(self.keras_model)
        raw = self.resolve_layer(name)
        if layers is not None and auto is not None:
            network = self.keras_model
            if raw not in layers(network):
                raise ParameterError(
                    f'"{param}" must be a layer with a spatial (H x W x channels) output, such as a convolution or its '
                    f"activation. Received: {param}={name!r} ({type(network.get_layer(raw)).__name__}); "
                    f"the last such layer of {self.name!r} is {auto(network)!r}.",
                    param=param,
                    value=name,
                )
            return raw
        shapes = {info.name: info.output_shape for info in self.layer_table(224)}
        if len(shapes[raw]) != 4:
            units = (
                " Its units are fully connected (each sees the whole image): 'explore similar', 'saliency --target-layer' and "
                "'hallucinate --layer' take them."
                if len(shapes[raw]) == 2 else ""
            )
            raise ParameterError(
                f'"{param}" must be a convolutional layer (H x W x C output). Received: {param}={name!r} with output '
                f"shape {shapes[raw]}.{units} Run 'neurofilters layers {self.name}' to see the layers.",
                param=param,
                value=name,
            )
        return raw

    def layer_table(self, size: int | None = None) -> list[LayerInfo]:
        """Describe every layer: name, alias, type, output shape, weights, dream target.

        Args:
            size: Square input side the output shapes are computed for; defaults
                to the network's native classification size (:attr:`input_size`),
                else 224. A network with a fixed input size (:attr:`fixed_input`)
                takes no other: its shapes are always computed at that size.

        Returns:
            One :class:`LayerInfo` per layer of :attr:`keras_model` (input layers excluded).
        """
        import keras

        side = int(size or self.input_size or 224)
        shape = self.fixed_input or (side, side)
        with self._lock:
            if shape in self._layer_tables:
                return list(self._layer_tables[shape])
        layers = [layer for layer in self.keras_model.layers if not isinstance(layer, keras.layers.InputLayer)]
        outputs = [_first(layer.output) for layer in layers]
        probe = keras.Model(self.keras_model.inputs, outputs)
        specs = probe.compute_output_spec(keras.KerasTensor((1, *shape, 3)))
        own = {layer.name: int(layer.count_params()) for layer in layers}

        def weights(name: str) -> int:
            # a layer without weights reports its stage's: the layers sharing its name up to the last '_'
            if own[name] or "_" not in name:
                return own[name]
            stage = name.rsplit("_", 1)[0]
            return sum(count for other, count in own.items() if other.startswith(stage))

        table = [
            LayerInfo(
                name=layer.name,
                alias=self._alias_of.get(layer.name),
                kind=type(layer).__name__,
                output_shape=tuple(spec.shape),
                params=weights(layer.name),
                dream_target=layer.name in self._dream_targets,
                recommended=layer.name in self._recommended,
                note=self.layer_notes.get(layer.name, ""),
                learnables=tuple(
                    (str(variable.name), tuple(int(side) for side in variable.shape), bool(variable.trainable))
                    for variable in layer.weights
                ),
            )
            for layer, spec in zip(layers, specs)
        ]
        with self._lock:
            self._layer_tables[shape] = table
        return list(table)

    def feature_model(self, layer_names: Sequence[str], *, max_pixels: int | None = None) -> keras.Model:
        """A model from RGB [0, 1] images to the outputs of ``layer_names``.

        Preprocessing happens inside, so the model is differentiable with
        respect to the RGB input. Models are cached per tuple of layers. When a
        layer of the separate fully connected head (:attr:`head_layers`) is
        asked for, the images are resized to the head's input size first, as
        :meth:`logits_model` does, and every layer of the tuple is computed there;
        a network with a fixed input size (a user's model with a ``Flatten``
        before its ``Dense`` layers) gets every image resized to that size.

        Args:
            layer_names: Raw names or aliases.
            max_pixels: The largest image (pixels) the caller will pass, when it bounds them; see :meth:`runner`.

        Returns:
            A Keras model with input ``(B, H, W, 3)`` returning a list with one
            tensor per requested layer, in order (a list even for one layer);
            its ``layer_names`` attribute holds the raw names.

        Raises:
            ParameterError: An unknown layer, or no layer at all.
        """
        if isinstance(layer_names, str):
            layer_names = [layer_names]
        names = tuple(self.resolve_layer(layer) for layer in layer_names)
        if not names:
            raise ParameterError('"layers" must name at least one layer. Received: layers=()', param="layers", value=())
        network = self.runner(max_pixels)
        key = (names, id(network))
        with self._lock:
            cached = self._feature_models.get(key)
        if cached is not None:
            return cached
        import keras

        from .feature_extractor import FeatureExtractor

        images = keras.Input(shape=(None, None, 3), name="rgb")
        if any(name in self._head_layer_names for name in names):
            outputs = self._through_head(images, names, network)
        else:
            inner = keras.Model(network.inputs, [_first(network.get_layer(name).output) for name in names])
            features = self.preprocess(images)
            fixed = tuple(network.inputs[0].shape[1:3])
            if None not in fixed:  # a network built for one input size (a Flatten before its Dense layers): resized to it
                features = keras.ops.image.resize(features, fixed, interpolation="bilinear")
            outputs = inner(features)
        graph = keras.Model(images, outputs, name=f"{self.name}_feature_graph")
        model = FeatureExtractor(graph, names, name=f"{self.name}_features")
        with self._lock:
            return self._feature_models.setdefault(key, model)

    def _through_head(self, images: Any, names: Sequence[str], network: keras.Model) -> list[Any]:
        """Outputs of ``names`` (raw; some in the fully connected head) for ``images``, all at the head's input size, through ``network``."""
        import keras

        head = self._classifier_head
        body = [name for name in names if name not in self._head_layer_names]
        top = [name for name in names if name in self._head_layer_names]
        side = self.head_input_size
        features = keras.ops.image.resize(self.preprocess(images), (side, side), interpolation="bilinear")
        body_outputs = keras.Model(network.inputs, [_first(network.get_layer(name).output) for name in body] + [network.outputs[0]])(features)
        body_outputs = body_outputs if isinstance(body_outputs, (list, tuple)) else [body_outputs]
        top_outputs = keras.Model(head.inputs, [_first(head.get_layer(name).output) for name in top])(body_outputs[-1])
        top_outputs = top_outputs if isinstance(top_outputs, (list, tuple)) else [top_outputs]
        found = dict(zip(body, body_outputs[:-1])) | dict(zip(top, top_outputs))
        return [found[name] for name in names]

    def runner(self, max_pixels: int | None = None) -> keras.Model:
        """The network the sub-models run: :attr:`keras_model`, or where oneDNN would fall back to its reference kernel on
        large convolutions (an x86 CPU without AVX-512, :mod:`.banded`), its clone with those convolutions banded.

        Args:
            max_pixels: The largest image (pixels) it will see, when the caller bounds it: only the convolutions that
                would pass oneDNN's cap there are banded (``None``: every large one, each call choosing by its size).
        """
        from .banded import banded_layer_names, banded_network

        names = banded_layer_names(self.keras_model, max_pixels)
        with self._lock:
            cached = self._runners.get(names)
        if cached is not None:
            return cached
        runner = banded_network(self.keras_model, names=names) if names else self.keras_model
        with self._lock:
            return self._runners.setdefault(names, runner)

    def logits_model(self) -> keras.Model:
        """A model from RGB [0, 1] images (any side >= ``min_size``) to class logits.

        Raises:
            ParameterError: The model is a backbone (no class logits).
        """
        if self.kind != "classifier":
            raise ParameterError(
                f"Model {self.name!r} is a backbone without class logits; choose a classifier model "
                "(see 'neurofilters models').",
                param="model",
                value=self.name,
            )
        with self._lock:
            if self._logits_model is not None:
                return self._logits_model
        import keras

        images = keras.Input(shape=(None, None, 3), name="rgb")
        features = self.preprocess(images)
        if self._classifier_head is not None:
            side = int(self._head_input_size or self.input_size or 224)
            features = keras.ops.image.resize(features, (side, side), interpolation="bilinear")
            logits = self._classifier_head(self.runner()(features))
        else:
            logits = self.runner()(features)
        model = keras.Model(images, logits, name=f"{self.name}_logits")
        with self._lock:
            if self._logits_model is None:
                self._logits_model = model
            return self._logits_model

    def classify(self, image: np.ndarray, top: int = 5) -> list[tuple[int, str, float]]:
        """Classify one image the way the network was evaluated.

        The central square holding 87.5 % of the shorter side is resized
        (bicubic) to :attr:`input_size`, run through the logits model and a softmax.

        Args:
            image: float ``H x W x 3`` RGB in [0, 1].
            top: How many classes to return.

        Returns:
            ``[(class_id, label, probability), ...]``, most probable first.

        Raises:
            ParameterError: Not a classifier, or not an RGB image.
        """
        import numpy as np

        logits_model = self.logits_model()
        batch = centre_crop_resize(image, self.input_size or 224)[None]
        logits = np.asarray(logits_model(batch, training=False), dtype=np.float64)[0]
        shifted = np.exp(logits - logits.max())
        probabilities = shifted / shifted.sum()
        order = np.argsort(-probabilities, kind="stable")[: max(int(top), 1)]
        labels = self.labels or [f"class {index}" for index in range(len(probabilities))]
        return [(int(index), labels[index], float(probabilities[index])) for index in order]


def work_shape(height: int, width: int, work_size: int, min_size: int = 32) -> tuple[int, int]:
    """``(h, w)`` with the longer side ``work_size`` (0: unchanged), aspect kept, sides >= ``min_size``."""
    if work_size <= 0:
        return max(height, min_size), max(width, min_size)
    factor = work_size / max(height, width)
    return max(min_size, round(height * factor)), max(min_size, round(width * factor))


def centre_crop_resize(image: Any, size: int, fraction: float = CENTRE_CROP_FRACTION) -> np.ndarray:
    """Crop the central square holding ``fraction`` of the shorter side, resize it bicubically.

    Resizing uses Pillow's bicubic filter on float channels (antialiased when
    shrinking), the evaluation protocol the embedded models were checked with.

    Args:
        image: float ``H x W x 3`` in [0, 1].
        size: Output side.
        fraction: Share of the shorter side kept.

    Returns:
        float32 ``size x size x 3`` in [0, 1].

    Raises:
        ParameterError: Not an ``H x W x 3`` image.
    """
    import numpy as np
    from PIL import Image

    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ParameterError(f"Expected an H x W x 3 RGB image. Received: shape={array.shape}", param="image")
    height, width = array.shape[:2]
    side = max(int(round(min(height, width) * fraction)), 1)
    top, left = (height - side) // 2, (width - side) // 2
    crop = array[top : top + side, left : left + side]
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(crop[:, :, channel])).resize((size, size), Image.BICUBIC))
        for channel in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def _first(value: Any) -> Any:
    """A layer's output, or its first output if it has several."""
    return value[0] if isinstance(value, (list, tuple)) else value
