"""neurofilters' built-in filters and what they share.

The filter packages (``deepdream``, ``explorer``, ``finetune``, ``hallucinate``,
``saliency``, ``texture``) never import each other (an import-linter contract);
what they share lives in shared rooms:
    zoo: the model zoo (embedded EfficientNet-Lite0 and VGG16 backbones,
        Keras Applications, users' ``.keras`` files) behind one handle,
        :class:`neurofilters.filters.zoo.ZooModel`, and the class names.
    gradients: input gradients per backend.
    visualization: feature visualisation (objectives, the optimisation).
    attribution: attribution maps (guided network, score steps, the methods).
    octaves, parameterization, smoothing, tiling: modules for images.

Importing this package is cheap: nothing here imports Keras or TensorFlow.
"""
