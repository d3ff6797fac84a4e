"""Input conventions of the zoo's networks, as differentiable ``keras.ops`` functions.

Every function takes a batch of RGB images in [0, 1], shaped ``(B, H, W, 3)``
(a tensor or a symbolic Keras tensor), and returns what the network expects.
Keras is imported when a function is called, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neurofilters.plugin_host import ParameterError

__all__ = [
    "CAFFE_VGG_MEAN_BGR",
    "HED_MEAN_BGR",
    "PREPROCESSING_MODES",
    "caffe_bgr",
    "lite0_input",
    "preprocessing_function",
    "symmetric_unit",
]

#: Keras Applications' "caffe" mode mean (VGG16, VGG19, ResNet50), in BGR order.
CAFFE_VGG_MEAN_BGR = (103.939, 116.779, 123.68)
#: The mean HED subtracts (BGR order), from its original Caffe training.
HED_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
#: ImageNet channel statistics of torchvision models (RGB, on [0, 1]).
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)


def lite0_input(images: Any) -> Any:
    """EfficientNet-Lite0: RGB 0..255 mapped by ``(x - 127) / 128``."""
    return (images * 255.0 - 127.0) / 128.0


def symmetric_unit(images: Any) -> Any:
    """Keras' "tf" mode (InceptionV3, MobileNetV2): [0, 1] -> [-1, 1]."""
    return images * 2.0 - 1.0


def pixels_0_255(images: Any) -> Any:
    """[0, 1] -> [0, 255], for models that preprocess inside (the Keras 3 convention)."""
    return images * 255.0


def unit_range(images: Any) -> Any:
    """Identity: the model takes [0, 1] RGB as it is."""
    return images


def caffe_bgr(mean_bgr: tuple[float, float, float]) -> Callable[[Any], Any]:
    """Caffe convention: RGB -> BGR, scale to 0..255, subtract a per-channel mean.

    Args:
        mean_bgr: The mean to subtract, in BGR order, on the 0..255 scale.

    Returns:
        The preprocessing function.
    """

    def preprocess(images: Any) -> Any:
        from keras import ops

        bgr = ops.flip(images, axis=-1) * 255.0
        return bgr - ops.convert_to_tensor(mean_bgr, dtype=bgr.dtype)

    preprocess.__doc__ = f"RGB [0, 1] -> BGR 0..255 minus the mean {mean_bgr}."
    return preprocess


def torch_imagenet(images: Any) -> Any:
    """torchvision convention: ``(x - mean) / std`` per RGB channel on [0, 1]."""
    from keras import ops

    mean = ops.convert_to_tensor(TORCH_MEAN_RGB, dtype=images.dtype)
    std = ops.convert_to_tensor(TORCH_STD_RGB, dtype=images.dtype)
    return (images - mean) / std


#: Named input conventions a user's ``.keras`` model can declare.
PREPROCESSING_MODES: dict[str, Callable[[Any], Any]] = {
    "lite": lite0_input,
    "hed": caffe_bgr(HED_MEAN_BGR),
    "0-255": pixels_0_255,
    "0-1": unit_range,
    "-1-1": symmetric_unit,
    "caffe": caffe_bgr(CAFFE_VGG_MEAN_BGR),
    "torch": torch_imagenet,
}


def preprocessing_function(mode: str) -> Callable[[Any], Any]:
    """Return the preprocessing function called ``mode`` (see :data:`PREPROCESSING_MODES`).

    Raises:
        ParameterError: Unknown mode.
    """
    try:
        return PREPROCESSING_MODES[mode]
    except KeyError:
        raise ParameterError(
            f'"preprocessing" must be one of {", ".join(PREPROCESSING_MODES)}. Received: preprocessing={mode!r}',
            param="preprocessing",
            value=mode,
        ) from None
