"""neurofilters' built-in filters and what they share.

Subpackages:
    zoo: the model zoo (embedded EfficientNet-Lite0 and VGG16 backbones,
        Keras Applications, users' ``.keras`` files) behind one handle,
        :class:`neurofilters.filters.zoo.ZooModel`.

Importing this package is cheap: nothing here imports Keras or TensorFlow.
"""
